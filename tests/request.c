/* request.c: msg_port_main_request_async() and msg_message_event_reply()
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>

#include "msg-test-utils.h"

/* The result of one request. */
typedef struct
{
  gboolean  done;
  guint     n_calls;
  GVariant *reply;   /* (owned) (nullable) */
  GError   *error;   /* (owned) (nullable) */
} Result;

static void
result_clear (Result *result)
{
  g_clear_pointer (&result->reply, g_variant_unref);
  g_clear_error (&result->error);
}

static void
request_done (GObject      *source,
              GAsyncResult *res,
              gpointer      user_data)
{
  Result *result = user_data;

  result->n_calls++;
  result->reply = msg_port_main_request_finish (MSG_PORT_MAIN (source), res, &result->error);
  result->done = TRUE;
}

/* A responder: answers each request with its string doubled, or with what
 * the request says ("ignore": nothing, the event and its port are dropped;
 * "keep": the event is kept in @kept to answer later; "null": a NULL
 * reply; "twice": two replies, the second must fail). */
typedef struct
{
  GPtrArray *kept;      /* (element-type MsgMessageEvent) (owned) */
  GThread   *thread;
  guint      n_requests;
  GError    *second;    /* (owned) (nullable): the second reply of "twice" */
} Responder;

static void
responder_on_message (MsgPortMain     *port,
                      MsgMessageEvent *event,
                      gpointer         user_data)
{
  Responder *responder = user_data;
  GVariant *data = msg_message_event_get_data (event);
  const char *text = g_variant_get_string (data, NULL);
  GError *error = NULL;

  responder->thread = g_thread_self ();
  responder->n_requests++;

  if (g_str_equal (text, "ignore"))
    return;
  if (g_str_equal (text, "keep"))
    {
      g_ptr_array_add (responder->kept, g_object_ref (event));
      return;
    }
  if (g_str_equal (text, "null"))
    {
      g_assert_true (msg_message_event_reply (event, NULL, &error));
      g_assert_no_error (error);
      return;
    }

  {
    char *doubled = g_strconcat (text, text, NULL);

    g_assert_true (msg_message_event_reply (event, g_variant_new_take_string (doubled), &error));
    g_assert_no_error (error);
  }

  if (g_str_equal (text, "twice"))
    {
      g_assert_false (msg_message_event_reply (event, g_variant_new_string ("again"),
                                               &responder->second));
    }
}

static Responder *
responder_new (MsgPortMain *port)
{
  Responder *responder = g_new0 (Responder, 1);

  responder->kept = g_ptr_array_new_with_free_func (g_object_unref);
  g_signal_connect (port, "message", G_CALLBACK (responder_on_message), responder);
  return responder;
}

static void
responder_free (Responder *responder)
{
  g_ptr_array_unref (responder->kept);
  g_clear_error (&responder->second);
  g_free (responder);
}

static void
test_request_same_thread (void)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  MsgPortMain *requester = msg_channel_main_get_port1 (channel);
  MsgPortMain *responder_port = msg_channel_main_get_port2 (channel);
  Responder *responder = responder_new (responder_port);
  Result results[3] = { { 0, }, };

  g_test_summary ("Requests in one thread get their own replies, each once; a NULL reply "
                  "finishes with NULL and no error");

  msg_port_main_start (responder_port);
  msg_port_main_request_async (requester, g_variant_new_string ("ab"), -1, NULL,
                               request_done, &results[0]);
  msg_port_main_request_async (requester, g_variant_new_string ("cd"), 5000, NULL,
                               request_done, &results[1]);
  msg_port_main_request_async (requester, g_variant_new_string ("null"), -1, NULL,
                               request_done, &results[2]);
  /* Nothing completes from inside request_async(). */
  g_assert_false (results[0].done);

  msg_test_wait_until (NULL, results[0].done && results[1].done && results[2].done);
  g_assert_no_error (results[0].error);
  g_assert_cmpstr (g_variant_get_string (results[0].reply, NULL), ==, "abab");
  g_assert_no_error (results[1].error);
  g_assert_cmpstr (g_variant_get_string (results[1].reply, NULL), ==, "cdcd");
  g_assert_no_error (results[2].error);
  g_assert_null (results[2].reply);
  g_assert_cmpuint (responder->n_requests, ==, 3);

  /* The requester's port works on, for plain messages too. */
  msg_test_drain (NULL);
  for (guint i = 0; i < G_N_ELEMENTS (results); i++)
    {
      g_assert_cmpuint (results[i].n_calls, ==, 1);
      result_clear (&results[i]);
    }
  g_assert_false (msg_port_main_is_closed (requester));

  msg_port_main_close (requester);
  msg_test_drain (NULL);
  responder_free (responder);
  g_object_unref (channel);
}

