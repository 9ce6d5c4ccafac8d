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
 * queued, and not right after another one, is written at once by the
 * posting thread: a lone message costs one sendmsg() and no thread switch.
 * Otherwise posting encodes and appends to the connection's output queue,
 * and wakes that thread when the queue was empty: in a burst, one sendmsg()
 * carries many messages, and one recvmsg() brings many in.
 *
 * A port that is itself backed by a socket moves to another process with
 * its descriptor: the I/O thread stops reading it and sends the descriptor
 * along with what was read from it but not delivered (re-encoded) and what
 * was queued for it but not written; the new owner decodes the first before
 * reading the socket and writes the second before anything of its own. No
 * process is left relaying for a port that lives elsewhere.
 *
 * Context reads: when the I/O thread has read all there was for a port
 * whose context is waiting in poll(), it leases the socket to that
 * context's dispatcher (msg-dispatcher.c), which polls and reads it from
 * then on, and emits what it read in the same dispatch: a message costs one
 * wake-up, of the thread that handles it. The I/O thread stops polling the
 * socket for input and keeps writing it. What only the I/O thread may do
 * (ports in a message, which may have to be moved; close frames; memfds;
 * errors and end of file) the context hands back with the lease. A
 * watchdog on the I/O thread takes the lease back from a context that
 * stays busy (or stops running) for a watchdog period, so that reading
 * still never waits for an application's main loop; it runs only while a
 * leaseholder is busy. A reader (context or I/O thread) holds
 * connection->context_reading or is the I/O thread with no lease out.
 *
 * Lock order: endpoint locks, then connection->lock, then the GMainContext
 * lock; a dispatcher's lock is never held with a connection's. The I/O
 * thread never holds connection->lock while it takes an endpoint lock.
 */

#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#ifdef HAVE_MALLOC_TRIM
# include <malloc.h>
#endif
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "msg-port-error.h"
#include "msg-transport-private.h"
#include "msg-wire-private.h"

#define READ_SIZE             (256 * 1024)
#define MAX_READS_PER_DISPATCH 32
#define MAX_IOV               64
#define MAX_WRITE_BYTES       (4 * 1024 * 1024)
/* Posts closer together than this are a burst: they are queued for the I/O
 * thread, which writes many with one sendmsg(), rather than written one by
 * one by the posting thread. */
#define BURST_GAP_USEC        10
/* A burst posted from a main-loop callback is handed to the I/O thread
 * when the callback returns; if the thread's context does not come back
 * to its loop by then, after this long at most. */
#define FLUSH_DEADLINE_USEC   1000
/* The send buffer a connection asks for. Linux doubles it for its own
 * bookkeeping and caps it at twice net.core.wmem_max: 512 KiB, or 416 KiB
 * with the default wmem_max, against 208 KiB by default. A writer of large
 * messages is woken half as often: cross-process W-1m throughput +10%. */
#define SEND_BUFFER_SIZE      (256 * 1024)
/* A context that holds a lease and neither polls nor iterates for this
 * long loses it. */
#define WATCHDOG_USEC         (50 * 1000)
/* An output queue that held at least this many bytes at once (a backlog,
 * to a peer that did not read) gives the memory back when it empties:
 * see give_back_memory(). */
#define TRIM_AFTER_BACKLOG    (32 * 1024 * 1024)

/* System calls ------------------------------------------------------------ */

static ssize_t
real_sendmsg (int fd, const struct msghdr *message, int flags)
{
  return sendmsg (fd, message, flags);
}

static ssize_t
real_recvmsg (int fd, struct msghdr *message, int flags)
{
  return recvmsg (fd, message, flags);
}

static int
real_socketpair (int domain, int type, int protocol, int fds[2])
{
  return socketpair (domain, type, protocol, fds);
}

static const MsgSyscalls real_syscalls = {
  real_sendmsg,
  real_recvmsg,
  real_socketpair,
};

static const MsgSyscalls *syscalls = &real_syscalls;  /* (atomic) */

void
msg_transport_set_syscalls (const MsgSyscalls *replacement)
{
  g_atomic_pointer_set (&syscalls, replacement != NULL ? replacement : &real_syscalls);
}

static inline const MsgSyscalls *
get_syscalls (void)
{
  return g_atomic_pointer_get (&syscalls);
}

static gint burst_gap = BURST_GAP_USEC;  /* (atomic) */

void
msg_transport_set_burst_gap (gint usec)
{
  g_atomic_int_set (&burst_gap, usec >= 0 ? usec : BURST_GAP_USEC);
}

static gint n_leases;  /* (atomic) */

guint
msg_transport_count_leases (void)
{
  return g_atomic_int_get (&n_leases);
}

static gint n_memory_given_back;  /* (atomic) */

guint
msg_transport_count_memory_given_back (void)
{
  return g_atomic_int_get (&n_memory_given_back);
}

/* A backlog drained: the messages it held (the application's GVariants,
 * and our frames and items) are freed, but glibc keeps freed memory in its
 * heap, and gives back only what is at its very top; anything allocated
 * after the backlog keeps the rest. 100 000 posts of 1 KiB to a stopped
 * peer left the sender 128 MiB resident once they were all written, and
 * 5 MiB after malloc_trim() (41 MiB with the slice allocator of GLib
 * before 2.76, whose caches this cannot reach). One trim per backlog of
 * TRIM_AFTER_BACKLOG:
 * it returns every free page of every arena, in a few milliseconds, and
 * what the next burst allocates is faulted in again, so it is not done
 * for every queue that empties. The I/O thread calls it, with no lock
 * held. */
static void
give_back_memory (void)
{
  g_atomic_int_inc (&n_memory_given_back);
#ifdef HAVE_MALLOC_TRIM
  malloc_trim (0);
#endif
}

/* The I/O thread ------------------------------------------------------------ */

static GMutex io_lock;
static GMainContext *io_context;   /* protected by io_lock */
static pid_t io_pid;               /* protected by io_lock */
static GSource *watchdog;          /* (atomic): on io_context */

static GSource *watchdog_new (void);

/* A child forked with connections of its parent must not read them (the
 * parent does); its contexts may still hold leases. */
static guint fork_count;  /* (atomic) */

static void
count_fork (void)
{
  g_atomic_int_inc (&fork_count);
}

static gpointer
io_thread_main (gpointer data)
{
  GMainContext *context = data;

  g_main_context_push_thread_default (context);
  for (;;)
    g_main_context_iteration (context, TRUE);

  return NULL;
}

/* The context of the I/O thread, started on first use (and again in a
 * child after fork(), where the parent's thread does not exist). */
