/* msg-connection-private.h: a socket that carries one channel
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A MsgConnection is the sink of an endpoint R whose peer L is the port in
 * this process: what L posts reaches R, and so the connection, which
 * writes it; what the connection reads goes to R's peer, L. It is a
 * GSource on the I/O thread (msg-connection-source.c), whose reference
 * count is the connection's. Its parts:
 *
 *   msg-connection.c          the lock, waiting, kicking, leases held, failing
 *   msg-connection-read.c     recvmsg() into the decoder, frames delivered
 *   msg-connection-write.c    the sink: posts, direct and queued writes, flush()
 *   msg-context-reads.c       a context reads the socket (a lease), the watchdog
 *   msg-connection-source.c   the GSource: new, start, what a dispatch does
 *
 * Ports in frames are imported and exported through a MsgPortCodec
 * (msg-transport-unix.c), which sits above the connection: a port that
 * moves stops and hands on its own connection.
 *
 * Lock order: endpoint locks, then connection->lock, then the GMainContext
 * lock; a dispatcher's lock is never held with a connection's. The I/O
 * thread never holds connection->lock while it takes an endpoint lock.
 */

#pragma once

#include "msg-dispatcher-private.h"
#include "msg-endpoint-private.h"
#include "msg-io-thread-private.h"
#include "msg-out-queue-private.h"
#include "msg-wire-private.h"

G_BEGIN_DECLS

/* A connection whose port closed waits for the peer's close frame (or its
 * hang-up) at most this long, and at most this many wait at once; beyond,
 * they end as soon as their close frame is written (or could not be). */
#define MSG_CLOSE_DEADLINE_MS   2000
#define MSG_MAX_CLOSING         64

/* The most recvmsg() calls a context that holds a socket's lease makes
 * in one dispatch (msg-context-reads.c): it reads for its own ports. */
#define MSG_CONNECTION_MAX_READS  32
/* The most a recvmsg() call takes. */
#define MSG_CONNECTION_MAX_READ_SIZE  (16 * 1024 * 1024)

/* The I/O thread serves every connection of the process: in one turn, it
 * does at most this much work for one connection, then comes back to it
 * after the others had theirs (a kick). Work is counted in bytes read,
 * plus a cost for each frame delivered and each port imported that stands
 * for what they take beyond their bytes; the rest of what was read waits
 * in the decoder. A turn is then a fraction of a millisecond, whatever a peer
 * sends; what costs in proportion to a message's data beyond reading it
 * (the normal-form walk, mapping a memfd) is not the I/O thread's. */
#define MSG_CONNECTION_TURN_BUDGET   (1024 * 1024)
#define MSG_CONNECTION_FRAME_COST    1024
#define MSG_CONNECTION_PORT_COST     (64 * 1024)

typedef enum
{
  CONNECTION_OPEN,
  CONNECTION_WRITE_CLOSED,   /* our close frame is written; reading until EOF */
  CONNECTION_DEAD,           /* the descriptor is closed */
  CONNECTION_MOVED,          /* the descriptor went to another process */
} MsgConnectionState;

/* How ports in frames cross: only the I/O thread calls these. */
typedef struct
{
  /* Encodes @envelope (taken) as a frame, exporting the ports it carries. */
  gboolean     (*encode) (MsgEnvelope     *envelope,
                          MsgWireEncoded  *encoded,
                          GError         **error);
  /* A port that arrived in a frame, as a new endpoint. */
  MsgEndpoint *(*import) (MsgWirePort     *port,
                          GError         **error);
} MsgPortCodec;

typedef struct _MsgConnection MsgConnection;

/* A msg_transport_flush_async() waiting for the connection to have
 * written @target items. */
typedef struct
{
  GTask   *task;       /* (owned) */
  guint64  target;
  GSource *cancelled;  /* (owned) (nullable): in the task's context */
  gboolean ok;         /* set when it is taken out to finish */
} MsgFlushWaiter;

/* In MsgConnection.peer_features: the peer's hello is known (it was read,
 * or came with the port); not a wire feature bit. */
#define MSG_CONNECTION_PEER_HELLO  (1 << 30)

