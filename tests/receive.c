/* receive.c: msg_port_main_receive_async(), receive(), flush_async(), and
 * the priority and bounded batches of dispatch
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <msgport-glib.h>

#include "msg-test-utils.h"

/* One receive's outcome. */
typedef struct
{
  gboolean         done;
  MsgMessageEvent *event;   /* (owned) (nullable) */
  GError          *error;   /* (owned) (nullable) */
  GThread         *thread;  /* where the callback ran */
  guint            order;   /* when it completed, among all (1-based) */
} Received;

static guint completions;

static void
on_received (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  Received *r = user_data;

  g_assert_false (r->done);
  r->event = msg_port_main_receive_finish (MSG_PORT_MAIN (source), result, &r->error);
  g_assert_true ((r->event == NULL) != (r->error == NULL));
  r->thread = g_thread_self ();
  r->order = ++completions;
  r->done = TRUE;
}

static void
received_clear (Received *r)
{
  g_clear_object (&r->event);
  g_clear_error (&r->error);
  r->done = FALSE;
}

static const char *
received_string (Received *r)
{
  g_assert_no_error (r->error);
  g_assert_nonnull (r->event);
  return g_variant_get_string (msg_message_event_get_data (r->event), NULL);
}

static void
test_same_thread (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *a = msg_channel_main_get_port1 (channel);
  MsgPortMain *b = msg_channel_main_get_port2 (channel);
  Received r[4] = { { 0, }, };

  g_test_summary ("Receives pending on a port that is not started get the "
                  "messages in order, one each, FIFO, in the caller's context; "
                  "with none pending, messages wait in the queue");

  /* Queued before any receive. */
  msg_port_main_post (a, g_variant_new_string ("one"), NULL);
  msg_port_main_receive_async (b, NULL, on_received, &r[0]);
  msg_port_main_receive_async (b, NULL, on_received, &r[1]);
  msg_port_main_receive_async (b, NULL, on_received, &r[2]);
  /* Never completed synchronously (GIO convention). */
  g_assert_false (r[0].done);
  msg_port_main_post (a, g_variant_new_string ("two"), NULL);
  msg_test_wait_until (NULL, r[0].done && r[1].done);
  g_assert_cmpstr (received_string (&r[0]), ==, "one");
  g_assert_cmpstr (received_string (&r[1]), ==, "two");
  g_assert_true (r[0].thread == g_thread_self ());
  g_assert_cmpuint (r[0].order, <, r[1].order);
  g_assert_false (r[2].done);
  msg_port_main_post (a, g_variant_new_string ("three"), NULL);
  msg_test_wait_until (NULL, r[2].done);
  g_assert_cmpstr (received_string (&r[2]), ==, "three");

  /* None pending: nothing is lost, nothing emitted. */
  msg_port_main_post (a, g_variant_new_string ("four"), NULL);
  msg_port_main_post (a, g_variant_new_string ("five"), NULL);
  msg_test_iterate_for (NULL, 20);
  g_assert_false (msg_port_main_is_started (b));
  for (guint i = 0; i < 2; i++)
    {
      received_clear (&r[3]);
      msg_port_main_receive_async (b, NULL, on_received, &r[3]);
      msg_test_wait_until (NULL, r[3].done);
      g_assert_cmpstr (received_string (&r[3]), ==, i == 0 ? "four" : "five");
    }

  for (guint i = 0; i < G_N_ELEMENTS (r); i++)
    received_clear (&r[i]);
}

static void
test_ports (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) inner = msg_channel_main_new ();
  MsgPortMain *a = msg_channel_main_get_port1 (channel);
  MsgPortMain *b = msg_channel_main_get_port2 (channel);
  MsgPortMain *transfer[] = { msg_channel_main_get_port2 (inner) };
  g_autoptr(GError) error = NULL;
  Received r = { 0, }, r2 = { 0, };
  MsgPortMain **ports;
  guint n_ports = 0;

  g_test_summary ("A received event owns the ports that came with the message; "
                  "they are not started and work");

  g_assert_true (msg_port_main_post_message (a, g_variant_new_string ("port"), transfer, 1, &error));
  g_assert_no_error (error);
  msg_port_main_receive_async (b, NULL, on_received, &r);
  msg_test_wait_until (NULL, r.done);
  ports = msg_message_event_get_ports (r.event, &n_ports);
  g_assert_cmpuint (n_ports, ==, 1);
  g_assert_false (msg_port_main_is_started (ports[0]));

  msg_port_main_post (msg_channel_main_get_port1 (inner), g_variant_new_string ("through"), NULL);
  msg_port_main_receive_async (ports[0], NULL, on_received, &r2);
  msg_test_wait_until (NULL, r2.done);
  g_assert_cmpstr (received_string (&r2), ==, "through");

  received_clear (&r);
  received_clear (&r2);
}

