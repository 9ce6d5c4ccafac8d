/* msg-message-event-private.h: how the port fills MsgMessageEvents
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "msg-message-event.h"

G_BEGIN_DECLS

MsgMessageEvent *msg_message_event_new_take   (GVariant         *data,
                                               MsgPortMain     **ports,
                                               guint             n_ports);
void             msg_message_event_reset_take (MsgMessageEvent  *self,
                                               GVariant         *data,
                                               MsgPortMain     **ports,
                                               guint             n_ports);
gboolean         msg_message_event_recycle    (MsgMessageEvent  *self);

G_END_DECLS
