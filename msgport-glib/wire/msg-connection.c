/* msg-connection.c: the connection object, its lock, and its end
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * What every part of a connection shares: waiting for and signalling
 * progress under its lock, kicking the I/O thread, who reads its socket
 * (the I/O thread, or a context that holds a lease), delivering what was
 * read, and failing it. See msg-connection-private.h for the object.
 */

#include "config.h"

#include <errno.h>
#include <unistd.h>

#include "msg-connection-private.h"
#include "msg-io-thread-private.h"
#include "msg-lock-private.h"
#include "msg-transport-private.h"

static gint n_leases;  /* (atomic) */

guint
msg_transport_count_leases (void)
{
  return g_atomic_int_get (&n_leases);
}

/* Waits, with @self->lock held, until msg_connection_signal_locked(): written
 * frames, a poster's direct write ending, the connection ending or a
 * cancellation. */
void
msg_connection_wait_locked (MsgConnection *self)
{
  msg_mutex_assert_held (&self->lock);

  self->n_waiters++;
  msg_cond_wait (&self->written_cond, &self->lock);
  self->n_waiters--;
}

/* Called with @self->lock held. A broadcast is a system call even with
 * nobody waiting: most of the time there is nobody. */
void
msg_connection_signal_locked (MsgConnection *self)
{
  MsgFlushWaiter *waiter;

  msg_mutex_assert_held (&self->lock);

  waiter = g_queue_peek_head (&self->flush_waiters);
  if (self->n_waiters > 0)
    g_cond_broadcast (&self->written_cond);
  /* An asynchronous flush is done: the I/O thread finishes it. */
  if (waiter != NULL && waiter->target <= self->n_written)
    msg_connection_kick_locked (self);
}

/* The peer took @n_messages messages and @n_bytes bytes of what this
 * connection carried to it (an acknowledgement frame). Whoever reads. */
void
msg_connection_acknowledged (MsgConnection *self,
                             guint64        n_messages,
                             guint64        n_bytes)
{
  MsgEndpoint *endpoint;

  msg_mutex_lock (&self->lock);
  endpoint = self->endpoint != NULL ? msg_endpoint_ref (self->endpoint) : NULL;
  msg_mutex_unlock (&self->lock);
  if (endpoint == NULL)
    return;
  /* More than was sent only makes the count reach 0 sooner: the peer
   * can mislead no one but the sender on its own channel. */
  msg_endpoint_acknowledge (endpoint, (guint) MIN (n_messages, G_MAXUINT), n_bytes);
  msg_endpoint_unref (endpoint);
}

/* Sets the keep-alive interval of @sink's connection (0: off). Any
 * thread. */
void
msg_transport_set_keep_alive (MsgSink *sink,
                              guint    interval_ms)
{
  MsgConnection *self = CONNECTION_FROM_SINK (sink);

  msg_mutex_lock (&self->lock);
  if (self->keep_alive_ms != interval_ms)
    {
      self->keep_alive_ms = interval_ms;
      self->keep_alive_changed = TRUE;
      msg_connection_kick_locked (self);
    }
  msg_mutex_unlock (&self->lock);
}

/* Called with @self->lock held. */
void
msg_connection_kick_locked (MsgConnection *self)
{
  msg_mutex_assert_held (&self->lock);

  /* In a forked child the source is in the context of the parent's I/O
   * thread, which does not run here (and whose wake-up descriptor the
   * parent still polls). */
  if (!self->kicked && !msg_connection_is_forked (self))
    {
      self->kicked = TRUE;
      g_source_set_ready_time (&self->source, 0);
    }
}

/* Called with @self->lock held: the socket is leased to @holder (a
 * reference is taken), which reads it from now on. */
void
msg_connection_begin_lease_locked (MsgConnection *self,
                                   MsgDispatcher *holder)
{
  msg_mutex_assert_held (&self->lock);

  self->lease = msg_dispatcher_ref (holder);
  g_atomic_int_inc (&n_leases);
}

/* Called with @self->lock held: ends the lease, returning the reference
 * it held on the leaseholder, for the caller to drop once unlocked. */
