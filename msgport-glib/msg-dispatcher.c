/* msg-dispatcher.c: one GSource per GMainContext for all its started ports
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Every port started on a context shares that context's dispatcher (the
 * model is GLib's gio/gcontextspecificgroup.c). The dispatcher keeps a list
 * of ready endpoints; an endpoint joins it when its queue goes from empty to
 * non-empty, and the source is armed (an atomic flag) and its context woken
 * only when the list was empty, so a burst of posts from another thread
 * costs one wake-up. The wake-up (an eventfd write) happens after the
 * dispatcher's lock is released, and no context lock is taken: a woken
 * thread finds nothing locked. prepare() and check() read the flag: one
 * load per context per main-loop iteration, whatever the number of ports.
 */

#include "config.h"

#include "msg-endpoint-private.h"

typedef struct
{
  MsgEndpoint *endpoint;  /* (owned) */
  guint        budget;
} MsgBatchItem;

struct _MsgDispatcher
{
  GSource       source;
  GMainContext *context;   /* (owned) */
  GMutex        lock;
  GQueue        ready;     /* protected by @lock: MsgEndpoint.ready_link, each
                            * holding a reference */
  guint         n_bound;   /* protected by dispatchers_lock */
  gint          armed;     /* (atomic): set when @ready becomes non-empty,
                            * cleared when dispatch() takes it */
  GArray       *batch;     /* of MsgBatchItem; only used by dispatch() */
  MsgMessageEvent *spare;  /* (owned) (nullable): a reusable event; only
                            * used by dispatch() */
};

static GMutex dispatchers_lock;
static GHashTable *dispatchers;  /* (owned): GMainContext -> (owned) MsgDispatcher */

/* Puts @endpoint on the ready list. When that arms the source, the
 * context must be woken: at once, or, if @wake_later is not %NULL, by the
 * caller once it has released its endpoint lock (so that the woken thread
 * does not find it locked), through the context returned there. */
void
msg_dispatcher_mark_ready (MsgDispatcher  *self,
                           MsgEndpoint    *endpoint,
                           GMainContext  **wake_later)
{
  gboolean wake = FALSE;

  msg_mutex_lock (&self->lock);
  if (!endpoint->ready)
    {
      endpoint->ready = TRUE;
      msg_endpoint_ref (endpoint);
      g_queue_push_tail_link (&self->ready, &endpoint->ready_link);
      if (self->ready.length == 1)
        {
          g_atomic_int_set (&self->armed, 1);
          wake = TRUE;
        }
    }
  msg_mutex_unlock (&self->lock);

  /* The caller holds a reference that keeps us bound, so alive. */
  if (wake && wake_later != NULL)
    *wake_later = g_main_context_ref (self->context);
  else if (wake)
    g_main_context_wakeup (self->context);
}

/* Called with @endpoint->lock held; the caller holds a reference on
 * @endpoint, so the one dropped here is never the last. */
void
msg_dispatcher_unready (MsgDispatcher *self,
                        MsgEndpoint   *endpoint)
{
  gboolean was_ready;

  msg_mutex_lock (&self->lock);
  was_ready = endpoint->ready;
  if (was_ready)
    {
      g_queue_unlink (&self->ready, &endpoint->ready_link);
      endpoint->ready = FALSE;
    }
  msg_mutex_unlock (&self->lock);

  if (was_ready)
    msg_endpoint_unref (endpoint);
}

/* Delivers at most @budget envelopes of @endpoint, one at a time so that a
 * handler that transfers or closes the port stops the delivery at once. */
static void
msg_dispatcher_dispatch_endpoint (MsgDispatcher *self,
                                  MsgEndpoint   *endpoint,
                                  guint          budget)
{
  MsgPortMain *port;
  gboolean unbound = FALSE;

  msg_mutex_lock (&endpoint->lock);
  if (endpoint->dispatcher != self)
    {
      msg_mutex_unlock (&endpoint->lock);
      return;
    }
  /* A bound endpoint holds a strong reference on its handle. */
  port = g_object_ref (endpoint->port);
  msg_mutex_unlock (&endpoint->lock);

  while (budget-- > 0 && !unbound)
    {
      MsgEnvelope *envelope;
      GList *link;

      msg_mutex_lock (&endpoint->lock);
      /* Transferred, or even transferred and started again here under a
       * new handle: either way this handle emits no more. */
      if (endpoint->dispatcher != self || endpoint->port != port ||
          (link = g_queue_pop_head_link (&endpoint->queue)) == NULL)
        {
          msg_mutex_unlock (&endpoint->lock);
          break;
        }
      envelope = link->data;
      if (envelope->kind == MSG_ENVELOPE_CLOSE)
        {
          /* The last envelope this end will ever see: unbind, and let go
           * of the reference the started port held on itself. */
          unbound = TRUE;
          endpoint->dispatcher = NULL;
          endpoint->close_emitted = TRUE;
          g_clear_error (&endpoint->close_reason);
          endpoint->close_reason = g_steal_pointer (&envelope->reason);
          msg_dispatcher_unready (self, endpoint);
        }
      msg_mutex_unlock (&endpoint->lock);

      msg_port_main_dispatch (port, envelope, &self->spare);

      if (unbound)
        {
          g_object_unref (port);
          msg_dispatcher_release (self);
        }
    }

  if (!unbound)
    {
      msg_mutex_lock (&endpoint->lock);
      if (endpoint->dispatcher == self && endpoint->queue.length > 0)
        msg_endpoint_mark_ready_locked (endpoint, NULL);
      msg_mutex_unlock (&endpoint->lock);
    }

  g_object_unref (port);
}

