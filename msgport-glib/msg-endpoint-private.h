/* msg-endpoint-private.h: the engine behind MsgPortMain
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A #MsgPortMain is a thin handle on a MsgEndpoint. The endpoint is what is
 * entangled: it owns the queue of messages that arrived for its end and a
 * reference to the endpoint its own posts go to. Transferring a port moves
 * the endpoint (not the GObject) inside an envelope; the receiver wraps it in
 * a new #MsgPortMain. Because the queue travels with the endpoint, messages
 * already queued or still in flight to a port reach its new home in order,
 * with no hand-over protocol at all.
 *
 * A started endpoint is bound to the MsgDispatcher of its GMainContext: one
 * GSource per context, shared by every port started there, armed only when
 * its ready list goes from empty to non-empty (one wake-up per batch, and no
 * cost per idle port on any main-loop iteration). The endpoint knows it only
 * as a MsgReadyList, and is told by start() how to hand an item to its
 * handle (MsgEmitFunc): the layers depend one way, queue <- endpoint <-
 * dispatcher <- port, and the process transport sits beside the port.
 *
 * A sink replaces the queue where messages for this end must go somewhere
 * else than to local handlers: the process transport installs one to relay
 * an endpoint's arrivals to a socket (see msg-transport-private.h).
 *
 * Locking: endpoint->lock, then dispatcher->lock, then the GMainContext's
 * lock (taken inside g_source_set_ready_time()). Two endpoint locks are only
 * held together by transfer_lock_all(), in address order. Nothing is
 * emitted, unreffed, or freed under any of these locks.
 */

#pragma once

#include <gio/gio.h>

#include "msg-lock-private.h"

G_BEGIN_DECLS

typedef struct _MsgEndpoint   MsgEndpoint;
typedef struct _MsgPortMain   MsgPortMain;
typedef struct _MsgEnvelope   MsgEnvelope;
typedef struct _MsgSink       MsgSink;

typedef enum
{
  MSG_ENVELOPE_MESSAGE,
  MSG_ENVELOPE_CLOSE,
} MsgEnvelopeKind;

/* Message data read from another process that is not checked yet: the
 * reader that made it (the process transport) leaves the checks that cost
 * in proportion to the data (normal form, mapping a memfd) to the context
 * of the port it is for, so that each port pays for its own data and not
 * the I/O thread that every channel shares. */
typedef struct _MsgUnchecked MsgUnchecked;

typedef struct
{
  /* Takes @unchecked; returns its data, or NULL and why it is refused
   * (MSG_PORT_ERROR_PROTOCOL, say). Any thread, no lock held. */
  GVariant *(*check) (MsgUnchecked  *unchecked,
                      GError       **error);
  void      (*free)  (MsgUnchecked  *unchecked);
} MsgUncheckedFuncs;

struct _MsgUnchecked
{
  const MsgUncheckedFuncs *funcs;
  gsize                    size;   /* bytes of data, for read-ahead */
};

/* What a message with ports or descriptors, a NULL message, a message not
 * checked yet or the end of a channel travels in: one allocation, the transferred
 * endpoints inside it. */
struct _MsgEnvelope
{
  MsgEnvelopeKind  kind;
  GVariant        *data;       /* (owned) (nullable) */
  MsgUnchecked    *unchecked;  /* (owned) (nullable): instead of @data until
                                * msg_item_check() */
  GError          *reason;     /* (owned) (nullable): MSG_ENVELOPE_CLOSE only */
  GUnixFDList     *fd_list;    /* (owned) (nullable): descriptors the `h`
                                * handles of @data index; never empty (the
                                * process transport empties it only when it
                                * takes the envelope apart to send it) */
  guint            n_ports;
  MsgEndpoint     *ports[];    /* (owned): transferred endpoints, in order */
};

MsgEnvelope *msg_envelope_new_message (GVariant     *data,
                                       guint         n_ports);
MsgEnvelope *msg_envelope_new_close   (GError       *reason);
void         msg_envelope_free        (MsgEnvelope  *envelope);

/* An item is what is queued for an endpoint: a plain message (a non-NULL
 * GVariant and no ports, the everyday case) is the GVariant itself, so
 * queuing it allocates nothing; anything else is an envelope, told apart
 * by the low bit of the pointer (GVariants and envelopes are at least
 * 8-byte aligned). A plain message read from another process and not yet
 * checked to be in normal form has the second bit set instead: it still
 * allocates nothing, and msg_item_check() checks it where it is emitted.
 * An item owns what it points to. */
