/* msg-port-main-private.h: MsgPortMain, the handle on an endpoint
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "msg-endpoint-private.h"
#include "msg-port-main.h"

G_BEGIN_DECLS

MsgPortMain *msg_port_main_new_for_endpoint (MsgEndpoint  *endpoint);
MsgEndpoint *msg_port_main_get_endpoint     (MsgPortMain  *self);

G_END_DECLS
