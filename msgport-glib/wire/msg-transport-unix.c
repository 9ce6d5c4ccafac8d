/* msg-transport-unix.c: ports over Unix sockets
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A port whose peer lives in another process is an endpoint L entangled
 * with an endpoint R that has a socket sink: a MsgConnection. What L posts
 * is delivered to R, and so to the connection, which writes it; what the
 * connection reads is delivered to R's peer, L. The same holds for a bridge:
 * when a port of an in-process channel moves to another process, its
 * endpoint E stays here, gets a connection as its sink, and relays between
 * its peer and the socket.
 *
 * Reading, and whatever writing has to wait, happens on one library thread
 * with its own GMainContext, so I/O makes progress whatever the
 * application's main contexts do. A plain message posted while nothing is
 * queued and no write is in progress is written at once by the posting
 * thread, unless an earlier post of the same main-loop callback was: a lone
 * message costs one sendmsg() and no thread switch. Otherwise posting
 * encodes and appends to the connection's output queue, and wakes that
 * thread when the queue was empty or the callback returns: in a burst, one
 * sendmsg() carries many messages, and one recvmsg() brings many in.
 *
 * A port that is itself backed by a socket moves to another process with
 * its descriptor: the I/O thread stops reading it and sends the descriptor
 * along with what was read from it but not delivered (re-encoded) and what
 * was queued for it but not written; the new owner decodes the first before
 * reading the socket and writes the second before anything of its own. No
 * process is left relaying for a port that lives elsewhere.
 *
 * The transport's rooms, from the bottom up, each file with one job:
 *
 *   msg-wire.c                frames, memfds, the receive-buffer pool
 *   msg-io-thread.c           the I/O thread, its context, the system calls
 *   msg-socket.c              socket checks and set-up
 *   msg-out-queue.c           what a connection has to write
 *   msg-connection*.c         a connection: its state, reading, writing,
 *                             context reads (msg-connection-private.h)
 *   msg-transport-unix.c      this file: making, importing, exporting and
 *                             moving ports, the MsgPortCodec of every
 *                             connection
 *
 * Each calls only the ones below it; a connection reaches this file only
 * through its MsgPortCodec.
 *
 * Lock order: endpoint locks, then connection->lock, then the GMainContext
 * lock; a dispatcher's lock is never held with a connection's. The I/O
 * thread never holds connection->lock while it takes an endpoint lock.
 */

#include "config.h"

#include <unistd.h>

#include "msg-connection-private.h"
#include "msg-debug-private.h"
#include "msg-lock-private.h"
#include "msg-socket-private.h"
#include "msg-transport-private.h"

static const MsgPortCodec port_codec;

/* What is left of one frame's limits (docs/wire-format.md, "Limits") for
 * the ports it carries and the state they move with. */
typedef struct
{
  guint   n_fds;
  guint64 n_bytes;
} FrameRoom;

/* Encoding a frame exports the ports in it; moving a port re-encodes what
 * its queue holds, which may carry ports in turn. */
static gboolean connection_export (MsgEndpoint  *endpoint,
                                   MsgWirePort  *port,
                                   FrameRoom    *room,
                                   GError      **error);

MsgEndpoint *
msg_transport_new_endpoint (int      fd,
                            GError **error)
{
  MsgEndpoint *local, *remote;
  MsgConnection *connection;

  if (!msg_transport_check_socket (fd, error) || !msg_socket_set_nonblocking (fd, error))
    return NULL;

  local = msg_endpoint_new ();
  remote = msg_endpoint_new ();
  msg_endpoint_entangle (local, remote);
  connection = msg_connection_new (fd, remote, &port_codec);
  msg_connection_send_hello (connection);
  msg_connection_start (connection);
  msg_endpoint_unref (remote);

  return local;
}

/* Queues what @port's previous owner had not written: the rest of a frame,
 * then whole frames, each with its own descriptors, so that every frame's
 * descriptors are sent with its own first byte. */
