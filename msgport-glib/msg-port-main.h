/* msg-port-main.h: one end of a message channel
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined (MSG_INSIDE) && !defined (MSG_COMPILATION)
# error "Only <msgport-glib.h> can be included directly."
#endif

#include <gio/gio.h>

#include "msgport-version-macros.h"
#include "msg-message-event.h"

G_BEGIN_DECLS

/**
 * MsgPortMain:
 *
 * One end of a message channel. Its fields are private; use the functions
 * below.
 *
 * Since: 1.0
 */

/**
 * MSG_TYPE_PORT_MAIN:
 *
 * The #GType of #MsgPortMain.
 */
#define MSG_TYPE_PORT_MAIN (msg_port_main_get_type ())
MSG_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (MsgPortMain, msg_port_main, MSG, PORT_MAIN, GObject)

/**
 * MSG_PARENT_PORT_ENV:
 *
 * The environment variable through which a process spawned with
 * msg_port_main_new_for_launcher() finds its parent port: it holds the
 * number of the descriptor. msg_port_main_get_parent_port() reads it.
 */
#define MSG_PARENT_PORT_ENV "MSGPORT_PARENT_FD"

/**
 * MsgPortMainMessageFunc:
 * @port: the port the message arrived on
 * @event: the message and the ports transferred with it
 * @user_data: the data given to msg_port_main_set_message_func()
 *
 * What msg_port_main_set_message_func() passes each message to, in place
 * of the #MsgPortMain::message signal; the same arguments as its handlers.
 *
 * Since: 1.0
 */
typedef void (*MsgPortMainMessageFunc) (MsgPortMain     *port,
                                        MsgMessageEvent *event,
                                        gpointer         user_data);

MSG_AVAILABLE_IN_ALL
MsgPortMain *msg_port_main_new_for_fd    (int                   fd,
                                          GError              **error);
MSG_AVAILABLE_IN_ALL
MsgPortMain *msg_port_main_new_for_launcher (GSubprocessLauncher *launcher,
                                          int                   child_fd,
                                          GError              **error);
MSG_AVAILABLE_IN_ALL
MsgPortMain *msg_port_main_get_parent_port (void);

MSG_AVAILABLE_IN_ALL
gboolean  msg_port_main_post_message     (MsgPortMain   *self,
                                          GVariant      *message,
                                          MsgPortMain  **transfer,
                                          guint          n_transfer,
                                          GError       **error);
MSG_AVAILABLE_IN_ALL
gboolean  msg_port_main_post             (MsgPortMain   *self,
                                          GVariant      *message,
                                          GError       **error);
MSG_AVAILABLE_IN_1_2
gboolean  msg_port_main_post_with_unix_fd_list (MsgPortMain   *self,
                                          GVariant      *message,
                                          MsgPortMain  **transfer,
                                          guint          n_transfer,
                                          GUnixFDList   *fd_list,
                                          GError       **error);
MSG_AVAILABLE_IN_ALL
void      msg_port_main_set_message_func (MsgPortMain            *self,
                                          MsgPortMainMessageFunc  func,
                                          gpointer                user_data,
                                          GDestroyNotify          notify);
MSG_AVAILABLE_IN_ALL
void      msg_port_main_start            (MsgPortMain   *self);
MSG_AVAILABLE_IN_ALL
void      msg_port_main_close            (MsgPortMain   *self);
MSG_AVAILABLE_IN_ALL
gboolean  msg_port_main_is_started       (MsgPortMain   *self);
MSG_AVAILABLE_IN_ALL
gboolean  msg_port_main_is_closed        (MsgPortMain   *self);
MSG_AVAILABLE_IN_ALL
gboolean  msg_port_main_is_neutered      (MsgPortMain   *self);
MSG_AVAILABLE_IN_ALL
GError   *msg_port_main_get_close_reason (MsgPortMain   *self);
MSG_AVAILABLE_IN_ALL
gboolean  msg_port_main_flush            (MsgPortMain   *self,
                                          GCancellable  *cancellable,
                                          GError       **error);