MsgDispatcher *
msg_connection_end_lease_locked (MsgConnection *self)
{
  MsgDispatcher *holder = g_steal_pointer (&self->lease);

  msg_mutex_assert_held (&self->lock);

  if (holder != NULL)
    {
      g_atomic_int_add (&n_leases, -1);
      /* The I/O thread polls for input again. */
      msg_connection_kick_locked (self);
    }
  return holder;
}

/* Ends the lease once the context that reads has finished what it was
 * reading; if @from is not %NULL, only a lease @from holds. Returns the
 * reference the lease held on its holder, or %NULL. */
MsgDispatcher *
msg_connection_take_lease_back (MsgConnection *self,
                                MsgDispatcher *from)
{
  MsgDispatcher *holder = NULL;

  msg_mutex_lock (&self->lock);
  while (self->context_reading)
    msg_connection_wait_locked (self);
  if (from == NULL || self->lease == from)
    holder = msg_connection_end_lease_locked (self);
  msg_mutex_unlock (&self->lock);
  return holder;
}

/* I/O thread: takes the socket back, and tells its holder. */
void
msg_connection_revoke_lease (MsgConnection *self)
{
  MsgDispatcher *holder = msg_connection_take_lease_back (self, NULL);

  if (holder != NULL)
    {
      msg_dispatcher_drop_lease (holder, (MsgLease *) self);
      msg_dispatcher_unref (holder);
    }
}

/* Closing ------------------------------------------------------------------ */

/* A connection whose port closed writes its close frame, then reads (and
 * drops) what comes until the peer answers with its own or hangs up: the
 * peer's writes meanwhile do not fail, so it ends with PEER_CLOSED, after
 * everything, not PEER_GONE. Closing an AF_UNIX stream loses nothing
 * already written, so the wait is a courtesy, bounded: a peer that never
 * reads nor hangs up would otherwise pin a descriptor (and a connection)
 * per port for ever. */
static gint n_closing;  /* (atomic): connections with a close deadline */

static gboolean
connection_close_deadline (gpointer data)
{
  msg_connection_fail (data, NULL);
  return G_SOURCE_REMOVE;
}

/* I/O thread, once the close is queued: starts the close deadline,
 * MSG_CLOSE_DEADLINE_MS, or none if MSG_MAX_CLOSING connections wait
 * already. */
void
msg_connection_begin_closing (MsgConnection *self)
{
  guint deadline_ms = MSG_CLOSE_DEADLINE_MS;

  if (self->closing != NULL)
    return;
  if (g_atomic_int_add (&n_closing, 1) >= MSG_MAX_CLOSING)
    deadline_ms = 0;
  self->closing = g_timeout_source_new (deadline_ms);
  g_source_set_static_name (self->closing, "MsgPortMain close deadline");
  g_source_set_callback (self->closing, connection_close_deadline,
                         g_source_ref (&self->source), (GDestroyNotify) msg_source_unref);
  g_source_attach (self->closing, msg_io_thread_get_context ());
}

/* Whether the port at this end closed: what the peer sends from now on
 * goes nowhere, and the ports in it are not even made. */
gboolean
msg_connection_is_closing (MsgConnection *self)
{
  gboolean closing;

  msg_mutex_lock (&self->lock);
  closing = self->close_queued;
  msg_mutex_unlock (&self->lock);
  return closing;
}

static void
connection_end_closing (MsgConnection *self)
{
  if (self->closing == NULL)
    return;
  g_source_destroy (self->closing);
  g_clear_pointer (&self->closing, g_source_unref);
  g_atomic_int_add (&n_closing, -1);
}

/* Ends the connection: the descriptor is closed, what was not written is
 * dropped, and the port at this end emits ::close with @reason (taken). */
