/* msg-dispatcher.c: one GSource per GMainContext for all its started ports
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Over 1,000 lines, on purpose: the ready list, the context reads and the
 * GSource below are the three parts of one source's prepare(), check()
 * and dispatch(), and share its state (the armed flag, the polling flag
 * and the iteration count the I/O thread's watchdog reads, the leased
 * sockets); what else uses it goes through msg-dispatcher-private.h.
 *
 * Every port started on a context shares that context's dispatcher (the
 * model is GLib's gio/gcontextspecificgroup.c). The dispatcher keeps a list
 * of ready endpoints; an endpoint joins it when its queue goes from empty to
 * non-empty, and the source is armed (an atomic flag) and its context woken
 * only when the list was empty, so a burst of posts from another thread
 * costs one wake-up. prepare() and check() read the flag: one load per
 * context per main-loop iteration, whatever the number of ports.
 *
 * Context reads: the process transport may lease a socket to the
 * dispatcher of the context its messages go to, while that context waits
 * in poll(). The dispatcher then polls the socket itself and reads it at
 * the start of its dispatch, and the messages are emitted in the same
 * dispatch: a message from another process costs one wake-up, of the
 * thread that handles it, as with a plain blocking read. The I/O thread
 * stops polling a leased socket, and takes it back when the context stays
 * busy (wire/msg-context-reads.c), which is why prepare() and
 * check() record when the context polls.
 *
 * The dispatcher holds no reference on its context, as no GSource does: a
 * started port must not keep alive the context of a thread that quit its
 * loop and dropped it, nor, through it, itself, its peer and its socket,
 * while its peer posts on. When the context is finalized it destroys this
 * source, and the destroy notify of its callback (called by
 * g_main_context_unref(), on whatever thread dropped the last reference)
 * ends every port still bound here, as closed: nothing can ever dispatch
 * them again. Until then, whoever uses the context (to wake it, or to
 * destroy the sources in it) counts as a user of it, which the notify
 * waits for (context_enter()).
 *
 * Nor is the context woken with g_main_context_wakeup(): between the last
 * g_main_context_unref() and the notify the context is still there, but
 * with no reference left, which g_main_context_wakeup() refuses with a
 * critical. The dispatcher has a wake-up descriptor of its own instead
 * (an eventfd, polled by a source of its own, the waker): writing it is
 * safe whatever became of the context, and costs what the context's own
 * would (one write(), and one read() by the woken thread). Should no
 * eventfd be available (out of descriptors), g_source_set_ready_time()
 * wakes the context through the source, under the context's lock, under
 * which the context takes its sources out of itself before it is
 * finalized; the poster holds that lock while it signals the context,
 * which costs the woken thread about a microsecond.
 */

#include "config.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include "msg-debug-private.h"
#include "msg-dispatcher-private.h"
#include "msg-port-error.h"

typedef struct
{
  MsgEndpoint *endpoint;  /* (owned) */
  MsgPortMain *port;      /* (owned) (nullable): its handle, if still bound here */
  MsgEmitFunc  emit;      /* what the port was started with */
  guint        budget;
  gboolean     flow;      /* its flow state changed: emit with no item */
} MsgBatchItem;

/* A lease is the connection itself, so the same MsgLease can come back
 * as a new lease while its last one is still being dropped: each entry
 * has a serial number of its own, so that only the one that ended goes. */
typedef struct
{
  MsgLease            *lease;    /* (owned) */
  const MsgLeaseFuncs *funcs;
  guint                serial;
  int                  fd;
  GPollFD             *poll;     /* (owned) (nullable): added by prepare(), on
                                  * the context's thread */
  gboolean             dropped;  /* to be removed by prepare() */
} MsgLeaseEntry;

/* What read_leases() reads, and update_leases() lets go of. */
typedef struct
{
  MsgLease            *lease;    /* (owned) */
  const MsgLeaseFuncs *funcs;
  guint                serial;
} MsgReadable;

/* One dispatcher per context and priority (the #MsgPortMain:priority of
 * the ports bound to it): ports at the default priority share one source,
 * as before, and each other priority in use costs one more. */
typedef struct
{
  gconstpointer context;
  gint          priority;
} MsgDispatcherKey;

static guint
msg_dispatcher_key_hash (gconstpointer key)
{
  const MsgDispatcherKey *k = key;

  return g_direct_hash (k->context) ^ (guint) k->priority;
}

static gboolean
msg_dispatcher_key_equal (gconstpointer a,
                          gconstpointer b)
{
  const MsgDispatcherKey *ka = a;
  const MsgDispatcherKey *kb = b;

  return ka->context == kb->context && ka->priority == kb->priority;
}

