/* msg-io-thread.c: the transport's library thread and its system calls
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * One thread per process, with a GMainContext of its own, reads every
 * socket and writes what posting threads left queued, so that I/O makes
 * progress whatever the application's main contexts do. It is started on
 * first use, and again in a child after fork(), where the parent's thread
 * does not exist; the fork count tells a connection made before a fork
 * that it belongs to the parent.
 *
 * The system calls the transport makes on sockets go through one small
 * table, so that a test can put faults in them.
 */

#include "config.h"

#include <pthread.h>
#ifdef HAVE_MALLOC_TRIM
# include <malloc.h>
#endif
#include <unistd.h>

#include "msg-io-thread-private.h"
#include "msg-lock-private.h"

static ssize_t
real_sendmsg (int fd, const struct msghdr *message, int flags)
{
  return sendmsg (fd, message, flags);
}

static ssize_t
real_recvmsg (int fd, struct msghdr *message, int flags)
{
  return recvmsg (fd, message, flags);
}

static int
real_socketpair (int domain, int type, int protocol, int fds[2])
{
  return socketpair (domain, type, protocol, fds);
}

static const MsgSyscalls real_syscalls = {
  real_sendmsg,
  real_recvmsg,
  real_socketpair,
};

static const MsgSyscalls *syscalls = &real_syscalls;  /* (atomic) */

void
msg_transport_set_syscalls (const MsgSyscalls *replacement)
{
  g_atomic_pointer_set (&syscalls, replacement != NULL ? replacement : &real_syscalls);
}

const MsgSyscalls *
msg_io_syscalls (void)
{
  return g_atomic_pointer_get (&syscalls);
}

static gint n_memory_given_back;  /* (atomic) */

guint
msg_transport_count_memory_given_back (void)
{
  return g_atomic_int_get (&n_memory_given_back);
}

/* A backlog drained: the messages it held (the application's GVariants,
 * and our frames and items) are freed, but glibc keeps freed memory in its
 * heap, and gives back only what is at its very top; anything allocated
 * after the backlog keeps the rest. 100 000 posts of 1 KiB to a stopped
 * peer left the sender 128 MiB resident once they were all written, and
 * 5 MiB after malloc_trim() (41 MiB with the slice allocator of GLib
 * before 2.76, whose caches this cannot reach). One trim per backlog of
 * MSG_OUT_TRIM_AFTER_BACKLOG:
 * it returns every free page of every arena, in a few milliseconds, and
 * what the next burst allocates is faulted in again, so it is not done
 * for every queue that empties. The I/O thread calls it, with no lock
 * held. */
void
msg_io_give_back_memory (void)
{
  g_atomic_int_inc (&n_memory_given_back);
#ifdef HAVE_MALLOC_TRIM
  malloc_trim (0);
#endif
}

static GMutex io_lock;
static GMainContext *io_context;   /* protected by io_lock */
static pid_t io_pid;               /* protected by io_lock */

/* A child forked with connections of its parent must not read them (the
 * parent does); its contexts may still hold leases. */
static guint fork_count;  /* (atomic) */

static void
count_fork (void)
{
  g_atomic_int_inc (&fork_count);
}

static gpointer
io_thread_main (gpointer data)
{
  GMainContext *context = data;

  g_main_context_push_thread_default (context);
  for (;;)
    g_main_context_iteration (context, TRUE);

  return NULL;
}

/* Before the first count is taken: a fork between a connection's count
 * and the I/O thread's start must be counted too. */
static void
ensure_fork_count (void)
{
  static gsize at_fork = 0;

  if (g_once_init_enter (&at_fork))
    {
      pthread_atfork (NULL, NULL, count_fork);
      g_once_init_leave (&at_fork, 1);
    }
}

guint
msg_io_thread_get_forks (void)
{
  ensure_fork_count ();
  return g_atomic_int_get (&fork_count);
}

GMainContext *
msg_io_thread_get_context (void)
{
  GMainContext *context;

  ensure_fork_count ();
  msg_mutex_lock (&io_lock);
  if (io_context == NULL || io_pid != getpid ())
    {
      /* The I/O thread's g_main_context_push_thread_default() looks the
       * global default context up, and would create it there if it did
       * not exist yet: then the thread that uses it first takes it from
       * that thread under a lock of GLib's, which ThreadSanitizer cannot
       * see. Created here, it comes before the thread. */
      (void) g_main_context_default ();
      io_context = g_main_context_new ();
      io_pid = getpid ();
      g_thread_unref (g_thread_new ("msgport-io", io_thread_main, io_context));
    }
  context = io_context;
  msg_mutex_unlock (&io_lock);

  return context;
}