void
msg_connection_fail (MsgConnection *self,
                     GError        *reason)
{
  MsgEndpoint *endpoint;
  GQueue dropped;
  gboolean trim;

  /* Nobody else reads it from now on. The context (the I/O thread's)
   * holds a reference on it until g_source_destroy() below: dropping the
   * deadline's is never the last. */
  msg_connection_revoke_lease (self);
  connection_end_closing (self);

  msg_mutex_lock (&self->lock);
  while (self->writing)
    msg_connection_wait_locked (self);
  g_clear_pointer (&self->handed_frame, msg_wire_frame_free);
  g_clear_error (&self->handed_error);
  if (self->state == CONNECTION_DEAD || self->state == CONNECTION_MOVED)
    {
      msg_mutex_unlock (&self->lock);
      g_clear_error (&reason);
      return;
    }
  self->state = CONNECTION_DEAD;
  dropped = self->out.items;
  g_queue_init (&self->out.items);
  trim = self->out.trim_wanted;
  trim |= msg_out_queue_forget (&self->out);
  endpoint = g_steal_pointer (&self->endpoint);
  msg_connection_signal_locked (self);
  msg_mutex_unlock (&self->lock);

  if (self->fd_tag != NULL)
    g_source_remove_unix_fd (&self->source, g_steal_pointer (&self->fd_tag));
  if (self->fd >= 0)
    close (self->fd);
  self->fd = -1;
  g_clear_pointer (&self->decoder, msg_wire_decoder_free);
  g_source_destroy (&self->source);

  msg_out_list_free (&dropped);
  msg_connection_finish_flushes (self);
  if (trim)
    msg_io_give_back_memory ();
  if (reason == NULL)
    reason = g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_GONE,
                                  "The connection to the peer process ended");
  if (endpoint != NULL)
    {
      GError *own_reason = g_error_copy (reason);

      msg_endpoint_disentangle (endpoint, own_reason, g_steal_pointer (&reason));
      msg_endpoint_unref (endpoint);
    }
  g_clear_error (&reason);
}

/* Ends the channel that @self carries because of what was posted on it
 * (@reason, taken: MSG_PORT_ERROR_TOO_LARGE), not because of the socket:
 * its port here ends with @reason, and the close frame queued after what
 * was posted before tells the other end the same (close reasons in
 * docs/wire-format.md). Unlike msg_connection_fail(), what is queued is
 * still written and what comes is still read, up to the peer's close. I/O
 * thread. */
void
msg_connection_end (MsgConnection *self,
                    GError        *reason)
{
  MsgEndpoint *endpoint = NULL;

  msg_mutex_lock (&self->lock);
  if (self->state == CONNECTION_OPEN && !self->close_queued && !self->write_dead &&
      self->endpoint != NULL)
    endpoint = msg_endpoint_ref (self->endpoint);
  msg_mutex_unlock (&self->lock);

  if (endpoint == NULL)
    {
      /* Nothing more can be written: the peer only sees the socket go. */
      msg_connection_fail (self, reason);
      return;
    }
  msg_endpoint_disentangle (endpoint, g_error_copy (reason), reason);
  msg_endpoint_unref (endpoint);
}

/* What a port ends with when the close frame of its peer says @reason. */
GError *
msg_connection_close_reason (MsgWireCloseReason reason)
{
  if (reason == MSG_WIRE_CLOSE_TOO_LARGE)
    return g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_TOO_LARGE,
                                "The other process ended the channel: what was posted "
                                "on it could not cross");
  return msg_endpoint_new_peer_closed_reason ();
}

void
msg_connection_fail_write (MsgConnection *self,
                           int            errsv)
{
  /* The peer hung up. What it wrote before, its close frame perhaps, is
   * still in the socket, and comes first: reading goes on to the end of
   * file, which ends the connection, so that a port whose peer closed
   * ends with PEER_CLOSED even if it was writing then. Nothing more is
   * written or taken to write, and the close deadline bounds the wait for
   * a peer that only shut down its reading. */
  if (errsv == EPIPE || errsv == ECONNRESET)
    {
      GQueue dropped;

      msg_mutex_lock (&self->lock);
      self->write_dead = TRUE;
      dropped = self->out.items;
      g_queue_init (&self->out.items);
      msg_out_queue_forget (&self->out);
      msg_connection_signal_locked (self);
      msg_mutex_unlock (&self->lock);
      msg_out_list_free (&dropped);
      self->want_out = FALSE;
      msg_connection_begin_closing (self);
      return;
    }
  msg_connection_fail (self, g_error_new (MSG_PORT_ERROR, msg_transport_error_code (errsv),
                                          "Writing to the peer process failed: %s",
                                          g_strerror (errsv)));
}

