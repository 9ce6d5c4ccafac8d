/* msg-endpoint.c: entangled endpoints and their queues
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Over 1,000 lines, on purpose: envelopes, items, queues, endpoints and
 * their flow control are one unit. An envelope owns endpoints, an endpoint
 * owns a queue of items, some of which are envelopes, and freeing any of
 * them frees the others: in separate files they would call each other in
 * a circle. The dispatcher, the port and the transport stand on it and
 * are reached only through the interfaces of msg-endpoint-private.h
 * (MsgReadyList, MsgSink, MsgReadWatch).
 */

#include "config.h"

#include <string.h>

#include "msg-endpoint-private.h"
#include "msg-port-error.h"

#ifdef MSG_HAVE_TSAN
__thread guint msg_tsan_glib_depth;
/* msg_tsan_variant_lock is defined in wire/msg-wire.c, which the codec's
 * own tests and fuzz targets build alone. */
#endif

/* Envelopes ------------------------------------------------------------- */

MsgEnvelope *
msg_envelope_new_message (GVariant *data,
                          guint     n_ports)
{
  MsgEnvelope *envelope;

  envelope = g_malloc (sizeof (MsgEnvelope) + n_ports * sizeof (MsgEndpoint *));
  envelope->kind = MSG_ENVELOPE_MESSAGE;
  envelope->data = data;
  envelope->unchecked = NULL;
  envelope->reason = NULL;
  envelope->fd_list = NULL;
  envelope->n_ports = n_ports;
  for (guint i = 0; i < n_ports; i++)
    envelope->ports[i] = NULL;

  return envelope;
}

MsgEnvelope *
msg_envelope_new_close (GError *reason)
{
  MsgEnvelope *envelope = msg_envelope_new_message (NULL, 0);

  envelope->kind = MSG_ENVELOPE_CLOSE;
  envelope->reason = reason;

  return envelope;
}

/* Frees @envelope; endpoints still in it were never adopted by a receiver,
 * so they are discarded, which tells their peers. Must not be called with
 * any endpoint lock held. */
void
msg_envelope_free (MsgEnvelope *envelope)
{
  if (envelope == NULL)
    return;

  g_clear_pointer (&envelope->data, g_variant_unref);
  if (envelope->unchecked != NULL)
    envelope->unchecked->funcs->free (g_steal_pointer (&envelope->unchecked));
  g_clear_error (&envelope->reason);
  /* Its descriptors were never handed to a receiver: closed here. */
  g_clear_object (&envelope->fd_list);
  for (guint i = 0; i < envelope->n_ports; i++)
    {
      if (envelope->ports[i] != NULL)
        {
          msg_endpoint_discard (envelope->ports[i]);
          msg_endpoint_unref (envelope->ports[i]);
        }
    }
  g_free (envelope);
}

/* Items ------------------------------------------------------------------ */

/* Takes @data (not %NULL), read from another process: a plain message
 * that msg_item_check() checks to be in normal form where it is used. */
MsgItem *
msg_item_new_unchecked (GVariant *data)
{
  g_assert (data != NULL);
  return (MsgItem *) ((guintptr) data | MSG_ITEM_TAG_UNCHECKED);
}

/* Takes @unchecked: a message with @n_ports ports (to be set in
 * *@envelope's ports) whose data msg_item_check() checks. */
MsgItem *
msg_item_new_unchecked_envelope (MsgUnchecked  *unchecked,
                                 guint          n_ports,
                                 MsgEnvelope  **envelope)
{
  *envelope = msg_envelope_new_message (NULL, n_ports);
  (*envelope)->unchecked = unchecked;
  return msg_item_from_envelope (*envelope);
}

/* Takes @item and returns it as an envelope, wrapping a plain message in
 * one: for the code that has to look inside (the process transport). A
 * plain message not checked yet is not checked here: the encoder sends a
 * message that is not in normal form in its normal form. */
MsgEnvelope *
msg_item_steal_envelope (MsgItem *item)
{
  if (msg_item_is_envelope (item))
    return msg_item_peek_envelope (item);
  return msg_envelope_new_message (msg_item_peek_message (item), 0);
}

typedef void (*CheckHook) (gboolean checking);

static CheckHook check_hook;  /* (atomic) (nullable) */

void
msg_item_set_check_hook (void (*hook) (gboolean checking))
{
  g_atomic_pointer_set (&check_hook, hook);
}

static void
run_check_hook (gboolean checking)
{
  CheckHook hook = g_atomic_pointer_get (&check_hook);

  if (hook != NULL)
    hook (checking);
}

/* Turns the unchecked data of @envelope into its @data. Costs in
 * proportion to the data (a walk of it, the mapping of a memfd): called
 * by the thread that emits it, or that sends it on. */
gboolean
msg_envelope_check (MsgEnvelope  *envelope,
                    GError      **error)
{
  MsgUnchecked *unchecked = g_steal_pointer (&envelope->unchecked);

  if (unchecked == NULL)
    return TRUE;
  run_check_hook (TRUE);
  envelope->data = unchecked->funcs->check (unchecked, error);
  run_check_hook (FALSE);
  return envelope->data != NULL;
}