static GMainContext *
get_io_context (void)
{
  static gsize at_fork = 0;
  GMainContext *context;

  if (g_once_init_enter (&at_fork))
    {
      pthread_atfork (NULL, NULL, count_fork);
      g_once_init_leave (&at_fork, 1);
    }

  msg_mutex_lock (&io_lock);
  if (io_context == NULL || io_pid != getpid ())
    {
      GSource *source = watchdog_new ();

      /* The I/O thread's g_main_context_push_thread_default() looks the
       * global default context up, and would create it there if it did
       * not exist yet: then the thread that uses it first takes it from
       * that thread under a lock of GLib's, which ThreadSanitizer cannot
       * see. Created here, it comes before the thread. */
      (void) g_main_context_default ();
      io_context = g_main_context_new ();
      io_pid = getpid ();
      g_source_attach (source, io_context);
      g_atomic_pointer_set (&watchdog, source);
      g_thread_unref (g_thread_new ("msgport-io", io_thread_main, io_context));
    }
  context = io_context;
  msg_mutex_unlock (&io_lock);

  return context;
}

/* Connections ---------------------------------------------------------------- */

typedef enum
{
  CONNECTION_OPEN,
  CONNECTION_WRITE_CLOSED,   /* our close frame is written; reading until EOF */
  CONNECTION_DEAD,           /* the descriptor is closed */
  CONNECTION_MOVED,          /* the descriptor went to another process */
} ConnectionState;

typedef struct
{
  GList           link;       /* link.data == the item */
  MsgEnvelope    *envelope;   /* (owned) (nullable): to be encoded by the I/O thread */
  GVariant       *message;    /* (owned) (nullable): the plain message @encoded holds */
  MsgWireEncoded  encoded;
  gsize           offset;     /* bytes of head and data written */
  guint           fds_sent;
  gboolean        is_close;
  gboolean        mid_frame;  /* starts inside a frame: the rest of one that a
                               * port's previous owner had partly written */
} OutItem;

typedef struct
{
  GSource          source;       /* its reference count is the connection's */
  MsgSink          sink;         /* owned by @endpoint: a reference on @source */
  gpointer         fd_tag;       /* I/O thread */
  int              fd;           /* I/O thread; -1 once closed or moved */

  GMutex           lock;
  GCond            written_cond;  /* see connection_wait_locked() */
  /* protected by @lock */
  MsgEndpoint     *endpoint;     /* (owned) (nullable): whose sink this is */
  GQueue           out;          /* of OutItem */
  guint64          n_queued;
  guint64          n_written;
  ConnectionState  state;
  gboolean         close_queued;
  gboolean         kicked;       /* @source is ready: the I/O thread will write */
  gboolean         deadline;     /* @source is due within FLUSH_DEADLINE_USEC */
  gboolean         flush_scheduled;  /* a ConnectionFlush is attached somewhere */
  gboolean         write_blocked;    /* the I/O thread waits for the socket to drain */
  gboolean         writing;      /* a poster writes to @fd, unlocked */
  guint            n_waiters;    /* threads in connection_wait_locked() */
  gint64           last_post;    /* monotonic time of the last post */
  GQueue           garbage;      /* protected by @lock: OutItems written by
                                  * posters, for the I/O thread to free */
  gsize            out_bytes;    /* of @out, encoded and not written yet */
  gsize            out_peak;     /* the most @out_bytes was since @out was empty */
  gboolean         trim_wanted;  /* a backlog drained: give_back_memory() */
  int              write_errno;  /* what failed a poster's write, for the I/O thread */
  MsgDispatcher   *lease;        /* (owned) (nullable): the context that reads @fd */
  gboolean         context_reading;  /* that context reads, unlocked */
  MsgWireFrame    *handed_frame; /* (owned) (nullable): read by the context, for the I/O thread */
  GError          *handed_error; /* (owned) (nullable): what ended its reading */
  guint            forks;        /* fork_count when it was made */

  /* I/O thread only, or the context that reads (see above) */
  MsgWireDecoder  *decoder;

  /* I/O thread only */
  guint            seen_iterations;  /* the leaseholder's, at the last watchdog run */
  gboolean         want_out;
  GIOCondition     polled;       /* what @fd_tag asks for */
  gboolean         peer_closed;  /* its close frame was read */
} MsgConnection;

#define CONNECTION_FROM_SINK(s) ((MsgConnection *) (void *) ((guint8 *) (s) - G_STRUCT_OFFSET (MsgConnection, sink)))

static GSourceFuncs connection_source_funcs;
static void connection_revoke_lease (MsgConnection *self);

static gboolean connection_export (MsgEndpoint  *endpoint,
                                   MsgWirePort  *port,
                                   GError      **error);

static void
out_item_free (OutItem *item)
{
  msg_envelope_free (item->envelope);
  msg_wire_encoded_clear (&item->encoded);
  g_clear_pointer (&item->message, msg_variant_unref);
  g_free (item);
}

static void
out_list_free (GQueue *items)
{
  GList *link;

  while ((link = g_queue_pop_head_link (items)) != NULL)
    out_item_free (link->data);
}

static gsize
out_item_size (OutItem *item)
{
  return g_bytes_get_size (item->encoded.head) +
         (item->encoded.data != NULL ? g_bytes_get_size (item->encoded.data) : 0);
}

static guint
out_item_unsent_fds (OutItem *item)
{
  return item->encoded.fds != NULL ? item->encoded.fds->len - item->fds_sent : 0;
}

/* Points at most two entries of @iov at what is left to write of @item,
 * adds their length to @total and returns how many it used. */
static guint
out_item_add_iov (OutItem      *item,
                  struct iovec *iov,
                  gsize        *total)
{
  gsize head_size = g_bytes_get_size (item->encoded.head);
  gsize offset = item->offset;
  guint n_iov = 0;

  if (offset < head_size)
    {
      iov[n_iov].iov_base = (guint8 *) g_bytes_get_data (item->encoded.head, NULL) + offset;
      iov[n_iov].iov_len = head_size - offset;
      *total += iov[n_iov++].iov_len;
      offset = head_size;
    }
  if (item->encoded.data != NULL && g_bytes_get_size (item->encoded.data) > 0)
    {
      iov[n_iov].iov_base = (guint8 *) g_bytes_get_data (item->encoded.data, NULL) + (offset - head_size);
      iov[n_iov].iov_len = g_bytes_get_size (item->encoded.data) - (offset - head_size);
      *total += iov[n_iov++].iov_len;
    }
  return n_iov;
}

/* Called with @self->lock held: counts @item's bytes in the backlog, once
 * it is encoded. */
static void
connection_count_out_locked (MsgConnection *self,
                             OutItem       *item)
{
  self->out_bytes += out_item_size (item) - item->offset;
  self->out_peak = MAX (self->out_peak, self->out_bytes);
}

