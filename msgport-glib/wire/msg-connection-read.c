/* msg-connection-read.c: reading a connection's socket
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * One recvmsg() at a time into the connection's decoder, with the
 * descriptors that came with it; the frames decoded are delivered to the
 * port at this end: messages, ports (imported through the connection's
 * MsgPortCodec), and the close frame. The I/O thread reads, or a context
 * that holds the socket's lease (msg-context-reads.c), which hands back
 * what only the I/O thread may handle. Message data goes to the port
 * unchecked: its own context checks it (msg_item_check()).
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

#define READ_SIZE             (256 * 1024)

/* Message data that the context of the port it is for checks and maps
 * (MsgUnchecked): a frame that holds only that. */
typedef struct
{
  MsgUnchecked  parent;
  MsgWireFrame *frame;
  guint         n_fds;  /* the message's descriptors (its envelope's
                         * fd_list): what its handles may index */
} FrameData;

static GVariant *
frame_data_check (MsgUnchecked  *unchecked,
                  GError       **error)
{
  FrameData *self = (FrameData *) unchecked;
  GVariant *data = NULL;
  gint32 handle;

  if (msg_wire_frame_map_data (self->frame, error))
    data = g_steal_pointer (&self->frame->data);
  /* Handles index the descriptors that came with the message, or are
   * -1; checked once the data is known to be in normal form. */
  if (data != NULL && self->n_fds > 0 && !msg_wire_check_handles (data, self->n_fds, &handle))
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_PROTOCOL,
                   "Invalid data from the peer process: a message holds the handle %"
                   G_GINT32_FORMAT ", which does not index its %u descriptors",
                   handle, self->n_fds);
      g_clear_pointer (&data, g_variant_unref);
    }
  msg_wire_frame_free (self->frame);
  g_free (self);
  return data;
}

static void
frame_data_free (MsgUnchecked *unchecked)
{
  FrameData *self = (FrameData *) unchecked;

  msg_wire_frame_free (self->frame);
  g_free (self);
}

static const MsgUncheckedFuncs frame_data_funcs = {
  .check = frame_data_check,
  .free = frame_data_free,
};

/* Takes the data of @frame, which must be checked or mapped, and its
 * handles against @n_fds descriptors. */
static MsgUnchecked *
frame_data_steal (MsgWireFrame *frame,
                  guint         n_fds)
{
  FrameData *self = g_new0 (FrameData, 1);
  MsgWireFrame *data = msg_wire_frame_new (MSG_WIRE_FRAME_MESSAGE,
                                           g_steal_pointer (&frame->data), 0);

  data->data_unchecked = frame->data_unchecked;
  data->data_fd = frame->data_fd;
  data->data_type = g_steal_pointer (&frame->data_type);
  data->data_size = frame->data_size;
  frame->data_unchecked = FALSE;
  frame->data_fd = -1;
  self->parent.funcs = &frame_data_funcs;
  self->n_fds = n_fds;
  self->parent.size = data->data_fd >= 0 ? data->data_size : g_variant_get_size (data->data);
  self->frame = data;
  return &self->parent;
}

/* The item for the message data of @frame (taken from it), with its
 * descriptors and room for its ports in *@envelope if it needs one. What
 * costs in proportion to the data, the walk that checks it is in normal
 * form and the mapping of a memfd, is left to the context of the port it
 * is for (msg_item_check() in its dispatcher): on the I/O thread, one
 * peer's large messages would hold up every other channel of the process.
 * So is the check of the handles of a message with descriptors, which
 * needs that walk. */