/* Checks what in *@item came from another process and was not checked
 * yet: on success *@item is a checked item; on failure it is left as it
 * is (for the caller to free) and @error says why it is refused
 * (MSG_PORT_ERROR_PROTOCOL). */
gboolean
msg_item_check (MsgItem **item,
                GError  **error)
{
  GVariant *data;
  gboolean normal;

  if (msg_item_is_envelope (*item))
    return msg_envelope_check (msg_item_peek_envelope (*item), error);
  if (!msg_item_is_unchecked_message (*item))
    return TRUE;

  data = msg_item_peek_message (*item);
  run_check_hook (TRUE);
  normal = g_variant_is_normal_form (data);
  run_check_hook (FALSE);
  if (!normal)
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_PROTOCOL,
                   "Invalid data from the peer process: a message of type %s "
                   "is not in normal form", g_variant_get_type_string (data));
      return FALSE;
    }
  *item = (MsgItem *) data;
  return TRUE;
}

/* Same rule as msg_envelope_free(). */
void
msg_item_free (MsgItem *item)
{
  if (item == NULL)
    return;
  if (msg_item_is_envelope (item))
    msg_envelope_free (msg_item_peek_envelope (item));
  else
    msg_variant_unref (msg_item_peek_message (item));
}

/* Queues ----------------------------------------------------------------- */

#define MSG_QUEUE_MIN_CAPACITY  8     /* what a queue starts with */
#define MSG_QUEUE_MAX_KEPT      64    /* the most it keeps once empty: 640 bytes */
#define MSG_QUEUE_SLOT_BYTES    (sizeof (MsgItem *) + sizeof (guint16))

void
msg_queue_push_sized (MsgQueue *queue,
                      MsgItem  *item,
                      gsize     size)
{
  guint16 *sizes;
  guint slot;

  g_assert (item != NULL);

  if (queue->length == queue->capacity)
    {
      guint old = queue->capacity;
      guint capacity = MAX (old * 2, MSG_QUEUE_MIN_CAPACITY);

      queue->items = g_realloc_n (queue->items, capacity, MSG_QUEUE_SLOT_BYTES);
      /* The sizes go after the new end of the items (they do not overlap
       * where they were: the ring at least doubled). */
      sizes = (guint16 *) (queue->items + capacity);
      if (old > 0)
        memmove (sizes, queue->items + old, old * sizeof (guint16));
      /* The items that wrapped around go after the old end. */
      if (queue->head + queue->length > old)
        {
          guint wrapped = queue->head + queue->length - old;

          memcpy (queue->items + old, queue->items, wrapped * sizeof (MsgItem *));
          memcpy (sizes + old, sizes, wrapped * sizeof (guint16));
        }
      queue->capacity = capacity;
    }
  slot = (queue->head + queue->length) & (queue->capacity - 1);
  queue->items[slot] = item;
  msg_queue_sizes (queue)[slot] = size < MSG_QUEUE_SIZE_UNKNOWN ? (guint16) size
                                                                : MSG_QUEUE_SIZE_UNKNOWN;
  queue->length++;
}

void
msg_queue_push (MsgQueue *queue,
                MsgItem  *item)
{
  msg_queue_push_sized (queue, item, msg_item_data_size (item));
}

static gsize
msg_queue_slot_size (const MsgQueue *queue,
                     guint           slot)
{
  guint16 size = msg_queue_sizes (queue)[slot];

  if (G_UNLIKELY (size == MSG_QUEUE_SIZE_UNKNOWN))
    return msg_item_data_size (queue->items[slot]);
  return size;
}

gsize
msg_queue_peek_size (const MsgQueue *queue,
                     guint           position)
{
  g_assert (position < queue->length);

  return msg_queue_slot_size (queue, (queue->head + position) & (queue->capacity - 1));
}

/* The first item, or NULL if @queue is empty. A queue that empties keeps
 * a ring of up to MSG_QUEUE_MAX_KEPT items for the next burst, so that
 * small bursts allocate nothing; a larger ring shrinks to that, so that a
 * channel that once held a backlog does not keep its size (a burst of
 * 1,000 grows it again with four reallocations, against a thousand
 * messages). */
MsgItem *
msg_queue_pop_sized (MsgQueue *queue,
                     gsize    *size)
{
  MsgItem *item;

  if (queue->length == 0)
    return NULL;

  item = queue->items[queue->head];
  if (size != NULL)
    *size = msg_queue_slot_size (queue, queue->head);
  queue->head = (queue->head + 1) & (queue->capacity - 1);
  queue->length--;
  if (queue->length == 0)
    {
      queue->head = 0;
      /* Empty: the sizes need not move. */
      if (queue->capacity > MSG_QUEUE_MAX_KEPT)
        {
          queue->items = g_realloc_n (queue->items, MSG_QUEUE_MAX_KEPT, MSG_QUEUE_SLOT_BYTES);
          queue->capacity = MSG_QUEUE_MAX_KEPT;
        }
    }

  return item;
}