struct _MsgConnection
{
  GSource          source;       /* its reference count is the connection's */
  MsgSink          sink;         /* owned by @endpoint: a reference on @source */
  MsgReadWatch     read_watch;   /* paused for the endpoint read for: a
                                  * reference on @source while it is */
  gint             read_paused;  /* (atomic): set by read_watch's pause(),
                                  * cleared by its resume() */
  const MsgPortCodec *codec;
  gpointer         fd_tag;       /* I/O thread */
  int              fd;           /* I/O thread; -1 once closed or moved */

  GMutex           lock;
  GCond            written_cond;  /* see msg_connection_wait_locked() */
  /* protected by @lock */
  MsgEndpoint     *endpoint;     /* (owned) (nullable): whose sink this is */
  MsgOutQueue      out;
  guint64          n_queued;
  guint64          n_written;
  MsgConnectionState state;
  gboolean         close_queued;
  gboolean         write_dead;   /* the peer hung up on a write: nothing more
                                  * is written, what it sent is still read */
  gboolean         kicked;       /* @source is ready: the I/O thread will write */
  gboolean         deadline;     /* @source is due within FLUSH_DEADLINE_USEC */
  gboolean         flush_scheduled;  /* a ConnectionFlush is attached ... */
  GMainContext    *flush_context;    /* ... to this context (unowned: the
                                      * flush runs before it is freed),
                                      * whose callback holds what it posts */
  GMainContext    *hold_context;     /* (unowned): that of the reader's
                                      * dispatcher in @hold_iteration of
                                      * which a callback posted; it holds
                                      * what it posts next */
  guint            hold_iteration;
  gboolean         write_blocked;    /* the I/O thread waits for the socket to drain */
  gboolean         writing;      /* a poster writes to @fd, unlocked */
  guint            n_waiters;    /* threads in msg_connection_wait_locked() */
  GQueue           flush_waiters;  /* protected by @lock: of MsgFlushWaiter,
                                    * oldest (lowest target) first */
  GQueue           garbage;      /* protected by @lock: MsgOutItems written by
                                  * posters, for the I/O thread to free */
  int              write_errno;  /* what failed a poster's write, for the I/O thread */
  MsgDispatcher   *lease;        /* (owned) (nullable): the context that reads @fd */
  gboolean         context_reading;  /* that context reads, unlocked */
  MsgWireFrame    *handed_frame; /* (owned) (nullable): read by the context, for the I/O thread */
  GError          *handed_error; /* (owned) (nullable): what ended its reading */
  guint            forks;        /* msg_io_thread_get_forks() when it was made */

  /* I/O thread only, or the context that reads (see above) */
  MsgWireDecoder  *decoder;

  /* Wire version 2 (docs/wire-format.md, "Version 2") */
  gint             peer_features;  /* (atomic): what the peer's hello announced,
                                    * and MSG_CONNECTION_PEER_HELLO once it came */
  gint             rx_count;       /* (atomic): reads that brought bytes */
  guint            keep_alive_ms;  /* protected by @lock: this end's interval, 0: off */
  gboolean         keep_alive_changed;  /* protected by @lock: for the I/O thread */
  /* protected by @lock: what the port here took and the peer has not
   * been told yet (an acknowledgement goes with the next write) */
  guint64          ack_messages;
  guint64          ack_bytes;
  /* I/O thread only */
  guint            peer_ping_ms;   /* the interval the peer's pings announced */
  GSource         *keep_alive;     /* (owned) (nullable): the timer */
  guint            keep_alive_period;  /* what @keep_alive was made with */
  gint             seen_rx_count;  /* @rx_count at the last tick */
  gint64           last_heard;     /* when a tick last saw @rx_count move */

  /* I/O thread only */
  guint            seen_iterations;  /* the leaseholder's, at the last watchdog run */
  gboolean         want_out;
  GIOCondition     polled;       /* what @fd_tag asks for */
  gboolean         unpolled;     /* @fd is out of the poll set: reading is
                                  * paused, and it hung up */
  gboolean         peer_closed;  /* its close frame was read */

  GSource         *closing;      /* (owned) (nullable): the close deadline,
                                  * once the close is queued */
};

#define CONNECTION_FROM_SINK(s) ((MsgConnection *) (void *) ((guint8 *) (s) - G_STRUCT_OFFSET (MsgConnection, sink)))

/* Whether @self was made before this process was forked: this is a child
 * that shares its parent's socket, and the stream is the parent's. The
 * child writes nothing to it (bytes would interleave with the parent's
 * frames), reads nothing from it, and does not wake the I/O thread of the
 * parent, which it has no copy of. Any thread, no lock (@forks is set
 * once, when the connection is made). */