static void
test_end (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) channel2 = msg_channel_main_new ();
  MsgPortMain *a = msg_channel_main_get_port1 (channel);
  MsgPortMain *b = msg_channel_main_get_port2 (channel);
  Received r[3] = { { 0, }, };

  g_test_summary ("Once the channel ended and the queue is empty, receives fail "
                  "with the close reason; pending ones too; and start() then does nothing");

  msg_port_main_post (a, g_variant_new_string ("last"), NULL);
  msg_port_main_close (a);
  for (guint i = 0; i < 3; i++)
    msg_port_main_receive_async (b, NULL, on_received, &r[i]);
  msg_test_wait_until (NULL, r[0].done && r[1].done && r[2].done);
  g_assert_cmpstr (received_string (&r[0]), ==, "last");
  g_assert_error (r[1].error, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_CLOSED);
  g_assert_error (r[2].error, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_CLOSED);
  msg_test_assert_close_reason (b, MSG_PORT_ERROR_PEER_CLOSED);
  g_assert_true (msg_port_main_is_closed (b));

  /* Later receives fail at once (still asynchronously). */
  received_clear (&r[0]);
  msg_port_main_receive_async (b, NULL, on_received, &r[0]);
  g_assert_false (r[0].done);
  msg_test_wait_until (NULL, r[0].done);
  g_assert_error (r[0].error, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_CLOSED);

  /* The end was reported: starting emits nothing. */
  {
    g_autoptr(MsgRecorder) rec = msg_recorder_new (b);

    msg_port_main_start (b);
    msg_test_iterate_for (NULL, 20);
    g_assert_cmpuint (rec->n_close, ==, 0);
    g_assert_false (msg_port_main_is_started (b));
  }

  /* Closing this end with receives pending: they get what had arrived,
   * then CLOSED. */
  for (guint i = 0; i < 3; i++)
    received_clear (&r[i]);
  a = msg_channel_main_get_port1 (channel2);
  b = msg_channel_main_get_port2 (channel2);
  msg_port_main_post (a, g_variant_new_string ("before"), NULL);
  msg_port_main_receive_async (b, NULL, on_received, &r[0]);
  msg_port_main_receive_async (b, NULL, on_received, &r[1]);
  msg_port_main_close (b);
  msg_test_wait_until (NULL, r[0].done && r[1].done);
  g_assert_cmpstr (received_string (&r[0]), ==, "before");
  g_assert_error (r[1].error, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED);

  /* Closed with nothing pending: CLOSED at once. */
  msg_port_main_receive_async (b, NULL, on_received, &r[2]);
  msg_test_wait_until (NULL, r[2].done);
  g_assert_error (r[2].error, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED);

  for (guint i = 0; i < 3; i++)
    received_clear (&r[i]);
}