MsgItem *
msg_queue_pop (MsgQueue *queue)
{
  return msg_queue_pop_sized (queue, NULL);
}

/* Returns what @queue holds, leaving it empty: for freeing outside a lock. */
MsgQueue
msg_queue_steal (MsgQueue *queue)
{
  MsgQueue stolen = *queue;

  *queue = (MsgQueue) MSG_QUEUE_INIT;
  return stolen;
}

/* Frees every item of @queue, in order, and its memory. */
void
msg_queue_clear (MsgQueue *queue)
{
  MsgItem *item;

  while ((item = msg_queue_pop (queue)) != NULL)
    msg_item_free (item);
  g_clear_pointer (&queue->items, g_free);
  *queue = (MsgQueue) MSG_QUEUE_INIT;
}

/* Endpoints ------------------------------------------------------------- */

MsgEndpoint *
msg_endpoint_new (void)
{
  MsgEndpoint *self = g_new0 (MsgEndpoint, 1);

  g_atomic_ref_count_init (&self->ref_count);
  g_mutex_init (&self->lock);
  self->ready_link.data = self;

  return self;
}

void
msg_endpoint_unref (MsgEndpoint *self)
{
  if (!msg_atomic_ref_count_dec (&self->ref_count))
    return;

  /* The last reference: nobody can post here any more (a peer holds a
   * reference), and nobody can start or dispatch it (handles and
   * dispatchers hold references). */
  g_assert (self->peer == NULL);
  g_assert (self->ready_list == NULL);
  g_clear_pointer (&self->flush_peer, msg_endpoint_unref);
  g_assert (!self->ready);
  g_assert (self->flow_waiters.length == 0);

  msg_queue_clear (&self->queue);

  if (self->sink != NULL)
    self->sink->funcs->release (self->sink);
  g_clear_error (&self->close_reason);
  g_mutex_clear (&self->lock);
  g_free (self);
}

void
msg_endpoint_entangle (MsgEndpoint *a,
                       MsgEndpoint *b)
{
  g_assert (a->peer == NULL && b->peer == NULL);

  a->peer = msg_endpoint_ref (b);
  b->peer = msg_endpoint_ref (a);
}

/* Called with @self->lock held when an envelope was appended to an empty
 * queue (or a dispatch left some behind). See MsgReadyListFuncs for
 * @wake_later. */
void
msg_endpoint_mark_ready_locked (MsgEndpoint   *self,
                                MsgReadyList **wake_later)
{
  msg_mutex_assert_held (&self->lock);

  if (self->ready_list != NULL)
    self->ready_list->funcs->mark_ready (self->ready_list, self, wake_later);
}

/* The bytes of message data @item holds, as read-ahead counts them. The
 * same for an item whenever it is asked (a GVariant's size does not
 * change). */
gsize
msg_item_data_size (MsgItem *item)
{
  GVariant *data;

  if (msg_item_is_envelope (item))
    {
      MsgEnvelope *envelope = msg_item_peek_envelope (item);

      /* Checking an item turns it into its data, of the same size. */
      if (envelope->unchecked != NULL)
        return envelope->unchecked->size;
      data = envelope->data;
    }
  else
    data = msg_item_peek_message (item);

  return data != NULL ? g_variant_get_size (data) : 0;
}

/* What @item, of @size bytes of data (msg_item_data_size()), weighs in
 * read-ahead: its data, and MSG_READ_AHEAD_FD_COST for each descriptor of
 * its message and each port it carries (a port from another process holds
 * a socket at least), so that a peer cannot make a port hold more than
 * about 128 descriptors unread however small its messages. */
static gsize
msg_item_read_ahead_size (MsgItem *item,
                          gsize    size)
{
  if (msg_item_is_envelope (item))
    {
      MsgEnvelope *envelope = msg_item_peek_envelope (item);

      if (envelope->fd_list != NULL)
        size += (gsize) g_unix_fd_list_get_length (envelope->fd_list) * MSG_READ_AHEAD_FD_COST;
      size += (gsize) envelope->n_ports * MSG_READ_AHEAD_FD_COST;
    }
  return size;
}

/* What an endpoint that ends leaves for its waiters, to be failed once its
 * lock is released. */
typedef struct
{
  GQueue  waiters;
  GError *error;  /* (owned) (nullable) */
} MsgFlowEnd;

#define MSG_FLOW_END_INIT { G_QUEUE_INIT, NULL }

