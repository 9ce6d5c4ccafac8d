/* flow.c: flow control and per-port counters, in one thread and across
 * threads, and the hooks the process transport uses
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>

#include "msg-test-utils.h"
#include "msg-endpoint-private.h"
#include "msg-port-main-private.h"

#define MSG_SIZE 1024

/* A message of exactly @size bytes of data (an "ay"), numbered @i. */
static GVariant *
new_message (gsize size,
             guint i)
{
  guint8 *data = g_malloc0 (size);

  memcpy (data, &i, MIN (size, sizeof i));
  return g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, data, size, TRUE, g_free, data);
}

static void
post_sized (MsgPortMain *port,
            gsize        size,
            guint        i)
{
  GError *error = NULL;

  g_assert_true (msg_port_main_post (port, new_message (size, i), &error));
  g_assert_no_error (error);
}

/* What a sending port emits. */
typedef struct
{
  guint    n_drain;
  guint    n_writable;       /* notify::writable */
  gboolean last_writable;    /* the value in the last notify::writable */
  guint    n_buffered;       /* notify::buffered-amount */
  GThread *thread;           /* of the last emission */
} FlowRecorder;

static void
on_drain (MsgPortMain *port,
          gpointer     user_data)
{
  FlowRecorder *rec = user_data;

  /* Emitted writable, after notify::writable said so. */
  g_assert_true (msg_port_main_is_writable (port));
  rec->n_drain++;
  rec->thread = g_thread_self ();
}

static void
on_notify_writable (GObject    *object,
                    GParamSpec *pspec,
                    gpointer    user_data)
{
  FlowRecorder *rec = user_data;

  rec->n_writable++;
  rec->last_writable = msg_port_main_is_writable (MSG_PORT_MAIN (object));
  rec->thread = g_thread_self ();
}

static void
on_notify_buffered (GObject    *object,
                    GParamSpec *pspec,
                    gpointer    user_data)
{
  FlowRecorder *rec = user_data;

  rec->n_buffered++;
}

static void
flow_recorder_connect (FlowRecorder *rec,
                       MsgPortMain  *port)
{
  memset (rec, 0, sizeof *rec);
  g_signal_connect (port, "drain", G_CALLBACK (on_drain), rec);
  g_signal_connect (port, "notify::writable", G_CALLBACK (on_notify_writable), rec);
  g_signal_connect (port, "notify::buffered-amount", G_CALLBACK (on_notify_buffered), rec);
}

/* Counters ---------------------------------------------------------------- */

static void
test_flow_counters (void)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
  guint received = 0;
  guint64 value = 0;

  g_test_summary ("Counters rise with posts and fall when the other end takes them");

  g_assert_cmpuint (msg_port_main_get_buffered_amount (port1), ==, 0);
  g_assert_true (msg_port_main_is_writable (port1));
  g_assert_cmpuint (msg_port_main_get_high_water_mark (port1), ==, 0);

  for (guint i = 0; i < 3; i++)
    post_sized (port1, MSG_SIZE, i);
  g_assert_true (msg_port_main_post (port1, NULL, NULL));

  /* A NULL message counts as one message of no bytes. */
  g_assert_cmpuint (msg_port_main_get_buffered_amount (port1), ==, 3 * MSG_SIZE);
  g_assert_cmpuint (msg_port_main_get_buffered_messages (port1), ==, 4);
  g_assert_cmpuint (msg_port_main_get_messages_sent (port1), ==, 4);
  g_assert_cmpuint (msg_port_main_get_bytes_sent (port1), ==, 3 * MSG_SIZE);
  g_assert_cmpuint (msg_port_main_get_queued_messages (port2), ==, 4);
  g_assert_cmpuint (msg_port_main_get_max_queued_messages (port2), ==, 4);
  g_assert_cmpuint (msg_port_main_get_messages_received (port2), ==, 0);
  g_object_get (port1, "buffered-amount", &value, NULL);
  g_assert_cmpuint (value, ==, 3 * MSG_SIZE);

  /* Not taken while nobody handles them. */
  msg_test_drain (NULL);
  g_assert_cmpuint (msg_port_main_get_buffered_messages (port1), ==, 4);

  g_signal_connect (port2, "message", G_CALLBACK (msg_test_count_message), &received);
  msg_port_main_start (port2);
  msg_test_wait_until (NULL, received == 4 &&
                             msg_port_main_get_buffered_messages (port1) == 0);
  g_assert_cmpuint (msg_port_main_get_buffered_amount (port1), ==, 0);
  g_assert_cmpuint (msg_port_main_get_messages_received (port2), ==, 4);
  g_assert_cmpuint (msg_port_main_get_bytes_received (port2), ==, 3 * MSG_SIZE);
  g_assert_cmpuint (msg_port_main_get_queued_messages (port2), ==, 0);
  g_assert_cmpuint (msg_port_main_get_max_queued_messages (port2), ==, 4);
  g_object_get (port2, "messages-received", &value, NULL);
  g_assert_cmpuint (value, ==, 4);
  /* The other direction saw nothing. */
  g_assert_cmpuint (msg_port_main_get_messages_sent (port2), ==, 0);
  g_assert_cmpuint (msg_port_main_get_messages_received (port1), ==, 0);

  msg_port_main_close (port1);
  msg_test_drain (NULL);
  g_object_unref (channel);
}