/* Called with @self->lock held. */
static void
connection_push_out_locked (MsgConnection *self,
                            OutItem       *item)
{
  g_queue_push_tail_link (&self->out, &item->link);
  if (item->envelope == NULL)
    connection_count_out_locked (self, item);
}

/* Called with @self->lock held, when @out was emptied some other way than
 * by writing it: returns whether a backlog that deserves a trim went. */
static gboolean
connection_forget_out_locked (MsgConnection *self)
{
  gboolean backlog = self->out_peak >= TRIM_AFTER_BACKLOG;

  self->out_bytes = 0;
  self->out_peak = 0;
  self->trim_wanted = FALSE;
  return backlog;
}

/* Waits, with @self->lock held, until connection_signal_locked(): written
 * frames, a poster's direct write ending, the connection ending or a
 * cancellation. */
static void
connection_wait_locked (MsgConnection *self)
{
  self->n_waiters++;
  msg_cond_wait (&self->written_cond, &self->lock);
  self->n_waiters--;
}

/* Called with @self->lock held. A broadcast is a system call even with
 * nobody waiting: most of the time there is nobody. */
static void
connection_signal_locked (MsgConnection *self)
{
  if (self->n_waiters > 0)
    g_cond_broadcast (&self->written_cond);
}

/* Called with @self->lock held. */
static void
connection_kick_locked (MsgConnection *self)
{
  if (!self->kicked)
    {
      self->kicked = TRUE;
      g_source_set_ready_time (&self->source, 0);
    }
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
  if (!self->write_blocked && self->out.length > 0)
    connection_kick_locked (self);
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
      connection_kick_locked (self);
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

  n = get_syscalls ()->sendmsg (self->fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
  errsv = errno;

  msg_mutex_lock (&self->lock);
  self->writing = FALSE;
  if (n < 0 && errsv != EINTR && errsv != EAGAIN && errsv != EWOULDBLOCK)
    self->write_errno = errsv;
  /* Waiters re-check under the lock, which this thread still holds. */
  connection_signal_locked (self);
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
 * (connection_fail(), connection_move()). Returns NULL if all of @item went
 * out (it is added to @done, for the caller to free once @self->lock is
 * released), else @item, its offset advanced, for the queue. */
static OutItem *
connection_write_direct_locked (MsgConnection *self,
                                OutItem       *item,
                                GQueue        *done)
{
  struct iovec iov[2];
  gsize total = 0;
  guint n_iov = out_item_add_iov (item, iov, &total);
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

static void connection_advance_locked (MsgConnection *self,
                                       gsize          n,
                                       GQueue        *done,
                                       gboolean      *close_written);

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
 * connection_write(), which waits for @writing to clear before it goes on.
 * Frames with descriptors, envelopes and the close are left to the I/O
 * thread. What was written whole goes to @done, for the caller to free
 * once @self->lock is released. */
static void
connection_help_write_locked (MsgConnection *self,
                              GQueue        *done)
{
  struct iovec iov[MAX_IOV];
  gboolean close_written = FALSE;
  gsize total = 0;
  guint n_iov = 0;
  ssize_t n;

  for (GList *l = self->out.head; l != NULL && n_iov < MAX_IOV - 1 && total < MAX_WRITE_BYTES; l = l->next)
    {
      OutItem *item = l->data;

      if (item->envelope != NULL || item->is_close || out_item_unsent_fds (item) > 0)
        break;
      n_iov += out_item_add_iov (item, iov + n_iov, &total);
    }
  if (n_iov == 0)
    return;

  n = connection_send_from_poster_locked (self, iov, n_iov);
  if (n > 0)
    connection_advance_locked (self, n, done, &close_written);
  /* The I/O thread gives the memory back, not a poster. */
  if (self->trim_wanted)
    connection_kick_locked (self);
}

/* Called with @self->lock held: queues @item for the I/O thread. A plain
 * message that is not in a memfd (whose frame holds a copy) goes with it:
 * the item takes the poster's reference from *@queued, and whoever frees
 * the item once it is written, after reading its bytes in sendmsg(), drops
 * it (which orders that read before the free, for ThreadSanitizer too). */
static void
connection_queue_message_locked (MsgConnection  *self,
                                 OutItem        *item,
                                 MsgItem       **queued)
{
  if (item->envelope == NULL && item->encoded.fds == NULL && *queued != NULL)
    item->message = (GVariant *) g_steal_pointer (queued);
  connection_push_out_locked (self, item);
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
  OutItem *item;
  gint64 now;

  item = g_new0 (OutItem, 1);
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
  if (self->state != CONNECTION_OPEN || self->close_queued)
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
      if (self->out.length == 0)
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
  out_list_free (&written);

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

static const MsgSinkFuncs connection_sink_funcs = {
  connection_deliver,
  connection_release,
};

gboolean
msg_transport_is_socket_sink (MsgSink *sink)
{
  return sink != NULL && sink->funcs == &connection_sink_funcs;
}

/* Ends the connection: the descriptor is closed, what was not written is
 * dropped, and the port at this end emits ::close with @reason (taken). */
static void
connection_fail (MsgConnection *self,
                 GError        *reason)
{
  MsgEndpoint *endpoint;
  GQueue dropped;
  gboolean trim;

  /* Nobody else reads it from now on. */
  connection_revoke_lease (self);

  msg_mutex_lock (&self->lock);
  while (self->writing)
    connection_wait_locked (self);
  g_clear_pointer (&self->handed_frame, msg_wire_frame_free);
  g_clear_error (&self->handed_error);
  if (self->state == CONNECTION_DEAD || self->state == CONNECTION_MOVED)
    {
      msg_mutex_unlock (&self->lock);
      g_clear_error (&reason);
      return;
    }
  self->state = CONNECTION_DEAD;
  dropped = self->out;
  g_queue_init (&self->out);
  trim = self->trim_wanted;
  trim |= connection_forget_out_locked (self);
  endpoint = g_steal_pointer (&self->endpoint);
  connection_signal_locked (self);
  msg_mutex_unlock (&self->lock);

  if (self->fd_tag != NULL)
    g_source_remove_unix_fd (&self->source, g_steal_pointer (&self->fd_tag));
  if (self->fd >= 0)
    close (self->fd);
  self->fd = -1;
  g_clear_pointer (&self->decoder, msg_wire_decoder_free);
  g_source_destroy (&self->source);

  out_list_free (&dropped);
  if (trim)
    give_back_memory ();
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

/* Best effort: the socket works with whatever it has. Never shrinks a
 * buffer that is larger already (getsockopt() reports the doubled size). */
static void
connection_grow_send_buffer (int fd)
{
  int size = 0;
  socklen_t len = sizeof size;

  if (getsockopt (fd, SOL_SOCKET, SO_SNDBUF, &size, &len) == 0 && size < 2 * SEND_BUFFER_SIZE)
    (void) setsockopt (fd, SOL_SOCKET, SO_SNDBUF, &(int) { SEND_BUFFER_SIZE }, sizeof (int));
}

/* Creates a connection on @fd (taken) that is the sink of @endpoint (a
 * reference is taken): what reaches @endpoint is written to @fd, and what is
 * read from @fd goes to @endpoint's peer. */
static MsgConnection *
connection_new (int          fd,
                MsgEndpoint *endpoint)
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
  g_queue_init (&self->out);
  self->sink.funcs = &connection_sink_funcs;
  self->fd = fd;
  connection_grow_send_buffer (fd);
  self->endpoint = msg_endpoint_ref (endpoint);
  self->state = CONNECTION_OPEN;
  self->decoder = msg_wire_decoder_new ();
  self->forks = g_atomic_int_get (&fork_count);
  self->polled = G_IO_IN | G_IO_HUP | G_IO_ERR;
  self->fd_tag = g_source_add_unix_fd (source, fd, self->polled);
  g_source_set_ready_time (source, -1);

  return self;
}

/* Makes @self the sink of its endpoint and starts it on the I/O thread. */
static void
connection_start (MsgConnection *self)
{
  MsgEndpoint *endpoint = self->endpoint;
  GMainContext *context;

  g_source_ref (&self->source);  /* owned by the endpoint, as its sink */
  msg_endpoint_set_sink (endpoint, &self->sink);
  msg_mutex_lock (&self->lock);
  connection_kick_locked (self);
  msg_mutex_unlock (&self->lock);
  context = get_io_context ();
  msg_tsan_glib_begin ();
  g_source_attach (&self->source, context);
  msg_tsan_glib_end ();
  msg_source_unref (&self->source);
}

static gboolean
set_nonblocking (int      fd,
                 GError **error)
{
  int flags = fcntl (fd, F_GETFL);

  if (flags < 0 || fcntl (fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
      fcntl (fd, F_SETFD, FD_CLOEXEC) < 0)
    {
      int errsv = errno;

      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_SOCKET,
                   "Cannot use descriptor %d: %s", fd, g_strerror (errsv));
      return FALSE;
    }
  return TRUE;
}

gboolean
msg_transport_check_socket (int      fd,
                            GError **error)
{
  struct stat st;
  int value;
  socklen_t len = sizeof value;
  struct sockaddr_storage address;
  socklen_t address_len = sizeof address;

  if (fd < 0 || fstat (fd, &st) < 0)
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_SOCKET,
                   "%d is not a valid file descriptor", fd);
      return FALSE;
    }
  if (!S_ISSOCK (st.st_mode))
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_SOCKET,
                   "Descriptor %d is not a socket", fd);
      return FALSE;
    }
  if (getsockopt (fd, SOL_SOCKET, SO_DOMAIN, &value, &len) < 0 || value != AF_UNIX)
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_SOCKET,
                   "Descriptor %d is not an AF_UNIX socket", fd);
      return FALSE;
    }
  len = sizeof value;
  if (getsockopt (fd, SOL_SOCKET, SO_TYPE, &value, &len) < 0 || value != SOCK_STREAM)
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_SOCKET,
                   "Descriptor %d is not a SOCK_STREAM socket", fd);
      return FALSE;
    }
  if (getpeername (fd, (struct sockaddr *) &address, &address_len) < 0)
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_SOCKET,
                   "Socket %d is not connected", fd);
      return FALSE;
    }
  return TRUE;
}

