/* msg-context-reads.c: sockets read by the context their messages go to
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * When the I/O thread has read all there was for a port whose context is
 * waiting in poll(), it leases the socket to that context's dispatcher
 * (msg-dispatcher.c), which polls and reads it from then on, and emits
 * what it read in the same dispatch: a message costs one wake-up, of the
 * thread that handles it. The I/O thread stops polling the socket for
 * input and keeps writing it. What only the I/O thread may do (ports in a
 * message, which may have to be moved; close frames; memfds; errors and
 * end of file) the context hands back with the lease. A watchdog on the
 * I/O thread takes the lease back from a context that stays busy (or
 * stops running) for a watchdog period, so that reading still never waits
 * for an application's main loop; it runs only while a leaseholder is
 * busy. A reader (context or I/O thread) holds connection->context_reading
 * or is the I/O thread with no lease out.
 */

#include "config.h"

#include "msg-connection-private.h"
#include "msg-io-thread-private.h"
#include "msg-lock-private.h"
#include "msg-transport-private.h"

/* A context that holds a lease and neither polls nor iterates for this
 * long loses it. */
#define WATCHDOG_USEC         (50 * 1000)

/* The I/O thread's watchdog: a GSource that keeps the connections whose
 * sockets it leased, and runs a watchdog period after a leaseholder left
 * poll(). */
typedef struct
{
  GSource    source;
  GPtrArray *leased;   /* of MsgConnection, each holding a reference; I/O thread only */
  gint       armed;    /* (atomic) */
} Watchdog;

static Watchdog *watchdog;   /* (atomic): on the I/O thread's context */
static guint watchdog_forks;  /* I/O thread: msg_io_thread_get_forks() when
                               * @watchdog was made */

static MsgLease *
msg_transport_lease_ref (MsgLease *lease)
{
  g_source_ref ((GSource *) lease);
  return lease;
}

static void
msg_transport_lease_unref (MsgLease *lease)
{
  msg_source_unref ((GSource *) lease);
}

static void
watchdog_arm (Watchdog *self)
{
  if (g_atomic_int_compare_and_exchange (&self->armed, 0, 1))
    g_source_set_ready_time (&self->source, g_get_monotonic_time () + WATCHDOG_USEC);
}

static void
msg_transport_watchdog_poke (void)
{
  Watchdog *self = g_atomic_pointer_get (&watchdog);

  if (self != NULL && g_atomic_int_get (&self->armed) == 0)
    watchdog_arm (self);
}

static void
msg_transport_lease_give_back (MsgLease      *lease,
                               MsgDispatcher *dispatcher)
{
  MsgDispatcher *holder = msg_connection_take_lease_back ((MsgConnection *) lease, dispatcher);

  if (holder != NULL)
    msg_dispatcher_unref (holder);
}

static gboolean
watchdog_dispatch (GSource     *source,
                   GSourceFunc  callback,
                   gpointer     user_data)
{
  Watchdog *self = (Watchdog *) source;
  gboolean busy = FALSE;

  /* Disarmed first: a leaseholder that leaves poll() from now on arms it
   * again (msg_transport_watchdog_poke()). */
  g_source_set_ready_time (source, -1);
  g_atomic_int_set (&self->armed, 0);

  for (guint i = self->leased->len; i-- > 0;)
    {
      MsgConnection *connection = g_ptr_array_index (self->leased, i);
      MsgDispatcher *holder = NULL;
      guint iterations;

      msg_mutex_lock (&connection->lock);
      if (connection->lease != NULL)
        holder = msg_dispatcher_ref (connection->lease);
      msg_mutex_unlock (&connection->lock);

      if (holder == NULL)
        {
          g_ptr_array_remove_index_fast (self->leased, i);
          continue;
        }
      if (!msg_dispatcher_is_polling (holder, &iterations))
        {
          if (iterations == connection->seen_iterations)
            {
              /* Busy, or not running, for a whole period. */
              msg_dispatcher_unref (holder);
              msg_connection_revoke_lease (connection);
              g_ptr_array_remove_index_fast (self->leased, i);
              continue;
            }
          busy = TRUE;
        }
      connection->seen_iterations = iterations;
      msg_dispatcher_unref (holder);
    }

  if (busy)
    watchdog_arm (self);
  return G_SOURCE_CONTINUE;
}

