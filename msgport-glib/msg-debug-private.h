/* msg-debug-private.h: G_MESSAGES_DEBUG=msgport-glib
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * MSG_DEBUG() logs a line of a port's life (made, started, transferred,
 * bridged to another process, its socket leased to a context, closed and
 * why) at G_LOG_LEVEL_DEBUG in the log domain "msgport-glib", which
 * G_MESSAGES_DEBUG=msgport-glib (or =all) shows. Off, it costs one load of
 * a cached flag and a branch: whether the domain is shown is asked of
 * GLib once per process (g_log_writer_default_would_drop()), and the
 * arguments are not evaluated. Warnings keep their domain, "Msg".
 *
 * Never log under an endpoint, dispatcher or connection lock: a log
 * writer or handler is application code.
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define MSG_DEBUG_DOMAIN "msgport-glib"

/* 0: not asked yet; 1: off; 2: on. */
extern gint msg_debug_state;  /* (atomic) */

gboolean msg_debug_check (void);

static inline gboolean
msg_debug_enabled (void)
{
  gint state = g_atomic_int_get (&msg_debug_state);

  if (G_LIKELY (state == 1))
    return FALSE;
  return state == 2 || msg_debug_check ();
}

#define MSG_DEBUG(...)                                                  \
  G_STMT_START {                                                        \
    if (G_UNLIKELY (msg_debug_enabled ()))                              \
      g_log (MSG_DEBUG_DOMAIN, G_LOG_LEVEL_DEBUG, __VA_ARGS__);         \
  } G_STMT_END

G_END_DECLS
