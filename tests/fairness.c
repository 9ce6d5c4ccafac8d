/* fairness.c: one channel's data does not hold up the others
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Every socket of the process is read by one I/O thread. What costs in
 * proportion to a message's data, the walk that checks it is in normal
 * form and the mapping of a memfd, is done by the context of the port it
 * is for, and the I/O thread gives each connection a budget of work per
 * turn. White-box: a hook counts where the checks run, which holds on any
 * machine; a second test measures what that is for, the echo time of a
 * benign channel next to a channel of messages that are slow to check,
 * with a factor generous enough for a loaded machine.
 */

#include <string.h>
#include <sys/socket.h>

#include "msg-test-utils.h"
#include "msg-endpoint-private.h"
#include "msg-port-main-private.h"
#include "wire/msg-connection-private.h"
#include "wire/msg-io-thread-private.h"
#include "wire/msg-transport-private.h"
#include "wire/msg-wire-private.h"

/* Where msg_item_check() ran: the thread of the port's context, or not. */
static GThread *sink_thread;   /* (atomic) */
static gint checks_in_sink;    /* (atomic) */
static gint checks_elsewhere;  /* (atomic) */

static void
count_check (gboolean checking)
{
  if (!checking)
    return;
  if (g_thread_self () == g_atomic_pointer_get (&sink_thread))
    g_atomic_int_inc (&checks_in_sink);
  else
    g_atomic_int_inc (&checks_elsewhere);
}

/* A port started in a worker's context, that counts what it receives. */
typedef struct
{
  MsgPortMain   *port;
  MsgTestWorker *worker;
  gint           n_messages;  /* (atomic) */
  gint           closed;      /* (atomic) */
  GMutex         lock;
  GCond          received;    /* signalled with @lock at each message */
} Sink;

static void
sink_message (MsgPortMain     *port,
              MsgMessageEvent *event,
              gpointer         user_data)
{
  Sink *sink = user_data;

  msg_mutex_lock (&sink->lock);
  g_atomic_int_inc (&sink->n_messages);
  g_cond_signal (&sink->received);
  msg_mutex_unlock (&sink->lock);
  g_main_context_wakeup (NULL);
}

static void
sink_close (MsgPortMain *port,
            gpointer     user_data)
{
  Sink *sink = user_data;

  g_atomic_int_set (&sink->closed, TRUE);
  g_main_context_wakeup (NULL);
}

static gboolean
sink_start (gpointer user_data)
{
  Sink *sink = user_data;

  g_atomic_pointer_set (&sink_thread, g_thread_self ());
  g_signal_connect (sink->port, "message", G_CALLBACK (sink_message), sink);
  g_signal_connect (sink->port, "close", G_CALLBACK (sink_close), sink);
  msg_port_main_start (sink->port);
  return G_SOURCE_REMOVE;
}

/* @sender's other end, started in a new worker. */
static void
sink_init (Sink         *sink,
           MsgPortMain **sender)
{
  memset (sink, 0, sizeof *sink);
  g_mutex_init (&sink->lock);
  g_cond_init (&sink->received);
  msg_test_socket_ports (sender, &sink->port);
  sink->worker = msg_test_worker_new ("sink");
  msg_test_worker_invoke (sink->worker, sink_start, sink);
}

static void
sink_clear (Sink        *sink,
            MsgPortMain *sender)
{
  msg_port_main_close (sender);
  msg_test_wait_until (NULL, g_atomic_int_get (&sink->closed));
  msg_test_worker_free (sink->worker);
  g_atomic_pointer_set (&sink_thread, NULL);
  g_object_unref (sink->port);
  g_object_unref (sender);
  g_cond_clear (&sink->received);
  g_mutex_clear (&sink->lock);
}

/* An a(yy) of @size bytes: a type whose every element the check walks
 * (about 10 ns a byte), unlike an array of a basic type. */
static GVariant *
new_expensive (gsize size)
{
  gpointer data = g_malloc0 (size);

  return g_variant_new_from_data (G_VARIANT_TYPE ("a(yy)"), data, size, TRUE, g_free, data);
}

