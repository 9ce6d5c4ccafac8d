/* msg-connection-write.c: posting to a connection, and writing it
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Over 1,000 lines, on purpose: direct writes by posting threads, the
 * burst a main-loop callback holds, the queue the I/O thread drains and
 * flushes are one writer, whose rules (who may write when, and in which
 * order) must be read together; the out queue itself (msg-out-queue.c),
 * the codec (msg-wire.c) and the flush waiters it completes
 * (msg-connection.c) are apart.
 *
 * The connection is its endpoint's sink: a post is encoded by the posting
 * thread and written at once when nothing is queued (unless an earlier
 * post of the same main-loop callback was), or queued for the I/O thread,
 * which writes many frames with one sendmsg(), encodes envelopes
 * (ports in them are exported through the connection's MsgPortCodec), and
 * waits for a full socket to drain. flush() waits for what was posted to
 * be written.
 */

#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "msg-connection-private.h"
#include "msg-io-thread-private.h"
#include "msg-lock-private.h"
#include "msg-transport-private.h"

/* A burst posted from a main-loop callback is handed to the I/O thread
 * when the callback returns; if the thread's context does not come back
 * to its loop by then, after this long at most. This bounds how long a
 * held message waits; it never decides a message's path: whether a post
 * is written at once or queued is decided in connection_deliver(), from
 * the queue, a write in progress and the callback's own earlier post
 * alone, before this deadline is armed, and what the deadline wakes, the
 * I/O thread, writes exactly what a return of the callback would have
 * had it write: the queue. */
#define FLUSH_DEADLINE_USEC   1000

static gint always_queue;  /* (atomic): tests only */

void
msg_transport_set_always_queue (gboolean always)
{
  g_atomic_int_set (&always_queue, always);
}

/* A one-shot source, attached to the context of a thread that posted a
 * burst from one of its callbacks, that kicks the I/O thread once the
 * callback has returned. */
typedef struct
{
  MsgConnection *connection;  /* (owned): a reference on its source */
  gboolean       ran;
} ConnectionFlush;

static gboolean
connection_flush_run (gpointer data)
{
  ConnectionFlush *flush = data;
  MsgConnection *self = flush->connection;

  msg_mutex_lock (&self->lock);
  flush->ran = TRUE;
  self->flush_scheduled = FALSE;
  self->flush_context = NULL;
  if (!self->write_blocked && (self->out.items.length > 0 || self->ack_messages > 0))
    msg_connection_kick_locked (self);
  msg_mutex_unlock (&self->lock);
  return G_SOURCE_REMOVE;
}

static void
connection_flush_free (gpointer data)
{
  ConnectionFlush *flush = data;
  MsgConnection *self = flush->connection;

  /* Its context went away first. */
  if (!flush->ran)
    connection_flush_run (flush);
  msg_source_unref (&self->source);
  g_free (flush);
}

/* The context of the main-loop callback the calling thread is in, if it
 * is not the I/O thread's own (a relay); NULL outside any callback. */
static GMainContext *
connection_callback_context (MsgConnection *self)
{
  GSource *current = g_main_current_source ();
  GMainContext *context = current != NULL ? g_source_get_context (current) : NULL;

  return context != g_source_get_context (&self->source) ? context : NULL;
}

/* Called with @self->lock held: if @context is that of the dispatcher
 * that reads @self's socket (the usual case for a reply, posted from the
 * handler of the message it answers), the number of main-loop iterations
 * it has made, which tells this callback from one of a later iteration
 * without a source of its own. */
static gboolean
connection_lease_iteration_locked (MsgConnection *self,
                                   GMainContext  *context,
                                   guint         *iteration)
{
  msg_mutex_assert_held (&self->lock);

  if (self->lease == NULL || msg_dispatcher_get_context (self->lease) != context)
    return FALSE;
  msg_dispatcher_is_polling (self->lease, iteration);
  return TRUE;
}

/* Called with @self->lock held: whether a post from a callback of
 * @context (NULL outside any callback) is held, queued until the callback
 * returns rather than written. It is when an earlier post of the same
 * callback was not: one whose flush (a source in @context, run when the
 * callback has returned) has not run yet, or, if the socket's reader
 * dispatches in @context, one of the same iteration of it. Then *@flush_context
 * is set to @context (a reference) if no flush was attached yet, for the
 * caller to attach one, which kicks the I/O thread once the callback has
 * returned. A callback that posts a burst (from an idle, say) thus costs
 * one sendmsg() for its first message and one for the rest, written
 * together by the I/O thread, which it wakes once; a callback that posts
 * one message (a reply) writes it at once. Held messages wait for nothing
 * but the callback's return (or flush(), or FLUSH_DEADLINE_USEC at most:
 * see connection_schedule_write_locked()).
 *
 * Other callbacks of the same iteration count as the same callback: they
 * are dispatched before the flush, which was attached during this one. */
