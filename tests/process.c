/* process.c: ports between processes
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib-unix.h>

#include "msg-test-utils.h"

static guint
scaled (guint n)
{
  return g_getenv ("MSG_TEST_QUICK") != NULL ? MAX (n / 20, 1) : n;
}

static gboolean G_GNUC_UNUSED
fd_is_open (int fd)
{
  return fcntl (fd, F_GETFD) >= 0;
}

/* Children ------------------------------------------------------------- */

typedef MsgTestChild Child;

/* Sets the soft RLIMIT_NOFILE, at most to the hard limit. */
static void
set_fd_limit (rlim_t limit)
{
  struct rlimit rl;

  g_assert_cmpint (getrlimit (RLIMIT_NOFILE, &rl), ==, 0);
  rl.rlim_cur = MIN (limit, rl.rlim_max);
  g_assert_cmpint (setrlimit (RLIMIT_NOFILE, &rl), ==, 0);
}

#define child_spawn_argv    msg_test_child_spawn_argv
#define child_spawn_program msg_test_child_spawn
#define child_wait          msg_test_child_wait

static void
child_spawn (Child      *child,
             const char *mode,
             guint64     arg)
{
  msg_test_child_spawn (child, "process-child", mode, arg);
}

/* new_for_fd() ------------------------------------------------------------ */

static void
test_new_for_fd_invalid (void)
{
  int fds[2];
  int fd;
  g_autoptr(GError) error = NULL;

  g_test_summary ("new_for_fd() refuses what is not a connected AF_UNIX stream socket, "
                  "and leaves the descriptor to the caller");

  g_assert_null (msg_port_main_new_for_fd (-1, &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_SOCKET);
  g_clear_error (&error);

  g_assert_cmpint (pipe (fds), ==, 0);
  g_assert_null (msg_port_main_new_for_fd (fds[0], &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_SOCKET);
  g_clear_error (&error);
  g_assert_true (fd_is_open (fds[0]));
  close (fds[0]);
  close (fds[1]);

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_DGRAM, 0, fds), ==, 0);
  g_assert_null (msg_port_main_new_for_fd (fds[0], &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_SOCKET);
  g_clear_error (&error);
  g_assert_true (fd_is_open (fds[0]));
  close (fds[0]);
  close (fds[1]);

  fd = socket (AF_INET, SOCK_STREAM, 0);
  g_assert_cmpint (fd, >=, 0);
  g_assert_null (msg_port_main_new_for_fd (fd, &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_SOCKET);
  g_clear_error (&error);
  g_assert_true (fd_is_open (fd));
  close (fd);

  fd = socket (AF_UNIX, SOCK_STREAM, 0);
  g_assert_null (msg_port_main_new_for_fd (fd, &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_SOCKET);
  g_clear_error (&error);
  g_assert_true (fd_is_open (fd));
  close (fd);
}

static void
test_new_for_launcher_invalid (void)
{
  const int bad[] = { -5, -2, 0, 1, 2 };
  g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
  g_autoptr(MsgPortMain) port = NULL;
  g_autoptr(GError) error = NULL;

  g_test_summary ("new_for_launcher() refuses a child descriptor below 3 (other than -1) "
                  "with a GError, not a CRITICAL, and a second port on one launcher");

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr(GSubprocessLauncher) fresh = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
      g_autofree char *number = g_strdup_printf ("%d", bad[i]);

      g_assert_null (msg_port_main_new_for_launcher (fresh, bad[i], &error));
      g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_ARGUMENT);
      g_assert_nonnull (strstr (error->message, number));
      g_clear_error (&error);
    }

  port = msg_port_main_new_for_launcher (launcher, -1, &error);
  g_assert_no_error (error);
  g_assert_nonnull (port);
  g_assert_null (msg_port_main_new_for_launcher (launcher, 4, &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_ARGUMENT);
  g_assert_false (msg_port_main_is_closed (port));
  msg_port_main_close (port);
}

/* One process, over a socket pair --------------------------------------- */

static GPtrArray *
sample_messages (void)
{
  GPtrArray *messages = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  GVariantBuilder builder;
  g_autofree guint8 *big = g_malloc (1024 * 1024);

  for (gsize i = 0; i < 1024 * 1024; i++)
    big[i] = i * 7;

  g_ptr_array_add (messages, g_variant_ref_sink (g_variant_new_string ("hello")));
  g_ptr_array_add (messages, g_variant_ref_sink (g_variant_new ("(sixdb)", "a", -5, G_GINT64_CONSTANT (1) << 40, 2.5, TRUE)));
  g_variant_builder_init (&builder, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&builder, "{sv}", "n", g_variant_new_uint32 (7));
  g_variant_builder_add (&builder, "{sv}", "s", g_variant_new_strv ((const char *[]) { "x", "y", NULL }, -1));
  g_ptr_array_add (messages, g_variant_ref_sink (g_variant_builder_end (&builder)));
  g_ptr_array_add (messages, g_variant_ref_sink (g_variant_new ("mv", NULL)));
  g_ptr_array_add (messages, g_variant_ref_sink (g_variant_new ("(h)", 42)));
  g_ptr_array_add (messages, g_variant_ref_sink (g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, big, 1024 * 1024, 1)));
  g_ptr_array_add (messages, g_variant_ref_sink (g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, "", 0, 1)));
  g_ptr_array_add (messages, g_variant_ref_sink (g_variant_new ("a(sa{sv})", NULL)));
  g_ptr_array_add (messages, g_variant_ref_sink (g_variant_new_parsed ("[<(1, 'x', [<@ay b'zz'>])>]")));
  return messages;
}

/* Posts the samples, a NULL and @n numbered messages on @from, and checks
 * that they come back, equal and in order, in @rec. */
static void
check_round_trip (MsgPortMain *from,
                  MsgRecorder *rec,
                  guint        n)
{
  g_autoptr(GPtrArray) samples = sample_messages ();
  guint base = rec->events->len;

  for (guint i = 0; i < samples->len; i++)
    g_assert_true (msg_port_main_post (from, g_ptr_array_index (samples, i), NULL));
  g_assert_true (msg_port_main_post (from, NULL, NULL));
  for (guint i = 0; i < n; i++)
    msg_port_main_post (from, g_variant_new_uint32 (i), NULL);

  msg_test_wait_until (NULL, rec->events->len == base + samples->len + 1 + n);
  for (guint i = 0; i < samples->len; i++)
    {
      GVariant *sent = g_ptr_array_index (samples, i);
      GVariant *got = msg_recorder_data (rec, base + i);

      g_assert_nonnull (got);
      g_assert_cmpstr (g_variant_get_type_string (got), ==, g_variant_get_type_string (sent));
      g_assert_true (g_variant_equal (got, sent));
      g_assert_true (g_variant_is_normal_form (got));
    }
  g_assert_null (msg_recorder_data (rec, base + samples->len));
  for (guint i = 0; i < n; i++)
    g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec, base + samples->len + 1 + i)), ==, i);
}

static void
test_socketpair_messages (void)
{
  MsgPortMain *a, *b;
  g_autoptr(MsgRecorder) rec_a = NULL;
  g_autoptr(MsgRecorder) rec_b = NULL;
  g_autoptr(GError) reason_a = NULL;
  g_autoptr(GError) reason_b = NULL;

  g_test_summary ("Any GVariant or NULL crosses a socket as an equal value of the same type, "
                  "in normal form, in order; close reaches the other end after them");

  msg_test_socket_ports (&a, &b);
  rec_a = msg_recorder_new (a);
  rec_b = msg_recorder_new (b);
  msg_port_main_start (a);
  msg_port_main_start (b);
  check_round_trip (a, rec_b, scaled (5000));
  check_round_trip (b, rec_a, 10);

  g_assert_true (msg_port_main_flush (a, NULL, NULL));
  msg_port_main_post (a, g_variant_new_string ("last"), NULL);
  msg_port_main_close (a);
  msg_test_wait_until (NULL, rec_a->n_close == 1 && rec_b->n_close == 1);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec_b, rec_b->events->len - 1), NULL), ==, "last");
  reason_a = msg_port_main_get_close_reason (a);
  reason_b = msg_port_main_get_close_reason (b);
  g_assert_error (reason_a, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED);
  g_assert_error (reason_b, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_CLOSED);
  g_object_unref (a);
  g_object_unref (b);
}

static int
send_buffer_size (int fd)
{
  int size = 0;
  socklen_t len = sizeof size;

  g_assert_no_errno (getsockopt (fd, SOL_SOCKET, SO_SNDBUF, &size, &len));
  return size;
}

static void
test_socketpair_send_buffer (void)
{
  int fds[2], watched;
  int before;
  g_autoptr(GError) error = NULL;
  MsgPortMain *port;

  g_test_summary ("A port's socket asks for a larger send buffer than the system default, "
                  "so that a writer of large messages is woken less often");

  g_assert_no_errno (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  watched = fcntl (fds[0], F_DUPFD_CLOEXEC, 0);
  g_assert_cmpint (watched, >=, 0);
  before = send_buffer_size (watched);

  port = msg_port_main_new_for_fd (fds[0], &error);
  g_assert_no_error (error);
  /* 512 KiB as the kernel counts it; a larger one is left alone. */
  if (before < 512 * 1024)
    g_assert_cmpint (send_buffer_size (watched), >, before);
  else
    g_assert_cmpint (send_buffer_size (watched), ==, before);

  g_object_unref (port);
  close (watched);
  close (fds[1]);
}

/* A message larger than a socket's buffer, then small ones: the socket
 * cannot take the first at once, so the rest queue behind it. */
static void
post_burst (MsgPortMain *port)
{
  g_autofree guint8 *large = g_malloc0 (4 * 1024 * 1024);

  msg_port_main_post (port, g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, large,
                                                       4 * 1024 * 1024, 1), NULL);
  for (guint32 i = 0; i < 10; i++)
    msg_port_main_post (port, g_variant_new_uint32 (i), NULL);
}

static void
check_burst (MsgRecorder *rec,
             guint        first)
{
  g_assert_cmpuint (rec->events->len, >=, first + 11);
  g_assert_cmpuint (g_variant_get_size (msg_recorder_data (rec, first)), ==, 4 * 1024 * 1024);
  for (guint32 i = 0; i < 10; i++)
    g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec, first + 1 + i)), ==, i);
}

typedef struct
{
  MsgPortMain  *sender;
  GMainContext *receiver_context;
  MsgRecorder  *receiver;
  gboolean      done;
} BlockedPost;

static gpointer
post_burst_thread (gpointer data)
{
  post_burst (data);
  return NULL;
}

/* From a callback of the main context, without returning: posts a burst
 * and waits for it on another context, twice, then has another thread
 * post one while the callback's is still pending. */
static gboolean
post_and_block (gpointer data)
{
  BlockedPost *post = data;

  post_burst (post->sender);
  msg_test_wait_until (post->receiver_context, post->receiver->events->len == 11);
  post_burst (post->sender);
  msg_test_wait_until (post->receiver_context, post->receiver->events->len == 22);
  g_thread_join (g_thread_new ("poster", post_burst_thread, post->sender));
  msg_test_wait_until (post->receiver_context, post->receiver->events->len == 33);
  post->done = TRUE;
  return G_SOURCE_REMOVE;
}

static void
test_socketpair_post_from_blocked_callback (void)
{
  MsgPortMain *a, *b;
  g_autoptr(GMainContext) other = g_main_context_new ();
  g_autoptr(MsgRecorder) rec_b = NULL;
  BlockedPost post = { NULL, };
  GSource *idle;

  g_test_summary ("Bursts posted from a main-loop callback that then blocks, never going back "
                  "to its loop, still reach the other process, and so does one posted by "
                  "another thread meanwhile: a burst is held until the callback returns or "
                  "for a millisecond, whichever comes first");

  msg_test_socket_ports (&a, &b);
  rec_b = msg_recorder_new (b);
  g_main_context_push_thread_default (other);
  msg_port_main_start (b);
  g_main_context_pop_thread_default (other);

  post = (BlockedPost) { a, other, rec_b, FALSE };
  idle = g_idle_source_new ();
  g_source_set_callback (idle, post_and_block, &post, NULL);
  g_source_attach (idle, NULL);
  g_source_unref (idle);
  msg_test_wait_until (NULL, post.done);
  check_burst (rec_b, 0);
  check_burst (rec_b, 11);
  check_burst (rec_b, 22);

  g_object_unref (a);
  g_object_unref (b);
  msg_test_drain (NULL);
  msg_test_drain (other);
}

