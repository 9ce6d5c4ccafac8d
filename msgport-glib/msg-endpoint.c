/* msg-endpoint.c: entangled endpoints and their queues
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "msg-endpoint-private.h"
#include "msg-port-error.h"

/* Envelopes ------------------------------------------------------------- */

MsgEnvelope *
msg_envelope_new_message (GVariant *data,
                          guint     n_ports)
{
  MsgEnvelope *envelope;

  envelope = g_malloc (sizeof (MsgEnvelope) + n_ports * sizeof (MsgEndpoint *));
  envelope->link.data = envelope;
  envelope->link.prev = envelope->link.next = NULL;
  envelope->kind = MSG_ENVELOPE_MESSAGE;
  envelope->data = data;
  envelope->reason = NULL;
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
  g_clear_error (&envelope->reason);
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

void
msg_envelope_list_free (GQueue *envelopes)
{
  GList *link;

  while ((link = g_queue_pop_head_link (envelopes)) != NULL)
    msg_envelope_free (link->data);
}

/* Endpoints ------------------------------------------------------------- */

MsgEndpoint *
msg_endpoint_new (void)
{
  MsgEndpoint *self = g_new0 (MsgEndpoint, 1);

  g_atomic_ref_count_init (&self->ref_count);
  g_mutex_init (&self->lock);
  g_queue_init (&self->queue);
  self->ready_link.data = self;

  return self;
}

MsgEndpoint *
msg_endpoint_ref (MsgEndpoint *self)
{
  g_atomic_ref_count_inc (&self->ref_count);
  return self;
}

void
msg_endpoint_unref (MsgEndpoint *self)
{
  GQueue queue;

  if (!g_atomic_ref_count_dec (&self->ref_count))
    return;

  /* The last reference: nobody can post here any more (a peer holds a
   * reference), and nobody can start or dispatch it (handles and
   * dispatchers hold references). */
  g_assert (self->peer == NULL);
  g_assert (self->dispatcher == NULL);
  g_clear_pointer (&self->flush_peer, msg_endpoint_unref);
  g_assert (!self->ready);

  queue = self->queue;
  g_queue_init (&self->queue);
  msg_envelope_list_free (&queue);

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
 * queue (or a dispatch left some behind). See msg_dispatcher_mark_ready()
 * for @wake_later. */
void
msg_endpoint_mark_ready_locked (MsgEndpoint   *self,
                                GMainContext **wake_later)
{
  if (self->dispatcher != NULL)
    msg_dispatcher_mark_ready (self->dispatcher, self, wake_later);
}

/* Returns what the sink refused, to be freed once the lock is released. */
static MsgEnvelope *
msg_endpoint_push_locked (MsgEndpoint   *self,
                          MsgEnvelope   *envelope,
                          GMainContext **wake_later)
{
  if (self->sink != NULL)
    return self->sink->funcs->deliver (self->sink, envelope);

  g_queue_push_tail_link (&self->queue, &envelope->link);
  if (self->queue.length == 1)
    msg_endpoint_mark_ready_locked (self, wake_later);
  return NULL;
}

/* Takes ownership of @envelope and queues it for @self's handlers (or its
 * sink); drops it if @self has ended. Any thread. The receiving context is
 * woken, if it must be, after the lock is released. */
void
msg_endpoint_deliver (MsgEndpoint *self,
                      MsgEnvelope *envelope)
{
  GMainContext *wake = NULL;

  msg_mutex_lock (&self->lock);
  if (!self->ended)
    envelope = msg_endpoint_push_locked (self, envelope, &wake);
  msg_mutex_unlock (&self->lock);

  if (wake != NULL)
    {
      g_main_context_wakeup (wake);
      g_main_context_unref (wake);
    }
  msg_envelope_free (envelope);
}

/* Makes @sink (taken) receive everything that arrives for @self from now
 * on, after what is already queued, in order. */
void
msg_endpoint_set_sink (MsgEndpoint *self,
                       MsgSink     *sink)
{
  GQueue refused = G_QUEUE_INIT;
  GList *link;

  msg_mutex_lock (&self->lock);
  g_assert (self->sink == NULL && self->dispatcher == NULL);
  g_atomic_pointer_set (&self->sink, sink);
  while ((link = g_queue_pop_head_link (&self->queue)) != NULL)
    {
      MsgEnvelope *envelope = msg_endpoint_push_locked (self, link->data, NULL);

      if (envelope != NULL)
        g_queue_push_tail_link (&refused, &envelope->link);
    }
  msg_mutex_unlock (&self->lock);

  msg_envelope_list_free (&refused);
}

/* Lock-free: a sink is set once and stays for the endpoint's life. */
MsgSink *
msg_endpoint_get_sink (MsgEndpoint *self)
{
  return g_atomic_pointer_get (&self->sink);
}

GError *
msg_endpoint_new_peer_closed_reason (void)
{
  return g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_CLOSED,
                              "The other end of the channel was closed");
}

/* Queues the close envelope: nothing arrives after it. Takes @reason;
 * returns what a sink refused, to be freed once the lock is released. */
static MsgEnvelope *
msg_endpoint_end_locked (MsgEndpoint *self,
                         GError      *reason)
{
  if (self->ended)
    {
      g_clear_error (&reason);
      return NULL;
    }

  self->ended = TRUE;
  return msg_endpoint_push_locked (self, msg_envelope_new_close (reason), NULL);
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
  MsgEnvelope *refused = NULL;

  msg_mutex_lock (&self->lock);
  if (self->peer == from)
    {
      old_peer = g_steal_pointer (&self->peer);
      refused = msg_endpoint_end_locked (self, g_steal_pointer (&reason));
    }
  msg_mutex_unlock (&self->lock);

  msg_envelope_free (refused);
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
  MsgEnvelope *refused;

  msg_mutex_lock (&self->lock);
  peer = g_steal_pointer (&self->peer);
  refused = msg_endpoint_end_locked (self, g_steal_pointer (&reason));
  msg_mutex_unlock (&self->lock);

  msg_envelope_free (refused);
  if (peer != NULL)
    {
      msg_endpoint_peer_gone (peer, self, g_steal_pointer (&peer_reason));
      msg_endpoint_forget_peer (self, peer);
    }
  g_clear_error (&peer_reason);
}

/* Closes an endpoint that nobody will ever dispatch: what it holds is
 * dropped (its transferred endpoints discarded in turn) and its peer ends.
 * Used for handles dropped before start() and for envelopes never
 * delivered. */
void
msg_endpoint_discard (MsgEndpoint *self)
{
  MsgEndpoint *peer;
  GQueue dropped;

  msg_mutex_lock (&self->lock);
  peer = g_steal_pointer (&self->peer);
  self->ended = TRUE;
  self->closed = TRUE;
  dropped = self->queue;
  g_queue_init (&self->queue);
  msg_mutex_unlock (&self->lock);

  msg_envelope_list_free (&dropped);
  if (peer != NULL)
    {
      msg_endpoint_peer_gone (peer, self, msg_endpoint_new_peer_closed_reason ());
      msg_endpoint_forget_peer (self, peer);
    }
}
