/* msg-wire-private.h: the msgport-glib wire format
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Pure functions between frames and bytes plus file descriptors: no I/O, no
 * GObject, no global state, so that a fuzzer or a test can drive the decoder
 * directly. The format is described in docs/wire-format.md.
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define MSG_WIRE_MAGIC            0x3247534dU  /* "MSG2", little endian */
#define MSG_WIRE_MAGIC_V1         0x3147534dU  /* "MSG1": refused, by name */
#define MSG_WIRE_HEADER_SIZE      32

/* Limits: what a peer may send, and so what we may post. */
#define MSG_WIRE_MAX_DATA_SIZE    (128u * 1024 * 1024)  /* one serialized message */
#define MSG_WIRE_MAX_TYPE_SIZE    (64u * 1024)          /* its type string */
#define MSG_WIRE_MAX_PORTS        1024                   /* ports in one message */
#define MSG_WIRE_MAX_PORTS_SIZE   (512u * 1024 * 1024)  /* the port table, with what queued ports carry */
#define MSG_WIRE_MAX_FDS          4096                   /* descriptors in one frame */
#define MSG_WIRE_MAX_FDS_PER_SEND 253                    /* SCM_MAX_FD */
/* A port's entry in a frame's port table, before its two prefixes (each
 * padded to 8 bytes). */
#define MSG_WIRE_PORT_ENTRY_SIZE  64
/* The biggest control frame (an acknowledgement): header and body. */
#define MSG_WIRE_MAX_CONTROL_SIZE (MSG_WIRE_HEADER_SIZE + 16)

/* Header flags. */
#define MSG_WIRE_FLAG_DATA        0x01  /* the message is not NULL */
#define MSG_WIRE_FLAG_DATA_FD     0x02  /* its data is in a sealed memfd */

/* A serialized message this large or larger goes in a sealed memfd: the
 * receiver maps the sender's pages, and neither holds a second copy. Below
 * it, the socket is faster: a memfd's pages cost more to add to and take
 * from the page cache than to copy (docs/performance.md). */
#define MSG_WIRE_MEMFD_THRESHOLD  (16u * 1024 * 1024)

typedef enum
{
  MSG_WIRE_FRAME_MESSAGE = 1,
  MSG_WIRE_FRAME_CLOSE = 2,
  /* Control frames: no ports, no descriptors, a fixed body of u64s. */
  MSG_WIRE_FRAME_HELLO = 3,  /* features: each end's first frame */
  MSG_WIRE_FRAME_ACK = 4,    /* messages, bytes: what the receiver took */
  MSG_WIRE_FRAME_PING = 5,   /* interval_ms: answer with a pong */
  MSG_WIRE_FRAME_PONG = 6,   /* no body */
} MsgWireFrameKind;

/* Features an end announces in its hello; a frame of a feature is sent
 * only to a peer that announced it, and bits not known are ignored. */
typedef enum
{
  MSG_WIRE_FEATURE_ACK = 1 << 0,        /* acknowledgements */
  MSG_WIRE_FEATURE_KEEP_ALIVE = 1 << 1, /* ping and pong */
  MSG_WIRE_FEATURE_FDS = 1 << 2,        /* descriptors of a message
                                         * (n_message_fds) */
} MsgWireFeatures;

#define MSG_WIRE_FEATURES_ALL (MSG_WIRE_FEATURE_ACK | MSG_WIRE_FEATURE_KEEP_ALIVE | \
                               MSG_WIRE_FEATURE_FDS)

/* A port entry's flags: where the handshake of the socket it carries
 * stands. */
#define MSG_WIRE_PORT_HELLO_SENT  0x1  /* this end's hello was sent (or is
                                        * in the out-prefix): send none */
#define MSG_WIRE_PORT_PEER_HELLO  0x2  /* the peer's hello was decoded:
                                        * its features are in the entry */

/* Why the sender of a close frame ended the channel: the header's u32 at
 * offset 20, which in a message frame is the number of the message's own
 * descriptors (n_message_fds). */
typedef enum
{
  MSG_WIRE_CLOSE_CLOSED = 0,     /* closed */
  MSG_WIRE_CLOSE_TOO_LARGE = 1,  /* what was posted could not cross */
} MsgWireCloseReason;

/* One port carried by a frame: a connected socket whose other end is the
 * port's peer, and the state of the connection it continues: bytes (and
 * their descriptors) already read from that socket or queued for the port
 * but not delivered (@in_prefix), and bytes not yet written to it
 * (@out_prefix). The new owner decodes @in_prefix before reading the
 * socket, and writes @out_prefix before anything of its own. */