static void
test_cancel (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *a = msg_channel_main_get_port1 (channel);
  MsgPortMain *b = msg_channel_main_get_port2 (channel);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GCancellable) cancelled = g_cancellable_new ();
  Received r[4] = { { 0, }, };

  g_test_summary ("A cancelled receive fails with G_IO_ERROR_CANCELLED and takes "
                  "no message; the others keep their order");

  g_cancellable_cancel (cancelled);
  msg_port_main_receive_async (b, cancelled, on_received, &r[0]);
  msg_test_wait_until (NULL, r[0].done);
  g_assert_error (r[0].error, G_IO_ERROR, G_IO_ERROR_CANCELLED);

  msg_port_main_receive_async (b, NULL, on_received, &r[1]);
  msg_port_main_receive_async (b, cancellable, on_received, &r[2]);
  msg_port_main_receive_async (b, NULL, on_received, &r[3]);
  g_cancellable_cancel (cancellable);
  msg_test_wait_until (NULL, r[2].done);
  g_assert_error (r[2].error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_false (r[1].done);

  msg_port_main_post (a, g_variant_new_string ("x"), NULL);
  msg_port_main_post (a, g_variant_new_string ("y"), NULL);
  msg_test_wait_until (NULL, r[1].done && r[3].done);
  g_assert_cmpstr (received_string (&r[1]), ==, "x");
  g_assert_cmpstr (received_string (&r[3]), ==, "y");

  /* Cancelling the last pending receive unbinds the port: what comes
   * next waits in the queue for the next receive. */
  received_clear (&r[2]);
  g_cancellable_reset (cancellable);
  msg_port_main_receive_async (b, cancellable, on_received, &r[2]);
  g_cancellable_cancel (cancellable);
  msg_test_wait_until (NULL, r[2].done);
  g_assert_error (r[2].error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  msg_port_main_post (a, g_variant_new_string ("z"), NULL);
  msg_test_iterate_for (NULL, 20);
  received_clear (&r[0]);
  msg_port_main_receive_async (b, NULL, on_received, &r[0]);
  msg_test_wait_until (NULL, r[0].done);
  g_assert_cmpstr (received_string (&r[0]), ==, "z");

  for (guint i = 0; i < G_N_ELEMENTS (r); i++)
    received_clear (&r[i]);
}

static void
test_start (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *a = msg_channel_main_get_port1 (channel);
  MsgPortMain *b = msg_channel_main_get_port2 (channel);
  g_autoptr(MsgRecorder) rec = NULL;
  Received r[2] = { { 0, }, };

  g_test_summary ("start() with receives pending fails them with INVALID_ARGUMENT "
                  "and later messages are signals; a receive on a started port fails");

  msg_port_main_receive_async (b, NULL, on_received, &r[0]);
  rec = msg_recorder_new (b);
  msg_port_main_start (b);
  msg_test_wait_until (NULL, r[0].done);
  g_assert_error (r[0].error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_ARGUMENT);
  g_assert_true (msg_port_main_is_started (b));

  msg_port_main_post (a, g_variant_new_string ("signal"), NULL);
  msg_test_wait_until (NULL, rec->events->len == 1);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec, 0), NULL), ==, "signal");

  msg_port_main_receive_async (b, NULL, on_received, &r[1]);
  msg_test_wait_until (NULL, r[1].done);
  g_assert_error (r[1].error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_ARGUMENT);

  msg_port_main_close (b);
  msg_test_wait_until (NULL, rec->n_close == 1);
  received_clear (&r[0]);
  received_clear (&r[1]);
}

static void
test_transfer (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) carrier = msg_channel_main_new ();
  MsgPortMain *a = msg_channel_main_get_port1 (channel);
  MsgPortMain *b = msg_channel_main_get_port2 (channel);
  MsgPortMain *transfer[] = { b };
  g_autoptr(GError) error = NULL;
  Received r[3] = { { 0, }, };
  MsgPortMain **ports;
  guint n_ports = 0;

  g_test_summary ("A port transferred with receives pending fails them with CLOSED; "
                  "its messages go with it");

  msg_port_main_receive_async (b, NULL, on_received, &r[0]);
  g_assert_true (msg_port_main_post_message (msg_channel_main_get_port1 (carrier), NULL,
                                             transfer, 1, &error));
  g_assert_no_error (error);
  msg_port_main_post (a, g_variant_new_string ("moved"), NULL);
  msg_test_wait_until (NULL, r[0].done);
  g_assert_error (r[0].error, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED);
  msg_port_main_receive_async (b, NULL, on_received, &r[1]);
  msg_test_wait_until (NULL, r[1].done);
  g_assert_error (r[1].error, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED);

  msg_port_main_receive_async (msg_channel_main_get_port2 (carrier), NULL, on_received, &r[2]);
  msg_test_wait_until (NULL, r[2].done);
  g_assert_no_error (r[2].error);
  ports = msg_message_event_get_ports (r[2].event, &n_ports);
  g_assert_cmpuint (n_ports, ==, 1);
  received_clear (&r[0]);
  msg_port_main_receive_async (ports[0], NULL, on_received, &r[0]);
  msg_test_wait_until (NULL, r[0].done);
  g_assert_cmpstr (received_string (&r[0]), ==, "moved");

  for (guint i = 0; i < G_N_ELEMENTS (r); i++)
    received_clear (&r[i]);
}