static gboolean
connection_queue_prefix (MsgConnection  *self,
                         MsgWirePort    *port,
                         GError        **error)
{
  g_autoptr(GArray) segments = g_array_new (FALSE, FALSE, sizeof (MsgWireSegment));

  if (!msg_wire_port_split_out_prefix (port, segments, error))
    return FALSE;
  for (guint i = 0; i < segments->len; i++)
    {
      MsgWireSegment *segment = &g_array_index (segments, MsgWireSegment, i);

      MsgOutItem *item = msg_out_item_new_raw (port->out_prefix, segment->offset,
                                               segment->size, segment->mid_frame,
                                               port->out_fds, segment->first_fd,
                                               segment->n_fds);

      msg_out_queue_push (&self->out, item);
      self->n_queued++;
    }
  return TRUE;
}

/* A port that arrived in a frame: a new endpoint whose peer is at the
 * other end of @port's socket, with what @port carries of its past. */
static MsgEndpoint *
connection_import (MsgWirePort  *port,
                   GError      **error)
{
  MsgEndpoint *local, *remote;
  MsgConnection *connection;

  if (!msg_transport_check_socket (port->fd, NULL) || !msg_socket_set_nonblocking (port->fd, NULL))
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_PROTOCOL,
                   "Invalid data from the peer process: a transferred port is not "
                   "a connected Unix stream socket");
      return NULL;
    }

  local = msg_endpoint_new ();
  remote = msg_endpoint_new ();
  msg_endpoint_entangle (local, remote);
  connection = msg_connection_new (g_steal_fd (&port->fd), remote, &port_codec);
  msg_endpoint_unref (remote);

  /* Where the socket's handshake stands: the previous owner may have
   * said hello for this end, and heard the peer's. */
  if (!(port->flags & MSG_WIRE_PORT_HELLO_SENT))
    msg_connection_send_hello (connection);
  if (port->flags & MSG_WIRE_PORT_PEER_HELLO)
    {
      msg_wire_decoder_set_peer_hello (connection->decoder, port->peer_features);
      connection->peer_features = (gint) (port->peer_features & MSG_WIRE_FEATURES_ALL) |
                                  MSG_CONNECTION_PEER_HELLO;
    }
  /* Flow control as the previous owner left it: what it posted and the
   * peer did not acknowledge yet is acknowledged to this end. */
  if (port->unacked_messages > 0 || port->unacked_bytes > 0)
    {
      msg_atomic_u64_set (&local->sent_messages, port->unacked_messages);
      msg_atomic_u64_set (&local->sent_bytes, port->unacked_bytes);
    }
  if (port->high_water_mark > 0)
    msg_endpoint_set_high_water_mark (local, port->high_water_mark);
  msg_wire_port_push_in_prefix (port, connection->decoder);
  if (!connection_queue_prefix (connection, port, error))
    {
      /* Not started: nothing reads or writes it yet; failing it ends the
       * port we just made, which nobody has seen. */
      msg_connection_start (connection);
      msg_connection_fail (connection, g_error_copy (*error));
      msg_endpoint_discard (local);
      msg_endpoint_unref (local);
      return NULL;
    }

  msg_connection_start (connection);
  return local;
}

static void
append_encoded (GByteArray     *bytes,
                GArray         *fds,
                MsgWireEncoded *encoded)
{
  msg_wire_encoded_append (encoded, bytes, fds);
  msg_wire_encoded_clear (encoded);
}

