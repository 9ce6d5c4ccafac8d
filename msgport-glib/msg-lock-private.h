/* msg-lock-private.h: locking that ThreadSanitizer can see
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * GLib 2.74's GMutex is built on futexes, which ThreadSanitizer does not
 * understand; every lock of the library goes through these helpers so that a
 * TSan build sees the happens-before edges they create. The same holds for
 * GCond, for gatomicrefcount (g_atomic_ref_count_dec() is a call into GLib,
 * which is not instrumented: the helpers do its atomics inline) and for a
 * GSource's reference count, so those go through helpers too. Without TSan
 * they are the GLib calls themselves, or their inline equivalents.
 * docs/testing.md says how to run the TSan build.
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
# include <pthread.h>

void __tsan_acquire (void *addr);
void __tsan_release (void *addr);
void AnnotateIgnoreReadsBegin (const char *file, int line);
void AnnotateIgnoreReadsEnd (const char *file, int line);
void AnnotateIgnoreWritesBegin (const char *file, int line);
void AnnotateIgnoreWritesEnd (const char *file, int line);
# define MSG_TSAN_ACQUIRE(addr) __tsan_acquire ((void *) (addr))
# define MSG_TSAN_RELEASE(addr) __tsan_release ((void *) (addr))

/* How deep this thread is in msg_tsan_glib_begin() (msg-endpoint.c). */
extern __thread guint msg_tsan_glib_depth;
/* Serializes msg_variant_unref() in TSan builds (msg-endpoint.c). */
extern pthread_mutex_t msg_tsan_variant_lock;

static inline void
msg_tsan_ignore_begin (void)
{
  AnnotateIgnoreReadsBegin (__FILE__, __LINE__);
  AnnotateIgnoreWritesBegin (__FILE__, __LINE__);
}

static inline void
msg_tsan_ignore_end (void)
{
  AnnotateIgnoreWritesEnd (__FILE__, __LINE__);
  AnnotateIgnoreReadsEnd (__FILE__, __LINE__);
}
#else
# define MSG_TSAN_ACQUIRE(addr) G_STMT_START { } G_STMT_END
# define MSG_TSAN_RELEASE(addr) G_STMT_START { } G_STMT_END
#endif

/* Around a call that makes GLib change a GMainContext that another
 * thread iterates (a source's last unref removes it from its context's
 * tables; an attach adds it), when it may be this thread's and not the
 * context's owner's: GLib does that under the context's lock, which
 * ThreadSanitizer cannot see, and TSan cannot name the static functions
 * of gmain.c that do it to suppress them (docs/testing.md). TSan ignores
 * the memory accesses in between, GLib's own; the library's code that
 * GLib calls meanwhile (a finalize()) is checked all the same, see
 * msg_source_finalizing(). */
static inline void
msg_tsan_glib_begin (void)
{
#ifdef MSG_HAVE_TSAN
  msg_tsan_glib_depth++;
  msg_tsan_ignore_begin ();
#endif
}

static inline void
msg_tsan_glib_end (void)
{
#ifdef MSG_HAVE_TSAN
  msg_tsan_ignore_end ();
  msg_tsan_glib_depth--;
#endif
}

/* The lock rules written in comments are checked in debug builds: a
 * function named *_locked() starts with msg_mutex_assert_held() on the
 * lock it needs. A GMutex does not know which thread holds it, so this
 * checks that some thread does: a caller that forgot to lock is caught
 * (a try-lock that succeeds), whatever the timing. Release builds compile
 * it away. */
#ifdef MSG_ENABLE_LOCK_CHECKS
# define msg_mutex_assert_held(mutex) G_STMT_START {                        \
  if (G_UNLIKELY (g_mutex_trylock (mutex)))                                 \
    {                                                                       \
      g_mutex_unlock (mutex);                                               \
      g_error ("%s: %s is not locked", G_STRFUNC, #mutex);                  \
    }                                                                       \
} G_STMT_END
#else
# define msg_mutex_assert_held(mutex) G_STMT_START { } G_STMT_END
#endif

/* Atomics: g_atomic_*() everywhere (sequentially consistent), except
 * where a weaker order is argued where it is used; those go through these,
 * never through __atomic_*() directly. */
static inline void
msg_atomic_int_set_release (gint *atomic,
                            gint  value)
{
  __atomic_store_n (atomic, value, __ATOMIC_RELEASE);
}

static inline gint
msg_atomic_int_get_relaxed (const gint *atomic)
{
  return __atomic_load_n (atomic, __ATOMIC_RELAXED);
}

/* 64-bit counters (flow control, per-port counters), which g_atomic_*()
 * cannot hold on every platform: sequentially consistent, like GLib's. */
static inline guint64
msg_atomic_u64_get (const guint64 *atomic)
{
  return __atomic_load_n (atomic, __ATOMIC_SEQ_CST);
}

static inline void
msg_atomic_u64_set (guint64 *atomic,
                    guint64  value)
{
  __atomic_store_n (atomic, value, __ATOMIC_SEQ_CST);
}