static void
watchdog_finalize (GSource *source)
{
  msg_source_finalizing (source);
  g_ptr_array_unref (((Watchdog *) source)->leased);
  msg_source_finalized (source);
}

static GSourceFuncs watchdog_funcs = {
  .dispatch = watchdog_dispatch,
  .finalize = watchdog_finalize,
};

/* The I/O thread's watchdog, made with the first lease of this process
 * (a child after fork() makes its own, on its own I/O thread). I/O thread
 * only. */
static Watchdog *
watchdog_get (void)
{
  Watchdog *self = g_atomic_pointer_get (&watchdog);

  if (self == NULL || watchdog_forks != msg_io_thread_get_forks ())
    {
      GSource *source = g_source_new (&watchdog_funcs, sizeof (Watchdog));

      self = (Watchdog *) source;
      g_source_set_static_name (source, "MsgPortMain lease watchdog");
      self->leased = g_ptr_array_new_with_free_func ((GDestroyNotify) msg_source_unref);
      g_source_attach (source, msg_io_thread_get_context ());
      watchdog_forks = msg_io_thread_get_forks ();
      g_atomic_pointer_set (&watchdog, self);
    }
  return self;
}

static const MsgLeaseFuncs connection_lease_funcs;

static gint context_reads_disabled;  /* (atomic) */

void
msg_transport_set_context_reads (gboolean enabled)
{
  g_atomic_int_set (&context_reads_disabled, !enabled);
}

/* I/O thread, after reading all there was: leases the socket to the
 * context the messages go to, if it is waiting in poll(). */
void
msg_connection_maybe_lease (MsgConnection *self)
{
  Watchdog *dog;
  MsgEndpoint *target;
  MsgDispatcher *dispatcher = NULL;
  guint iterations;
  gboolean ok;

  if (self->decoder == NULL || g_atomic_int_get (&context_reads_disabled))
    return;

  msg_mutex_lock (&self->lock);
  ok = self->state == CONNECTION_OPEN && self->lease == NULL && self->handed_frame == NULL &&
       self->handed_error == NULL;
  msg_mutex_unlock (&self->lock);
  if (!ok || (target = msg_connection_ref_target (self)) == NULL)
    return;

  msg_mutex_lock (&target->lock);
  dispatcher = msg_dispatcher_get_bound_locked (target);
  if (dispatcher != NULL)
    msg_dispatcher_ref (dispatcher);
  msg_mutex_unlock (&target->lock);
  msg_endpoint_unref (target);
  if (dispatcher == NULL)
    return;
  if (!msg_dispatcher_is_polling (dispatcher, &iterations))
    {
      msg_dispatcher_unref (dispatcher);
      return;
    }

  msg_mutex_lock (&self->lock);
  msg_connection_begin_lease_locked (self, dispatcher);
  msg_mutex_unlock (&self->lock);

  if (!msg_dispatcher_add_lease (dispatcher, (MsgLease *) self, &connection_lease_funcs, self->fd))
    {
      msg_transport_lease_give_back ((MsgLease *) self, dispatcher);
      msg_dispatcher_unref (dispatcher);
      return;
    }
  msg_dispatcher_unref (dispatcher);

  self->seen_iterations = iterations;
  dog = watchdog_get ();
  g_ptr_array_add (dog->leased, g_source_ref (&self->source));
  watchdog_arm (dog);
}

/* Delivers the plain messages the decoder holds; stops at a frame that
 * only the I/O thread may handle (@handed), or an error. FALSE if reading
 * must go back to the I/O thread. */