static gboolean
connection_holds_locked (MsgConnection  *self,
                         GMainContext   *context,
                         GMainContext  **flush_context)
{
  guint iteration;

  msg_mutex_assert_held (&self->lock);

  if (context == NULL)
    return FALSE;
  if (self->flush_scheduled)
    return self->flush_context == context;
  if (self->hold_context != context ||
      !connection_lease_iteration_locked (self, context, &iteration) ||
      iteration != self->hold_iteration)
    return FALSE;
  self->flush_scheduled = TRUE;
  self->flush_context = context;
  *flush_context = g_main_context_ref (context);
  return TRUE;
}

/* Called with @self->lock held: the first post of a callback of @context
 * (NULL outside any) was written, or queued; what the callback posts
 * after it is held until it returns. Returns @context (a reference) to
 * attach a flush to, or NULL if none is needed: outside any callback; in
 * a callback of the socket's reader, whose iteration is noted instead
 * (a reply then costs no source); or if a flush is attached already, in
 * another thread's context, whose callback returns without regard to
 * this one. */
static GMainContext *
connection_begin_hold_locked (MsgConnection *self,
                              GMainContext  *context)
{
  guint iteration;

  msg_mutex_assert_held (&self->lock);

  if (context == NULL || self->flush_scheduled)
    return NULL;
  if (connection_lease_iteration_locked (self, context, &iteration))
    {
      self->hold_context = context;
      self->hold_iteration = iteration;
      return NULL;
    }
  self->flush_scheduled = TRUE;
  self->flush_context = context;
  return g_main_context_ref (context);
}

/* Called with @self->lock held, after a post queued an item: makes sure
 * the I/O thread will write it.
 *
 * Nothing to do if the I/O thread was kicked already, or waits for the
 * socket to drain: it writes everything queued when it can. A post held
 * by its callback (connection_holds_locked()) does not wake the I/O
 * thread for every few messages, as it would otherwise while the two race
 * each other: the I/O thread is kicked once the callback returns, by the
 * flush, and writes the whole burst with one sendmsg(). Its source is
 * made due FLUSH_DEADLINE_USEC later all the same, whenever it is not
 * already due, so that what is held goes out that much later at most if
 * the callback does not return soon, or its context is not iterated
 * again: a long callback streams out a burst a millisecond. Setting the
 * ready time wakes the I/O thread (GLib has it recompute its timeout), so
 * a burst costs it two wake-ups. A post queued behind others outside any
 * callback, from a callback of a context that holds nothing, or from the
 * I/O thread's own (a relay), kicks at once; so does the first post of a
 * callback whose direct write the socket did not take whole. */
static void
connection_schedule_write_locked (MsgConnection *self,
                                  gboolean       held)
{
  msg_mutex_assert_held (&self->lock);

  if (self->kicked || self->write_blocked)
    return;
  if (!held)
    msg_connection_kick_locked (self);
  else if (!self->deadline)
    {
      self->deadline = TRUE;
      g_source_set_ready_time (&self->source, g_get_monotonic_time () + FLUSH_DEADLINE_USEC);
    }
}

static void
connection_attach_flush (MsgConnection *self,
                         GMainContext  *context)
{
  ConnectionFlush *flush = g_new0 (ConnectionFlush, 1);
  GSource *source = g_idle_source_new ();

  flush->connection = self;
  g_source_ref (&self->source);
  g_source_set_static_name (source, "MsgPortMain flush");
  g_source_set_priority (source, G_PRIORITY_HIGH);
  g_source_set_callback (source, connection_flush_run, flush, connection_flush_free);
  g_source_attach (source, context);
  g_source_unref (source);
  g_main_context_unref (context);
}

/* One non-blocking sendmsg() of @iov by a posting thread, with @self->lock
 * held (and dropped around the call) and the endpoint's, which serializes
 * posters: @writing makes the I/O thread wait before it writes, closes or
 * moves the descriptor. The poster holds an endpoint lock, so it cannot end
 * the connection: the I/O thread does, with the error recorded here.
 * Returns what sendmsg() did. */