/* The mark, in one thread ------------------------------------------------- */

static void
test_flow_mark_same_thread (void)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
  FlowRecorder rec;
  guint received = 0;

  g_test_summary ("Above the mark posts still queue and writable goes FALSE; drain and "
                  "notify come once, in the sender's context, below half the mark");

  flow_recorder_connect (&rec, port1);
  msg_port_main_start (port1);
  msg_port_main_set_high_water_mark (port1, 4 * MSG_SIZE);
  g_assert_cmpuint (msg_port_main_get_high_water_mark (port1), ==, 4 * MSG_SIZE);

  for (guint i = 0; i < 3; i++)
    post_sized (port1, MSG_SIZE, i);
  g_assert_true (msg_port_main_is_writable (port1));
  post_sized (port1, MSG_SIZE, 3);
  g_assert_false (msg_port_main_is_writable (port1));
  /* Posting never fails nor drops above the mark. */
  for (guint i = 4; i < 10; i++)
    post_sized (port1, MSG_SIZE, i);
  g_assert_cmpuint (msg_port_main_get_buffered_messages (port1), ==, 10);
  g_assert_false (msg_port_main_is_writable (port1));

  /* The change reaches the sender's context. */
  msg_test_wait_until (NULL, rec.n_writable == 1);
  g_assert_false (rec.last_writable);
  g_assert_cmpuint (rec.n_drain, ==, 0);

  g_signal_connect (port2, "message", G_CALLBACK (msg_test_count_message), &received);
  msg_port_main_start (port2);
  msg_test_wait_until (NULL, rec.n_drain == 1);
  msg_test_drain (NULL);
  g_assert_cmpuint (received, ==, 10);
  g_assert_cmpuint (rec.n_drain, ==, 1);
  g_assert_cmpuint (rec.n_writable, ==, 2);
  g_assert_true (rec.last_writable);
  g_assert_true (rec.thread == g_thread_self ());
  g_assert_cmpuint (rec.n_buffered, >=, 1);
  g_assert_true (msg_port_main_is_writable (port1));
  g_assert_cmpuint (msg_port_main_get_buffered_amount (port1), ==, 0);

  msg_port_main_close (port1);
  msg_test_drain (NULL);
  g_object_unref (channel);
}

static void
test_flow_mark_low_water (void)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  MsgEndpoint *endpoint1 = msg_port_main_get_endpoint (port1);
  FlowRecorder rec;

  g_test_summary ("Writable again only below half the mark; setting the mark re-evaluates");

  flow_recorder_connect (&rec, port1);
  msg_port_main_start (port1);
  msg_port_main_set_high_water_mark (port1, 4 * MSG_SIZE);
  for (guint i = 0; i < 4; i++)
    post_sized (port1, MSG_SIZE, i);
  g_assert_false (msg_port_main_is_writable (port1));

  /* Taken down to half the mark: not yet below it. */
  msg_endpoint_credit (endpoint1, 2, 2 * MSG_SIZE);
  g_assert_false (msg_port_main_is_writable (port1));
  msg_endpoint_credit (endpoint1, 1, MSG_SIZE);
  g_assert_true (msg_port_main_is_writable (port1));
  msg_test_wait_until (NULL, rec.n_drain == 1);

  /* A higher mark, and then 0, never make it unwritable. */
  post_sized (port1, MSG_SIZE, 4);
  post_sized (port1, MSG_SIZE, 5);
  post_sized (port1, MSG_SIZE, 6);
  g_assert_false (msg_port_main_is_writable (port1));
  msg_port_main_set_high_water_mark (port1, 100 * MSG_SIZE);
  g_assert_true (msg_port_main_is_writable (port1));
  msg_test_wait_until (NULL, rec.n_drain == 2);
  msg_port_main_set_high_water_mark (port1, 2 * MSG_SIZE);
  g_assert_false (msg_port_main_is_writable (port1));
  msg_port_main_set_high_water_mark (port1, 0);
  g_assert_true (msg_port_main_is_writable (port1));
  msg_test_wait_until (NULL, rec.n_drain == 3);

  msg_port_main_close (port1);
  msg_test_drain (NULL);
  g_object_unref (channel);
}