/* Flow control ------------------------------------------------------------ *
 *
 * An endpoint counts what it posts to its peer, when it reads its peer
 * under its lock (msg_endpoint_count_post_locked(), from post_message()):
 * two plain stores per message (one writer, under the lock), no
 * allocation; the size is g_variant_get_size(), as msg_item_data_size()
 * has it (GLib locks the GVariant, and a GVariant built in this process
 * is sized there for the first time: the main cost), and it is queued
 * with the item, for the dispatcher that takes it. What the other end took
 * (its handlers got it) comes back as a credit, once per dispatch batch
 * (msg_endpoint_taken(), from the dispatcher), or, across processes, as an
 * acknowledgement that the transport reads (msg_endpoint_acknowledge()):
 * two atomic additions per batch. The difference is what is buffered.
 *
 * With a high-water mark set, an endpoint whose buffered bytes reach it is
 * blocked (not writable) until they fall below half of it; every change of
 * state, and with a mark every credit, is evaluated under the endpoint's
 * lock from the counters as they are then, so that a post and a credit
 * crossing each other cannot leave it blocked with nothing buffered. The
 * port emits what changed in its own context: the endpoint is marked ready
 * with @flow_pending set, and the dispatcher calls its emit function with
 * no item. Waiters are called where the change is seen, with no lock
 * held (a GTask returns in its own context).
 *
 * When the endpoint ends, the counters are reset (taken = sent) and the
 * waiters fail with its close reason. */

/* What @self posted and was not taken, in messages and bytes. A credit that
 * comes after the end reset the counters is ignored. Any thread. */
void
msg_endpoint_get_buffered (MsgEndpoint *self,
                           guint64     *n_messages,
                           guint64     *n_bytes)
{
  guint64 taken_messages = msg_atomic_u64_get (&self->taken_messages);
  guint64 taken_bytes = msg_atomic_u64_get (&self->taken_bytes);
  guint64 sent_messages = msg_atomic_u64_get (&self->sent_messages);
  guint64 sent_bytes = msg_atomic_u64_get (&self->sent_bytes);

  *n_messages = sent_messages > taken_messages ? sent_messages - taken_messages : 0;
  *n_bytes = sent_bytes > taken_bytes ? sent_bytes - taken_bytes : 0;
}

/* Moves every waiter of @self to @waiters. */
void
msg_endpoint_steal_flow_waiters_locked (MsgEndpoint *self,
                                        GQueue      *waiters)
{
  GList *link;

  msg_mutex_assert_held (&self->lock);

  while ((link = g_queue_pop_head_link (&self->flow_waiters)) != NULL)
    g_queue_push_tail_link (waiters, link);
}

/* Calls done() on each of @waiters, which it empties; no lock held. */
void
msg_flow_waiters_finish (GQueue       *waiters,
                         const GError *error)
{
  GList *link;

  while ((link = g_queue_pop_head_link (waiters)) != NULL)
    {
      MsgFlowWaiter *waiter = link->data;

      waiter->done (waiter, error);
    }
}

/* Re-evaluates whether @self is blocked, from its counters as they are now.
 * If it is not, its waiters move to @writable (if not %NULL). If its state
 * changed, or @notify is set, and a port is started on it, the port is
 * told (see MsgEmitFunc); @wake_later as for msg_endpoint_mark_ready_locked(). */
static void
msg_endpoint_flow_update_locked (MsgEndpoint   *self,
                                 gboolean       notify,
                                 MsgReadyList **wake_later,
                                 GQueue        *writable)
{
  guint64 mark = msg_atomic_u64_get (&self->high_water_mark);
  gboolean blocked = g_atomic_int_get (&self->flow_blocked);
  gboolean now;
  guint64 n_messages, n_bytes;

  msg_mutex_assert_held (&self->lock);

  msg_endpoint_get_buffered (self, &n_messages, &n_bytes);
  if (mark == 0 || self->ended)
    now = FALSE;
  else if (blocked)
    now = n_bytes > 0 && n_bytes >= mark / 2;
  else
    now = n_bytes >= mark;

  if (now != blocked)
    {
      g_atomic_int_set (&self->flow_blocked, now);
      notify = TRUE;
      if (!now && self->ready_list != NULL)
        self->flow_drains++;
    }
  if (!now && writable != NULL)
    msg_endpoint_steal_flow_waiters_locked (self, writable);
  if (notify && self->ready_list != NULL)
    {
      self->flow_pending = TRUE;
      msg_endpoint_mark_ready_locked (self, wake_later);
    }
}

/* Called by post_message() with @self->lock held, when the message of
 * @n_bytes goes to @self->peer. A peer whose sink sends no
 * acknowledgements (no consumed(): a transport that predates them) never
 * credits: the message counts as taken as it is handed over. */