struct _MsgDispatcher
{
  GSource       source;
  MsgReadyList  ready_list;  /* what bound endpoints know of us */
  GMainContext *context;   /* (atomic) (nullable): not owned (see above);
                            * set to %NULL under @lock when it is finalized */
  MsgDispatcherKey key;    /* @context as it was and our priority: our
                            * key in dispatchers, never dereferenced */
  GMutex        lock;
  GCond         cond;      /* with @lock: @context_users went to 0 after
                            * @context was cleared */
  gint          context_users;  /* (atomic): threads that use @context now
                                 * (context_enter()), which its
                                 * finalization waits for */
  GThread      *destroying;  /* (atomic) (nullable): the thread in release()
                              * that destroys this source, whose destroy
                              * notify then has nothing to do */
  GQueue        ready;     /* protected by @lock: MsgEndpoint.ready_link, each
                            * holding a reference */
  GQueue        bound;     /* protected by @lock: MsgEndpoint.bound_link, of
                            * every bound endpoint (no reference: unbinding
                            * takes them out) */
  guint         n_bound;   /* protected by dispatchers_lock */
  gboolean      orphaned;  /* protected by dispatchers_lock: the context was
                            * finalized, and @dispatchers has forgotten us */
  gint          armed;     /* (atomic): set when @ready becomes non-empty,
                            * cleared when dispatch() takes it */
  gint          woken;     /* (atomic): the ready time was set to wake the
                            * context; dispatch() resets it */
  GSource      *waker;     /* (owned) (nullable): polls @wake_fd */
  int           wake_fd;   /* owned by @waker, which we hold: -1 if there
                            * is none */
  MsgBatchItem *batch;     /* (owned): only used by dispatch() */
  guint         batch_size;  /* allocated items in @batch */
  MsgEmitCache  emit_cache;  /* lent to the emit functions; only used by
                              * dispatch() */

  /* Context reads. The leased descriptors are polled by @reader, not by
   * this source: GLib takes the descriptors of a source out of the poll
   * set while it dispatches (and wakes the context to put them back), but
   * this one's check() reads their results all the same. They are added
   * with g_source_add_poll(), so that @reader is only ready when its check()
   * says so (a descriptor of g_source_add_unix_fd() makes it ready). */
  GSource      *reader;    /* (owned): attached with the first lease, so
                            * that a context with no sockets leased has
                            * no second source to prepare and check */
  gboolean      reader_attached;  /* protected by @lock */
  gint          in_dispatch;  /* (atomic): dispatch() runs; set and cleared
                               * by the context's thread */
  GArray       *leases;    /* of MsgLeaseEntry, protected by @lock */
  gint          n_leases;  /* (atomic): @leases->len, read without the lock */
  gint          changed;   /* (atomic): entries were added or dropped since
                            * prepare() last updated the poll set */
  gboolean      going_away;   /* protected by @lock */
  /* Only the context's thread writes these two, on every main-loop
   * iteration: with release stores, not GLib's sequentially consistent
   * ones (a locked instruction each on x86). The I/O thread only needs
   * to see them eventually. */
  gint          polling;   /* (atomic): between prepare() and check() */
  gint          iterations;   /* (atomic): prepare() calls */
  guint         next_serial;  /* protected by @lock: for the next entry,
                               * never 0 */
  const MsgLeaseFuncs *lease_funcs;  /* (atomic) (nullable): those of the
                                      * leases, for poke() */
  GArray       *readable;  /* of MsgReadable; only used by dispatch() */
};

static GMutex dispatchers_lock;
static GHashTable *dispatchers;  /* (owned): MsgDispatcherKey -> (owned) MsgDispatcher */

#define MSG_DISPATCHER_OF_READY_LIST(list) \
  ((MsgDispatcher *) (void *) ((char *) (list) - G_STRUCT_OFFSET (MsgDispatcher, ready_list)))

static void
context_leave (MsgDispatcher *self)
{
  /* The notify may wait for us: it cleared @context first. */
  if (g_atomic_int_dec_and_test (&self->context_users) &&
      g_atomic_pointer_get (&self->context) == NULL)
    {
      msg_mutex_lock (&self->lock);
      g_cond_broadcast (&self->cond);
      msg_mutex_unlock (&self->lock);
    }
}

/* Whether the context is alive, and stays so until context_leave(): the
 * notify, which clears @context and then waits for the users to leave,
 * runs before the context is freed. Lock-free, so that a wake-up takes no
 * lock of ours: both sides store, then load, sequentially consistent, so
 * that either this sees @context cleared, or the notify sees this user. */
static gboolean
context_enter (MsgDispatcher *self)
{
  g_atomic_int_inc (&self->context_users);
  if (g_atomic_pointer_get (&self->context) != NULL)
    return TRUE;
  context_leave (self);
  return FALSE;
}

/* Any thread, with no lock held (the woken thread takes ours first
 * thing): see above. Without a wake-up descriptor, a ready time of 0 makes
 * the context dispatch us, which resets it; dispatch() finds nothing to
 * do if the wake-up was for prepare() (a new lease). */
static void
wake (MsgDispatcher *self)
{
  if (self->wake_fd >= 0)
    {
      guint64 one = 1;

      /* EAGAIN: the counter is full, so it is readable already. */
      (void) !write (self->wake_fd, &one, sizeof one);
      return;
    }
  if (context_enter (self))
    {
      g_atomic_int_set (&self->woken, 1);
      g_source_set_ready_time (&self->source, 0);
      context_leave (self);
    }
}

/* Puts @endpoint on the ready list. When that arms the source, the
 * context must be woken: at once, or, if @wake_later is not %NULL, by the
 * caller once it has released its endpoint lock (so that the woken thread
 * does not find it locked), with the ready list returned there.
 *
 * Unless the dispatcher is dispatching, on its own thread or on another:
 * then its context runs prepare() before it polls again, which sees the
 * source armed and does not block. (Both stores are sequentially
 * consistent: either this thread sees in_dispatch set, and the context's
 * thread, clearing it later, then sees armed; or it sees it cleared, and
 * wakes the context.) A post answered while the receiving thread is still
 * in the dispatch that sent it, the rule on one CPU, costs no wake-up. */
