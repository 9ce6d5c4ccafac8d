/* msg-request.c: request/reply on top of ports
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A helper made of the public API only: a request is a message posted
 * with one fresh port, the reply port, as its transfer list; the requester
 * keeps the other end of that channel, started in its thread-default
 * context, and completes with the first message that comes back on it.
 * (Its only private call is msg_variant_unref(), which tells
 * ThreadSanitizer about the last unref of a message two threads shared.)
 */

#include "config.h"

#include "msg-channel-main.h"
#include "msg-lock-private.h"
#include "msg-message-event.h"
#include "msg-port-error.h"
#include "msg-port-main.h"

/* Everything here runs in the thread-default context of the caller of
 * msg_port_main_request_async(): the reply port is started there, and the
 * timeout and cancellable sources are attached there, so a request needs
 * no lock. */
typedef struct
{
  GTask       *task;          /* (owned) (nullable): until completed */
  MsgPortMain *port;          /* (owned) (nullable): our end of the reply
                               * channel, once it is made */
  GSource     *timeout;       /* (owned) (nullable) */
  GSource     *cancel;        /* (owned) (nullable) */
  gulong       message_id;
  gulong       close_id;
} Request;

static void
request_free (Request *request)
{
  g_assert (request->task == NULL);
  g_clear_object (&request->port);
  g_free (request);
}

static void
clear_source (GSource **source)
{
  if (*source != NULL)
    {
      g_source_destroy (*source);
      g_clear_pointer (source, g_source_unref);
    }
}

/* Completes @request once: with @reply (transfer full, nullable) if
 * @error is %NULL, else with @error (taken). Closes the reply port, so a
 * responder that has not answered yet sees it closed. */
static void
request_complete (Request  *request,
                  GVariant *reply,
                  GError   *error)
{
  GTask *task = g_steal_pointer (&request->task);

  g_assert (task != NULL);

  clear_source (&request->timeout);
  clear_source (&request->cancel);
  if (request->port != NULL)
    {
      g_clear_signal_handler (&request->message_id, request->port);
      g_clear_signal_handler (&request->close_id, request->port);
      msg_port_main_close (request->port);
    }

  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, reply, reply != NULL ? (GDestroyNotify) msg_variant_unref : NULL);

  /* The task owns @request: it goes with the task. */
  g_object_unref (task);
}

static void
request_on_message (MsgPortMain     *port,
                    MsgMessageEvent *event,
                    gpointer         user_data)
{
  Request *request = user_data;
  GVariant *data = msg_message_event_get_data (event);

  request_complete (request, data != NULL ? g_variant_ref (data) : NULL, NULL);
}

static void
request_on_close (MsgPortMain *port,
                  gpointer     user_data)
{
  Request *request = user_data;
  GError *reason = msg_port_main_get_close_reason (port);
  GError *error;

  error = g_error_new (MSG_PORT_ERROR, MSG_PORT_ERROR_NO_REPLY,
                       "The request got no reply: %s",
                       reason != NULL ? reason->message : "the reply port was closed");
  g_clear_error (&reason);
  request_complete (request, NULL, error);
}

static gboolean
request_on_timeout (gpointer user_data)
{
  Request *request = user_data;

  request_complete (request, NULL,
                    g_error_new_literal (G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                                         "The request timed out"));
  return G_SOURCE_REMOVE;
}

static gboolean
request_on_cancelled (GCancellable *cancellable,
                      gpointer      user_data)
{
  Request *request = user_data;
  GError *error = NULL;

  g_cancellable_set_error_if_cancelled (cancellable, &error);
  request_complete (request, NULL, error);
  return G_SOURCE_REMOVE;
}