static void
test_sync (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *a = msg_channel_main_get_port1 (channel);
  MsgPortMain *b = msg_channel_main_get_port2 (channel);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  MsgMessageEvent *event;
  gint64 start;

  g_test_summary ("receive() polls with 0, times out with G_IO_ERROR_TIMED_OUT, "
                  "is cancelled, and reports the end; never NULL without an error");

  event = msg_port_main_receive (b, 0, NULL, &error);
  g_assert_null (event);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_clear_error (&error);

  msg_port_main_post (a, g_variant_new_string ("polled"), NULL);
  event = msg_port_main_receive (b, 0, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (g_variant_get_string (msg_message_event_get_data (event), NULL), ==, "polled");
  g_object_unref (event);

  start = g_get_monotonic_time ();
  event = msg_port_main_receive (b, 50, NULL, &error);
  g_assert_null (event);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_assert_cmpint (g_get_monotonic_time () - start, >=, 50 * 1000);
  g_clear_error (&error);

  g_cancellable_cancel (cancellable);
  event = msg_port_main_receive (b, -1, cancellable, &error);
  g_assert_null (event);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);

  /* Nothing was lost to the timeouts. */
  msg_port_main_post (a, g_variant_new_string ("kept"), NULL);
  msg_port_main_close (a);
  event = msg_port_main_receive (b, -1, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (g_variant_get_string (msg_message_event_get_data (event), NULL), ==, "kept");
  g_object_unref (event);
  event = msg_port_main_receive (b, -1, NULL, &error);
  g_assert_null (event);
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_CLOSED);
}

/* Threads --------------------------------------------------------------- */

#define N_THREAD_MESSAGES 2000

typedef struct
{
  MsgPortMain *port;     /* (owned) */
  guint        received;
  gboolean     in_order;
  GError      *end;      /* (owned) (nullable) */
} SyncWorker;

static gpointer
sync_worker_main (gpointer data)
{
  SyncWorker *w = data;

  w->in_order = TRUE;
  for (;;)
    {
      GError *error = NULL;
      MsgMessageEvent *event = msg_port_main_receive (w->port, -1, NULL, &error);

      if (event == NULL)
        {
          g_assert_nonnull (error);
          w->end = error;
          break;
        }
      if (g_variant_get_uint32 (msg_message_event_get_data (event)) != w->received)
        w->in_order = FALSE;
      w->received++;
      g_object_unref (event);
    }
  return NULL;
}

static void
test_threads_sync (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *a = msg_channel_main_get_port1 (channel);
  SyncWorker w = { g_object_ref (msg_channel_main_get_port2 (channel)), 0, FALSE, NULL };
  GThread *thread;

  g_test_summary ("A worker thread with no main loop receives with receive(-1) "
                  "everything another thread posts, in order, then the end");

  thread = g_thread_new ("sync-receiver", sync_worker_main, &w);
  for (guint32 i = 0; i < N_THREAD_MESSAGES; i++)
    msg_port_main_post (a, g_variant_new_uint32 (i), NULL);
  msg_port_main_close (a);
  g_thread_join (thread);

  g_assert_cmpuint (w.received, ==, N_THREAD_MESSAGES);
  g_assert_true (w.in_order);
  g_assert_error (w.end, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_CLOSED);
  g_clear_error (&w.end);
  g_object_unref (w.port);
}

typedef struct
{
  MsgPortMain *port;      /* (owned) */
  GThread     *thread;    /* of the worker */
  guint        received;  /* (atomic) */
  gint         done;      /* (atomic) */
  gboolean     ok;        /* callbacks in the worker's thread, in order */
  GError      *end;       /* (owned) (nullable) */
} AsyncWorker;

static void
async_worker_received (GObject      *source,
                       GAsyncResult *result,
                       gpointer      user_data)
{
  AsyncWorker *w = user_data;
  GError *error = NULL;
  MsgMessageEvent *event = msg_port_main_receive_finish (MSG_PORT_MAIN (source), result, &error);

  if (g_thread_self () != w->thread)
    w->ok = FALSE;
  if (event == NULL)
    {
      w->end = error;
      g_atomic_int_set (&w->done, 1);
      g_main_context_wakeup (NULL);  /* the main thread waits for it */
      return;
    }
  if (g_variant_get_uint32 (msg_message_event_get_data (event)) != (guint32) g_atomic_int_get (&w->received))
    w->ok = FALSE;
  g_atomic_int_inc (&w->received);
  g_object_unref (event);
  /* The next one, as an await loop does. */
  msg_port_main_receive_async (w->port, NULL, async_worker_received, w);
}

