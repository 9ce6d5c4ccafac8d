/* bounds.c: what a peer process can make this process spend
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A peer writes valid data, as fast as the socket takes it, through the
 * raw end of a socket whose other end is a port of this process that does
 * not take what arrives (not started, or started on a context that never
 * iterates). The port takes a bounded amount (the read-ahead), then stops
 * reading, so that the socket fills and pushes back on the peer; once the
 * port is served, everything arrives, in order, nothing dropped.
 *
 * "The peer stopped being able to write" is the thing that must happen;
 * what must not happen is that it goes on: each case waits a bounded time
 * (FULL_PATIENCE_MS) for the socket to take more, and fails if the peer
 * could write more than the read-ahead and the socket buffers hold.
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "msg-endpoint-private.h"
#include "msg-test-utils.h"
#include "wire/msg-wire-private.h"

/* How long the socket must stay full to count as pushed back on. A
 * reader that did not pause drains it within microseconds. */
#define FULL_PATIENCE_MS  500
/* What the kernel holds in a socket pair (both ends' buffers, grown by
 * the port's end to 512 KiB), one read (256 KiB) and one frame, with room
 * to spare: the bound is the read-ahead plus this. */
#define KERNEL_AND_ONE_READ  (4 * 1024 * 1024)

/* The frame of message @i: "(uay)", @i and @size bytes. */
static GBytes *
encode_message (guint32 i,
                gsize   size)
{
  guint8 *blob = g_malloc0 (size);
  MsgWireFrame frame = { .kind = MSG_WIRE_FRAME_MESSAGE, .data_fd = -1 };
  MsgWireEncoded encoded;
  g_autoptr(GByteArray) bytes = g_byte_array_new ();
  g_autoptr(GArray) fds = g_array_new (FALSE, FALSE, sizeof (int));

  memset (blob, i & 0xff, size);
  frame.data = g_variant_ref_sink (g_variant_new ("(u@ay)", i,
                                                  g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE,
                                                                             blob, size, 1)));
  g_free (blob);
  g_assert_true (msg_wire_encode (&frame, &encoded, NULL));
  msg_wire_encoded_append (&encoded, bytes, fds);
  msg_wire_encoded_clear (&encoded);
  g_variant_unref (frame.data);
  return g_byte_array_free_to_bytes (g_steal_pointer (&bytes));
}

typedef struct
{
  int      raw;
  gsize    message_size;
  guint32  n_sent;       /* whole frames written */
  guint64  bytes_sent;
  GBytes  *pending;      /* (owned) (nullable): the frame being written */
  gsize    offset;       /* of @pending, written */
} Flood;

/* Writes frames to @self->raw, non-blocking, until the socket has stayed
 * full for FULL_PATIENCE_MS or @max_bytes went. Returns whether it was
 * pushed back on. */