static ssize_t
connection_send_from_poster_locked (MsgConnection *self,
                                    struct iovec  *iov,
                                    guint          n_iov)
{
  struct msghdr message = { 0, };
  ssize_t n;
  int errsv;

  msg_mutex_assert_held (&self->lock);

  message.msg_iov = iov;
  message.msg_iovlen = n_iov;
  self->writing = TRUE;
  msg_mutex_unlock (&self->lock);

  n = msg_io_syscalls ()->sendmsg (self->fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
  errsv = errno;

  msg_mutex_lock (&self->lock);
  self->writing = FALSE;
  if (n < 0 && errsv != EINTR && errsv != EAGAIN && errsv != EWOULDBLOCK)
    self->write_errno = errsv;
  /* Waiters re-check under the lock, which this thread still holds. */
  msg_connection_signal_locked (self);
  return n;
}

/* Writes @item (a plain message, no descriptors) at once, from the posting
 * thread, when nothing is queued ahead of it: a message that finds the
 * connection idle costs one sendmsg() and no wake-up of the I/O thread,
 * which only writes what the socket would not take at once.
 *
 * Called with @self->lock held and the endpoint's. The latter serializes
 * posters to this connection, so the queue stays empty while @self->lock
 * is dropped around the system call, and the I/O thread finds nothing to
 * write; @writing makes it wait before it closes or moves the descriptor
 * (msg_connection_fail(), connection_move()). Returns NULL if all of @item went
 * out (it is added to @done, for the caller to free once @self->lock is
 * released), else @item, its offset advanced, for the queue. */
static MsgOutItem *
connection_write_direct_locked (MsgConnection *self,
                                MsgOutItem       *item,
                                GQueue        *done)
{
  struct iovec iov[3];
  guint8 ack[MSG_WIRE_MAX_CONTROL_SIZE];
  gsize ack_size = 0;
  gsize total = 0;
  guint n_iov = 0;
  ssize_t n;

  msg_mutex_assert_held (&self->lock);

  /* What the port here took goes with it, in the same sendmsg(): a reply
   * carries the acknowledgement of what it answers. */
  if (self->ack_messages > 0)
    {
      ack_size = msg_wire_encode_control (MSG_WIRE_FRAME_ACK, self->ack_messages,
                                          self->ack_bytes, ack);
      self->ack_messages = self->ack_bytes = 0;
      iov[0].iov_base = ack;
      iov[0].iov_len = ack_size;
      total = ack_size;
      n_iov = 1;
    }
  n_iov += msg_out_item_add_iov (item, iov + n_iov, &total);

  n = connection_send_from_poster_locked (self, iov, n_iov);
  if (n > 0 && (gsize) n == total)
    {
      self->n_written++;
      /* A flush_async() may wait for this one. */
      msg_connection_signal_locked (self);
      g_queue_push_tail_link (done, &item->link);
      return NULL;
    }
  if (ack_size > 0 && n < (gssize) ack_size)
    {
      /* The rest of the acknowledgement goes first. */
      MsgOutItem *rest = msg_out_item_new ();
      gsize written = n > 0 ? (gsize) n : 0;

      rest->mid_frame = written > 0;
      rest->encoded.head = g_bytes_new (ack + written, ack_size - written);
      msg_out_queue_push (&self->out, rest);
      self->n_queued++;
    }
  else if (n > 0)
    item->offset += n - ack_size;
  return item;
}

/* Writes what the socket takes of the plain frames at the head of the
 * queue, from the posting thread, while the I/O thread waits for the
 * socket to drain (@write_blocked). A socket takes writes again as soon as
 * it is not full, but polls writable only once three quarters are free:
 * meanwhile, a sender of large messages that does not wait (the I/O thread
 * does) builds message after message, hundreds queue, and it keeps copying
 * into fresh pages while the I/O thread copies from cold ones. Writing
 * here spends the poster's time on the transport and keeps the queue, and
 * the memory, short: cross-process W-1m went from about 0.9 of the blocking
 * socket floor to above it.
 *
 * Called with the endpoint's lock (which serializes posters) and
 * @self->lock held; @write_blocked means the I/O thread is not in
 * msg_connection_write(), which waits for @writing to clear before it goes on.
 * Frames with descriptors, envelopes and the close are left to the I/O
 * thread. What was written whole goes to @done, for the caller to free
 * once @self->lock is released. */
static void
connection_help_write_locked (MsgConnection *self,
                              GQueue        *done)
{
  struct iovec iov[MSG_OUT_MAX_IOV];
  gboolean close_written = FALSE;
  gsize total = 0;
  guint n_iov;
  ssize_t n;

  msg_mutex_assert_held (&self->lock);

  n_iov = msg_out_queue_fill_iov (&self->out, iov, FALSE, &total);
  if (n_iov == 0)
    return;

  n = connection_send_from_poster_locked (self, iov, n_iov);
  if (n > 0)
    {
      self->n_written += msg_out_queue_advance (&self->out, n, done, &close_written);
      /* A flush_async() may wait for these. */
      msg_connection_signal_locked (self);
    }
  /* The I/O thread gives the memory back, not a poster. */
  if (self->out.trim_wanted)
    msg_connection_kick_locked (self);
}

/* Called with @self->lock held: queues @item for the I/O thread. A plain
 * message that is not in a memfd (whose frame holds a copy) goes with it:
 * the item takes the poster's reference from *@queued, and whoever frees
 * the item once it is written, after reading its bytes in sendmsg(), drops
 * it (which orders that read before the free, for ThreadSanitizer too). */
static void
connection_queue_message_locked (MsgConnection  *self,
                                 MsgOutItem     *item,
                                 MsgItem       **queued)
{
  msg_mutex_assert_held (&self->lock);

  if (item->envelope == NULL && item->encoded.fds == NULL && *queued != NULL)
    item->message = (GVariant *) g_steal_pointer (queued);
  msg_out_queue_push (&self->out, item);
}

/* Queues a control frame (docs/wire-format.md, "Version 2") for the I/O
 * thread to write, unless nothing more may be written. Any thread, no
 * endpoint lock needed: control frames carry no message, so where they
 * fall between the messages posted by others does not matter. */
void
msg_connection_queue_control (MsgConnection    *self,
                              MsgWireFrameKind  kind,
                              guint64           arg0,
                              guint64           arg1)
{
  guint8 buffer[MSG_WIRE_MAX_CONTROL_SIZE];
  gsize size = msg_wire_encode_control (kind, arg0, arg1, buffer);
  MsgOutItem *item;

  if (msg_connection_is_forked (self))
    return;
  item = msg_out_item_new ();
  item->encoded.head = g_bytes_new (buffer, size);

  msg_mutex_lock (&self->lock);
  if (self->state != CONNECTION_OPEN || self->close_queued || self->write_dead)
    {
      msg_mutex_unlock (&self->lock);
      msg_out_item_free (item);
      return;
    }
  msg_out_queue_push (&self->out, item);
  self->n_queued++;
  connection_schedule_write_locked (self, FALSE);
  msg_mutex_unlock (&self->lock);
}

/* MsgSinkFuncs.consumed: the port here took @n_messages messages of
 * @n_bytes that the peer sent (its dispatcher, before it emits them), or,
 * with 0, the batch it took them in ended. No lock held, the port's
 * context. The peer is told with the next write of this connection, a
 * reply say, in the same sendmsg(); if the batch ended and nothing was
 * written, the I/O thread writes it once the callback returns (as it does
 * a callback's burst: connection_holds_locked()). */
static void
connection_consumed (MsgSink *sink,
                     guint    n_messages,
                     guint64  n_bytes)
{
  MsgConnection *self = CONNECTION_FROM_SINK (sink);
  GMainContext *flush_context = NULL;

  if (msg_connection_is_forked (self) ||
      !(g_atomic_int_get (&self->peer_features) & MSG_WIRE_FEATURE_ACK))
    return;

  msg_mutex_lock (&self->lock);
  if (self->state != CONNECTION_OPEN || self->close_queued || self->write_dead)
    ;
  else if (n_messages > 0)
    {
      self->ack_messages += n_messages;
      self->ack_bytes += n_bytes;
    }
  else if (self->ack_messages > 0)
    {
      GMainContext *context = connection_callback_context (self);

      if (context == NULL)
        msg_connection_kick_locked (self);
      else if (!self->flush_scheduled)
        {
          self->flush_scheduled = TRUE;
          self->flush_context = context;
          flush_context = g_main_context_ref (context);
        }
      else if (self->flush_context != context)
        /* Another thread's callback holds its burst: not this one. */
        msg_connection_kick_locked (self);
    }
  msg_mutex_unlock (&self->lock);
  if (flush_context != NULL)
    connection_attach_flush (self, flush_context);
}

/* Called with @self->lock held, by the I/O thread before it writes: an
 * acknowledgement of what is still untold goes behind what is queued. */
void
msg_connection_queue_ack_locked (MsgConnection *self)
{
  guint8 buffer[MSG_WIRE_MAX_CONTROL_SIZE];
  MsgOutItem *item;

  msg_mutex_assert_held (&self->lock);

  if (self->ack_messages == 0 || self->state != CONNECTION_OPEN ||
      self->close_queued || self->write_dead)
    return;
  item = msg_out_item_new ();
  item->encoded.head = g_bytes_new (buffer, msg_wire_encode_control (MSG_WIRE_FRAME_ACK,
                                                                     self->ack_messages,
                                                                     self->ack_bytes, buffer));
  self->ack_messages = self->ack_bytes = 0;
  msg_out_queue_push (&self->out, item);
  self->n_queued++;
}

/* Queues a ping or pong, only if nothing else waits to be written: what
 * waits shows the peer the same once it reads, and a peer that pings
 * without reading cannot make this end queue pongs without bound. Any
 * thread. */
void
msg_connection_queue_control_if_idle (MsgConnection    *self,
                                      MsgWireFrameKind  kind,
                                      guint64           arg)
{
  gboolean idle;

  msg_mutex_lock (&self->lock);
  idle = self->out.items.length == 0 && !self->writing;
  msg_mutex_unlock (&self->lock);
  if (idle)
    msg_connection_queue_control (self, kind, arg, 0);
}

/* Sends this end's hello, which must be the first frame it writes to a
 * socket: before msg_connection_start(), for a socket new to this end.
 *
 * The calling thread writes it at once, as a poster writes a message that
 * finds nothing queued: until msg_connection_start(), the connection is
 * neither its endpoint's sink (nothing is posted to it) nor on the I/O
 * thread, so nobody else writes @fd. Only what the socket does not take
 * (it is full, or gone: @write_errno says so) is queued for the I/O
 * thread. A hello queued whole would sit ahead of the first posts of the
 * new port until the I/O thread wakes up: each would find something
 * queued and go to the I/O thread rather than be written at once
 * (connection_deliver()), and a poster that keeps up with the I/O thread
 * would keep finding its queue non-empty, every message of a burst
 * batched behind the hello instead of written by its poster. */
void
msg_connection_send_hello (MsgConnection *self)
{
  guint8 buffer[MSG_WIRE_MAX_CONTROL_SIZE];
  gsize size = msg_wire_encode_control (MSG_WIRE_FRAME_HELLO, MSG_WIRE_FEATURES_ALL, 0, buffer);
  GQueue written = G_QUEUE_INIT;
  MsgOutItem *item = msg_out_item_new ();

  item->encoded.head = g_bytes_new (buffer, size);

  msg_mutex_lock (&self->lock);
  g_assert (self->state == CONNECTION_OPEN && self->out.items.length == 0 && !self->writing);
  self->n_queued++;
  item = connection_write_direct_locked (self, item, &written);
  if (item != NULL)
    {
      msg_out_queue_push (&self->out, item);
      connection_schedule_write_locked (self, FALSE);
    }
  msg_mutex_unlock (&self->lock);
  msg_out_list_free (&written);
}

/* MsgSinkFuncs.deliver: any thread, with the endpoint's lock held. */
static MsgItem *
connection_deliver (MsgSink *sink,
                    MsgItem *queued)
{
  MsgConnection *self = CONNECTION_FROM_SINK (sink);
  /* A message read from another process and not checked yet (a port
   * sent on with what it had not emitted) goes to the I/O thread too. */
  GVariant *data = msg_item_is_envelope (queued) || msg_item_is_unchecked_message (queued)
                   ? NULL : (GVariant *) queued;
  GMainContext *callback_context = NULL;
  GMainContext *flush_context = NULL;
  gboolean held = FALSE;
  GQueue written = G_QUEUE_INIT;
  GQueue helped = G_QUEUE_INIT;
  GList *link;
  MsgOutItem *item;

  /* A child forked with the parent's port: whatever ends up here (a post
   * that did not go through msg_port_main_post_message(), the close of a
   * port closed or dropped in the child) is dropped, never written into
   * the parent's stream. */
  if (msg_connection_is_forked (self))
    return queued;

  item = g_new0 (MsgOutItem, 1);
  item->link.data = item;

  /* A plain message is encoded here, by the thread that posts it; one
   * that carries ports or ends the channel (or is NULL) is left to the I/O
   * thread, which is the only one that may stop a connection to move it. */
  if (data != NULL && msg_wire_check_message (data, 0, NULL))
    {
      MsgWireFrame frame = { .kind = MSG_WIRE_FRAME_MESSAGE, .data = data, .data_fd = -1 };

      if (!msg_wire_encode (&frame, &item->encoded, NULL))
        g_assert_not_reached ();
    }
  else
    {
      item->envelope = msg_item_steal_envelope (g_steal_pointer (&queued));
      item->is_close = item->envelope->kind == MSG_ENVELOPE_CLOSE;
    }

  msg_mutex_lock (&self->lock);
  if (self->state != CONNECTION_OPEN || self->close_queued || self->write_dead)
    {
      msg_mutex_unlock (&self->lock);
      if (item->envelope != NULL)
        queued = msg_item_from_envelope (g_steal_pointer (&item->envelope));
      g_clear_pointer (&item->message, msg_variant_unref);
      msg_wire_encoded_clear (&item->encoded);
      g_free (item);
      return queued;
    }
  if (item->is_close)
    self->close_queued = TRUE;
  self->n_queued++;
  /* The path is decided by the connection's state alone, never by a
   * clock: a message is written at once whenever nothing is queued and no
   * write is in progress (the I/O thread writes only what is queued, and
   * posters are serialized), as Mojo's channel does, so that a reply
   * costs one sendmsg() and no thread hop whatever the machine's speed.
   * Batching comes from the socket being full (what it would not take is
   * queued, and what is posted behind it too) and from main-loop
   * callbacks: after the first post of a callback, the rest are held
   * until it returns (connection_holds_locked()). */
  if (item->envelope == NULL && item->encoded.fds == NULL &&
      !g_atomic_int_get (&always_queue))
    {
      callback_context = connection_callback_context (self);
      held = connection_holds_locked (self, callback_context, &flush_context);
      if (!held)
        {
          if (self->out.items.length == 0)
            item = connection_write_direct_locked (self, item, &written);
          else if (self->write_blocked && !self->writing && self->write_errno == 0)
            {
              connection_queue_message_locked (self, item, &queued);
              item = NULL;
              connection_help_write_locked (self, &helped);
            }
          /* Whichever way this first post went, the callback's next ones
           * are held. */
          flush_context = connection_begin_hold_locked (self, callback_context);
        }
    }
  /* Else, or if the socket did not take all of it, the I/O thread writes
   * the rest. */
  if (item != NULL)
    {
      /* A small frame is copied behind those queued before it, and the
       * message stays @queued's: this thread frees it, not the I/O thread
       * (whose frees of memory this thread allocates would contend for
       * the allocator's lock with this thread's next posts). */
      if (msg_out_queue_append_frame (&self->out, item))
        g_queue_push_tail_link (&written, &item->link);
      else
        connection_queue_message_locked (self, item, &queued);
      connection_schedule_write_locked (self, held);
    }
  /* What a helping write finished was queued, and holds its poster's
   * reference on its message, perhaps the last: the I/O thread frees it
   * (it waits for the socket to drain, so it comes soon), not this
   * thread, which holds the endpoint's lock. */
  while ((link = g_queue_pop_head_link (&helped)) != NULL)
    g_queue_push_tail_link (&self->garbage, link);
  msg_mutex_unlock (&self->lock);
  if (flush_context != NULL)
    connection_attach_flush (self, flush_context);
  /* What this thread wrote at once, or copied into a chunk: it read the
   * bytes itself, and the message is still @queued's. */
  msg_out_list_free (&written);

  /* The poster's reference, unless a queued item took it, goes back to
   * msg_endpoint_deliver(), which drops it once the endpoint's lock is
   * released: the last unref of a GVariant may call its creator's
   * GDestroyNotify, which may post on this very port. */
  return queued;
}

static void
connection_release (MsgSink *sink)
{
  msg_source_unref (&CONNECTION_FROM_SINK (sink)->source);
}

const MsgSinkFuncs msg_connection_sink_funcs = {
  .deliver = connection_deliver,
  .release = connection_release,
  .consumed = connection_consumed,
};

gboolean
msg_transport_is_socket_sink (MsgSink *sink)
{
  return sink != NULL && sink->funcs == &msg_connection_sink_funcs;
}

gboolean
msg_transport_check_process (MsgSink  *sink,
                             GError  **error)
{
  if (!msg_transport_is_socket_sink (sink) || !msg_connection_is_forked (CONNECTION_FROM_SINK (sink)))
    return TRUE;

  g_set_error_literal (error, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED,
                       "The port's socket belongs to the parent process: a port made "
                       "before fork() cannot be used in the child");
  return FALSE;
}

/* The socket is full: connection_dispatch() polls it for output, and the
 * next msg_connection_write() takes everything posted meanwhile, which
 * therefore needs no kick. */
static void
connection_wait_writable (MsgConnection *self)
{
  self->want_out = TRUE;
  msg_mutex_lock (&self->lock);
  self->write_blocked = TRUE;
  msg_mutex_unlock (&self->lock);
}

/* @item, the head of the queue, could not be encoded: it is over the
 * wire's limits (a message posted in this process before its port was
 * bridged to another, which post_message() could not refuse), or has
 * descriptors for a peer that takes none. Its channel ends there, with
 * @reason (taken: TOO_LARGE on both ends; DATA_CLONE here, a plain close
 * there), and no other channel does (not the one that carried the port,
 * say): what was posted before it has gone out, the close frame follows,
 * and @item and what was posted after it are dropped, as a closing
 * channel drops them. The endpoint ends first, so that nothing more is
 * posted behind the close. */
static void
connection_end_at (MsgConnection *self,
                   MsgOutItem    *item,
                   GError        *reason)
{
  GQueue dropped = G_QUEUE_INIT;
  MsgOutItem *tail;
  gboolean ended;

  msg_mutex_lock (&self->lock);
  /* A close posted behind it (its port closed meanwhile) stays: the
   * channel was ending anyway. */
  ended = self->close_queued;
  msg_mutex_unlock (&self->lock);
  if (!ended)
    msg_connection_end (self, g_steal_pointer (&reason));
  g_clear_error (&reason);

  msg_mutex_lock (&self->lock);
  if (self->state != CONNECTION_OPEN)
    {
      /* msg_connection_end() could not queue a close, and failed the
       * connection: its queue, @item with it, is gone. */
      msg_mutex_unlock (&self->lock);
      return;
    }
  tail = g_queue_peek_tail (&self->out.items);
  ended = self->close_queued && tail != item && tail->is_close;
  msg_out_queue_drop (&self->out, item, ended ? tail : NULL, &dropped);
  msg_mutex_unlock (&self->lock);
  msg_out_list_free (&dropped);

  if (!ended)
    msg_connection_fail (self, NULL);
}

void
msg_connection_write (MsgConnection *self)
{
  union {
    struct cmsghdr header;
    char           buffer[CMSG_SPACE (sizeof (int) * MSG_WIRE_MAX_FDS_PER_SEND)];
  } control;
  GQueue garbage;

  self->want_out = FALSE;

  msg_mutex_lock (&self->lock);
  garbage = self->garbage;
  g_queue_init (&self->garbage);
  msg_mutex_unlock (&self->lock);
  msg_out_list_free (&garbage);

  for (;;)
    {
      struct iovec iov[MSG_OUT_MAX_IOV];
      struct msghdr message = { 0, };
      MsgOutItem *head;
      GQueue done = G_QUEUE_INIT;
      gboolean close_written = FALSE;
      guint n_iov, n_fds;
      gsize total;
      gboolean trim;
      ssize_t n;
      int errsv;

      msg_mutex_lock (&self->lock);
      /* A poster writes while this thread waited for the socket to drain
       * (connection_help_write_locked()): only one writes at a time. */
      while (self->writing)
        msg_connection_wait_locked (self);
      self->write_blocked = FALSE;
      msg_connection_queue_ack_locked (self);
      head = self->state == CONNECTION_OPEN ? g_queue_peek_head (&self->out.items) : NULL;
      errsv = self->write_errno;
      if (head == NULL || errsv != 0)
        {
          /* A poster may have written the end of a backlog. */
          trim = self->out.trim_wanted;
          self->out.trim_wanted = FALSE;
          msg_mutex_unlock (&self->lock);
          if (trim)
            msg_io_give_back_memory ();
          if (errsv != 0)
            msg_connection_fail_write (self, errsv);
          return;
        }
      if (head->envelope != NULL && head->envelope->fd_list != NULL)
        {
          gint features = g_atomic_int_get (&self->peer_features);

          /* Descriptors go only to a peer whose hello said it takes
           * them: until it came, this waits (reading it kicks this
           * thread); to one that said not, the channel ends here. */
          if (!(features & MSG_CONNECTION_PEER_HELLO))
            {
              msg_mutex_unlock (&self->lock);
              return;
            }
          if (!(features & MSG_WIRE_FEATURE_FDS))
            {
              MsgEnvelope *envelope = g_steal_pointer (&head->envelope);

              msg_mutex_unlock (&self->lock);
              msg_envelope_free (envelope);
              connection_end_at (self, head,
                                 g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_DATA_CLONE,
                                                      "The peer process cannot receive descriptors"));
              continue;
            }
        }
      if (head->envelope != NULL)
        {
          MsgEnvelope *envelope = g_steal_pointer (&head->envelope);
          GError *error = NULL;

          /* Posters only append behind it, so it can be encoded in place,
           * unlocked: the ports it carries may need other locks. */
          msg_mutex_unlock (&self->lock);
          if (!self->codec->encode (envelope, &head->encoded, &error))
            {
              if (g_error_matches (error, MSG_PORT_ERROR, MSG_PORT_ERROR_TOO_LARGE))
                {
                  /* A message the wire cannot carry, posted before its
                   * port was bridged here: only its channel ends. */
                  connection_end_at (self, head, error);
                  continue;
                }
              msg_connection_fail (self, error);
              return;
            }
          msg_mutex_lock (&self->lock);
          msg_out_queue_count (&self->out, head);
          msg_mutex_unlock (&self->lock);
          continue;
        }

      /* More descriptors than one sendmsg() may carry: one byte each
       * time until the rest fit (msg_out_queue_fill_iov()). */
      n_fds = MIN (msg_out_item_unsent_fds (head), MSG_WIRE_MAX_FDS_PER_SEND);
      n_iov = msg_out_queue_fill_iov (&self->out, iov, TRUE, &total);
      msg_mutex_unlock (&self->lock);

      message.msg_iov = iov;
      message.msg_iovlen = n_iov;
      if (n_fds > 0)
        {
          struct cmsghdr *cmsg;

          memset (control.buffer, 0, sizeof control.buffer);
          message.msg_control = control.buffer;
          message.msg_controllen = CMSG_SPACE (sizeof (int) * n_fds);
          cmsg = CMSG_FIRSTHDR (&message);
          cmsg->cmsg_level = SOL_SOCKET;
          cmsg->cmsg_type = SCM_RIGHTS;
          cmsg->cmsg_len = CMSG_LEN (sizeof (int) * n_fds);
          memcpy (CMSG_DATA (cmsg), &g_array_index (head->encoded.fds, int, head->fds_sent),
                  sizeof (int) * n_fds);
        }

      n = msg_io_syscalls ()->sendmsg (self->fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0)
        {
          errsv = errno;
          if (errsv == EINTR)
            continue;
          if (errsv == EAGAIN || errsv == EWOULDBLOCK)
            {
              connection_wait_writable (self);
              return;
            }
          msg_connection_fail_write (self, errsv);
          return;
        }
      if (n == 0)
        {
          connection_wait_writable (self);
          return;
        }

      /* The descriptors are in the socket now: ours are copies. */
      for (guint i = 0; i < n_fds; i++)
        {
          int *fd = &g_array_index (head->encoded.fds, int, head->fds_sent + i);

          close (*fd);
          *fd = -1;
        }
      head->fds_sent += n_fds;

      msg_mutex_lock (&self->lock);
      self->n_written += msg_out_queue_advance (&self->out, n, &done, &close_written);
      if (done.length > 0)
        msg_connection_signal_locked (self);
      if (close_written)
        self->state = CONNECTION_WRITE_CLOSED;
      trim = self->out.trim_wanted;
      self->out.trim_wanted = FALSE;
      msg_mutex_unlock (&self->lock);

      msg_out_list_free (&done);
      if (trim)
        msg_io_give_back_memory ();
      if (close_written)
        {
          /* Said all we will say. If the peer said so too, we are done;
           * else read until it answers or hangs up. */
          if (self->peer_closed)
            msg_connection_fail (self, NULL);
          else
            shutdown (self->fd, SHUT_WR);
          return;
        }
    }
}

