/* msg-io-thread-private.h: the transport's library thread and its system calls
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <glib.h>

G_BEGIN_DECLS

/* The system calls of the transport, behind one small table so that a test
 * can put faults in them (short writes, EINTR, EAGAIN, EPIPE, ...). */
typedef struct
{
  ssize_t (*sendmsg)    (int                  fd,
                         const struct msghdr *message,
                         int                  flags);
  ssize_t (*recvmsg)    (int                  fd,
                         struct msghdr       *message,
                         int                  flags);
  int     (*socketpair) (int                  domain,
                         int                  type,
                         int                  protocol,
                         int                  fds[2]);
} MsgSyscalls;

/* The system calls in use. Any thread. */
const MsgSyscalls *msg_io_syscalls             (void);
/* Replaces the system calls (NULL restores the real ones). Tests only. */
void          msg_transport_set_syscalls      (const MsgSyscalls *syscalls);

/* The context of the I/O thread, started on first use (and again in a
 * child after fork()). Any thread. */
GMainContext *msg_io_thread_get_context       (void);
/* How many times this process was forked, as seen by the child: a
 * connection made with another count belongs to a parent. */
guint         msg_io_thread_get_forks         (void);

/* A backlog drained: gives the heap's free pages back to the system. The
 * I/O thread calls it, with no lock held. */
void          msg_io_give_back_memory         (void);
/* How many times a drained backlog gave memory back. Tests only. */
guint         msg_transport_count_memory_given_back (void);

G_END_DECLS