/* Encodes @envelope (taken) as a frame, exporting the ports it carries. */
static gboolean
encode_envelope (MsgEnvelope     *envelope,
                 MsgWireEncoded  *encoded,
                 GError         **error)
{
  g_autoptr(MsgWireFrame) frame = NULL;
  guint n_message_fds = envelope->fd_list != NULL ? (guint) g_unix_fd_list_get_length (envelope->fd_list) : 0;
  /* What the ports may take of the frame's limits: all but the message's
   * own descriptors and the memfd its data may go in, and each entry with
   * the padding of its prefixes. */
  FrameRoom room = {
    MSG_WIRE_MAX_FDS - 1 - MIN (n_message_fds, MSG_WIRE_MAX_FDS - 1),
    MSG_WIRE_MAX_PORTS_SIZE - (guint64) envelope->n_ports * (MSG_WIRE_PORT_ENTRY_SIZE + 2 * 7),
  };
  gboolean ok = TRUE;

  /* Data read from another process that was not checked yet (a port
   * sent on with what it had not emitted) is checked by the thread that
   * sends it on: the encoder needs it as a GVariant. Then a message the
   * wire cannot carry (posted in this process, before its port was
   * bridged) fails before its ports are touched: they are discarded with
   * it, not moved first. */
  if (!msg_envelope_check (envelope, error) ||
      (envelope->kind != MSG_ENVELOPE_CLOSE &&
       !msg_wire_check_message (envelope->data, envelope->n_ports, error)) ||
      !msg_transport_check_fds (NULL, n_message_fds, envelope->n_ports, error))
    {
      msg_envelope_free (envelope);
      return FALSE;
    }

  if (envelope->kind == MSG_ENVELOPE_CLOSE)
    {
      frame = msg_wire_frame_new (MSG_WIRE_FRAME_CLOSE, NULL, 0);
      /* The one reason the other end is told: that what was posted
       * could not cross. Any other end is a plain close to it. */
      if (g_error_matches (envelope->reason, MSG_PORT_ERROR, MSG_PORT_ERROR_TOO_LARGE))
        frame->close_reason = MSG_WIRE_CLOSE_TOO_LARGE;
    }
  else
    frame = msg_wire_frame_new (MSG_WIRE_FRAME_MESSAGE,
                                g_steal_pointer (&envelope->data), envelope->n_ports);
  /* The message's descriptors: the frame owns them from here on, and
   * sends or closes them. */
  if (n_message_fds > 0)
    {
      int *fds = g_unix_fd_list_steal_fds (envelope->fd_list, NULL);

      frame->message_fds = g_array_sized_new (FALSE, FALSE, sizeof (int), n_message_fds);
      g_array_append_vals (frame->message_fds, fds, n_message_fds);
      g_free (fds);
    }

  for (guint i = 0; i < envelope->n_ports && ok; i++)
    ok = connection_export (g_steal_pointer (&envelope->ports[i]), &frame->ports[i], &room, error);
  msg_envelope_free (envelope);

  return ok && msg_wire_encode (frame, encoded, error);
}

/* Encodes the items of @self->out that are still envelopes (which
 * exports the ports they carry), in order. Only for the thread that
 * writes @self, and while no other thread adds to @out. */
static gboolean
connection_encode_out (MsgConnection  *self,
                       GError        **error)
{
  g_autoptr(GPtrArray) pending = g_ptr_array_new ();
  gint features;

  msg_mutex_lock (&self->lock);
  for (GList *l = self->out.items.head; l != NULL; l = l->next)
    {
      MsgOutItem *item = l->data;

      if (item->envelope != NULL)
        g_ptr_array_add (pending, item);
    }
  msg_mutex_unlock (&self->lock);

  /* The new owner writes them as they are: descriptors only for a peer
   * that did not say it takes none (if its hello did not come yet, it is
   * of this version, which takes them, or has none to say). */
  features = g_atomic_int_get (&self->peer_features);
  for (guint i = 0; i < pending->len; i++)
    {
      MsgOutItem *item = g_ptr_array_index (pending, i);

      if (item->envelope->fd_list != NULL && (features & MSG_CONNECTION_PEER_HELLO) &&
          !(features & MSG_WIRE_FEATURE_FDS))
        {
          g_set_error_literal (error, MSG_PORT_ERROR, MSG_PORT_ERROR_DATA_CLONE,
                               "The peer process cannot receive descriptors");
          return FALSE;
        }
    }

  for (guint i = 0; i < pending->len; i++)
    {
      MsgOutItem *item = g_ptr_array_index (pending, i);

      /* Unlocked: the ports it carries may need other locks. */
      if (!encode_envelope (g_steal_pointer (&item->envelope), &item->encoded, error))
        return FALSE;
      msg_mutex_lock (&self->lock);
      msg_out_queue_count (&self->out, item);
      msg_mutex_unlock (&self->lock);
    }
  return TRUE;
}