MsgEndpoint *
msg_transport_new_endpoint (int      fd,
                            GError **error)
{
  MsgEndpoint *local, *remote;
  MsgConnection *connection;

  if (!msg_transport_check_socket (fd, error) || !set_nonblocking (fd, error))
    return NULL;

  local = msg_endpoint_new ();
  remote = msg_endpoint_new ();
  msg_endpoint_entangle (local, remote);
  connection = connection_new (fd, remote);
  connection_start (connection);
  msg_endpoint_unref (remote);

  return local;
}

/* Reading ------------------------------------------------------------------ */

static void
connection_queue_raw (MsgConnection *self,
                      GBytes        *prefix,
                      gsize          offset,
                      gsize          size,
                      gboolean       mid_frame,
                      GArray        *fds,
                      guint          first_fd,
                      guint          n_fds)
{
  OutItem *item = g_new0 (OutItem, 1);

  item->link.data = item;
  item->mid_frame = mid_frame;
  item->encoded.head = g_bytes_new_from_bytes (prefix, offset, size);
  item->encoded.fds = g_array_new (FALSE, FALSE, sizeof (int));
  for (guint i = 0; i < n_fds; i++)
    {
      g_array_append_val (item->encoded.fds, g_array_index (fds, int, first_fd + i));
      g_array_index (fds, int, first_fd + i) = -1;
    }
  connection_push_out_locked (self, item);
  self->n_queued++;
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

      connection_queue_raw (self, port->out_prefix, segment->offset, segment->size,
                            segment->mid_frame, port->out_fds, segment->first_fd,
                            segment->n_fds);
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

  if (!msg_transport_check_socket (port->fd, NULL) || !set_nonblocking (port->fd, NULL))
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_PROTOCOL,
                   "Invalid data from the peer process: a transferred port is not "
                   "a connected Unix stream socket");
      return NULL;
    }

  local = msg_endpoint_new ();
  remote = msg_endpoint_new ();
  msg_endpoint_entangle (local, remote);
  connection = connection_new (g_steal_fd (&port->fd), remote);
  msg_endpoint_unref (remote);

  msg_wire_port_push_in_prefix (port, connection->decoder);
  if (!connection_queue_prefix (connection, port, error))
    {
      /* Not started: nothing reads or writes it yet; failing it ends the
       * port we just made, which nobody has seen. */
      connection_start (connection);
      connection_fail (connection, g_error_copy (*error));
      msg_endpoint_discard (local);
      msg_endpoint_unref (local);
      return NULL;
    }

  connection_start (connection);
  return local;
}

/* The endpoint that what is read goes to, or NULL. */
static MsgEndpoint *
connection_ref_target (MsgConnection *self)
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

/* Delivers @item (taken), read from the socket, to *@target, looked up
 * on first use and kept for the rest of the batch: if the channel ends
 * meanwhile, the target has ended too and drops them. */