void
msg_endpoint_count_post_locked (MsgEndpoint   *self,
                                gsize          n_bytes,
                                MsgReadyList **wake_later)
{
  MsgSink *peer_sink = msg_endpoint_get_sink (self->peer);
  guint64 sent_bytes;
  guint64 mark;

  msg_mutex_assert_held (&self->lock);

  if (G_UNLIKELY (peer_sink != NULL && peer_sink->funcs->consumed == NULL))
    {
      msg_atomic_u64_add (&self->taken_messages, 1);
      msg_atomic_u64_add (&self->taken_bytes, n_bytes);
    }

  /* Written under the lock only: plain stores, not locked additions (the
   * hot path). A credit evaluates the mark under the lock too. */
  msg_atomic_u64_set_release (&self->sent_messages,
                              msg_atomic_u64_get_relaxed (&self->sent_messages) + 1);
  sent_bytes = msg_atomic_u64_get_relaxed (&self->sent_bytes) + n_bytes;
  msg_atomic_u64_set_release (&self->sent_bytes, sent_bytes);
  mark = msg_atomic_u64_get_relaxed (&self->high_water_mark);
  if (G_UNLIKELY (mark != 0) && !g_atomic_int_get (&self->flow_blocked) &&
      sent_bytes >= mark + msg_atomic_u64_get (&self->taken_bytes))
    msg_endpoint_flow_update_locked (self, FALSE, wake_later, NULL);
}

/* A post to @peer counted by msg_endpoint_count_post_locked() was not
 * sent after all (the message or its transfer list was refused). Any
 * thread, no lock held. */
void
msg_endpoint_uncount_post (MsgEndpoint *self,
                           MsgEndpoint *peer,
                           gsize        n_bytes)
{
  MsgSink *peer_sink = msg_endpoint_get_sink (peer);
  MsgReadyList *wake = NULL;
  GQueue writable = G_QUEUE_INIT;

  msg_mutex_lock (&self->lock);
  msg_atomic_u64_add (&self->sent_messages, G_MAXUINT64);
  msg_atomic_u64_add (&self->sent_bytes, -(guint64) n_bytes);
  if (peer_sink != NULL && peer_sink->funcs->consumed == NULL)
    {
      msg_atomic_u64_add (&self->taken_messages, G_MAXUINT64);
      msg_atomic_u64_add (&self->taken_bytes, -(guint64) n_bytes);
    }
  msg_endpoint_flow_update_locked (self, FALSE, &wake, &writable);
  msg_mutex_unlock (&self->lock);

  if (wake != NULL)
    wake->funcs->wake (wake);
  msg_flow_waiters_finish (&writable, NULL);
}

/* The other end took @n_messages of @n_bytes that @self posted. Any
 * thread, no lock held. */
void
msg_endpoint_credit (MsgEndpoint *self,
                     guint        n_messages,
                     guint64      n_bytes)
{
  MsgReadyList *wake = NULL;
  GQueue writable = G_QUEUE_INIT;

  if (n_messages == 0 && n_bytes == 0)
    return;

  msg_atomic_u64_add (&self->taken_messages, n_messages);
  msg_atomic_u64_add (&self->taken_bytes, n_bytes);
  /* Without a mark nothing is emitted (see above for the order). */
  if (G_LIKELY (msg_atomic_u64_get (&self->high_water_mark) == 0))
    return;

  msg_mutex_lock (&self->lock);
  msg_endpoint_flow_update_locked (self, TRUE, &wake, &writable);
  msg_mutex_unlock (&self->lock);

  if (wake != NULL)
    wake->funcs->wake (wake);
  msg_flow_waiters_finish (&writable, NULL);
}

/* Called by whoever took @n_messages of @n_bytes from @self's queue for
 * its handlers (the dispatcher, once per batch), with no lock held: counts
 * them as received by @self, and credits @peer, the endpoint @self had as
 * its peer when it took them (%NULL if none), or tells its sink. Moving
 * items elsewhere (a transfer, a sink, discarding them) takes nothing. */
void
msg_endpoint_taken (MsgEndpoint *self,
                    MsgEndpoint *peer,
                    guint        n_messages,
                    guint64      n_bytes)
{
  MsgSink *sink;

  if (n_messages == 0)
    return;

  /* Only the thread that dispatches @self writes these, one at a time
   * (ordered by @self's lock as it moves). */
  msg_atomic_u64_set_release (&self->received_messages,
                              msg_atomic_u64_get_relaxed (&self->received_messages) + n_messages);
  msg_atomic_u64_set_release (&self->received_bytes,
                              msg_atomic_u64_get_relaxed (&self->received_bytes) + n_bytes);
  if (peer == NULL)
    return;

  sink = msg_endpoint_get_sink (peer);
  if (sink == NULL)
    msg_endpoint_credit (peer, n_messages, n_bytes);
  else if (sink->funcs->consumed != NULL)
    sink->funcs->consumed (sink, n_messages, n_bytes);
}

/* msg_endpoint_acknowledge:
 * @self: an endpoint with a sink
 * @n_messages: how many messages the far end took
 * @n_bytes: their bytes of message data (msg_item_data_size())
 *
 * The far end of @self's sink took that many of what the sink carried to
 * it: credits @self's peer, the endpoint that posted them. Called by the
 * process transport when an acknowledgement arrives. Any thread, no lock
 * held.
 */