/* The endpoint that what is read goes to, or NULL. */
MsgEndpoint *
msg_connection_ref_target (MsgConnection *self)
{
  MsgEndpoint *endpoint, *target = NULL;

  msg_mutex_lock (&self->lock);
  endpoint = self->endpoint != NULL ? msg_endpoint_ref (self->endpoint) : NULL;
  msg_mutex_unlock (&self->lock);

  if (endpoint != NULL)
    {
      msg_mutex_lock (&endpoint->lock);
      if (endpoint->peer != NULL)
        target = msg_endpoint_ref (endpoint->peer);
      msg_mutex_unlock (&endpoint->lock);
      msg_endpoint_unref (endpoint);
    }
  return target;
}

/* Read-ahead (MSG_READ_AHEAD_HIGH_ITEMS): the endpoint read for pauses
 * its reader, with that endpoint's lock held, and resumes it once it took
 * enough, with no lock held. A paused connection reads nothing: the
 * I/O thread stops polling it for input, and a context that holds its
 * lease gives it back. */
static void
connection_read_pause (MsgReadWatch *watch)
{
  MsgConnection *self = CONNECTION_FROM_READ_WATCH (watch);

  g_source_ref (&self->source);
  g_atomic_int_set (&self->read_paused, 1);
}

static void
connection_read_resume (MsgReadWatch *watch)
{
  MsgConnection *self = CONNECTION_FROM_READ_WATCH (watch);

  g_atomic_int_set (&self->read_paused, 0);
  /* The I/O thread polls for input again. */
  msg_mutex_lock (&self->lock);
  msg_connection_kick_locked (self);
  msg_mutex_unlock (&self->lock);
  msg_source_unref (&self->source);
}

const MsgReadWatchFuncs msg_connection_read_watch_funcs = {
  connection_read_pause,
  connection_read_resume,
};

/* Whether the endpoint read for has all it may hold: read nothing more. */
gboolean
msg_connection_read_paused (MsgConnection *self)
{
  return g_atomic_int_get (&self->read_paused);
}

/* Delivers @item (taken), read from the socket, to *@target, looked up
 * on first use and kept for the rest of the batch: if the channel ends
 * meanwhile, the target has ended too and drops them. */
void
msg_connection_deliver_read (MsgConnection  *self,
                             MsgItem        *item,
                             MsgEndpoint   **target)
{
  if (*target == NULL)
    *target = msg_connection_ref_target (self);
  if (*target != NULL)
    msg_endpoint_deliver_read (*target, item, &self->read_watch);
  else
    msg_item_free (item);
}

/* Flush waiters ----------------------------------------------------------- */

/* What the source of a flush waiter's cancellable holds. */
typedef struct
{
  MsgConnection *connection;  /* a reference on its source */
  GTask         *task;        /* (owned) */
} FlushCancelled;

static void
flush_cancelled_free (gpointer data)
{
  FlushCancelled *cancelled = data;

  msg_source_unref (&cancelled->connection->source);
  g_object_unref (cancelled->task);
  g_free (cancelled);
}

static void
flush_waiter_free (MsgFlushWaiter *waiter)
{
  g_clear_pointer (&waiter->cancelled, g_source_unref);
  g_object_unref (waiter->task);
  g_free (waiter);
}

/* In the task's context: the waiter is cancelled, unless it is done. */
static gboolean
flush_waiter_cancelled (GCancellable *cancellable,
                        gpointer      data)
{
  FlushCancelled *cancelled = data;
  MsgConnection *self = cancelled->connection;
  MsgFlushWaiter *waiter = NULL;

  msg_mutex_lock (&self->lock);
  for (GList *l = self->flush_waiters.head; l != NULL; l = l->next)
    {
      if (((MsgFlushWaiter *) l->data)->task == cancelled->task)
        {
          waiter = l->data;
          g_queue_delete_link (&self->flush_waiters, l);
          break;
        }
    }
  msg_mutex_unlock (&self->lock);

  if (waiter != NULL)
    {
      g_task_return_error_if_cancelled (waiter->task);
      flush_waiter_free (waiter);
    }
  return G_SOURCE_REMOVE;
}