static void
test_fairness_checked_by_port_context (void)
{
  MsgPortMain *sender, *carried;
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  g_autoptr(GError) error = NULL;
  Sink sink;

  g_test_summary ("The I/O thread neither checks nor maps the data of a message from "
                  "another process: the context of the port it is for does, whether it "
                  "came in the frame or in a memfd, with ports or not");

  msg_wire_set_memfd_threshold (256 * 1024);
  msg_item_set_check_hook (count_check);
  g_atomic_int_set (&checks_in_sink, 0);
  g_atomic_int_set (&checks_elsewhere, 0);
  sink_init (&sink, &sender);

  g_assert_true (msg_port_main_post (sender, new_expensive (64 * 1024), &error));
  g_assert_true (msg_port_main_post (sender, new_expensive (1024 * 1024), &error));
  g_assert_true (msg_port_main_post (sender, g_variant_new_string ("small"), &error));
  carried = msg_channel_main_get_port1 (channel);
  g_assert_true (msg_port_main_post_message (sender, g_variant_new_string ("with a port"),
                                             &carried, 1, &error));
  g_assert_true (msg_port_main_post_message (sender, new_expensive (1024 * 1024),
                                             (MsgPortMain *[]) { msg_channel_main_get_port2 (channel) },
                                             1, &error));
  g_assert_no_error (error);
  msg_test_wait_until (NULL, g_atomic_int_get (&sink.n_messages) == 5);

  g_assert_cmpint (g_atomic_int_get (&checks_elsewhere), ==, 0);
  g_assert_cmpint (g_atomic_int_get (&checks_in_sink), ==, 5);

  sink_clear (&sink, sender);
  msg_item_set_check_hook (NULL);
  msg_wire_set_memfd_threshold (-1);
}

/* A thread that posts expensive messages on a port until told to stop,
 * keeping FLOOD_AHEAD of them on the way to the sink: enough that the
 * sink never waits for one, few enough that the descriptors and memory in
 * flight stay small, and the sink has little to take once it stops. */
#define FLOOD_AHEAD  4

typedef struct
{
  MsgPortMain *port;
  Sink        *sink;
  gsize        size;
  gint         stop;      /* (atomic) */
} Flood;

static gpointer
flood_main (gpointer data)
{
  Flood *flood = data;
  Sink *sink = flood->sink;
  gint n_posted = 0;

  while (!g_atomic_int_get (&flood->stop))
    {
      g_assert_true (msg_port_main_post (flood->port, new_expensive (flood->size), NULL));
      n_posted++;
      msg_mutex_lock (&sink->lock);
      while (n_posted - g_atomic_int_get (&sink->n_messages) > FLOOD_AHEAD)
        msg_cond_wait (&sink->received, &sink->lock);
      msg_mutex_unlock (&sink->lock);
    }
  return NULL;
}

static void
echo_message (MsgPortMain     *port,
              MsgMessageEvent *event,
              gpointer         user_data)
{
  msg_port_main_post (port, msg_message_event_get_data (event), NULL);
}

/* Microseconds for @n round trips, one at a time, from @port. */
static gint64
round_trips (MsgPortMain *port,
             guint       *n_back,
             guint        n)
{
  gint64 start = g_get_monotonic_time ();
  guint first = *n_back;

  for (guint i = 0; i < n; i++)
    {
      msg_port_main_post (port, g_variant_new_uint32 (i), NULL);
      msg_test_wait_until (NULL, *n_back == first + i + 1);
    }
  return g_get_monotonic_time () - start;
}

/* What a loaded machine may add to the echo time, for the same work: the
 * sink's thread takes a core to check what it gets. The I/O thread that
 * checked for every channel made it hundreds of times longer. */
#define ECHO_FACTOR       20
#define ECHO_SLACK_USEC   (100 * G_TIME_SPAN_MILLISECOND)