/* Cross thread: the responder runs in a worker. */
typedef struct
{
  MsgPortMain *port;  /* (owned) */
  Responder   *responder;
} WorkerSide;

static gboolean
worker_start (gpointer user_data)
{
  WorkerSide *side = user_data;

  side->responder = responder_new (side->port);
  msg_port_main_start (side->port);
  return G_SOURCE_REMOVE;
}

static gboolean
worker_stop (gpointer user_data)
{
  WorkerSide *side = user_data;

  msg_port_main_close (side->port);
  return G_SOURCE_REMOVE;
}

static void
test_request_threads (void)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  MsgPortMain *requester = msg_channel_main_get_port1 (channel);
  MsgTestWorker *worker = msg_test_worker_new ("responder");
  WorkerSide side = { g_object_ref (msg_channel_main_get_port2 (channel)), NULL };
  Result results[50] = { { 0, }, };
  gboolean all_done = FALSE;

  g_test_summary ("Requests answered by a responder in another thread complete in the "
                  "requester's context, each with its own reply");

  msg_test_worker_invoke (worker, worker_start, &side);
  for (guint i = 0; i < G_N_ELEMENTS (results); i++)
    msg_port_main_request_async (requester, g_variant_new_take_string (g_strdup_printf ("%u.", i)),
                                 -1, NULL, request_done, &results[i]);

  while (!all_done)
    {
      msg_test_wait_until (NULL, results[G_N_ELEMENTS (results) - 1].done);
      all_done = TRUE;
      for (guint i = 0; i < G_N_ELEMENTS (results); i++)
        all_done &= results[i].done;
    }

  for (guint i = 0; i < G_N_ELEMENTS (results); i++)
    {
      char *expected = g_strdup_printf ("%u.%u.", i, i);

      g_assert_no_error (results[i].error);
      g_assert_cmpstr (g_variant_get_string (results[i].reply, NULL), ==, expected);
      g_assert_cmpuint (results[i].n_calls, ==, 1);
      g_free (expected);
      result_clear (&results[i]);
    }
  g_assert_true (side.responder->thread != g_thread_self ());

  msg_test_worker_invoke (worker, worker_stop, &side);
  msg_test_worker_free (worker);
  responder_free (side.responder);
  g_object_unref (side.port);
  g_object_unref (channel);
}

/* A request made in a worker thread completes in the worker's context. */
typedef struct
{
  MsgPortMain *requester;  /* (owned) */
  Result       result;
  GThread     *thread;     /* where the callback ran */
  gint         done;       /* (atomic) */
} WorkerRequest;

static void
worker_request_done (GObject      *source,
                     GAsyncResult *res,
                     gpointer      user_data)
{
  WorkerRequest *request = user_data;

  request_done (source, res, &request->result);
  request->thread = g_thread_self ();
  g_atomic_int_set (&request->done, TRUE);
  g_main_context_wakeup (NULL);
}

static gboolean
worker_make_request (gpointer user_data)
{
  WorkerRequest *request = user_data;

  msg_port_main_request_async (request->requester, g_variant_new_string ("w"), 60000, NULL,
                               worker_request_done, request);
  return G_SOURCE_REMOVE;
}