static void
flush_cancelled (GCancellable *cancellable,
                 gpointer      data)
{
  MsgConnection *self = data;

  msg_mutex_lock (&self->lock);
  msg_connection_signal_locked (self);
  msg_mutex_unlock (&self->lock);
}

/* msg_transport_flush() without waiting: @task returns TRUE once
 * everything posted so far was written (at once if it was), FALSE with
 * %MSG_PORT_ERROR_IO if the connection ends first, or
 * %G_IO_ERROR_CANCELLED. Nothing waits in any thread meanwhile: the I/O
 * thread finishes it (msg_connection_finish_flushes()). Any thread. */
void
msg_transport_flush_async (MsgSink *sink,
                           GTask   *task)
{
  MsgConnection *self = CONNECTION_FROM_SINK (sink);
  GError *error = NULL;
  guint64 target;

  if (!msg_transport_check_process (sink, &error))
    {
      g_task_return_error (task, error);
      return;
    }

  msg_mutex_lock (&self->lock);
  target = self->n_queued;
  if (self->n_written >= target)
    {
      msg_mutex_unlock (&self->lock);
      g_task_return_boolean (task, TRUE);
      return;
    }
  if (self->state != CONNECTION_OPEN && self->state != CONNECTION_WRITE_CLOSED)
    {
      msg_mutex_unlock (&self->lock);
      g_task_return_new_error (task, MSG_PORT_ERROR, MSG_PORT_ERROR_IO,
                               "The connection to the peer process ended before "
                               "everything was written");
      return;
    }

  msg_connection_add_flush_waiter_locked (self, task, target);
  /* What a callback of this thread posted may wait for it to return. */
  if (!self->write_blocked)
    msg_connection_kick_locked (self);
  msg_mutex_unlock (&self->lock);
}