static void
test_flow_mark_off (void)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
  FlowRecorder rec;
  guint received = 0;

  g_test_summary ("With no mark (the default) nothing changes: always writable, no signals");

  flow_recorder_connect (&rec, port1);
  msg_port_main_start (port1);
  for (guint i = 0; i < 1000; i++)
    post_sized (port1, MSG_SIZE, i);
  g_assert_true (msg_port_main_is_writable (port1));
  g_assert_cmpuint (msg_port_main_get_buffered_amount (port1), ==, 1000 * MSG_SIZE);

  g_signal_connect (port2, "message", G_CALLBACK (msg_test_count_message), &received);
  msg_port_main_start (port2);
  msg_test_wait_until (NULL, received == 1000);
  msg_test_drain (NULL);
  g_assert_cmpuint (msg_port_main_get_buffered_amount (port1), ==, 0);
  g_assert_cmpuint (rec.n_drain, ==, 0);
  g_assert_cmpuint (rec.n_writable, ==, 0);
  g_assert_cmpuint (rec.n_buffered, ==, 0);

  msg_port_main_close (port1);
  msg_test_drain (NULL);
  g_object_unref (channel);
}

/* wait_writable_async() --------------------------------------------------- */

typedef struct
{
  gboolean  done;
  gboolean  result;
  GError   *error;
} WaitResult;

static void
wait_done (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  WaitResult *wait = user_data;

  g_assert_false (wait->done);
  wait->result = msg_port_main_wait_writable_finish (MSG_PORT_MAIN (source), result,
                                                     &wait->error);
  wait->done = TRUE;
}

/* port1 of a new channel, above its mark of 2 KiB, port2 not started. */
static MsgChannelMain *
new_blocked_channel (void)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);

  msg_port_main_set_high_water_mark (port1, 2 * MSG_SIZE);
  post_sized (port1, MSG_SIZE, 0);
  post_sized (port1, MSG_SIZE, 1);
  g_assert_false (msg_port_main_is_writable (port1));
  return channel;
}

static void
test_flow_wait_immediate (void)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  WaitResult wait = { 0 };

  g_test_summary ("wait_writable_async() on a writable port completes at once, in the "
                  "caller's context");

  msg_port_main_set_high_water_mark (port1, 2 * MSG_SIZE);
  post_sized (port1, MSG_SIZE, 0);
  msg_port_main_wait_writable_async (port1, NULL, wait_done, &wait);
  g_assert_false (wait.done);  /* GTask: in the next iteration */
  msg_test_wait_until (NULL, wait.done);
  g_assert_no_error (wait.error);
  g_assert_true (wait.result);

  g_object_unref (channel);
}

static void
test_flow_wait_delayed (void)
{
  MsgChannelMain *channel = new_blocked_channel ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
  WaitResult wait = { 0 }, second = { 0 };
  guint received = 0;

  g_test_summary ("wait_writable_async() on a port above its mark completes once the other "
                  "end took enough; the port need not be started");

  msg_port_main_wait_writable_async (port1, NULL, wait_done, &wait);
  msg_port_main_wait_writable_async (port1, NULL, wait_done, &second);
  msg_test_drain (NULL);
  g_assert_false (wait.done);

  g_signal_connect (port2, "message", G_CALLBACK (msg_test_count_message), &received);
  msg_port_main_start (port2);
  msg_test_wait_until (NULL, wait.done && second.done);
  g_assert_no_error (wait.error);
  g_assert_true (wait.result);
  g_assert_no_error (second.error);
  g_assert_true (second.result);
  g_assert_cmpuint (received, ==, 2);
  g_assert_true (msg_port_main_is_writable (port1));

  g_object_unref (channel);
}