static void
test_request_from_worker (void)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  MsgPortMain *responder_port = msg_channel_main_get_port2 (channel);
  Responder *responder = responder_new (responder_port);
  MsgTestWorker *worker = msg_test_worker_new ("requester");
  WorkerRequest request = { g_object_ref (msg_channel_main_get_port1 (channel)), { 0, }, NULL, 0 };

  g_test_summary ("A request made in a worker thread completes there, in the worker's "
                  "thread-default context, answered from the main thread");

  msg_port_main_start (responder_port);
  msg_test_worker_invoke (worker, worker_make_request, &request);
  msg_test_wait_until (NULL, g_atomic_int_get (&request.done));
  msg_test_worker_free (worker);

  g_assert_no_error (request.result.error);
  g_assert_cmpstr (g_variant_get_string (request.result.reply, NULL), ==, "ww");
  g_assert_true (request.thread != g_thread_self ());
  g_assert_true (responder->thread == g_thread_self ());
  result_clear (&request.result);

  msg_port_main_close (responder_port);
  msg_test_drain (NULL);
  g_object_unref (request.requester);
  responder_free (responder);
  g_object_unref (channel);
}

static void
test_request_timeout (void)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  MsgPortMain *requester = msg_channel_main_get_port1 (channel);
  MsgPortMain *responder_port = msg_channel_main_get_port2 (channel);
  Responder *responder = responder_new (responder_port);
  MsgMessageEvent *event;
  MsgPortMain *reply_port;
  Result result = { 0, };
  GError *error = NULL;

  g_test_summary ("A request that gets no reply in time fails with G_IO_ERROR_TIMED_OUT "
                  "and closes its reply port: the late reply fails with CLOSED");

  msg_port_main_start (responder_port);
  msg_port_main_request_async (requester, g_variant_new_string ("keep"), 10, NULL,
                               request_done, &result);
  msg_test_wait_until (NULL, result.done);
  g_assert_error (result.error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_assert_null (result.reply);
  g_assert_cmpuint (responder->kept->len, ==, 1);

  /* The responder sees its reply port closed. */
  event = g_ptr_array_index (responder->kept, 0);
  reply_port = msg_message_event_get_port (event, 0);
  msg_test_wait_until (NULL, msg_port_main_is_closed (reply_port));
  g_assert_false (msg_message_event_reply (event, g_variant_new_string ("late"), &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED);
  g_assert_nonnull (strstr (error->message, "no longer waits"));
  g_clear_error (&error);

  msg_test_drain (NULL);
  g_assert_cmpuint (result.n_calls, ==, 1);
  result_clear (&result);

  msg_port_main_close (requester);
  msg_test_drain (NULL);
  responder_free (responder);
  g_object_unref (channel);
}

static void
test_request_cancel (void)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  MsgPortMain *requester = msg_channel_main_get_port1 (channel);
  MsgPortMain *responder_port = msg_channel_main_get_port2 (channel);
  Responder *responder = responder_new (responder_port);
  GCancellable *cancellable = g_cancellable_new ();
  MsgMessageEvent *event;
  Result result = { 0, };
  Result precancelled = { 0, };
  GError *error = NULL;

  g_test_summary ("A cancelled request fails with G_IO_ERROR_CANCELLED, once, and closes "
                  "its reply port; so does one cancelled before it was made");

  msg_port_main_start (responder_port);
  msg_port_main_request_async (requester, g_variant_new_string ("keep"), 60000, cancellable,
                               request_done, &result);
  msg_test_wait_until (NULL, responder->kept->len == 1);
  g_assert_false (result.done);
  g_cancellable_cancel (cancellable);
  msg_test_wait_until (NULL, result.done);
  g_assert_error (result.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);

  event = g_ptr_array_index (responder->kept, 0);
  msg_test_wait_until (NULL, msg_port_main_is_closed (msg_message_event_get_port (event, 0)));
  g_assert_false (msg_message_event_reply (event, g_variant_new_string ("late"), &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED);
  g_clear_error (&error);

  msg_port_main_request_async (requester, g_variant_new_string ("ab"), -1, cancellable,
                               request_done, &precancelled);
  msg_test_wait_until (NULL, precancelled.done);
  g_assert_error (precancelled.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);

  msg_test_drain (NULL);
  g_assert_cmpuint (result.n_calls, ==, 1);
  g_assert_cmpuint (precancelled.n_calls, ==, 1);
  result_clear (&result);
  result_clear (&precancelled);

  msg_port_main_close (requester);
  msg_test_drain (NULL);
  g_object_unref (cancellable);
  responder_free (responder);
  g_object_unref (channel);
}

static void
test_request_no_reply (void)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  MsgPortMain *requester = msg_channel_main_get_port1 (channel);
  MsgPortMain *responder_port = msg_channel_main_get_port2 (channel);
  Responder *responder = responder_new (responder_port);
  Result dropped = { 0, };
  Result closed = { 0, };
  Result on_closed = { 0, };

  g_test_summary ("A responder that drops the reply port without answering fails the "
                  "request with NO_REPLY; so does the end of the channel, and a request "
                  "on a closed port");

  msg_port_main_start (responder_port);
  msg_port_main_request_async (requester, g_variant_new_string ("ignore"), -1, NULL,
                               request_done, &dropped);
  msg_test_wait_until (NULL, dropped.done);
  g_assert_error (dropped.error, MSG_PORT_ERROR, MSG_PORT_ERROR_NO_REPLY);

  /* Never delivered: a responder port that is not started is closed
   * with the request queued on it, which drops the request. */
  {
    MsgChannelMain *unstarted = msg_channel_main_new ();

    msg_port_main_request_async (msg_channel_main_get_port1 (unstarted),
                                 g_variant_new_string ("ab"), -1, NULL, request_done, &closed);
    msg_port_main_close (msg_channel_main_get_port2 (unstarted));
    msg_test_wait_until (NULL, closed.done);
    g_assert_error (closed.error, MSG_PORT_ERROR, MSG_PORT_ERROR_NO_REPLY);
    g_object_unref (unstarted);
  }

  /* The channel ends. */
  msg_port_main_close (responder_port);

  msg_test_wait_until (NULL, msg_port_main_is_closed (requester));
  msg_port_main_request_async (requester, g_variant_new_string ("ab"), -1, NULL,
                               request_done, &on_closed);
  msg_test_wait_until (NULL, on_closed.done);
  g_assert_error (on_closed.error, MSG_PORT_ERROR, MSG_PORT_ERROR_NO_REPLY);

  msg_test_drain (NULL);
  g_assert_cmpuint (dropped.n_calls + closed.n_calls + on_closed.n_calls, ==, 3);
  result_clear (&dropped);
  result_clear (&closed);
  result_clear (&on_closed);
  responder_free (responder);
  g_object_unref (channel);
}