static gboolean
post_burst_cb (gpointer data)
{
  post_burst (data);
  return G_SOURCE_REMOVE;
}

static void
test_socketpair_post_from_dead_context (void)
{
  MsgPortMain *a, *b;
  g_autoptr(MsgRecorder) rec_b = NULL;
  GMainContext *context = g_main_context_new ();
  GSource *idle;

  g_test_summary ("A burst posted from a callback of a context that is freed before it "
                  "iterates again still goes out, and so does everything posted after it");

  msg_test_socket_ports (&a, &b);
  rec_b = msg_recorder_new (b);
  msg_port_main_start (b);

  idle = g_idle_source_new ();
  g_source_set_callback (idle, post_burst_cb, a, NULL);
  g_source_attach (idle, context);
  g_source_unref (idle);
  g_assert_true (g_main_context_iteration (context, FALSE));
  g_main_context_unref (context);

  msg_test_wait_until (NULL, rec_b->events->len == 11);
  check_burst (rec_b, 0);
  post_burst (a);
  msg_test_wait_until (NULL, rec_b->events->len == 22);
  check_burst (rec_b, 11);

  g_object_unref (a);
  g_object_unref (b);
}

#define STREAM_SIZE (1024 * 1024)

typedef struct
{
  MsgPortMain *port;     /* (owned) */
  guint        n;
} Streamer;

/* Posts @n messages of 1 MiB, as fast as they are built, every fourth
 * with the port of a new channel: more than the socket drains. */
static gpointer
stream_thread (gpointer data)
{
  Streamer *streamer = data;

  for (guint64 i = 0; i < streamer->n; i++)
    {
      guint8 *bytes = g_malloc (STREAM_SIZE);
      g_autoptr(MsgChannelMain) channel = NULL;
      g_autoptr(GError) error = NULL;
      MsgPortMain *ports[1];

      memset (bytes, (int) (i & 0xff), STREAM_SIZE);
      memcpy (bytes, &i, sizeof i);
      if (i % 4 == 3)
        {
          channel = msg_channel_main_new ();
          ports[0] = msg_channel_main_get_port2 (channel);
        }
      msg_port_main_post_message (streamer->port,
                                  g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, bytes,
                                                           STREAM_SIZE, TRUE, g_free, bytes),
                                  channel != NULL ? ports : NULL, channel != NULL ? 1 : 0,
                                  &error);
      g_assert_no_error (error);
    }
  g_object_unref (streamer->port);
  g_free (streamer);
  return NULL;
}

typedef struct
{
  guint64 n_received;
  guint64 n_ports;
} StreamCheck;

static void
on_large_stream_message (MsgPortMain     *port,
                   MsgMessageEvent *event,
                   gpointer         user_data)
{
  StreamCheck *check = user_data;
  GVariant *data = msg_message_event_get_data (event);
  const guint8 *bytes = g_variant_get_data (data);
  guint64 seq;

  g_assert_cmpuint (g_variant_get_size (data), ==, STREAM_SIZE);
  memcpy (&seq, bytes, sizeof seq);
  g_assert_cmpuint (seq, ==, check->n_received);
  for (gsize i = sizeof seq; i < STREAM_SIZE; i += 4093)
    g_assert_cmpuint (bytes[i], ==, seq & 0xff);
  g_assert_cmpuint (bytes[STREAM_SIZE - 1], ==, seq & 0xff);
  g_assert_cmpuint (msg_message_event_get_n_ports (event), ==, seq % 4 == 3 ? 1 : 0);
  check->n_ports += msg_message_event_get_n_ports (event);
  check->n_received++;
}

static void
test_socketpair_large_stream (void)
{
  MsgPortMain *a, *b;
  StreamCheck check = { 0, };
  Streamer *streamer = g_new0 (Streamer, 1);
  guint n = MAX (scaled (64), 8);
  GThread *thread;

  g_test_summary ("A thread that posts 1 MiB messages faster than the socket drains them, "
                  "every fourth with a port: all arrive whole and in order (the poster writes "
                  "plain frames at the head of the queue itself while the I/O thread waits for "
                  "the socket, and leaves those with ports to it)");

  msg_test_socket_ports (&a, &b);
  g_signal_connect (b, "message", G_CALLBACK (on_large_stream_message), &check);
  msg_port_main_start (b);

  streamer->port = a;
  streamer->n = n;
  thread = g_thread_new ("streamer", stream_thread, streamer);
  msg_test_wait_until (NULL, check.n_received == n);
  g_thread_join (thread);
  g_assert_cmpuint (check.n_ports, ==, n / 4);

  g_object_unref (b);
}

static void
test_socketpair_transfer (void)
{
  MsgPortMain *a, *b, *moving;
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  g_autoptr(MsgRecorder) rec_b = NULL;
  g_autoptr(MsgRecorder) rec_a = NULL;
  g_autoptr(MsgRecorder) rec_moved = NULL;
  g_autoptr(MsgRecorder) rec_back = NULL;
  g_autoptr(MsgRecorder) rec_port1 = NULL;
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  MsgPortMain *moved, *back;
  g_autoptr(GError) error = NULL;

  g_test_summary ("A port of an in-process channel crosses a socket (bridged) and comes back "
                  "(its socket moves), with every message queued or in flight, in order");

  msg_test_socket_ports (&a, &b);
  rec_a = msg_recorder_new (a);
  rec_b = msg_recorder_new (b);
  rec_port1 = msg_recorder_new (port1);
  msg_port_main_start (a);
  msg_port_main_start (b);
  msg_port_main_start (port1);

  moving = msg_channel_main_get_port2 (channel);
  for (guint i = 0; i < 100; i++)
    msg_port_main_post (port1, g_variant_new_uint32 (i), NULL);
  g_assert_true (msg_port_main_post_message (a, g_variant_new_string ("there"), &moving, 1, &error));
  g_assert_no_error (error);
  g_assert_true (msg_port_main_is_neutered (moving));
  for (guint i = 100; i < 200; i++)
    msg_port_main_post (port1, g_variant_new_uint32 (i), NULL);

  msg_test_wait_until (NULL, rec_b->events->len == 1);
  moved = msg_message_event_get_port (g_ptr_array_index (rec_b->events, 0), 0);
  rec_moved = msg_recorder_new (moved);
  msg_port_main_start (moved);
  msg_test_wait_until (NULL, rec_moved->events->len >= 1);
  /* Handled some of them here; the rest go on with the port. */
  msg_port_main_post (moved, g_variant_new_string ("hi from moved"), NULL);
  g_assert_true (msg_port_main_post_message (b, g_variant_new_string ("back"), &moved, 1, &error));
  g_assert_no_error (error);
  for (guint i = 200; i < 300; i++)
    msg_port_main_post (port1, g_variant_new_uint32 (i), NULL);

  msg_test_wait_until (NULL, rec_a->events->len == 1);
  back = msg_message_event_get_port (g_ptr_array_index (rec_a->events, 0), 0);
  rec_back = msg_recorder_new (back);
  msg_port_main_start (back);
  msg_test_wait_until (NULL, rec_moved->events->len + rec_back->events->len >= 300);
  g_assert_cmpuint (rec_moved->events->len + rec_back->events->len, ==, 300);
  for (guint i = 0; i < rec_moved->events->len; i++)
    g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec_moved, i)), ==, i);
  for (guint i = 0; i < rec_back->events->len; i++)
    g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec_back, i)), ==, rec_moved->events->len + i);

  msg_test_wait_until (NULL, rec_port1->events->len == 1);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec_port1, 0), NULL), ==, "hi from moved");
  msg_port_main_post (back, g_variant_new_string ("hi from back"), NULL);
  msg_port_main_close (back);
  msg_test_wait_until (NULL, rec_port1->n_close == 1);
  g_assert_cmpuint (rec_port1->events->len, ==, 2);
  g_assert_cmpuint (rec_moved->n_close, ==, 0);

  msg_port_main_close (a);
  msg_test_wait_until (NULL, rec_b->n_close == 1);
  g_object_unref (a);
  g_object_unref (b);
}

/* Serialized forms that are valid but not normal. */
static const struct
{
  const char   *type;
  const guint8  bytes[16];
  gsize         size;
  const char   *printed;   /* g_variant_print() of the value */
} non_normal[] = {
  { "b", { 0x02 }, 1, "true" },                                           /* booleans are 0 or 1 */
  { "(yi)", { 0x07, 0xff, 0xff, 0xff, 0x05, 0, 0, 0 }, 8, "(0x07, 5)" },  /* padding not zero */
  { "s", { 'a', 'b', 'c' }, 3, "''" },                                    /* no terminating nul */
  { "mi", { 0x01, 0x02 }, 2, "nothing" },                                 /* wrong size for a Just */
  { "as", { 'x', 0, 0x05 }, 3, "[]" },                                 /* offset past the end */
};

static GVariant *
new_non_normal (guint i)
{
  gpointer bytes = g_memdup2 (non_normal[i].bytes, non_normal[i].size);
  GVariant *value = g_variant_new_from_data (G_VARIANT_TYPE (non_normal[i].type), bytes,
                                             non_normal[i].size, FALSE, g_free, bytes);
  g_autofree char *printed = g_variant_print (value, FALSE);

  g_assert_false (g_variant_is_normal_form (value));
  g_assert_cmpstr (printed, ==, non_normal[i].printed);
  return g_variant_ref_sink (value);
}

static void
check_normal_arrival (MsgRecorder *rec,
                      guint        first)
{
  for (guint i = 0; i < G_N_ELEMENTS (non_normal); i++)
    {
      g_autoptr(GVariant) sent = new_non_normal (i);
      GVariant *got = msg_recorder_data (rec, first + i);

      g_assert_cmpstr (g_variant_get_type_string (got), ==, non_normal[i].type);
      g_assert_true (g_variant_is_normal_form (got));
      g_assert_true (g_variant_equal (got, sent));
    }
}

typedef struct
{
  MsgPortMain *port;
  gint         n_notified;  /* (atomic) */
} PostFromNotify;

static void
post_from_notify (gpointer data)
{
  PostFromNotify *state = data;

  /* The last unref of the message runs this, in the posting thread or the
   * I/O thread: it may post on the same port, so no lock of that port may
   * be held then. */
  g_atomic_int_inc (&state->n_notified);
  msg_port_main_post (state->port, g_variant_new_string ("from the notify"), NULL);
}

static void
test_socketpair_notify_posts (void)
{
  static const char text[] = "with a notify";
  g_autoptr(MsgPortMain) a = NULL;
  g_autoptr(MsgPortMain) b = NULL;
  g_autoptr(MsgRecorder) rec = NULL;
  PostFromNotify state = { NULL, 0 };
  guint rounds = 200;

  g_test_summary ("The GDestroyNotify of a posted message runs with no lock of the port "
                  "held, so it may post on the same port (it deadlocked when the last "
                  "unref ran under the endpoint lock)");

  msg_test_socket_ports (&a, &b);
  state.port = a;
  rec = msg_recorder_new (b);
  msg_port_main_start (b);
  for (guint i = 0; i < rounds; i++)
    msg_port_main_post (a, g_variant_new_from_data (G_VARIANT_TYPE_STRING, text, sizeof text,
                                                    TRUE, post_from_notify, &state),
                        NULL);
  msg_test_wait_until (NULL, rec->events->len == 2 * rounds);
  g_assert_cmpuint (g_atomic_int_get (&state.n_notified), ==, rounds);
  for (guint i = 0; i < 2 * rounds; i++)
    {
      const char *got = g_variant_get_string (msg_recorder_data (rec, i), NULL);

      g_assert_true (g_str_equal (got, text) || g_str_equal (got, "from the notify"));
    }
  msg_port_main_close (a);
  msg_test_wait_until (NULL, rec->n_close == 1);
}

