/* faults.c: the process transport under injected system-call faults
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * White-box: swaps the transport's system calls (msg_transport_set_syscalls)
 * for ones that write and read a few bytes at a time and fail with EINTR and
 * EAGAIN at random, and checks that nothing is lost, duplicated, reordered
 * or corrupted; then for one that fails for good mid-stream, and checks that
 * both ends close exactly once.
 */

#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gio/gunixfdlist.h>

#include "msg-test-utils.h"
#include "msg-port-main-private.h"
#include "wire/msg-transport-private.h"
#include "wire/msg-wire-private.h"

static gint fault_budget = -1;  /* (atomic): sendmsg calls before @fault_errno */
static gint fault_bytes = -1;  /* (atomic): bytes budget_sendmsg() lets through
                                * before its writes fail with @fault_errno */
static gint fault_errno = ECONNRESET;  /* (atomic) */
static gsize fault_ino;  /* (atomic): 0, or the inode of the one socket
                          * whose writes fail (its peer acknowledges what
                          * it takes: its writes must not fail first) */
static GMutex rand_lock;
static GRand *rand_state;

static guint
random_below (guint n)
{
  guint value;

  msg_mutex_lock (&rand_lock);
  value = g_rand_int_range (rand_state, 0, n);
  msg_mutex_unlock (&rand_lock);
  return value;
}

/* Whether writes to @fd may fail: those to every socket, or to the one of
 * @fault_ino. */
static gboolean
faults_here (int fd)
{
  gsize ino = (gsize) g_atomic_pointer_get (&fault_ino);
  struct stat st;

  return ino == 0 || (fstat (fd, &st) == 0 && (gsize) st.st_ino == ino);
}

/* Whether the fault budget ran out with this call: @fault_errno, once. */
static gboolean
budget_spent (void)
{
  if (g_atomic_int_get (&fault_budget) >= 0 && g_atomic_int_add (&fault_budget, -1) <= 0)
    {
      errno = g_atomic_int_get (&fault_errno);
      return TRUE;
    }
  return FALSE;
}

static ssize_t
faulty_sendmsg (int                  fd,
                const struct msghdr *message,
                int                  flags)
{
  struct msghdr shorter = *message;
  struct iovec iov;
  gsize limit = 1 + random_below (64);
  guint dice = random_below (10);

  if (!faults_here (fd))
    return sendmsg (fd, message, flags);
  if (budget_spent ())
    return -1;
  if (dice == 0)
    {
      errno = EINTR;
      return -1;
    }
  if (dice == 1)
    {
      errno = EAGAIN;
      return -1;
    }

  /* A short write: at most @limit bytes of the first iovec. */
  iov = message->msg_iov[0];
  iov.iov_len = MIN (iov.iov_len, limit);
  shorter.msg_iov = &iov;
  shorter.msg_iovlen = 1;
  return sendmsg (fd, &shorter, flags);
}

static ssize_t
faulty_recvmsg (int            fd,
                struct msghdr *message,
                int            flags)
{
  struct iovec *iov = message->msg_iov;
  gsize saved = iov[0].iov_len;
  gsize limit = 1 + random_below (100);
  guint dice = random_below (10);
  ssize_t n;

  if (dice == 0)
    {
      errno = EINTR;
      return -1;
    }
  iov[0].iov_len = MIN (saved, limit);
  n = recvmsg (fd, message, flags);
  iov[0].iov_len = saved;
  return n;
}

static int
faulty_socketpair (int domain,
                   int type,
                   int protocol,
                   int fds[2])
{
  return socketpair (domain, type, protocol, fds);
}

static const MsgSyscalls faulty = {
  faulty_sendmsg,
  faulty_recvmsg,
  faulty_socketpair,
};

/* Whether a write of @len bytes would go past @fault_bytes: @fault_errno,
 * for it and every write after it. Bytes, not calls: how many messages
 * one sendmsg() carries depends on how far the I/O thread is behind
 * (frames queued behind the hello share a chunk and one write), and the
 * fault must come before the last message whatever the timing. */
static gboolean
bytes_spent (gsize len)
{
  gint left, next;

  do
    {
      left = g_atomic_int_get (&fault_bytes);
      if (left < 0)
        return FALSE;
      next = (gsize) left > len ? left - (gint) len : 0;
    }
  while (!g_atomic_int_compare_and_exchange (&fault_bytes, left, next));

  if ((gsize) left > len)
    return FALSE;
  errno = g_atomic_int_get (&fault_errno);
  return TRUE;
}

/* Whole writes until @fault_bytes runs out. */
static ssize_t
budget_sendmsg (int                  fd,
                const struct msghdr *message,
                int                  flags)
{
  gsize len = 0;

  for (gsize i = 0; i < (gsize) message->msg_iovlen; i++)
    len += message->msg_iov[i].iov_len;
  return faults_here (fd) && bytes_spent (len) ? -1 : sendmsg (fd, message, flags);
}

static const MsgSyscalls budgeted = {
  budget_sendmsg,
  recvmsg,
  faulty_socketpair,
};

/* A socket pair whose first end, @a, is the one whose writes fail: its
 * peer acknowledges what it takes, and those writes must not fail first. */
static void
fault_socket_ports (MsgPortMain **a,
                    MsgPortMain **b)
{
  g_autoptr(GError) error = NULL;
  struct stat st;
  int fds[2];

  g_assert_no_errno (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  g_assert_no_errno (fstat (fds[0], &st));
  g_atomic_pointer_set (&fault_ino, (gsize) st.st_ino);
  *a = msg_port_main_new_for_fd (fds[0], &error);
  g_assert_no_error (error);
  *b = msg_port_main_new_for_fd (fds[1], &error);
  g_assert_no_error (error);
}

/* Every fault off again. */
static void
faults_reset (void)
{
  msg_transport_set_syscalls (NULL);
  msg_transport_set_always_queue (FALSE);
  g_atomic_int_set (&fault_budget, -1);
  g_atomic_int_set (&fault_bytes, -1);
  g_atomic_int_set (&fault_errno, ECONNRESET);
  g_atomic_pointer_set (&fault_ino, 0);
}

static void
test_faults_short_and_interrupted (gconstpointer param)
{
  gboolean memfd = GPOINTER_TO_INT (param);
  MsgPortMain *a, *b, *moving, *moved;
  g_autoptr(MsgRecorder) rec = NULL;
  g_autoptr(MsgRecorder) rec_moved = NULL;
  g_autoptr(MsgRecorder) rec_port1 = NULL;
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  g_autofree guint8 *blob = g_malloc (100000);
  GVariant *big;
  guint n = g_getenv ("MSG_TEST_QUICK") ? 200 : 2000;

  g_test_summary ("Short writes and reads, EINTR and EAGAIN everywhere: every message, "
                  "port and descriptor still arrives intact and in order");

  for (gsize i = 0; i < 100000; i++)
    blob[i] = i % 251;
  big = g_variant_ref_sink (g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, blob, 100000, 1));

  /* With @memfd, the large messages travel in memfds: descriptors in
   * frames that are written in pieces. */
  msg_wire_set_memfd_threshold (memfd ? 32 * 1024 : -1);
  msg_transport_set_syscalls (&faulty);
  msg_test_socket_ports (&a, &b);
  rec = msg_recorder_new (b);
  rec_port1 = msg_recorder_new (msg_channel_main_get_port1 (channel));
  msg_port_main_start (b);
  msg_port_main_start (msg_channel_main_get_port1 (channel));

  for (guint i = 0; i < n; i++)
    {
      if (i == n / 2)
        {
          moving = msg_channel_main_get_port2 (channel);
          g_assert_true (msg_port_main_post_message (a, g_variant_new_uint32 (i), &moving, 1, NULL));
        }
      else if (i % 100 == 7)
        g_assert_true (msg_port_main_post (a, big, NULL));
      else
        g_assert_true (msg_port_main_post (a, g_variant_new ("(us)", i, "some text"), NULL));
    }

  msg_test_wait_until (NULL, rec->events->len == n);
  for (guint i = 0; i < n; i++)
    {
      GVariant *data = msg_recorder_data (rec, i);

      if (i == n / 2)
        g_assert_cmpuint (g_variant_get_uint32 (data), ==, i);
      else if (i % 100 == 7)
        g_assert_true (g_variant_equal (data, big));
      else
        {
          guint32 seq;
          const char *text;

          g_variant_get (data, "(u&s)", &seq, &text);
          g_assert_cmpuint (seq, ==, i);
          g_assert_cmpstr (text, ==, "some text");
        }
    }

  /* The port that crossed works both ways. */
  moved = msg_message_event_get_port (g_ptr_array_index (rec->events, n / 2), 0);
  rec_moved = msg_recorder_new (moved);
  msg_port_main_start (moved);
  msg_port_main_post (msg_channel_main_get_port1 (channel), g_variant_new_string ("ping"), NULL);
  msg_port_main_post (moved, g_variant_new_string ("pong"), NULL);
  msg_test_wait_until (NULL, rec_moved->events->len == 1 && rec_port1->events->len == 1);

  msg_port_main_close (a);
  msg_test_wait_until (NULL, rec->n_close == 1);
  msg_port_main_close (moved);
  msg_test_wait_until (NULL, rec_port1->n_close == 1);

  msg_transport_set_syscalls (NULL);
  msg_wire_set_memfd_threshold (-1);
  g_variant_unref (big);
  g_object_unref (a);
  g_object_unref (b);
}