/* The descriptors of the message in @envelope (not those of its ports). */
static guint
envelope_n_fds (MsgEnvelope *envelope)
{
  return envelope->fd_list != NULL ? (guint) g_unix_fd_list_get_length (envelope->fd_list) : 0;
}

/* At least what moving the connection behind a port in flight adds to the
 * frame that carries it: its socket, the descriptors and bytes of what
 * was read and not decoded, of what is queued for it to write, and of the
 * messages queued on the port (one descriptor for each port they carry,
 * which is exact unless such a port moves with a state of its own, their
 * own descriptors, and their data). Called with @self->lock held, on the
 * thread that reads it. */
static void
connection_move_size_locked (MsgConnection *self,
                             guint         *n_fds,
                             guint64       *n_bytes)
{
  msg_mutex_assert_held (&self->lock);

  *n_fds = 1 + msg_wire_decoder_count_fds (self->decoder);
  *n_bytes = msg_wire_decoder_count_bytes (self->decoder) + self->out.bytes;
  for (GList *l = self->out.items.head; l != NULL; l = l->next)
    {
      MsgOutItem *item = l->data;

      *n_fds += msg_out_item_unsent_fds (item);
      if (item->envelope != NULL)
        *n_fds += item->envelope->n_ports + envelope_n_fds (item->envelope);
    }
}

/* The same for the messages queued on @endpoint, with its lock held. */
static void
endpoint_move_size_locked (MsgEndpoint *endpoint,
                           guint       *n_fds,
                           guint64     *n_bytes)
{
  const MsgQueue *queue = &endpoint->queue;

  msg_mutex_assert_held (&endpoint->lock);

  for (guint i = 0; i < queue->length; i++)
    {
      MsgItem *item = queue->items[(queue->head + i) & (queue->capacity - 1)];

      if (msg_item_is_envelope (item))
        *n_fds += msg_item_peek_envelope (item)->n_ports + envelope_n_fds (msg_item_peek_envelope (item));
      *n_bytes += msg_queue_peek_size (queue, i);
    }
}

typedef enum
{
  MOVE_DONE,
  MOVE_IMPOSSIBLE,   /* the connection is ending: bridge instead */
  MOVE_TOO_LARGE,    /* it would not fit in the frame: the connection is
                      * whole (what was queued on the port may be gone) */
  MOVE_FAILED,       /* something was taken, and is lost */
} MoveResult;

/* Moves the connection that backs @endpoint (a port in flight) into
 * @port: its descriptor, and everything read or queued but not handed on. */