/* For a counter that only one thread writes at a time (under a lock),
 * and others read: a plain store, not a locked instruction. */
static inline void
msg_atomic_u64_set_release (guint64 *atomic,
                            guint64  value)
{
  __atomic_store_n (atomic, value, __ATOMIC_RELEASE);
}

static inline guint64
msg_atomic_u64_get_relaxed (const guint64 *atomic)
{
  return __atomic_load_n (atomic, __ATOMIC_RELAXED);
}

/* Returns the new value. */
static inline guint64
msg_atomic_u64_add (guint64 *atomic,
                    guint64  value)
{
  return __atomic_add_fetch (atomic, value, __ATOMIC_SEQ_CST);
}

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

/* g_cond_wait() unlocks @mutex and takes it again behind TSan's back. */
static inline void
msg_cond_wait (GCond  *cond,
               GMutex *mutex)
{
  MSG_TSAN_RELEASE (mutex);
  g_cond_wait (cond, mutex);
  MSG_TSAN_ACQUIRE (mutex);
}

static inline gboolean
msg_cond_wait_until (GCond  *cond,
                     GMutex *mutex,
                     gint64  end_time)
{
  gboolean signalled;

  MSG_TSAN_RELEASE (mutex);
  signalled = g_cond_wait_until (cond, mutex, end_time);
  MSG_TSAN_ACQUIRE (mutex);
  return signalled;
}

/* g_atomic_ref_count_inc(), with its checks, inline: GLib's is a call,
 * and a post takes a reference on its peer endpoint. */
static inline void
msg_atomic_ref_count_inc (gatomicrefcount *ref_count)
{
  gint old_value = g_atomic_int_add (ref_count, 1);

  g_return_if_fail (old_value > 0);
  if (G_UNLIKELY (old_value == G_MAXINT))
    g_critical ("Reference count has reached saturation");
}

/* g_atomic_ref_count_dec(), with its check, inline, for a count whose last
 * reference frees the object: what each holder did before it dropped its
 * reference happens before what the last one does after (the usual
 * release decrement and acquire on zero). */
static inline gboolean
msg_atomic_ref_count_dec (gatomicrefcount *ref_count)
{
  gint old_value;

  MSG_TSAN_RELEASE (ref_count);
  old_value = g_atomic_int_add (ref_count, -1);
  g_return_val_if_fail (old_value > 0, FALSE);
  if (old_value != 1)
    return FALSE;
  MSG_TSAN_ACQUIRE (ref_count);
  return TRUE;
}

/* g_source_unref() for a source of the library's own type, whose
 * finalize() starts with msg_source_finalizing(): the same edge for a
 * GSource's count, which GLib keeps with its own atomics or under its
 * context's lock. GLib's own unrefs (a context letting go of a destroyed
 * source) add no edge, but they come after the library's last use on that
 * thread, which ends in an annotated unlock. */
static inline void
msg_source_unref (GSource *source)
{
  MSG_TSAN_RELEASE (source);
  msg_tsan_glib_begin ();
  g_source_unref (source);
  msg_tsan_glib_end ();
}

/* At the start of a finalize(): the library's own code, checked again if
 * it runs inside msg_source_unref(). Pair with msg_source_finalized(). */
static inline void
msg_source_finalizing (GSource *source)
{
  MSG_TSAN_ACQUIRE (source);
#ifdef MSG_HAVE_TSAN
  if (msg_tsan_glib_depth > 0)
    msg_tsan_ignore_end ();
#endif
}

static inline void
msg_source_finalized (GSource *source)
{
#ifdef MSG_HAVE_TSAN
  if (msg_tsan_glib_depth > 0)
    msg_tsan_ignore_begin ();
#endif
}

/* At the end of a dispatch() of the library's own: GLib drops the
 * reference it held across dispatch(), in its own code, which may be the
 * second last; the last one then finalizes in another thread. */
static inline void
msg_source_dispatched (GSource *source)
{
  MSG_TSAN_RELEASE (source);
}

/* g_variant_unref() of a message that another thread may hold a reference
 * to as well, and read: a message a handler posts to another process is
 * the event's and the I/O thread's, which writes it, and a message posted
 * between threads is the sender's and the receiver's. GLib counts
 * references with atomics TSan cannot see, so in a TSan build every such
 * unref is made under one mutex that TSan does see: whichever unref is the
 * last is ordered after every other thread's reads and unrefs. (An
 * acquire and release on the variant before the decrement leave a window
 * in which two unrefs cross, which the stress test hit.) Recursive: the
 * last unref may run a GDestroyNotify that posts, and unrefs again. */
static inline void
msg_variant_unref (GVariant *variant)
{
#ifdef MSG_HAVE_TSAN
  pthread_mutex_lock (&msg_tsan_variant_lock);
  g_variant_unref (variant);
  pthread_mutex_unlock (&msg_tsan_variant_lock);
#else
  g_variant_unref (variant);
#endif
}