static void
test_faults_reset_mid_stream (gconstpointer data)
{
  gboolean direct = GPOINTER_TO_INT (data);
  MsgPortMain *a, *b;
  g_autoptr(MsgRecorder) rec_a = NULL;
  g_autoptr(MsgRecorder) rec_b = NULL;
  g_autoptr(GError) reason = NULL;

  g_test_summary ("sendmsg() failing for good mid-stream: both ends close exactly once, "
                  "the receiver after a prefix of the messages, in order");

  fault_socket_ports (&a, &b);
  rec_a = msg_recorder_new (a);
  rec_b = msg_recorder_new (b);
  msg_port_main_start (a);
  msg_port_main_start (b);

  /* Direct: whole writes, mostly each post written by the posting thread
   * (this thread posts outside any callback), whose failed write must
   * still end the connection, until 1 KiB of the 500 messages' 22 KiB are
   * written; else every post queued for the I/O thread, and short writes
   * until 40 calls. */
  msg_transport_set_always_queue (!direct);
  if (direct)
    g_atomic_int_set (&fault_bytes, 1024);
  else
    g_atomic_int_set (&fault_budget, 40);
  msg_transport_set_syscalls (direct ? &budgeted : &faulty);
  for (guint i = 0; i < 500; i++)
    msg_port_main_post (a, g_variant_new_uint32 (i), NULL);

  msg_test_wait_until (NULL, rec_a->n_close == 1 && rec_b->n_close == 1);
  faults_reset ();

  reason = msg_port_main_get_close_reason (a);
  g_assert_error (reason, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_GONE);
  g_assert_cmpuint (rec_b->events->len, <, 500);
  for (guint i = 0; i < rec_b->events->len; i++)
    g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec_b, i)), ==, i);
  msg_test_drain (NULL);
  g_assert_cmpuint (rec_a->n_close, ==, 1);
  g_assert_cmpuint (rec_b->n_close, ==, 1);

  g_object_unref (a);
  g_object_unref (b);
}

static void
test_faults_write_error_io (gconstpointer data)
{
  gboolean direct = GPOINTER_TO_INT (data);
  MsgPortMain *a, *b;
  g_autoptr(MsgRecorder) rec_a = NULL;
  g_autoptr(MsgRecorder) rec_b = NULL;
  g_autoptr(GError) reason_a = NULL;
  g_autoptr(GError) reason_b = NULL;

  g_test_summary ("sendmsg() failing with EIO: the writing end closes with "
                  "MSG_PORT_ERROR_IO (not PEER_GONE: the peer did nothing wrong), the "
                  "other end with PEER_GONE when the socket closes, each once, after a "
                  "prefix of the messages, in order");

  fault_socket_ports (&a, &b);
  rec_a = msg_recorder_new (a);
  rec_b = msg_recorder_new (b);
  msg_port_main_start (a);
  msg_port_main_start (b);

  /* Direct: whole writes, mostly each post written by the posting thread,
   * whose failed write the I/O thread must still report, until 1 KiB of
   * the 200 messages' 8.8 KiB are written; else short writes, mostly by the
   * I/O thread, until 40 calls. */
  msg_transport_set_always_queue (!direct);
  g_atomic_int_set (&fault_errno, EIO);
  if (direct)
    g_atomic_int_set (&fault_bytes, 1024);
  else
    g_atomic_int_set (&fault_budget, 40);
  msg_transport_set_syscalls (direct ? &budgeted : &faulty);
  for (guint i = 0; i < 200; i++)
    msg_port_main_post (a, g_variant_new_uint32 (i), NULL);

  msg_test_wait_until (NULL, rec_a->n_close == 1 && rec_b->n_close == 1);
  faults_reset ();

  reason_a = msg_port_main_get_close_reason (a);
  g_assert_error (reason_a, MSG_PORT_ERROR, MSG_PORT_ERROR_IO);
  reason_b = msg_port_main_get_close_reason (b);
  g_assert_error (reason_b, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_GONE);
  g_assert_cmpuint (rec_b->events->len, <, 200);
  for (guint i = 0; i < rec_b->events->len; i++)
    g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec_b, i)), ==, i);
  msg_test_drain (NULL);
  g_assert_cmpuint (rec_a->n_close, ==, 1);
  g_assert_cmpuint (rec_b->n_close, ==, 1);

  g_object_unref (a);
  g_object_unref (b);
}

#define N_POSTERS 4

static void
test_faults_concurrent_posters (void)
{
  MsgPortMain *a, *b;
  g_autoptr(MsgRecorder) rec = NULL;
  MsgTestPosters *posters;
  guint64 next[N_POSTERS] = { 0, };
  guint n = g_getenv ("MSG_TEST_QUICK") ? 300 : 3000;

  g_test_summary ("Threads posting on one socket-backed port at once, each writing "
                  "directly when the queue is empty while the I/O thread writes what "
                  "short writes and EAGAIN left: each thread's messages arrive once, "
                  "whole and in its order");

  /* Every post that finds the queue empty is written directly: these
   * threads post outside any main-loop callback. */
  msg_transport_set_syscalls (&faulty);
  msg_test_socket_ports (&a, &b);
  rec = msg_recorder_new (b);
  msg_port_main_start (b);

  posters = msg_test_posters_new (a, N_POSTERS, n);
  msg_test_posters_join (posters);

  msg_test_wait_until (NULL, rec->events->len == N_POSTERS * n);
  for (guint i = 0; i < rec->events->len; i++)
    {
      guint32 index;
      guint64 seq;

      g_variant_get (msg_recorder_data (rec, i), "(ut)", &index, &seq);
      g_assert_cmpuint (index, <, N_POSTERS);
      g_assert_cmpuint (seq, ==, next[index]);
      next[index]++;
    }

  /* flush() accounts for what was written directly too. */
  g_assert_true (msg_port_main_post (a, g_variant_new ("(ut)", 0, (guint64) n), NULL));
  g_assert_true (msg_port_main_flush (a, NULL, NULL));
  msg_test_wait_until (NULL, rec->events->len == N_POSTERS * n + 1);

  msg_port_main_close (a);
  msg_test_wait_until (NULL, rec->n_close == 1);
  msg_transport_set_syscalls (NULL);
  g_object_unref (a);
  g_object_unref (b);
}

/* One socket that takes the first few bytes, then is "full" for good. */
static gint stuck_fd = -1;   /* (atomic) */
static gint stuck_budget;    /* (atomic): bytes it still takes */

