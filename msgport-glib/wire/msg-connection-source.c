/* msg-connection-source.c: a connection's GSource on the I/O thread
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A connection is a GSource attached to the I/O thread's context: it
 * polls the socket, is made ready when a post needs the I/O thread (a
 * kick), and on each dispatch takes back what a context that read handed
 * back, writes, reads, and leases the socket again when it has read all
 * there was. Its reference count is the connection's.
 */

#include "config.h"

#include <string.h>
#include <unistd.h>

#include "msg-connection-private.h"
#include "msg-io-thread-private.h"
#include "msg-lock-private.h"
#include "msg-socket-private.h"
#include "msg-transport-private.h"

static GSourceFuncs connection_source_funcs;

/* Creates a connection on @fd (taken) that is the sink of @endpoint (a
 * reference is taken): what reaches @endpoint is written to @fd, and what is
 * read from @fd goes to @endpoint's peer. Ports in frames cross through
 * @codec. */
MsgConnection *
msg_connection_new (int                 fd,
                    MsgEndpoint        *endpoint,
                    const MsgPortCodec *codec)
{
  GSource *source;
  MsgConnection *self;

  source = g_source_new (&connection_source_funcs, sizeof (MsgConnection));
  self = (MsgConnection *) source;
  g_source_set_static_name (source, "MsgPortMain connection");
  /* GLib blocks a source that may not recurse while it dispatches, which
   * takes its descriptor out of the poll set and puts it back: a wake-up
   * of the I/O thread, and an empty main-loop iteration, after every read.
   * The dispatch never iterates the I/O context, so it cannot recurse. */
  g_source_set_can_recurse (source, TRUE);
  g_mutex_init (&self->lock);
  g_cond_init (&self->written_cond);
  g_queue_init (&self->out.items);
  self->sink.funcs = &msg_connection_sink_funcs;
  self->read_watch.funcs = &msg_connection_read_watch_funcs;
  self->codec = codec;
  self->fd = fd;
  msg_socket_grow_send_buffer (fd);
  self->endpoint = msg_endpoint_ref (endpoint);
  self->state = CONNECTION_OPEN;
  self->decoder = msg_wire_decoder_new ();
  self->forks = msg_io_thread_get_forks ();
  self->polled = G_IO_IN | G_IO_HUP | G_IO_ERR;
  self->fd_tag = g_source_add_unix_fd (source, fd, self->polled);
  g_source_set_ready_time (source, -1);

  return self;
}

/* Makes @self the sink of its endpoint and starts it on the I/O thread. */
void
msg_connection_start (MsgConnection *self)
{
  MsgEndpoint *endpoint = self->endpoint;
  GMainContext *context;

  g_source_ref (&self->source);  /* owned by the endpoint, as its sink */
  msg_endpoint_set_sink (endpoint, &self->sink);
  msg_mutex_lock (&self->lock);
  msg_connection_kick_locked (self);
  msg_mutex_unlock (&self->lock);
  context = msg_io_thread_get_context ();
  msg_tsan_glib_begin ();
  g_source_attach (&self->source, context);
  msg_tsan_glib_end ();
  msg_source_unref (&self->source);
}