static gboolean
flood_until_full (Flood  *self,
                  guint64 max_bytes)
{
  while (self->bytes_sent < max_bytes)
    {
      const guint8 *data;
      gsize size;
      ssize_t n;

      if (self->pending == NULL)
        {
          self->pending = encode_message (self->n_sent, self->message_size);
          self->offset = 0;
        }
      data = g_bytes_get_data (self->pending, &size);
      n = send (self->raw, data + self->offset, size - self->offset, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0)
        {
          self->offset += n;
          self->bytes_sent += n;
          if (self->offset == size)
            {
              g_clear_pointer (&self->pending, g_bytes_unref);
              self->n_sent++;
            }
        }
      else
        {
          struct pollfd pfd = { self->raw, POLLOUT, 0 };

          g_assert_true (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
          if (poll (&pfd, 1, FULL_PATIENCE_MS) == 0)
            return TRUE;
        }
    }
  return FALSE;
}

/* Writes the rest of the frame in progress, once the port reads again:
 * @context, the port's, runs meanwhile. */
static gboolean
flood_finished (Flood *self)
{
  gsize size;
  const guint8 *data;
  ssize_t n;

  if (self->pending == NULL)
    return TRUE;
  data = g_bytes_get_data (self->pending, &size);
  n = send (self->raw, data + self->offset, size - self->offset, MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n > 0)
    self->offset += n;
  if (self->offset == size)
    {
      g_clear_pointer (&self->pending, g_bytes_unref);
      self->n_sent++;
    }
  return self->pending == NULL;
}

/* Whether @flood is all written and @rec has it all (or closed). */
static gboolean
all_arrived (MsgRecorder *rec,
             Flood       *flood)
{
  return flood_finished (flood) && (rec->events->len == flood->n_sent || rec->n_close > 0);
}

static void
assert_in_order (MsgRecorder *rec,
                 Flood       *flood)
{
  g_assert_cmpuint (rec->n_close, ==, 0);
  g_assert_cmpuint (rec->events->len, ==, flood->n_sent);
  for (guint i = 0; i < rec->events->len; i++)
    {
      guint32 got;

      g_variant_get_child (msg_recorder_data (rec, i), 0, "u", &got);
      g_assert_cmpuint (got, ==, i);
    }
}

/* A port that is not started, or started on @context, which nobody
 * iterates until the flood is pushed back on. */
static void
read_ahead_case (gsize    message_size,
                 gboolean started_elsewhere)
{
  g_autoptr(GMainContext) context = g_main_context_new ();
  g_autoptr(MsgRecorder) rec = NULL;
  MsgPortMain *port;
  Flood flood = { 0, };
  guint64 bound = MSG_READ_AHEAD_HIGH_BYTES + KERNEL_AND_ONE_READ +
                  (guint64) MSG_READ_AHEAD_HIGH_ITEMS * 64;

  msg_test_socket_port (&flood.raw, &port);
  flood.message_size = message_size;
  rec = msg_recorder_new (port);
  if (started_elsewhere)
    {
      g_main_context_push_thread_default (context);
      msg_port_main_start (port);
      g_main_context_pop_thread_default (context);
    }

  /* Without read-ahead the port takes all of it (64 MiB) and more. */
  g_assert_true (flood_until_full (&flood, 64 * 1024 * 1024));
  g_test_message ("the peer wrote %" G_GUINT64_FORMAT " bytes, %u messages of %" G_GSIZE_FORMAT
                  " bytes, before the socket pushed back",
                  flood.bytes_sent, flood.n_sent, message_size);
  g_assert_cmpuint (flood.bytes_sent, <=, bound);
  g_assert_cmpuint (rec->events->len, ==, 0);

  /* Served: everything arrives, in order. A handle started on a context
   * stays there: that context is the one that runs now. */
  if (!started_elsewhere)
    {
      g_main_context_unref (context);
      context = g_main_context_ref (g_main_context_default ());
      msg_port_main_start (port);
    }
  /* One iteration at a time: all_arrived() writes the rest as it goes,
   * and the condition is checked again after each. */
  msg_test_wait_until (context, all_arrived (rec, &flood));
  assert_in_order (rec, &flood);

  close (flood.raw);
  msg_test_wait_until (context, rec->n_close == 1);
  g_clear_pointer (&rec, msg_recorder_free);
  g_object_unref (port);
}

static void
test_read_ahead_not_started (void)
{
  g_test_summary ("A peer floods 1 KiB messages into a port that is not started: the port "
                  "takes at most its read-ahead (8 MiB) before the socket pushes back, and "
                  "once started gets every message, in order");
  read_ahead_case (1024, FALSE);
}

static void
test_read_ahead_small (void)
{
  g_test_summary ("The same with 4-byte messages: the read-ahead's count of messages "
                  "(16,384) bounds them, not its bytes");
  read_ahead_case (4, FALSE);
}

static void
test_read_ahead_busy_context (void)
{
  g_test_summary ("A peer floods a port started on a context that does not iterate (a busy "
                  "thread): the same bound; everything arrives once the context runs");
  read_ahead_case (1024, TRUE);
}

/* Closing ---------------------------------------------------------------- */

/* Raises the soft limit on descriptors to at least @wanted if the hard
 * limit allows; returns the soft limit now. */
static rlim_t
raise_fd_limit (rlim_t wanted)
{
  struct rlimit rl;

  g_assert_cmpint (getrlimit (RLIMIT_NOFILE, &rl), ==, 0);
  if (rl.rlim_cur < wanted)
    {
      rl.rlim_cur = MIN (wanted, rl.rlim_max);
      g_assert_cmpint (setrlimit (RLIMIT_NOFILE, &rl), ==, 0);
    }
  return rl.rlim_cur;
}

/* Makes what a process makes once (the I/O thread, its context, the
 * watchdog), so that counts of descriptors start from there. */
static void
warm_up (void)
{
  MsgPortMain *a, *b;
  g_autoptr(MsgRecorder) rec = NULL;

  msg_test_socket_ports (&a, &b);
  rec = msg_recorder_new (b);
  msg_port_main_start (b);
  msg_port_main_post (a, g_variant_new_string ("warm"), NULL);
  msg_test_wait_until (NULL, rec->events->len == 1);
  msg_port_main_close (a);
  msg_test_wait_until (NULL, rec->n_close == 1);
  g_object_unref (a);
  g_object_unref (b);
}

/* Reads @raw to its end; returns how many bytes came. */
static gsize
read_to_end (int raw)
{
  guint8 buffer[4096];
  gsize total = 0;
  ssize_t n;

  while ((n = read (raw, buffer, sizeof buffer)) > 0)
    total += n;
  g_assert_cmpint (n, ==, 0);
  return total;
}

static void
test_close_peer_never_reads (void)
{
  guint n = 1000, baseline;
  g_autofree int *raw = NULL;
  g_autofree MsgPortMain **ports = NULL;
  rlim_t limit;

  g_test_summary ("1,000 ports close while their peers neither read nor hang up: every "
                  "descriptor of ours is closed within the close deadline (2 s), and "
                  "the close frame is in each peer's socket");

  limit = raise_fd_limit (4 * n);
  warm_up ();
  baseline = msg_test_count_fds ();
  if (limit < baseline + 2 * n + 64)
    n = (limit - baseline - 64) / 2;
  raw = g_new (int, n);
  ports = g_new (MsgPortMain *, n);
  for (guint i = 0; i < n; i++)
    msg_test_socket_port (&raw[i], &ports[i]);
  for (guint i = 0; i < n; i++)
    msg_port_main_close (ports[i]);

  /* Only the peers' ends are left: ours went, without the peers' help. */
  msg_test_wait_for_fds_at_most (baseline + n);

  /* What was written before went out: the hello, a close frame, then
   * the end. */
  for (guint i = 0; i < n; i++)
    {
      g_assert_cmpuint (read_to_end (raw[i]), ==, MSG_WIRE_HEADER_SIZE + 8 + MSG_WIRE_HEADER_SIZE);
      close (raw[i]);
      g_object_unref (ports[i]);
    }
  msg_test_wait_for_fds_at_most (baseline);
}

static void
test_close_no_import_after (void)
{
  MsgPortMain *port;
  g_autoptr(MsgRecorder) rec = NULL;
  MsgWireFrame frame = { .kind = MSG_WIRE_FRAME_MESSAGE, .data_fd = -1 };
  MsgWireEncoded encoded;
  g_autoptr(GByteArray) bytes = g_byte_array_new ();
  g_autoptr(GArray) fds = g_array_new (FALSE, FALSE, sizeof (int));
  int raw, pair[2];
  guint baseline;

  g_test_summary ("A port arrives on a socket whose port here has closed: its descriptor "
                  "is closed at once, and no port is made of it (nothing is written to "
                  "it, not even a close frame)");

  msg_test_socket_port (&raw, &port);
  rec = msg_recorder_new (port);
  msg_port_main_start (port);
  msg_port_main_close (port);
  msg_test_wait_until (NULL, rec->n_close == 1);
  warm_up ();
  baseline = msg_test_count_fds ();

  /* The peer, which has not read our close frame yet, sends a port. */
  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), ==, 0);
  frame.data = g_variant_ref_sink (g_variant_new_string ("too late"));
  frame.n_ports = 1;
  frame.ports = g_new0 (MsgWirePort, 1);
  frame.ports[0].fd = -1;
  g_assert_true (msg_wire_encode (&frame, &encoded, NULL));
  msg_wire_encoded_append (&encoded, bytes, fds);
  msg_wire_encoded_clear (&encoded);
  g_clear_pointer (&frame.data, g_variant_unref);
  g_free (frame.ports);
  g_assert_cmpuint (fds->len, ==, 1);
  g_array_index (fds, int, 0) = pair[0];

  g_assert_cmpint (msg_test_send_raw (raw, bytes->data, bytes->len, pair, 1), ==,
                   (gssize) bytes->len);
  close (pair[0]);

  /* Its other end sees the end of file, and nothing before it. */
  g_assert_cmpuint (read_to_end (pair[1]), ==, 0);
  close (pair[1]);

  close (raw);
  msg_test_wait_for_fds_at_most (baseline - 1);
  g_clear_pointer (&rec, msg_recorder_free);
  g_object_unref (port);
}

