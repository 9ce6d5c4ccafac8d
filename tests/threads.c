/* threads.c: ports between threads
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "msg-test-utils.h"

/* Fewer iterations where every instruction is slow (valgrind). */
static guint
scaled (guint n)
{
  return g_getenv ("MSG_TEST_QUICK") != NULL ? MAX (n / 50, 1) : n;
}

typedef struct
{
  guint     n_threads;
  guint64  *next;          /* per sending thread */
  guint64   total;
  gboolean  closed;
} OrderCheck;

static void
order_check_message (MsgPortMain     *port,
                     MsgMessageEvent *event,
                     gpointer         user_data)
{
  OrderCheck *check = user_data;
  guint thread_id;
  guint64 seq;

  g_variant_get (msg_message_event_get_data (event), "(ut)", &thread_id, &seq);
  g_assert_cmpuint (thread_id, <, check->n_threads);
  g_assert_cmpuint (seq, ==, check->next[thread_id]);
  check->next[thread_id]++;
  check->total++;
}

static void
order_check_close (MsgPortMain *port,
                   gpointer     user_data)
{
  OrderCheck *check = user_data;

  g_assert_false (check->closed);
  check->closed = TRUE;
}

static void
test_threads_senders (gconstpointer data)
{
  guint n_threads = GPOINTER_TO_UINT (data);
  guint n = scaled (n_threads == 1 ? 100000 : 25000);
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
  OrderCheck check = { n_threads, g_new0 (guint64, n_threads), 0, FALSE };
  MsgTestPosters *posters;

  g_test_summary ("Messages posted from worker threads arrive exactly once and in each "
                  "thread's order");

  g_signal_connect (port2, "message", G_CALLBACK (order_check_message), &check);
  g_signal_connect (port2, "close", G_CALLBACK (order_check_close), &check);
  msg_port_main_start (port2);

  posters = msg_test_posters_new (msg_channel_main_get_port1 (channel), n_threads, n);
  msg_test_wait_until (NULL, check.total == (guint64) n * n_threads);
  msg_test_posters_join (posters);
  for (guint t = 0; t < n_threads; t++)
    g_assert_cmpuint (check.next[t], ==, n);

  msg_port_main_close (msg_channel_main_get_port1 (channel));
  msg_test_wait_until (NULL, check.closed);
  g_assert_cmpuint (check.total, ==, (guint64) n * n_threads);

  g_free (check.next);
}

/* A port started in a worker: signals are emitted in the worker's thread. */

typedef struct
{
  MsgPortMain   *port;          /* the worker's end */
  MsgTestWorker *worker;
  GThread       *worker_thread;
  gboolean       wrong_thread;
} Echo;

static void
echo_message (MsgPortMain     *port,
              MsgMessageEvent *event,
              gpointer         user_data)
{
  Echo *echo = user_data;

  echo->worker_thread = g_thread_self ();
  msg_port_main_post (port, msg_message_event_get_data (event), NULL);
}

static gboolean
echo_start (gpointer user_data)
{
  Echo *echo = user_data;

  g_signal_connect (echo->port, "message", G_CALLBACK (echo_message), echo);
  msg_port_main_start (echo->port);
  return G_SOURCE_REMOVE;
}

static void
test_threads_worker_echo (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  g_autoptr(MsgRecorder) rec = msg_recorder_new (port1);
  Echo echo = { msg_channel_main_get_port2 (channel), msg_test_worker_new ("echo"), NULL, FALSE };
  guint n = scaled (10000);

  g_test_summary ("A port started in a worker's thread-default context emits there");

  msg_port_main_start (port1);
  msg_test_worker_invoke (echo.worker, echo_start, &echo);
  for (guint i = 0; i < n; i++)
    msg_port_main_post (port1, g_variant_new_uint32 (i), NULL);
  msg_test_wait_until (NULL, rec->events->len == n);
  for (guint i = 0; i < n; i++)
    g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec, i)), ==, i);
  g_assert_true (rec->thread == g_thread_self ());
  g_assert_nonnull (echo.worker_thread);
  g_assert_true (echo.worker_thread != g_thread_self ());

  msg_port_main_close (port1);
  msg_test_wait_until (NULL, rec->n_close == 1);
  msg_test_worker_free (echo.worker);
}

/* A port carried through three threads while its peer keeps posting. */

#define N_HOPS 3

typedef struct _Carry Carry;