/**
 * msg_port_main_request_async:
 * @self: a #MsgPortMain
 * @message: (nullable): the request; a floating reference is sunk
 * @timeout_ms: how long to wait for the reply, in milliseconds, or -1 to
 *   wait for as long as the channel lasts
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called with the result
 * @user_data: data for @callback
 *
 * Posts @message on @self with a fresh port, the reply port, as its only
 * transferred port, and waits for the answer that comes back on it: the
 * responder answers with msg_message_event_reply() in its
 * #MsgPortMain::message handler (or later, if it keeps the event), which
 * posts the reply on the reply port and closes it. It works the same
 * between threads and between processes.
 *
 * The request keeps the other end of the reply channel, started in the
 * thread-default #GMainContext of the calling thread: @callback is called
 * there, once, when the reply arrives, or with an error:
 * %MSG_PORT_ERROR_NO_REPLY if the reply port was closed or dropped
 * without an answer (or the channel of @self ended before the request got
 * to the responder), %G_IO_ERROR_TIMED_OUT after @timeout_ms, and
 * %G_IO_ERROR_CANCELLED if @cancellable is cancelled. A request that
 * timed out or was cancelled closes its end of the reply channel, so the
 * responder sees its reply port closed (msg_message_event_reply() then
 * fails with %MSG_PORT_ERROR_CLOSED).
 *
 * Posting can fail as msg_port_main_post_message() does
 * (%MSG_PORT_ERROR_TOO_LARGE to another process, say): then @callback gets
 * that error. A request on a closed or neutered port fails with
 * %MSG_PORT_ERROR_NO_REPLY. Other messages on @self are not involved:
 * requests and plain messages may be mixed on one channel, and any number
 * of requests may be pending at once, each with its own reply port.
 *
 * From GJS, `Gio._promisify (Msg.PortMain.prototype, 'request_async')`
 * makes it awaitable.
 *
 * Since: 1.2
 */
void
msg_port_main_request_async (MsgPortMain         *self,
                             GVariant            *message,
                             gint                 timeout_ms,
                             GCancellable        *cancellable,
                             GAsyncReadyCallback  callback,
                             gpointer             user_data)
{
  g_autoptr(MsgChannelMain) channel = NULL;
  g_autoptr(GError) error = NULL;
  GMainContext *context;
  MsgPortMain *reply_port;
  Request *request;
  GTask *task;

  g_return_if_fail (MSG_IS_PORT_MAIN (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  if (message != NULL)
    g_variant_ref_sink (message);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, msg_port_main_request_async);
  g_task_set_name (task, "[msgport-glib] request");

  if (timeout_ms < -1)
    {
      g_task_return_new_error (task, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_ARGUMENT,
                               "The timeout of a request must be -1 or more, not %d",
                               timeout_ms);
      g_object_unref (task);
      g_clear_pointer (&message, msg_variant_unref);
      return;
    }

  request = g_new0 (Request, 1);
  request->task = task;
  g_task_set_task_data (task, request, (GDestroyNotify) request_free);

  if (msg_port_main_is_closed (self) || msg_port_main_is_neutered (self))
    {
      g_clear_pointer (&message, msg_variant_unref);
      request_complete (request, NULL,
                        g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_NO_REPLY,
                                             "The request got no reply: its port is closed"));
      return;
    }

  channel = msg_channel_main_new ();
  request->port = g_object_ref (msg_channel_main_get_port1 (channel));
  reply_port = msg_channel_main_get_port2 (channel);

  if (!msg_port_main_post_message (self, message, &reply_port, 1, &error))
    {
      g_clear_pointer (&message, msg_variant_unref);
      request_complete (request, NULL, g_steal_pointer (&error));
      return;
    }
  g_clear_pointer (&message, msg_variant_unref);

  /* Started after the post: a post that succeeded on a port that closed
   * meanwhile dropped the reply port, so ours emits ::close, which is
   * NO_REPLY. */
  request->message_id = g_signal_connect (request->port, "message",
                                          G_CALLBACK (request_on_message), request);
  request->close_id = g_signal_connect (request->port, "close",
                                        G_CALLBACK (request_on_close), request);
  msg_port_main_start (request->port);

  context = g_main_context_ref_thread_default ();
  if (timeout_ms >= 0)
    {
      request->timeout = g_timeout_source_new (timeout_ms);
      g_source_set_callback (request->timeout, request_on_timeout, request, NULL);
      g_source_set_static_name (request->timeout, "[msgport-glib] request timeout");
      g_source_attach (request->timeout, context);
    }
  if (cancellable != NULL)
    {
      request->cancel = g_cancellable_source_new (cancellable);
      g_source_set_callback (request->cancel, G_SOURCE_FUNC (request_on_cancelled),
                             request, NULL);
      g_source_set_static_name (request->cancel, "[msgport-glib] request cancelled");
      g_source_attach (request->cancel, context);
    }
  g_main_context_unref (context);
}