static void
msg_dispatcher_mark_ready (MsgDispatcher  *self,
                           MsgEndpoint    *endpoint,
                           MsgReadyList  **wake_later)
{
  gboolean must_wake = FALSE;

  msg_mutex_lock (&self->lock);
  if (!endpoint->ready)
    {
      endpoint->ready = TRUE;
      msg_endpoint_ref (endpoint);
      g_queue_push_tail_link (&self->ready, &endpoint->ready_link);
      if (self->ready.length == 1)
        {
          g_atomic_int_set (&self->armed, 1);
          must_wake = !g_atomic_int_get (&self->in_dispatch);
        }
    }
  msg_mutex_unlock (&self->lock);

  /* The caller holds a reference that keeps us bound, so alive. */
  if (must_wake && wake_later != NULL)
    *wake_later = &msg_dispatcher_ref (self)->ready_list;
  else if (must_wake)
    wake (self);
}

static void
msg_dispatcher_ready_list_mark_ready (MsgReadyList  *list,
                                      MsgEndpoint   *endpoint,
                                      MsgReadyList **wake_later)
{
  msg_dispatcher_mark_ready (MSG_DISPATCHER_OF_READY_LIST (list), endpoint, wake_later);
}

static void
msg_dispatcher_ready_list_wake (MsgReadyList *list)
{
  MsgDispatcher *self = MSG_DISPATCHER_OF_READY_LIST (list);

  wake (self);
  msg_dispatcher_unref (self);
}

static const MsgReadyListFuncs msg_dispatcher_ready_list_funcs = {
  .mark_ready = msg_dispatcher_ready_list_mark_ready,
  .wake = msg_dispatcher_ready_list_wake,
};

/* Called with @endpoint->lock held, when @endpoint is unbound; the caller
 * holds a reference on @endpoint, so the one dropped here is never the
 * last. */
static void
msg_dispatcher_unready (MsgDispatcher *self,
                        MsgEndpoint   *endpoint)
{
  gboolean was_ready;

  msg_mutex_lock (&self->lock);
  g_queue_unlink (&self->bound, &endpoint->bound_link);
  was_ready = endpoint->ready;
  if (was_ready)
    {
      g_queue_unlink (&self->ready, &endpoint->ready_link);
      endpoint->ready = FALSE;
    }
  msg_mutex_unlock (&self->lock);

  if (was_ready)
    msg_endpoint_unref (endpoint);
}

void
msg_dispatcher_bind_locked (MsgDispatcher *self,
                            MsgEndpoint   *endpoint,
                            MsgEmitFunc    emit)
{
  msg_mutex_assert_held (&endpoint->lock);

  g_assert (endpoint->ready_list == NULL);

  endpoint->ready_list = &self->ready_list;
  endpoint->emit = emit;
  endpoint->bound_link.data = endpoint;
  msg_mutex_lock (&self->lock);
  g_queue_push_tail_link (&self->bound, &endpoint->bound_link);
  msg_mutex_unlock (&self->lock);
  if (endpoint->queue.length > 0)
    msg_endpoint_mark_ready_locked (endpoint, NULL);
}

MsgDispatcher *
msg_dispatcher_get_bound_locked (MsgEndpoint *endpoint)
{
  msg_mutex_assert_held (&endpoint->lock);

  if (endpoint->ready_list == NULL)
    return NULL;
  return MSG_DISPATCHER_OF_READY_LIST (endpoint->ready_list);
}

MsgDispatcher *
msg_dispatcher_unbind_locked (MsgEndpoint *endpoint)
{
  MsgDispatcher *self = msg_dispatcher_get_bound_locked (endpoint);

  msg_mutex_assert_held (&endpoint->lock);

  if (self != NULL)
    {
      endpoint->ready_list = NULL;
      endpoint->emit = NULL;
      msg_dispatcher_unready (self, endpoint);
    }
  return self;
}

/* Delivers at most @work->budget items of its endpoint, one at a time so
 * that a handler that transfers or closes the port stops the delivery at
 * once. Takes @work->port. */