static MoveResult
connection_move (MsgConnection    *self,
                 MsgEndpoint      *endpoint,
                 MsgWirePort      *port,
                 const FrameRoom  *room,
                 GError          **error)
{
  g_autoptr(GByteArray) in_bytes = g_byte_array_new ();
  g_autoptr(GByteArray) out_bytes = g_byte_array_new ();
  GArray *in_fds = g_array_new (FALSE, FALSE, sizeof (int));
  GArray *out_fds = g_array_new (FALSE, FALSE, sizeof (int));
  MsgQueue queued = MSG_QUEUE_INIT;
  MsgReadWatch *resume = NULL;
  GQueue unwritten;
  MsgEndpoint *remote;
  MsgOutItem *head;
  MsgItem *read_item;
  gboolean movable, too_large = FALSE;
  gsize out_partial = 0;
  guint n_fds = 0;
  guint64 n_bytes = 0;
  int fd;

  /* Only this thread reads the connection from now on (what a context
   * that read it handed back goes to @endpoint first), and writes it, and
   * nobody can post on @endpoint while it is in flight: the state read
   * here stays true. */
  msg_connection_revoke_lease (self);
  if (!msg_connection_take_handed (self))
    {
      g_array_unref (in_fds);
      g_array_unref (out_fds);
      return MOVE_IMPOSSIBLE;
    }
  msg_mutex_lock (&self->lock);
  movable = self->state == CONNECTION_OPEN && !self->close_queued && !self->write_dead &&
            self->endpoint != NULL;
  head = g_queue_peek_head (&self->out.items);
  /* The rest of a partly written frame travels without descriptors: one
   * whose descriptors are not all sent yet (more than one sendmsg() takes)
   * cannot move; the port is bridged instead. */
  if (head != NULL && head->offset > 0 && msg_out_item_unsent_fds (head) > 0)
    movable = FALSE;
  if (movable)
    connection_move_size_locked (self, &n_fds, &n_bytes);
  msg_mutex_unlock (&self->lock);
  msg_mutex_lock (&endpoint->lock);
  movable = movable && !endpoint->ended;
  if (movable)
    {
      endpoint_move_size_locked (endpoint, &n_fds, &n_bytes);
      too_large = n_fds > room->n_fds || n_bytes > room->n_bytes;
    }
  if (movable && !too_large)
    queued = msg_endpoint_steal_queue_locked (endpoint, &resume);
  msg_mutex_unlock (&endpoint->lock);
  /* This connection, if it paused for @endpoint: it goes on with the port,
   * and its next owner counts afresh. */
  msg_read_watch_resume (resume);
  /* Sized before anything is taken: a port whose state would not fit in
   * the frame that carries it (its queue holds more ports than a frame
   * may carry, say) fails to move, as a whole and untouched, and only its
   * own channel ends (connection_export()). Bridging it instead would
   * leave this process relaying, for as long as the port lives, for
   * whoever stuffed its queue. */
  if (movable && too_large)
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_TOO_LARGE,
                   "A port whose socket and queued messages need %u descriptors and %"
                   G_GUINT64_FORMAT " bytes or more cannot move to another process in "
                   "one frame",
                   n_fds, n_bytes);
      g_array_unref (in_fds);
      g_array_unref (out_fds);
      return MOVE_TOO_LARGE;
    }
  if (!movable)
    {
      g_array_unref (in_fds);
      g_array_unref (out_fds);
      return MOVE_IMPOSSIBLE;
    }

  /* Read but not delivered: re-encoded, then the bytes not decoded yet. */
  while ((read_item = msg_queue_pop (&queued)) != NULL)
    {
      MsgWireEncoded encoded;

      if (!encode_envelope (msg_item_steal_envelope (read_item), &encoded, error))
        {
          msg_queue_clear (&queued);
          msg_wire_close_fds (in_fds);
          g_array_unref (in_fds);
          g_array_unref (out_fds);
          return MOVE_FAILED;
        }
      append_encoded (in_bytes, in_fds, &encoded);
    }
  msg_queue_clear (&queued);

  /* Queued but not encoded yet: encoded now, while the move can still
   * fail as a whole, not once the connection is handed on. Nobody else
   * adds to @out meanwhile (only @endpoint posts here, and it is in
   * flight), and only this thread encodes or writes. */
  if (!connection_encode_out (self, error))
    {
      msg_wire_close_fds (in_fds);
      g_array_unref (in_fds);
      g_array_unref (out_fds);
      return MOVE_FAILED;
    }

  /* Sized again, exactly, now that the ports in its queues are exported
   * (one of them may have moved with a state of its own): still before
   * the connection is taken apart. What was queued on the port is lost
   * (its ports end), as when a port closes; the connection is whole. */
  msg_mutex_lock (&self->lock);
  connection_move_size_locked (self, &n_fds, &n_bytes);
  msg_mutex_unlock (&self->lock);
  n_fds += in_fds->len;
  n_bytes += in_bytes->len;
  if (n_fds > room->n_fds || n_bytes > room->n_bytes)
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_TOO_LARGE,
                   "A port whose socket and queues need %u descriptors and %"
                   G_GUINT64_FORMAT " bytes cannot move to another process in one frame",
                   n_fds, n_bytes);
      msg_wire_close_fds (in_fds);
      g_array_unref (in_fds);
      g_array_unref (out_fds);
      return MOVE_TOO_LARGE;
    }
  msg_wire_decoder_steal (self->decoder, in_bytes, in_fds);
  /* This end said hello when it was made (its hello is written, or in the
   * out-prefix); the peer's may have come. */
  port->flags = MSG_WIRE_PORT_HELLO_SENT;
  if (msg_wire_decoder_get_peer_hello (self->decoder, &port->peer_features))
    port->flags |= MSG_WIRE_PORT_PEER_HELLO;

  msg_mutex_lock (&self->lock);
  while (self->writing)
    msg_connection_wait_locked (self);
  /* What the port took and the peer was not told yet goes first in the
   * out-prefix: its new owner does not know of it. */
  msg_connection_queue_ack_locked (self);
  unwritten = self->out.items;
  g_queue_init (&self->out.items);
  /* What it held goes on with the port, not back to the system. */
  msg_out_queue_forget (&self->out);
  self->state = CONNECTION_MOVED;
  self->n_written = self->n_queued;
  remote = g_steal_pointer (&self->endpoint);
  msg_connection_signal_locked (self);
  msg_mutex_unlock (&self->lock);

  /* Queued but not written, the rest of a partly written frame first:
   * the next owner must not take that for the start of a frame. */
  msg_out_list_flatten (&unwritten, out_bytes, out_fds, &out_partial);
  /* What was posted goes on with the port: flushed as far as this end
   * is concerned. */
  msg_connection_finish_flushes (self);

  fd = self->fd;
  self->fd = -1;
  if (self->fd_tag != NULL)
    g_source_remove_unix_fd (&self->source, g_steal_pointer (&self->fd_tag));
  g_clear_pointer (&self->decoder, msg_wire_decoder_free);
  g_source_destroy (&self->source);

  port->fd = fd;
  port->in_prefix = in_bytes->len > 0 ? g_byte_array_free_to_bytes (g_steal_pointer (&in_bytes)) : NULL;
  port->in_fds = in_fds;
  port->out_prefix = out_bytes->len > 0 ? g_byte_array_free_to_bytes (g_steal_pointer (&out_bytes)) : NULL;
  port->out_fds = out_fds;
  port->out_partial = out_partial;

  /* The endpoint and its remote half end here without a word: the
   * connection is gone, so the close frame they queue goes nowhere. */
  /* What the port posted and the peer did not acknowledge: the
   * acknowledgements go to its new owner now, with the socket. */
  msg_endpoint_get_buffered (endpoint, &port->unacked_messages, &port->unacked_bytes);
  msg_endpoint_discard (endpoint);
  msg_endpoint_unref (remote);
  return MOVE_DONE;
}