static gboolean
async_worker_start (gpointer data)
{
  AsyncWorker *w = data;

  w->thread = g_thread_self ();
  msg_port_main_receive_async (w->port, NULL, async_worker_received, w);
  return G_SOURCE_REMOVE;
}

static void
test_threads_async (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *a = msg_channel_main_get_port1 (channel);
  AsyncWorker w = { g_object_ref (msg_channel_main_get_port2 (channel)), NULL, 0, 0, TRUE, NULL };
  MsgTestWorker *worker = msg_test_worker_new ("async-receiver");

  g_test_summary ("receive_async() made in a worker's context completes there, "
                  "for messages posted from another thread");

  msg_test_worker_invoke (worker, async_worker_start, &w);
  for (guint32 i = 0; i < N_THREAD_MESSAGES; i++)
    msg_port_main_post (a, g_variant_new_uint32 (i), NULL);
  msg_port_main_close (a);
  msg_test_wait_until (NULL, g_atomic_int_get (&w.done));
  msg_test_worker_free (worker);

  g_assert_cmpuint (w.received, ==, N_THREAD_MESSAGES);
  g_assert_true (w.ok);
  g_assert_error (w.end, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_CLOSED);
  g_clear_error (&w.end);
  g_object_unref (w.port);
}

static void
test_other_context (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *b = msg_channel_main_get_port2 (channel);
  g_autoptr(GError) error = NULL;
  GMainContext *other = g_main_context_new ();
  Received r[2] = { { 0, }, };

  g_test_summary ("Receives from a second context while some are pending fail "
                  "with G_IO_ERROR_PENDING; so does receive()");

  msg_port_main_receive_async (b, NULL, on_received, &r[0]);
  g_main_context_push_thread_default (other);
  msg_port_main_receive_async (b, NULL, on_received, &r[1]);
  msg_test_wait_until (other, r[1].done);
  g_assert_error (r[1].error, G_IO_ERROR, G_IO_ERROR_PENDING);
  g_main_context_pop_thread_default (other);
  g_assert_null (msg_port_main_receive (b, 0, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_PENDING);

  msg_port_main_post (msg_channel_main_get_port1 (channel), g_variant_new_string ("first"), NULL);
  msg_test_wait_until (NULL, r[0].done);
  g_assert_cmpstr (received_string (&r[0]), ==, "first");
  received_clear (&r[0]);
  received_clear (&r[1]);
  g_main_context_unref (other);
}

/* Processes ------------------------------------------------------------- */

#define N_PROCESS_MESSAGES 500

static void
test_process (void)
{
  MsgTestChild child = { 0, };
  guint64 next = 0;

  g_test_summary ("Messages from a child process are received in order (checked "
                  "on the receiving context, as emitted ones are), then the end");

  msg_test_child_spawn (&child, "process-child", "burst-exit", N_PROCESS_MESSAGES);

  for (;;)
    {
      Received r = { 0, };

      msg_port_main_receive_async (child.port, NULL, on_received, &r);
      msg_test_wait_until (NULL, r.done);
      if (r.error != NULL)
        {
          g_assert_true (g_error_matches (r.error, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_GONE) ||
                         g_error_matches (r.error, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_CLOSED));
          received_clear (&r);
          break;
        }
      g_assert_cmpuint (g_variant_get_uint64 (msg_message_event_get_data (r.event)), ==, next);
      next++;
      received_clear (&r);
    }
  g_assert_cmpuint (next, ==, N_PROCESS_MESSAGES);
  msg_test_child_wait (&child, 0);
}

/* flush_async ------------------------------------------------------------ */

static void
on_flushed (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  Received *r = user_data;

  g_assert_true (msg_port_main_flush_finish (MSG_PORT_MAIN (source), result, &r->error));
  r->thread = g_thread_self ();
  r->done = TRUE;
}

static void
test_flush_async (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *a = NULL, *b = NULL;
  Received r = { 0, };
  GVariant *big = msg_test_tuple_of_bytes (64);
  g_autoptr(GError) error = NULL;
  MsgMessageEvent *event;

  g_test_summary ("flush_async() completes in the caller's context, in-process "
                  "and over a socket");

  msg_port_main_post (msg_channel_main_get_port1 (channel), g_variant_new_string ("x"), NULL);
  msg_port_main_flush_async (msg_channel_main_get_port1 (channel), NULL, on_flushed, &r);
  msg_test_wait_until (NULL, r.done);
  g_assert_no_error (r.error);
  g_assert_true (r.thread == g_thread_self ());

  msg_test_socket_ports (&a, &b);
  g_variant_ref_sink (big);
  for (guint i = 0; i < 100; i++)
    msg_port_main_post (a, big, NULL);
  r.done = FALSE;
  msg_port_main_flush_async (a, NULL, on_flushed, &r);
  msg_test_wait_until (NULL, r.done);
  for (guint i = 0; i < 100; i++)
    {
      event = msg_port_main_receive (b, -1, NULL, &error);
      g_assert_no_error (error);
      g_assert_true (g_variant_equal (msg_message_event_get_data (event), big));
      g_object_unref (event);
    }
  g_variant_unref (big);
  g_object_unref (a);
  g_object_unref (b);
}

/* Priorities and bounded batches ---------------------------------------- */

typedef struct
{
  GArray *log;      /* of gchar: 'H', 'L', 'B' (a backlog message), 'I' (idle) */
  guint   n_backlog;
} DispatchLog;

static void
log_message (MsgPortMain     *port,
             MsgMessageEvent *event,
             gpointer         user_data)
{
  DispatchLog *log = user_data;
  gchar c = *g_variant_get_string (msg_message_event_get_data (event), NULL);

  if (c == 'B')
    log->n_backlog++;
  g_array_append_val (log->log, c);
}

static gboolean
log_idle (gpointer user_data)
{
  DispatchLog *log = user_data;
  gchar c = 'I';

  g_array_append_val (log->log, c);
  return G_SOURCE_REMOVE;
}

static gint
log_index (DispatchLog *log,
           gchar        c)
{
  for (guint i = 0; i < log->log->len; i++)
    if (g_array_index (log->log, gchar, i) == c)
      return (gint) i;
  return -1;
}

static void
test_priority (void)
{
  g_autoptr(MsgChannelMain) low = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) high = msg_channel_main_new ();
  MsgPortMain *low_port = msg_channel_main_get_port2 (low);
  MsgPortMain *high_port = msg_channel_main_get_port2 (high);
  DispatchLog log = { g_array_new (FALSE, FALSE, 1), 0 };
  gint priority = 0;

  g_test_summary ("A port with a higher priority is dispatched before a ready port "
                  "of the same context with a lower one, also once changed on "
                  "started ports; the property round-trips");

  g_assert_cmpint (msg_port_main_get_priority (low_port), ==, G_PRIORITY_DEFAULT);
  g_object_set (high_port, "priority", G_PRIORITY_HIGH, NULL);
  g_object_get (high_port, "priority", &priority, NULL);
  g_assert_cmpint (priority, ==, G_PRIORITY_HIGH);

  msg_port_main_set_message_func (low_port, log_message, &log, NULL);
  msg_port_main_set_message_func (high_port, log_message, &log, NULL);
  /* The low port is started first and its message posted first. */
  msg_port_main_start (low_port);
  msg_port_main_start (high_port);
  msg_port_main_post (msg_channel_main_get_port1 (low), g_variant_new_string ("L"), NULL);
  msg_port_main_post (msg_channel_main_get_port1 (high), g_variant_new_string ("H"), NULL);
  msg_test_wait_until (NULL, log.log->len == 2);
  g_assert_cmpint (log_index (&log, 'H'), ==, 0);
  g_assert_cmpint (log_index (&log, 'L'), ==, 1);

  /* Changed on started ports, in their context's thread: at once. */
  g_array_set_size (log.log, 0);
  msg_port_main_set_priority (high_port, G_PRIORITY_LOW);
  msg_port_main_set_priority (low_port, G_PRIORITY_HIGH);
  msg_port_main_post (msg_channel_main_get_port1 (high), g_variant_new_string ("H"), NULL);
  msg_port_main_post (msg_channel_main_get_port1 (low), g_variant_new_string ("L"), NULL);
  msg_test_wait_until (NULL, log.log->len == 2);
  g_assert_cmpint (log_index (&log, 'L'), ==, 0);
  g_assert_cmpint (log_index (&log, 'H'), ==, 1);

  msg_port_main_close (low_port);
  msg_port_main_close (high_port);
  msg_test_drain (NULL);
  g_array_unref (log.log);
}