/**
 * msg_port_main_request_finish:
 * @self: a #MsgPortMain
 * @result: the #GAsyncResult given to the callback
 * @error: return location for a #GError, or %NULL
 *
 * Finishes msg_port_main_request_async().
 *
 * A responder may answer with a %NULL message: then this returns %NULL
 * without setting @error. Check @error, not the return value, to tell a
 * failure from such a reply.
 *
 * Returns: (transfer full) (nullable): the reply, or %NULL if the reply
 *   was a %NULL message or on error
 * Since: 1.2
 */
GVariant *
msg_port_main_request_finish (MsgPortMain   *self,
                              GAsyncResult  *result,
                              GError       **error)
{
  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == msg_port_main_request_async, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/**
 * msg_message_event_reply:
 * @self: a #MsgMessageEvent of a request (see msg_port_main_request_async())
 * @reply: (nullable): the reply; a floating reference is sunk
 * @error: return location for a #GError, or %NULL
 *
 * Answers the request @self carries: posts @reply on its reply port (the
 * one port of the event) and closes that port. A request gets one answer.
 *
 * Fails with %MSG_PORT_ERROR_INVALID_ARGUMENT if @self does not carry
 * exactly one port (it is not a request), and with %MSG_PORT_ERROR_CLOSED
 * if the request was already answered, or the requester no longer waits
 * (it timed out, was cancelled or went away), or the reply port was
 * transferred or closed. A requester that gives up while the reply is on
 * its way (between threads or processes) is not seen in time: the reply
 * is then posted, returns %TRUE, and is dropped unread. Like any message,
 * the reply may fail to cross to
 * another process (%MSG_PORT_ERROR_TOO_LARGE); the reply port then stays
 * open, so another reply can be tried.
 *
 * The reply port is an ordinary port: a responder may also take it from
 * the event (msg_message_event_get_port()) and transfer it, to a worker
 * thread say, which answers with msg_port_main_post() and
 * msg_port_main_close().
 *
 * Returns: %TRUE if the reply was posted
 * Since: 1.2
 */
gboolean
msg_message_event_reply (MsgMessageEvent  *self,
                         GVariant         *reply,
                         GError          **error)
{
  MsgPortMain *port;
  GError *reason;
  gboolean ok;

  g_return_val_if_fail (MSG_IS_MESSAGE_EVENT (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (reply != NULL)
    g_variant_ref_sink (reply);

  if (msg_message_event_get_n_ports (self) != 1)
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_ARGUMENT,
                   "This message is not a request: it carries %u ports, "
                   "where a request carries its reply port only",
                   msg_message_event_get_n_ports (self));
      g_clear_pointer (&reply, msg_variant_unref);
      return FALSE;
    }

  port = msg_message_event_get_port (self, 0);
  if (msg_port_main_is_neutered (port))
    {
      g_set_error_literal (error, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED,
                           "The reply port of this request was transferred");
      g_clear_pointer (&reply, msg_variant_unref);
      return FALSE;
    }
  if (msg_port_main_is_closed (port))
    {
      reason = msg_port_main_get_close_reason (port);
      /* Closed here: answered (or closed by the responder). */
      if (g_error_matches (reason, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED))
        g_set_error_literal (error, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED,
                             "This request was already answered: "
                             "its reply port is closed");
      else
        g_set_error_literal (error, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED,
                             "The requester no longer waits for a reply "
                             "(it timed out, was cancelled or went away)");
      g_clear_error (&reason);
      g_clear_pointer (&reply, msg_variant_unref);
      return FALSE;
    }

  ok = msg_port_main_post (port, reply, error);
  g_clear_pointer (&reply, msg_variant_unref);
  if (ok)
    msg_port_main_close (port);

  return ok;
}
