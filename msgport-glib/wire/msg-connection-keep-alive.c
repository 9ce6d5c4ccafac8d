/* msg-connection-keep-alive.c: noticing a peer process that stopped
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * With a keep-alive interval set on its port (MsgPortMain:keep-alive-interval),
 * a connection pings its peer every interval, and ends with
 * MSG_PORT_ERROR_KEEP_ALIVE_TIMEOUT once nothing at all came from the peer
 * for two intervals: no pong, no message, no byte. Pongs are sent by the
 * peer's I/O thread, so a peer whose main loop is merely busy keeps
 * answering. All of it runs on the I/O thread, on a timer that is a child
 * of the connection's source (destroyed with it), and costs nothing when
 * no interval is set on either end.
 *
 * Reading may be paused at either end (read-ahead: the port has all it
 * may hold until its context takes some). Then pings and pongs are not
 * read, so:
 * - an end whose own reading is paused counts no silence: it is not
 *   listening;
 * - an end whose reading is paused, and whose peer pings it, shows that it
 *   is alive by sending a pong every interval the peer announced.
 * Pings and pongs are queued only when nothing else is waiting to be
 * written: bytes already queued will show the same once the peer reads
 * them, and a peer that sends pings without reading cannot make this end
 * queue pongs without bound.
 */

#include "config.h"

#include <sys/ioctl.h>

#include "msg-connection-private.h"
#include "msg-port-error.h"
#include "msg-lock-private.h"

/* The shortest period of the timer, whatever the peer announces: a
 * hostile peer cannot make this end send more than 100 pongs a second. */
#define KEEP_ALIVE_MIN_MS 10

static gboolean keep_alive_tick (gpointer data);

/* Whether bytes wait in the socket, unread. */
static gboolean
connection_has_input (MsgConnection *self)
{
  int n = 0;

  return self->fd >= 0 && ioctl (self->fd, FIONREAD, &n) == 0 && n > 0;
}

/* I/O thread: makes the timer match what this end needs now: its own
 * interval, and the peer's (to show that it is alive while it does not
 * read). */
void
msg_connection_update_keep_alive (MsgConnection *self)
{
  guint own, period;

  msg_mutex_lock (&self->lock);
  own = self->state == CONNECTION_OPEN ? self->keep_alive_ms : 0;
  msg_mutex_unlock (&self->lock);

  period = own;
  if (self->peer_ping_ms > 0 && self->fd >= 0)
    period = period == 0 ? self->peer_ping_ms : MIN (period, self->peer_ping_ms);
  if (period > 0)
    period = MAX (period, KEEP_ALIVE_MIN_MS);

  if (period == self->keep_alive_period)
    return;
  msg_connection_stop_keep_alive (self);
  if (period == 0 || self->fd < 0)
    return;

  self->keep_alive_period = period;
  self->seen_rx_count = g_atomic_int_get (&self->rx_count);
  self->last_heard = g_get_monotonic_time ();
  self->keep_alive = g_timeout_source_new (period);
  g_source_set_static_name (self->keep_alive, "MsgPortMain keep-alive");
  g_source_set_callback (self->keep_alive, keep_alive_tick, self, NULL);
  /* A child: destroyed with the connection's source, and dispatched in
   * the I/O thread's context with it. */
  g_source_add_child_source (&self->source, self->keep_alive);
  /* The first ping goes at once: it tells the peer the interval. */
  if (own > 0 && (g_atomic_int_get (&self->peer_features) & MSG_WIRE_FEATURE_KEEP_ALIVE) != 0)
    msg_connection_queue_control_if_idle (self, MSG_WIRE_FRAME_PING, own);
}

/* I/O thread. */
void
msg_connection_stop_keep_alive (MsgConnection *self)
{
  if (self->keep_alive == NULL)
    return;
  /* A destroyed source let go of its children already. */
  if (!g_source_is_destroyed (&self->source))
    g_source_remove_child_source (&self->source, self->keep_alive);
  g_clear_pointer (&self->keep_alive, g_source_unref);
  self->keep_alive_period = 0;
}

static gboolean
keep_alive_tick (gpointer data)
{
  MsgConnection *self = data;
  gint64 now = g_get_monotonic_time ();
  gint rx_count = g_atomic_int_get (&self->rx_count);
  gboolean paused = msg_connection_read_paused (self);
  guint own;
  MsgConnectionState state;

  msg_mutex_lock (&self->lock);
  own = self->keep_alive_ms;
  state = self->state;
  msg_mutex_unlock (&self->lock);
  if (state != CONNECTION_OPEN || self->fd < 0)
    return G_SOURCE_CONTINUE;  /* it ends with the connection */

  /* Not listening is not silence; neither is what waits in the socket
   * unread (this thread may have been held up itself). */
  if (rx_count != self->seen_rx_count || paused || connection_has_input (self))
    {
      self->seen_rx_count = rx_count;
      self->last_heard = now;
    }

  if (own > 0)
    {
      if (now - self->last_heard > 2 * (gint64) MAX (own, KEEP_ALIVE_MIN_MS) * 1000)
        {
          msg_connection_fail (self, g_error_new (MSG_PORT_ERROR, MSG_PORT_ERROR_KEEP_ALIVE_TIMEOUT,
                                                  "The peer process did not answer for %" G_GINT64_FORMAT
                                                  " ms (keep-alive interval %u ms)",
                                                  (now - self->last_heard) / 1000, own));
          return G_SOURCE_CONTINUE;
        }
      if ((g_atomic_int_get (&self->peer_features) & MSG_WIRE_FEATURE_KEEP_ALIVE) != 0)
        msg_connection_queue_control_if_idle (self, MSG_WIRE_FRAME_PING, own);
    }
  if (paused && self->peer_ping_ms > 0)
    msg_connection_queue_control_if_idle (self, MSG_WIRE_FRAME_PONG, 0);
  return G_SOURCE_CONTINUE;
}