static ssize_t
stuck_sendmsg (int                  fd,
               const struct msghdr *message,
               int                  flags)
{
  struct msghdr shorter = *message;
  struct iovec iov;
  gint budget;

  if (fd != g_atomic_int_get (&stuck_fd))
    return sendmsg (fd, message, flags);
  budget = g_atomic_int_get (&stuck_budget);
  if (budget <= 0)
    {
      errno = EAGAIN;
      return -1;
    }
  iov = message->msg_iov[0];
  iov.iov_len = MIN (iov.iov_len, (gsize) budget);
  shorter.msg_iov = &iov;
  shorter.msg_iovlen = 1;
  g_atomic_int_set (&stuck_budget, 0);
  return sendmsg (fd, &shorter, flags);
}

static ssize_t
plain_recvmsg (int            fd,
               struct msghdr *message,
               int            flags)
{
  return recvmsg (fd, message, flags);
}

static gint fail_socketpair;  /* (atomic): socketpair() calls that fail */

static int
maybe_socketpair (int domain,
                  int type,
                  int protocol,
                  int fds[2])
{
  if (g_atomic_int_get (&fail_socketpair) > 0 && g_atomic_int_add (&fail_socketpair, -1) > 0)
    {
      errno = EMFILE;
      return -1;
    }
  return socketpair (domain, type, protocol, fds);
}

static const MsgSyscalls stuck = {
  stuck_sendmsg,
  plain_recvmsg,
  maybe_socketpair,
};

static void
test_faults_move_unwritten (gconstpointer param)
{
  gboolean memfd = GPOINTER_TO_INT (param);
  MsgPortMain *p, *x, *y, *z, *moved;
  g_autoptr(MsgRecorder) rec_y = NULL;
  g_autoptr(MsgRecorder) rec_z = NULL;
  g_autoptr(MsgChannelMain) c1 = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) c2 = msg_channel_main_new ();
  g_autofree guint8 *big = g_malloc0 (300 * 1024);
  MsgPortMain *t1 = msg_channel_main_get_port2 (c1);
  MsgPortMain *t2 = msg_channel_main_get_port2 (c2);
  g_autoptr(GError) error = NULL;
  int fds[2];

  g_test_summary ("A socket-backed port moves while frames carrying ports are queued on "
                  "it unwritten, one partly written: each frame's descriptors still go "
                  "out with that frame, and everything arrives");

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM, 0, fds), ==, 0);
  p = msg_port_main_new_for_fd (fds[0], &error);
  g_assert_no_error (error);
  msg_test_socket_ports (&x, &y);
  rec_y = msg_recorder_new (y);
  msg_port_main_start (y);

  /* With @memfd, the large messages' frames carry descriptors too. */
  msg_wire_set_memfd_threshold (memfd ? 32 * 1024 : -1);
  g_atomic_int_set (&stuck_budget, 10);
  g_atomic_int_set (&stuck_fd, fds[0]);
  msg_transport_set_syscalls (&stuck);
  for (guint i = 0; i < 5; i++)
    msg_port_main_post (p, g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, big, 64 * 1024, 1), NULL);
  g_assert_true (msg_port_main_post_message (p, g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, big,
                                                                           300 * 1024, 1), &t1, 1, NULL));
  g_assert_true (msg_port_main_post_message (p, g_variant_new_string ("C"), &t2, 1, NULL));
  g_assert_true (msg_port_main_post_message (x, NULL, &p, 1, NULL));
  msg_test_wait_until (NULL, rec_y->events->len == 1);
  g_atomic_int_set (&stuck_fd, -1);
  msg_transport_set_syscalls (NULL);
  msg_wire_set_memfd_threshold (-1);

  /* The moved port writes what was left; read it at the old raw end. */
  moved = msg_message_event_get_port (g_ptr_array_index (rec_y->events, 0), 0);
  msg_port_main_start (moved);
  z = msg_port_main_new_for_fd (fds[1], &error);
  g_assert_no_error (error);
  rec_z = msg_recorder_new (z);
  msg_port_main_start (z);
  msg_test_wait_until (NULL, rec_z->events->len == 7 || rec_z->n_close > 0);
  g_assert_cmpuint (rec_z->n_close, ==, 0);
  g_assert_cmpuint (rec_z->events->len, ==, 7);
  g_assert_cmpuint (msg_message_event_get_n_ports (g_ptr_array_index (rec_z->events, 5)), ==, 1);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec_z, 6), NULL), ==, "C");

  /* And the ports in them work. */
  {
    MsgPortMain *got = msg_message_event_get_port (g_ptr_array_index (rec_z->events, 6), 0);
    g_autoptr(MsgRecorder) rec_got = msg_recorder_new (got);

    msg_port_main_start (got);
    msg_port_main_post (msg_channel_main_get_port1 (c2), g_variant_new_string ("through"), NULL);
    msg_test_wait_until (NULL, rec_got->events->len == 1);
    msg_port_main_close (got);
    msg_test_wait_until (NULL, rec_got->n_close == 1);
  }

  msg_port_main_close (z);
  msg_port_main_close (x);
  msg_test_wait_until (NULL, rec_y->n_close == 1);
  g_object_unref (p);
  g_object_unref (x);
  g_object_unref (y);
  g_object_unref (z);
}

/* Every socket in this process that is one given socket (its inode: the
 * descriptors a port gets when it moves are new numbers for the same
 * socket) takes a few bytes, then is "full" for good. */
static gsize stalled_ino;   /* (atomic): 0 for none */

static gboolean
is_stalled_socket (int fd)
{
  struct stat st;
  gsize ino = (gsize) g_atomic_pointer_get (&stalled_ino);

  return ino != 0 && fstat (fd, &st) == 0 && (gsize) st.st_ino == ino;
}

static ssize_t
stalled_sendmsg (int                  fd,
                 const struct msghdr *message,
                 int                  flags)
{
  struct msghdr shorter = *message;
  struct iovec iov;

  if (!is_stalled_socket (fd))
    return sendmsg (fd, message, flags);
  if (g_atomic_int_get (&stuck_budget) <= 0)
    {
      errno = EAGAIN;
      return -1;
    }
  iov = message->msg_iov[0];
  iov.iov_len = MIN (iov.iov_len, (gsize) g_atomic_int_get (&stuck_budget));
  shorter.msg_iov = &iov;
  shorter.msg_iovlen = 1;
  g_atomic_int_set (&stuck_budget, 0);
  return sendmsg (fd, &shorter, flags);
}

static const MsgSyscalls stalled = {
  stalled_sendmsg,
  plain_recvmsg,
  faulty_socketpair,
};

/* A port on the first end of a new socket pair, fds[0], whose writes
 * the stalled system calls stall once they are set; fds[1] is left for
 * drain_stalled(). */
static MsgPortMain *
stalled_port_new (int fds[2])
{
  g_autoptr(GError) error = NULL;
  MsgPortMain *port;
  struct stat st;

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM, 0, fds), ==, 0);
  g_assert_cmpint (fstat (fds[0], &st), ==, 0);
  port = msg_port_main_new_for_fd (fds[0], &error);
  g_assert_no_error (error);
  g_atomic_pointer_set (&stalled_ino, (gsize) st.st_ino);
  return port;
}

/* Posts @text on @carrier with *@port (taken) and waits until @rec, the
 * recorder of the carrier's peer, has it without closing: returns the
 * port as it arrived. */
static MsgPortMain *
carry_port (MsgPortMain  *carrier,
            MsgRecorder  *rec,
            const char   *text,
            MsgPortMain **port)
{
  guint n = rec->events->len;
  MsgPortMain *moved;

  g_assert_true (msg_port_main_post_message (carrier, g_variant_new_string (text), port, 1, NULL));
  msg_test_wait_until (NULL, rec->events->len == n + 1 || rec->n_close > 0);
  g_assert_cmpuint (rec->n_close, ==, 0);
  moved = msg_message_event_get_port (g_ptr_array_index (rec->events, n), 0);
  g_assert_nonnull (moved);
  return moved;
}