typedef struct
{
  Carry          *carry;
  guint           index;
  MsgTestWorker  *worker;
  MsgChannelMain *control;     /* port1: where the port is sent; port2: started here */
  guint64         until;       /* hands the port on after this seq */
} Hop;

struct _Carry
{
  Hop             hops[N_HOPS];
  guint64         total;
  guint64         next;        /* only touched by the thread holding the port */
  MsgChannelMain *done;
  gint            wrong_thread;   /* (atomic) */
};

static void
carry_message (MsgPortMain     *port,
               MsgMessageEvent *event,
               gpointer         user_data)
{
  Hop *hop = user_data;
  Carry *carry = hop->carry;
  guint64 seq = g_variant_get_uint64 (msg_message_event_get_data (event));

  if (g_main_context_get_thread_default () != msg_test_worker_context (hop->worker))
    g_atomic_int_inc (&carry->wrong_thread);
  g_assert_cmpuint (seq, ==, carry->next);
  carry->next++;

  if (seq == hop->until)
    {
      if (hop->index + 1 < N_HOPS)
        {
          MsgChannelMain *next = carry->hops[hop->index + 1].control;

          g_assert_true (msg_port_main_post_message (msg_channel_main_get_port1 (next),
                                                     NULL, &port, 1, NULL));
        }
      else
        msg_port_main_post (msg_channel_main_get_port1 (carry->done),
                            g_variant_new_uint64 (carry->next), NULL);
    }
}

static void
hop_receive_port (MsgPortMain     *control,
                  MsgMessageEvent *event,
                  gpointer         user_data)
{
  Hop *hop = user_data;
  MsgPortMain *port = msg_message_event_get_port (event, 0);

  g_signal_connect (port, "message", G_CALLBACK (carry_message), hop);
  msg_port_main_start (port);
}

static gboolean
hop_start (gpointer user_data)
{
  Hop *hop = user_data;
  MsgPortMain *control = msg_channel_main_get_port2 (hop->control);

  g_signal_connect (control, "message", G_CALLBACK (hop_receive_port), hop);
  msg_port_main_start (control);
  return G_SOURCE_REMOVE;
}

static void
test_threads_carry (void)
{
  g_autoptr(MsgChannelMain) data = msg_channel_main_new ();
  Carry carry = { 0, };
  g_autoptr(MsgRecorder) done = NULL;
  GThread *thread;
  MsgPortMain *moving = msg_channel_main_get_port2 (data);

  g_test_summary ("A port carried through three threads while its peer keeps posting "
                  "from a fourth loses and duplicates nothing");

  carry.total = scaled (60000);
  carry.done = msg_channel_main_new ();
  done = msg_recorder_new (msg_channel_main_get_port2 (carry.done));
  msg_port_main_start (msg_channel_main_get_port2 (carry.done));
  for (guint i = 0; i < N_HOPS; i++)
    {
      Hop *hop = &carry.hops[i];

      hop->carry = &carry;
      hop->index = i;
      hop->worker = msg_test_worker_new ("hop");
      hop->control = msg_channel_main_new ();
      hop->until = i + 1 < N_HOPS ? (carry.total / (N_HOPS + 1)) * (i + 1) : carry.total - 1;
      msg_test_worker_invoke (hop->worker, hop_start, hop);
    }

  g_assert_true (msg_port_main_post_message (msg_channel_main_get_port1 (carry.hops[0].control),
                                             NULL, &moving, 1, NULL));
  thread = msg_test_count_in_thread (msg_channel_main_get_port1 (data), carry.total);

  msg_test_wait_until (NULL, done->events->len == 1);
  g_assert_cmpuint (g_variant_get_uint64 (msg_recorder_data (done, 0)), ==, carry.total);
  g_assert_cmpint (g_atomic_int_get (&carry.wrong_thread), ==, 0);

  g_thread_join (thread);
  msg_port_main_close (msg_channel_main_get_port1 (data));
  for (guint i = 0; i < N_HOPS; i++)
    {
      msg_port_main_close (msg_channel_main_get_port1 (carry.hops[i].control));
      msg_test_worker_free (carry.hops[i].worker);
      g_object_unref (carry.hops[i].control);
    }
  msg_port_main_close (msg_channel_main_get_port1 (carry.done));
  msg_test_wait_until (NULL, done->n_close == 1);
  g_clear_pointer (&done, msg_recorder_free);
  g_object_unref (carry.done);
}

/* close() and unref racing with posts from another thread. */

typedef enum {
  RACE_CLOSE_SENDER,
  RACE_CLOSE_RECEIVER,
  RACE_UNREF_SENDER,
} Race;