static void
msg_dispatcher_dispatch_endpoint (MsgDispatcher *self,
                                  MsgBatchItem  *work)
{
  MsgEndpoint *endpoint = work->endpoint;
  MsgPortMain *port = g_steal_pointer (&work->port);
  MsgEmitFunc emit = work->emit;
  guint budget = work->budget;
  gboolean unbound = FALSE;
  MsgEndpoint *peer = NULL;  /* (owned) (nullable): to credit */
  MsgSink *peer_sink = NULL; /* @peer's, if it acknowledges: another process */
  guint n_taken = 0;
  guint64 n_taken_bytes = 0;

  /* What the port posted was taken: it emits the changes (the port checks
   * that it still owns the endpoint). */
  if (work->flow)
    emit (port, NULL, &self->emit_cache);

  while (budget > 0)
    {
      MsgReadWatch *resume = NULL;
      MsgItem *item;
      gsize size = 0;

      msg_mutex_lock (&endpoint->lock);
      /* Transferred, or even transferred and started again here under a
       * new handle: either way this handle emits no more. */
      if (endpoint->ready_list != &self->ready_list || endpoint->port != port ||
          (item = msg_endpoint_pop_locked (endpoint, &size, &resume)) == NULL)
        {
          msg_mutex_unlock (&endpoint->lock);
          break;
        }
      budget--;
      if (msg_item_is_close (item))
        {
          MsgEnvelope *envelope = msg_item_peek_envelope (item);

          /* The last item this end will ever see: unbind, and let go
           * of the reference the started port held on itself. */
          unbound = TRUE;
          endpoint->close_emitted = TRUE;
          g_clear_error (&endpoint->close_reason);
          endpoint->close_reason = g_steal_pointer (&envelope->reason);
          msg_dispatcher_unbind_locked (endpoint);
        }
      else
        {
          /* Taken: credited to the peer once per batch, after it. Every
           * item in the queue came from the peer it has now, if any. */
          if (n_taken == 0 && peer == NULL && endpoint->peer != NULL)
            {
              peer = msg_endpoint_ref (endpoint->peer);
              peer_sink = msg_endpoint_get_sink (peer);
              if (peer_sink != NULL && peer_sink->funcs->consumed == NULL)
                peer_sink = NULL;
            }
          if (budget == 0 && endpoint->queue.length > 0)
            {
              /* What arrived since this dispatch began is the next one's
               * (what arrives from now on into an empty queue marks the
               * endpoint ready itself). */
              msg_endpoint_mark_ready_locked (endpoint, NULL);
            }
        }
      msg_mutex_unlock (&endpoint->lock);

      /* A socket reader paused for this endpoint reads on. */
      msg_read_watch_resume (resume);

      /* What another process sent is checked here, by the context of the
       * port it is for, not by the I/O thread that every channel shares.
       * Refused, it is not emitted, nor anything after it: the port ends
       * with the reason, which is queued in place of what it held. */
      if (msg_item_needs_check (item))
        {
          GError *error = NULL;

          if (!msg_item_check (&item, &error))
            {
              msg_item_free (item);
              msg_endpoint_reject (endpoint, error);
              continue;
            }
        }
      if (!unbound)
        {
          n_taken++;
          n_taken_bytes += size;
          /* Another process is told before the handler runs, so that
           * what the handler posts (a reply) carries the word. */
          if (peer_sink != NULL)
            peer_sink->funcs->consumed (peer_sink, 1, size);
        }
      emit (port, item, &self->emit_cache);

      if (unbound)
        {
          g_object_unref (port);
          msg_dispatcher_release (self);
          break;
        }
    }

  if (peer_sink != NULL)
    {
      /* Counted as received here; the peer was told item by item, and
       * now that the batch ended. */
      msg_endpoint_taken (endpoint, NULL, n_taken, n_taken_bytes);
      peer_sink->funcs->consumed (peer_sink, 0, 0);
    }
  else
    msg_endpoint_taken (endpoint, peer, n_taken, n_taken_bytes);
  g_clear_pointer (&peer, msg_endpoint_unref);
  g_object_unref (port);
}

/* Context reads ------------------------------------------------------------ */

gboolean
msg_dispatcher_is_polling (MsgDispatcher *self,
                           guint         *iterations)
{
  *iterations = (guint) g_atomic_int_get (&self->iterations);
  return g_atomic_int_get (&self->polling);
}

GMainContext *
msg_dispatcher_get_context (MsgDispatcher *self)
{
  return g_atomic_pointer_get (&self->context);
}

gboolean
msg_dispatcher_add_lease (MsgDispatcher       *self,
                          MsgLease            *lease,
                          const MsgLeaseFuncs *funcs,
                          int                  fd)
{
  MsgLeaseEntry entry = { NULL, funcs, 0, fd, NULL, FALSE };

  msg_mutex_lock (&self->lock);
  if (self->going_away)
    {
      msg_mutex_unlock (&self->lock);
      return FALSE;
    }
  entry.lease = funcs->ref (lease);
  g_atomic_pointer_set (&self->lease_funcs, funcs);
  /* 0 means every entry to mark_dropped_locked(). */
  if (++self->next_serial == 0)
    self->next_serial = 1;
  entry.serial = self->next_serial;
  g_array_append_val (self->leases, entry);
  g_atomic_int_set (&self->n_leases, self->leases->len);
  g_atomic_int_set (&self->changed, 1);
  msg_mutex_unlock (&self->lock);

  MSG_DEBUG ("socket %d: leased to the context %p, which reads it while it polls",
             fd, (gpointer) g_atomic_pointer_get (&self->context));
  /* prepare() adds the descriptor to the poll set. */
  wake (self);
  return TRUE;
}

/* Called with @self->lock held: marks the entry @serial of @lease
 * dropped, or every entry of @lease if @serial is 0. */
static void
mark_dropped_locked (MsgDispatcher *self,
                     MsgLease      *lease,
                     guint          serial)
{
  msg_mutex_assert_held (&self->lock);

  for (guint i = 0; i < self->leases->len; i++)
    {
      MsgLeaseEntry *entry = &g_array_index (self->leases, MsgLeaseEntry, i);

      if (entry->lease == lease && (serial == 0 || entry->serial == serial) && !entry->dropped)
        {
          entry->dropped = TRUE;
          g_atomic_int_set (&self->changed, 1);
        }
    }
}

void
msg_dispatcher_drop_lease (MsgDispatcher *self,
                           MsgLease      *lease)
{
  msg_mutex_lock (&self->lock);
  mark_dropped_locked (self, lease, 0);
  msg_mutex_unlock (&self->lock);
  MSG_DEBUG ("lease %p: taken back from the context %p", (gpointer) lease,
             (gpointer) g_atomic_pointer_get (&self->context));
  wake (self);
}