static void
test_flow_wait_cancelled (void)
{
  MsgChannelMain *channel = new_blocked_channel ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  GCancellable *cancellable = g_cancellable_new ();
  WaitResult wait = { 0 }, early = { 0 };

  g_test_summary ("wait_writable_async() fails with G_IO_ERROR_CANCELLED when cancelled");

  msg_port_main_wait_writable_async (port1, cancellable, wait_done, &wait);
  msg_test_drain (NULL);
  g_assert_false (wait.done);
  g_cancellable_cancel (cancellable);
  msg_test_wait_until (NULL, wait.done);
  g_assert_error (wait.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_false (wait.result);
  g_clear_error (&wait.error);

  /* Cancelled before. */
  msg_port_main_wait_writable_async (port1, cancellable, wait_done, &early);
  msg_test_wait_until (NULL, early.done);
  g_assert_error (early.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&early.error);

  /* The port still works: taking the messages makes it writable. */
  g_assert_false (msg_port_main_is_writable (port1));
  g_object_unref (cancellable);
  g_object_unref (channel);
}

static void
test_flow_wait_closed (void)
{
  MsgChannelMain *channel = new_blocked_channel ();
  MsgChannelMain *channel2 = new_blocked_channel ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
  MsgPortMain *other1 = msg_channel_main_get_port1 (channel2);
  WaitResult wait = { 0 }, mine = { 0 }, after = { 0 };
  FlowRecorder rec;

  g_test_summary ("wait_writable_async() fails with the close reason when the port ends; "
                  "the counters drop to 0 and it is writable");

  flow_recorder_connect (&rec, port1);
  msg_port_main_start (port1);
  msg_test_wait_until (NULL, rec.n_writable == 1);
  msg_port_main_wait_writable_async (port1, NULL, wait_done, &wait);
  msg_port_main_close (port2);
  msg_test_wait_until (NULL, wait.done);
  g_assert_error (wait.error, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_CLOSED);
  g_clear_error (&wait.error);
  g_assert_cmpuint (msg_port_main_get_buffered_amount (port1), ==, 0);
  g_assert_cmpuint (msg_port_main_get_buffered_messages (port1), ==, 0);
  g_assert_true (msg_port_main_is_writable (port1));
  /* Sent stays what it was. */
  g_assert_cmpuint (msg_port_main_get_messages_sent (port1), ==, 2);
  msg_test_wait_until (NULL, rec.n_writable == 2);
  g_assert_true (rec.last_writable);
  g_assert_cmpuint (rec.n_drain, ==, 0);

  /* Waiting on a port that ended fails at once. */
  msg_port_main_wait_writable_async (port1, NULL, wait_done, &after);
  msg_test_wait_until (NULL, after.done);
  g_assert_error (after.error, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_CLOSED);
  g_clear_error (&after.error);

  /* Closing the waiting port itself. */
  msg_port_main_wait_writable_async (other1, NULL, wait_done, &mine);
  msg_port_main_close (other1);
  msg_test_wait_until (NULL, mine.done);
  g_assert_error (mine.error, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED);
  g_clear_error (&mine.error);

  g_object_unref (channel2);
  g_object_unref (channel);
}

/* Transfers ---------------------------------------------------------------- */

static void
keep_ports (MsgPortMain     *port,
            MsgMessageEvent *event,
            gpointer         user_data)
{
  MsgPortMain **slot = user_data;

  g_assert_null (*slot);
  *slot = g_object_ref (msg_message_event_get_port (event, 0));
}

static void
test_flow_transfer_sender (void)
{
  MsgChannelMain *channel = new_blocked_channel ();
  MsgChannelMain *carrier = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
  MsgPortMain *moved = NULL;
  WaitResult wait = { 0 };
  guint received = 0;

  g_test_summary ("A transferred sender keeps its counts and mark; the old handle's waits "
                  "fail");

  post_sized (port1, MSG_SIZE, 2);
  msg_port_main_wait_writable_async (port1, NULL, wait_done, &wait);
  g_signal_connect (msg_channel_main_get_port2 (carrier), "message", G_CALLBACK (keep_ports), &moved);
  msg_port_main_start (msg_channel_main_get_port2 (carrier));
  g_assert_true (msg_port_main_post_message (msg_channel_main_get_port1 (carrier), NULL,
                                             &port1, 1, NULL));
  msg_test_wait_until (NULL, moved != NULL && wait.done);
  g_assert_error (wait.error, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED);
  g_clear_error (&wait.error);

  g_assert_cmpuint (msg_port_main_get_buffered_amount (port1), ==, 0);
  g_assert_cmpuint (msg_port_main_get_buffered_amount (moved), ==, 3 * MSG_SIZE);
  g_assert_cmpuint (msg_port_main_get_buffered_messages (moved), ==, 3);
  g_assert_cmpuint (msg_port_main_get_messages_sent (moved), ==, 3);
  g_assert_cmpuint (msg_port_main_get_high_water_mark (moved), ==, 2 * MSG_SIZE);
  g_assert_false (msg_port_main_is_writable (moved));

  /* Transferring the receiver takes nothing. */
  {
    MsgPortMain *moved2 = NULL;

    g_signal_handlers_disconnect_by_func (msg_channel_main_get_port2 (carrier), keep_ports, &moved);
    g_signal_connect (msg_channel_main_get_port2 (carrier), "message", G_CALLBACK (keep_ports), &moved2);
    g_assert_true (msg_port_main_post_message (msg_channel_main_get_port1 (carrier), NULL,
                                               &port2, 1, NULL));
    msg_test_wait_until (NULL, moved2 != NULL);
    g_assert_cmpuint (msg_port_main_get_buffered_messages (moved), ==, 3);
    g_assert_cmpuint (msg_port_main_get_queued_messages (moved2), ==, 3);

    g_signal_connect (moved2, "message", G_CALLBACK (msg_test_count_message), &received);
    msg_port_main_start (moved2);
    msg_test_wait_until (NULL, received == 3);
    g_assert_cmpuint (msg_port_main_get_buffered_amount (moved), ==, 0);
    g_assert_true (msg_port_main_is_writable (moved));
    g_assert_cmpuint (msg_port_main_get_messages_received (moved2), ==, 3);
    msg_port_main_close (moved2);
    g_object_unref (moved2);
  }

  msg_test_drain (NULL);
  g_object_unref (moved);
  g_object_unref (carrier);
  g_object_unref (channel);
}

/* Across threads ------------------------------------------------------------ */

typedef struct
{
  MsgTestWorker *worker;
  MsgPortMain   *port;      /* (owned): the consumer's end */
  gint           received;  /* (atomic) */
  guint          next;
  gint           closed;    /* (atomic) */
} Consumer;

static void
consumer_message (MsgPortMain     *port,
                  MsgMessageEvent *event,
                  gpointer         user_data)
{
  Consumer *consumer = user_data;
  GVariant *data = msg_message_event_get_data (event);
  guint i;

  g_assert_cmpuint (g_variant_get_size (data), ==, MSG_SIZE);
  memcpy (&i, g_variant_get_data (data), sizeof i);
  g_assert_cmpuint (i, ==, consumer->next);
  consumer->next++;
  g_atomic_int_inc (&consumer->received);
}

static void
consumer_close (MsgPortMain *port,
                gpointer     user_data)
{
  Consumer *consumer = user_data;

  g_atomic_int_set (&consumer->closed, 1);
  g_main_context_wakeup (NULL);
}

static gboolean
consumer_start (gpointer user_data)
{
  Consumer *consumer = user_data;

  g_signal_connect (consumer->port, "message", G_CALLBACK (consumer_message), consumer);
  g_signal_connect (consumer->port, "close", G_CALLBACK (consumer_close), consumer);
  msg_port_main_start (consumer->port);
  return G_SOURCE_REMOVE;
}

static void
test_flow_cross_thread (void)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  Consumer consumer = { 0 };
  FlowRecorder rec;
  const guint n = g_test_thorough () ? 100000 : 5000;
  const guint64 mark = 16 * MSG_SIZE;
  guint64 max_buffered = 0;
  guint posted = 0;

  g_test_summary ("A producer that waits for writable keeps a consumer thread's backlog "
                  "under the mark; drain and notify come in the producer's thread");

  flow_recorder_connect (&rec, port1);
  msg_port_main_start (port1);
  msg_port_main_set_high_water_mark (port1, mark);
  consumer.port = g_object_ref (msg_channel_main_get_port2 (channel));
  consumer.worker = msg_test_worker_new ("consumer");
  msg_test_worker_invoke (consumer.worker, consumer_start, &consumer);

  while (posted < n)
    {
      WaitResult wait = { 0 };

      while (posted < n && msg_port_main_is_writable (port1))
        post_sized (port1, MSG_SIZE, posted++);
      max_buffered = MAX (max_buffered, msg_port_main_get_buffered_amount (port1));
      msg_port_main_wait_writable_async (port1, NULL, wait_done, &wait);
      msg_test_wait_until (NULL, wait.done);
      g_assert_no_error (wait.error);
      g_assert_true (wait.result);
    }
  msg_test_wait_until (NULL, (guint) g_atomic_int_get (&consumer.received) == n &&
                             msg_port_main_get_buffered_messages (port1) == 0);

  /* Never more than the mark: posting stopped at it. */
  g_assert_cmpuint (max_buffered, <=, mark);
  g_assert_cmpuint (max_buffered, >=, mark);
  msg_test_wait_until (NULL, rec.n_drain > 0);
  g_assert_true (rec.thread == g_thread_self ());
  g_assert_cmpuint (msg_port_main_get_messages_sent (port1), ==, n);
  g_assert_cmpuint (msg_port_main_get_bytes_sent (port1), ==, (guint64) n * MSG_SIZE);

  msg_port_main_close (port1);
  msg_test_wait_until (NULL, g_atomic_int_get (&consumer.closed));
  g_assert_cmpuint (msg_port_main_get_messages_received (consumer.port), ==, n);
  g_assert_cmpuint (msg_port_main_get_max_queued_messages (consumer.port), <=, mark / MSG_SIZE + 1);
  msg_test_worker_free (consumer.worker);
  g_object_unref (consumer.port);
  msg_test_drain (NULL);
  g_object_unref (channel);
}