static void
test_socketpair_non_normal (void)
{
  MsgPortMain *a, *b;
  g_autoptr(MsgRecorder) rec = NULL;
  Child child = { 0, };
  g_autoptr(MsgRecorder) rec_child = NULL;
  guint n = G_N_ELEMENTS (non_normal);

  g_test_summary ("Messages not in normal form (untrusted bytes) cross to another process "
                  "and arrive equal and in normal form, through a socket pair and through "
                  "a child that echoes them");

  msg_test_socket_ports (&a, &b);
  rec = msg_recorder_new (b);
  msg_port_main_start (b);
  child_spawn (&child, "echo", 0);
  rec_child = msg_recorder_new (child.port);
  msg_port_main_start (child.port);

  for (guint i = 0; i < n; i++)
    {
      g_autoptr(GVariant) value = new_non_normal (i);

      g_assert_true (msg_port_main_post (a, value, NULL));
      g_assert_true (msg_port_main_post (child.port, value, NULL));
    }
  g_assert_true (msg_port_main_post (a, g_variant_new_string ("end"), NULL));
  msg_test_wait_until (NULL, (rec->events->len == n + 1 && rec_child->events->len == n) ||
                             rec->n_close > 0 || rec_child->n_close > 0);
  g_assert_cmpuint (rec->n_close, ==, 0);
  g_assert_cmpuint (rec_child->n_close, ==, 0);
  check_normal_arrival (rec, 0);
  check_normal_arrival (rec_child, 0);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec, n), NULL), ==, "end");

  msg_port_main_close (child.port);
  child_wait (&child, 0);
  msg_port_main_close (a);
  msg_test_wait_until (NULL, rec->n_close == 1);
  g_object_unref (a);
  g_object_unref (b);
}

static void
test_socketpair_limits (void)
{
  MsgPortMain *a, *b;
  g_autoptr(MsgRecorder) rec = NULL;
  MsgChannelMain *channels[1025];
  MsgPortMain *transfer[1025];
  g_autoptr(GError) error = NULL;
  gsize limit = 128 * 1024 * 1024;
  g_autofree guint8 *big = g_malloc0 (limit + 1);
  g_autoptr(GVariant) long_type = NULL;
  GVariant *too_big;
  guint next = 0;

  g_test_summary ("Across processes a message over the limits (128 MiB serialized, a type "
                  "string of 64 KiB, 1024 ports) fails with TOO_LARGE, sends nothing and "
                  "neuters nothing; the limits themselves, and 128 ports, go through");

  msg_test_socket_ports (&a, &b);
  rec = msg_recorder_new (b);
  msg_port_main_start (b);

  /* Refused, each by one over a limit: these cost nothing, so they run
   * always, under valgrind too. */
  too_big = g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, big, limit + 1, TRUE, NULL, NULL);
  g_assert_false (msg_port_main_post (a, too_big, &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_TOO_LARGE);
  g_clear_error (&error);

  g_assert_false (msg_port_main_post (a, msg_test_tuple_of_bytes (64 * 1024 - 1), &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_TOO_LARGE);
  g_clear_error (&error);

  for (guint i = 0; i < G_N_ELEMENTS (transfer); i++)
    {
      channels[i] = msg_channel_main_new ();
      transfer[i] = msg_channel_main_get_port2 (channels[i]);
    }
  g_assert_false (msg_port_main_post_message (a, NULL, transfer, G_N_ELEMENTS (transfer), &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_TOO_LARGE);
  g_clear_error (&error);
  for (guint i = 0; i < G_N_ELEMENTS (transfer); i++)
    {
      g_assert_false (msg_port_main_is_neutered (transfer[i]));
      g_object_unref (channels[i]);
    }

  /* None of them sent anything: this is the first message to arrive. */
  g_assert_true (msg_port_main_post (a, g_variant_new_string ("first"), NULL));
  msg_test_wait_until (NULL, rec->events->len == 1);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec, next++), NULL), ==, "first");

  /* A type string of 64 KiB, exactly. */
  long_type = g_variant_ref_sink (msg_test_tuple_of_bytes (64 * 1024 - 2));
  g_assert_cmpuint (strlen (g_variant_get_type_string (long_type)), ==, 64 * 1024);
  g_assert_true (msg_port_main_post (a, long_type, &error));
  g_assert_no_error (error);
  msg_test_wait_until (NULL, rec->events->len == next + 1);
  g_assert_true (g_variant_equal (msg_recorder_data (rec, next++), long_type));

  /* 128 MiB, exactly. */
  if (g_getenv ("MSG_TEST_QUICK") == NULL)
    {
      GVariant *large = g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, big, limit,
                                                 TRUE, NULL, NULL);
      const guint8 *got;

      big[0] = 0x01;
      big[12345] = 0x5a;
      big[limit - 1] = 0xa5;
      g_assert_true (msg_port_main_post (a, large, &error));
      g_assert_no_error (error);
      msg_test_wait_until (NULL, rec->events->len == next + 1);
      g_assert_cmpuint (g_variant_get_size (msg_recorder_data (rec, next)), ==, limit);
      got = g_variant_get_data (msg_recorder_data (rec, next));
      g_assert_cmpuint (got[0], ==, 0x01);
      g_assert_cmpuint (got[12345], ==, 0x5a);
      g_assert_cmpuint (got[limit - 1], ==, 0xa5);
      next++;
    }

  {
    MsgPortMain *ports[128];
    MsgMessageEvent *event;

    for (guint i = 0; i < 128; i++)
      {
        channels[i] = msg_channel_main_new ();
        ports[i] = msg_channel_main_get_port2 (channels[i]);
      }
    g_assert_true (msg_port_main_post_message (a, g_variant_new_string ("ports"), ports, 128, &error));
    g_assert_no_error (error);
    msg_test_wait_until (NULL, rec->events->len == next + 1);
    event = g_ptr_array_index (rec->events, next);
    g_assert_cmpuint (msg_message_event_get_n_ports (event), ==, 128);
    for (guint i = 0; i < 128; i++)
      {
        g_autoptr(MsgRecorder) port_rec = msg_recorder_new (msg_message_event_get_port (event, i));

        msg_port_main_start (msg_message_event_get_port (event, i));
        msg_port_main_post (msg_channel_main_get_port1 (channels[i]), g_variant_new_uint32 (i), NULL);
        msg_test_wait_until (NULL, port_rec->events->len == 1);
        g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (port_rec, 0)), ==, i);
        msg_port_main_close (msg_channel_main_get_port1 (channels[i]));
        msg_test_wait_until (NULL, port_rec->n_close == 1);
        g_object_unref (channels[i]);
      }
  }

  msg_port_main_close (a);
  msg_test_wait_until (NULL, rec->n_close == 1);
  g_object_unref (a);
  g_object_unref (b);
}

typedef struct
{
  GMutex        mutex;
  GCond         cond;
  gboolean      done;         /* protected by @mutex */
  GCancellable *cancellable;
} Deadline;

/* The test's timeout: cancels the flush unless it returned by then. */
static gpointer
cancel_later (gpointer data)
{
  Deadline *deadline = data;
  gint64 end = g_get_monotonic_time () + MSG_TEST_TIMEOUT_SECONDS * G_TIME_SPAN_SECOND;

  msg_mutex_lock (&deadline->mutex);
  while (!deadline->done && msg_cond_wait_until (&deadline->cond, &deadline->mutex, end))
    ;
  if (!deadline->done)
    g_cancellable_cancel (deadline->cancellable);
  msg_mutex_unlock (&deadline->mutex);
  return NULL;
}

static void
test_socketpair_io_without_main_loop (void)
{
  MsgPortMain *a, *b;
  g_autoptr(MsgRecorder) rec = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *chunk = g_malloc0 (64 * 1024);
  guint n = 64;  /* 4 MiB: far more than a socket buffer holds, and less
                  * than a port that is not started takes (read-ahead) */
  Deadline deadline = { 0, };
  GThread *timer;

  g_test_summary ("Socket I/O goes on with no main context running: 4 MiB to a port "
                  "that is not started flush while nobody iterates any context");

  msg_test_socket_ports (&a, &b);
  for (guint i = 0; i < n; i++)
    {
      chunk[0] = i;
      g_assert_true (msg_port_main_post (a, g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, chunk,
                                                                       64 * 1024, 1), NULL));
    }

  deadline.cancellable = cancellable;
  timer = g_thread_new ("timeout", cancel_later, &deadline);
  g_assert_true (msg_port_main_flush (a, cancellable, &error));
  g_assert_no_error (error);
  msg_mutex_lock (&deadline.mutex);
  deadline.done = TRUE;
  g_cond_signal (&deadline.cond);
  msg_mutex_unlock (&deadline.mutex);
  g_thread_join (timer);

  rec = msg_recorder_new (b);
  msg_port_main_start (b);
  msg_test_wait_until (NULL, rec->events->len == n);
  for (guint i = 0; i < n; i++)
    g_assert_cmpuint (((const guint8 *) g_variant_get_data (msg_recorder_data (rec, i)))[0], ==, i & 0xff);

  msg_port_main_close (a);
  msg_test_wait_until (NULL, rec->n_close == 1);
  g_object_unref (a);
  g_object_unref (b);
}

/* What interrupts a flush() that blocks: the peer's end of the socket
 * closed, or the cancellable cancelled. */
typedef enum
{
  INTERRUPT_CLOSE_PEER,
  INTERRUPT_CANCEL,
} Interrupt;

typedef struct
{
  Interrupt     how;
  GCancellable *cancellable;
  int           raw;
} Interrupter;

/* Waits until flush() blocks (it connects to the cancellable's ::cancelled
 * just before it waits), then interrupts it. A flush that comes later
 * still sees the same outcome, so this only makes sure the wake-up of a
 * waiting flush is what the test exercises. */
static gpointer
interrupt_flush (gpointer data)
{
  Interrupter *interrupter = data;
  guint cancelled = g_signal_lookup ("cancelled", G_TYPE_CANCELLABLE);
  gint64 end = g_get_monotonic_time () + MSG_TEST_TIMEOUT_SECONDS * G_TIME_SPAN_SECOND;

  while (!g_signal_has_handler_pending (interrupter->cancellable, cancelled, 0, TRUE))
    {
      if (g_get_monotonic_time () > end)
        g_error ("flush() never blocked");
      g_thread_yield ();
    }
  if (interrupter->how == INTERRUPT_CLOSE_PEER)
    close (interrupter->raw);
  else
    g_cancellable_cancel (interrupter->cancellable);
  return NULL;
}

/* Posts @n messages of 64 KiB, numbered in their first byte. */
static void
post_backlog (MsgPortMain *port,
              guint        n)
{
  g_autofree guint8 *chunk = g_malloc0 (64 * 1024);

  for (guint i = 0; i < n; i++)
    {
      chunk[0] = i;
      g_assert_true (msg_port_main_post (port, g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, chunk,
                                                                          64 * 1024, 1), NULL));
    }
}

typedef struct
{
  guint   n_done;
  guint   n_ok;
  GError *error;   /* the last failure */
} Flushes;

static void
flush_done (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  Flushes *flushes = user_data;
  GError *error = NULL;

  if (msg_port_main_flush_finish (MSG_PORT_MAIN (source), result, &error))
    flushes->n_ok++;
  else
    {
      g_clear_error (&flushes->error);
      flushes->error = error;
    }
  flushes->n_done++;
}

static void
test_socketpair_flush_async (void)
{
  MsgPortMain *a, *b;
  g_autoptr(MsgRecorder) rec = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  Flushes flushes = { 0, };
  Flushes cancelled = { 0, };
  Flushes gone = { 0, };
  int raw;
  guint n = 64;

  g_test_summary ("flush_async() on a port whose peer does not read, with 4 MiB queued: "
                  "any number may be pending (nothing waits in a thread), a cancelled one "
                  "fails with G_IO_ERROR_CANCELLED, the others complete once the peer "
                  "reads, and pending ones fail with IO when the connection ends");

  msg_test_socket_port_for_port (&raw, &a);
  post_backlog (a, n);
  /* More than GIO's thread pool would hold, had each a thread. */
  for (guint i = 0; i < 50; i++)
    msg_port_main_flush_async (a, NULL, flush_done, &flushes);
  msg_port_main_flush_async (a, cancellable, flush_done, &cancelled);
  g_cancellable_cancel (cancellable);
  msg_test_wait_until (NULL, cancelled.n_done == 1);
  g_assert_error (cancelled.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&cancelled.error);
  g_assert_cmpuint (flushes.n_done, ==, 0);

  /* The peer reads at last. */
  b = msg_port_main_new_for_fd (raw, &error);
  g_assert_no_error (error);
  rec = msg_recorder_new (b);
  msg_port_main_start (b);
  msg_test_wait_until (NULL, flushes.n_done == 50);
  g_assert_cmpuint (flushes.n_ok, ==, 50);
  msg_test_wait_until (NULL, rec->events->len == n);

  g_clear_pointer (&rec, msg_recorder_free);
  msg_port_main_close (b);
  g_object_unref (b);
  g_object_unref (a);
  msg_test_drain (NULL);

  /* Another peer that does not read goes away while a flush waits. */
  msg_test_socket_port (&raw, &a);
  post_backlog (a, n);
  msg_port_main_flush_async (a, NULL, flush_done, &gone);
  close (raw);
  msg_test_wait_until (NULL, gone.n_done == 1);
  g_assert_nonnull (gone.error);
  g_assert_true (gone.error->domain == MSG_PORT_ERROR);
  g_test_message ("flush: %s", gone.error->message);
  g_clear_error (&gone.error);
  g_object_unref (a);
  msg_test_drain (NULL);
}

