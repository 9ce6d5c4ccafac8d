/* msg-connection-write.c: posting to a connection, and writing it
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The connection is its endpoint's sink: a post is encoded by the posting
 * thread and written at once when nothing is queued, or queued for the I/O
 * thread, which writes many frames with one sendmsg(), encodes envelopes
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

/* Posts closer together than this are a burst: they are queued for the I/O
 * thread, which writes many with one sendmsg(), rather than written one by
 * one by the posting thread. */
#define BURST_GAP_USEC        10

/* A burst posted from a main-loop callback is handed to the I/O thread
 * when the callback returns; if the thread's context does not come back
 * to its loop by then, after this long at most. */
#define FLUSH_DEADLINE_USEC   1000

static gint burst_gap = BURST_GAP_USEC;  /* (atomic) */

void
msg_transport_set_burst_gap (gint usec)
{
  g_atomic_int_set (&burst_gap, usec >= 0 ? usec : BURST_GAP_USEC);
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
  if (!self->write_blocked && self->out.items.length > 0)
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

/* Called with @self->lock held, after a post queued an item: makes sure
 * the I/O thread will write it. Returns a context to attach a flush to
 * (a reference), or NULL.
 *
 * Nothing to do if the I/O thread was kicked already, or waits for the
 * socket to drain: it writes everything queued when it can. A thread
 * inside a main-loop callback (posting a burst from an idle, say) does
 * not wake the I/O thread for every few messages, as it would otherwise
 * while the two race each other: the I/O thread is kicked once the
 * callback returns, and writes the whole burst with one sendmsg(). Its
 * source is made due FLUSH_DEADLINE_USEC later all the same, whenever it
 * is not already due, so that whatever is queued and not kicked (by a
 * callback that does not return soon, from a context that is not
 * iterated again, or from another thread while a flush is pending) goes
 * out that much later at most: a long callback streams out a burst a
 * millisecond. Setting the ready time wakes the I/O thread (GLib has it
 * recompute its timeout), so a burst costs it two wake-ups. A post
 * outside any callback, or from the I/O thread's own (a relay), kicks at
 * once. */
static GMainContext *
connection_schedule_write_locked (MsgConnection *self)
{
  GSource *current;
  GMainContext *context;

  if (self->kicked || self->write_blocked)
    return NULL;
  current = g_main_current_source ();
  context = current != NULL ? g_source_get_context (current) : NULL;
  if (context == NULL || context == g_source_get_context (&self->source))
    {
      msg_connection_kick_locked (self);
      return NULL;
    }
  if (!self->deadline)
    {
      self->deadline = TRUE;
      g_source_set_ready_time (&self->source, g_get_monotonic_time () + FLUSH_DEADLINE_USEC);
    }
  if (self->flush_scheduled)
    return NULL;
  self->flush_scheduled = TRUE;
  return g_main_context_ref (context);
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
  struct iovec iov[2];
  gsize total = 0;
  guint n_iov = msg_out_item_add_iov (item, iov, &total);
  ssize_t n;

  n = connection_send_from_poster_locked (self, iov, n_iov);
  if (n > 0 && (gsize) n == total)
    {
      self->n_written++;
      g_queue_push_tail_link (done, &item->link);
      return NULL;
    }
  if (n > 0)
    item->offset += n;
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

  n_iov = msg_out_queue_fill_iov (&self->out, iov, FALSE, &total);
  if (n_iov == 0)
    return;

  n = connection_send_from_poster_locked (self, iov, n_iov);
  if (n > 0)
    self->n_written += msg_out_queue_advance (&self->out, n, done, &close_written);
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
                                 MsgOutItem        *item,
                                 MsgItem       **queued)
{
  if (item->envelope == NULL && item->encoded.fds == NULL && *queued != NULL)
    item->message = (GVariant *) g_steal_pointer (queued);
  msg_out_queue_push (&self->out, item);
}

/* MsgSinkFuncs.deliver: any thread, with the endpoint's lock held. */
static MsgItem *
connection_deliver (MsgSink *sink,
                    MsgItem *queued)
{
  MsgConnection *self = CONNECTION_FROM_SINK (sink);
  GVariant *data = msg_item_is_envelope (queued) ? NULL : (GVariant *) queued;
  GMainContext *flush_context = NULL;
  GQueue written = G_QUEUE_INIT;
  GQueue helped = G_QUEUE_INIT;
  GList *link;
  MsgOutItem *item;
  gint64 now;

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
  now = g_get_monotonic_time ();
  if (item->envelope == NULL && item->encoded.fds == NULL &&
      now - self->last_post >= g_atomic_int_get (&burst_gap))
    {
      if (self->out.items.length == 0)
        item = connection_write_direct_locked (self, item, &written);
      else if (self->write_blocked && !self->writing && self->write_errno == 0)
        {
          connection_queue_message_locked (self, item, &queued);
          item = NULL;
          connection_help_write_locked (self, &helped);
        }
    }
  self->last_post = now;
  /* Else, or if the socket did not take all of it, the I/O thread writes
   * the rest. */
  if (item != NULL)
    {
      connection_queue_message_locked (self, item, &queued);
      flush_context = connection_schedule_write_locked (self);
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
  /* What this thread wrote at once: it read the bytes itself, and the
   * message is still @queued's. */
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
  connection_deliver,
  connection_release,
};

gboolean
msg_transport_is_socket_sink (MsgSink *sink)
{
  return sink != NULL && sink->funcs == &msg_connection_sink_funcs;
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
      if (head->envelope != NULL)
        {
          MsgEnvelope *envelope = g_steal_pointer (&head->envelope);
          GError *error = NULL;

          /* Posters only append behind it, so it can be encoded in place,
           * unlocked: the ports it carries may need other locks. */
          msg_mutex_unlock (&self->lock);
          if (!self->codec->encode (envelope, &head->encoded, &error))
            {
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

gboolean
msg_transport_flush (MsgSink       *sink,
                     GCancellable  *cancellable,
                     GError       **error)
{
  MsgConnection *self = CONNECTION_FROM_SINK (sink);
  gulong handler = 0;
  guint64 target;
  gboolean done;

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