static gboolean
msg_dispatcher_dispatch (GSource     *source,
                         GSourceFunc  callback,
                         gpointer     user_data)
{
  MsgDispatcher *self = (MsgDispatcher *) source;
  GArray *batch = self->batch;
  GList *link;

  /* What is ready now is this dispatch's work; what becomes ready while it
   * runs (handlers posting to ports on this context, say) is the next
   * one's, so that other sources get their turn. */
  msg_mutex_lock (&self->lock);
  while ((link = g_queue_pop_head_link (&self->ready)) != NULL)
    {
      MsgBatchItem item = { link->data, 0 };

      item.endpoint->ready = FALSE;
      g_array_append_val (batch, item);
    }
  g_atomic_int_set (&self->armed, 0);
  msg_mutex_unlock (&self->lock);

  for (guint i = 0; i < batch->len; i++)
    {
      MsgBatchItem *item = &g_array_index (batch, MsgBatchItem, i);

      msg_mutex_lock (&item->endpoint->lock);
      item->budget = item->endpoint->queue.length;
      msg_mutex_unlock (&item->endpoint->lock);
    }

  for (guint i = 0; i < batch->len; i++)
    {
      MsgBatchItem *item = &g_array_index (batch, MsgBatchItem, i);

      msg_dispatcher_dispatch_endpoint (self, item->endpoint, item->budget);
    }

  for (guint i = 0; i < batch->len; i++)
    msg_endpoint_unref (g_array_index (batch, MsgBatchItem, i).endpoint);
  g_array_set_size (batch, 0);

  return G_SOURCE_CONTINUE;
}

static void
msg_dispatcher_finalize (GSource *source)
{
  MsgDispatcher *self = (MsgDispatcher *) source;

  g_assert (self->ready.length == 0);
  g_clear_pointer (&self->batch, g_array_unref);
  g_clear_object (&self->spare);
  g_clear_pointer (&self->context, g_main_context_unref);
  g_mutex_clear (&self->lock);
}

static gboolean
msg_dispatcher_prepare (GSource *source,
                        gint    *timeout)
{
  *timeout = -1;
  return g_atomic_int_get (&((MsgDispatcher *) source)->armed);
}

static gboolean
msg_dispatcher_check (GSource *source)
{
  return g_atomic_int_get (&((MsgDispatcher *) source)->armed);
}

static GSourceFuncs msg_dispatcher_funcs = {
  .prepare = msg_dispatcher_prepare,
  .check = msg_dispatcher_check,
  .dispatch = msg_dispatcher_dispatch,
  .finalize = msg_dispatcher_finalize,
};

/* Returns the dispatcher of @context, creating it if needed; every call is
 * balanced by msg_dispatcher_release(). */
MsgDispatcher *
msg_dispatcher_acquire (GMainContext *context)
{
  MsgDispatcher *self;

  msg_mutex_lock (&dispatchers_lock);
  if (dispatchers == NULL)
    dispatchers = g_hash_table_new (NULL, NULL);

  self = g_hash_table_lookup (dispatchers, context);
  if (self == NULL)
    {
      GSource *source = g_source_new (&msg_dispatcher_funcs, sizeof (MsgDispatcher));

      self = (MsgDispatcher *) source;
      self->context = g_main_context_ref (context);
      g_mutex_init (&self->lock);
      g_queue_init (&self->ready);
      self->batch = g_array_new (FALSE, FALSE, sizeof (MsgBatchItem));
      g_source_set_static_name (source, "MsgPortMain dispatcher");
      g_source_set_priority (source, G_PRIORITY_DEFAULT);
      g_source_attach (source, context);
      g_hash_table_insert (dispatchers, context, self);
    }
  self->n_bound++;
  msg_mutex_unlock (&dispatchers_lock);

  return self;
}

void
msg_dispatcher_release (MsgDispatcher *self)
{
  gboolean last;

  msg_mutex_lock (&dispatchers_lock);
  g_assert (self->n_bound > 0);
  last = --self->n_bound == 0;
  if (last)
    g_hash_table_remove (dispatchers, self->context);
  msg_mutex_unlock (&dispatchers_lock);

  if (last)
    {
      /* Finalizing the source drops its reference on the context, which
       * GLib still locks after finalize() returns: keep the context alive
       * until it is done. */
      GMainContext *context = g_main_context_ref (self->context);

      g_source_destroy (&self->source);
      g_source_unref (&self->source);
      g_main_context_unref (context);
    }
}
