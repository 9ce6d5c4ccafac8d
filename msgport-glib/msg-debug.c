/* msg-debug.c: the cached check behind MSG_DEBUG()
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "msg-debug-private.h"

gint msg_debug_state = 0;  /* (atomic) */

/* Asks GLib, once, whether debug messages of our domain are shown
 * (G_MESSAGES_DEBUG, read by GLib when it is first needed). Two threads
 * may both ask the first time; they get the same answer. */
gboolean
msg_debug_check (void)
{
  gboolean enabled = !g_log_writer_default_would_drop (G_LOG_LEVEL_DEBUG, MSG_DEBUG_DOMAIN);

  g_atomic_int_set (&msg_debug_state, enabled ? 2 : 1);
  return enabled;
}