/* What connection_dispatch() does. */
static void
connection_service (GSource *source)
{
  MsgConnection *self = (MsgConnection *) source;
  GIOCondition revents = 0, wanted;
  MsgConnectionState state;
  gboolean leased, paused, closing, keep_alive_changed;

  /* Both calls below wake this thread's context again when they change
   * anything: only make them when something did change. */
  msg_mutex_lock (&self->lock);
  if (self->kicked || self->deadline)
    {
      self->kicked = FALSE;
      self->deadline = FALSE;
      g_source_set_ready_time (source, -1);
    }
  state = self->state;
  keep_alive_changed = self->keep_alive_changed;
  self->keep_alive_changed = FALSE;
  msg_mutex_unlock (&self->lock);

  if (keep_alive_changed)
    msg_connection_update_keep_alive (self);

  if (state != CONNECTION_OPEN && state != CONNECTION_WRITE_CLOSED)
    return;

  /* Reading resumed after a hang-up left it out of the poll set. */
  if (self->unpolled && !msg_connection_read_paused (self))
    {
      self->polled = G_IO_IN | G_IO_HUP | G_IO_ERR;
      self->fd_tag = g_source_add_unix_fd (source, self->fd, self->polled);
      self->unpolled = FALSE;
    }
  if (self->fd_tag != NULL)
    revents = g_source_query_unix_fd (source, self->fd_tag);

  /* What a context that read gave back with its lease comes before
   * anything else: a close frame read before a write fails with EPIPE
   * still ends the port with PEER_CLOSED. */
  if (!msg_connection_take_handed (self))
    return;
  if (state == CONNECTION_OPEN && !self->write_dead)
    msg_connection_write (self);
  msg_connection_finish_flushes (self);
  if (self->fd < 0)
    return;

  /* The I/O thread does not poll a leased socket for input, but hears of
   * a hang-up or an error, which it handles itself. */
  msg_mutex_lock (&self->lock);
  leased = self->lease != NULL;
  closing = self->close_queued;
  msg_mutex_unlock (&self->lock);
  if (closing && self->closing == NULL)
    msg_connection_begin_closing (self);
  if (leased && (revents & (G_IO_HUP | G_IO_ERR)) != 0)
    {
      msg_connection_revoke_lease (self);
      leased = FALSE;
    }
  /* With no lease out, only this thread reads; what a context gave back
   * meanwhile (a close frame, say, before the end of file) comes before
   * anything read after it. */
  if (!leased)
    {
      if (!msg_connection_take_handed (self))
        return;
      if (msg_connection_read (self, revents))
        msg_connection_maybe_lease (self);
    }

  msg_mutex_lock (&self->lock);
  leased = self->lease != NULL;
  msg_mutex_unlock (&self->lock);
  paused = msg_connection_read_paused (self);
  if (self->fd < 0)
    return;
  if (paused && !self->want_out && (revents & (G_IO_HUP | G_IO_ERR)) != 0)
    {
      /* poll() reports a hang-up whatever it is asked: while the port
       * takes what was read, the socket is not polled at all (the rest of
       * what the peer sent, and its end of file, wait in it). */
      if (self->fd_tag != NULL)
        g_source_remove_unix_fd (source, g_steal_pointer (&self->fd_tag));
      self->unpolled = TRUE;
      return;
    }
  wanted = (leased || paused ? 0 : G_IO_IN) | G_IO_HUP | G_IO_ERR |
           (self->want_out ? G_IO_OUT : 0);
  if (self->fd_tag != NULL && wanted != self->polled)
    {
      g_source_modify_unix_fd (source, self->fd_tag, wanted);
      self->polled = wanted;
    }
}

static gboolean
connection_dispatch (GSource     *source,
                     GSourceFunc  callback,
                     gpointer     user_data)
{
  connection_service (source);
  msg_source_dispatched (source);
  return G_SOURCE_CONTINUE;
}

static void
connection_finalize (GSource *source)
{
  MsgConnection *self = (MsgConnection *) source;

  msg_source_finalizing (source);
  g_assert (self->endpoint == NULL);
  g_assert (self->lease == NULL);
  g_assert (self->closing == NULL);
  g_clear_pointer (&self->handed_frame, msg_wire_frame_free);
  g_clear_error (&self->handed_error);
  g_clear_pointer (&self->keep_alive, g_source_unref);
  if (self->fd >= 0)
    close (self->fd);
  g_assert (self->flush_waiters.length == 0);
  msg_out_list_free (&self->out.items);
  msg_out_list_free (&self->garbage);
  g_clear_pointer (&self->decoder, msg_wire_decoder_free);
  g_cond_clear (&self->written_cond);
  g_mutex_clear (&self->lock);
  msg_source_finalized (source);
}

static GSourceFuncs connection_source_funcs = {
  .dispatch = connection_dispatch,
  .finalize = connection_finalize,
};