static void
test_socketpair_flush_peer_gone (void)
{
  MsgPortMain *a;
  g_autoptr(MsgRecorder) rec = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) reason = NULL;
  Interrupter interrupter = { INTERRUPT_CLOSE_PEER, cancellable, -1 };
  GThread *thread;

  g_test_summary ("flush() on a port whose peer never reads, with 4 MiB queued, returns "
                  "FALSE with IO or PEER_GONE when the peer's end closes while it waits");

  msg_test_socket_port (&interrupter.raw, &a);
  rec = msg_recorder_new (a);
  msg_port_main_start (a);
  post_backlog (a, 64);

  thread = g_thread_new ("interrupt", interrupt_flush, &interrupter);
  g_assert_false (msg_port_main_flush (a, cancellable, &error));
  g_thread_join (thread);
  g_assert_nonnull (error);
  g_assert_true (g_error_matches (error, MSG_PORT_ERROR, MSG_PORT_ERROR_IO) ||
                 g_error_matches (error, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_GONE));
  g_assert_false (g_cancellable_is_cancelled (cancellable));

  msg_test_wait_until (NULL, rec->n_close == 1);
  reason = msg_port_main_get_close_reason (a);
  g_assert_error (reason, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_GONE);
  g_assert_cmpuint (rec->events->len, ==, 0);
  g_object_unref (a);
}

static void
test_socketpair_flush_cancelled (void)
{
  MsgPortMain *a, *b;
  g_autoptr(MsgRecorder) rec = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) reason = NULL;
  Interrupter interrupter = { INTERRUPT_CANCEL, cancellable, -1 };
  GThread *thread;
  guint n = 64;

  g_test_summary ("flush() on a port whose peer does not read, with 4 MiB queued, returns "
                  "FALSE with G_IO_ERROR_CANCELLED when cancelled from another thread while "
                  "it waits; the port goes on, and everything arrives once the peer reads");

  msg_test_socket_port_for_port (&interrupter.raw, &a);
  post_backlog (a, n);

  thread = g_thread_new ("interrupt", interrupt_flush, &interrupter);
  g_assert_false (msg_port_main_flush (a, cancellable, &error));
  g_thread_join (thread);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);

  /* Cancelled already: at once. */
  g_assert_false (msg_port_main_flush (a, cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);

  /* The peer reads at last. */
  b = msg_port_main_new_for_fd (interrupter.raw, &error);
  g_assert_no_error (error);
  rec = msg_recorder_new (b);
  msg_port_main_start (b);
  g_assert_true (msg_port_main_flush (a, NULL, &error));
  g_assert_no_error (error);
  msg_test_wait_until (NULL, rec->events->len == n);
  for (guint i = 0; i < n; i++)
    g_assert_cmpuint (((const guint8 *) g_variant_get_data (msg_recorder_data (rec, i)))[0], ==, i);
  reason = msg_port_main_get_close_reason (b);
  g_assert_no_error (reason);

  msg_port_main_close (a);
  msg_test_wait_until (NULL, rec->n_close == 1);
  g_object_unref (a);
  g_object_unref (b);
}

/* Real child processes -------------------------------------------------- */

static void
test_child_echo (void)
{
  Child child = { 0, };
  g_autoptr(MsgRecorder) rec = NULL;
  g_autoptr(GError) reason = NULL;

  g_test_summary ("A spawned child gets a parent port; messages go there and back, equal "
                  "and in order; closing the parent's port ends the child");

  child_spawn (&child, "echo", 0);
  rec = msg_recorder_new (child.port);
  msg_port_main_start (child.port);
  check_round_trip (child.port, rec, scaled (10000));

  msg_port_main_close (child.port);
  msg_test_wait_until (NULL, rec->n_close == 1);
  reason = msg_port_main_get_close_reason (child.port);
  g_assert_error (reason, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED);
  child_wait (&child, 0);
}

static void
test_child_echo_ports (void)
{
  Child child = { 0, };
  g_autoptr(MsgRecorder) rec = NULL;
  g_autoptr(MsgRecorder) rec_port1 = NULL;
  g_autoptr(MsgRecorder) rec_back = NULL;
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  MsgPortMain *moving = msg_channel_main_get_port2 (channel);
  MsgPortMain *back;
  guint n = scaled (2000);

  g_test_summary ("A port goes to a child and comes back while its peer keeps posting: "
                  "nothing lost, nothing duplicated, in order");

  child_spawn (&child, "echo", 0);
  rec = msg_recorder_new (child.port);
  rec_port1 = msg_recorder_new (port1);
  msg_port_main_start (child.port);
  msg_port_main_start (port1);

  for (guint i = 0; i < n / 2; i++)
    msg_port_main_post (port1, g_variant_new_uint32 (i), NULL);
  g_assert_true (msg_port_main_post_message (child.port, g_variant_new_string ("port"), &moving, 1, NULL));
  for (guint i = n / 2; i < n; i++)
    msg_port_main_post (port1, g_variant_new_uint32 (i), NULL);

  msg_test_wait_until (NULL, rec->events->len == 1);
  back = msg_message_event_get_port (g_ptr_array_index (rec->events, 0), 0);
  rec_back = msg_recorder_new (back);
  msg_port_main_start (back);
  msg_test_wait_until (NULL, rec_back->events->len == n);
  for (guint i = 0; i < n; i++)
    g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec_back, i)), ==, i);

  msg_port_main_post (back, g_variant_new_string ("reply"), NULL);
  msg_test_wait_until (NULL, rec_port1->events->len == 1);
  msg_port_main_close (port1);
  msg_test_wait_until (NULL, rec_back->n_close == 1);

  msg_port_main_close (child.port);
  child_wait (&child, 0);
}

static void
test_child_chain (void)
{
  Child b = { 0, }, c = { 0, };
  g_autoptr(MsgRecorder) rec_b = NULL;
  g_autoptr(MsgRecorder) rec_c = NULL;
  g_autoptr(MsgChannelMain) b_to_c = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) data = msg_channel_main_new ();
  MsgPortMain *port;
  guint64 n = scaled (20000), k = n / 4, first, count;

  g_test_summary ("A port carried A -> B -> C across three processes while its peer in A "
                  "keeps posting: C gets exactly what B did not, in order");

  child_spawn (&b, "chain-b", k);
  child_spawn (&c, "chain-c", n);
  rec_b = msg_recorder_new (b.port);
  rec_c = msg_recorder_new (c.port);
  msg_port_main_start (b.port);
  msg_port_main_start (c.port);

  /* B and C get the two ends of a channel: its socket ends up going
   * straight from B to C. */
  port = msg_channel_main_get_port1 (b_to_c);
  msg_port_main_post_message (b.port, g_variant_new_string ("to-c"), &port, 1, NULL);
  port = msg_channel_main_get_port2 (b_to_c);
  msg_port_main_post_message (c.port, g_variant_new_string ("from-b"), &port, 1, NULL);

  port = msg_channel_main_get_port2 (data);
  msg_port_main_post_message (b.port, g_variant_new_string ("data"), &port, 1, NULL);
  for (guint64 i = 0; i < n; i++)
    {
      msg_port_main_post (msg_channel_main_get_port1 (data), g_variant_new_uint64 (i), NULL);
      if (i % 64 == 0)
        msg_test_drain (NULL);
    }

  msg_test_wait_until (NULL, rec_b->events->len == 1 && rec_c->events->len == 1);
  g_assert_cmpuint (g_variant_get_uint64 (msg_recorder_data (rec_b, 0)), ==, k);
  g_variant_get (msg_recorder_data (rec_c, 0), "(tt)", &first, &count);
  g_assert_cmpuint (first, ==, k);
  g_assert_cmpuint (count, ==, n - k);

  msg_port_main_close (msg_channel_main_get_port1 (data));
  msg_port_main_close (b.port);
  msg_port_main_close (c.port);
  child_wait (&b, 0);
  child_wait (&c, 0);
}

static void
test_child_chain_middle_exits (void)
{
  Child b = { 0, }, c = { 0, };
  g_autoptr(MsgRecorder) rec_b = NULL;
  g_autoptr(MsgRecorder) rec_c = NULL;
  g_autoptr(MsgRecorder) rec_data = NULL;
  g_autoptr(MsgChannelMain) b_to_c = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) data = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (data);
  MsgPortMain *port;
  guint64 n = scaled (2000), k = n / 4, first, count;

  g_test_summary ("A port carried A -> B -> C, where it is socket-backed in B: B exits "
                  "right after handing it on, and the port keeps working between A and C, "
                  "both ways");

  child_spawn (&b, "chain-b-exit", k);
  child_spawn (&c, "chain-c", n);
  rec_b = msg_recorder_new (b.port);
  rec_c = msg_recorder_new (c.port);
  rec_data = msg_recorder_new (port1);
  msg_port_main_start (b.port);
  msg_port_main_start (c.port);
  msg_port_main_start (port1);

  port = msg_channel_main_get_port1 (b_to_c);
  msg_port_main_post_message (b.port, g_variant_new_string ("to-c"), &port, 1, NULL);
  port = msg_channel_main_get_port2 (b_to_c);
  msg_port_main_post_message (c.port, g_variant_new_string ("from-b"), &port, 1, NULL);
  port = msg_channel_main_get_port2 (data);
  msg_port_main_post_message (b.port, g_variant_new_string ("data"), &port, 1, NULL);

  /* B takes K messages, hands the port to C and exits. */
  for (guint64 i = 0; i < k; i++)
    msg_port_main_post (port1, g_variant_new_uint64 (i), NULL);
  msg_test_wait_until (NULL, rec_b->events->len == 1);
  g_assert_cmpuint (g_variant_get_uint64 (msg_recorder_data (rec_b, 0)), ==, k);
  child_wait (&b, 0);
  g_assert_cmpuint (rec_data->n_close, ==, 0);

  /* With B gone, the rest goes to C, and C answers. */
  for (guint64 i = k; i < n; i++)
    msg_port_main_post (port1, g_variant_new_uint64 (i), NULL);
  msg_test_wait_until (NULL, (rec_c->events->len == 1 && rec_data->events->len == 1) ||
                             rec_data->n_close > 0);
  g_assert_cmpuint (rec_data->n_close, ==, 0);
  g_variant_get (msg_recorder_data (rec_c, 0), "(tt)", &first, &count);
  g_assert_cmpuint (first, ==, k);
  g_assert_cmpuint (count, ==, n - k);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec_data, 0), NULL), ==, "from c");

  msg_port_main_close (port1);
  msg_test_wait_until (NULL, rec_data->n_close == 1);
  msg_port_main_close (c.port);
  child_wait (&c, 0);
}

typedef struct
{
  MsgTestWorker *worker;
  MsgPortMain   *port;       /* the data port, in the worker */
  guint64        next;
  guint64        n;
  gint           done;       /* (atomic) */
  gint           wrong_order;  /* (atomic) */
} Leg;

static void
leg_message (MsgPortMain     *port,
             MsgMessageEvent *event,
             gpointer         user_data)
{
  Leg *leg = user_data;

  if (g_variant_get_uint64 (msg_message_event_get_data (event)) != leg->next)
    g_atomic_int_inc (&leg->wrong_order);
  if (++leg->next == leg->n)
    {
      g_atomic_int_set (&leg->done, 1);
      g_main_context_wakeup (NULL);  /* the test waits in the main context */
    }
}

static gboolean
leg_start (gpointer user_data)
{
  Leg *leg = user_data;

  g_signal_connect (leg->port, "message", G_CALLBACK (leg_message), leg);
  msg_port_main_start (leg->port);
  return G_SOURCE_REMOVE;
}