static inline gboolean
msg_connection_is_forked (MsgConnection *self)
{
  return self->forks != msg_io_thread_get_forks ();
}
#define CONNECTION_FROM_READ_WATCH(w) \
  ((MsgConnection *) (void *) ((guint8 *) (w) - G_STRUCT_OFFSET (MsgConnection, read_watch)))

/* msg-connection.c */
extern const MsgReadWatchFuncs msg_connection_read_watch_funcs;
gboolean       msg_connection_read_paused      (MsgConnection  *self);
void           msg_connection_wait_locked      (MsgConnection  *self);
void           msg_connection_signal_locked    (MsgConnection  *self);
void           msg_connection_kick_locked      (MsgConnection  *self);
void           msg_connection_begin_lease_locked (MsgConnection *self,
                                                  MsgDispatcher *holder);
MsgDispatcher *msg_connection_end_lease_locked (MsgConnection  *self);
MsgDispatcher *msg_connection_take_lease_back  (MsgConnection  *self,
                                                MsgDispatcher  *from);
void           msg_connection_revoke_lease     (MsgConnection  *self);
void           msg_connection_fail             (MsgConnection  *self,
                                                GError         *reason);
void           msg_connection_end              (MsgConnection  *self,
                                                GError         *reason);
GError        *msg_connection_close_reason     (MsgWireCloseReason reason);
void           msg_connection_begin_closing    (MsgConnection  *self);
gboolean       msg_connection_is_closing       (MsgConnection  *self);
void           msg_connection_fail_write       (MsgConnection  *self,
                                                int             errsv);
MsgEndpoint   *msg_connection_ref_target       (MsgConnection  *self);
void           msg_connection_deliver_read     (MsgConnection  *self,
                                                MsgItem        *item,
                                                MsgEndpoint   **target);

/* msg-connection-read.c */
typedef enum
{
  RECV_DATA,      /* bytes went into the decoder */
  RECV_DRAINED,   /* the same, and the socket is empty for now */
  RECV_AGAIN,     /* nothing to read */
  RECV_EOF,       /* the peer hung up; nothing was taken */
  RECV_FAILED,    /* @error */
} MsgRecvResult;

MsgRecvResult  msg_connection_recv             (MsgConnection  *self,
                                                gsize           limit,
                                                gsize          *n_read,
                                                GError        **error);
MsgItem       *msg_connection_item_from_frame  (MsgWireFrame   *frame,
                                                MsgEnvelope   **envelope);
gboolean       msg_connection_handle_frame     (MsgConnection  *self,
                                                MsgWireFrame   *frame,
                                                MsgEndpoint   **target);
gboolean       msg_connection_read             (MsgConnection  *self,
                                                GIOCondition    revents);
gboolean       msg_connection_take_handed      (MsgConnection  *self);

/* msg-connection-write.c */
extern const MsgSinkFuncs msg_connection_sink_funcs;
void           msg_connection_write            (MsgConnection  *self);
void           msg_connection_send_hello       (MsgConnection  *self);
void           msg_connection_queue_ack_locked (MsgConnection  *self);
void           msg_connection_queue_control_if_idle (MsgConnection   *self,
                                                     MsgWireFrameKind kind,
                                                     guint64          arg);
void           msg_connection_queue_control    (MsgConnection  *self,
                                                MsgWireFrameKind kind,
                                                guint64         arg0,
                                                guint64         arg1);

/* msg-connection.c */
void           msg_connection_acknowledged     (MsgConnection  *self,
                                                guint64         n_messages,
                                                guint64         n_bytes);
void           msg_connection_finish_flushes   (MsgConnection  *self);
void           msg_connection_add_flush_waiter_locked (MsgConnection *self,
                                                       GTask         *task,
                                                       guint64        target);

/* msg-connection-keep-alive.c */
void           msg_connection_update_keep_alive (MsgConnection *self);
void           msg_connection_stop_keep_alive  (MsgConnection  *self);

/* msg-context-reads.c */
void           msg_connection_maybe_lease      (MsgConnection  *self);

/* msg-connection-source.c */
MsgConnection *msg_connection_new              (int                 fd,
                                                MsgEndpoint        *endpoint,
                                                const MsgPortCodec *codec);
void           msg_connection_start            (MsgConnection  *self);

G_END_DECLS