/* Puts @endpoint (taken: a port in flight) into @port: moves its socket if
 * it has one, or else makes it a bridge to a new socket pair. */
static gboolean
connection_export (MsgEndpoint  *endpoint,
                   MsgWirePort  *port,
                   FrameRoom    *room,
                   GError      **error)
{
  MsgEndpoint *peer = NULL;
  MsgSink *sink = NULL;
  MsgConnection *bridge;
  int fds[2];

  msg_mutex_lock (&endpoint->lock);
  if (endpoint->peer != NULL)
    peer = msg_endpoint_ref (endpoint->peer);
  msg_mutex_unlock (&endpoint->lock);
  if (peer != NULL)
    sink = msg_endpoint_get_sink (peer);
  /* Its mark goes with it, whichever way it goes. */
  port->high_water_mark = msg_atomic_u64_get (&endpoint->high_water_mark);

  if (msg_transport_is_socket_sink (sink))
    {
      MsgConnection *backing = CONNECTION_FROM_SINK (sink);
      MoveResult result;
      GError *move_error = NULL;

      g_source_ref (&backing->source);
      result = connection_move (backing, endpoint, port, room, &move_error);
      if (result == MOVE_TOO_LARGE)
        {
          /* Its connection still works: its channel ends in order, after
           * what was posted on it, and the close frame tells the other
           * end why; the port, sent on ended below, tells its new owner
           * the same through its bridge. */
          g_debug ("A port could not move to another process: %s", move_error->message);
          msg_connection_end (backing, g_steal_pointer (&move_error));
        }
      else if (result == MOVE_FAILED)
        {
          /* What it carried cannot go on whole: end its channel (the
           * remote end sees the socket close) and send the port on, ended,
           * below, so that only this port closes, not the one carrying
           * it. A local condition (out of descriptors, say), not a
           * programming error: no warning. */
          g_debug ("A port could not move to another process: %s", move_error->message);
          msg_connection_fail (backing, g_steal_pointer (&move_error));
        }
      msg_source_unref (&backing->source);
      if (result == MOVE_DONE)
        {
          guint n_fds = 1 + port->in_fds->len + port->out_fds->len;
          guint64 n_bytes = (port->in_prefix != NULL ? g_bytes_get_size (port->in_prefix) : 0) +
                            (port->out_prefix != NULL ? g_bytes_get_size (port->out_prefix) : 0);

          /* The next port of the frame is sized against what is left. */
          room->n_fds -= MIN (room->n_fds, n_fds);
          room->n_bytes -= MIN (room->n_bytes, n_bytes);
          MSG_DEBUG ("endpoint %p: its socket moved to another process", (gpointer) endpoint);
          msg_endpoint_unref (peer);
          msg_endpoint_unref (endpoint);
          return TRUE;
        }
    }
  g_clear_pointer (&peer, msg_endpoint_unref);

  if (!msg_socket_new_pair (fds))
    {
      int errsv = errno;

      /* The port cannot go on: its peer learns why, and the caller ends
       * the channel that was to carry it with the same reason. */
      GError *reason = g_error_new (MSG_PORT_ERROR, msg_transport_error_code (errsv),
                                    "Cannot create a socket pair for a transferred port: %s",
                                    g_strerror (errsv));

      msg_endpoint_discard_full (endpoint, g_error_copy (reason));
      msg_endpoint_unref (endpoint);
      g_propagate_error (error, reason);
      return FALSE;
    }
  bridge = msg_connection_new (fds[0], endpoint, &port_codec);
  msg_connection_send_hello (bridge);
  msg_connection_start (bridge);
  MSG_DEBUG ("endpoint %p: bridged to another process through a new socket pair (%d, %d)", (gpointer) endpoint, fds[0], fds[1]);
  msg_endpoint_unref (endpoint);
  port->fd = fds[1];
  room->n_fds -= MIN (room->n_fds, 1);
  return TRUE;
}