typedef struct
{
  guint32  next;
  gboolean in_order;
} OrderLog;

static void
reprioritize_message (MsgPortMain     *port,
                      MsgMessageEvent *event,
                      gpointer         user_data)
{
  OrderLog *log = user_data;
  guint32 value = g_variant_get_uint32 (msg_message_event_get_data (event));

  if (value != log->next)
    log->in_order = FALSE;
  log->next++;
  /* In the middle of a batch, now and then. */
  if (value % 100 == 10)
    msg_port_main_set_priority (port, value % 200 == 10 ? G_PRIORITY_HIGH : G_PRIORITY_LOW);
}

static void
test_priority_change_in_handler (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *port = msg_channel_main_get_port2 (channel);
  OrderLog log = { 0, TRUE };

  g_test_summary ("Changing the priority of a started port from its handler, in the "
                  "middle of a batch, loses, repeats and reorders nothing");

  for (guint32 i = 0; i < 2000; i++)
    msg_port_main_post (msg_channel_main_get_port1 (channel), g_variant_new_uint32 (i), NULL);
  msg_port_main_set_message_func (port, reprioritize_message, &log, NULL);
  msg_port_main_start (port);
  msg_test_wait_until (NULL, log.next == 2000);
  g_assert_true (log.in_order);
  msg_test_iterate_for (NULL, 20);
  g_assert_cmpuint (log.next, ==, 2000);

  msg_port_main_close (port);
  msg_test_drain (NULL);
}