static void
test_thread_process_thread (void)
{
  Child child = { 0, };
  g_autoptr(MsgRecorder) rec = NULL;
  g_autoptr(MsgChannelMain) data = msg_channel_main_new ();
  MsgPortMain *moving = msg_channel_main_get_port2 (data);
  Leg leg = { msg_test_worker_new ("leg"), NULL, 0, 0, 0, 0 };
  guint64 n = scaled (20000), m = n / 3, already;
  GThread *thread;

  g_test_summary ("A port goes from this process to a child and back to a worker thread "
                  "while its peer keeps posting from another thread");

  child_spawn (&child, "hop", m);
  rec = msg_recorder_new (child.port);
  msg_port_main_start (child.port);
  msg_port_main_post_message (child.port, NULL, &moving, 1, NULL);

  thread = msg_test_count_in_thread (msg_channel_main_get_port1 (data), n);

  msg_test_wait_until (NULL, rec->events->len == 1);
  already = g_variant_get_uint64 (msg_recorder_data (rec, 0));
  g_assert_cmpuint (already, ==, m);
  leg.port = g_object_ref (msg_message_event_get_port (g_ptr_array_index (rec->events, 0), 0));
  leg.next = already;
  leg.n = n;
  msg_test_worker_invoke (leg.worker, leg_start, &leg);
  msg_test_wait_until (NULL, g_atomic_int_get (&leg.done));
  g_assert_cmpint (g_atomic_int_get (&leg.wrong_order), ==, 0);
  g_thread_join (thread);

  msg_port_main_close (msg_channel_main_get_port1 (data));
  msg_test_worker_free (leg.worker);
  g_object_unref (leg.port);
  msg_port_main_close (child.port);
  child_wait (&child, 0);
}

typedef struct
{
  guint n_replies;
  guint n_closes;
  guint n_bad;
} ManyPorts;

static void
many_reply (MsgPortMain     *port,
            MsgMessageEvent *event,
            gpointer         user_data)
{
  ManyPorts *many = user_data;

  if (GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (port), "seq")) !=
      g_variant_get_uint32 (msg_message_event_get_data (event)))
    many->n_bad++;
  many->n_replies++;
}

static void
many_close (MsgPortMain *port,
            gpointer     user_data)
{
  ManyPorts *many = user_data;

  many->n_closes++;
}

static void
test_child_many_ports (void)
{
  Child child = { 0, };
  ManyPorts many = { 0, 0, 0 };
  guint n = scaled (10000), window = 64;

  g_test_summary ("10 000 messages carrying ports to a child, which answers on each port "
                  "and closes it");

  /* Each port in flight holds descriptors. */
  set_fd_limit (RLIM_INFINITY);

  child_spawn (&child, "reply-on-ports", 0);
  msg_port_main_start (child.port);
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
      MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
      MsgPortMain *port2 = msg_channel_main_get_port2 (channel);

      g_object_set_data (G_OBJECT (port1), "seq", GUINT_TO_POINTER (i));
      g_signal_connect (port1, "message", G_CALLBACK (many_reply), &many);
      g_signal_connect (port1, "close", G_CALLBACK (many_close), &many);
      msg_port_main_start (port1);
      g_assert_true (msg_port_main_post_message (child.port, g_variant_new_uint32 (i), &port2, 1, NULL));
      if (i >= window)
        msg_test_wait_until (NULL, many.n_closes > i - window);
    }
  msg_test_wait_until (NULL, many.n_closes == n);
  g_assert_cmpuint (many.n_replies, ==, n);
  g_assert_cmpuint (many.n_bad, ==, 0);

  msg_port_main_close (child.port);
  child_wait (&child, 0);
}

typedef struct
{
  guint n_right;
  guint n_wrong;
} MaxPorts;

static void
max_ports_message (MsgPortMain     *port,
                   MsgMessageEvent *event,
                   gpointer         user_data)
{
  MaxPorts *max = user_data;

  if (GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (port), "seq")) ==
      g_variant_get_uint32 (msg_message_event_get_data (event)))
    max->n_right++;
  else
    max->n_wrong++;
}

static void
test_child_max_ports (void)
{
  Child child = { 0, };
  g_autoptr(MsgRecorder) rec = NULL;
  MsgChannelMain *channels[1025];
  MsgPortMain *ports[1025];
  MsgPortMain **back;
  MaxPorts max = { 0, 0 };
  g_autoptr(GError) error = NULL;
  guint n_back = 0;

  g_test_summary ("Exactly 1024 ports go to another process in one message, and work "
                  "there; 1025 fail with TOO_LARGE, sending and neutering nothing");

  /* Each port in flight holds descriptors. */
  set_fd_limit (RLIM_INFINITY);

  child_spawn (&child, "echo", 0);
  rec = msg_recorder_new (child.port);
  msg_port_main_start (child.port);
  for (guint i = 0; i < G_N_ELEMENTS (channels); i++)
    {
      channels[i] = msg_channel_main_new ();
      ports[i] = msg_channel_main_get_port2 (channels[i]);
    }

  g_assert_false (msg_port_main_post_message (child.port, g_variant_new_string ("1025"),
                                              ports, 1025, &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_TOO_LARGE);
  g_clear_error (&error);
  for (guint i = 0; i < 1025; i++)
    g_assert_false (msg_port_main_is_neutered (ports[i]));

  /* The child sends them back: they crossed twice. */
  g_assert_true (msg_port_main_post_message (child.port, g_variant_new_string ("1024"),
                                             ports, 1024, &error));
  g_assert_no_error (error);
  g_assert_true (msg_port_main_is_neutered (ports[0]));
  g_assert_true (msg_port_main_is_neutered (ports[1023]));
  g_assert_false (msg_port_main_is_neutered (ports[1024]));
  msg_test_wait_until (NULL, rec->events->len == 1);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec, 0), NULL), ==, "1024");
  back = msg_message_event_get_ports (g_ptr_array_index (rec->events, 0), &n_back);
  g_assert_cmpuint (n_back, ==, 1024);

  for (guint i = 0; i < n_back; i++)
    {
      g_object_set_data (G_OBJECT (back[i]), "seq", GUINT_TO_POINTER (i));
      g_signal_connect (back[i], "message", G_CALLBACK (max_ports_message), &max);
      msg_port_main_start (back[i]);
      msg_port_main_post (msg_channel_main_get_port1 (channels[i]), g_variant_new_uint32 (i), NULL);
    }
  msg_test_wait_until (NULL, max.n_right + max.n_wrong == n_back);
  g_assert_cmpuint (max.n_wrong, ==, 0);

  for (guint i = 0; i < n_back; i++)
    {
      g_signal_handlers_disconnect_by_data (back[i], &max);
      msg_port_main_close (back[i]);
    }
  for (guint i = 0; i < G_N_ELEMENTS (channels); i++)
    g_object_unref (channels[i]);
  msg_port_main_close (child.port);
  child_wait (&child, 0);
}

static void
on_stream_message (MsgPortMain     *port,
                   MsgMessageEvent *event,
                   gpointer         user_data)
{
  guint64 *next = user_data;

  g_assert_cmpuint (g_variant_get_uint64 (msg_message_event_get_data (event)), ==, *next);
  (*next)++;
}

static void
test_child_killed (void)
{
  Child child = { 0, };
  guint64 next = 0, at_close;
  guint n_close = 0;
  g_autoptr(GError) reason = NULL;

  g_test_summary ("A child killed with SIGKILL mid-stream: the parent's port emits close "
                  "exactly once (PEER_GONE), after the messages that had arrived, and "
                  "nothing after it");

  child_spawn (&child, "stream", 0);
  g_signal_connect (child.port, "message", G_CALLBACK (on_stream_message), &next);
  g_signal_connect (child.port, "close", G_CALLBACK (msg_test_count_signal), &n_close);
  msg_port_main_start (child.port);
  msg_test_wait_until (NULL, next >= 1000);
  g_subprocess_send_signal (child.process, SIGKILL);
  msg_test_wait_until (NULL, n_close == 1);
  at_close = next;
  /* Whatever was still on its way (the I/O thread, a context lease) has
   * had its chance to come. */
  msg_test_iterate_for (NULL, 200);
  g_assert_cmpuint (next, ==, at_close);
  g_assert_cmpuint (n_close, ==, 1);
  reason = msg_port_main_get_close_reason (child.port);
  g_assert_error (reason, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_GONE);
  child_wait (&child, SIGKILL);
}

static void
test_child_port_stream (void)
{
  Child child = { 0, };
  g_autoptr(MsgRecorder) rec = NULL;
  guint n = scaled (5000);

  g_test_summary ("A child posts a stream of messages that each carry a port: every frame "
                  "is one that the parent's context hands back to the I/O thread, which "
                  "leases the socket to it again meanwhile; all arrive, in order");

  child_spawn (&child, "port-stream", n);
  rec = msg_recorder_new (child.port);
  msg_port_main_start (child.port);
  msg_test_wait_until (NULL, rec->events->len == n);
  for (guint i = 0; i < n; i++)
    {
      MsgMessageEvent *event = g_ptr_array_index (rec->events, i);
      guint n_ports = 0;

      msg_message_event_get_ports (event, &n_ports);
      g_assert_cmpuint (n_ports, ==, 1);
      g_assert_cmpuint (g_variant_get_uint64 (msg_recorder_data (rec, i)), ==, i);
    }
  msg_port_main_close (child.port);
  child_wait (&child, 0);
}

static void
on_memfd_message (MsgPortMain     *port,
                  MsgMessageEvent *event,
                  gpointer         user_data)
{
  guint *next = user_data;
  gsize size;
  const guint8 *bytes = g_variant_get_fixed_array (msg_message_event_get_data (event), &size, 1);

  g_assert_cmpuint (size, ==, 1024 * 1024);
  g_assert_cmpuint (bytes[0], ==, (guint8) *next);
  (*next)++;
}

static void
test_child_memfd_stream (void)
{
  Child child = { 0, };
  guint n = scaled (1000), next = 0;

  g_test_summary ("A child posts 1 MiB messages in memfds as fast as it can: the parent's "
                  "context hands each memfd frame back to the I/O thread, which leases the "
                  "socket to it again; all arrive, in order (this stalled for good in 5 runs "
                  "of 12 when a context that dispatched still looked as if it polled, got a "
                  "new lease and dropped it with the one it handed back)");

  child_spawn_program (&child, "process-child-internal", "memfd-stream", n);
  g_signal_connect (child.port, "message", G_CALLBACK (on_memfd_message), &next);
  msg_port_main_start (child.port);
  msg_test_wait_until (NULL, next == n);
  msg_port_main_close (child.port);
  child_wait (&child, 0);
}

static void
test_child_flush_exit (void)
{
  Child child = { 0, };
  g_autoptr(MsgRecorder) rec = NULL;
  guint n = scaled (20000);

  g_test_summary ("A child that posts, flushes and exits at once: everything arrives, "
                  "then close");

  child_spawn (&child, "burst-exit", n);
  rec = msg_recorder_new (child.port);
  msg_port_main_start (child.port);
  msg_test_wait_until (NULL, rec->n_close == 1);
  g_assert_cmpuint (rec->events->len, ==, n);
  for (guint i = 0; i < n; i++)
    g_assert_cmpuint (g_variant_get_uint64 (msg_recorder_data (rec, i)), ==, i);
  child_wait (&child, 0);
}

static void
test_child_close_flush_exit (void)
{
  guint rounds = g_getenv ("MSG_TEST_QUICK") ? 3 : 30;

  guint n = scaled (2000);

  g_test_summary ("A child that posts, closes, flushes and exits at once (the order the "
                  "processes guide gives): every message arrives, then close with "
                  "PEER_CLOSED, not PEER_GONE");

  for (guint i = 0; i < rounds; i++)
    {
      Child child = { 0, };
      g_autoptr(MsgRecorder) rec = NULL;
      g_autoptr(GError) reason = NULL;

      child_spawn (&child, "close-flush-exit", n);
      rec = msg_recorder_new (child.port);
      msg_port_main_start (child.port);
      msg_test_wait_until (NULL, rec->n_close == 1);
      g_assert_cmpuint (rec->events->len, ==, n + 1);
      for (guint j = 0; j < n; j++)
        g_assert_cmpuint (g_variant_get_uint64 (msg_recorder_data (rec, j)), ==, j);
      g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec, n), NULL), ==, "bye");
      reason = msg_port_main_get_close_reason (child.port);
      g_assert_error (reason, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_CLOSED);
      g_clear_pointer (&rec, msg_recorder_free);
      child_wait (&child, 0);
    }
}