gboolean
msg_transport_flush (MsgSink       *sink,
                     GCancellable  *cancellable,
                     GError       **error)
{
  MsgConnection *self = CONNECTION_FROM_SINK (sink);
  gulong handler = 0;
  guint64 target;
  gboolean done;

  /* Nothing is ever written in a forked child: waiting would not end. */
  if (!msg_transport_check_process (sink, error))
    return FALSE;

  g_source_ref (&self->source);
  if (cancellable != NULL)
    handler = g_cancellable_connect (cancellable, G_CALLBACK (flush_cancelled), self, NULL);

  msg_mutex_lock (&self->lock);
  target = self->n_queued;
  /* What a callback of this thread posted may wait for it to return. */
  if (self->n_written < target && !self->write_blocked)
    msg_connection_kick_locked (self);
  while (self->n_written < target &&
         (self->state == CONNECTION_OPEN || self->state == CONNECTION_WRITE_CLOSED) &&
         !g_cancellable_is_cancelled (cancellable))
    msg_connection_wait_locked (self);
  done = self->n_written >= target;
  msg_mutex_unlock (&self->lock);

  if (handler != 0)
    g_cancellable_disconnect (cancellable, handler);
  msg_source_unref (&self->source);

  if (!done && !g_cancellable_set_error_if_cancelled (cancellable, error))
    g_set_error_literal (error, MSG_PORT_ERROR, MSG_PORT_ERROR_IO,
                         "The connection to the peer process ended before "
                         "everything was written");
  return done;
}