/* The socket of a port that moved (now @moved, not started) writes
 * again: @moved starts and posts the last of @rest, and its peer, made
 * of @fd (*@z, started), gets @first and then the 3 strings of @rest, in
 * order, without closing. */
static void
drain_stalled (MsgPortMain        *moved,
               int                 fd,
               MsgPortMain       **z,
               GVariant           *first,
               const char * const  rest[3])
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MsgRecorder) rec_z = NULL;

  g_atomic_pointer_set (&stalled_ino, 0);
  msg_transport_set_syscalls (NULL);
  msg_port_main_start (moved);
  g_assert_true (msg_port_main_post (moved, g_variant_new_string (rest[2]), NULL));
  *z = msg_port_main_new_for_fd (fd, &error);
  g_assert_no_error (error);
  rec_z = msg_recorder_new (*z);
  msg_port_main_start (*z);
  msg_test_wait_until (NULL, rec_z->events->len == 4 || rec_z->n_close > 0);
  g_assert_cmpuint (rec_z->n_close, ==, 0);
  g_assert_cmpuint (rec_z->events->len, ==, 4);
  g_assert_true (g_variant_equal (msg_recorder_data (rec_z, 0), first));
  for (guint i = 0; i < 3; i++)
    g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec_z, i + 1), NULL), ==, rest[i]);
}

static void
test_faults_move_partial_twice (void)
{
  MsgPortMain *p, *x1, *y1, *x2, *y2, *z, *moved1, *moved2;
  g_autoptr(MsgRecorder) rec_y1 = NULL;
  g_autoptr(MsgRecorder) rec_y2 = NULL;
  g_autoptr(MsgRecorder) rec_moved2 = NULL;
  g_autoptr(GError) reason = NULL;
  g_autofree guint8 *big = g_malloc (64 * 1024);
  g_autoptr(GVariant) first = NULL;
  int fds[2];

  g_test_summary ("A socket-backed port that arrives with the rest of a frame still to "
                  "write, and moves on again before it wrote any of it: the rest still "
                  "counts as the end of a frame, everything arrives in order and neither "
                  "carrier closes");

  for (gsize i = 0; i < 64 * 1024; i++)
    big[i] = i % 251;
  first = g_variant_ref_sink (g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, big, 64 * 1024, 1));

  p = stalled_port_new (fds);
  msg_test_socket_ports (&x1, &y1);
  msg_test_socket_ports (&x2, &y2);
  rec_y1 = msg_recorder_new (y1);
  rec_y2 = msg_recorder_new (y2);
  msg_port_main_start (y1);
  msg_port_main_start (y2);

  /* p writes 10 bytes of its first frame, then its socket takes nothing
   * more, wherever the port goes in this process. */
  g_atomic_int_set (&stuck_budget, 10);
  msg_transport_set_syscalls (&stalled);
  g_assert_true (msg_port_main_post (p, first, NULL));
  g_assert_true (msg_port_main_post (p, g_variant_new_string ("second"), NULL));
  g_assert_true (msg_port_main_post (p, g_variant_new_string ("third"), NULL));
  moved1 = carry_port (x1, rec_y1, "hop 1", &p);

  /* It arrived with the rest of the first frame queued, unwritten: on it
   * goes at once. */
  moved2 = carry_port (x2, rec_y2, "hop 2", &moved1);
  reason = msg_port_main_get_close_reason (y2);
  g_assert_no_error (reason);
  g_assert_cmpuint (rec_y2->events->len, ==, 1);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec_y2, 0), NULL), ==, "hop 2");

  /* The socket drains: everything arrives at the other end, in order,
   * and the port works both ways in its new home. */
  rec_moved2 = msg_recorder_new (moved2);
  drain_stalled (moved2, fds[1], &z, first, (const char *[]) { "second", "third", "fourth" });
  g_assert_true (msg_port_main_post (z, g_variant_new_string ("back"), NULL));
  msg_test_wait_until (NULL, rec_moved2->events->len == 1 || rec_moved2->n_close > 0);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec_moved2, 0), NULL), ==, "back");

  /* Neither carrier was disturbed. */
  g_assert_true (msg_port_main_post (x1, g_variant_new_string ("after"), NULL));
  g_assert_true (msg_port_main_post (x2, g_variant_new_string ("after"), NULL));
  msg_test_wait_until (NULL, rec_y1->events->len == 2 && rec_y2->events->len == 2);
  g_assert_cmpuint (rec_y1->n_close, ==, 0);
  g_assert_cmpuint (rec_y2->n_close, ==, 0);

  msg_port_main_close (z);
  msg_test_wait_until (NULL, rec_moved2->n_close == 1);
  msg_port_main_close (x1);
  msg_port_main_close (x2);
  msg_test_wait_until (NULL, rec_y1->n_close == 1 && rec_y2->n_close == 1);
  g_object_unref (p);
  g_object_unref (x1);
  g_object_unref (y1);
  g_object_unref (x2);
  g_object_unref (y2);
  g_object_unref (z);
}

/* The size of the frame that carries @message alone. */
static gsize
plain_frame_size (GVariant *message)
{
  MsgWireFrame frame = { .kind = MSG_WIRE_FRAME_MESSAGE, .data = message, .data_fd = -1 };
  MsgWireEncoded encoded;
  gsize size;

  g_assert_true (msg_wire_encode (&frame, &encoded, NULL));
  size = g_bytes_get_size (encoded.head) + (encoded.data != NULL ? g_bytes_get_size (encoded.data) : 0);
  msg_wire_encoded_clear (&encoded);
  return size;
}

static void
test_faults_move_partial_chunk (void)
{
  g_test_summary ("Small frames queued behind each other share a chunk: a port that moves "
                  "when its socket took part of one, in the middle of a frame or at the "
                  "end of one, sends the rest on from its new home, in order, and its "
                  "carrier does not close");

  for (guint round = 0; round < 2; round++)
    {
      g_autoptr(GVariant) one = g_variant_ref_sink (g_variant_new_string ("one: 0123456789abcdef"));
      g_autoptr(MsgRecorder) rec_y = NULL;
      g_autoptr(MsgRecorder) rec_moved = NULL;
      MsgPortMain *p, *x, *y, *z, *moved;
      gsize first = plain_frame_size (one);
      int fds[2];

      p = stalled_port_new (fds);
      msg_test_socket_ports (&x, &y);
      rec_y = msg_recorder_new (y);
      msg_port_main_start (y);

      /* Every post queued, so the three share a chunk; the socket takes
       * the first frame and 7 bytes of the second, or the first frame
       * exactly, then nothing. */
      g_atomic_int_set (&stuck_budget, round == 0 ? (gint) first + 7 : (gint) first);
      msg_transport_set_syscalls (&stalled);
      msg_transport_set_always_queue (TRUE);
      g_assert_true (msg_port_main_post (p, one, NULL));
      g_assert_true (msg_port_main_post (p, g_variant_new_string ("two"), NULL));
      g_assert_true (msg_port_main_post (p, g_variant_new_string ("three"), NULL));
      /* Spent on the I/O thread, which does not wake this context. */
      msg_test_wait_polling (g_atomic_int_get (&stuck_budget) == 0);
      msg_transport_set_always_queue (FALSE);

      moved = carry_port (x, rec_y, "hop", &p);
      rec_moved = msg_recorder_new (moved);
      drain_stalled (moved, fds[1], &z, one, (const char *[]) { "two", "three", "four" });

      /* The carrier goes on. */
      g_assert_true (msg_port_main_post (x, g_variant_new_string ("after"), NULL));
      msg_test_wait_until (NULL, rec_y->events->len == 2 || rec_y->n_close > 0);
      g_assert_cmpuint (rec_y->n_close, ==, 0);

      msg_port_main_close (z);
      msg_test_wait_until (NULL, rec_moved->n_close == 1);
      msg_port_main_close (x);
      msg_test_wait_until (NULL, rec_y->n_close == 1);
      g_object_unref (p);
      g_object_unref (x);
      g_object_unref (y);
      g_object_unref (z);
    }
}


