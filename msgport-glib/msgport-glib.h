/* msgport-glib.h: the single public include of msgport-glib
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#define MSG_INSIDE
# include "msgport-version.h"
# include "msgport-version-macros.h"
# include "msg-version.h"
# include "msg-port-error.h"
# include "msg-enums.h"
# include "msg-message-event.h"
# include "msg-port-main.h"
# include "msg-channel-main.h"
#undef MSG_INSIDE