/* The hooks of the process transport ------------------------------------ */

typedef struct
{
  MsgSink  sink;
  guint    n_delivered;
  guint    n_consumed;
  guint64  consumed_bytes;
  gboolean *released;
} DummySink;

static MsgItem *
dummy_deliver (MsgSink *sink,
               MsgItem *item)
{
  ((DummySink *) sink)->n_delivered++;
  return item;  /* freed by the caller, once unlocked */
}

static void
dummy_release (MsgSink *sink)
{
  *((DummySink *) sink)->released = TRUE;
  g_free (sink);
}

static void
dummy_consumed (MsgSink *sink,
                guint    n_messages,
                guint64  n_bytes)
{
  DummySink *self = (DummySink *) sink;

  self->n_consumed += n_messages;
  self->consumed_bytes += n_bytes;
}

static const MsgSinkFuncs dummy_sink_funcs = {
  .deliver = dummy_deliver,
  .release = dummy_release,
  .consumed = dummy_consumed,
};

static DummySink *
dummy_sink_new (gboolean *released)
{
  DummySink *sink = g_new0 (DummySink, 1);

  sink->sink.funcs = &dummy_sink_funcs;
  sink->released = released;
  return sink;
}

static void
end_pair (MsgEndpoint *a,
          MsgEndpoint *b)
{
  msg_endpoint_disentangle (a, g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED, "closed"),
                            msg_endpoint_new_peer_closed_reason ());
  msg_endpoint_unref (a);
  msg_endpoint_unref (b);
}