static void
connection_deliver_read (MsgConnection  *self,
                         MsgItem        *item,
                         MsgEndpoint   **target)
{
  if (*target == NULL)
    *target = connection_ref_target (self);
  if (*target != NULL)
    msg_endpoint_deliver (*target, item);
  else
    msg_item_free (item);
}

/* Takes @frame; a message goes to *@target (connection_deliver_read()).
 * Returns FALSE if the connection failed. */
static gboolean
connection_handle_frame (MsgConnection  *self,
                         MsgWireFrame   *frame,
                         MsgEndpoint   **target)
{
  MsgEnvelope *envelope;
  GError *error = NULL;

  if (frame->kind == MSG_WIRE_FRAME_CLOSE)
    {
      MsgEndpoint *endpoint;
      ConnectionState state;

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
          connection_fail (self, NULL);
          return FALSE;
        }
      /* Our end answers with its own close frame, then both sides hang
       * up. */
      if (endpoint != NULL)
        {
          msg_endpoint_disentangle (endpoint,
                                    msg_endpoint_new_peer_closed_reason (),
                                    msg_endpoint_new_peer_closed_reason ());
          msg_endpoint_unref (endpoint);
        }
      return TRUE;
    }

  if (!msg_wire_frame_map_data (frame, &error))
    {
      msg_wire_frame_free (frame);
      connection_fail (self, error);
      return FALSE;
    }
  if (frame->n_ports == 0)
    {
      connection_deliver_read (self, msg_item_new_message (g_steal_pointer (&frame->data)),
                               target);
      msg_wire_frame_free (frame);
      return TRUE;
    }
  envelope = msg_envelope_new_message (g_steal_pointer (&frame->data), frame->n_ports);
  for (guint i = 0; i < frame->n_ports; i++)
    {
      envelope->ports[i] = connection_import (&frame->ports[i], &error);
      if (envelope->ports[i] == NULL)
        {
          msg_wire_frame_free (frame);
          msg_envelope_free (envelope);
          connection_fail (self, error);
          return FALSE;
        }
    }
  msg_wire_frame_free (frame);
  connection_deliver_read (self, msg_item_from_envelope (envelope), target);

  return TRUE;
}

/* Delivers the frames the decoder holds. FALSE if the connection failed. */
static gboolean
connection_decode (MsgConnection *self)
{
  MsgEndpoint *target = NULL;
  gboolean ok = TRUE;

  while (ok)
    {
      MsgWireFrame *frame = NULL;
      GError *error = NULL;

      if (self->decoder == NULL)
        ok = FALSE;
      else if (!msg_wire_decoder_next (self->decoder, &frame, &error))
        {
          if (error == NULL)
            break;
          connection_fail (self, error);
          ok = FALSE;
        }
      else
        ok = connection_handle_frame (self, frame, &target);
    }
  g_clear_pointer (&target, msg_endpoint_unref);
  return ok;
}

static void
connection_eof (MsgConnection *self)
{
  ConnectionState state;

  msg_mutex_lock (&self->lock);
  state = self->state;
  msg_mutex_unlock (&self->lock);

  if (state == CONNECTION_WRITE_CLOSED)
    connection_fail (self, NULL);  /* both sides said all they had */
  else if (!msg_wire_decoder_is_empty (self->decoder))
    connection_fail (self, g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_GONE,
                                                "The peer process hung up in the middle of a message"));
  else
    connection_fail (self, g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_GONE,
                                                "The peer process exited or closed its end of the channel"));
}

typedef enum
{
  RECV_DATA,      /* bytes went into the decoder */
  RECV_DRAINED,   /* the same, and the socket is empty for now */
  RECV_AGAIN,     /* nothing to read */
  RECV_EOF,       /* the peer hung up; nothing was taken */
  RECV_FAILED,    /* @error */
} RecvResult;