typedef struct
{
  guint n;
  guint n_with_fd;
} FdCounter;

static void
count_fd_message (MsgPortMain     *port,
                  MsgMessageEvent *event,
                  gpointer         user_data)
{
  FdCounter *counter = user_data;
  GUnixFDList *list = msg_message_event_get_unix_fd_list (event);

  counter->n++;
  if ((list != NULL && g_unix_fd_list_get_length (list) == 1) ||
      msg_message_event_get_n_ports (event) == 1)
    counter->n_with_fd++;
}

/* A tiny frame with one descriptor: the message's own (a "u" of 4 bytes),
 * or a port's (no data, a port whose peer said hello). Returns its size. */
static gsize
tiny_frame_with_fd (guint8   *frame,
                    gboolean  as_port,
                    guint     seq)
{
  memset (frame, 0, MSG_WIRE_HEADER_SIZE + MSG_WIRE_PORT_ENTRY_SIZE);
  memcpy (frame, "MSG2", 4);
  frame[4] = MSG_WIRE_FRAME_MESSAGE;
  frame[8] = 1;
  if (as_port)
    {
      frame[6] = 1;
      frame[16] = MSG_WIRE_PORT_ENTRY_SIZE;
      frame[MSG_WIRE_HEADER_SIZE + 32] = MSG_WIRE_PORT_PEER_HELLO;
      return MSG_WIRE_HEADER_SIZE + MSG_WIRE_PORT_ENTRY_SIZE;
    }
  frame[5] = MSG_WIRE_FLAG_DATA;
  frame[12] = 1;
  frame[20] = 1;
  frame[24] = 4;
  frame[MSG_WIRE_HEADER_SIZE] = 'u';
  memcpy (frame + MSG_WIRE_HEADER_SIZE + 8, &seq, 4);
  return MSG_WIRE_HEADER_SIZE + 8 + 4;
}