static void
test_flow_acknowledge (void)
{
  MsgEndpoint *poster = msg_endpoint_new ();
  MsgEndpoint *stand_in = msg_endpoint_new ();
  MsgEndpoint *reader = msg_endpoint_new ();
  MsgEndpoint *remote = msg_endpoint_new ();
  gboolean released = FALSE, released2 = FALSE;
  DummySink *sink = dummy_sink_new (&released);
  DummySink *sink2 = dummy_sink_new (&released2);
  guint64 n_messages, n_bytes;

  g_test_summary ("msg_endpoint_acknowledge() credits the poster; what an endpoint takes "
                  "from a peer with a sink goes to the sink's consumed()");

  /* poster -> stand_in, whose sink carries it to another process. */
  msg_endpoint_entangle (poster, stand_in);
  msg_endpoint_set_sink (stand_in, &sink->sink);
  for (guint i = 0; i < 3; i++)
    {
      msg_mutex_lock (&poster->lock);
      msg_endpoint_count_post_locked (poster, 100, NULL);
      msg_mutex_unlock (&poster->lock);
      msg_endpoint_deliver (stand_in, msg_item_new_message (new_message (100, i)));
    }
  g_assert_cmpuint (sink->n_delivered, ==, 3);
  msg_endpoint_get_buffered (poster, &n_messages, &n_bytes);
  g_assert_cmpuint (n_messages, ==, 3);
  g_assert_cmpuint (n_bytes, ==, 300);

  /* The far end took two, then the last. */
  msg_endpoint_acknowledge (stand_in, 2, 200);
  msg_endpoint_get_buffered (poster, &n_messages, &n_bytes);
  g_assert_cmpuint (n_messages, ==, 1);
  g_assert_cmpuint (n_bytes, ==, 100);
  msg_endpoint_acknowledge (stand_in, 1, 100);
  msg_endpoint_get_buffered (poster, &n_messages, &n_bytes);
  g_assert_cmpuint (n_messages, ==, 0);
  g_assert_cmpuint (n_bytes, ==, 0);

  /* reader's peer is a stand-in (remote) for a port elsewhere: what
   * reader's handlers take goes to that sink, not to any counter here. */
  msg_endpoint_entangle (reader, remote);
  msg_endpoint_set_sink (remote, &sink2->sink);
  msg_endpoint_taken (reader, remote, 2, 20);
  g_assert_cmpuint (sink2->n_consumed, ==, 2);
  g_assert_cmpuint (sink2->consumed_bytes, ==, 20);
  g_assert_cmpuint (msg_atomic_u64_get (&reader->received_messages), ==, 2);
  g_assert_cmpuint (msg_atomic_u64_get (&remote->taken_messages), ==, 0);
  /* A sink without consumed() is skipped: nothing to check but no crash. */
  g_assert_cmpuint (sink->n_consumed, ==, 0);

  end_pair (poster, stand_in);
  end_pair (reader, remote);
  g_assert_true (released);
  g_assert_true (released2);
}