typedef struct _MsgItem MsgItem;

#define MSG_ITEM_TAG_ENVELOPE   ((guintptr) 1)
#define MSG_ITEM_TAG_UNCHECKED  ((guintptr) 2)
#define MSG_ITEM_TAGS           (MSG_ITEM_TAG_ENVELOPE | MSG_ITEM_TAG_UNCHECKED)

static inline gboolean
msg_item_is_envelope (const MsgItem *item)
{
  return ((guintptr) item & MSG_ITEM_TAG_ENVELOPE) != 0;
}

/* A plain message that msg_item_check() must check before it is used. */
static inline gboolean
msg_item_is_unchecked_message (const MsgItem *item)
{
  return ((guintptr) item & MSG_ITEM_TAG_UNCHECKED) != 0;
}

/* The GVariant of a plain message, checked or not. */
static inline GVariant *
msg_item_peek_message (MsgItem *item)
{
  return (GVariant *) ((guintptr) item & ~MSG_ITEM_TAGS);
}

static inline MsgEnvelope *
msg_item_peek_envelope (MsgItem *item)
{
  return (MsgEnvelope *) ((guintptr) item & ~MSG_ITEM_TAG_ENVELOPE);
}

static inline MsgItem *
msg_item_from_envelope (MsgEnvelope *envelope)
{
  return (MsgItem *) ((guintptr) envelope | 1);
}

static inline gboolean
msg_item_is_close (MsgItem *item)
{
  return msg_item_is_envelope (item) &&
         msg_item_peek_envelope (item)->kind == MSG_ENVELOPE_CLOSE;
}

/* Takes @data: a plain message needs no envelope, a NULL one does. */
static inline MsgItem *
msg_item_new_message (GVariant *data)
{
  if (G_LIKELY (data != NULL))
    return (MsgItem *) data;
  return msg_item_from_envelope (msg_envelope_new_message (NULL, 0));
}

MsgItem     *msg_item_new_unchecked   (GVariant     *data);
MsgItem     *msg_item_new_unchecked_envelope (MsgUnchecked *unchecked,
                                              guint         n_ports,
                                              MsgEnvelope **envelope);
MsgEnvelope *msg_item_steal_envelope  (MsgItem      *item);
/* The bytes of message data @item holds (unchecked: as declared). The same
 * whenever it is asked. */
gsize        msg_item_data_size       (MsgItem      *item);

/* Whether msg_item_check() has anything to do for @item. */
static inline gboolean
msg_item_needs_check (MsgItem *item)
{
  if (msg_item_is_envelope (item))
    return msg_item_peek_envelope (item)->unchecked != NULL;
  return msg_item_is_unchecked_message (item);
}

gboolean     msg_item_check           (MsgItem     **item,
                                       GError      **error);
gboolean     msg_envelope_check       (MsgEnvelope  *envelope,
                                       GError      **error);
void         msg_item_free            (MsgItem      *item);

/* For tests: called with TRUE around each check msg_item_check() makes,
 * with FALSE after it, on the thread that makes it. */
void         msg_item_set_check_hook  (void        (*hook) (gboolean checking));

/* A FIFO of items: a ring, allocated on the first push, that doubles when
 * full. Once empty it keeps up to 64 items (640 bytes) for the next
 * burst and shrinks to that beyond, so a backlog does not pin its memory.
 *
 * Each item is queued with its msg_item_data_size(), which whoever queues
 * it knows (a post computed it for flow control), so that whoever takes
 * it out does not ask the GVariant again (GLib locks it to tell): the
 * @capacity sizes follow the @capacity items in the one allocation of
 * @items (msg_queue_sizes()), in 16 bits: a size from
 * MSG_QUEUE_SIZE_UNKNOWN (64 KiB - 1) up is asked of the item again,
 * which costs little beside the message. */
typedef struct
{
  MsgItem **items;     /* (owned) (nullable) */
  guint     head;
  guint     length;
  guint     capacity;  /* 0 or a power of two */
} MsgQueue;

#define MSG_QUEUE_INIT { NULL, 0, 0, 0 }
#define MSG_QUEUE_SIZE_UNKNOWN  G_MAXUINT16

