/* msg-message-event.h: what a MsgPortMain::message signal carries
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined (MSG_INSIDE) && !defined (MSG_COMPILATION)
# error "Only <msgport-glib.h> can be included directly."
#endif

#include <gio/gio.h>

#include "msgport-version-macros.h"

G_BEGIN_DECLS

typedef struct _MsgPortMain MsgPortMain;

/**
 * MsgMessageEvent:
 *
 * What #MsgPortMain::message carries. Its fields are private; use the
 * functions below.
 *
 * Since: 1.0
 */

/**
 * MSG_TYPE_MESSAGE_EVENT:
 *
 * The #GType of #MsgMessageEvent.
 */
#define MSG_TYPE_MESSAGE_EVENT (msg_message_event_get_type ())
MSG_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (MsgMessageEvent, msg_message_event, MSG, MESSAGE_EVENT, GObject)

MSG_AVAILABLE_IN_ALL
GVariant     *msg_message_event_get_data   (MsgMessageEvent *self);
MSG_AVAILABLE_IN_ALL
MsgPortMain **msg_message_event_get_ports  (MsgMessageEvent *self,
                                            guint           *n_ports);
MSG_AVAILABLE_IN_ALL
guint         msg_message_event_get_n_ports (MsgMessageEvent *self);
MSG_AVAILABLE_IN_ALL
MsgPortMain  *msg_message_event_get_port   (MsgMessageEvent *self,
                                            guint            index_);
MSG_AVAILABLE_IN_ALL
GListModel   *msg_message_event_get_port_list (MsgMessageEvent *self);
MSG_AVAILABLE_IN_1_2
GUnixFDList  *msg_message_event_get_unix_fd_list (MsgMessageEvent *self);

MSG_AVAILABLE_IN_1_2
gboolean      msg_message_event_reply      (MsgMessageEvent  *self,
                                            GVariant         *reply,
                                            GError          **error);

G_END_DECLS