static void
test_flow_process_acknowledged (void)
{
  MsgPortMain *a, *b;
  guint received = 0, drains = 0;

  g_test_summary ("Across a socket the receiver acknowledges what its handlers took: "
                  "the sender's buffered amount counts what is in the sockets and the "
                  "peer's queue, falls to 0 once the peer took it, and the port becomes "
                  "writable again with ::drain");

  msg_test_socket_ports (&a, &b);
  g_signal_connect (a, "drain", G_CALLBACK (msg_test_count_signal), &drains);
  msg_port_main_start (a);
  msg_port_main_set_high_water_mark (a, 4 * MSG_SIZE);
  for (guint i = 0; i < 10; i++)
    post_sized (a, MSG_SIZE, i);
  /* Nobody took anything: all of it is buffered, wherever it is. */
  g_assert_false (msg_port_main_is_writable (a));
  g_assert_cmpuint (msg_port_main_get_buffered_amount (a), ==, 10 * MSG_SIZE);
  g_assert_cmpuint (msg_port_main_get_buffered_messages (a), ==, 10);
  g_assert_cmpuint (msg_port_main_get_messages_sent (a), ==, 10);
  g_assert_cmpuint (msg_port_main_get_bytes_sent (a), ==, 10 * MSG_SIZE);

  g_signal_connect (b, "message", G_CALLBACK (msg_test_count_message), &received);
  msg_port_main_start (b);
  msg_test_wait_until (NULL, received == 10);
  g_assert_cmpuint (msg_port_main_get_messages_received (b), ==, 10);
  g_assert_cmpuint (msg_port_main_get_bytes_received (b), ==, 10 * MSG_SIZE);
  /* The acknowledgement crosses back. */
  msg_test_wait_until (NULL, msg_port_main_get_buffered_messages (a) == 0 && drains == 1);
  g_assert_cmpuint (msg_port_main_get_buffered_amount (a), ==, 0);
  g_assert_true (msg_port_main_is_writable (a));

  msg_port_main_close (a);
  msg_test_wait_until (NULL, msg_port_main_is_closed (b));
  msg_test_drain (NULL);
  g_object_unref (a);
  g_object_unref (b);
}


/* A socket pair that carries a port as to another process: what @peer
 * receives is recorded. */
typedef struct
{
  MsgPortMain *port;
  MsgPortMain *peer;
  MsgRecorder *rec;
} Carrier;

static void
carrier_init (Carrier *self)
{
  msg_test_socket_ports (&self->port, &self->peer);
  self->rec = msg_recorder_new (self->peer);
  msg_port_main_start (self->peer);
}

/* The port that the first message @self carried brought (a reference). */
static MsgPortMain *
carrier_wait_port (Carrier *self)
{
  msg_test_wait_until (NULL, self->rec->events->len == 1);
  return g_object_ref (msg_message_event_get_port (g_ptr_array_index (self->rec->events, 0), 0));
}

static void
carrier_clear (Carrier *self)
{
  msg_port_main_close (self->port);
  msg_test_wait_until (NULL, self->rec->n_close == 1);
  msg_test_drain (NULL);
  g_clear_pointer (&self->rec, msg_recorder_free);
  g_clear_object (&self->port);
  g_clear_object (&self->peer);
}