static void
test_fairness_echo_under_load (void)
{
  MsgPortMain *echo_a, *echo_b, *flood_port;
  Flood flood = { NULL, NULL, 256 * 1024, FALSE };
  GThread *thread;
  gint64 quiet, loaded;
  guint n_back = 0, n = 200;
  Sink sink;

  g_test_summary ("A channel whose messages are slow to check does not slow down "
                  "another channel's echo by more than a generous factor");

  /* A ratio of times: under valgrind, which runs one thread at a time,
   * the I/O thread and the flood's checks take turns with the echo
   * whatever the library does. The other gates measure it. */
  if (g_getenv ("LD_PRELOAD") != NULL && strstr (g_getenv ("LD_PRELOAD"), "vgpreload") != NULL)
    {
      g_test_skip ("a ratio of times means nothing under valgrind");
      return;
    }

  /* Both channels read by the I/O thread (a context that waits in poll()
   * would read its own socket), the flood's data in memfds, as large
   * messages go between processes. */
  msg_transport_set_context_reads (FALSE);
  msg_wire_set_memfd_threshold (16 * 1024);
  msg_test_socket_ports (&echo_a, &echo_b);
  g_signal_connect (echo_a, "message", G_CALLBACK (msg_test_count_message), &n_back);
  g_signal_connect (echo_b, "message", G_CALLBACK (echo_message), NULL);
  msg_port_main_start (echo_a);
  msg_port_main_start (echo_b);
  round_trips (echo_a, &n_back, 20);  /* warm up */
  quiet = round_trips (echo_a, &n_back, n);

  sink_init (&sink, &flood_port);
  flood.port = flood_port;
  flood.sink = &sink;
  thread = g_thread_new ("flood", flood_main, &flood);
  /* The flood is under way: the sink's port has had to check some. */
  msg_test_wait_until (NULL, g_atomic_int_get (&sink.n_messages) >= 2);
  loaded = round_trips (echo_a, &n_back, n);
  g_atomic_int_set (&flood.stop, TRUE);
  g_thread_join (thread);

  g_test_message ("%u round trips: %" G_GINT64_FORMAT " us quiet, %" G_GINT64_FORMAT
                  " us next to %d messages of %" G_GSIZE_FORMAT " bytes",
                  n, quiet, loaded, g_atomic_int_get (&sink.n_messages), flood.size);
  g_assert_cmpint (loaded, <=, quiet * ECHO_FACTOR + ECHO_SLACK_USEC);

  sink_clear (&sink, flood_port);
  msg_port_main_close (echo_a);
  msg_test_drain (NULL);
  g_object_unref (echo_a);
  g_object_unref (echo_b);
  msg_wire_set_memfd_threshold (-1);
  msg_transport_set_context_reads (TRUE);
}

/* The largest read the I/O thread asked for, and how many bytes it read
 * (the test's main thread reads nothing: context reads are off). */
static gsize largest_read;  /* (atomic) */
static gsize bytes_read;    /* (atomic) */

static ssize_t
watching_recvmsg (int            fd,
                  struct msghdr *message,
                  int            flags)
{
  ssize_t n;
  gsize asked = 0, largest;

  for (gsize i = 0; i < (gsize) message->msg_iovlen; i++)
    asked += message->msg_iov[i].iov_len;
  do
    largest = g_atomic_pointer_get (&largest_read);
  while (asked > largest &&
         !g_atomic_pointer_compare_and_exchange (&largest_read, largest, asked));
  n = recvmsg (fd, message, flags);
  if (n > 0)
    g_atomic_pointer_add (&bytes_read, n);
  return n;
}

static const MsgSyscalls watching = {
  sendmsg,
  watching_recvmsg,
  socketpair,
};

static void
test_fairness_turn_budget (void)
{
  MsgPortMain *a, *b;
  g_autoptr(MsgRecorder) rec = NULL;
  gsize size = 24 * 1024 * 1024;
  gpointer data = g_malloc0 (size);
  GVariant *large;

  g_test_summary ("The I/O thread reads a large message a budget at a time, never more "
                  "in one go, and it arrives whole, in order");

  msg_transport_set_context_reads (FALSE);
  msg_wire_set_memfd_threshold (0);
  msg_transport_set_syscalls (&watching);
  g_atomic_pointer_set (&largest_read, 0);
  g_atomic_pointer_set (&bytes_read, 0);
  msg_test_socket_ports (&a, &b);
  rec = msg_recorder_new (b);
  msg_port_main_start (b);

  large = g_variant_ref_sink (g_variant_new_from_data (G_VARIANT_TYPE ("ay"), data, size,
                                                       TRUE, g_free, data));
  msg_port_main_post (a, g_variant_new_string ("before"), NULL);
  msg_port_main_post (a, large, NULL);
  msg_port_main_post (a, g_variant_new_string ("after"), NULL);
  msg_test_wait_until (NULL, rec->events->len == 3);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec, 0), NULL), ==, "before");
  g_assert_true (g_variant_equal (msg_recorder_data (rec, 1), large));
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec, 2), NULL), ==, "after");
  g_assert_cmpuint (g_atomic_pointer_get (&bytes_read), >, size);
  g_assert_cmpuint (g_atomic_pointer_get (&largest_read), <=, MSG_CONNECTION_TURN_BUDGET);

  msg_port_main_close (a);
  msg_test_wait_until (NULL, rec->n_close == 1);
  msg_transport_set_syscalls (NULL);
  msg_wire_set_memfd_threshold (-1);
  msg_transport_set_context_reads (TRUE);
  g_variant_unref (large);
  g_object_unref (a);
  g_object_unref (b);
}