MsgItem *
msg_connection_item_from_frame (MsgWireFrame  *frame,
                                MsgEnvelope  **envelope)
{
  GUnixFDList *fd_list = NULL;
  guint n_fds = 0;
  MsgItem *item;

  *envelope = NULL;
  if (frame->message_fds != NULL && frame->message_fds->len > 0)
    {
      n_fds = frame->message_fds->len;
      /* The list takes the descriptors. */
      fd_list = g_unix_fd_list_new_from_array ((const int *) (void *) frame->message_fds->data, (gint) n_fds);
      g_array_set_size (frame->message_fds, 0);
    }

  if (frame->data_fd >= 0 ||
      ((frame->data_unchecked || n_fds > 0) && frame->data != NULL && (frame->n_ports > 0 || n_fds > 0)))
    item = msg_item_new_unchecked_envelope (frame_data_steal (frame, n_fds), frame->n_ports, envelope);
  else if (frame->n_ports > 0 || n_fds > 0)
    {
      *envelope = msg_envelope_new_message (g_steal_pointer (&frame->data), frame->n_ports);
      item = msg_item_from_envelope (*envelope);
    }
  else if (frame->data_unchecked)
    {
      frame->data_unchecked = FALSE;
      return msg_item_new_unchecked (g_steal_pointer (&frame->data));
    }
  else
    return msg_item_new_message (g_steal_pointer (&frame->data));

  (*envelope)->fd_list = fd_list;
  return item;
}

/* Takes @frame; a message goes to *@target (msg_connection_deliver_read()).
 * Returns FALSE if the connection failed. */
gboolean
msg_connection_handle_frame (MsgConnection  *self,
                             MsgWireFrame   *frame,
                             MsgEndpoint   **target)
{
  MsgEnvelope *envelope;
  MsgItem *item;
  GError *error = NULL;

  switch (frame->kind)
    {
    case MSG_WIRE_FRAME_HELLO:
      /* Bits this version does not know are ignored: they are features of
       * a later one. */
      g_atomic_int_set (&self->peer_features,
                        (gint) (frame->args[0] & MSG_WIRE_FEATURES_ALL) | MSG_CONNECTION_PEER_HELLO);
      msg_wire_frame_free (frame);
      /* A message with descriptors may wait for it (msg_connection_write()). */
      msg_mutex_lock (&self->lock);
      if (self->out.items.length > 0)
        msg_connection_kick_locked (self);
      msg_mutex_unlock (&self->lock);
      return TRUE;
    case MSG_WIRE_FRAME_ACK:
      msg_connection_acknowledged (self, frame->args[0], frame->args[1]);
      msg_wire_frame_free (frame);
      return TRUE;
    case MSG_WIRE_FRAME_PING:
      /* Answered at once, by whoever reads; the interval tells this end
       * how often to show it is alive while it does not read
       * (msg-connection-keep-alive.c). */
      self->peer_ping_ms = (guint) MIN (frame->args[0], G_MAXUINT);
      msg_wire_frame_free (frame);
      msg_connection_queue_control_if_idle (self, MSG_WIRE_FRAME_PONG, 0);
      msg_connection_update_keep_alive (self);
      return TRUE;
    case MSG_WIRE_FRAME_PONG:
      /* What it says, that the peer is alive, every read says. */
      msg_wire_frame_free (frame);
      return TRUE;
    case MSG_WIRE_FRAME_MESSAGE:
    case MSG_WIRE_FRAME_CLOSE:
    default:
      break;
    }

  if (frame->kind == MSG_WIRE_FRAME_CLOSE)
    {
      MsgWireCloseReason close_reason = frame->close_reason;
      MsgEndpoint *endpoint;
      MsgConnectionState state;

      msg_wire_frame_free (frame);
      self->peer_closed = TRUE;
      msg_mutex_lock (&self->lock);
      endpoint = self->endpoint != NULL ? msg_endpoint_ref (self->endpoint) : NULL;
      state = self->state;
      msg_mutex_unlock (&self->lock);
      if (state == CONNECTION_WRITE_CLOSED)
        {
          /* Both close frames have crossed: nothing more can come. */
          g_clear_pointer (&endpoint, msg_endpoint_unref);
          msg_connection_fail (self, NULL);
          return FALSE;
        }
      /* Our end answers with its own close frame, then both sides hang
       * up. */
      if (endpoint != NULL)
        {
          msg_endpoint_disentangle (endpoint, msg_connection_close_reason (close_reason),
                                    msg_connection_close_reason (close_reason));
          msg_endpoint_unref (endpoint);
        }
      return TRUE;
    }

  /* Our port closed: nothing goes to it any more. A frame that would
   * cost something to take in (ports to make, a memfd to map) or holds
   * descriptors is dropped here, its descriptors closed at once. */
  if ((frame->n_ports > 0 || frame->data_fd >= 0 || frame->message_fds != NULL) &&
      msg_connection_is_closing (self))
    {
      msg_wire_frame_free (frame);
      return TRUE;
    }
  item = msg_connection_item_from_frame (frame, &envelope);
  for (guint i = 0; envelope != NULL && i < frame->n_ports; i++)
    {
      envelope->ports[i] = self->codec->import (&frame->ports[i], &error);
      if (envelope->ports[i] == NULL)
        {
          msg_wire_frame_free (frame);
          msg_item_free (item);
          msg_connection_fail (self, error);
          return FALSE;
        }
    }
  msg_wire_frame_free (frame);
  msg_connection_deliver_read (self, item, target);

  return TRUE;
}