/* Posts @n messages of 64 KiB (the same data each time: the queue counts
 * the bytes of each frame) on @port, then lets them all be written and
 * read at the other end, @z. */
static void
post_stalled_backlog (MsgPortMain *port,
                      gsize        ino,
                      MsgRecorder *rec_z,
                      GVariant    *chunk,
                      guint        n)
{
  guint before = rec_z->events->len;

  g_atomic_int_set (&stuck_budget, 0);
  g_atomic_pointer_set (&stalled_ino, ino);
  msg_transport_set_syscalls (&stalled);
  for (guint i = 0; i < n; i++)
    g_assert_true (msg_port_main_post (port, chunk, NULL));
  g_atomic_pointer_set (&stalled_ino, 0);
  msg_transport_set_syscalls (NULL);
  /* Not flush() first: @z takes only so much before this thread lets it
   * run (read-ahead), and what it has not taken is not written. */
  msg_test_wait_until (NULL, rec_z->events->len == before + n || rec_z->n_close > 0);
  g_assert_cmpuint (rec_z->n_close, ==, 0);
  g_assert_true (msg_port_main_flush (port, NULL, NULL));
}

static void
test_faults_backlog_gives_back (void)
{
  MsgPortMain *p, *z;
  g_autoptr(MsgRecorder) rec_z = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *bytes = g_malloc0 (64 * 1024);
  g_autoptr(GVariant) chunk = NULL;
  struct stat st;
  guint given_back;
  int fds[2];

  g_test_summary ("An output queue that held a backlog of 32 MiB or more, to a peer that "
                  "did not read, gives the memory back (malloc_trim()) once it is written, "
                  "once; a backlog of 1 MiB does not");

  chunk = g_variant_ref_sink (g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, bytes, 64 * 1024, 1));
  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM, 0, fds), ==, 0);
  g_assert_cmpint (fstat (fds[0], &st), ==, 0);
  p = msg_port_main_new_for_fd (fds[0], &error);
  g_assert_no_error (error);
  z = msg_port_main_new_for_fd (fds[1], &error);
  g_assert_no_error (error);
  rec_z = msg_recorder_new (z);
  msg_port_main_start (z);

  given_back = msg_transport_count_memory_given_back ();
  post_stalled_backlog (p, st.st_ino, rec_z, chunk, 16);
  g_assert_cmpuint (msg_transport_count_memory_given_back (), ==, given_back);

  /* The I/O thread gives it back after the last write, which nothing in
   * this context hears of: wake it up now and then to look. */
  post_stalled_backlog (p, st.st_ino, rec_z, chunk, 640);
  msg_test_wait_polling (msg_transport_count_memory_given_back () == given_back + 1);
  for (guint i = 0; i < rec_z->events->len; i++)
    {
      GVariant *got = msg_recorder_data (rec_z, i);

      g_assert_cmpmem (g_variant_get_data (got), g_variant_get_size (got),
                       bytes, 64 * 1024);
    }

  /* And not again for what follows, a message at a time. */
  g_assert_true (msg_port_main_post (p, g_variant_new_string ("after"), NULL));
  g_assert_true (msg_port_main_flush (p, NULL, NULL));
  msg_test_wait_until (NULL, rec_z->events->len == 16 + 640 + 1);
  g_assert_cmpuint (msg_transport_count_memory_given_back (), ==, given_back + 1);

  msg_port_main_close (p);
  msg_test_wait_until (NULL, rec_z->n_close == 1);
  g_object_unref (p);
  g_object_unref (z);
}

/* Whether the port queued on @port (unread) has ended: its socket's other
 * end was closed. */
static gboolean
queued_port_ended (MsgPortMain *port)
{
  MsgEndpoint *endpoint = msg_port_main_get_endpoint (port);
  MsgEndpoint *queued = NULL;
  gboolean ended = FALSE;

  msg_mutex_lock (&endpoint->lock);
  if (endpoint->queue.length == 1 &&
      msg_item_is_envelope (endpoint->queue.items[endpoint->queue.head]))
    {
      MsgEnvelope *envelope = msg_item_peek_envelope (endpoint->queue.items[endpoint->queue.head]);

      if (envelope->n_ports == 1)
        queued = msg_endpoint_ref (envelope->ports[0]);
    }
  msg_mutex_unlock (&endpoint->lock);

  if (queued != NULL)
    {
      msg_mutex_lock (&queued->lock);
      ended = queued->ended;
      msg_mutex_unlock (&queued->lock);
      msg_endpoint_unref (queued);
    }
  return ended;
}

static void
test_faults_move_failed (void)
{
  MsgPortMain *p, *x, *y, *q_port, *received, *sender;
  g_autoptr(MsgRecorder) rec_y = NULL;
  g_autoptr(MsgRecorder) rec_received = NULL;
  g_autoptr(GError) error = NULL;
  int raw, q[2];

  g_test_summary ("A port that cannot move (its queue holds a port that must be bridged, "
                  "and no socket pair can be made) closes on both sides; the port that "
                  "carried it is not disturbed");

  msg_test_socket_port_for_port (&raw, &p);
  /* Queued on p, unread: a port whose own channel has already ended. */
  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM, 0, q), ==, 0);
  q_port = msg_port_main_new_for_fd (q[0], &error);
  g_assert_no_error (error);
  close (q[1]);
  /* The raw end becomes a port, to send q_port to p. */
  sender = msg_port_main_new_for_fd (raw, &error);
  g_assert_no_error (error);
  g_assert_true (msg_port_main_post_message (sender, NULL, &q_port, 1, NULL));
  g_assert_true (msg_port_main_flush (sender, NULL, NULL));
  /* Queued on p: a port that cannot move but must be bridged. */
  msg_test_wait_polling (queued_port_ended (p));

  msg_test_socket_ports (&x, &y);
  rec_y = msg_recorder_new (y);
  msg_port_main_start (y);
  msg_transport_set_syscalls (&stuck);
  g_atomic_int_set (&fail_socketpair, 1);
  g_assert_true (msg_port_main_post_message (x, NULL, &p, 1, NULL));
  msg_test_wait_until (NULL, rec_y->events->len == 1);
  g_atomic_int_set (&fail_socketpair, 0);
  msg_transport_set_syscalls (NULL);

  /* It arrives, ended; the carrier is fine. */
  received = msg_message_event_get_port (g_ptr_array_index (rec_y->events, 0), 0);
  rec_received = msg_recorder_new (received);
  msg_port_main_start (received);
  msg_test_wait_until (NULL, rec_received->n_close == 1);
  g_assert_cmpuint (rec_y->n_close, ==, 0);
  msg_port_main_post (x, g_variant_new_string ("still fine"), NULL);
  msg_test_wait_until (NULL, rec_y->events->len == 2);

  msg_port_main_close (x);
  msg_test_wait_until (NULL, rec_y->n_close == 1);
  g_object_unref (p);
  g_object_unref (q_port);
  g_object_unref (sender);
  g_object_unref (x);
  g_object_unref (y);
}

static const MsgSyscalls no_pairs = {
  sendmsg,
  recvmsg,
  maybe_socketpair,
};

/* Posts an in-process port through @x to @y, and checks that it arrives
 * and works. */
static void
assert_port_crosses (MsgPortMain *x,
                     MsgPortMain *y)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *sent = msg_channel_main_get_port1 (channel);
  g_autoptr(MsgRecorder) rec_y = msg_recorder_new (y);
  g_autoptr(MsgRecorder) rec_kept = msg_recorder_new (msg_channel_main_get_port2 (channel));
  MsgPortMain *received;

  msg_port_main_start (y);
  msg_port_main_start (msg_channel_main_get_port2 (channel));
  g_assert_true (msg_port_main_post_message (x, NULL, &sent, 1, NULL));
  msg_test_wait_until (NULL, rec_y->events->len == 1);
  received = msg_message_event_get_port (g_ptr_array_index (rec_y->events, 0), 0);
  msg_port_main_post (received, g_variant_new_string ("across"), NULL);
  msg_test_wait_until (NULL, rec_kept->events->len == 1);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec_kept, 0), NULL), ==, "across");
  msg_port_main_close (received);
  msg_test_wait_until (NULL, rec_kept->n_close == 1);
}

