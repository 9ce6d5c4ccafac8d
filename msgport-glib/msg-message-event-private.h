/* msg-message-event-private.h: how the port fills MsgMessageEvents
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "msg-message-event.h"

G_BEGIN_DECLS

/* The events of one context, reused from one message to the next when
 * nobody kept them (see msg-message-event.c). Only the context's thread
 * uses a pool. */
typedef struct _MsgEventPool MsgEventPool;

MsgEventPool    *msg_event_pool_new       (void);
void             msg_event_pool_free      (gpointer          pool);
MsgMessageEvent *msg_event_pool_take      (MsgEventPool     *pool,
                                           GVariant         *data,
                                           MsgPortMain     **ports,
                                           guint             n_ports,
                                           GUnixFDList      *fd_list);
void             msg_event_pool_give_back (MsgEventPool     *pool,
                                           MsgMessageEvent  *event);

G_END_DECLS