/* One recvmsg() into the decoder, by the reader of the moment. */
static RecvResult
connection_recv (MsgConnection  *self,
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
  iov.iov_len = MIN (size, (gsize) 16 * 1024 * 1024);
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control.buffer;
  message.msg_controllen = sizeof control.buffer;

  do
    n = get_syscalls ()->recvmsg (self->fd, &message, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
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
  return (gsize) n < iov.iov_len ? RECV_DRAINED : RECV_DATA;
}

static void connection_maybe_lease (MsgConnection *self);

static void
connection_read (MsgConnection *self,
                 GIOCondition   revents)
{
  /* Frames handed on with the port, or left by a context that read, come
   * first. */
  if (!connection_decode (self))
    return;
  if ((revents & (G_IO_IN | G_IO_HUP | G_IO_ERR)) == 0)
    return;

  for (guint i = 0; i < MAX_READS_PER_DISPATCH; i++)
    {
      GError *error = NULL;

      switch (connection_recv (self, &error))
        {
        case RECV_AGAIN:
          connection_maybe_lease (self);
          return;
        case RECV_EOF:
          connection_eof (self);
          return;
        case RECV_FAILED:
          connection_fail (self, error);
          return;
        case RECV_DRAINED:
          if (connection_decode (self))
            connection_maybe_lease (self);
          return;
        case RECV_DATA:
          if (!connection_decode (self))
            return;
          break;
        default:
          g_assert_not_reached ();
        }
    }

  /* Fair to the other connections: come back on the next iteration. */
  msg_mutex_lock (&self->lock);
  connection_kick_locked (self);
  msg_mutex_unlock (&self->lock);
}

/* Context reads --------------------------------------------------------------- */

/* The I/O thread's watchdog: a GSource that keeps the connections whose
 * sockets it leased, and runs a watchdog period after a leaseholder left
 * poll(). */
typedef struct
{
  GSource    source;
  GPtrArray *leased;   /* of MsgConnection, each holding a reference; I/O thread only */
  gint       armed;    /* (atomic) */
} Watchdog;

MsgLease *
msg_transport_lease_ref (MsgLease *lease)
{
  g_source_ref ((GSource *) lease);
  return lease;
}

void
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

void
msg_transport_watchdog_poke (void)
{
  Watchdog *self = (Watchdog *) g_atomic_pointer_get (&watchdog);

  if (self != NULL && g_atomic_int_get (&self->armed) == 0)
    watchdog_arm (self);
}

/* Called with @self->lock held: ends the lease, returning the reference
 * it held on the leaseholder, for the caller to drop once unlocked. */
static MsgDispatcher *
connection_end_lease_locked (MsgConnection *self)
{
  MsgDispatcher *holder = g_steal_pointer (&self->lease);

  if (holder != NULL)
    {
      g_atomic_int_add (&n_leases, -1);
      /* The I/O thread polls for input again. */
      connection_kick_locked (self);
    }
  return holder;
}

/* Ends the lease once the context that reads has finished what it was
 * reading; if @from is not %NULL, only a lease @from holds. Returns the
 * reference the lease held on its holder, or %NULL. */
static MsgDispatcher *
connection_take_lease_back (MsgConnection *self,
                            MsgDispatcher *from)
{
  MsgDispatcher *holder = NULL;

  msg_mutex_lock (&self->lock);
  while (self->context_reading)
    connection_wait_locked (self);
  if (from == NULL || self->lease == from)
    holder = connection_end_lease_locked (self);
  msg_mutex_unlock (&self->lock);
  return holder;
}

/* I/O thread: takes the socket back, and tells its holder. */
static void
connection_revoke_lease (MsgConnection *self)
{
  MsgDispatcher *holder = connection_take_lease_back (self, NULL);

  if (holder != NULL)
    {
      msg_dispatcher_drop_lease (holder, (MsgLease *) self);
      msg_dispatcher_unref (holder);
    }
}

void
msg_transport_lease_give_back (MsgLease      *lease,
                               MsgDispatcher *dispatcher)
{
  MsgDispatcher *holder = connection_take_lease_back ((MsgConnection *) lease, dispatcher);

  if (holder != NULL)
    msg_dispatcher_unref (holder);
}

/* What a dispatcher knows of a connection whose socket it reads. */
static const MsgLeaseFuncs connection_lease_funcs = {
  .ref = msg_transport_lease_ref,
  .unref = msg_transport_lease_unref,
  .read = msg_transport_lease_read,
  .give_back = msg_transport_lease_give_back,
  .poke = msg_transport_watchdog_poke,
};

/* I/O thread, after reading all there was: leases the socket to the
 * context the messages go to, if it is waiting in poll(). */
static void
connection_maybe_lease (MsgConnection *self)
{
  Watchdog *dog = (Watchdog *) g_atomic_pointer_get (&watchdog);
  MsgEndpoint *target;
  MsgDispatcher *dispatcher = NULL;
  guint iterations;
  gboolean ok;

  if (self->decoder == NULL)
    return;

  msg_mutex_lock (&self->lock);
  ok = self->state == CONNECTION_OPEN && self->lease == NULL && self->handed_frame == NULL &&
       self->handed_error == NULL;
  msg_mutex_unlock (&self->lock);
  if (!ok || (target = connection_ref_target (self)) == NULL)
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
  self->lease = msg_dispatcher_ref (dispatcher);
  g_atomic_int_inc (&n_leases);
  msg_mutex_unlock (&self->lock);

  if (!msg_dispatcher_add_lease (dispatcher, (MsgLease *) self, &connection_lease_funcs, self->fd))
    {
      msg_transport_lease_give_back ((MsgLease *) self, dispatcher);
      msg_dispatcher_unref (dispatcher);
      return;
    }
  msg_dispatcher_unref (dispatcher);

  self->seen_iterations = iterations;
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
      MsgItem *item;

      if (!msg_wire_decoder_next (self->decoder, &frame, error))
        return *error == NULL;
      if (frame->kind != MSG_WIRE_FRAME_MESSAGE || frame->n_ports > 0 || frame->data_fd >= 0)
        {
          *handed = frame;
          return FALSE;
        }
      item = msg_item_new_message (g_steal_pointer (&frame->data));
      msg_wire_frame_free (frame);
      connection_deliver_read (self, item, target);
    }
}

gboolean
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
  if (self->lease != dispatcher || self->forks != (guint) g_atomic_int_get (&fork_count))
    {
      msg_mutex_unlock (&self->lock);
      return FALSE;
    }
  self->context_reading = TRUE;
  msg_mutex_unlock (&self->lock);

  /* As much as the I/O thread would read in one go; if there is more, the
   * socket is still readable on the next iteration. */
  for (guint i = 0; i < MAX_READS_PER_DISPATCH; i++)
    {
      RecvResult result = connection_recv (self, &error);

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
      holder = connection_end_lease_locked (self);
    }
  connection_signal_locked (self);
  msg_mutex_unlock (&self->lock);

  g_clear_pointer (&target, msg_endpoint_unref);
  if (holder != NULL)
    msg_dispatcher_unref (holder);
  return keep;
}

/* I/O thread: what a context that read handed back. FALSE if the
 * connection failed. */
static gboolean
connection_take_handed (MsgConnection *self)
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
    ok = connection_handle_frame (self, frame, &target);
  g_clear_pointer (&target, msg_endpoint_unref);
  if (ok && error != NULL)
    {
      connection_fail (self, g_steal_pointer (&error));
      ok = FALSE;
    }
  g_clear_error (&error);
  return ok;
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
              connection_revoke_lease (connection);
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

static GSource *
watchdog_new (void)
{
  GSource *source = g_source_new (&watchdog_funcs, sizeof (Watchdog));
  Watchdog *self = (Watchdog *) source;

  g_source_set_static_name (source, "MsgPortMain lease watchdog");
  self->leased = g_ptr_array_new_with_free_func ((GDestroyNotify) msg_source_unref);
  return source;
}

/* Writing ------------------------------------------------------------------ */

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
  gboolean ok = TRUE;

  if (envelope->kind == MSG_ENVELOPE_CLOSE)
    frame = msg_wire_frame_new (MSG_WIRE_FRAME_CLOSE, NULL, 0);
  else
    frame = msg_wire_frame_new (MSG_WIRE_FRAME_MESSAGE,
                                g_steal_pointer (&envelope->data), envelope->n_ports);

  for (guint i = 0; i < envelope->n_ports && ok; i++)
    ok = connection_export (g_steal_pointer (&envelope->ports[i]), &frame->ports[i], error);
  msg_envelope_free (envelope);

  return ok && msg_wire_encode (frame, encoded, error);
}

typedef enum
{
  MOVE_DONE,
  MOVE_IMPOSSIBLE,   /* the connection is ending: bridge instead */
  MOVE_FAILED,
} MoveResult;

/* Moves the connection that backs @endpoint (a port in flight) into
 * @port: its descriptor, and everything read or queued but not handed on. */