/* Delivers the frames the decoder holds, until the endpoint read for has
 * all it may hold, or the turn's *@budget is spent (the rest wait in the
 * decoder). FALSE if the connection failed. */
static gboolean
msg_connection_decode (MsgConnection *self,
                       gssize        *budget)
{
  MsgEndpoint *target = NULL;
  gboolean ok = TRUE;

  while (ok && *budget > 0 && !msg_connection_read_paused (self))
    {
      MsgWireFrame *frame = NULL;
      GError *error = NULL;

      if (self->decoder == NULL)
        ok = FALSE;
      else if (!msg_wire_decoder_next (self->decoder, &frame, &error))
        {
          if (error == NULL)
            break;
          msg_connection_fail (self, error);
          ok = FALSE;
        }
      else
        {
          *budget -= MSG_CONNECTION_FRAME_COST + (gssize) frame->n_ports * MSG_CONNECTION_PORT_COST;
          ok = msg_connection_handle_frame (self, frame, &target);
        }
    }
  g_clear_pointer (&target, msg_endpoint_unref);
  return ok;
}

static void
connection_eof (MsgConnection *self)
{
  MsgConnectionState state;

  msg_mutex_lock (&self->lock);
  state = self->state;
  msg_mutex_unlock (&self->lock);

  if (state == CONNECTION_WRITE_CLOSED)
    msg_connection_fail (self, NULL);  /* both sides said all they had */
  else if (!msg_wire_decoder_is_empty (self->decoder))
    msg_connection_fail (self, g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_GONE,
                                                    "The peer process hung up in the middle of a message"));
  else
    msg_connection_fail (self, g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_GONE,
                                                    "The peer process exited or closed its end of the channel"));
}

/* One recvmsg() of at most @limit bytes into the decoder, by the reader
 * of the moment; *@n_read is how many it took. */
MsgRecvResult
msg_connection_recv (MsgConnection  *self,
                     gsize           limit,
                     gsize          *n_read,
                     GError        **error)
{
  union {
    struct cmsghdr header;
    char           buffer[CMSG_SPACE (sizeof (int) * MSG_WIRE_MAX_FDS_PER_SEND)];
  } control;
  struct msghdr message = { 0, };
  struct iovec iov;
  struct cmsghdr *cmsg;
  int fds[MSG_WIRE_MAX_FDS_PER_SEND];
  guint n_fds = 0;
  gsize size;
  ssize_t n;

  iov.iov_base = msg_wire_decoder_reserve (self->decoder, READ_SIZE, &size);
  iov.iov_len = MIN (size, MIN (limit, MSG_CONNECTION_MAX_READ_SIZE));
  *n_read = 0;
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control.buffer;
  message.msg_controllen = sizeof control.buffer;

  do
    n = msg_io_syscalls ()->recvmsg (self->fd, &message, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    {
      int errsv = errno;

      if (errsv == EAGAIN || errsv == EWOULDBLOCK)
        return RECV_AGAIN;
      g_set_error (error, MSG_PORT_ERROR, msg_transport_error_code (errsv),
                   "Reading from the peer process failed: %s", g_strerror (errsv));
      return RECV_FAILED;
    }

  for (cmsg = CMSG_FIRSTHDR (&message); cmsg != NULL; cmsg = CMSG_NXTHDR (&message, cmsg))
    {
      if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS)
        {
          guint count = (cmsg->cmsg_len - CMSG_LEN (0)) / sizeof (int);

          for (guint j = 0; j < count && n_fds < G_N_ELEMENTS (fds); j++)
            memcpy (&fds[n_fds++], CMSG_DATA (cmsg) + j * sizeof (int), sizeof (int));
        }
    }

  if ((message.msg_flags & MSG_CTRUNC) != 0)
    {
      /* The control buffer holds SCM_MAX_FD descriptors, more than one
       * sendmsg() can carry, and a stream socket never joins the
       * descriptors of two sends in one read: the kernel dropped them
       * because this process could not take them (out of descriptors, or
       * refused by a security module). */
      for (guint j = 0; j < n_fds; j++)
        close (fds[j]);
      g_set_error_literal (error, MSG_PORT_ERROR, MSG_PORT_ERROR_TOO_MANY_OPEN_FILES,
                           "Descriptors that came with a message could not be "
                           "received: this process is out of file descriptors");
      return RECV_FAILED;
    }
  if (n == 0)
    {
      for (guint j = 0; j < n_fds; j++)
        close (fds[j]);
      return RECV_EOF;
    }

  msg_wire_decoder_commit (self->decoder, n, fds, n_fds);
  g_atomic_int_inc (&self->rx_count);
  *n_read = n;
  return (gsize) n < iov.iov_len ? RECV_DRAINED : RECV_DATA;
}