void
msg_endpoint_acknowledge (MsgEndpoint *self,
                          guint        n_messages,
                          guint64      n_bytes)
{
  MsgEndpoint *peer = NULL;

  msg_mutex_lock (&self->lock);
  if (self->peer != NULL)
    peer = msg_endpoint_ref (self->peer);
  msg_mutex_unlock (&self->lock);

  if (peer == NULL)
    return;
  /* Never more than is outstanding: an acknowledgement only ever covers
   * what was sent and not credited yet, so a peer that claims more (or
   * wraps the counts around) only brings its own channel's count to 0. */
  {
    guint64 buffered_messages, buffered_bytes;

    msg_endpoint_get_buffered (peer, &buffered_messages, &buffered_bytes);
    n_messages = (guint) MIN ((guint64) n_messages, buffered_messages);
    n_bytes = MIN (n_bytes, buffered_bytes);
  }
  msg_endpoint_credit (peer, n_messages, n_bytes);
  msg_endpoint_unref (peer);
}

/* Sets the high-water mark of @self, in bytes (0: off). Any thread. */
void
msg_endpoint_set_high_water_mark (MsgEndpoint *self,
                                  guint64      mark)
{
  MsgReadyList *wake = NULL;
  GQueue writable = G_QUEUE_INIT;

  msg_mutex_lock (&self->lock);
  msg_atomic_u64_set (&self->high_water_mark, mark);
  msg_endpoint_flow_update_locked (self, FALSE, &wake, &writable);
  msg_mutex_unlock (&self->lock);

  if (wake != NULL)
    wake->funcs->wake (wake);
  msg_flow_waiters_finish (&writable, NULL);
}

/* @self ends: nothing it posted will be taken any more. Resets its
 * counters and moves its waiters to @flow_end, with a copy of @reason for
 * them. */
static void
msg_flow_end_locked (MsgEndpoint  *self,
                     const GError *reason,
                     MsgFlowEnd   *flow_end)
{
  msg_mutex_assert_held (&self->lock);

  msg_atomic_u64_set (&self->taken_messages, msg_atomic_u64_get (&self->sent_messages));
  msg_atomic_u64_set (&self->taken_bytes, msg_atomic_u64_get (&self->sent_bytes));
  g_atomic_int_set (&self->flow_blocked, FALSE);
  self->flow_drains = 0;
  msg_endpoint_steal_flow_waiters_locked (self, &flow_end->waiters);
  if (flow_end->waiters.length > 0 && flow_end->error == NULL)
    flow_end->error = reason != NULL ? g_error_copy (reason)
                                     : msg_endpoint_new_peer_closed_reason ();
}

static void
msg_flow_end_finish (MsgFlowEnd *flow_end)
{
  msg_flow_waiters_finish (&flow_end->waiters, flow_end->error);
  g_clear_error (&flow_end->error);
}

/* Returns what the sink refused, to be freed once the lock is released.
 * @size is msg_item_data_size (@item). */
static MsgItem *
msg_endpoint_push_locked (MsgEndpoint   *self,
                          MsgItem       *item,
                          gsize          size,
                          MsgReadyList **wake_later)
{
  msg_mutex_assert_held (&self->lock);

  if (self->sink != NULL)
    return self->sink->funcs->deliver (self->sink, item);

  msg_queue_push_sized (&self->queue, item, size);
  if (self->queue.length > self->max_queued)
    self->max_queued = self->queue.length;
  if (self->counted)
    self->read_bytes += msg_item_read_ahead_size (item, size);
  if (self->queue.length == 1)
    msg_endpoint_mark_ready_locked (self, wake_later);
  return NULL;
}

/* Takes ownership of @item, of @size bytes of data (msg_item_data_size()),
 * and queues it for @self's handlers (or its sink); drops it if @self has
 * ended. Any thread. The receiving context is woken, if it must be, after
 * the lock is released. */
void
msg_endpoint_deliver_sized (MsgEndpoint *self,
                            MsgItem     *item,
                            gsize        size)
{
  MsgReadyList *wake = NULL;

  msg_mutex_lock (&self->lock);
  if (!self->ended)
    item = msg_endpoint_push_locked (self, item, size, &wake);
  msg_mutex_unlock (&self->lock);

  if (wake != NULL)
    wake->funcs->wake (wake);
  msg_item_free (item);
}

/* The same, for an item whose size the caller does not know. */
void
msg_endpoint_deliver (MsgEndpoint *self,
                      MsgItem     *item)
{
  msg_endpoint_deliver_sized (self, item, msg_item_data_size (item));
}

/* What a socket reader read for @self: as msg_endpoint_deliver(), and if
 * @self now holds more than the read-ahead allows, @reader pauses until
 * it is down to the low marks (see MSG_READ_AHEAD_HIGH_ITEMS). Any
 * thread. */