static void
test_fairness_ping_flood (void)
{
  MsgPortMain *port;
  g_autoptr(MsgRecorder) rec = NULL;
  MsgEndpoint *endpoint, *peer;
  MsgConnection *connection;
  guint8 ping[MSG_WIRE_MAX_CONTROL_SIZE];
  gsize size = msg_wire_encode_control (MSG_WIRE_FRAME_PING, 1000, 0, ping);
  GByteArray *burst = g_byte_array_new ();
  guint queued;
  int raw;

  g_test_summary ("A peer that sends pings and never reads makes this end queue at most "
                  "one pong at a time: what waits to be written shows it is alive too");

  msg_test_socket_port (&raw, &port);
  rec = msg_recorder_new (port);
  msg_port_main_start (port);
  for (guint i = 0; i < 1024; i++)
    g_byte_array_append (burst, ping, size);
  /* 40 MiB of pings, then a message: when it arrives, all were read. */
  for (guint i = 0; i < 1024; i++)
    g_assert_cmpint (msg_test_send_raw (raw, burst->data, burst->len, NULL, 0), ==, burst->len);
  g_byte_array_unref (burst);
  {
    MsgWireFrame frame = { .kind = MSG_WIRE_FRAME_MESSAGE, .data = g_variant_ref_sink (g_variant_new_uint32 (7)),
                           .data_fd = -1 };
    MsgWireEncoded encoded;
    GByteArray *bytes = g_byte_array_new ();
    GArray *fds = g_array_new (FALSE, FALSE, sizeof (int));

    g_assert_true (msg_wire_encode (&frame, &encoded, NULL));
    msg_wire_encoded_append (&encoded, bytes, fds);
    msg_wire_encoded_clear (&encoded);
    g_variant_unref (frame.data);
    g_assert_cmpint (msg_test_send_raw (raw, bytes->data, bytes->len, NULL, 0), ==, bytes->len);
    g_byte_array_unref (bytes);
    g_array_unref (fds);
  }
  msg_test_wait_until (NULL, rec->events->len == 1 || rec->n_close > 0);
  g_assert_cmpuint (rec->n_close, ==, 0);

  endpoint = msg_port_main_get_endpoint (port);
  msg_mutex_lock (&endpoint->lock);
  peer = msg_endpoint_ref (endpoint->peer);
  msg_mutex_unlock (&endpoint->lock);
  connection = CONNECTION_FROM_SINK (msg_endpoint_get_sink (peer));
  msg_mutex_lock (&connection->lock);
  queued = connection->out.items.length;
  msg_mutex_unlock (&connection->lock);
  msg_endpoint_unref (peer);
  g_test_message ("%u items queued to a peer that sent a million pings and read nothing", queued);
  g_assert_cmpuint (queued, <=, 1);

  close (raw);
  msg_test_wait_until (NULL, rec->n_close == 1);
  g_clear_pointer (&rec, msg_recorder_free);
  g_object_unref (port);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/fairness/checked-by-port-context", test_fairness_checked_by_port_context);
  g_test_add_func ("/fairness/echo-under-load", test_fairness_echo_under_load);
  g_test_add_func ("/fairness/turn-budget", test_fairness_turn_budget);
  g_test_add_func ("/fairness/ping-flood", test_fairness_ping_flood);

  return g_test_run ();
}