typedef struct
{
  int     fd;           /* (owned) or -1 */
  GBytes *in_prefix;    /* (owned) (nullable) */
  GArray *in_fds;       /* (owned) (nullable) (element-type int): owned descriptors */
  GBytes *out_prefix;   /* (owned) (nullable) */
  GArray *out_fds;      /* (owned) (nullable) (element-type int) */
  gsize   out_partial;  /* bytes at the start of @out_prefix that finish a
                         * partly written frame (they carry no descriptors);
                         * whole frames follow */
  guint32 flags;        /* MSG_WIRE_PORT_HELLO_SENT, MSG_WIRE_PORT_PEER_HELLO */
  guint32 peer_features;  /* with MSG_WIRE_PORT_PEER_HELLO */
  /* Flow control goes with the port: what it posted that the peer has
   * not acknowledged yet (the acknowledgements come to its new owner),
   * and its high-water mark. */
  guint64 unacked_messages;
  guint64 unacked_bytes;
  guint64 high_water_mark;
} MsgWirePort;

/* A decoded message whose data came in a sealed memfd has @data_fd, its
 * @data_type and @data_size instead of @data, until
 * msg_wire_frame_map_data() maps it: the decoder does no I/O. Data that
 * came in the frame is @data at once, but the decoder does not walk it:
 * unless its type needs no check (an array of fixed-size basic values),
 * it is @data_unchecked until msg_wire_frame_map_data() checks that it is
 * in normal form. Both cost in proportion to the data, and are left to
 * whoever takes the message (the context of the port it is for). */
typedef struct
{
  MsgWireFrameKind  kind;
  GVariant         *data;      /* (owned) (nullable): MESSAGE only */
  gboolean          data_unchecked;  /* @data may not be in normal form */
  guint             n_ports;
  MsgWirePort      *ports;     /* (owned) (array length=n_ports) */
  int               data_fd;   /* (owned) or -1 */
  char             *data_type; /* (owned) (nullable) */
  gsize             data_size;
  MsgWireCloseReason close_reason;  /* CLOSE only */
  GArray           *message_fds;    /* (owned) (nullable) (element-type int):
                                     * MESSAGE only: the descriptors the
                                     * message's handles index, in order;
                                     * owned, closed with the frame */
  /* The body of a control frame: HELLO: features; ACK: messages, bytes;
   * PING: the sender's keep-alive interval in milliseconds. */
  guint64           args[2];
} MsgWireFrame;

void          msg_wire_port_clear        (MsgWirePort   *port);
MsgWireFrame *msg_wire_frame_new         (MsgWireFrameKind kind,
                                          GVariant      *data,
                                          guint          n_ports);
void          msg_wire_frame_free        (MsgWireFrame  *frame);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MsgWireFrame, msg_wire_frame_free)

void          msg_wire_close_fds         (GArray        *fds);

/* Turns a frame's data descriptor into its @data: checks that it is a
 * memfd sealed against writing and shrinking, of the declared size, and
 * maps it. This one does I/O. A descriptor that fails the checks is a
 * protocol error. Checks that data the decoder left unchecked is in
 * normal form, the same. On failure @data is %NULL. */
gboolean      msg_wire_frame_map_data    (MsgWireFrame  *frame,
                                          GError       **error);
/* For tests and benchmarks: the size from which messages go in a memfd;
 * 0 for never, -1 for the default. */
void          msg_wire_set_memfd_threshold (gssize       size);

/* Encoding ---------------------------------------------------------------- */

/* An encoded frame: @head (header, type string, port table), then @data;
 * @fds are to be sent with the frame's bytes. Everything is owned. */
typedef struct
{
  GBytes *head;
  GBytes *data;    /* (nullable) */
  GArray *fds;     /* (nullable) (element-type int): NULL when there are none */
} MsgWireEncoded;

void     msg_wire_encoded_clear  (MsgWireEncoded *encoded);
gboolean msg_wire_check_message  (GVariant       *data,
                                  guint           n_ports,
                                  GError        **error);
/* Whether every handle (`h`) in @value indexes a list of @n_fds
 * descriptors or is -1 (none, as in GDBus); if not, *@bad_handle is the
 * first that does not. @value must be in normal form, or have been made
 * in this process. */
gboolean msg_wire_check_handles  (GVariant       *value,
                                  guint           n_fds,
                                  gint32         *bad_handle);
/* Encodes @frame, taking the descriptors and prefixes of its ports and
 * its message descriptors. A frame's descriptors go in this order: those
 * of its ports, then the message's, then the memfd of its data. */