void
msg_endpoint_deliver_read (MsgEndpoint  *self,
                           MsgItem      *item,
                           MsgReadWatch *reader)
{
  MsgReadyList *wake = NULL;
  gsize size = msg_item_data_size (item);

  msg_mutex_lock (&self->lock);
  if (!self->ended)
    {
      self->counted = TRUE;
      item = msg_endpoint_push_locked (self, item, size, &wake);
      if (self->paused_reader == NULL && self->sink == NULL &&
          (self->queue.length >= MSG_READ_AHEAD_HIGH_ITEMS ||
           self->read_bytes >= MSG_READ_AHEAD_HIGH_BYTES))
        {
          self->paused_reader = reader;
          reader->funcs->pause (reader);
        }
    }
  msg_mutex_unlock (&self->lock);

  if (wake != NULL)
    wake->funcs->wake (wake);
  msg_item_free (item);
}

/* The first queued item, or NULL, and its msg_item_data_size() in *@size
 * (optional). If that takes the queue down to the low marks, the reader
 * paused for @self is returned in *@resume, for the caller to resume once
 * the lock is released (msg_read_watch_resume()). */
MsgItem *
msg_endpoint_pop_locked (MsgEndpoint   *self,
                         gsize         *size,
                         MsgReadWatch **resume)
{
  gsize item_size = 0;
  MsgItem *item;

  msg_mutex_assert_held (&self->lock);

  item = msg_queue_pop_sized (&self->queue, &item_size);
  if (size != NULL)
    *size = item_size;
  if (item != NULL && self->counted)
    self->read_bytes -= MIN (self->read_bytes, msg_item_read_ahead_size (item, item_size));
  if (self->paused_reader != NULL &&
      self->queue.length <= MSG_READ_AHEAD_LOW_ITEMS &&
      self->read_bytes <= MSG_READ_AHEAD_LOW_BYTES)
    *resume = g_steal_pointer (&self->paused_reader);
  return item;
}

/* Everything queued, for the caller to hand on or free; a paused reader
 * goes to *@resume, as with msg_endpoint_pop_locked(). */
MsgQueue
msg_endpoint_steal_queue_locked (MsgEndpoint   *self,
                                 MsgReadWatch **resume)
{
  msg_mutex_assert_held (&self->lock);

  self->read_bytes = 0;
  *resume = g_steal_pointer (&self->paused_reader);
  return msg_queue_steal (&self->queue);
}


/* Makes @sink (taken) receive everything that arrives for @self from now
 * on, after what is already queued, in order. */
void
msg_endpoint_set_sink (MsgEndpoint *self,
                       MsgSink     *sink)
{
  MsgQueue queued, refused = MSG_QUEUE_INIT;
  MsgReadWatch *resume = NULL;
  MsgItem *item;
  gsize size;

  msg_mutex_lock (&self->lock);
  g_assert (self->sink == NULL && self->ready_list == NULL);
  g_atomic_pointer_set (&self->sink, sink);
  queued = msg_endpoint_steal_queue_locked (self, &resume);
  while ((item = msg_queue_pop_sized (&queued, &size)) != NULL)
    {
      item = msg_endpoint_push_locked (self, item, size, NULL);
      if (item != NULL)
        msg_queue_push_sized (&refused, item, size);
    }
  msg_mutex_unlock (&self->lock);

  msg_read_watch_resume (resume);
  msg_queue_clear (&queued);
  msg_queue_clear (&refused);
}

GError *
msg_endpoint_new_peer_closed_reason (void)
{
  return g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_CLOSED,
                              "The other end of the channel was closed");
}

/* Queues the close envelope: nothing arrives after it. Takes @reason;
 * returns what a sink refused, to be freed once the lock is released, and
 * in @flow_end the waiters for @self to be writable, to be failed with
 * msg_flow_end_finish() then. */
static MsgItem *
msg_endpoint_end_locked (MsgEndpoint *self,
                         GError      *reason,
                         MsgFlowEnd  *flow_end)
{
  msg_mutex_assert_held (&self->lock);

  if (self->ended)
    {
      g_clear_error (&reason);
      return NULL;
    }

  self->ended = TRUE;
  msg_flow_end_locked (self, reason, flow_end);
  return msg_endpoint_push_locked (self, msg_item_from_envelope (msg_envelope_new_close (reason)),
                                   0, NULL);
}

/* The peer of @self went away: @self delivers what it has, then emits
 * ::close. @from is the endpoint that went away; if @self is entangled with
 * another one by now, nothing happens. Takes @reason. */
static void
msg_endpoint_peer_gone (MsgEndpoint *self,
                        MsgEndpoint *from,
                        GError      *reason)
{
  MsgEndpoint *old_peer = NULL;
  MsgItem *refused = NULL;
  MsgFlowEnd flow_end = MSG_FLOW_END_INIT;

  msg_mutex_lock (&self->lock);
  if (self->peer == from)
    {
      old_peer = g_steal_pointer (&self->peer);
      refused = msg_endpoint_end_locked (self, g_steal_pointer (&reason), &flow_end);
    }
  msg_mutex_unlock (&self->lock);

  msg_flow_end_finish (&flow_end);
  msg_item_free (refused);
  g_clear_error (&reason);
  g_clear_pointer (&old_peer, msg_endpoint_unref);
}