static gboolean
post_while_open (gpointer user_data)
{
  static const guint8 zeros[16 * 1024];
  MsgPortMain *port = user_data;
  g_autoptr(GVariant) chunk = g_variant_ref_sink (g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE,
                                                                             zeros, sizeof zeros, 1));

  if (msg_port_main_is_closed (port))
    return G_SOURCE_REMOVE;
  /* A burst per iteration: the writes keep going while the child exits. */
  for (guint i = 0; i < 16; i++)
    msg_port_main_post (port, chunk, NULL);
  return G_SOURCE_CONTINUE;
}

static void
test_child_exits_while_written (void)
{
  guint rounds = g_getenv ("MSG_TEST_QUICK") ? 3 : 10;

  g_test_summary ("A child that exits while the parent streams to it: the parent's port "
                  "ends with PEER_GONE (a write that fails with EPIPE or ECONNRESET is the "
                  "peer going away), never IO");

  for (guint i = 0; i < rounds; i++)
    {
      Child child = { 0, };
      g_autoptr(MsgRecorder) rec = NULL;
      g_autoptr(GError) reason = NULL;
      GSource *source = g_idle_source_new ();

      child_spawn (&child, "exit-after", 50 + 37 * i);
      rec = msg_recorder_new (child.port);
      msg_port_main_start (child.port);
      g_source_set_callback (source, post_while_open, child.port, NULL);
      g_source_attach (source, NULL);
      msg_test_wait_until (NULL, rec->n_close == 1);
      g_source_destroy (source);
      g_source_unref (source);
      reason = msg_port_main_get_close_reason (child.port);
      g_assert_error (reason, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_GONE);
      g_clear_pointer (&rec, msg_recorder_free);
      child_wait (&child, 0);
    }
}

/* Whether a lowered RLIMIT_NOFILE holds for descriptors received with
 * SCM_RIGHTS, through @pair (a socket pair made before the limit was
 * lowered): valgrind emulates the limit for the calls it sees, but the
 * kernel installs received descriptors past it. */
static gboolean
fd_limit_enforced (const int pair[2])
{
  int received[64];
  guint n = 0;
  gboolean truncated = FALSE;

  while (n < G_N_ELEMENTS (received) && !truncated)
    {
      union {
        struct cmsghdr header;
        char           buffer[CMSG_SPACE (sizeof (int))];
      } control;
      char byte = 0;
      struct iovec iov = { &byte, 1 };
      struct msghdr message = { 0, };
      struct cmsghdr *cmsg;
      int fd = 0;

      memset (&control, 0, sizeof control);
      message.msg_iov = &iov;
      message.msg_iovlen = 1;
      message.msg_control = control.buffer;
      message.msg_controllen = sizeof control.buffer;
      cmsg = CMSG_FIRSTHDR (&message);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN (sizeof (int));
      memcpy (CMSG_DATA (cmsg), &fd, sizeof (int));
      g_assert_cmpint (sendmsg (pair[0], &message, 0), ==, 1);

      message.msg_controllen = sizeof control.buffer;
      g_assert_cmpint (recvmsg (pair[1], &message, MSG_CMSG_CLOEXEC), ==, 1);
      truncated = (message.msg_flags & MSG_CTRUNC) != 0;
      cmsg = CMSG_FIRSTHDR (&message);
      if (!truncated && cmsg != NULL)
        memcpy (&received[n++], CMSG_DATA (cmsg), sizeof (int));
    }
  for (guint i = 0; i < n; i++)
    close (received[i]);
  return truncated;
}

/* Spawns an echo child, checks that a message comes back, closes. */
static void
echo_round (const char *text)
{
  Child child = { 0, };
  g_autoptr(MsgRecorder) rec = NULL;

  child_spawn (&child, "echo", 0);
  rec = msg_recorder_new (child.port);
  msg_port_main_start (child.port);
  msg_port_main_post (child.port, g_variant_new_string (text), NULL);
  msg_test_wait_until (NULL, rec->events->len == 1);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec, 0), NULL), ==, text);
  msg_port_main_close (child.port);
  msg_test_wait_until (NULL, rec->n_close == 1);
  g_clear_pointer (&rec, msg_recorder_free);
  child_wait (&child, 0);
}

static void
test_child_out_of_descriptors (void)
{
  Child child = { 0, };
  g_autoptr(MsgRecorder) rec = NULL;
  g_autoptr(GSubprocessLauncher) launcher = NULL;
  g_autoptr(MsgPortMain) refused = NULL;
  g_autoptr(GError) reason = NULL;
  g_autoptr(GError) error = NULL;
  struct rlimit saved;
  guint baseline, n_ports = 0;
  gboolean enforced;
  int probe[2];

  g_test_summary ("Ports arriving from a child while this process is out of descriptors "
                  "(RLIMIT_NOFILE low): that port closes with TOO_MANY_OPEN_FILES, not "
                  "PROTOCOL; new_for_launcher() fails with the same code; nothing leaks, "
                  "and once the limit is back, new children and ports work");

  /* The descriptors made once per process (the I/O thread's, GLib's
   * worker's) exist after a first round. */
  echo_round ("warm-up");
  g_assert_cmpint (getrlimit (RLIMIT_NOFILE, &saved), ==, 0);
  baseline = msg_test_count_fds ();

  child_spawn (&child, "ports-on-request", 0);
  rec = msg_recorder_new (child.port);
  msg_port_main_start (child.port);

  /* A few descriptors to spare, then ask for many ports. */
  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, probe), ==, 0);
  set_fd_limit (msg_test_count_fds () + 8);
  enforced = fd_limit_enforced (probe);
  close (probe[0]);
  close (probe[1]);
  if (!enforced)
    {
      set_fd_limit (saved.rlim_cur);
      msg_port_main_close (child.port);
      child_wait (&child, 0);
      g_test_skip ("RLIMIT_NOFILE is not enforced here (valgrind emulates it)");
      return;
    }
  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
  msg_port_main_post (child.port, g_variant_new_uint32 (200), NULL);
  msg_test_wait_until (NULL, rec->n_close == 1);
  reason = msg_port_main_get_close_reason (child.port);
  g_assert_error (reason, MSG_PORT_ERROR, MSG_PORT_ERROR_TOO_MANY_OPEN_FILES);
  g_assert_cmpuint (rec->events->len, <, 200);
  for (guint i = 0; i < rec->events->len; i++)
    {
      g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec, i)), ==, i);
      n_ports += msg_message_event_get_n_ports (g_ptr_array_index (rec->events, i));
    }
  g_assert_cmpuint (n_ports, ==, rec->events->len);

  /* Still out of descriptors: a launcher's socket pair fails, with the
   * same code. */
  while ((refused = msg_port_main_new_for_launcher (launcher, -1, &error)) != NULL)
    {
      /* There was room for one more pair: take it and try again. */
      g_clear_object (&launcher);
      g_clear_object (&refused);
      launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
    }
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_TOO_MANY_OPEN_FILES);

  /* Recovery: the limit back, everything released, a new child works. */
  set_fd_limit (saved.rlim_cur);
  g_clear_object (&launcher);
  g_clear_pointer (&rec, msg_recorder_free);
  child_wait (&child, 0);
  msg_test_wait_for_fds_at_most (baseline);
  echo_round ("still works");
  msg_test_wait_for_fds_at_most (baseline);
}

static void
test_child_out_of_descriptors_posting (void)
{
  Child child = { 0, };
  g_autoptr(MsgRecorder) rec = NULL;
  g_autoptr(MsgRecorder) rec_b = NULL;
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  g_autoptr(GArray) taken = g_array_new (FALSE, FALSE, sizeof (int));
  MsgPortMain *a = msg_channel_main_get_port1 (channel);
  MsgPortMain *b = msg_channel_main_get_port2 (channel);
  MsgPortMain *back;
  struct rlimit saved;
  guint baseline;
  int probe[2];
  int fd;

  g_test_summary ("A port posted to a child while this process is out of descriptors "
                  "(no socket pair can be made for it): the port that carried it and "
                  "the posted port's peer close with TOO_MANY_OPEN_FILES, nothing "
                  "arrives, nothing leaks, and once descriptors are free, ports cross "
                  "to a new child");

  echo_round ("warm-up");
  g_assert_cmpint (getrlimit (RLIMIT_NOFILE, &saved), ==, 0);
  baseline = msg_test_count_fds ();

  child_spawn (&child, "echo", 0);
  rec = msg_recorder_new (child.port);
  rec_b = msg_recorder_new (b);
  msg_port_main_start (child.port);
  msg_port_main_start (b);

  /* Every descriptor there is room for, taken. */
  set_fd_limit (msg_test_count_fds () + 16);
  while ((fd = dup (STDIN_FILENO)) >= 0)
    g_array_append_val (taken, fd);
  g_assert_cmpint (errno, ==, EMFILE);
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, probe) == 0)
    {
      close (probe[0]);
      close (probe[1]);
      for (guint i = 0; i < taken->len; i++)
        close (g_array_index (taken, int, i));
      set_fd_limit (saved.rlim_cur);
      msg_port_main_close (child.port);
      child_wait (&child, 0);
      g_test_skip ("socketpair() ignores RLIMIT_NOFILE here (valgrind emulates it); "
                   "/faults/export-out-of-descriptors covers this case everywhere");
      return;
    }

  g_assert_true (msg_port_main_post_message (child.port, g_variant_new_string ("carrying"),
                                             &a, 1, NULL));
  msg_test_wait_until (NULL, rec->n_close == 1 && rec_b->n_close == 1);
  msg_test_assert_close_reason (child.port, MSG_PORT_ERROR_TOO_MANY_OPEN_FILES);
  msg_test_assert_close_reason (b, MSG_PORT_ERROR_TOO_MANY_OPEN_FILES);
  g_assert_cmpuint (rec->events->len, ==, 0);
  g_assert_cmpuint (rec_b->events->len, ==, 0);

  /* Descriptors free again. */
  for (guint i = 0; i < taken->len; i++)
    close (g_array_index (taken, int, i));
  set_fd_limit (saved.rlim_cur);
  g_clear_pointer (&rec, msg_recorder_free);
  g_clear_pointer (&rec_b, msg_recorder_free);
  g_clear_object (&channel);
  child_wait (&child, 0);
  msg_test_wait_for_fds_at_most (baseline);

  /* A port goes to a new child and comes back. */
  channel = msg_channel_main_new ();
  a = msg_channel_main_get_port1 (channel);
  child = (Child) { 0, };
  child_spawn (&child, "echo", 0);
  rec = msg_recorder_new (child.port);
  msg_port_main_start (child.port);
  g_assert_true (msg_port_main_post_message (child.port, NULL, &a, 1, NULL));
  msg_test_wait_until (NULL, rec->events->len == 1);
  back = msg_message_event_get_port (g_ptr_array_index (rec->events, 0), 0);
  rec_b = msg_recorder_new (msg_channel_main_get_port2 (channel));
  msg_port_main_start (msg_channel_main_get_port2 (channel));
  msg_port_main_post (back, g_variant_new_string ("round trip"), NULL);
  msg_test_wait_until (NULL, rec_b->events->len == 1);
  msg_port_main_close (child.port);
  msg_test_wait_until (NULL, rec->n_close == 1);
  g_clear_pointer (&rec, msg_recorder_free);
  g_clear_pointer (&rec_b, msg_recorder_free);
  g_clear_object (&channel);
  child_wait (&child, 0);
  msg_test_wait_for_fds_at_most (baseline);
}

/* Keep-alive ------------------------------------------------------------ */