static void
on_plain_message (MsgPortMain     *port,
                  MsgMessageEvent *event,
                  gpointer         user_data)
{
  GError **error = user_data;

  g_assert_false (msg_message_event_reply (event, g_variant_new_string ("x"), error));
}

static void
test_reply_misuse (void)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  MsgChannelMain *other = msg_channel_main_new ();
  MsgPortMain *requester = msg_channel_main_get_port1 (channel);
  MsgPortMain *responder_port = msg_channel_main_get_port2 (channel);
  MsgPortMain *two[2] = { msg_channel_main_get_port1 (other), msg_channel_main_get_port2 (other) };
  Responder *responder = responder_new (responder_port);
  Result twice = { 0, };
  GError *error = NULL;
  GError *plain_error = NULL;
  gulong id;

  g_test_summary ("A second reply fails with CLOSED and the request completes once with "
                  "the first; replying to a message that is not a request (no port, or "
                  "two) fails with INVALID_ARGUMENT");

  msg_port_main_start (responder_port);
  msg_port_main_request_async (requester, g_variant_new_string ("twice"), -1, NULL,
                               request_done, &twice);
  msg_test_wait_until (NULL, twice.done);
  g_assert_no_error (twice.error);
  g_assert_cmpstr (g_variant_get_string (twice.reply, NULL), ==, "twicetwice");
  g_assert_error (responder->second, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED);
  g_assert_nonnull (strstr (responder->second->message, "already answered"));
  msg_test_drain (NULL);
  g_assert_cmpuint (twice.n_calls, ==, 1);
  result_clear (&twice);

  /* Not requests. */
  g_signal_handlers_disconnect_by_data (responder_port, responder);
  id = g_signal_connect (responder_port, "message", G_CALLBACK (on_plain_message), &plain_error);
  msg_port_main_post (requester, g_variant_new_string ("plain"), &error);
  g_assert_no_error (error);
  msg_test_wait_until (NULL, plain_error != NULL);
  g_assert_error (plain_error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&plain_error);

  msg_port_main_post_message (requester, g_variant_new_string ("two"), two, 2, &error);
  g_assert_no_error (error);
  msg_test_wait_until (NULL, plain_error != NULL);
  g_assert_error (plain_error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&plain_error);
  g_signal_handler_disconnect (responder_port, id);

  /* A bad timeout. */
  memset (&twice, 0, sizeof twice);
  msg_port_main_request_async (requester, NULL, -2, NULL, request_done, &twice);
  msg_test_wait_until (NULL, twice.done);
  g_assert_error (twice.error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_ARGUMENT);
  result_clear (&twice);

  msg_port_main_close (requester);
  msg_test_drain (NULL);
  responder_free (responder);
  g_object_unref (other);
  g_object_unref (channel);
}