static void
test_read_ahead_descriptors (gconstpointer data)
{
  gboolean as_port = GPOINTER_TO_INT (data);
  MsgPortMain *port;
  FdCounter counter = { 0, 0 };
  guint baseline;
  guint limit = MSG_READ_AHEAD_HIGH_BYTES / MSG_READ_AHEAD_FD_COST;
  guint n_sent = 0;
  gboolean full = FALSE;
  g_autoptr(GArray) peers = g_array_new (FALSE, FALSE, sizeof (int));
  guint held;
  int raw;

  if (as_port)
    g_test_summary ("A peer sends messages that each carry a port (a socket) to a port that "
                    "is not started: the port holds at most about 128 of them unread (each "
                    "weighs 64 KiB of read-ahead), not 16,384; once started it gets them "
                    "all, and no descriptor is left over");
  else
    g_test_summary ("A peer sends tiny messages that each carry a descriptor to a port that "
                    "is not started: the port holds at most about 128 of them unread "
                    "(each weighs 64 KiB of read-ahead), not 16,384; once started it gets "
                    "them all, and no descriptor is left over");

  /* This process is the peer too, which holds the other end of each
   * port's socket. */
  if (as_port && raise_fd_limit (16 * limit) < 16 * limit)
    {
      g_test_skip ("the hard limit on descriptors is too low");
      return;
    }
  msg_test_socket_port (&raw, &port);
  /* Without the socket pair: the I/O thread (and its wake-up descriptor)
   * exists now, if this test is the first to make a port. */
  baseline = msg_test_count_fds () - 2;
  g_assert_no_errno (fcntl (raw, F_SETFL, O_NONBLOCK));
  /* Until the socket stays full (the kernel holds a few hundred such
   * frames: their descriptors are in flight, not in this process), or
   * far more than the port may hold. */
  while (!full && n_sent < 4 * limit)
    {
      guint8 frame[MSG_WIRE_HEADER_SIZE + MSG_WIRE_PORT_ENTRY_SIZE];
      gsize size = tiny_frame_with_fd (frame, as_port, n_sent);
      int pair[2];
      int fd;

      /* A port's socket, whose other end the peer keeps. */
      if (as_port)
        {
          g_assert_no_errno (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair));
          g_array_append_val (peers, pair[1]);
          fd = pair[0];
        }
      else
        fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);
      for (;;)
        {
          struct pollfd pfd = { raw, POLLOUT, 0 };

          if (msg_test_send_raw (raw, frame, size, &fd, 1) == (gssize) size)
            {
              n_sent++;
              break;
            }
          g_assert_true (errno == EAGAIN || errno == EWOULDBLOCK);
          if (poll (&pfd, 1, FULL_PATIENCE_MS) == 0)
            {
              full = TRUE;
              break;
            }
        }
      close (fd);
    }
  g_test_message ("sent %u messages with a %s each", n_sent, as_port ? "port" : "descriptor");
  g_assert_cmpuint (n_sent, >, limit + 8);

  /* The reader stops once the port holds what it may. */
  msg_test_wait_until (NULL, msg_port_main_get_queued_messages (port) >= limit);
  held = msg_test_count_fds () - baseline - peers->len;
  g_test_message ("%u descriptors held for a port that was not started", held);
  /* Theirs, the socket pair, and a frame's or two in the decoder.
   * Without the weight it held every one that came. */
  g_assert_cmpuint (held, <=, limit + 2 + 2);

  g_signal_connect (port, "message", G_CALLBACK (count_fd_message), &counter);
  msg_port_main_start (port);
  msg_test_wait_until (NULL, counter.n == n_sent);
  g_assert_cmpuint (counter.n_with_fd, ==, n_sent);

  for (guint i = 0; i < peers->len; i++)
    close (g_array_index (peers, int, i));
  close (raw);
  msg_test_wait_until (NULL, msg_port_main_is_closed (port));
  msg_test_drain (NULL);
  g_object_unref (port);
  msg_test_wait_for_fd_count (baseline);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/bounds/read-ahead/not-started", test_read_ahead_not_started);
  g_test_add_func ("/bounds/read-ahead/small", test_read_ahead_small);
  g_test_add_func ("/bounds/read-ahead/busy-context", test_read_ahead_busy_context);
  g_test_add_data_func ("/bounds/read-ahead/descriptors", GINT_TO_POINTER (FALSE),
                        test_read_ahead_descriptors);
  g_test_add_data_func ("/bounds/read-ahead/ports", GINT_TO_POINTER (TRUE),
                        test_read_ahead_descriptors);
  g_test_add_func ("/bounds/close/peer-never-reads", test_close_peer_never_reads);
  g_test_add_func ("/bounds/close/no-import-after", test_close_no_import_after);

  return g_test_run ();
}