static MoveResult
connection_move (MsgConnection  *self,
                 MsgEndpoint    *endpoint,
                 MsgWirePort    *port,
                 GError        **error)
{
  g_autoptr(GByteArray) in_bytes = g_byte_array_new ();
  g_autoptr(GByteArray) out_bytes = g_byte_array_new ();
  GArray *in_fds = g_array_new (FALSE, FALSE, sizeof (int));
  GArray *out_fds = g_array_new (FALSE, FALSE, sizeof (int));
  MsgQueue queued = MSG_QUEUE_INIT;
  GQueue unwritten;
  MsgEndpoint *remote;
  OutItem *head;
  MsgItem *read_item;
  GList *link;
  gboolean movable;
  gsize out_partial = 0;
  int fd;

  /* Only this thread reads the connection from now on (what a context
   * that read it handed back goes to @endpoint first), and writes it, and
   * nobody can post on @endpoint while it is in flight: the state read
   * here stays true. */
  connection_revoke_lease (self);
  if (!connection_take_handed (self))
    {
      g_array_unref (in_fds);
      g_array_unref (out_fds);
      return MOVE_IMPOSSIBLE;
    }
  msg_mutex_lock (&self->lock);
  movable = self->state == CONNECTION_OPEN && !self->close_queued && self->endpoint != NULL;
  head = g_queue_peek_head (&self->out);
  /* The rest of a partly written frame travels without descriptors: one
   * whose descriptors are not all sent yet (more than one sendmsg() takes)
   * cannot move; the port is bridged instead. */
  if (head != NULL && head->offset > 0 && out_item_unsent_fds (head) > 0)
    movable = FALSE;
  msg_mutex_unlock (&self->lock);
  msg_mutex_lock (&endpoint->lock);
  movable = movable && !endpoint->ended;
  if (movable)
    queued = msg_queue_steal (&endpoint->queue);
  msg_mutex_unlock (&endpoint->lock);
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
  msg_wire_decoder_steal (self->decoder, in_bytes, in_fds);

  msg_mutex_lock (&self->lock);
  while (self->writing)
    connection_wait_locked (self);
  unwritten = self->out;
  g_queue_init (&self->out);
  /* What it held goes on with the port, not back to the system. */
  connection_forget_out_locked (self);
  self->state = CONNECTION_MOVED;
  self->n_written = self->n_queued;
  remote = g_steal_pointer (&self->endpoint);
  connection_signal_locked (self);
  msg_mutex_unlock (&self->lock);

  /* Queued but not written: the rest of a partly written frame first. */
  while ((link = g_queue_pop_head_link (&unwritten)) != NULL)
    {
      OutItem *item = link->data;
      g_autoptr(GError) lost = NULL;

      if (item->envelope != NULL &&
          !encode_envelope (g_steal_pointer (&item->envelope), &item->encoded, &lost))
        {
          /* Too late to go back: that message is lost. */
          g_warning ("A message was lost while its port moved: %s", lost->message);
          out_item_free (item);
          continue;
        }
      /* Only the head can be partly written, or be the rest of a frame
       * that came with the port and is not written yet (offset 0, yet not
       * on a frame boundary): either way the next owner must not take it
       * for the start of a frame. */
      if (item->offset > 0 || item->mid_frame)
        out_partial = out_item_size (item) - item->offset;
      if (item->offset < g_bytes_get_size (item->encoded.head))
        g_byte_array_append (out_bytes,
                             (const guint8 *) g_bytes_get_data (item->encoded.head, NULL) + item->offset,
                             g_bytes_get_size (item->encoded.head) - item->offset);
      if (item->encoded.data != NULL)
        {
          gsize head_size = g_bytes_get_size (item->encoded.head);
          gsize skip = item->offset > head_size ? item->offset - head_size : 0;

          g_byte_array_append (out_bytes,
                               (const guint8 *) g_bytes_get_data (item->encoded.data, NULL) + skip,
                               g_bytes_get_size (item->encoded.data) - skip);
        }
      for (guint i = item->fds_sent; item->encoded.fds != NULL && i < item->encoded.fds->len; i++)
        {
          g_array_append_val (out_fds, g_array_index (item->encoded.fds, int, i));
          g_array_index (item->encoded.fds, int, i) = -1;
        }
      out_item_free (item);
    }

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
  msg_endpoint_discard (endpoint);
  msg_endpoint_unref (remote);
  return MOVE_DONE;
}

/* Puts @endpoint (taken: a port in flight) into @port: moves its socket if
 * it has one, or else makes it a bridge to a new socket pair. */