static void
test_faults_export_out_of_descriptors (void)
{
  MsgPortMain *x, *y, *x2, *y2;
  g_autoptr(MsgRecorder) rec_x = NULL;
  g_autoptr(MsgRecorder) rec_y = NULL;
  g_autoptr(MsgRecorder) rec_b = NULL;
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *a = msg_channel_main_get_port1 (channel);
  guint baseline;

  g_test_summary ("No socket pair can be made for a port posted to another process "
                  "(out of descriptors): the port that carried it and the posted port's "
                  "peer close with TOO_MANY_OPEN_FILES, nothing arrives, nothing leaks, "
                  "and once socket pairs can be made again, ports cross");

  /* The descriptors made once per process (the I/O thread's, the
   * context's) exist after a first round. */
  msg_test_socket_ports (&x, &y);
  assert_port_crosses (x, y);
  g_object_unref (x);
  g_object_unref (y);
  baseline = msg_test_count_fds ();

  msg_test_socket_ports (&x, &y);
  rec_x = msg_recorder_new (x);
  rec_y = msg_recorder_new (y);
  rec_b = msg_recorder_new (msg_channel_main_get_port2 (channel));
  msg_port_main_start (x);
  msg_port_main_start (y);
  msg_port_main_start (msg_channel_main_get_port2 (channel));

  msg_transport_set_syscalls (&no_pairs);
  g_atomic_int_set (&fail_socketpair, 1);
  g_assert_true (msg_port_main_post_message (x, g_variant_new_string ("carrying"), &a, 1, NULL));
  msg_test_wait_until (NULL, rec_x->n_close == 1 && rec_y->n_close == 1 && rec_b->n_close == 1);
  g_assert_cmpint (g_atomic_int_get (&fail_socketpair), ==, 0);
  msg_transport_set_syscalls (NULL);

  msg_test_assert_close_reason (x, MSG_PORT_ERROR_TOO_MANY_OPEN_FILES);
  msg_test_assert_close_reason (msg_channel_main_get_port2 (channel), MSG_PORT_ERROR_TOO_MANY_OPEN_FILES);
  /* The other process only sees the socket go. */
  msg_test_assert_close_reason (y, MSG_PORT_ERROR_PEER_GONE);
  g_assert_cmpuint (rec_y->events->len, ==, 0);
  g_assert_cmpuint (rec_b->events->len, ==, 0);

  /* Recovery. */
  msg_test_socket_ports (&x2, &y2);
  assert_port_crosses (x2, y2);

  g_clear_pointer (&rec_x, msg_recorder_free);
  g_clear_pointer (&rec_y, msg_recorder_free);
  g_clear_pointer (&rec_b, msg_recorder_free);
  g_object_unref (x);
  g_object_unref (y);
  g_object_unref (x2);
  g_object_unref (y2);
  g_clear_object (&channel);
  msg_test_wait_for_fds_at_most (baseline);
}

/* How many items wait in @port's queue (it is not started). */
static guint
queue_length (MsgPortMain *port)
{
  MsgEndpoint *endpoint = msg_port_main_get_endpoint (port);
  guint length;

  msg_mutex_lock (&endpoint->lock);
  length = endpoint->queue.length;
  msg_mutex_unlock (&endpoint->lock);
  return length;
}

/* Enough descriptors for the tests below (about 12,000 at once), if the
 * hard limit allows: returns whether it does. */
static gboolean
allow_many_fds (void)
{
  struct rlimit limit;

  g_assert_cmpint (getrlimit (RLIMIT_NOFILE, &limit), ==, 0);
  if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < 16384)
    return FALSE;
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < 16384)
    {
      limit.rlim_cur = 16384;
      g_assert_cmpint (setrlimit (RLIMIT_NOFILE, &limit), ==, 0);
    }
  return TRUE;
}

/* Posts message @seq with @n_fds descriptors (of /dev/null) on @from,
 * and waits until @to, not started, holds @n_queued messages. A port
 * whose messages come from a socket reads ahead at most about 128
 * descriptors or ports (/bounds/read-ahead/ports), but always a whole
 * frame: a message of many descriptors after a few light ones is how its
 * queue comes to hold more than one frame may carry. */
static void
post_with_fds (MsgPortMain *from,
               MsgPortMain *to,
               guint        seq,
               guint        n_fds,
               guint        n_queued)
{
  GUnixFDList *list = g_unix_fd_list_new ();
  g_autoptr(GError) error = NULL;
  int fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);

  g_assert_cmpint (fd, >=, 0);
  for (guint i = 0; i < n_fds; i++)
    g_assert_cmpint (g_unix_fd_list_append (list, fd, &error), ==, (gint) i);
  close (fd);
  g_assert_true (msg_port_main_post_with_unix_fd_list (from, g_variant_new_uint32 (seq), NULL, 0,
                                                       list, &error));
  g_assert_no_error (error);
  g_object_unref (list);
  /* They arrive on the I/O thread, which does not wake this context. */
  msg_test_wait_polling (queue_length (to) == n_queued);
}

static void
test_faults_move_too_large_nested (void)
{
  MsgPortMain *x, *y, *s, *peer, *t, *t_peer, *received;
  g_autoptr(MsgRecorder) rec_y = NULL;
  g_autoptr(MsgRecorder) rec_peer = NULL;
  g_autoptr(MsgRecorder) rec_t_peer = NULL;
  g_autoptr(MsgRecorder) rec_received = NULL;
  guint baseline;

  g_test_summary ("A socket-backed port whose queue holds a port that moves with a state "
                  "of its own, and which together with the rest would not fit in one "
                  "frame, is posted to another process: only its own channel ends, with "
                  "TOO_LARGE at both ends (the queued port's channel with it); the "
                  "carrier goes on, and no descriptor is left");

  if (!allow_many_fds ())
    {
      g_test_skip ("needs a hard RLIMIT_NOFILE of 16384 at least");
      return;
    }
  msg_test_socket_ports (&x, &y);
  assert_port_crosses (x, y);
  baseline = msg_test_count_fds ();
  rec_y = msg_recorder_new (y);

  /* t holds a message of 2000 descriptors: it fits in a frame alone. */
  msg_test_socket_ports (&t, &t_peer);
  rec_t_peer = msg_recorder_new (t_peer);
  msg_port_main_start (t_peer);
  post_with_fds (t_peer, t, 0, 2000, 1);

  /* Queued on s: t, which moves there with its queue, then a message of
   * 2100 descriptors. Counted one a port, they would fit; they do not. */
  msg_test_socket_ports (&s, &peer);
  rec_peer = msg_recorder_new (peer);
  msg_port_main_start (peer);
  g_assert_true (msg_port_main_post_message (peer, NULL, &t, 1, NULL));
  post_with_fds (peer, s, 1, 2100, 2);

  g_assert_true (msg_port_main_post_message (x, g_variant_new_string ("carrying"), &s, 1, NULL));
  g_assert_true (msg_port_main_post (x, g_variant_new_string ("after"), NULL));
  msg_test_wait_until (NULL, rec_y->events->len == 2 || rec_y->n_close > 0);
  g_assert_cmpuint (rec_y->n_close, ==, 0);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec_y, 1), NULL), ==, "after");

  msg_test_wait_until (NULL, rec_peer->n_close == 1 && rec_t_peer->n_close == 1);
  msg_test_assert_close_reason (peer, MSG_PORT_ERROR_TOO_LARGE);
  received = msg_message_event_get_port (g_ptr_array_index (rec_y->events, 0), 0);
  rec_received = msg_recorder_new (received);
  msg_port_main_start (received);
  msg_test_wait_until (NULL, rec_received->n_close == 1);
  msg_test_assert_close_reason (received, MSG_PORT_ERROR_TOO_LARGE);

  /* The carrier goes on. */
  g_assert_true (msg_port_main_post (x, g_variant_new_string ("still fine"), NULL));
  msg_test_wait_until (NULL, rec_y->events->len == 3);
  g_assert_cmpuint (rec_y->n_close, ==, 0);

  msg_port_main_close (x);
  msg_test_wait_until (NULL, rec_y->n_close == 1);
  g_clear_pointer (&rec_received, msg_recorder_free);
  g_clear_pointer (&rec_y, msg_recorder_free);
  g_clear_pointer (&rec_peer, msg_recorder_free);
  g_clear_pointer (&rec_t_peer, msg_recorder_free);
  g_object_unref (s);
  g_object_unref (peer);
  g_object_unref (t);
  g_object_unref (t_peer);
  g_object_unref (x);
  g_object_unref (y);
  msg_test_wait_for_fds_at_most (baseline);
}