gboolean msg_wire_encode         (MsgWireFrame   *frame,
                                  MsgWireEncoded *encoded,
                                  GError        **error);
/* Writes the control frame @kind with @args (as many as it has) to
 * @buffer; returns its size, at most MSG_WIRE_MAX_CONTROL_SIZE. */
gsize    msg_wire_encode_control (MsgWireFrameKind kind,
                                  guint64         arg0,
                                  guint64         arg1,
                                  guint8         *buffer);
/* Appends the bytes and descriptors of @encoded to @bytes and @fds. */
void     msg_wire_encoded_append (MsgWireEncoded *encoded,
                                  GByteArray     *bytes,
                                  GArray         *fds);

/* The size and descriptor count of the frame at the start of @data, if
 * @size bytes hold a whole frame with a plausible header. */
gboolean msg_wire_frame_extent   (const guint8   *data,
                                  gsize           size,
                                  gsize          *frame_size,
                                  guint          *n_fds);

/* Decoding ---------------------------------------------------------------- */

typedef struct _MsgWireDecoder MsgWireDecoder;

MsgWireDecoder *msg_wire_decoder_new         (void);
void            msg_wire_decoder_free        (MsgWireDecoder *self);
/* Where the next bytes read may go: at least @min_size bytes. */
guint8         *msg_wire_decoder_reserve     (MsgWireDecoder *self,
                                              gsize           min_size,
                                              gsize          *size);
/* @n_bytes bytes were written at the reserved place, and @fds (taken)
 * arrived with them. */
void            msg_wire_decoder_commit      (MsgWireDecoder *self,
                                              gsize           n_bytes,
                                              const int      *fds,
                                              guint           n_fds);
void            msg_wire_decoder_push        (MsgWireDecoder *self,
                                              const guint8   *data,
                                              gsize           size,
                                              const int      *fds,
                                              guint           n_fds);
/* Returns TRUE and a frame; FALSE with no error when it needs more bytes;
 * FALSE with @error (MSG_PORT_ERROR_PROTOCOL) when what it was given is not
 * valid, after which it must not be used any more. The frame's data is
 * not checked yet (see MsgWireFrame): msg_wire_frame_map_data() does. */
gboolean        msg_wire_decoder_next        (MsgWireDecoder *self,
                                              MsgWireFrame  **frame,
                                              GError        **error);
/* The handshake: a new decoder requires a HELLO as the first frame and
 * refuses a second one. For a socket whose peer's hello was decoded
 * elsewhere (a port that moved here), say so with its features. */
void            msg_wire_decoder_set_peer_hello (MsgWireDecoder *self,
                                              guint32         features);
/* Whether the peer's hello was decoded, and its features. */
gboolean        msg_wire_decoder_get_peer_hello (MsgWireDecoder *self,
                                              guint32        *features);
/* Whether the decoder holds nothing: no partial frame, no descriptors. */
gboolean        msg_wire_decoder_is_empty    (MsgWireDecoder *self);
/* What it holds undecoded: descriptors, and bytes. */
guint           msg_wire_decoder_count_fds   (MsgWireDecoder *self);
gsize           msg_wire_decoder_count_bytes (MsgWireDecoder *self);
/* Takes what was received but not decoded yet, to hand it on. */
void            msg_wire_decoder_steal       (MsgWireDecoder *self,
                                              GByteArray     *bytes,
                                              GArray         *fds);

/* Importing a port -------------------------------------------------------- */

/* What a port that arrived in a frame carries of its past, checked and cut
 * up without a socket, so that a fuzzer can drive it. */

/* One piece of what a port's previous owner had not written: @size bytes
 * at @offset in its @out_prefix, to be sent with the @n_fds descriptors of
 * its @out_fds from @first_fd on. @mid_frame: the rest of a partly written
 * frame (the first segment only), not a frame of its own. */
typedef struct
{
  gsize    offset;
  gsize    size;
  guint    first_fd;
  guint    n_fds;
  gboolean mid_frame;
} MsgWireSegment;

/* Appends to @segments (of MsgWireSegment) the rest of a partly written
 * frame, if any, then each whole frame of @port's @out_prefix with its own
 * descriptors. A protocol error if the rest is not whole frames, or if
 * descriptors are left over. */
gboolean        msg_wire_port_split_out_prefix (const MsgWirePort *port,
                                                GArray            *segments,
                                                GError           **error);
/* Pushes what @port's previous owner had read but not decoded (@in_prefix,
 * and @in_fds, taken) into @decoder. */
void            msg_wire_port_push_in_prefix   (MsgWirePort       *port,
                                                MsgWireDecoder    *decoder);

G_END_DECLS