typedef struct
{
  MsgPortMain *port;   /* (owned) */
  guint        n;
  gint         go;     /* (atomic) */
} RacePoster;

static gpointer
race_poster_thread (gpointer data)
{
  RacePoster *poster = data;

  while (!g_atomic_int_get (&poster->go))
    ;
  for (guint i = 0; i < poster->n; i++)
    msg_port_main_post (poster->port, g_variant_new_uint32 (i), NULL);
  g_clear_object (&poster->port);
  return NULL;
}

typedef struct
{
  guint    next;
  guint    n_close;
} RaceCheck;

static void
race_message (MsgPortMain     *port,
              MsgMessageEvent *event,
              gpointer         user_data)
{
  RaceCheck *check = user_data;

  g_assert_cmpuint (check->n_close, ==, 0);
  g_assert_cmpuint (g_variant_get_uint32 (msg_message_event_get_data (event)), ==, check->next);
  check->next++;
}

static void
race_close (MsgPortMain *port,
            gpointer     user_data)
{
  RaceCheck *check = user_data;

  check->n_close++;
}

static void
test_threads_close_race (gconstpointer data)
{
  Race race = GPOINTER_TO_INT (data);
  guint iterations = scaled (2000);

  g_test_summary ("close() and the last unref race with posts from another thread: "
                  "the receiver gets a prefix, in order, then close exactly once");

  for (guint iter = 0; iter < iterations; iter++)
    {
      MsgChannelMain *channel = msg_channel_main_new ();
      MsgPortMain *port2 = g_object_ref (msg_channel_main_get_port2 (channel));
      RaceCheck check = { 0, 0 };
      RacePoster poster = { g_object_ref (msg_channel_main_get_port1 (channel)), 50, 0 };
      GThread *thread;

      g_signal_connect (port2, "message", G_CALLBACK (race_message), &check);
      g_signal_connect (port2, "close", G_CALLBACK (race_close), &check);
      msg_port_main_start (port2);
      thread = g_thread_new ("race", race_poster_thread, &poster);
      g_atomic_int_set (&poster.go, 1);

      switch (race)
        {
        case RACE_CLOSE_SENDER:
          msg_port_main_close (msg_channel_main_get_port1 (channel));
          g_object_unref (channel);
          break;
        case RACE_CLOSE_RECEIVER:
          msg_port_main_close (port2);
          g_object_unref (channel);
          break;
        case RACE_UNREF_SENDER:
          /* The poster's reference is the last one on port1. */
          g_object_unref (channel);
          break;
        default:
          g_assert_not_reached ();
        }

      g_thread_join (thread);
      msg_test_wait_until (NULL, check.n_close == 1);
      msg_test_drain (NULL);
      g_assert_cmpuint (check.n_close, ==, 1);
      if (race == RACE_UNREF_SENDER)
        g_assert_cmpuint (check.next, ==, 50);
      else
        g_assert_cmpuint (check.next, <=, 50);
      g_object_unref (port2);
    }
}

/* A worker thread that starts a port on a context of its own, takes
 * one message, quits and drops its context, while the other end keeps
 * posting: the context must not be kept alive by the port, and the port
 * must not outlive it (nor keep its peer, or its socket, or what is
 * posted to it). */
typedef struct
{
  MsgPortMain *port;         /* (owned): handed to the worker */
  guint        n_messages;   /* worker only */
  gint         port_gone;    /* (atomic) */
  gint         context_gone; /* (atomic) */
} ContextGone;

static void
context_gone_message (MsgPortMain     *port,
                      MsgMessageEvent *event,
                      gpointer         user_data)
{
  ContextGone *data = user_data;

  data->n_messages++;
}

static void
context_gone_port_finalized (gpointer  user_data,
                             GObject  *where_the_object_was)
{
  g_atomic_int_set (&((ContextGone *) user_data)->port_gone, 1);
}

static void
context_gone_context_finalized (gpointer user_data)
{
  g_atomic_int_set (&((ContextGone *) user_data)->context_gone, 1);
}

static gboolean
context_gone_never (gpointer user_data)
{
  g_assert_not_reached ();
  return G_SOURCE_REMOVE;
}