static void
test_faults_move_too_large (void)
{
  MsgPortMain *x, *y, *s, *peer, *received;
  g_autoptr(MsgRecorder) rec_y = NULL;
  g_autoptr(MsgRecorder) rec_peer = NULL;
  g_autoptr(MsgRecorder) rec_received = NULL;
  const guint n_fds[] = { 100, 4000 };
  guint baseline;

  g_test_summary ("A socket-backed port whose queued messages carry more descriptors than "
                  "one frame may hold is posted to another process: it cannot move, and only "
                  "its own channel ends, with TOO_LARGE at both ends, after what was "
                  "queued on it; the carrier goes on, and no descriptor is left");

  if (!allow_many_fds ())
    {
      g_test_skip ("needs a hard RLIMIT_NOFILE of 16384 at least");
      return;
    }
  msg_test_socket_ports (&x, &y);
  assert_port_crosses (x, y);
  baseline = msg_test_count_fds ();
  rec_y = msg_recorder_new (y);

  /* Queued on s, unread: a message of 100 descriptors, then one of 4000,
   * more than the 4096 one frame may carry. */
  msg_test_socket_ports (&s, &peer);
  rec_peer = msg_recorder_new (peer);
  msg_port_main_start (peer);
  for (guint m = 0; m < G_N_ELEMENTS (n_fds); m++)
    post_with_fds (peer, s, m, n_fds[m], m + 1);

  g_assert_true (msg_port_main_post_message (x, g_variant_new_string ("carrying"), &s, 1, NULL));
  g_assert_true (msg_port_main_post (x, g_variant_new_string ("after"), NULL));
  msg_test_wait_until (NULL, rec_y->events->len == 2 || rec_y->n_close > 0);
  g_assert_cmpuint (rec_y->n_close, ==, 0);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec_y, 1), NULL), ==, "after");

  /* Its peer is told why. */
  msg_test_wait_until (NULL, rec_peer->n_close == 1);
  msg_test_assert_close_reason (peer, MSG_PORT_ERROR_TOO_LARGE);
  g_assert_cmpuint (rec_peer->events->len, ==, 0);

  /* It arrives with what was queued on it, then ends with the same
   * reason. */
  received = msg_message_event_get_port (g_ptr_array_index (rec_y->events, 0), 0);
  rec_received = msg_recorder_new (received);
  msg_port_main_start (received);
  msg_test_wait_until (NULL, rec_received->n_close == 1);
  msg_test_assert_close_reason (received, MSG_PORT_ERROR_TOO_LARGE);
  g_assert_cmpuint (rec_received->n_messages_at_close, ==, G_N_ELEMENTS (n_fds));
  for (guint m = 0; m < G_N_ELEMENTS (n_fds); m++)
    {
      MsgMessageEvent *event = g_ptr_array_index (rec_received->events, m);
      GUnixFDList *list = msg_message_event_get_unix_fd_list (event);

      g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec_received, m)), ==, m);
      g_assert_nonnull (list);
      g_assert_cmpint (g_unix_fd_list_get_length (list), ==, n_fds[m]);
    }

  /* The carrier goes on. */
  g_assert_true (msg_port_main_post (x, g_variant_new_string ("still fine"), NULL));
  msg_test_wait_until (NULL, rec_y->events->len == 3);
  g_assert_cmpuint (rec_y->n_close, ==, 0);

  msg_port_main_close (x);
  msg_test_wait_until (NULL, rec_y->n_close == 1);

  g_clear_pointer (&rec_received, msg_recorder_free);
  g_clear_pointer (&rec_y, msg_recorder_free);
  g_clear_pointer (&rec_peer, msg_recorder_free);
  g_object_unref (s);
  g_object_unref (peer);
  g_object_unref (x);
  g_object_unref (y);
  msg_test_wait_for_fds_at_most (baseline);
}

/* Posts "before", a message the wire cannot carry (its type string is
 * over 64 KiB) and "after" on an in-process port whose peer goes to
 * another process through @x, to @y: before the peer is posted, so that
 * the message is queued on it and reaches the bridge when it is made, or
 * after it arrived there, when post_message() refuses it. */
static void
assert_too_large_ends_own_channel (MsgPortMain *x,
                                   MsgPortMain *y,
                                   gboolean     bridged_first)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *a = msg_channel_main_get_port1 (channel);
  MsgPortMain *b = msg_channel_main_get_port2 (channel);
  g_autoptr(MsgRecorder) rec_a = msg_recorder_new (a);
  g_autoptr(MsgRecorder) rec_y = msg_recorder_new (y);
  g_autoptr(MsgRecorder) rec_received = NULL;
  MsgPortMain *received;

  msg_port_main_start (a);
  msg_port_main_start (y);
  if (!bridged_first)
    {
      g_assert_true (msg_port_main_post (a, g_variant_new_string ("before"), NULL));
      g_assert_true (msg_port_main_post (a, msg_test_tuple_of_bytes (64 * 1024), NULL));
      g_assert_true (msg_port_main_post (a, g_variant_new_string ("after"), NULL));
    }
  g_assert_true (msg_port_main_post_message (x, g_variant_new_string ("carrying"), &b, 1, NULL));
  msg_test_wait_until (NULL, rec_y->events->len == 1 || rec_y->n_close > 0);
  received = msg_message_event_get_port (g_ptr_array_index (rec_y->events, 0), 0);
  rec_received = msg_recorder_new (received);
  msg_port_main_start (received);
  if (bridged_first)
    {
      g_autoptr(GError) error = NULL;

      /* Its peer is across a socket now: refused, nothing sent, nothing
       * closes. */
      g_assert_true (msg_port_main_post (a, g_variant_new_string ("before"), NULL));
      g_assert_false (msg_port_main_post (a, msg_test_tuple_of_bytes (64 * 1024), &error));
      g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_TOO_LARGE);
      g_assert_true (msg_port_main_post (a, g_variant_new_string ("after"), NULL));
      msg_test_wait_until (NULL, rec_received->events->len == 2 || rec_received->n_close > 0);
      g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec_received, 1), NULL), ==, "after");
      msg_port_main_close (a);
      msg_test_wait_until (NULL, rec_received->n_close == 1);
      msg_test_assert_close_reason (received, MSG_PORT_ERROR_PEER_CLOSED);
      g_assert_cmpuint (rec_received->n_messages_at_close, ==, 2);
      return;
    }

  /* Only the channel of the message ends, with TOO_LARGE on both ends,
   * after what was posted before it. */
  msg_test_wait_until (NULL, rec_a->n_close == 1 && rec_received->n_close == 1);
  msg_test_assert_close_reason (a, MSG_PORT_ERROR_TOO_LARGE);
  msg_test_assert_close_reason (received, MSG_PORT_ERROR_TOO_LARGE);
  g_assert_cmpuint (rec_received->n_messages_at_close, ==, 1);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec_received, 0), NULL), ==, "before");
  g_assert_cmpuint (rec_a->events->len, ==, 0);

  /* The carrier goes on. */
  g_assert_true (msg_port_main_post (x, g_variant_new_string ("still fine"), NULL));
  msg_test_wait_until (NULL, rec_y->events->len == 2 || rec_y->n_close > 0);
  g_assert_cmpuint (rec_y->n_close, ==, 0);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec_y, 1), NULL), ==, "still fine");
}