/* I/O thread: decodes what is pending, then reads the socket if @revents
 * says it is readable, within the turn's budget of work
 * (MSG_CONNECTION_TURN_BUDGET), and not while reading is paused
 * (read-ahead). Returns TRUE if it read all there was and the connection
 * is still open: the socket may then be leased
 * (msg_connection_maybe_lease()). */
gboolean
msg_connection_read (MsgConnection *self,
                     GIOCondition   revents)
{
  gssize budget = MSG_CONNECTION_TURN_BUDGET;

  /* Frames handed on with the port, left by a context that read, or by
   * the last turn, come first. */
  if (!msg_connection_decode (self, &budget) || msg_connection_read_paused (self))
    return FALSE;
  if (budget > 0 && (revents & (G_IO_IN | G_IO_HUP | G_IO_ERR)) == 0)
    return FALSE;

  while (budget > 0)
    {
      GError *error = NULL;
      gsize n_read;

      switch (msg_connection_recv (self, budget, &n_read, &error))
        {
        case RECV_AGAIN:
          return TRUE;
        case RECV_EOF:
          connection_eof (self);
          return FALSE;
        case RECV_FAILED:
          msg_connection_fail (self, error);
          return FALSE;
        case RECV_DRAINED:
          budget -= n_read;
          if (!msg_connection_decode (self, &budget) || msg_connection_read_paused (self))
            return FALSE;
          /* All read, and all delivered unless the budget ran out. */
          if (budget > 0)
            return TRUE;
          break;
        case RECV_DATA:
          budget -= n_read;
          if (!msg_connection_decode (self, &budget) || msg_connection_read_paused (self))
            return FALSE;
          break;
        default:
          g_assert_not_reached ();
        }
    }

  /* Fair to the other connections: come back on the next iteration, for
   * the rest of the socket or of the decoder. */
  msg_mutex_lock (&self->lock);
  msg_connection_kick_locked (self);
  msg_mutex_unlock (&self->lock);
  return FALSE;
}

/* I/O thread: what a context that read handed back. FALSE if the
 * connection failed. */
gboolean
msg_connection_take_handed (MsgConnection *self)
{
  MsgWireFrame *frame;
  GError *error;
  MsgEndpoint *target = NULL;
  gboolean ok = TRUE;

  msg_mutex_lock (&self->lock);
  frame = g_steal_pointer (&self->handed_frame);
  error = g_steal_pointer (&self->handed_error);
  msg_mutex_unlock (&self->lock);

  if (frame != NULL)
    ok = msg_connection_handle_frame (self, frame, &target);
  g_clear_pointer (&target, msg_endpoint_unref);
  if (ok && error != NULL)
    {
      msg_connection_fail (self, g_steal_pointer (&error));
      ok = FALSE;
    }
  g_clear_error (&error);
  return ok;
}
