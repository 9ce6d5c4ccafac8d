/* msg-lock-private.h: locking that ThreadSanitizer can see
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * GLib 2.74's GMutex is built on futexes, which ThreadSanitizer does not
 * understand; every lock of the library goes through these helpers so that a
 * TSan build sees the happens-before edges they create.
 */

#pragma once

#include <glib.h>

#if defined (__SANITIZE_THREAD__)
# define MSG_HAVE_TSAN 1
#elif defined (__has_feature)
# if __has_feature (thread_sanitizer)
#  define MSG_HAVE_TSAN 1
# endif
#endif

#ifdef MSG_HAVE_TSAN
void __tsan_acquire (void *addr);
void __tsan_release (void *addr);
# define MSG_TSAN_ACQUIRE(addr) __tsan_acquire ((void *) (addr))
# define MSG_TSAN_RELEASE(addr) __tsan_release ((void *) (addr))
#else
# define MSG_TSAN_ACQUIRE(addr) G_STMT_START { } G_STMT_END
# define MSG_TSAN_RELEASE(addr) G_STMT_START { } G_STMT_END
#endif

static inline void
msg_mutex_lock (GMutex *mutex)
{
  g_mutex_lock (mutex);
  MSG_TSAN_ACQUIRE (mutex);
}

static inline void
msg_mutex_unlock (GMutex *mutex)
{
  MSG_TSAN_RELEASE (mutex);
  g_mutex_unlock (mutex);
}