MSG_AVAILABLE_IN_1_2
void      msg_port_main_request_async    (MsgPortMain          *self,
                                          GVariant             *message,
                                          gint                  timeout_ms,
                                          GCancellable         *cancellable,
                                          GAsyncReadyCallback   callback,
                                          gpointer              user_data);
MSG_AVAILABLE_IN_1_2
GVariant *msg_port_main_request_finish   (MsgPortMain          *self,
                                          GAsyncResult         *result,
                                          GError              **error);
MSG_AVAILABLE_IN_1_2
void      msg_port_main_flush_async      (MsgPortMain         *self,
                                          GCancellable        *cancellable,
                                          GAsyncReadyCallback  callback,
                                          gpointer             user_data);
MSG_AVAILABLE_IN_1_2
gboolean  msg_port_main_flush_finish     (MsgPortMain   *self,
                                          GAsyncResult  *result,
                                          GError       **error);
MSG_AVAILABLE_IN_1_2
void      msg_port_main_receive_async    (MsgPortMain         *self,
                                          GCancellable        *cancellable,
                                          GAsyncReadyCallback  callback,
                                          gpointer             user_data);
MSG_AVAILABLE_IN_1_2
MsgMessageEvent *msg_port_main_receive_finish (MsgPortMain   *self,
                                          GAsyncResult  *result,
                                          GError       **error);
MSG_AVAILABLE_IN_1_2
MsgMessageEvent *msg_port_main_receive   (MsgPortMain   *self,
                                          gint           timeout_ms,
                                          GCancellable  *cancellable,
                                          GError       **error);
MSG_AVAILABLE_IN_1_2
gint      msg_port_main_get_priority     (MsgPortMain   *self);
MSG_AVAILABLE_IN_1_2
void      msg_port_main_set_priority     (MsgPortMain   *self,
                                          gint           priority);
MSG_AVAILABLE_IN_1_2
guint     msg_port_main_get_keep_alive_interval (MsgPortMain *self);
MSG_AVAILABLE_IN_1_2
void      msg_port_main_set_keep_alive_interval (MsgPortMain *self,
                                                 guint        interval_ms);
MSG_AVAILABLE_IN_1_2
guint64   msg_port_main_get_high_water_mark (MsgPortMain *self);
MSG_AVAILABLE_IN_1_2
void      msg_port_main_set_high_water_mark (MsgPortMain *self,
                                             guint64      mark);
MSG_AVAILABLE_IN_1_2
guint64   msg_port_main_get_buffered_amount (MsgPortMain *self);
MSG_AVAILABLE_IN_1_2
guint64   msg_port_main_get_buffered_messages (MsgPortMain *self);
MSG_AVAILABLE_IN_1_2
gboolean  msg_port_main_is_writable      (MsgPortMain   *self);
MSG_AVAILABLE_IN_1_2
void      msg_port_main_wait_writable_async  (MsgPortMain         *self,
                                              GCancellable        *cancellable,
                                              GAsyncReadyCallback  callback,
                                              gpointer             user_data);
MSG_AVAILABLE_IN_1_2
gboolean  msg_port_main_wait_writable_finish (MsgPortMain   *self,
                                              GAsyncResult  *result,
                                              GError       **error);
MSG_AVAILABLE_IN_1_2
guint64   msg_port_main_get_messages_sent     (MsgPortMain *self);
MSG_AVAILABLE_IN_1_2
guint64   msg_port_main_get_bytes_sent        (MsgPortMain *self);
MSG_AVAILABLE_IN_1_2
guint64   msg_port_main_get_messages_received (MsgPortMain *self);
MSG_AVAILABLE_IN_1_2
guint64   msg_port_main_get_bytes_received    (MsgPortMain *self);
MSG_AVAILABLE_IN_1_2
guint64   msg_port_main_get_queued_messages   (MsgPortMain *self);
MSG_AVAILABLE_IN_1_2
guint64   msg_port_main_get_max_queued_messages (MsgPortMain *self);

G_END_DECLS