static gboolean
connection_export (MsgEndpoint  *endpoint,
                   MsgWirePort  *port,
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

  if (msg_transport_is_socket_sink (sink))
    {
      MsgConnection *backing = CONNECTION_FROM_SINK (sink);
      MoveResult result;
      GError *move_error = NULL;

      g_source_ref (&backing->source);
      result = connection_move (backing, endpoint, port, &move_error);
      if (result == MOVE_FAILED)
        {
          /* What it carried is lost: end its channel (the remote end sees
           * the socket close) and send the port on, ended, below, so that
           * only this port closes, not the one carrying it. */
          g_warning ("A port could not move to another process: %s", move_error->message);
          connection_fail (backing, g_steal_pointer (&move_error));
        }
      msg_source_unref (&backing->source);
      if (result == MOVE_DONE)
        {
          msg_endpoint_unref (peer);
          msg_endpoint_unref (endpoint);
          return TRUE;
        }
    }
  g_clear_pointer (&peer, msg_endpoint_unref);

  if (get_syscalls ()->socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
    {
      int errsv = errno;

      msg_endpoint_discard (endpoint);
      msg_endpoint_unref (endpoint);
      g_set_error (error, MSG_PORT_ERROR, msg_transport_error_code (errsv),
                   "Cannot create a socket pair for a transferred port: %s",
                   g_strerror (errsv));
      return FALSE;
    }
  if (!set_nonblocking (fds[0], NULL))
    g_warn_if_reached ();

  bridge = connection_new (fds[0], endpoint);
  connection_start (bridge);
  msg_endpoint_unref (endpoint);
  port->fd = fds[1];
  return TRUE;
}

/* Called after @n bytes of the head item went out. */
static void
connection_advance_locked (MsgConnection *self,
                           gsize          n,
                           GQueue        *done,
                           gboolean      *close_written)
{
  while (n > 0)
    {
      OutItem *item = g_queue_peek_head (&self->out);
      gsize remaining = out_item_size (item) - item->offset;

      if (n < remaining)
        {
          item->offset += n;
          self->out_bytes -= n;
          return;
        }
      n -= remaining;
      self->out_bytes -= remaining;
      g_queue_pop_head_link (&self->out);
      g_queue_push_tail_link (done, &item->link);
      self->n_written++;
      *close_written |= item->is_close;
    }
  if (self->out.length == 0)
    {
      self->trim_wanted |= self->out_peak >= TRIM_AFTER_BACKLOG;
      self->out_bytes = 0;
      self->out_peak = 0;
    }
}

static void
connection_fail_write (MsgConnection *self,
                       int            errsv)
{
  connection_fail (self, g_error_new (MSG_PORT_ERROR, msg_transport_error_code (errsv),
                                      "Writing to the peer process failed: %s",
                                      g_strerror (errsv)));
}

/* The socket is full: connection_dispatch() polls it for output, and the
 * next connection_write() takes everything posted meanwhile, which
 * therefore needs no kick. */
static void
connection_wait_writable (MsgConnection *self)
{
  self->want_out = TRUE;
  msg_mutex_lock (&self->lock);
  self->write_blocked = TRUE;
  msg_mutex_unlock (&self->lock);
}

static void
connection_write (MsgConnection *self)
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
  out_list_free (&garbage);

  for (;;)
    {
      struct iovec iov[MAX_IOV];
      struct msghdr message = { 0, };
      OutItem *head;
      GQueue done = G_QUEUE_INIT;
      gboolean close_written = FALSE;
      guint n_iov = 0, n_fds = 0;
      gsize total = 0;
      gboolean trim;
      ssize_t n;
      int errsv;

      msg_mutex_lock (&self->lock);
      /* A poster writes while this thread waited for the socket to drain
       * (connection_help_write_locked()): only one writes at a time. */
      while (self->writing)
        connection_wait_locked (self);
      self->write_blocked = FALSE;
      head = self->state == CONNECTION_OPEN ? g_queue_peek_head (&self->out) : NULL;
      errsv = self->write_errno;
      if (head == NULL || errsv != 0)
        {
          /* A poster may have written the end of a backlog. */
          trim = self->trim_wanted;
          self->trim_wanted = FALSE;
          msg_mutex_unlock (&self->lock);
          if (trim)
            give_back_memory ();
          if (errsv != 0)
            connection_fail_write (self, errsv);
          return;
        }
      if (head->envelope != NULL)
        {
          MsgEnvelope *envelope = g_steal_pointer (&head->envelope);
          GError *error = NULL;

          /* Posters only append behind it, so it can be encoded in place,
           * unlocked: the ports it carries may need other locks. */
          msg_mutex_unlock (&self->lock);
          if (!encode_envelope (envelope, &head->encoded, &error))
            {
              connection_fail (self, error);
              return;
            }
          msg_mutex_lock (&self->lock);
          connection_count_out_locked (self, head);
          msg_mutex_unlock (&self->lock);
          continue;
        }

      n_fds = MIN (out_item_unsent_fds (head), MSG_WIRE_MAX_FDS_PER_SEND);
      for (GList *l = self->out.head; l != NULL && n_iov < MAX_IOV - 1 && total < MAX_WRITE_BYTES; l = l->next)
        {
          OutItem *item = l->data;

          if (item->envelope != NULL || (item != head && out_item_unsent_fds (item) > 0))
            break;
          n_iov += out_item_add_iov (item, iov + n_iov, &total);
          /* More descriptors than one sendmsg() may carry: one byte each
           * time until the rest fit. */
          if (out_item_unsent_fds (head) > MSG_WIRE_MAX_FDS_PER_SEND)
            {
              n_iov = 1;
              iov[0].iov_len = 1;
              break;
            }
        }
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

      n = get_syscalls ()->sendmsg (self->fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
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
          connection_fail_write (self, errsv);
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
      connection_advance_locked (self, n, &done, &close_written);
      if (done.length > 0)
        connection_signal_locked (self);
      if (close_written)
        self->state = CONNECTION_WRITE_CLOSED;
      trim = self->trim_wanted;
      self->trim_wanted = FALSE;
      msg_mutex_unlock (&self->lock);

      out_list_free (&done);
      if (trim)
        give_back_memory ();
      if (close_written)
        {
          /* Said all we will say. If the peer said so too, we are done;
           * else read until it answers or hangs up. */
          if (self->peer_closed)
            connection_fail (self, NULL);
          else
            shutdown (self->fd, SHUT_WR);
          return;
        }
    }
}

/* The GSource ---------------------------------------------------------------- */

/* What connection_dispatch() does. */
static void
connection_service (GSource *source)
{
  MsgConnection *self = (MsgConnection *) source;
  GIOCondition revents = 0, wanted;
  ConnectionState state;
  gboolean leased;

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
  msg_mutex_unlock (&self->lock);

  if (state != CONNECTION_OPEN && state != CONNECTION_WRITE_CLOSED)
    return;

  if (self->fd_tag != NULL)
    revents = g_source_query_unix_fd (source, self->fd_tag);

  /* What a context that read gave back with its lease comes before
   * anything else: a close frame read before a write fails with EPIPE
   * still ends the port with PEER_CLOSED. */
  if (!connection_take_handed (self))
    return;
  if (state == CONNECTION_OPEN)
    connection_write (self);
  if (self->fd_tag == NULL)
    return;

  /* The I/O thread does not poll a leased socket for input, but hears of
   * a hang-up or an error, which it handles itself. */
  msg_mutex_lock (&self->lock);
  leased = self->lease != NULL;
  msg_mutex_unlock (&self->lock);
  if (leased && (revents & (G_IO_HUP | G_IO_ERR)) != 0)
    {
      connection_revoke_lease (self);
      leased = FALSE;
    }
  /* With no lease out, only this thread reads; what a context gave back
   * meanwhile (a close frame, say, before the end of file) comes before
   * anything read after it. */
  if (!leased)
    {
      if (!connection_take_handed (self))
        return;
      connection_read (self, revents);
    }

  msg_mutex_lock (&self->lock);
  leased = self->lease != NULL;
  msg_mutex_unlock (&self->lock);
  wanted = (leased ? 0 : G_IO_IN) | G_IO_HUP | G_IO_ERR | (self->want_out ? G_IO_OUT : 0);
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
  g_clear_pointer (&self->handed_frame, msg_wire_frame_free);
  g_clear_error (&self->handed_error);
  if (self->fd >= 0)
    close (self->fd);
  out_list_free (&self->out);
  out_list_free (&self->garbage);
  g_clear_pointer (&self->decoder, msg_wire_decoder_free);
  g_cond_clear (&self->written_cond);
  g_mutex_clear (&self->lock);
  msg_source_finalized (source);
}

static GSourceFuncs connection_source_funcs = {
  .dispatch = connection_dispatch,
  .finalize = connection_finalize,
};

/* flush() ---------------------------------------------------------------- */

static void
flush_cancelled (GCancellable *cancellable,
                 gpointer      data)
{
  MsgConnection *self = data;

  msg_mutex_lock (&self->lock);
  connection_signal_locked (self);
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
    connection_kick_locked (self);
  while (self->n_written < target &&
         (self->state == CONNECTION_OPEN || self->state == CONNECTION_WRITE_CLOSED) &&
         !g_cancellable_is_cancelled (cancellable))
    connection_wait_locked (self);
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