/* On the context's thread: puts new leases' descriptors into the poll set
 * and takes dropped ones out. The descriptor of a dropped lease may be
 * closed already; its tag only goes. */
static void
update_leases (MsgDispatcher *self)
{
  g_autoptr(GArray) unref = NULL;

  msg_mutex_lock (&self->lock);
  if (!self->reader_attached && !self->going_away && self->leases->len > 0)
    {
      g_source_attach (self->reader, g_atomic_pointer_get (&self->context));
      self->reader_attached = TRUE;
    }
  for (guint i = self->leases->len; i-- > 0;)
    {
      MsgLeaseEntry *entry = &g_array_index (self->leases, MsgLeaseEntry, i);

      if (entry->dropped)
        {
          if (entry->poll != NULL)
            {
              g_source_remove_poll (self->reader, entry->poll);
              g_free (entry->poll);
            }
          if (unref == NULL)
            unref = g_array_new (FALSE, FALSE, sizeof (MsgReadable));
          g_array_append_vals (unref, &(MsgReadable) { entry->lease, entry->funcs, 0 }, 1);
          g_array_remove_index (self->leases, i);
        }
      else if (entry->poll == NULL)
        {
          entry->poll = g_new0 (GPollFD, 1);
          entry->poll->fd = entry->fd;
          entry->poll->events = G_IO_IN;
          g_source_add_poll (self->reader, entry->poll);
        }
    }
  g_atomic_int_set (&self->n_leases, self->leases->len);
  msg_mutex_unlock (&self->lock);

  for (guint i = 0; unref != NULL && i < unref->len; i++)
    {
      MsgReadable *item = &g_array_index (unref, MsgReadable, i);

      item->funcs->unref (item->lease);
    }
}

/* Whether the socket of @entry is readable (or hung up, or gone), as the
 * last poll() found it. */
static inline gboolean
entry_readable (const MsgLeaseEntry *entry)
{
  return entry->poll != NULL && !entry->dropped && entry->poll->revents != 0;
}

/* Whether a leased socket is readable. */
static gboolean
leases_readable (MsgDispatcher *self)
{
  gboolean readable = FALSE;

  msg_mutex_lock (&self->lock);
  for (guint i = 0; i < self->leases->len && !readable; i++)
    {
      readable = entry_readable (&g_array_index (self->leases, MsgLeaseEntry, i));
    }
  msg_mutex_unlock (&self->lock);
  return readable;
}

/* Reads the leased sockets that are readable; what they hold is delivered
 * to its ports, most on this context, before they are dispatched. */
static void
read_leases (MsgDispatcher *self)
{
  GArray *readable = self->readable;

  msg_mutex_lock (&self->lock);
  for (guint i = 0; i < self->leases->len; i++)
    {
      MsgLeaseEntry *entry = &g_array_index (self->leases, MsgLeaseEntry, i);

      if (entry_readable (entry))
        {
          MsgReadable item = { entry->funcs->ref (entry->lease), entry->funcs, entry->serial };

          g_array_append_val (readable, item);
        }
    }
  msg_mutex_unlock (&self->lock);

  for (guint i = 0; i < readable->len; i++)
    {
      MsgReadable *item = &g_array_index (readable, MsgReadable, i);

      /* Only this entry: the I/O thread may have leased the socket to us
       * again already, as a new entry that must stay. */
      if (!item->funcs->read (item->lease, self))
        {
          msg_mutex_lock (&self->lock);
          mark_dropped_locked (self, item->lease, item->serial);
          msg_mutex_unlock (&self->lock);
        }
      item->funcs->unref (item->lease);
    }
  g_array_set_size (readable, 0);
}

/* The I/O thread reads the leased sockets again: the last port left
 * (@going_away, any thread), or a handler runs a main loop of this
 * context, in which this dispatcher cannot dispatch (on the context's
 * thread, which takes the descriptors out of the poll set). */
static void
give_back_leases (MsgDispatcher *self,
                  gboolean       going_away)
{
  GArray *leases;

  msg_mutex_lock (&self->lock);
  self->going_away = self->going_away || going_away;
  leases = g_steal_pointer (&self->leases);
  self->leases = g_array_new (FALSE, FALSE, sizeof (MsgLeaseEntry));
  g_atomic_int_set (&self->n_leases, 0);
  g_atomic_int_set (&self->changed, 0);
  msg_mutex_unlock (&self->lock);

  for (guint i = 0; i < leases->len; i++)
    {
      MsgLeaseEntry *entry = &g_array_index (leases, MsgLeaseEntry, i);

      /* The finalized context destroyed @reader, and its poll set. */
      if (entry->poll != NULL)
        {
          if (!g_source_is_destroyed (self->reader))
            g_source_remove_poll (self->reader, entry->poll);
          g_free (entry->poll);
        }
      if (!entry->dropped)
        entry->funcs->give_back (entry->lease, self);
      entry->funcs->unref (entry->lease);
    }
  g_array_unref (leases);
}

/* The reader source only holds the leased descriptors in the poll set;
 * the dispatcher reads them. It dispatches only when a handler runs a
 * main loop of this context and a leased socket is readable, which would
 * otherwise wake that loop again and again. */
typedef struct
{
  GSource        source;
  MsgDispatcher *dispatcher;  /* (owned): so that a check() that runs while
                               * another thread releases it finds it */
} MsgReader;