static void
test_faults_bridge_too_large (void)
{
  MsgPortMain *x, *y;
  guint baseline;

  g_test_summary ("A message over the wire's limits, posted in process on a port whose "
                  "peer is then bridged to another process: only its own channel ends, "
                  "with TOO_LARGE on both ends, after what was posted before it; the "
                  "carrier goes on, and no descriptor is left. Posted once the peer is "
                  "across, it is refused and nothing ends");

  msg_test_socket_ports (&x, &y);
  assert_port_crosses (x, y);
  baseline = msg_test_count_fds ();

  assert_too_large_ends_own_channel (x, y, FALSE);
  assert_too_large_ends_own_channel (x, y, TRUE);

  msg_port_main_close (x);
  g_object_unref (x);
  g_object_unref (y);
  msg_test_wait_for_fds_at_most (baseline);
}

/* Which thread writes: sendmsg() calls made by @counted_thread. */
static GThread *counted_thread;  /* (atomic) */
static gint n_counted_writes;    /* (atomic) */

static ssize_t
counting_sendmsg (int                  fd,
                  const struct msghdr *message,
                  int                  flags)
{
  if (g_thread_self () == g_atomic_pointer_get (&counted_thread))
    g_atomic_int_inc (&n_counted_writes);
  return sendmsg (fd, message, flags);
}

static const MsgSyscalls counting = {
  counting_sendmsg,
  faulty_recvmsg,
  faulty_socketpair,
};

static void
echo_message (MsgPortMain     *port,
              MsgMessageEvent *event,
              gpointer         user_data)
{
  msg_port_main_post (port, g_variant_new_uint32 (1), NULL);
}

typedef struct
{
  MsgPortMain *port;
  guint        n_posts;  /* in each call */
  guint        n_calls;  /* left */
  guint        n_posted;
} PathPoster;

/* From an idle: posts @n_posts messages a call, and checks that this
 * thread wrote the first of each call, and only the first. The I/O thread
 * may still be writing the previous call's: a post behind it would be
 * queued, rightly, so the call first waits for it. */
static gboolean
post_from_idle (gpointer data)
{
  PathPoster *poster = data;
  gint before;

  g_assert_true (msg_port_main_flush (poster->port, NULL, NULL));
  before = g_atomic_int_get (&n_counted_writes);

  for (guint i = 0; i < poster->n_posts; i++)
    msg_port_main_post (poster->port, g_variant_new_uint32 (poster->n_posted++), NULL);
  g_assert_cmpint (g_atomic_int_get (&n_counted_writes), ==, before + 1);
  return --poster->n_calls > 0 ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static void
test_faults_writer_paths (void)
{
  MsgPortMain *a, *b;
  g_autoptr(MsgRecorder) rec_a = NULL;
  g_autoptr(MsgRecorder) rec_b = NULL;
  PathPoster poster;
  gulong echo;

  g_test_summary ("Which thread writes, whatever the machine's speed: a post that finds "
                  "nothing queued is written by the posting thread, outside any callback "
                  "and as a callback's only post (a reply); a callback's posts after its "
                  "first are held and written by the I/O thread once it returns; all "
                  "arrive in order");

  msg_test_socket_ports (&a, &b);
  rec_a = msg_recorder_new (a);
  rec_b = msg_recorder_new (b);
  msg_port_main_start (a);
  msg_port_main_start (b);
  /* Anything the connections queued when they started goes out first. */
  g_assert_true (msg_port_main_flush (a, NULL, NULL));
  g_assert_true (msg_port_main_flush (b, NULL, NULL));
  g_atomic_pointer_set (&counted_thread, g_thread_self ());
  msg_transport_set_syscalls (&counting);

  /* Ping-pong: the ping from outside any callback, the reply from b's
   * handler, each written at once by this thread, one after the other. */
  echo = g_signal_connect (b, "message", G_CALLBACK (echo_message), NULL);
  for (guint i = 0; i < 20; i++)
    {
      msg_port_main_post (a, g_variant_new_uint32 (i), NULL);
      msg_test_wait_until (NULL, rec_a->events->len == i + 1);
      g_assert_cmpint (g_atomic_int_get (&n_counted_writes), ==, 2 * (i + 1));
    }
  g_signal_handler_disconnect (b, echo);
  /* a acknowledges the echoes it took, from the I/O thread: once b has
   * the acknowledgement, nothing of a's is queued when the calls below
   * post (an acknowledgement queued behind would rightly hold their
   * first post too). */
  msg_test_wait_polling (msg_port_main_get_buffered_messages (b) == 0);

  /* One post a call, each call in its own iteration: each written at once. */
  poster = (PathPoster) { a, 1, 5, 0 };
  g_idle_add (post_from_idle, &poster);
  msg_test_wait_until (NULL, rec_b->events->len == 20 + 5);

  /* Bursts: the first of each call written by this thread, the rest by
   * the I/O thread once the call has returned. */
  poster = (PathPoster) { a, 50, 4, 5 };
  g_atomic_int_set (&n_counted_writes, 0);
  g_idle_add (post_from_idle, &poster);
  msg_test_wait_until (NULL, rec_b->events->len == 20 + 5 + 200);
  g_assert_cmpint (g_atomic_int_get (&n_counted_writes), ==, 4);
  for (guint i = 0; i < 5 + 200; i++)
    g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec_b, 20 + i)), ==, i);

  msg_transport_set_syscalls (NULL);
  g_atomic_pointer_set (&counted_thread, NULL);
  g_object_unref (a);
  g_object_unref (b);
  msg_test_drain (NULL);
}

int
main (int    argc,
      char **argv)
{
  int result;

  g_test_init (&argc, &argv, NULL);
  rand_state = g_rand_new_with_seed (g_test_rand_int ());

  g_test_add_data_func ("/faults/short-and-interrupted", GINT_TO_POINTER (FALSE),
                        test_faults_short_and_interrupted);
  g_test_add_data_func ("/faults/short-and-interrupted/memfd", GINT_TO_POINTER (TRUE),
                        test_faults_short_and_interrupted);
  g_test_add_data_func ("/faults/reset-mid-stream", GINT_TO_POINTER (FALSE),
                        test_faults_reset_mid_stream);
  g_test_add_data_func ("/faults/reset-mid-stream/direct", GINT_TO_POINTER (TRUE),
                        test_faults_reset_mid_stream);
  g_test_add_data_func ("/faults/write-error/io", GINT_TO_POINTER (FALSE),
                        test_faults_write_error_io);
  g_test_add_data_func ("/faults/write-error/io/direct", GINT_TO_POINTER (TRUE),
                        test_faults_write_error_io);
  g_test_add_func ("/faults/concurrent-posters", test_faults_concurrent_posters);
  g_test_add_func ("/faults/writer-paths", test_faults_writer_paths);
  g_test_add_data_func ("/faults/move-unwritten", GINT_TO_POINTER (FALSE), test_faults_move_unwritten);
  g_test_add_data_func ("/faults/move-unwritten/memfd", GINT_TO_POINTER (TRUE), test_faults_move_unwritten);
  g_test_add_func ("/faults/move-failed", test_faults_move_failed);
  g_test_add_func ("/faults/export-out-of-descriptors", test_faults_export_out_of_descriptors);
  g_test_add_func ("/faults/move-too-large", test_faults_move_too_large);
  g_test_add_func ("/faults/move-too-large/nested", test_faults_move_too_large_nested);
  g_test_add_func ("/faults/bridge-too-large", test_faults_bridge_too_large);
  g_test_add_func ("/faults/move-partial-twice", test_faults_move_partial_twice);
  g_test_add_func ("/faults/move-partial-chunk", test_faults_move_partial_chunk);
  g_test_add_func ("/faults/backlog/gives-memory-back", test_faults_backlog_gives_back);

  result = g_test_run ();
  g_rand_free (rand_state);
  return result;
}