gboolean
msg_transport_check_fds (MsgSink  *sink,
                         guint     n_fds,
                         guint     n_ports,
                         GError  **error)
{
  if (n_fds == 0)
    return TRUE;
  if (sink != NULL && !msg_transport_is_socket_sink (sink))
    return TRUE;
  if (sink != NULL)
    {
      gint features = g_atomic_int_get (&CONNECTION_FROM_SINK (sink)->peer_features);

      /* Not known yet: the I/O thread waits for it (msg_connection_write()). */
      if ((features & MSG_CONNECTION_PEER_HELLO) && !(features & MSG_WIRE_FEATURE_FDS))
        {
          g_set_error_literal (error, MSG_PORT_ERROR, MSG_PORT_ERROR_DATA_CLONE,
                               "The peer process cannot receive descriptors (its "
                               "msgport-glib is older)");
          return FALSE;
        }
    }
  /* Each port takes a descriptor at least, and a memfd may take one. */
  if ((guint64) n_fds + n_ports > MSG_WIRE_MAX_FDS - 1)
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_TOO_LARGE,
                   "Cannot send %u descriptors and %u ports to another process in one "
                   "message (at most %u in all)", n_fds, n_ports, MSG_WIRE_MAX_FDS - 1);
      return FALSE;
    }
  return TRUE;
}

static const MsgPortCodec port_codec = {
  encode_envelope,
  connection_import,
};