/* Drops the reference on the peer @self just told it is gone, unless the
 * peer writes to a sink: its close frame and what was posted before are
 * still to be written, and flush() waits for that. */
static void
msg_endpoint_forget_peer (MsgEndpoint *self,
                          MsgEndpoint *peer)
{
  MsgEndpoint *old = NULL;

  if (msg_endpoint_get_sink (peer) == NULL)
    {
      msg_endpoint_unref (peer);
      return;
    }
  msg_mutex_lock (&self->lock);
  old = g_steal_pointer (&self->flush_peer);
  self->flush_peer = peer;
  msg_mutex_unlock (&self->lock);
  g_clear_pointer (&old, msg_endpoint_unref);
}

/* Ends the entanglement of @self from its own side: @self ends with
 * @reason and its peer with @peer_reason (both taken). Every way a channel
 * ends goes through here or msg_endpoint_discard(). */
void
msg_endpoint_disentangle (MsgEndpoint *self,
                          GError      *reason,
                          GError      *peer_reason)
{
  MsgEndpoint *peer;
  MsgItem *refused;
  MsgFlowEnd flow_end = MSG_FLOW_END_INIT;

  msg_mutex_lock (&self->lock);
  peer = g_steal_pointer (&self->peer);
  refused = msg_endpoint_end_locked (self, g_steal_pointer (&reason), &flow_end);
  msg_mutex_unlock (&self->lock);

  msg_flow_end_finish (&flow_end);
  msg_item_free (refused);
  if (peer != NULL)
    {
      msg_endpoint_peer_gone (peer, self, g_steal_pointer (&peer_reason));
      msg_endpoint_forget_peer (self, peer);
    }
  g_clear_error (&peer_reason);
}

/* What @self received from another process is refused (msg_item_check()
 * failed): it delivers nothing more, neither what came after nor a close
 * queued with another reason, and ends with @reason (taken), which its
 * peer (the connection that read it) gets too. Called by the context that
 * dispatches @self, with no lock held. */
void
msg_endpoint_reject (MsgEndpoint *self,
                     GError      *reason)
{
  MsgEndpoint *peer;
  MsgReadWatch *resume = NULL;
  GError *peer_reason = g_error_copy (reason);
  MsgQueue dropped;
  MsgItem *refused;
  MsgFlowEnd flow_end = MSG_FLOW_END_INIT;

  msg_mutex_lock (&self->lock);
  peer = g_steal_pointer (&self->peer);
  dropped = msg_endpoint_steal_queue_locked (self, &resume);
  /* The close goes in place of any queued before. */
  self->ended = FALSE;
  refused = msg_endpoint_end_locked (self, reason, &flow_end);
  msg_mutex_unlock (&self->lock);

  msg_flow_end_finish (&flow_end);
  msg_read_watch_resume (resume);
  msg_queue_clear (&dropped);
  msg_item_free (refused);
  if (peer != NULL)
    {
      msg_endpoint_peer_gone (peer, self, g_steal_pointer (&peer_reason));
      msg_endpoint_forget_peer (self, peer);
    }
  g_clear_error (&peer_reason);
}

/* Closes an endpoint that nobody will ever dispatch: what it holds is
 * dropped (its transferred endpoints discarded in turn) and its peer ends,
 * with @peer_reason (taken) or, if %NULL, as closed by its peer. Used for
 * handles dropped before start(), for envelopes never delivered, and for
 * ports that could not be sent on. */
void
msg_endpoint_discard_full (MsgEndpoint *self,
                           GError      *peer_reason)
{
  MsgEndpoint *peer;
  MsgReadWatch *resume = NULL;
  MsgQueue dropped;
  MsgFlowEnd flow_end = MSG_FLOW_END_INIT;

  msg_mutex_lock (&self->lock);
  peer = g_steal_pointer (&self->peer);
  if (!self->ended)
    {
      GError *reason = self->close_reason;

      if (reason == NULL)
        reason = g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED,
                                      "The port was closed");
      msg_flow_end_locked (self, reason, &flow_end);
      if (reason != self->close_reason)
        g_error_free (reason);
    }
  self->ended = TRUE;
  self->closed = TRUE;
  dropped = msg_endpoint_steal_queue_locked (self, &resume);
  msg_mutex_unlock (&self->lock);

  msg_flow_end_finish (&flow_end);
  msg_read_watch_resume (resume);
  msg_queue_clear (&dropped);
  if (peer != NULL)
    {
      if (peer_reason == NULL)
        peer_reason = msg_endpoint_new_peer_closed_reason ();
      msg_endpoint_peer_gone (peer, self, g_steal_pointer (&peer_reason));
      msg_endpoint_forget_peer (self, peer);
    }
  g_clear_error (&peer_reason);
}

void
msg_endpoint_discard (MsgEndpoint *self)
{
  msg_endpoint_discard_full (self, NULL);
}