static void
test_keep_alive_stopped_peer (void)
{
  Child child = { 0, };
  g_autoptr(MsgRecorder) rec = NULL;
  g_autoptr(GError) reason = NULL;
  const char *pid;
  gint64 stopped_at;

  g_test_summary ("With a keep-alive interval set, a peer process that is stopped "
                  "(SIGSTOP) is noticed: the port closes with KEEP_ALIVE_TIMEOUT");

  child_spawn (&child, "echo", 0);
  msg_port_main_set_keep_alive_interval (child.port, 100);
  g_assert_cmpuint (msg_port_main_get_keep_alive_interval (child.port), ==, 100);
  rec = msg_recorder_new (child.port);
  msg_port_main_start (child.port);
  msg_port_main_post (child.port, g_variant_new_string ("are you there"), NULL);
  msg_test_wait_until (NULL, rec->events->len == 1);

  pid = g_subprocess_get_identifier (child.process);
  g_assert_cmpint (kill (atoi (pid), SIGSTOP), ==, 0);
  stopped_at = g_get_monotonic_time ();
  msg_test_wait_until (NULL, rec->n_close == 1);
  g_test_message ("noticed after %" G_GINT64_FORMAT " ms (interval 100 ms)",
                  (g_get_monotonic_time () - stopped_at) / 1000);
  reason = msg_port_main_get_close_reason (child.port);
  g_assert_error (reason, MSG_PORT_ERROR, MSG_PORT_ERROR_KEEP_ALIVE_TIMEOUT);

  /* SIGKILL ends a stopped process too. */
  g_subprocess_send_signal (child.process, SIGKILL);
  child_wait (&child, SIGKILL);
}

static void
test_keep_alive_busy_peer (void)
{
  Child child = { 0, };
  g_autoptr(MsgRecorder) rec = NULL;

  g_test_summary ("A peer process whose main loop is busy for many keep-alive intervals "
                  "is not declared dead: its library's I/O thread answers the pings");

  child_spawn (&child, "busy", 0);
  msg_port_main_set_keep_alive_interval (child.port, 50);
  rec = msg_recorder_new (child.port);
  msg_port_main_start (child.port);
  /* Busy for 20 intervals, while this end keeps pinging. */
  msg_port_main_post (child.port, g_variant_new_uint32 (1000), NULL);
  msg_test_wait_until (NULL, rec->events->len == 1 || rec->n_close == 1);
  g_assert_cmpuint (rec->n_close, ==, 0);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec, 0), NULL), ==, "done");

  /* Off again: the channel goes on as before. */
  msg_port_main_set_keep_alive_interval (child.port, 0);
  msg_port_main_post (child.port, g_variant_new_uint32 (1), NULL);
  msg_test_wait_until (NULL, rec->events->len == 2);
  msg_port_main_close (child.port);
  child_wait (&child, 0);
  g_assert_cmpuint (rec->n_close, ==, 1);
}

static void
test_flow_child (void)
{
  Child child = { 0, };
  g_autoptr(MsgRecorder) rec = NULL;
  guint drains = 0;
  guint n = 50;

  g_test_summary ("Flow control with a child process: what the child's handlers have not "
                  "taken counts, the child acknowledges as it takes, and the parent's port "
                  "becomes writable again with ::drain once the child caught up");

  child_spawn (&child, "busy", 0);
  rec = msg_recorder_new (child.port);
  g_signal_connect (child.port, "drain", G_CALLBACK (msg_test_count_signal), &drains);
  msg_port_main_start (child.port);
  /* Each message keeps the child busy for 5 ms: the posts are done long
   * before it took more than a few. */
  msg_port_main_set_high_water_mark (child.port, 8 * 4);
  for (guint i = 0; i < n; i++)
    msg_port_main_post (child.port, g_variant_new_uint32 (5), NULL);
  g_assert_cmpuint (msg_port_main_get_messages_sent (child.port), ==, n);
  g_assert_cmpuint (msg_port_main_get_bytes_sent (child.port), ==, 4 * n);
  g_assert_cmpuint (msg_port_main_get_buffered_messages (child.port), <=, n);

  msg_test_wait_until (NULL, rec->events->len == n);
  msg_test_wait_until (NULL, msg_port_main_get_buffered_messages (child.port) == 0);
  g_assert_cmpuint (msg_port_main_get_buffered_amount (child.port), ==, 0);
  g_assert_true (msg_port_main_is_writable (child.port));
  /* It was above the mark (8 messages of 4 bytes) when the posts ended,
   * and fell below half of it once. */
  g_assert_cmpuint (drains, ==, 1);
  g_assert_cmpuint (msg_port_main_get_messages_received (child.port), ==, n);

  msg_port_main_close (child.port);
  child_wait (&child, 0);
}

static void
test_keep_alive_in_process (void)
{
  MsgChannelMain *ch = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (ch);

  g_test_summary ("On a port whose peer is in this process the interval is kept, and "
                  "does nothing");

  msg_port_main_set_keep_alive_interval (port1, 10);
  g_assert_cmpuint (msg_port_main_get_keep_alive_interval (port1), ==, 10);
  g_object_unref (ch);
}

/* Descriptors inside messages -------------------------------------------- */

static gboolean
fd_ready (gint         fd,
          GIOCondition condition,
          gpointer     user_data)
{
  *(gboolean *) user_data = TRUE;
  return G_SOURCE_REMOVE;
}

/* Iterates the default context until @fd (non-blocking) is readable or
 * hung up. */
static void
wait_readable (int fd)
{
  gboolean ready = FALSE;

  /* Removed once it ran: the wait fails the test otherwise. */
  g_unix_fd_add (fd, G_IO_IN | G_IO_HUP, fd_ready, &ready);
  msg_test_wait_until (NULL, ready);
}

/* Reads @expected from the pipe @fd, then waits for its end of file:
 * every write end, the duplicates that went to other processes too, was
 * closed. */
static void
pipe_expect (int         fd,
             const char *expected)
{
  gsize length = strlen (expected), got = 0;
  char buffer[256];

  g_assert_cmpint (fcntl (fd, F_SETFL, O_NONBLOCK), ==, 0);
  g_assert_cmpuint (length, <, sizeof buffer);
  for (;;)
    {
      gssize n = read (fd, buffer + got, sizeof buffer - got);

      if (n == 0)
        break;
      if (n < 0)
        {
          g_assert_cmpint (errno, ==, EAGAIN);
          wait_readable (fd);
          continue;
        }
      got += n;
      g_assert_cmpuint (got, <=, length);
    }
  g_assert_cmpuint (got, ==, length);
  g_assert_cmpint (memcmp (buffer, expected, length), ==, 0);
}

/* An unlinked file with @text in it, at offset 0. */
static int
temp_file_with (const char *text)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *path = NULL;
  int fd = g_file_open_tmp ("msg-process-XXXXXX", &path, &error);

  g_assert_no_error (error);
  g_assert_cmpint (unlink (path), ==, 0);
  g_assert_cmpint (write (fd, text, strlen (text)), ==, (gssize) strlen (text));
  return fd;
}

/* A list that owns @n_fds descriptors, which are closed here. */
static GUnixFDList *
fd_list_taking (int   *fds,
                guint  n_fds)
{
  GUnixFDList *list = g_unix_fd_list_new ();
  g_autoptr(GError) error = NULL;

  for (guint i = 0; i < n_fds; i++)
    {
      g_assert_cmpint (g_unix_fd_list_append (list, fds[i], &error), ==, (gint) i);
      g_assert_no_error (error);
      close (fds[i]);
    }
  return list;
}

/* Spawns an "fds" child and makes one round trip with it, so that what
 * the I/O thread and GLib open once is open: returns the descriptor
 * count after it. */
static guint
child_spawn_fds (Child        *child,
                 MsgRecorder **rec)
{
  child_spawn (child, "fds", 0);
  *rec = msg_recorder_new (child->port);
  msg_port_main_start (child->port);
  msg_port_main_post (child->port, g_variant_new ("(s)", "echo"), NULL);
  msg_test_wait_until (NULL, (*rec)->events->len == 1);
  g_ptr_array_set_size ((*rec)->events, 0);
  return msg_test_count_fds ();
}

static void
test_child_fds_use (void)
{
  Child child = { 0, };
  g_autoptr(MsgRecorder) rec = NULL;
  g_autoptr(MsgRecorder) rec_reply = NULL;
  g_autoptr(MsgChannelMain) reply = msg_channel_main_new ();
  MsgPortMain *reply_port = msg_channel_main_get_port2 (reply);
  g_autoptr(GUnixFDList) list = NULL;
  g_autoptr(GError) error = NULL;
  guint baseline = child_spawn_fds (&child, &rec);
  int pipe_fds[2];
  int fds[2];

  g_test_summary ("A parent hands a child an open file and a pipe beside a port in one "
                  "message: the child reads the file, writes it into the pipe and answers "
                  "on the port; every descriptor is closed in the end, in both processes");

  rec_reply = msg_recorder_new (msg_channel_main_get_port1 (reply));
  msg_port_main_start (msg_channel_main_get_port1 (reply));
  g_assert_true (g_unix_open_pipe (pipe_fds, FD_CLOEXEC, NULL));
  fds[0] = temp_file_with ("an open file, read in the child");
  fds[1] = pipe_fds[1];
  list = fd_list_taking (fds, 2);
  g_assert_true (msg_port_main_post_with_unix_fd_list (child.port,
                                                       g_variant_new ("(shh)", "use", 0, 1),
                                                       &reply_port, 1, list, &error));
  g_assert_no_error (error);
  g_clear_object (&list);

  msg_test_wait_until (NULL, rec_reply->n_close == 1);
  g_assert_cmpuint (rec_reply->events->len, ==, 1);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec_reply, 0), NULL), ==,
                   "an open file, read in the child");
  pipe_expect (pipe_fds[0], "an open file, read in the child");
  close (pipe_fds[0]);
  g_assert_cmpuint (rec->events->len, ==, 0);
  g_clear_pointer (&rec_reply, msg_recorder_free);
  g_clear_object (&reply);
  msg_test_wait_for_fd_count (baseline);

  msg_port_main_close (child.port);
  child_wait (&child, 0);
}

typedef struct
{
  MsgTestWorker *in;       /* posts */
  MsgTestWorker *out;      /* receives */
  MsgPortMain   *port;     /* the child's, started in @out */
  GUnixFDList   *list;     /* (owned) (nullable): what @in posts */
  GThread       *posted_from;
  GThread       *used_in;
  gint           state;    /* (atomic): 1 warmed up, 2 used */
} FdLegs;

static void
fd_legs_message (MsgPortMain     *port,
                 MsgMessageEvent *event,
                 gpointer         user_data)
{
  FdLegs *legs = user_data;
  GUnixFDList *list = msg_message_event_get_unix_fd_list (event);
  gint32 h;

  if (list == NULL)
    {
      g_atomic_int_set (&legs->state, 1);
      g_main_context_wakeup (NULL);
      return;
    }
  g_variant_get (msg_message_event_get_data (event), "(&sh)", NULL, &h);
  if (write (g_unix_fd_list_peek_fds (list, NULL)[h], "thread", 6) == 6)
    legs->used_in = g_thread_self ();
  g_atomic_int_set (&legs->state, 2);
  g_main_context_wakeup (NULL);
}

static gboolean
fd_legs_start (gpointer data)
{
  FdLegs *legs = data;

  g_signal_connect (legs->port, "message", G_CALLBACK (fd_legs_message), legs);
  msg_port_main_start (legs->port);
  msg_port_main_post (legs->port, g_variant_new ("(s)", "echo"), NULL);
  return G_SOURCE_REMOVE;
}

static gboolean
fd_legs_post (gpointer data)
{
  FdLegs *legs = data;

  /* Before the post: the answer may come back before it returns. */
  g_atomic_pointer_set (&legs->posted_from, g_thread_self ());
  g_assert_true (msg_port_main_post_with_unix_fd_list (legs->port,
                                                       g_variant_new ("(sh)", "echo", 0),
                                                       NULL, 0, legs->list, NULL));
  g_clear_object (&legs->list);
  return G_SOURCE_REMOVE;
}

static gboolean
fd_legs_stop (gpointer data)
{
  FdLegs *legs = data;

  msg_port_main_close (legs->port);
  g_atomic_int_set (&legs->state, 3);
  g_main_context_wakeup (NULL);
  return G_SOURCE_REMOVE;
}