static gpointer
context_gone_worker (gpointer user_data)
{
  ContextGone *data = user_data;
  GMainContext *context = g_main_context_new ();
  GSource *watch;

  /* The destroy notify of a source attached to the context runs when the
   * context is finalized (the source is never dispatched). */
  watch = g_timeout_source_new_seconds (MSG_TEST_TIMEOUT_SECONDS * 2);
  g_source_set_callback (watch, context_gone_never, data, context_gone_context_finalized);
  g_source_attach (watch, context);
  g_source_unref (watch);

  g_main_context_push_thread_default (context);
  g_signal_connect (data->port, "message", G_CALLBACK (context_gone_message), data);
  msg_port_main_start (data->port);
  /* Only the started port holds itself from now on. */
  g_clear_object (&data->port);
  while (data->n_messages == 0)
    g_main_context_iteration (context, TRUE);
  g_main_context_pop_thread_default (context);
  g_main_context_unref (context);

  return NULL;
}

static gboolean
context_gone_post (gpointer user_data)
{
  MsgPortMain *port = user_data;

  msg_port_main_post (port, g_variant_new_uint32 (1), NULL);
  return G_SOURCE_CONTINUE;
}

static void
test_threads_context_finalized (gconstpointer test_data)
{
  gboolean socket = GPOINTER_TO_INT (test_data);
  ContextGone data = { NULL, 0, 0, 0 };
  MsgPortMain *port1, *port2;
  GThread *worker, *poster;
  GSource *idle;
  guint baseline = 0;
  guint n_close = 0;

  g_test_summary ("A port started on a worker thread's own context ends when the worker "
                  "drops that context, while its peer posts on from two threads: the peer "
                  "closes with PEER_CLOSED, the port and the context are finalized, and "
                  "the socket's descriptors are closed");

  if (socket)
    {
      msg_test_start_symbolizer ();
      msg_test_socket_ports (&port1, &port2);
      /* Less the socket pair: the I/O thread's own descriptor stays. */
      baseline = msg_test_count_fds () - 2;
    }
  else
    {
      g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();

      port1 = g_object_ref (msg_channel_main_get_port1 (channel));
      port2 = g_object_ref (msg_channel_main_get_port2 (channel));
    }

  g_signal_connect (port1, "close", G_CALLBACK (msg_test_count_signal), &n_close);
  msg_port_main_start (port1);
  g_object_weak_ref (G_OBJECT (port2), context_gone_port_finalized, &data);
  data.port = port2;
  worker = g_thread_new ("context-gone", context_gone_worker, &data);

  /* Posts from this thread's loop and from another thread at once, before,
   * while and after the worker's context goes. */
  idle = g_idle_source_new ();
  g_source_set_callback (idle, context_gone_post, port1, NULL);
  g_source_attach (idle, NULL);
  poster = msg_test_count_in_thread (port1, 10000);

  msg_test_wait_until (NULL, n_close == 1);
  g_source_destroy (idle);
  g_source_unref (idle);
  g_thread_join (poster);
  g_thread_join (worker);

  msg_test_assert_close_reason (port1, MSG_PORT_ERROR_PEER_CLOSED);
  g_assert_true (g_atomic_int_get (&data.context_gone));
  g_assert_true (g_atomic_int_get (&data.port_gone));
  /* Closed: posts are dropped, not queued for nobody. */
  g_assert_true (msg_port_main_post (port1, g_variant_new_uint32 (2), NULL));
  msg_test_drain (NULL);
  g_assert_cmpuint (n_close, ==, 1);

  g_object_unref (port1);
  if (socket)
    msg_test_wait_for_fd_count (baseline);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_data_func ("/threads/one-sender-100k", GUINT_TO_POINTER (1), test_threads_senders);
  g_test_add_data_func ("/threads/four-senders", GUINT_TO_POINTER (4), test_threads_senders);
  g_test_add_func ("/threads/worker-echo", test_threads_worker_echo);
  g_test_add_func ("/threads/carry-through-three", test_threads_carry);
  g_test_add_data_func ("/threads/race/close-sender", GINT_TO_POINTER (RACE_CLOSE_SENDER),
                        test_threads_close_race);
  g_test_add_data_func ("/threads/race/close-receiver", GINT_TO_POINTER (RACE_CLOSE_RECEIVER),
                        test_threads_close_race);
  g_test_add_data_func ("/threads/race/unref-sender", GINT_TO_POINTER (RACE_UNREF_SENDER),
                        test_threads_close_race);
  g_test_add_data_func ("/threads/context-finalized/channel", GINT_TO_POINTER (FALSE),
                        test_threads_context_finalized);
  g_test_add_data_func ("/threads/context-finalized/socket", GINT_TO_POINTER (TRUE),
                        test_threads_context_finalized);

  return g_test_run ();
}