static gboolean
context_decode (MsgConnection  *self,
                MsgEndpoint   **target,
                MsgWireFrame  **handed,
                GError        **error)
{
  for (;;)
    {
      MsgWireFrame *frame = NULL;
      MsgEnvelope *envelope;
      MsgItem *item;

      /* The port has all it may hold: the I/O thread reads on once it
       * took enough. */
      if (msg_connection_read_paused (self))
        return FALSE;
      if (!msg_wire_decoder_next (self->decoder, &frame, error))
        return *error == NULL;
      /* Acknowledgements and pongs, which come with nearly every reply
       * or burst, are taken here: handing them over would end the lease. */
      if (frame->kind == MSG_WIRE_FRAME_ACK)
        {
          msg_connection_acknowledged (self, frame->args[0], frame->args[1]);
          msg_wire_frame_free (frame);
          continue;
        }
      if (frame->kind == MSG_WIRE_FRAME_PONG)
        {
          msg_wire_frame_free (frame);
          continue;
        }
      /* Descriptors of the message go with the I/O thread's frames too:
       * rare, and the closing port's rule is there. */
      if (frame->kind != MSG_WIRE_FRAME_MESSAGE || frame->n_ports > 0 || frame->data_fd >= 0 ||
          frame->message_fds != NULL)
        {
          *handed = frame;
          return FALSE;
        }
      /* Not checked here either: msg_item_check() does, when the
       * dispatcher takes it. */
      item = msg_connection_item_from_frame (frame, &envelope);
      msg_wire_frame_free (frame);
      msg_connection_deliver_read (self, item, target);
    }
}

static gboolean
msg_transport_lease_read (MsgLease      *lease,
                          MsgDispatcher *dispatcher)
{
  MsgConnection *self = (MsgConnection *) lease;
  MsgEndpoint *target = NULL;
  MsgWireFrame *handed = NULL;
  MsgDispatcher *holder = NULL;
  GError *error = NULL;
  gboolean keep = TRUE;

  msg_mutex_lock (&self->lock);
  if (self->lease != dispatcher || self->forks != msg_io_thread_get_forks ())
    {
      msg_mutex_unlock (&self->lock);
      return FALSE;
    }
  self->context_reading = TRUE;
  msg_mutex_unlock (&self->lock);

  /* As much as the I/O thread would read in one go; if there is more, the
   * socket is still readable on the next iteration. */
  for (guint i = 0; i < MSG_CONNECTION_MAX_READS; i++)
    {
      gsize n_read;
      MsgRecvResult result = msg_connection_recv (self, MSG_CONNECTION_MAX_READ_SIZE,
                                                  &n_read, &error);

      if (result == RECV_AGAIN)
        break;
      /* End of file is left in the socket for the I/O thread. */
      if (result == RECV_EOF || result == RECV_FAILED ||
          !context_decode (self, &target, &handed, &error))
        {
          keep = FALSE;
          break;
        }
      if (result == RECV_DRAINED)
        break;
    }

  msg_mutex_lock (&self->lock);
  self->context_reading = FALSE;
  if (!keep)
    {
      self->handed_frame = handed;
      self->handed_error = error;
      holder = msg_connection_end_lease_locked (self);
    }
  msg_connection_signal_locked (self);
  msg_mutex_unlock (&self->lock);

  g_clear_pointer (&target, msg_endpoint_unref);
  if (holder != NULL)
    msg_dispatcher_unref (holder);
  return keep;
}

/* What a dispatcher that holds a lease does with it. */
static const MsgLeaseFuncs connection_lease_funcs = {
  .ref = msg_transport_lease_ref,
  .unref = msg_transport_lease_unref,
  .read = msg_transport_lease_read,
  .give_back = msg_transport_lease_give_back,
  .poke = msg_transport_watchdog_poke,
};