static inline guint16 *
msg_queue_sizes (const MsgQueue *queue)
{
  return (guint16 *) (queue->items + queue->capacity);
}

/* @size is msg_item_data_size (@item). */
void     msg_queue_push_sized (MsgQueue  *queue,
                               MsgItem   *item,
                               gsize      size);
/* Returns the first item and its size in *@size (optional). */
MsgItem *msg_queue_pop_sized  (MsgQueue  *queue,
                               gsize     *size);
/* The same, asking msg_item_data_size(), and not telling it. */
void     msg_queue_push  (MsgQueue  *queue,
                          MsgItem   *item);
MsgItem *msg_queue_pop   (MsgQueue  *queue);
/* The size queued with the item at @position (0 is the first). */
gsize    msg_queue_peek_size (const MsgQueue *queue,
                              guint           position);
MsgQueue msg_queue_steal (MsgQueue  *queue);
void     msg_queue_clear (MsgQueue  *queue);

/* Where an endpoint's arrivals go instead of its queue. deliver() is
 * called with the endpoint's lock held, so it must not take any endpoint
 * lock, emit, free an envelope, or block: it takes @item, or returns it
 * for the caller to free once the lock is released. */
typedef struct
{
  MsgItem *(*deliver) (MsgSink *sink,
                       MsgItem *item);
  void     (*release) (MsgSink *sink);
  /* (nullable): flow control. The endpoint whose peer has this sink (a
   * local stand-in for a port in another process) had @n_messages of
   * @n_bytes taken by its handlers: the sink tells the far end, whose
   * msg_endpoint_acknowledge() credits the poster. The dispatcher calls
   * it for each message just before it emits it (so that a reply posted
   * by the handler can carry the word), then with 0 messages once the
   * batch ended. Any thread, no lock held. */
  void     (*consumed) (MsgSink *sink,
                        guint    n_messages,
                        guint64  n_bytes);
} MsgSinkFuncs;

struct _MsgSink
{
  const MsgSinkFuncs *funcs;
};

/* Where a started endpoint goes when its queue has items to deliver: its
 * dispatcher, which implements this so that the endpoint does not depend
 * on it. mark_ready() is called with the endpoint's lock held; it may not
 * take any endpoint lock, emit or free anything. If it must wake the
 * context and @wake_later is not %NULL, it returns itself there (a
 * reference) for the caller to pass to wake() once its lock is released.
 * Not the context: the list holds no reference on it (it may be finalized
 * meanwhile, and wake() knows whether it was). */
typedef struct _MsgReadyList MsgReadyList;

typedef struct
{
  void (*mark_ready) (MsgReadyList  *list,
                      MsgEndpoint   *endpoint,
                      MsgReadyList **wake_later);
  /* Wakes the context of @list, if it still exists, and drops the
   * reference mark_ready() returned. No lock held. */
  void (*wake)       (MsgReadyList  *list);
} MsgReadyListFuncs;

struct _MsgReadyList
{
  const MsgReadyListFuncs *funcs;
};

/* What a dispatcher lends the emit functions of its endpoints, on its
 * context's thread only, to keep what they reuse from one item to the next
 * (the port keeps its spare event there). The dispatcher frees @data with
 * @destroy when it goes, and touches it in no other way. */
typedef struct
{
  gpointer       data;     /* (owned) (nullable) */
  GDestroyNotify destroy;  /* (nullable): set with @data */
} MsgEmitCache;

/* How a started endpoint's items reach the handlers of @port, its handle:
 * set when the port is started, called by the dispatcher in the endpoint's
 * context with no lock held. Takes @item. Called with a %NULL @item when
 * the endpoint's flow state changed (MsgEndpoint.flow_pending): the port
 * emits its notifications and ::drain. */
typedef void (*MsgEmitFunc) (MsgPortMain  *port,
                             MsgItem      *item,
                             MsgEmitCache *cache);

/* Read-ahead: what a socket reader (the process transport) has queued on
 * an endpoint and nobody has taken yet is bounded. Above the high marks
 * the reader pauses (it stops reading its socket, so that the kernel's
 * buffer pushes back on the sender) until the queue is down to the low
 * marks. Items and bytes of message data; whichever is reached first. */