static void
test_child_fds_thread_process_thread (void)
{
  Child child = { 0, };
  FdLegs legs = { msg_test_worker_new ("in"), msg_test_worker_new ("out"), NULL, NULL, NULL, NULL, 0 };
  guint baseline;
  int pipe_fds[2];

  g_test_summary ("A descriptor crosses thread -> process -> thread: one thread posts a "
                  "pipe to a child, which sends it back to a port started in another "
                  "thread, which writes into it");

  child_spawn (&child, "fds", 0);
  legs.port = child.port;
  msg_test_worker_invoke (legs.out, fd_legs_start, &legs);
  msg_test_wait_until (NULL, g_atomic_int_get (&legs.state) == 1);
  baseline = msg_test_count_fds ();

  g_assert_true (g_unix_open_pipe (pipe_fds, FD_CLOEXEC, NULL));
  legs.list = fd_list_taking (&pipe_fds[1], 1);
  msg_test_worker_invoke (legs.in, fd_legs_post, &legs);
  msg_test_wait_until (NULL, g_atomic_int_get (&legs.state) == 2);
  g_assert_true (g_atomic_pointer_get (&legs.posted_from) != NULL &&
                 g_atomic_pointer_get (&legs.posted_from) != g_thread_self ());
  g_assert_true (legs.used_in != NULL && legs.used_in != g_thread_self () &&
                 legs.used_in != g_atomic_pointer_get (&legs.posted_from));
  pipe_expect (pipe_fds[0], "thread");
  close (pipe_fds[0]);
  msg_test_wait_for_fd_count (baseline);

  msg_test_worker_invoke (legs.out, fd_legs_stop, &legs);
  msg_test_wait_until (NULL, g_atomic_int_get (&legs.state) == 3);
  msg_test_worker_free (legs.in);
  msg_test_worker_free (legs.out);
  child_wait (&child, 0);
}

static void
test_child_fds_third_process (void)
{
  Child b = { 0, }, c = { 0, };
  g_autoptr(MsgRecorder) rec_b = NULL;
  g_autoptr(MsgRecorder) rec_c = NULL;
  g_autoptr(MsgRecorder) rec_reply = NULL;
  MsgChannelMain *b_to_c = msg_channel_main_new ();
  MsgChannelMain *data = msg_channel_main_new ();
  MsgChannelMain *reply = msg_channel_main_new ();
  MsgPortMain *sender = msg_channel_main_get_port1 (data);
  MsgPortMain *port;
  g_autoptr(GUnixFDList) list = NULL;
  g_autoptr(GError) error = NULL;
  guint baseline;
  int pipe_fds[2];
  int fds[2];

  g_test_summary ("A message with a port and descriptors, queued on a port that is not "
                  "started, moves with it A -> B -> C: C gets it with its descriptors, "
                  "which work, and answers on its port to A");

  child_spawn_fds (&b, &rec_b);
  baseline = child_spawn_fds (&c, &rec_c);

  /* B keeps a port whose peer C starts. */
  port = msg_channel_main_get_port1 (b_to_c);
  g_assert_true (msg_port_main_post_message (b.port, g_variant_new ("(s)", "keep"), &port, 1, NULL));
  port = msg_channel_main_get_port2 (b_to_c);
  g_assert_true (msg_port_main_post_message (c.port, g_variant_new ("(s)", "adopt"), &port, 1, NULL));
  g_clear_object (&b_to_c);

  /* Queued on the data port before it moves. */
  rec_reply = msg_recorder_new (msg_channel_main_get_port1 (reply));
  msg_port_main_start (msg_channel_main_get_port1 (reply));
  g_assert_true (g_unix_open_pipe (pipe_fds, FD_CLOEXEC, NULL));
  fds[0] = temp_file_with ("read in the third process");
  fds[1] = pipe_fds[1];
  list = fd_list_taking (fds, 2);
  port = msg_channel_main_get_port2 (reply);
  g_assert_true (msg_port_main_post_with_unix_fd_list (sender,
                                                       g_variant_new ("(shh)", "use", 0, 1),
                                                       &port, 1, list, &error));
  g_assert_no_error (error);
  g_clear_object (&list);

  /* B sends it on to C without starting it. */
  port = msg_channel_main_get_port2 (data);
  g_assert_true (msg_port_main_post_message (b.port, g_variant_new ("(s)", "relay"), &port, 1, NULL));

  msg_test_wait_until (NULL, rec_reply->n_close == 1);
  g_assert_cmpuint (rec_reply->events->len, ==, 1);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec_reply, 0), NULL), ==,
                   "read in the third process");
  pipe_expect (pipe_fds[0], "read in the third process");
  close (pipe_fds[0]);
  g_clear_pointer (&rec_reply, msg_recorder_free);
  g_clear_object (&reply);
  msg_port_main_close (sender);
  g_clear_object (&data);
  g_assert_cmpuint (rec_b->events->len, ==, 0);
  g_assert_cmpuint (rec_c->events->len, ==, 0);
  msg_test_wait_for_fd_count (baseline);

  msg_port_main_close (b.port);
  msg_port_main_close (c.port);
  child_wait (&b, 0);
  child_wait (&c, 0);
}

static void
test_child_python (void)
{
  Child child = { 0, };
  g_autoptr(MsgRecorder) rec = NULL;
  g_autofree char *script = g_test_build_filename (G_TEST_DIST, "python", "child.py", NULL);
  const char *argv[] = { "/usr/bin/python3", script, NULL };

  g_test_summary ("A Python child (PyGObject) gets its parent port and echoes");

  if (!g_file_test (argv[0], G_FILE_TEST_IS_EXECUTABLE) || g_getenv ("GI_TYPELIB_PATH") == NULL)
    {
      g_test_skip ("needs /usr/bin/python3 and the typelib");
      return;
    }

  child_spawn_argv (&child, argv);
  rec = msg_recorder_new (child.port);
  msg_port_main_start (child.port);
  check_round_trip (child.port, rec, 100);
  msg_port_main_close (child.port);
  child_wait (&child, 0);
}

/* What a child forked with @port, a port of its parent's, does with it;
 * returns 0 if everything was refused as documented, or the number of the
 * first check that failed. Only the child runs this. */
static int
forked_child_checks (MsgPortMain *port)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *transfer[1] = { port };
  GError *error = NULL;
  gboolean ok;

  ok = msg_port_main_post (port, g_variant_new_string ("from the child"), &error);
  if (ok || !g_error_matches (error, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED))
    return 1;
  g_clear_error (&error);

  /* Sent on, its socket would reach another process. */
  ok = msg_port_main_post_message (msg_channel_main_get_port1 (channel), NULL,
                                   transfer, 1, &error);
  if (ok || !g_error_matches (error, MSG_PORT_ERROR, MSG_PORT_ERROR_DATA_CLONE))
    return 2;
  g_clear_error (&error);

  /* Nothing would ever be written: no waiting. */
  ok = msg_port_main_flush (port, NULL, &error);
  if (ok || !g_error_matches (error, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED))
    return 3;
  g_clear_error (&error);

  /* Closing and dropping it end it here only: no close frame. */
  msg_port_main_close (port);
  g_object_unref (port);

  return 0;
}

static void
test_socketpair_forked_child (void)
{
  MsgPortMain *port;
  int raw, status;
  int verdict[2];
  char buffer[256];
  char result;
  pid_t pid;

  g_test_summary ("A child forked (without exec) with a socket-backed port of its parent's "
                  "cannot use it: posting, transferring and flushing fail with a GError, "
                  "closing and dropping it end it in the child only, and not one byte "
                  "reaches the parent's stream");

  msg_test_socket_port (&raw, &port);
  g_assert_true (msg_port_main_post (port, g_variant_new_string ("before"), NULL));
  g_assert_true (msg_port_main_flush (port, NULL, NULL));
  /* The stream so far, so that what follows is only what comes next. */
  while (recv (raw, buffer, sizeof buffer, MSG_DONTWAIT) > 0)
    ;

  /* The verdict comes through a pipe, not the exit status: under
   * valgrind the child's leak check sets that (the parent's threads
   * leave their memory behind in it, unreachable). */
  g_assert_cmpint (pipe (verdict), ==, 0);
  pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0)
    {
      result = (char) forked_child_checks (port);
      _exit (write (verdict[1], &result, 1) == 1 ? 0 : 100);
    }

  close (verdict[1]);
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (read (verdict[0], &result, 1), ==, 1);
  g_assert_cmpint (result, ==, 0);
  close (verdict[0]);

  /* The child is gone, with its copy of the socket: had it written
   * anything, it would be there. */
  errno = 0;
  g_assert_cmpint (recv (raw, buffer, sizeof buffer, MSG_DONTWAIT), ==, -1);
  g_assert_cmpint (errno, ==, EAGAIN);

  /* The parent's port still works. */
  g_assert_true (msg_port_main_post (port, g_variant_new_string ("after"), NULL));
  g_assert_true (msg_port_main_flush (port, NULL, NULL));
  g_assert_cmpint (recv (raw, buffer, sizeof buffer, MSG_DONTWAIT), >, 0);

  msg_port_main_close (port);
  g_object_unref (port);
  close (raw);
}

int
main (int    argc,
      char **argv)
{
  GSource *keep_list;
  int ret;

  g_test_init (&argc, &argv, NULL);
  signal (SIGPIPE, SIG_IGN);

  /* GLib's worker thread frees the main context's list of default
   * priority behind TSan's back, unless a source keeps it (see
   * msg_test_keep_source_list()). */
  keep_list = msg_test_keep_source_list (NULL);

  g_test_add_func ("/process/new-for-fd/invalid", test_new_for_fd_invalid);
  g_test_add_func ("/process/new-for-launcher/invalid", test_new_for_launcher_invalid);
  g_test_add_func ("/process/socketpair/messages", test_socketpair_messages);
  g_test_add_func ("/process/socketpair/send-buffer", test_socketpair_send_buffer);
  g_test_add_func ("/process/socketpair/post-from-blocked-callback",
                   test_socketpair_post_from_blocked_callback);
  g_test_add_func ("/process/socketpair/post-from-dead-context", test_socketpair_post_from_dead_context);
  g_test_add_func ("/process/socketpair/large-stream", test_socketpair_large_stream);
  g_test_add_func ("/process/socketpair/transfer", test_socketpair_transfer);
  g_test_add_func ("/process/socketpair/limits", test_socketpair_limits);
  g_test_add_func ("/process/socketpair/non-normal", test_socketpair_non_normal);
  g_test_add_func ("/process/socketpair/notify-posts", test_socketpair_notify_posts);
  g_test_add_func ("/process/socketpair/io-without-main-loop", test_socketpair_io_without_main_loop);
  g_test_add_func ("/process/socketpair/flush/peer-gone", test_socketpair_flush_peer_gone);
  g_test_add_func ("/process/socketpair/flush/cancelled", test_socketpair_flush_cancelled);
  g_test_add_func ("/process/socketpair/forked-child", test_socketpair_forked_child);
  g_test_add_func ("/process/child/echo", test_child_echo);
  g_test_add_func ("/process/child/echo-ports", test_child_echo_ports);
  g_test_add_func ("/process/child/chain-of-three", test_child_chain);
  g_test_add_func ("/process/child/chain-of-three/middle-exits", test_child_chain_middle_exits);
  g_test_add_func ("/process/child/thread-process-thread", test_thread_process_thread);
  g_test_add_func ("/process/child/many-ports", test_child_many_ports);
  g_test_add_func ("/process/child/max-ports", test_child_max_ports);
  g_test_add_func ("/process/child/killed", test_child_killed);
  g_test_add_func ("/process/child/port-stream", test_child_port_stream);
  g_test_add_func ("/process/child/memfd-stream", test_child_memfd_stream);
  g_test_add_func ("/process/child/flush-exit", test_child_flush_exit);
  g_test_add_func ("/process/child/close-flush-exit", test_child_close_flush_exit);
  g_test_add_func ("/process/child/exits-while-written", test_child_exits_while_written);
  g_test_add_func ("/process/child/out-of-descriptors", test_child_out_of_descriptors);
  g_test_add_func ("/process/child/out-of-descriptors/posting", test_child_out_of_descriptors_posting);
  g_test_add_func ("/process/child/python", test_child_python);
  g_test_add_func ("/process/child/fds/use", test_child_fds_use);
  g_test_add_func ("/process/child/fds/thread-process-thread", test_child_fds_thread_process_thread);
  g_test_add_func ("/process/child/fds/third-process", test_child_fds_third_process);
  g_test_add_func ("/process/socketpair/flush/async", test_socketpair_flush_async);
  g_test_add_func ("/process/keep-alive/stopped-peer", test_keep_alive_stopped_peer);
  g_test_add_func ("/process/keep-alive/busy-peer", test_keep_alive_busy_peer);
  g_test_add_func ("/process/keep-alive/in-process", test_keep_alive_in_process);
  g_test_add_func ("/process/child/flow", test_flow_child);

  ret = g_test_run ();
  g_source_destroy (keep_list);
  g_source_unref (keep_list);
  return ret;
}