static void
test_flow_process_sender_moves (void)
{
  MsgPortMain *a, *b, *moved;
  Carrier carrier;
  guint received = 0;

  g_test_summary ("A sending port that moves to another process (its socket moves) keeps "
                  "what it posted and was not acknowledged, and its mark: the "
                  "acknowledgements reach its new home");

  msg_test_socket_ports (&a, &b);
  msg_port_main_set_high_water_mark (a, 2 * MSG_SIZE);
  for (guint i = 0; i < 3; i++)
    post_sized (a, MSG_SIZE, i);
  g_assert_cmpuint (msg_port_main_get_buffered_messages (a), ==, 3);
  g_assert_false (msg_port_main_is_writable (a));

  /* a goes over another socket, as to another process. */
  carrier_init (&carrier);
  g_assert_true (msg_port_main_post_message (carrier.port, NULL, &a, 1, NULL));
  moved = carrier_wait_port (&carrier);
  g_assert_cmpuint (msg_port_main_get_buffered_messages (moved), ==, 3);
  g_assert_cmpuint (msg_port_main_get_buffered_amount (moved), ==, 3 * MSG_SIZE);
  g_assert_cmpuint (msg_port_main_get_high_water_mark (moved), ==, 2 * MSG_SIZE);
  g_assert_false (msg_port_main_is_writable (moved));

  /* The peer takes them: the acknowledgement comes to the moved port, on
   * the I/O thread, which does not wake this context (the port is not
   * started): look again every few milliseconds. */
  g_signal_connect (b, "message", G_CALLBACK (msg_test_count_message), &received);
  msg_port_main_start (b);
  msg_test_wait_until (NULL, received == 3);
  msg_test_wait_polling (msg_port_main_get_buffered_messages (moved) == 0);
  g_assert_true (msg_port_main_is_writable (moved));

  msg_port_main_close (moved);
  msg_test_wait_until (NULL, msg_port_main_is_closed (b));
  carrier_clear (&carrier);
  g_object_unref (moved);
  g_object_unref (a);
  g_object_unref (b);
}

typedef struct
{
  MsgPortMain *carrier;
  guint        n;
} Leaver;

/* b's handler: takes the first message, then sends b itself away. */
static void
leave_on_first (MsgPortMain     *port,
                MsgMessageEvent *event,
                gpointer         user_data)
{
  Leaver *leaver = user_data;

  if (leaver->n++ == 0)
    g_assert_true (msg_port_main_post_message (leaver->carrier, NULL, &port, 1, NULL));
}

static void
test_flow_process_receiver_moves (void)
{
  MsgPortMain *a, *b, *moved;
  Carrier carrier;
  guint received = 0;
  Leaver leaver = { NULL, 0 };

  g_test_summary ("A receiving port that takes a message and moves to another process "
                  "from its handler: the acknowledgement of that message goes with its "
                  "socket, before anything of its new owner, and the sender's count "
                  "falls to 0 once the rest are taken there");

  msg_test_socket_ports (&a, &b);
  carrier_init (&carrier);
  leaver.carrier = carrier.port;
  for (guint i = 0; i < 3; i++)
    post_sized (a, MSG_SIZE, i);
  g_signal_connect (b, "message", G_CALLBACK (leave_on_first), &leaver);
  msg_port_main_start (b);
  moved = carrier_wait_port (&carrier);
  g_signal_connect (moved, "message", G_CALLBACK (msg_test_count_message), &received);
  msg_port_main_start (moved);
  msg_test_wait_until (NULL, received + leaver.n == 3);
  /* a is not started: nothing wakes this context when it is credited. */
  msg_test_wait_polling (msg_port_main_get_buffered_messages (a) == 0);
  g_assert_cmpuint (msg_port_main_get_buffered_amount (a), ==, 0);

  msg_port_main_close (a);
  msg_test_wait_until (NULL, msg_port_main_is_closed (moved));
  carrier_clear (&carrier);
  g_object_unref (moved);
  g_object_unref (a);
  g_object_unref (b);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/flow/counters", test_flow_counters);
  g_test_add_func ("/flow/mark/same-thread", test_flow_mark_same_thread);
  g_test_add_func ("/flow/mark/low-water", test_flow_mark_low_water);
  g_test_add_func ("/flow/mark/off", test_flow_mark_off);
  g_test_add_func ("/flow/wait-writable/immediate", test_flow_wait_immediate);
  g_test_add_func ("/flow/wait-writable/delayed", test_flow_wait_delayed);
  g_test_add_func ("/flow/wait-writable/cancelled", test_flow_wait_cancelled);
  g_test_add_func ("/flow/wait-writable/closed", test_flow_wait_closed);
  g_test_add_func ("/flow/transfer-sender", test_flow_transfer_sender);
  g_test_add_func ("/flow/cross-thread", test_flow_cross_thread);
  g_test_add_func ("/flow/acknowledge", test_flow_acknowledge);
  g_test_add_func ("/flow/process/acknowledged", test_flow_process_acknowledged);
  g_test_add_func ("/flow/process/sender-moves", test_flow_process_sender_moves);
  g_test_add_func ("/flow/process/receiver-moves", test_flow_process_receiver_moves);

  return g_test_run ();
}
