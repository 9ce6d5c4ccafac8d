/* msg-channel-main.h: a pair of entangled ports
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined (MSG_INSIDE) && !defined (MSG_COMPILATION)
# error "Only <msgport-glib.h> can be included directly."
#endif

#include <glib-object.h>

#include "msgport-version-macros.h"
#include "msg-port-main.h"

G_BEGIN_DECLS

/**
 * MsgChannelMain:
 *
 * A pair of entangled ports. Its fields are private; use the functions
 * below.
 *
 * Since: 1.0
 */

/**
 * MSG_TYPE_CHANNEL_MAIN:
 *
 * The #GType of #MsgChannelMain.
 */
#define MSG_TYPE_CHANNEL_MAIN (msg_channel_main_get_type ())
MSG_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (MsgChannelMain, msg_channel_main, MSG, CHANNEL_MAIN, GObject)

MSG_AVAILABLE_IN_ALL
MsgChannelMain *msg_channel_main_new       (void);
MSG_AVAILABLE_IN_ALL
MsgPortMain    *msg_channel_main_get_port1 (MsgChannelMain *self);
MSG_AVAILABLE_IN_ALL
MsgPortMain    *msg_channel_main_get_port2 (MsgChannelMain *self);

G_END_DECLS