/* Across processes: tests/process-child.c "respond" answers each request
 * with its string doubled, and does not answer "ignore". */
static void
test_request_process (void)
{
  MsgTestChild child = { 0, };
  MsgPortMain *port;
  Result results[20] = { { 0, }, };
  Result ignored = { 0, };

  g_test_summary ("Requests to a responder in another process get their replies; one "
                  "whose reply port the child drops fails with NO_REPLY");

  msg_test_child_spawn (&child, "process-child", "respond", 0);
  port = g_object_ref (child.port);
  msg_port_main_start (port);

  msg_port_main_request_async (port, g_variant_new_string ("ignore"), -1, NULL,
                               request_done, &ignored);
  for (guint i = 0; i < G_N_ELEMENTS (results); i++)
    msg_port_main_request_async (port, g_variant_new_take_string (g_strdup_printf ("<%u>", i)),
                                 -1, NULL, request_done, &results[i]);
  msg_test_wait_until (NULL, ignored.done && results[G_N_ELEMENTS (results) - 1].done);
  g_assert_error (ignored.error, MSG_PORT_ERROR, MSG_PORT_ERROR_NO_REPLY);
  for (guint i = 0; i < G_N_ELEMENTS (results); i++)
    {
      char *expected = g_strdup_printf ("<%u><%u>", i, i);

      msg_test_wait_until (NULL, results[i].done);
      g_assert_no_error (results[i].error);
      g_assert_cmpstr (g_variant_get_string (results[i].reply, NULL), ==, expected);
      g_free (expected);
      result_clear (&results[i]);
    }
  result_clear (&ignored);

  msg_port_main_close (port);
  msg_test_child_wait (&child, 0);

  g_object_unref (port);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/request/same-thread", test_request_same_thread);
  g_test_add_func ("/request/threads", test_request_threads);
  g_test_add_func ("/request/from-worker", test_request_from_worker);
  g_test_add_func ("/request/timeout", test_request_timeout);
  g_test_add_func ("/request/cancel", test_request_cancel);
  g_test_add_func ("/request/no-reply", test_request_no_reply);
  g_test_add_func ("/request/reply-misuse", test_reply_misuse);
  g_test_add_func ("/request/process", test_request_process);

  return g_test_run ();
}