#define N_BACKLOG 20000

static void
test_bounded_batch (void)
{
  g_autoptr(MsgChannelMain) busy = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) quiet = msg_channel_main_new ();
  MsgPortMain *busy_port = msg_channel_main_get_port2 (busy);
  MsgPortMain *quiet_port = msg_channel_main_get_port2 (quiet);
  DispatchLog log = { g_array_new (FALSE, FALSE, 1), 0 };
  gint quiet_at, idle_at;

  g_test_summary ("A port with a backlog is delivered in bounded batches: a port "
                  "beside it on the same context and an idle source of the same "
                  "priority run long before the backlog is through");

  for (guint i = 0; i < N_BACKLOG; i++)
    msg_port_main_post (msg_channel_main_get_port1 (busy), g_variant_new_string ("B"), NULL);
  msg_port_main_set_message_func (busy_port, log_message, &log, NULL);
  msg_port_main_set_message_func (quiet_port, log_message, &log, NULL);
  msg_port_main_start (busy_port);
  msg_port_main_start (quiet_port);
  g_idle_add_full (G_PRIORITY_DEFAULT, log_idle, &log, NULL);
  msg_port_main_post (msg_channel_main_get_port1 (quiet), g_variant_new_string ("Q"), NULL);

  msg_test_wait_until (NULL, log.n_backlog == N_BACKLOG);
  quiet_at = log_index (&log, 'Q');
  idle_at = log_index (&log, 'I');
  g_test_message ("quiet port at %d, idle at %d of %u", quiet_at, idle_at, log.log->len);
  g_assert_cmpint (quiet_at, >=, 0);
  g_assert_cmpint (idle_at, >=, 0);
  /* Before: the whole backlog went in one dispatch, the others after it. */
  g_assert_cmpint (quiet_at, <, N_BACKLOG / 4);
  g_assert_cmpint (idle_at, <, N_BACKLOG / 4);

  msg_port_main_close (busy_port);
  msg_port_main_close (quiet_port);
  msg_test_drain (NULL);
  g_array_unref (log.log);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/receive/same-thread", test_same_thread);
  g_test_add_func ("/receive/ports", test_ports);
  g_test_add_func ("/receive/end", test_end);
  g_test_add_func ("/receive/cancel", test_cancel);
  g_test_add_func ("/receive/start", test_start);
  g_test_add_func ("/receive/transfer", test_transfer);
  g_test_add_func ("/receive/sync", test_sync);
  g_test_add_func ("/receive/other-context", test_other_context);
  g_test_add_func ("/receive/threads-sync", test_threads_sync);
  g_test_add_func ("/receive/threads-async", test_threads_async);
  g_test_add_func ("/receive/process", test_process);
  g_test_add_func ("/flush/async", test_flush_async);
  g_test_add_func ("/dispatch/priority", test_priority);
  g_test_add_func ("/dispatch/priority-change-in-handler", test_priority_change_in_handler);
  g_test_add_func ("/dispatch/bounded-batch", test_bounded_batch);

  return g_test_run ();
}