#define MSG_READ_AHEAD_HIGH_ITEMS   16384
#define MSG_READ_AHEAD_HIGH_BYTES   (8 * 1024 * 1024)
#define MSG_READ_AHEAD_LOW_ITEMS    (MSG_READ_AHEAD_HIGH_ITEMS / 2)
#define MSG_READ_AHEAD_LOW_BYTES    (MSG_READ_AHEAD_HIGH_BYTES / 2)
/* What a descriptor of a message weighs in the byte count of read-ahead:
 * a peer cannot make a port hold more than about 128 of them unread (plus
 * those of one frame), however small the messages that carry them. */
#define MSG_READ_AHEAD_FD_COST      (64 * 1024)

/* A reader that pauses for an endpoint, implemented by the transport:
 * pause() is called with the endpoint's lock held (it may take the
 * reader's own lock, which comes after endpoint locks, and must take a
 * reference on the reader for the endpoint); resume() with no lock held,
 * once the queue went down to the low marks, or was taken away (it drops
 * that reference). */
typedef struct _MsgReadWatch MsgReadWatch;

typedef struct
{
  void (*pause)  (MsgReadWatch *watch);
  void (*resume) (MsgReadWatch *watch);
} MsgReadWatchFuncs;

struct _MsgReadWatch
{
  const MsgReadWatchFuncs *funcs;
};

/* Flow control: someone waiting for an endpoint to be writable
 * (msg_port_main_wait_writable_async()). Queued on the endpoint under its
 * lock; whoever takes it out of MsgEndpoint.flow_waiters calls done(),
 * once, with no lock held, on any thread: @error is %NULL if the endpoint
 * is writable, or says why it never will be (it ended, or moved). */
typedef struct _MsgFlowWaiter MsgFlowWaiter;

struct _MsgFlowWaiter
{
  void  (*done) (MsgFlowWaiter *waiter,
                 const GError  *error);
  GList   link;   /* link.data == the waiter */
};

struct _MsgEndpoint
{
  gatomicrefcount  ref_count;
  gint             flow_blocked;   /* (atomic): written under @lock: at or
                                    * above the mark, and not yet back below
                                    * half of it (beside @ref_count, where a
                                    * hole was: an unstarted channel holds
                                    * two endpoints) */
  GMutex           lock;

  /* protected by @lock */
  MsgQueue         queue;          /* what arrived for this end */
  MsgEndpoint     *peer;           /* (owned) (nullable): where posts go */
  MsgEndpoint     *flush_peer;     /* (owned) (nullable): the peer this end
                                    * closed, if it writes to a sink: what
                                    * flush() waits on after close() */
  MsgPortMain     *port;           /* (nullable): the handle that owns this end;
                                    * a strong reference while @ready_list is set */
  MsgReadyList    *ready_list;     /* (nullable): its dispatcher, bound by start() */
  MsgEmitFunc      emit;           /* (nullable): set with @ready_list */
  MsgSink         *sink;           /* (owned) (nullable) */
  GError          *close_reason;   /* (owned) (nullable) */
  gsize            read_bytes;     /* message bytes in @queue, if @counted */
  MsgReadWatch    *paused_reader;  /* (nullable): holds a reference (see there) */
  guint            keep_alive_ms;  /* MsgPortMain:keep-alive-interval */
  guint            counted : 1;    /* a reader delivers here: @read_bytes counts */
  guint            started : 1;    /* start() was called on the current handle */
  guint            closed : 1;     /* close() was called */
  guint            ended : 1;      /* a close envelope was queued: no more arrivals */
  guint            close_emitted : 1;
  guint            flow_pending : 1;  /* the port has flow notifications to
                                       * emit (see MsgEmitFunc) */
  /* protected by the lock of the dispatcher of @ready_list, unlike the
   * bit fields before it: a member of its own, so that writing it never
   * writes them (C11: a bit field shares its memory location only with
   * the bit fields next to it) */
  guint8           ready;          /* in dispatcher->ready */
  guint            flow_drains;    /* times it became writable since the
                                    * port last emitted them */
  guint            max_queued;     /* the most @queue ever held */
  GQueue           flow_waiters;   /* of MsgFlowWaiter.link */