static void
msg_reader_finalize (GSource *source)
{
  msg_source_finalizing (source);
  msg_dispatcher_unref (((MsgReader *) source)->dispatcher);
  msg_source_finalized (source);
}

static gboolean
msg_reader_check (GSource *source)
{
  MsgDispatcher *dispatcher = ((MsgReader *) source)->dispatcher;

  return g_atomic_int_get (&dispatcher->in_dispatch) && leases_readable (dispatcher);
}

static gboolean
msg_reader_dispatch (GSource     *source,
                     GSourceFunc  callback,
                     gpointer     user_data)
{
  give_back_leases (((MsgReader *) source)->dispatcher, FALSE);
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs msg_reader_funcs = {
  .check = msg_reader_check,
  .dispatch = msg_reader_dispatch,
  .finalize = msg_reader_finalize,
};

/* The waker only holds the dispatcher's wake-up descriptor in the poll
 * set, and reads it once it was written; it never dispatches (the
 * dispatcher's own prepare() and check() see what is armed). A source of
 * its own: the descriptor of a source is taken out of the poll set while
 * the source dispatches and put back after, which wakes the context. */
typedef struct
{
  GSource source;
  GPollFD poll;   /* its fd owned */
} MsgWaker;

static gboolean
msg_waker_check (GSource *source)
{
  MsgWaker *self = (MsgWaker *) source;
  guint64 value;

  if (self->poll.revents & G_IO_IN)
    (void) !read (self->poll.fd, &value, sizeof value);
  return FALSE;
}

static void
msg_waker_finalize (GSource *source)
{
  close (((MsgWaker *) source)->poll.fd);
}

static GSourceFuncs msg_waker_funcs = {
  .check = msg_waker_check,
  .finalize = msg_waker_finalize,
};

/* A waker for @self, or %NULL if no eventfd can be made. */
static GSource *
msg_waker_new (void)
{
  int fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  GSource *source;

  if (fd < 0)
    return NULL;

  source = g_source_new (&msg_waker_funcs, sizeof (MsgWaker));
  ((MsgWaker *) source)->poll = (GPollFD) { fd, G_IO_IN, 0 };
  g_source_add_poll (source, &((MsgWaker *) source)->poll);
  g_source_set_static_name (source, "MsgPortMain waker");
  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  return source;
}

/* The GSource ---------------------------------------------------------------- */

/* Tells the transport that this dispatcher, which holds leases, left
 * poll() (see MsgLeaseFuncs). */
static inline void
poke (MsgDispatcher *self)
{
  const MsgLeaseFuncs *funcs = g_atomic_pointer_get (&self->lease_funcs);

  if (funcs != NULL)
    funcs->poke ();
}

static gboolean
msg_dispatcher_dispatch (GSource     *source,
                         GSourceFunc  callback,
                         gpointer     user_data)
{
  MsgDispatcher *self = (MsgDispatcher *) source;
  GList *link;
  guint n = 0;

  /* Dispatches of one context follow each other, also when different
   * threads own it in turn (g_main_context_acquire(), under GLib's lock,
   * which TSan cannot see): this one comes after the last one's
   * msg_source_dispatched(), and may use what it left (the emit cache). */
  MSG_TSAN_ACQUIRE (source);
  g_atomic_int_set (&self->in_dispatch, 1);
  /* Or the context would dispatch us on every iteration. A wake-up from
   * now on finds in_dispatch set and wakes nobody; prepare() sees what it
   * armed. The source is blocked while it dispatches, so this does not
   * wake the context either. */
  if (g_atomic_int_get (&self->woken) && g_atomic_int_compare_and_exchange (&self->woken, 1, 0))
    g_source_set_ready_time (source, -1);
  msg_atomic_int_set_release (&self->polling, 0);
  if (g_atomic_int_get (&self->n_leases) > 0)
    read_leases (self);

  /* What is ready now is this dispatch's work; what becomes ready while it
   * runs (handlers posting to ports on this context, say) is the next
   * one's, so that other sources get their turn. */
  msg_mutex_lock (&self->lock);
  if (self->ready.length > self->batch_size)
    {
      self->batch_size = MAX (self->ready.length, self->batch_size * 2);
      self->batch = g_renew (MsgBatchItem, self->batch, self->batch_size);
    }
  while ((link = g_queue_pop_head_link (&self->ready)) != NULL)
    {
      MsgEndpoint *endpoint = link->data;

      endpoint->ready = FALSE;
      self->batch[n++] = (MsgBatchItem) { endpoint, NULL, NULL, 0, FALSE };
    }
  g_atomic_int_set (&self->armed, 0);
  msg_mutex_unlock (&self->lock);

  /* Each endpoint's budget is what it holds now, before any handler
   * runs, and at most MSG_DISPATCH_BATCH_MAX: the rest is the next
   * dispatch's, so that a port with a backlog lets the other ports of the
   * context, and its other sources, run in between. A bound endpoint
   * holds a strong reference on its handle. */
  for (guint i = 0; i < n; i++)
    {
      MsgBatchItem *item = &self->batch[i];

      msg_mutex_lock (&item->endpoint->lock);
      if (item->endpoint->ready_list == &self->ready_list)
        {
          item->port = g_object_ref (item->endpoint->port);
          item->emit = item->endpoint->emit;
          item->budget = MIN (item->endpoint->queue.length, MSG_DISPATCH_BATCH_MAX);
          item->flow = item->endpoint->flow_pending;
          item->endpoint->flow_pending = FALSE;
        }
      msg_mutex_unlock (&item->endpoint->lock);
    }

  for (guint i = 0; i < n; i++)
    {
      if (self->batch[i].port != NULL)
        msg_dispatcher_dispatch_endpoint (self, &self->batch[i]);
    }

  for (guint i = 0; i < n; i++)
    msg_endpoint_unref (self->batch[i].endpoint);
  g_atomic_int_set (&self->in_dispatch, 0);

  msg_source_dispatched (source);
  return G_SOURCE_CONTINUE;
}

static void
msg_dispatcher_finalize (GSource *source)
{
  MsgDispatcher *self = (MsgDispatcher *) source;

  msg_source_finalizing (source);
  g_assert (self->ready.length == 0);
  g_assert (self->bound.length == 0);
  g_assert (self->leases->len == 0);
  g_clear_pointer (&self->leases, g_array_unref);
  g_clear_pointer (&self->readable, g_array_unref);
  g_clear_pointer (&self->batch, g_free);
  if (self->emit_cache.data != NULL)
    self->emit_cache.destroy (g_steal_pointer (&self->emit_cache.data));
  /* Posters write @wake_fd as long as they hold us. */
  g_clear_pointer (&self->waker, msg_source_unref);
  g_cond_clear (&self->cond);
  g_mutex_clear (&self->lock);
  msg_source_finalized (source);
}

static gboolean
msg_dispatcher_prepare (GSource *source,
                        gint    *timeout)
{
  MsgDispatcher *self = (MsgDispatcher *) source;
  gboolean armed;

  /* Clearing the flag first: a change made during the update is done by
   * it, or sets the flag again. */
  if (g_atomic_int_get (&self->changed) && g_atomic_int_compare_and_exchange (&self->changed, 1, 0))
    update_leases (self);
  /* When this source is ready the context does not wait in poll(), and
   * GLib does not call check(), which clears the flag, before dispatch():
   * the I/O thread must not lease a socket to a context that dispatches. */
  armed = g_atomic_int_get (&self->armed);
  msg_atomic_int_set_release (&self->polling, !armed);
  /* Counted here, not in check(), which GLib skips when this returns
   * TRUE: a context that dispatches on every iteration makes progress.
   * For the same reason the watchdog is told here that a leaseholder is
   * busy, when check() will not tell it. */
  msg_atomic_int_set_release (&self->iterations, msg_atomic_int_get_relaxed (&self->iterations) + 1);
  if (armed && g_atomic_int_get (&self->n_leases) > 0)
    poke (self);
  *timeout = -1;
  return armed;
}

static gboolean
msg_dispatcher_check (GSource *source)
{
  MsgDispatcher *self = (MsgDispatcher *) source;

  msg_atomic_int_set_release (&self->polling, 0);
  if (g_atomic_int_get (&self->n_leases) > 0)
    {
      /* Busy from now on: the I/O thread must come and see whether this
       * context polls again. */
      poke (self);
      if (leases_readable (self))
        return TRUE;
    }
  return g_atomic_int_get (&self->armed);
}

static GSourceFuncs msg_dispatcher_funcs = {
  .prepare = msg_dispatcher_prepare,
  .check = msg_dispatcher_check,
  .dispatch = msg_dispatcher_dispatch,
  .finalize = msg_dispatcher_finalize,
};

static void msg_dispatcher_context_gone (gpointer data);

/* Returns the dispatcher of @context at @priority, creating it if needed;
 * every call is balanced by msg_dispatcher_release(). */
MsgDispatcher *
msg_dispatcher_acquire_full (GMainContext *context,
                             gint          priority)
{
  MsgDispatcherKey key = { context, priority };
  MsgDispatcher *self;

  msg_mutex_lock (&dispatchers_lock);
  if (dispatchers == NULL)
    dispatchers = g_hash_table_new (msg_dispatcher_key_hash, msg_dispatcher_key_equal);

  self = g_hash_table_lookup (dispatchers, &key);
  if (self == NULL)
    {
      GSource *source = g_source_new (&msg_dispatcher_funcs, sizeof (MsgDispatcher));

      self = (MsgDispatcher *) source;
      self->ready_list.funcs = &msg_dispatcher_ready_list_funcs;
      self->context = context;
      self->key = key;
      g_mutex_init (&self->lock);
      g_cond_init (&self->cond);
      g_queue_init (&self->ready);
      g_queue_init (&self->bound);
      self->leases = g_array_new (FALSE, FALSE, sizeof (MsgLeaseEntry));
      self->readable = g_array_new (FALSE, FALSE, sizeof (MsgReadable));
      g_source_set_static_name (source, "MsgPortMain dispatcher");
      g_source_set_priority (source, priority);
      self->reader = g_source_new (&msg_reader_funcs, sizeof (MsgReader));
      ((MsgReader *) self->reader)->dispatcher = msg_dispatcher_ref (self);
      g_source_set_static_name (self->reader, "MsgPortMain socket reader");
      g_source_set_priority (self->reader, priority);
      g_source_set_can_recurse (self->reader, TRUE);
      self->waker = msg_waker_new ();
      self->wake_fd = self->waker != NULL ? ((MsgWaker *) self->waker)->poll.fd : -1;
      /* No function: dispatch() calls none. Only its destroy notify. */
      g_source_set_callback (source, NULL, self, msg_dispatcher_context_gone);
      if (self->waker != NULL)
        g_source_attach (self->waker, context);
      g_source_attach (source, context);
      g_hash_table_insert (dispatchers, &self->key, self);
    }
  self->n_bound++;
  msg_mutex_unlock (&dispatchers_lock);

  return self;
}

/* The dispatcher of @context at the default priority. */
MsgDispatcher *
msg_dispatcher_acquire (GMainContext *context)
{
  return msg_dispatcher_acquire_full (context, G_PRIORITY_DEFAULT);
}

MsgDispatcher *
msg_dispatcher_ref (MsgDispatcher *self)
{
  g_source_ref (&self->source);
  return self;
}

void
msg_dispatcher_unref (MsgDispatcher *self)
{
  msg_source_unref (&self->source);
}

void
msg_dispatcher_release (MsgDispatcher *self)
{
  gboolean entered;
  gboolean last;

  msg_mutex_lock (&dispatchers_lock);
  g_assert (self->n_bound > 0);
  last = --self->n_bound == 0;
  /* An orphan was taken out of the table when its context went: another
   * context may have the same address by now. */
  if (last && !self->orphaned)
    g_hash_table_remove (dispatchers, &self->key);
  msg_mutex_unlock (&dispatchers_lock);

  if (!last)
    return;

  /* Destroying the sources locks the context: it must not be finalized
   * meanwhile, by a thread that drops the last reference to it, which
   * waits for us in msg_dispatcher_context_gone(). Destroying the source
   * calls that too, on this thread, where it has nothing to do. */
  entered = context_enter (self);
  if (entered)
    g_atomic_pointer_set (&self->destroying, g_thread_self ());

  give_back_leases (self, TRUE);
  /* Nothing uses @reader once the leases are given back; its own
   * reference keeps this dispatcher alive as long as it is. A finalized
   * context destroys its sources itself: destroying one here, which it
   * has already taken out of itself, would mark it destroyed without
   * letting go of the context's reference, which the context then would
   * not let go of either. */
  if (entered)
    {
      g_source_destroy (self->reader);
      if (self->waker != NULL)
        g_source_destroy (self->waker);
      g_source_destroy (&self->source);
      g_atomic_pointer_set (&self->destroying, NULL);
      context_leave (self);
    }

  msg_source_unref (self->reader);
  msg_source_unref (&self->source);
}

/* Ends @endpoint, bound here when the context was finalized, if it still
 * is: as closed, with no ::close (nothing can emit it any more), its queue
 * dropped and its peer told, and the reference its port held on itself let
 * go. Any thread. */
static void
msg_dispatcher_orphan_endpoint (MsgDispatcher *self,
                                MsgEndpoint   *endpoint)
{
  MsgPortMain *port = NULL;

  msg_mutex_lock (&endpoint->lock);
  if (endpoint->ready_list == &self->ready_list)
    {
      port = endpoint->port;
      msg_dispatcher_unbind_locked (endpoint);
      g_clear_error (&endpoint->close_reason);
      endpoint->close_reason = g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED,
                                                    "The port's main context was finalized");
    }
  msg_mutex_unlock (&endpoint->lock);

  if (port == NULL)
    return;

  msg_endpoint_discard_full (endpoint,
                             g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_CLOSED,
                                                  "The main context of the other end was finalized"));
  g_object_unref (port);
  msg_dispatcher_release (self);
}

