/* msg-version.h: run-time version checks
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined (MSG_INSIDE) && !defined (MSG_COMPILATION)
# error "Only <msgport-glib.h> can be included directly."
#endif

#include <glib.h>

#include "msgport-version-macros.h"

G_BEGIN_DECLS

MSG_AVAILABLE_IN_ALL
guint        msg_get_major_version (void);
MSG_AVAILABLE_IN_ALL
guint        msg_get_minor_version (void);
MSG_AVAILABLE_IN_ALL
guint        msg_get_micro_version (void);
MSG_AVAILABLE_IN_ALL
const char  *msg_check_version     (guint required_major,
                                    guint required_minor,
                                    guint required_micro);

G_END_DECLS