  /* Flow control and counters (msg-endpoint.c, "Flow control"): what this
   * end posted to @peer (written under @lock only, when @peer is read:
   * plain stores, see msg_endpoint_count_post_locked()) and what
   * the other end took of it (credits, added with no lock held); the
   * difference is buffered. Reset, taken = sent, when the end ends. */
  guint64          sent_messages;     /* (atomic) */
  guint64          sent_bytes;        /* (atomic) */
  guint64          taken_messages;    /* (atomic) */
  guint64          taken_bytes;       /* (atomic) */
  guint64          received_messages; /* (atomic): what this end's handlers took */
  guint64          received_bytes;    /* (atomic) */
  guint64          high_water_mark;   /* (atomic): bytes; 0 is off */

  /* protected by the lock of the dispatcher of @ready_list */
  GList            ready_link;     /* ready_link.data == the endpoint */
  GList            bound_link;     /* bound_link.data == the endpoint: in the
                                    * dispatcher's list while bound */
};

/* Inline: every post takes a reference on its peer. */
static inline MsgEndpoint *
msg_endpoint_ref (MsgEndpoint *self)
{
  msg_atomic_ref_count_inc (&self->ref_count);
  return self;
}

/* Lock-free: a sink is set once and stays for the endpoint's life. Inline:
 * every post reads its peer's. */
static inline MsgSink *
msg_endpoint_get_sink (MsgEndpoint *self)
{
  return g_atomic_pointer_get (&self->sink);
}

MsgEndpoint *msg_endpoint_new          (void);
void         msg_endpoint_unref        (MsgEndpoint  *self);
void         msg_endpoint_entangle     (MsgEndpoint  *a,
                                        MsgEndpoint  *b);
void         msg_endpoint_deliver      (MsgEndpoint  *self,
                                        MsgItem      *item);
void         msg_endpoint_deliver_sized (MsgEndpoint *self,
                                         MsgItem     *item,
                                         gsize        size);
void         msg_endpoint_disentangle  (MsgEndpoint  *self,
                                        GError       *reason,
                                        GError       *peer_reason);
void         msg_endpoint_set_sink     (MsgEndpoint  *self,
                                        MsgSink      *sink);
GError      *msg_endpoint_new_peer_closed_reason (void);
void         msg_endpoint_discard      (MsgEndpoint  *self);
void         msg_endpoint_discard_full (MsgEndpoint  *self,
                                        GError       *peer_reason);
void         msg_endpoint_mark_ready_locked (MsgEndpoint   *self,
                                             MsgReadyList **wake_later);
void         msg_endpoint_reject       (MsgEndpoint  *self,
                                        GError       *reason);
void         msg_endpoint_deliver_read (MsgEndpoint  *self,
                                        MsgItem      *item,
                                        MsgReadWatch *reader);
MsgItem     *msg_endpoint_pop_locked   (MsgEndpoint   *self,
                                        gsize         *size,
                                        MsgReadWatch **resume);
MsgQueue     msg_endpoint_steal_queue_locked (MsgEndpoint   *self,
                                              MsgReadWatch **resume);

/* Resumes @watch (nullable), as msg_endpoint_pop_locked() returned it. */
static inline void
msg_read_watch_resume (MsgReadWatch *watch)
{
  if (watch != NULL)
    watch->funcs->resume (watch);
}

/* Flow control (see msg-endpoint.c). */
void         msg_endpoint_count_post_locked (MsgEndpoint  *self,
                                             gsize         n_bytes,
                                             MsgReadyList **wake_later);
void         msg_endpoint_uncount_post (MsgEndpoint  *self,
                                        MsgEndpoint  *peer,
                                        gsize         n_bytes);
void         msg_endpoint_credit       (MsgEndpoint  *self,
                                        guint         n_messages,
                                        guint64       n_bytes);
void         msg_endpoint_taken        (MsgEndpoint  *self,
                                        MsgEndpoint  *peer,
                                        guint         n_messages,
                                        guint64       n_bytes);
void         msg_endpoint_acknowledge  (MsgEndpoint  *self,
                                        guint         n_messages,
                                        guint64       n_bytes);
void         msg_endpoint_set_high_water_mark (MsgEndpoint *self,
                                               guint64      mark);
void         msg_endpoint_get_buffered (MsgEndpoint  *self,
                                        guint64      *n_messages,
                                        guint64      *n_bytes);
void         msg_endpoint_steal_flow_waiters_locked (MsgEndpoint *self,
                                                     GQueue      *waiters);
void         msg_flow_waiters_finish   (GQueue       *waiters,
                                        const GError *error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (MsgEndpoint, msg_endpoint_unref)

G_END_DECLS