/* The destroy notify of the dispatcher's callback: called when the source
 * is destroyed, by release() (with the context alive: nothing to do) or
 * by g_main_context_unref() of its last reference, on that thread. Then
 * every port still bound here ends. Nothing may touch the context here,
 * which is half finalized. */
static void
msg_dispatcher_context_gone (gpointer data)
{
  MsgDispatcher *self = data;
  gboolean orphaned;

  if (g_atomic_pointer_get (&self->destroying) == g_thread_self ())
    return;

  /* The source is alive: the context holds a reference on it until this
   * returns. Ours keeps it so while the ports go. */
  msg_dispatcher_ref (self);

  /* From now on no thread wakes the context or destroys the sources in
   * it; one that does so now finishes first (see context_enter()). */
  msg_mutex_lock (&self->lock);
  g_atomic_pointer_set (&self->context, NULL);
  while (g_atomic_int_get (&self->context_users) > 0)
    msg_cond_wait (&self->cond, &self->lock);
  msg_mutex_unlock (&self->lock);

  msg_mutex_lock (&dispatchers_lock);
  orphaned = self->n_bound > 0;
  if (orphaned)
    {
      self->orphaned = TRUE;
      g_hash_table_remove (dispatchers, &self->key);
    }
  msg_mutex_unlock (&dispatchers_lock);

  if (orphaned)
    {
      /* The context took the reader's descriptors out of its poll set
       * (and @reader out of the context): the I/O thread reads them
       * again. */
      give_back_leases (self, TRUE);

      for (;;)
        {
          MsgEndpoint *endpoint = NULL;

          msg_mutex_lock (&self->lock);
          if (self->bound.head != NULL)
            endpoint = msg_endpoint_ref (self->bound.head->data);
          msg_mutex_unlock (&self->lock);

          if (endpoint == NULL)
            break;
          /* Unbinding takes it out of @bound (here, or by a thread that
           * transfers or closes it at the same time). The last one may
           * finalize the port, on this thread. */
          msg_dispatcher_orphan_endpoint (self, endpoint);
          msg_endpoint_unref (endpoint);
        }
    }

  msg_dispatcher_unref (self);
}