/* In the task's context: returns what msg_connection_finish_flushes()
 * decided, and frees the waiter. */
static gboolean
flush_waiter_return (gpointer data)
{
  MsgFlushWaiter *waiter = data;

  MSG_TSAN_ACQUIRE (waiter);
  if (waiter->ok)
    g_task_return_boolean (waiter->task, TRUE);
  else
    g_task_return_new_error (waiter->task, MSG_PORT_ERROR, MSG_PORT_ERROR_IO,
                             "The connection to the peer process ended before "
                             "everything was written");
  flush_waiter_free (waiter);
  return G_SOURCE_REMOVE;
}

/* Finishes the asynchronous flushes that are done, and all of them if the
 * connection ended (moved: done; failed: not). No lock held. */
void
msg_connection_finish_flushes (MsgConnection *self)
{
  GQueue done = G_QUEUE_INIT;
  MsgFlushWaiter *waiter;
  gboolean ended;

  msg_mutex_lock (&self->lock);
  ended = self->state != CONNECTION_OPEN && self->state != CONNECTION_WRITE_CLOSED;
  while ((waiter = g_queue_peek_head (&self->flush_waiters)) != NULL &&
         (ended || waiter->target <= self->n_written))
    {
      waiter->ok = waiter->target <= self->n_written;
      g_queue_push_tail (&done, g_queue_pop_head (&self->flush_waiters));
    }
  msg_mutex_unlock (&self->lock);

  while ((waiter = g_queue_pop_head (&done)) != NULL)
    {
      GSource *source;

      if (waiter->cancelled != NULL)
        g_source_destroy (waiter->cancelled);
      /* Returned in the task's own context, handed over with the library's
       * annotations: GLib hands an idle over under its context's lock,
       * which ThreadSanitizer cannot see, and a GTask returned from
       * another thread would do the same inside GIO. */
      source = g_idle_source_new ();
      g_source_set_priority (source, g_task_get_priority (waiter->task));
      g_source_set_static_name (source, "MsgPortMain flush_async");
      g_source_set_callback (source, flush_waiter_return, waiter, NULL);
      MSG_TSAN_RELEASE (waiter);
      msg_tsan_glib_begin ();
      g_source_attach (source, g_task_get_context (waiter->task));
      msg_tsan_glib_end ();
      msg_source_unref (source);
    }
}

/* Adds a waiter for @task, which returns once @target frames are written
 * (msg_connection_finish_flushes()), or with %G_IO_ERROR_CANCELLED when
 * its cancellable is, in the task's context. @lock held. */
void
msg_connection_add_flush_waiter_locked (MsgConnection *self,
                                        GTask         *task,
                                        guint64        target)
{
  GCancellable *cancellable = g_task_get_cancellable (task);
  MsgFlushWaiter *waiter;

  msg_mutex_assert_held (&self->lock);

  waiter = g_new0 (MsgFlushWaiter, 1);
  waiter->task = g_object_ref (task);
  waiter->target = target;
  if (cancellable != NULL)
    {
      FlushCancelled *cancelled = g_new0 (FlushCancelled, 1);

      cancelled->connection = self;
      g_source_ref (&self->source);
      cancelled->task = g_object_ref (task);
      waiter->cancelled = g_cancellable_source_new (cancellable);
      g_source_set_static_name (waiter->cancelled, "MsgPortMain flush cancelled");
      g_source_set_callback (waiter->cancelled, G_SOURCE_FUNC (flush_waiter_cancelled),
                             cancelled, flush_cancelled_free);
      g_source_attach (waiter->cancelled, g_task_get_context (task));
    }
  g_queue_push_tail (&self->flush_waiters, waiter);
}
