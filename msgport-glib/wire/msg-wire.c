/* msg-wire.c: the msgport-glib wire format
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A frame is a 32-byte header, then the message's type string, a table of
 * the ports it carries and the serialized message, each of the first two
 * padded to 8 bytes. All integers are little endian. Descriptors travel
 * next to the bytes (SCM_RIGHTS); the decoder only sees them as integers in
 * arrival order, with the stream range they arrived with, and never does
 * anything with them but hand them on or close them.
 *
 *   0  u32 magic "MSG2"      8  u32 n_fds       16 u32 ports_len
 *   4  u8  kind              12 u32 type_len    20 u32 close reason (a close),
 *   5  u8  flags (1: data, 2: in a memfd)           n_message_fds (a message)
 *   6  u16 n_ports                               24 u64 data_len
 *
 * A message whose data is in a sealed memfd has 8 bytes of data: u64, the
 * size of the memfd, which is the frame's last descriptor. A message may
 * carry descriptors of its own (n_message_fds, which its handles index):
 * they come after those of its ports and before the memfd.
 *
 * Control frames (hello, acknowledgement, ping, pong) have every field 0
 * but the magic, the kind and data_len, and a body of u64s as their data:
 * hello: features; ack: messages, bytes; ping: interval in ms; pong: none.
 * Each end's first frame is its hello.
 *
 * Port table entry: u32 n_in_fds, u32 n_out_fds, u64 in_len, u64 out_len,
 * u64 out_partial, u32 flags, u32 peer_features, u64 unacked_messages,
 * u64 unacked_bytes, u64 high_water_mark (64 bytes), in_len bytes, padding
 * to 8, out_len bytes, padding to 8. A port takes 1 + n_in_fds + n_out_fds
 * descriptors, in that order, and the frame's n_fds is their sum over its
 * ports, plus n_message_fds, plus 1 for a memfd.
 *
 * Over 1,000 lines, on purpose: one codec, pure functions on bytes and
 * descriptors (encoding, the incremental decoder, memfds, the receive-buffer
 * pool they decode into), fuzzed as one unit (fuzz/) and tested without a
 * socket (tests/wire.c). The transport beside it does the I/O.
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "msg-lock-private.h"
#include "msg-port-error.h"
#include "msg-wire-private.h"

#define ALIGN8(n) (((n) + 7) & ~(gsize) 7)
#define MAX_RESERVE_AHEAD (16 * 1024 * 1024)
/* The data of a frame this large or larger is read into a buffer of its
 * own, which becomes the message's GBytes: no copy. */
#define MIN_TAIL_SIZE     (64 * 1024)
#define PORT_ENTRY_SIZE MSG_WIRE_PORT_ENTRY_SIZE

static inline guint16
read_u16 (const guint8 *p)
{
  return (guint16) (p[0] | (p[1] << 8));
}

static inline guint32
read_u32 (const guint8 *p)
{
  return (guint32) p[0] | ((guint32) p[1] << 8) | ((guint32) p[2] << 16) | ((guint32) p[3] << 24);
}

static inline guint64
read_u64 (const guint8 *p)
{
  return (guint64) read_u32 (p) | ((guint64) read_u32 (p + 4) << 32);
}

static inline void
write_u16 (guint8 *p, guint16 v)
{
  p[0] = v & 0xff;
  p[1] = v >> 8;
}

static inline void
write_u32 (guint8 *p, guint32 v)
{
  for (guint i = 0; i < 4; i++)
    p[i] = (v >> (8 * i)) & 0xff;
}

static inline void
write_u64 (guint8 *p, guint64 v)
{
  write_u32 (p, v & 0xffffffffu);
  write_u32 (p + 4, v >> 32);
}

void
msg_wire_close_fds (GArray *fds)
{
  if (fds == NULL)
    return;
  for (guint i = 0; i < fds->len; i++)
    {
      int fd = g_array_index (fds, int, i);

      if (fd >= 0)
        close (fd);
    }
  g_array_set_size (fds, 0);
}

void
msg_wire_port_clear (MsgWirePort *port)
{
  if (port->fd >= 0)
    close (port->fd);
  port->fd = -1;
  g_clear_pointer (&port->in_prefix, g_bytes_unref);
  g_clear_pointer (&port->out_prefix, g_bytes_unref);
  msg_wire_close_fds (port->in_fds);
  msg_wire_close_fds (port->out_fds);
  g_clear_pointer (&port->in_fds, g_array_unref);
  g_clear_pointer (&port->out_fds, g_array_unref);
}

MsgWireFrame *
msg_wire_frame_new (MsgWireFrameKind  kind,
                    GVariant         *data,
                    guint             n_ports)
{
  MsgWireFrame *frame = g_new0 (MsgWireFrame, 1);

  frame->kind = kind;
  frame->data = data;
  frame->n_ports = n_ports;
  frame->ports = g_new0 (MsgWirePort, n_ports);
  for (guint i = 0; i < n_ports; i++)
    frame->ports[i].fd = -1;
  frame->data_fd = -1;

  return frame;
}

void
msg_wire_frame_free (MsgWireFrame *frame)
{
  if (frame == NULL)
    return;
  g_clear_pointer (&frame->data, msg_variant_unref);
  for (guint i = 0; i < frame->n_ports; i++)
    msg_wire_port_clear (&frame->ports[i]);
  if (frame->data_fd >= 0)
    close (frame->data_fd);
  msg_wire_close_fds (frame->message_fds);
  g_clear_pointer (&frame->message_fds, g_array_unref);
  g_free (frame->data_type);
  g_free (frame->ports);
  g_free (frame);
}

static gsize fixed_array_element_size (const char *type);

/* Encoding ------------------------------------------------------------- */

/* A message the encoder holds a reference on, let go of with
 * msg_variant_unref(): the I/O thread encodes messages that other threads
 * reference too, and reads their type strings, which belong to GLib's
 * shared type information; in a TSan build the last unref, wherever it
 * is, must be seen to come after those reads. */
typedef GVariant MsgWireVariant;
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MsgWireVariant, msg_variant_unref)

#ifdef MSG_HAVE_TSAN
/* Here, not beside the rest of the library's TSan annotations
 * (msg-endpoint.c): the codec is also built alone, into white-box tests
 * and fuzz targets, which use it. */
pthread_mutex_t msg_tsan_variant_lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
#endif

void
msg_wire_encoded_clear (MsgWireEncoded *encoded)
{
  g_clear_pointer (&encoded->head, g_bytes_unref);
  g_clear_pointer (&encoded->data, g_bytes_unref);
  msg_wire_close_fds (encoded->fds);
  g_clear_pointer (&encoded->fds, g_array_unref);
}

/* Whether a message can be sent to another process at all. */
gboolean
msg_wire_check_message (GVariant  *data,
                        guint      n_ports,
                        GError   **error)
{
  if (n_ports > MSG_WIRE_MAX_PORTS)
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_TOO_LARGE,
                   "Cannot transfer %u ports to another process in one message "
                   "(at most %u)", n_ports, MSG_WIRE_MAX_PORTS);
      return FALSE;
    }
  if (data != NULL && g_variant_get_size (data) > MSG_WIRE_MAX_DATA_SIZE)
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_TOO_LARGE,
                   "A message of %" G_GSIZE_FORMAT " bytes is larger than the "
                   "%u bytes a message to another process may have",
                   g_variant_get_size (data), MSG_WIRE_MAX_DATA_SIZE);
      return FALSE;
    }
  if (data != NULL && strlen (g_variant_get_type_string (data)) > MSG_WIRE_MAX_TYPE_SIZE)
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_TOO_LARGE,
                   "The type of the message is too long to send to another process");
      return FALSE;
    }
  return TRUE;
}

/* Whether a value of @type may hold handles: it is one, holds one, or
 * holds a variant, which may. */
static gboolean
type_may_hold_handles (const GVariantType *type)
{
  const char *string = g_variant_type_peek_string (type);
  gsize length = g_variant_type_get_string_length (type);

  for (gsize i = 0; i < length; i++)
    {
      if (string[i] == 'h' || string[i] == 'v')
        return TRUE;
    }
  return FALSE;
}

static gboolean
handle_is_valid (gint32  handle,
                 guint   n_fds,
                 gint32 *bad_handle)
{
  if (handle == -1 || (handle >= 0 && (guint32) handle < n_fds))
    return TRUE;
  *bad_handle = handle;
  return FALSE;
}

gboolean
msg_wire_check_handles (GVariant *value,
                        guint     n_fds,
                        gint32   *bad_handle)
{
  const GVariantType *type = g_variant_get_type (value);
  gsize n;

  if (!type_may_hold_handles (type))
    return TRUE;

  if (g_variant_type_equal (type, G_VARIANT_TYPE_HANDLE))
    return handle_is_valid (g_variant_get_handle (value), n_fds, bad_handle);

  if (g_variant_type_equal (type, G_VARIANT_TYPE ("ah")))
    {
      const gint32 *handles = g_variant_get_fixed_array (value, &n, sizeof (gint32));

      for (gsize i = 0; i < n; i++)
        {
          if (!handle_is_valid (handles[i], n_fds, bad_handle))
            return FALSE;
        }
      return TRUE;
    }

  n = g_variant_n_children (value);
  for (gsize i = 0; i < n; i++)
    {
      GVariant *child = g_variant_get_child_value (value, i);
      gboolean ok = msg_wire_check_handles (child, n_fds, bad_handle);

      msg_variant_unref (child);
      if (!ok)
        return FALSE;
    }
  return TRUE;
}

static gint memfd_threshold = MSG_WIRE_MEMFD_THRESHOLD;  /* (atomic) */

void
msg_wire_set_memfd_threshold (gssize size)
{
  if (size < 0)
    size = MSG_WIRE_MEMFD_THRESHOLD;
  else if (size == 0 || size > G_MAXINT)
    size = G_MAXINT;
  g_atomic_int_set (&memfd_threshold, (gint) size);
}

/* A memfd holding @data, sealed so that its receiver may map it and trust
 * that it does not change or shrink under the mapping; -1 if that cannot
 * be done (the data then goes inline). */
static int
new_sealed_memfd (GBytes *data)
{
  gsize size, done = 0;
  const guint8 *bytes = g_bytes_get_data (data, &size);
  int fd;

  fd = memfd_create ("msgport-message", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    return -1;
  while (done < size)
    {
      ssize_t n = write (fd, bytes + done, size - done);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          close (fd);
          return -1;
        }
      done += n;
    }
  if (fcntl (fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
    {
      close (fd);
      return -1;
    }
  return fd;
}

static void
append_fds (GArray *to,
            GArray *from)
{
  if (from == NULL)
    return;
  g_array_append_vals (to, from->data, from->len);
  g_array_set_size (from, 0);
}

gboolean
msg_wire_encode (MsgWireFrame   *frame,
                 MsgWireEncoded *encoded,
                 GError        **error)
{
  g_autoptr(MsgWireVariant) normal = NULL;
  const char *type = NULL;
  gsize type_len = 0, ports_len = 0, data_len = 0, n_fds = 0, offset;
  guint n_message_fds = 0;
  guint8 *head;
  gsize head_size;
  int data_fd = -1;

  memset (encoded, 0, sizeof *encoded);

  if (frame->data != NULL)
    {
      if (!msg_wire_check_message (frame->data, frame->n_ports, error))
        return FALSE;
      /* Sent in normal form, as the receiver demands. Any bytes of an
       * array of fixed-size basic values are in normal form, and checking
       * them costs some 10 ns a byte. */
      if (fixed_array_element_size (g_variant_get_type_string (frame->data)) > 0 ||
          g_variant_is_normal_form (frame->data))
        normal = g_variant_ref (frame->data);
      else
        normal = g_variant_get_normal_form (frame->data);
      type = g_variant_get_type_string (normal);
      type_len = strlen (type);
      encoded->data = g_variant_get_data_as_bytes (normal);
      data_len = g_bytes_get_size (encoded->data);
      /* A large message goes in a sealed memfd, which the receiver maps:
       * one copy instead of two through the socket, and no buffer to
       * allocate on the way in. */
      if (data_len >= (gsize) g_atomic_int_get (&memfd_threshold) &&
          (data_fd = new_sealed_memfd (encoded->data)) >= 0)
        {
          guint8 *size_field = g_malloc (8);

          write_u64 (size_field, data_len);
          g_bytes_unref (encoded->data);
          encoded->data = g_bytes_new_take (size_field, 8);
          data_len = 8;
          n_fds++;
        }
    }
  else if (!msg_wire_check_message (NULL, frame->n_ports, error))
    return FALSE;

  for (guint i = 0; i < frame->n_ports; i++)
    {
      MsgWirePort *port = &frame->ports[i];

      ports_len += PORT_ENTRY_SIZE;
      ports_len += ALIGN8 (port->in_prefix ? g_bytes_get_size (port->in_prefix) : 0);
      ports_len += ALIGN8 (port->out_prefix ? g_bytes_get_size (port->out_prefix) : 0);
      n_fds += 1 + (port->in_fds ? port->in_fds->len : 0) + (port->out_fds ? port->out_fds->len : 0);
    }
  if (frame->kind == MSG_WIRE_FRAME_MESSAGE && frame->message_fds != NULL)
    n_message_fds = frame->message_fds->len;
  n_fds += n_message_fds;
  if (ports_len > MSG_WIRE_MAX_PORTS_SIZE || n_fds > MSG_WIRE_MAX_FDS)
    {
      if (data_fd >= 0)
        close (data_fd);
      g_clear_pointer (&encoded->data, g_bytes_unref);
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_TOO_LARGE,
                   "The ports in the message carry too much to send to another process");
      return FALSE;
    }

  head_size = MSG_WIRE_HEADER_SIZE + ALIGN8 (type_len) + ports_len;
  head = g_malloc0 (head_size);
  write_u32 (head, MSG_WIRE_MAGIC);
  head[4] = frame->kind;
  head[5] = (frame->data != NULL ? MSG_WIRE_FLAG_DATA : 0) |
            (data_fd >= 0 ? MSG_WIRE_FLAG_DATA_FD : 0);
  write_u16 (head + 6, frame->n_ports);
  write_u32 (head + 8, n_fds);
  write_u32 (head + 12, type_len);
  write_u32 (head + 16, ports_len);
  write_u32 (head + 20, frame->kind == MSG_WIRE_FRAME_CLOSE ? frame->close_reason : n_message_fds);
  write_u64 (head + 24, data_len);
  if (type_len > 0)
    memcpy (head + MSG_WIRE_HEADER_SIZE, type, type_len);

  if (n_fds > 0)
    encoded->fds = g_array_sized_new (FALSE, FALSE, sizeof (int), n_fds);
  offset = MSG_WIRE_HEADER_SIZE + ALIGN8 (type_len);
  for (guint i = 0; i < frame->n_ports; i++)
    {
      MsgWirePort *port = &frame->ports[i];
      gsize in_len = port->in_prefix ? g_bytes_get_size (port->in_prefix) : 0;
      gsize out_len = port->out_prefix ? g_bytes_get_size (port->out_prefix) : 0;

      write_u32 (head + offset, port->in_fds ? port->in_fds->len : 0);
      write_u32 (head + offset + 4, port->out_fds ? port->out_fds->len : 0);
      write_u64 (head + offset + 8, in_len);
      write_u64 (head + offset + 16, out_len);
      write_u64 (head + offset + 24, port->out_partial);
      write_u32 (head + offset + 32, port->flags);
      write_u32 (head + offset + 36, port->peer_features);
      write_u64 (head + offset + 40, port->unacked_messages);
      write_u64 (head + offset + 48, port->unacked_bytes);
      write_u64 (head + offset + 56, port->high_water_mark);
      offset += PORT_ENTRY_SIZE;
      if (in_len > 0)
        memcpy (head + offset, g_bytes_get_data (port->in_prefix, NULL), in_len);
      offset += ALIGN8 (in_len);
      if (out_len > 0)
        memcpy (head + offset, g_bytes_get_data (port->out_prefix, NULL), out_len);
      offset += ALIGN8 (out_len);

      g_array_append_val (encoded->fds, port->fd);
      port->fd = -1;
      append_fds (encoded->fds, port->in_fds);
      append_fds (encoded->fds, port->out_fds);
    }
  if (n_message_fds > 0)
    append_fds (encoded->fds, frame->message_fds);
  if (data_fd >= 0)
    g_array_append_val (encoded->fds, data_fd);
  g_assert (offset == head_size);

  encoded->head = g_bytes_new_take (head, head_size);
  return TRUE;
}

gsize
msg_wire_encode_control (MsgWireFrameKind kind,
                         guint64          arg0,
                         guint64          arg1,
                         guint8          *buffer)
{
  guint n_args;

  switch (kind)
    {
    case MSG_WIRE_FRAME_ACK:
      n_args = 2;
      break;
    case MSG_WIRE_FRAME_HELLO:
    case MSG_WIRE_FRAME_PING:
      n_args = 1;
      break;
    case MSG_WIRE_FRAME_PONG:
      n_args = 0;
      break;
    case MSG_WIRE_FRAME_MESSAGE:
    case MSG_WIRE_FRAME_CLOSE:
    default:
      g_assert_not_reached ();
    }

  memset (buffer, 0, MSG_WIRE_HEADER_SIZE);
  write_u32 (buffer, MSG_WIRE_MAGIC);
  buffer[4] = kind;
  write_u64 (buffer + 24, n_args * 8);
  if (n_args > 0)
    write_u64 (buffer + MSG_WIRE_HEADER_SIZE, arg0);
  if (n_args > 1)
    write_u64 (buffer + MSG_WIRE_HEADER_SIZE + 8, arg1);
  return MSG_WIRE_HEADER_SIZE + n_args * 8;
}

void
msg_wire_encoded_append (MsgWireEncoded *encoded,
                         GByteArray     *bytes,
                         GArray         *fds)
{
  gsize size;
  const guint8 *data;

  data = g_bytes_get_data (encoded->head, &size);
  g_byte_array_append (bytes, data, size);
  if (encoded->data != NULL)
    {
      data = g_bytes_get_data (encoded->data, &size);
      g_byte_array_append (bytes, data, size);
    }
  append_fds (fds, encoded->fds);
}

gboolean
msg_wire_frame_extent (const guint8 *data,
                       gsize         size,
                       gsize        *frame_size,
                       guint        *n_fds)
{
  guint64 total;

  if (size < MSG_WIRE_HEADER_SIZE || read_u32 (data) != MSG_WIRE_MAGIC)
    return FALSE;
  if (read_u32 (data + 12) > MSG_WIRE_MAX_TYPE_SIZE || read_u32 (data + 16) > MSG_WIRE_MAX_PORTS_SIZE ||
      read_u64 (data + 24) > MSG_WIRE_MAX_DATA_SIZE || read_u32 (data + 8) > MSG_WIRE_MAX_FDS)
    return FALSE;
  total = MSG_WIRE_HEADER_SIZE + ALIGN8 ((guint64) read_u32 (data + 12)) +
          read_u32 (data + 16) + read_u64 (data + 24);
  if (total > size)
    return FALSE;
  *frame_size = total;
  *n_fds = read_u32 (data + 8);
  return TRUE;
}

/* Large receive buffers ------------------------------------------------ */

/* The data of a large frame is read into a buffer of its own, which becomes
 * the message's GBytes. A fresh one costs a page fault and the zeroing of a
 * page every 4 KiB, each time: glibc hands large freed chunks back to the
 * system. Receiving a stream of 1 MiB messages took 80 faults a message
 * and more time than the copy itself. So the last few buffers freed, by
 * whatever thread drops the message, are kept and reused for frames of
 * about their size: at most RECV_POOL_SLOTS of at most RECV_POOL_MAX_SIZE
 * bytes each, 8 MiB in all. The slots are taken and filled with atomic
 * exchanges, no lock, so that fork() may happen at any time. */
#define RECV_POOL_SLOTS    4
#define RECV_POOL_MAX_SIZE (2 * 1024 * 1024)

typedef struct
{
  gsize  capacity;
  gsize  padding;   /* @data as aligned as malloc()'s, for any GVariant */
  guint8 data[];
} RecvBuffer;

static gpointer recv_pool[RECV_POOL_SLOTS];  /* (atomic) (nullable): RecvBuffer */
static guint recv_pool_next;                 /* (atomic): the slot to take over when all are full */

static RecvBuffer *
recv_buffer_from_data (guint8 *data)
{
  /* Through gpointer: @data lies G_STRUCT_OFFSET() into a RecvBuffer, so the
   * result is aligned, but clang's -Wcast-align cannot know it. */
  return (RecvBuffer *) (gpointer) (data - G_STRUCT_OFFSET (RecvBuffer, data));
}

/* Puts @buffer in an empty slot, or in place of one in turn, which is
 * freed: the pool keeps the buffers freed last, whose pages are likely
 * still in the cache, and buffers of a size no longer used go. */
static void
recv_buffer_recycle (RecvBuffer *buffer)
{
  if (buffer->capacity > RECV_POOL_MAX_SIZE)
    {
      g_free (buffer);
      return;
    }
  for (guint i = 0; i < RECV_POOL_SLOTS; i++)
    if (g_atomic_pointer_compare_and_exchange (&recv_pool[i], NULL, buffer))
      return;
  g_free (g_atomic_pointer_exchange (&recv_pool[(guint) g_atomic_int_add (&recv_pool_next, 1) % RECV_POOL_SLOTS],
                                     buffer));
}

/* Returns the data of a buffer of at least @size bytes, from the pool if
 * one there is no more than twice that size. */
static guint8 *
recv_buffer_new (gsize size)
{
  RecvBuffer *buffer;

  for (guint i = 0; size <= RECV_POOL_MAX_SIZE && i < RECV_POOL_SLOTS; i++)
    {
      buffer = g_atomic_pointer_exchange (&recv_pool[i], NULL);
      if (buffer == NULL)
        continue;
      if (buffer->capacity >= size && buffer->capacity / 2 <= size)
        return buffer->data;
      recv_buffer_recycle (buffer);
    }
  buffer = g_malloc (sizeof (RecvBuffer) + size);
  buffer->capacity = size;
  return buffer->data;
}

/* A GDestroyNotify for the data from recv_buffer_new(). */
static void
recv_buffer_free (gpointer data)
{
  if (data != NULL)
    recv_buffer_recycle (recv_buffer_from_data (data));
}

/* Decoding ------------------------------------------------------------- */

typedef struct
{
  int     fd;
  guint64 start;   /* the stream range the descriptor arrived with */
  guint64 end;
} ReceivedFd;

/* The stream from @offset on is buffer[start, start + tail_at), then, if
 * @tail is set, tail[0, tail_filled), then buffer[start + tail_at, end).
 * @tail holds the data of the large frame at @start; buffer[start,
 * start + tail_at) is that frame's header, type and port table, and
 * nothing follows them in @buffer until @tail is full. */
struct _MsgWireDecoder
{
  guint8  *buffer;
  gsize    allocated;
  gsize    start;        /* first byte not decoded yet */
  gsize    end;          /* first free byte */
  guint64  offset;       /* stream offset of buffer[start] */
  guint8  *tail;         /* (nullable) */
  gsize    tail_size;
  gsize    tail_filled;
  gsize    tail_at;
  GArray  *fds;          /* of ReceivedFd, in arrival order */
  gboolean failed;
  gboolean peer_hello;   /* the peer's hello was decoded */
  guint32  peer_features;
};

MsgWireDecoder *
msg_wire_decoder_new (void)
{
  MsgWireDecoder *self = g_new0 (MsgWireDecoder, 1);

  self->fds = g_array_new (FALSE, FALSE, sizeof (ReceivedFd));
  return self;
}

static void
close_received_fds (MsgWireDecoder *self)
{
  for (guint i = 0; i < self->fds->len; i++)
    close (g_array_index (self->fds, ReceivedFd, i).fd);
  g_array_set_size (self->fds, 0);
}

void
msg_wire_decoder_set_peer_hello (MsgWireDecoder *self,
                                 guint32         features)
{
  self->peer_hello = TRUE;
  self->peer_features = features;
}

gboolean
msg_wire_decoder_get_peer_hello (MsgWireDecoder *self,
                                 guint32        *features)
{
  *features = self->peer_hello ? self->peer_features : 0;
  return self->peer_hello;
}

void
msg_wire_decoder_free (MsgWireDecoder *self)
{
  if (self == NULL)
    return;
  close_received_fds (self);
  g_array_unref (self->fds);
  g_free (self->buffer);
  recv_buffer_free (self->tail);
  g_free (self);
}

guint8 *
msg_wire_decoder_reserve (MsgWireDecoder *self,
                          gsize           min_size,
                          gsize          *size)
{
  /* The rest of a large frame's data goes straight into its own buffer;
   * what comes after it, into the main one. */
  if (self->tail != NULL && self->tail_filled < self->tail_size)
    {
      *size = self->tail_size - self->tail_filled;
      return self->tail + self->tail_filled;
    }

  /* Reclaim what was decoded before growing: the buffer never holds more
   * than a frame in progress and what is asked for. */
  if (self->start > 0 && (self->start == self->end || self->allocated - self->end < min_size))
    {
      memmove (self->buffer, self->buffer + self->start, self->end - self->start);
      self->end -= self->start;
      self->start = 0;
    }
  if (self->allocated - self->end < min_size)
    {
      self->allocated = MAX (self->end + min_size, self->allocated * 2);
      self->buffer = g_realloc (self->buffer, self->allocated);
    }
  *size = self->allocated - self->end;
  /* No buffer yet if nothing was asked for: no offset on NULL. */
  return self->buffer != NULL ? self->buffer + self->end : NULL;
}

void
msg_wire_decoder_commit (MsgWireDecoder *self,
                         gsize           n_bytes,
                         const int      *fds,
                         guint           n_fds)
{
  guint64 batch_start = self->offset + (self->end - self->start) + self->tail_filled;

  if (self->tail != NULL && self->tail_filled < self->tail_size)
    {
      g_assert (n_bytes <= self->tail_size - self->tail_filled);
      self->tail_filled += n_bytes;
    }
  else
    {
      g_assert (self->end + n_bytes <= self->allocated);
      self->end += n_bytes;
    }
  for (guint i = 0; i < n_fds; i++)
    {
      ReceivedFd received = { fds[i], batch_start, batch_start + n_bytes };

      g_array_append_val (self->fds, received);
    }
}

void
msg_wire_decoder_push (MsgWireDecoder *self,
                       const guint8   *data,
                       gsize           size,
                       const int      *fds,
                       guint           n_fds)
{
  /* Nothing to copy: no pointer arithmetic on a buffer that may not be
   * allocated yet (NULL + 0 is undefined). */
  if (size == 0)
    {
      msg_wire_decoder_commit (self, 0, fds, n_fds);
      return;
    }
  do
    {
      gsize room;
      guint8 *to = msg_wire_decoder_reserve (self, size, &room);

      room = MIN (room, size);
      if (room > 0)
        memcpy (to, data, room);
      msg_wire_decoder_commit (self, room, fds, n_fds);
      data += room;
      size -= room;
      n_fds = 0;
    }
  while (size > 0);
}

gboolean
msg_wire_decoder_is_empty (MsgWireDecoder *self)
{
  return self->start == self->end && self->tail == NULL && self->fds->len == 0;
}

guint
msg_wire_decoder_count_fds (MsgWireDecoder *self)
{
  return self->fds->len;
}

gsize
msg_wire_decoder_count_bytes (MsgWireDecoder *self)
{
  return self->end - self->start + self->tail_filled;
}

void
msg_wire_decoder_steal (MsgWireDecoder *self,
                        GByteArray     *bytes,
                        GArray         *fds)
{
  if (self->tail != NULL)
    {
      g_byte_array_append (bytes, self->buffer + self->start, self->tail_at);
      g_byte_array_append (bytes, self->tail, self->tail_filled);
      self->start += self->tail_at;
      self->offset += self->tail_at + self->tail_filled;
      g_clear_pointer (&self->tail, recv_buffer_free);
      self->tail_filled = 0;
    }
  if (self->end > self->start)
    g_byte_array_append (bytes, self->buffer + self->start, self->end - self->start);
  self->offset += self->end - self->start;
  self->start = self->end = 0;
  for (guint i = 0; i < self->fds->len; i++)
    g_array_append_val (fds, g_array_index (self->fds, ReceivedFd, i).fd);
  g_array_set_size (self->fds, 0);
}

static gboolean
protocol_error (MsgWireDecoder  *self,
                GError         **error,
                const char      *format,
                ...) G_GNUC_PRINTF (3, 4);

static gboolean
protocol_error (MsgWireDecoder  *self,
                GError         **error,
                const char      *format,
                ...)
{
  va_list args;
  g_autofree char *message = NULL;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);

  self->failed = TRUE;
  close_received_fds (self);
  g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_PROTOCOL,
               "Invalid data from the peer process: %s", message);
  return FALSE;
}

/* The size of the elements of @type if it is an array of fixed-size basic
 * values, which any bytes of a multiple of that size represent in normal
 * form; 0 otherwise. Spares a walk of every element (10 ns a byte). */
static gsize
fixed_array_element_size (const char *type)
{
  if (type[0] != 'a' || type[1] == '\0' || type[2] != '\0')
    return 0;
  switch (type[1])
    {
    case 'y':
      return 1;
    case 'n': case 'q':
      return 2;
    case 'i': case 'u': case 'h':
      return 4;
    case 'x': case 't': case 'd':
      return 8;
    default:
      return 0;
    }
}

/* The message of @type in @bytes, or NULL and what is wrong with it. If
 * @unchecked is not %NULL, a message that needs a walk to be checked is
 * not walked: *@unchecked says so, for msg_wire_frame_map_data(). */
static GVariant *
message_from_bytes (const char  *type,
                    GBytes      *bytes,
                    gboolean    *unchecked,
                    const char **problem)
{
  gsize element_size = fixed_array_element_size (type);
  GVariant *data;

  if (element_size > 0)
    {
      if (g_bytes_get_size (bytes) % element_size != 0)
        {
          *problem = "has a bad size";
          return NULL;
        }
      return g_variant_ref_sink (g_variant_new_from_bytes (G_VARIANT_TYPE (type), bytes, TRUE));
    }
  data = g_variant_ref_sink (g_variant_new_from_bytes (G_VARIANT_TYPE (type), bytes, FALSE));
  if (unchecked != NULL)
    {
      *unchecked = TRUE;
      return data;
    }
  if (!g_variant_is_normal_form (data))
    {
      msg_variant_unref (data);
      *problem = "is not in normal form";
      return NULL;
    }
  return data;
}

/* Takes @n descriptors for a frame at stream range [@start, @end). */
static gboolean
take_fds (MsgWireDecoder  *self,
          guint            n,
          guint64          start,
          guint64          end,
          GArray          *into,
          GError         **error)
{
  if (self->fds->len < n)
    return protocol_error (self, error, "a frame declares %u descriptors but fewer came with it", n);
  for (guint i = 0; i < n; i++)
    {
      ReceivedFd *received = &g_array_index (self->fds, ReceivedFd, i);

      if (received->end <= start || received->start >= end)
        return protocol_error (self, error, "a descriptor came with bytes of another frame");
    }
  for (guint i = 0; i < n; i++)
    g_array_append_val (into, g_array_index (self->fds, ReceivedFd, i).fd);
  g_array_remove_range (self->fds, 0, n);
  return TRUE;
}

gboolean
msg_wire_decoder_next (MsgWireDecoder  *self,
                       MsgWireFrame   **frame_out,
                       GError         **error)
{
  const guint8 *h;
  guint kind, flags, n_ports;
  guint32 n_fds, type_len, ports_len, reason, n_message_fds;
  guint64 data_len, frame_size, frame_start, head_size;
  gsize available = self->end - self->start + self->tail_filled;
  g_autoptr(MsgWireFrame) frame = NULL;
  g_autoptr(GArray) fds = NULL;
  g_autoptr(MsgWireVariant) data = NULL;
  const guint8 *p, *table_end;
  guint fd_index = 0, fds_needed = 0, n_data_fds;
  gboolean from_tail, control;

  g_return_val_if_fail (!self->failed, FALSE);
  *frame_out = NULL;

  /* Descriptors that arrived only with bytes already decoded belong to no
   * frame. */
  if (self->fds->len > 0 && g_array_index (self->fds, ReceivedFd, 0).end <= self->offset)
    return protocol_error (self, error, "descriptors came that no frame declared");

  if (available < MSG_WIRE_HEADER_SIZE)
    {
      if (self->fds->len > MSG_WIRE_MAX_FDS)
        return protocol_error (self, error, "more descriptors than a frame may carry");
      return FALSE;
    }

  h = self->buffer + self->start;
  kind = h[4];
  flags = h[5];
  n_ports = read_u16 (h + 6);
  n_fds = read_u32 (h + 8);
  type_len = read_u32 (h + 12);
  ports_len = read_u32 (h + 16);
  reason = read_u32 (h + 20);
  data_len = read_u64 (h + 24);

  n_data_fds = (flags & MSG_WIRE_FLAG_DATA_FD) ? 1 : 0;
  /* The u32 at offset 20: a close frame's reason, a message's own
   * descriptors. */
  n_message_fds = kind == MSG_WIRE_FRAME_MESSAGE ? reason : 0;

  if (read_u32 (h) == MSG_WIRE_MAGIC_V1)
    return protocol_error (self, error, "it speaks version 1 of the msgport-glib wire "
                           "format, this process version 2 (two installations of "
                           "msgport-glib that cannot talk)");
  if (read_u32 (h) != MSG_WIRE_MAGIC)
    return protocol_error (self, error, "bad frame magic %08x", read_u32 (h));
  if ((flags & ~(guint) (MSG_WIRE_FLAG_DATA | MSG_WIRE_FLAG_DATA_FD)) != 0)
    return protocol_error (self, error, "reserved header bits are set");
  if (kind == MSG_WIRE_FRAME_CLOSE)
    {
      if (flags != 0 || n_ports != 0 || n_fds != 0 || type_len != 0 || ports_len != 0 || data_len != 0)
        return protocol_error (self, error, "a close frame carries data");
      if (reason > MSG_WIRE_CLOSE_TOO_LARGE)
        return protocol_error (self, error, "unknown close reason %u", reason);
    }
  else if (kind == MSG_WIRE_FRAME_HELLO || kind == MSG_WIRE_FRAME_ACK ||
           kind == MSG_WIRE_FRAME_PING || kind == MSG_WIRE_FRAME_PONG)
    {
      guint64 body = kind == MSG_WIRE_FRAME_ACK ? 16 : kind == MSG_WIRE_FRAME_PONG ? 0 : 8;

      if (flags != 0 || n_ports != 0 || n_fds != 0 || type_len != 0 || ports_len != 0 ||
          reason != 0 || data_len != body)
        return protocol_error (self, error, "a control frame (kind %u) has a bad size", kind);
    }
  else if (kind != MSG_WIRE_FRAME_MESSAGE)
    return protocol_error (self, error, "unknown frame kind %u", kind);
  if ((kind == MSG_WIRE_FRAME_HELLO) == self->peer_hello)
    return protocol_error (self, error, self->peer_hello ? "a second hello came"
                                                         : "the first frame is not a hello");
  if (n_ports > MSG_WIRE_MAX_PORTS || n_fds > MSG_WIRE_MAX_FDS ||
      type_len > MSG_WIRE_MAX_TYPE_SIZE || ports_len > MSG_WIRE_MAX_PORTS_SIZE ||
      data_len > MSG_WIRE_MAX_DATA_SIZE)
    return protocol_error (self, error, "a frame is over the size limits");
  control = kind != MSG_WIRE_FRAME_MESSAGE && kind != MSG_WIRE_FRAME_CLOSE;
  if (!control &&
      (((flags & MSG_WIRE_FLAG_DATA) != 0) != (type_len > 0) ||
       (!(flags & MSG_WIRE_FLAG_DATA) && data_len != 0)))
    return protocol_error (self, error, "a frame's data and type disagree");
  if (n_data_fds > 0 && (!(flags & MSG_WIRE_FLAG_DATA) || data_len != 8 || n_fds == 0))
    return protocol_error (self, error, "a frame's data descriptor is not declared right");
  if ((guint64) n_message_fds + n_data_fds > n_fds)
    return protocol_error (self, error, "a message declares more descriptors than its frame");
  if (ports_len % 8 != 0 || (guint64) n_ports * PORT_ENTRY_SIZE > ports_len)
    return protocol_error (self, error, "a frame's port table has a bad size");

  head_size = MSG_WIRE_HEADER_SIZE + ALIGN8 (type_len) + ports_len;
  frame_size = head_size + data_len;
  if (available < frame_size)
    {
      gsize room;

      /* A later frame's descriptors come with its first bytes, which come
       * after all of this frame's: any more than it declares are strays,
       * and a peer must not make us hold descriptors without bound. */
      if (self->fds->len > n_fds)
        return protocol_error (self, error, "a frame came with more descriptors than it declares");
      if (self->tail != NULL)
        return FALSE;
      if (data_len >= MIN_TAIL_SIZE && data_len <= MAX_RESERVE_AHEAD && available >= head_size)
        {
          /* Large data: the rest is read into its own buffer, with what
           * of it came already. */
          self->tail_at = head_size;
          self->tail_size = data_len;
          self->tail_filled = available - head_size;
          self->tail = recv_buffer_new (data_len);
          memcpy (self->tail, self->buffer + self->start + head_size, self->tail_filled);
          self->end = self->start + head_size;
          return FALSE;
        }
      /* Make room for more of the frame, so that reads go straight in; grow
       * as bytes arrive, not by what a header claims. */
      msg_wire_decoder_reserve (self, MIN (frame_size - available, MAX_RESERVE_AHEAD), &room);
      return FALSE;
    }

  if (control)
    {
      /* A control frame: header and body, nothing else. */
      if (self->fds->len > 0 && g_array_index (self->fds, ReceivedFd, 0).end <= self->offset + frame_size)
        return protocol_error (self, error, "a frame came with more descriptors than it declares");
      frame = msg_wire_frame_new (kind, NULL, 0);
      if (data_len >= 8)
        frame->args[0] = read_u64 (h + MSG_WIRE_HEADER_SIZE);
      if (data_len >= 16)
        frame->args[1] = read_u64 (h + MSG_WIRE_HEADER_SIZE + 8);
      if (kind == MSG_WIRE_FRAME_HELLO)
        msg_wire_decoder_set_peer_hello (self, (guint32) frame->args[0]);
      self->start += frame_size;
      self->offset += frame_size;
      *frame_out = g_steal_pointer (&frame);
      return TRUE;
    }

  from_tail = self->tail != NULL;
  frame_start = self->offset;
  frame = msg_wire_frame_new (kind, NULL, n_ports);
  if (kind == MSG_WIRE_FRAME_CLOSE)
    frame->close_reason = reason;
  if (n_fds > 0)
    fds = g_array_sized_new (FALSE, FALSE, sizeof (int), n_fds);
  if (!take_fds (self, n_fds, frame_start, frame_start + frame_size, fds, error))
    {
      msg_wire_close_fds (fds);
      return FALSE;
    }
  /* Descriptors for a later frame come with bytes that start at that frame
   * and so end after this one: any left that ended within it are strays. */
  if (self->fds->len > 0 &&
      g_array_index (self->fds, ReceivedFd, 0).end <= frame_start + frame_size)
    {
      msg_wire_close_fds (fds);
      return protocol_error (self, error, "a frame came with more descriptors than it declares");
    }

  if (type_len > 0)
    {
      g_autofree char *type = g_strndup ((const char *) h + MSG_WIRE_HEADER_SIZE, type_len);
      const guint8 *data_start = h + MSG_WIRE_HEADER_SIZE + ALIGN8 (type_len) + ports_len;
      const char *problem = NULL;
      GBytes *bytes;

      if (strlen (type) != type_len || !g_variant_type_string_is_valid (type) ||
          !g_variant_type_is_definite (G_VARIANT_TYPE (type)))
        {
          msg_wire_close_fds (fds);
          return protocol_error (self, error, "a message has an invalid type");
        }

      if (n_data_fds > 0)
        {
          /* The data is in the frame's last descriptor, which
           * msg_wire_frame_map_data() checks and maps. */
          guint64 size = read_u64 (data_start);
          gsize element_size = fixed_array_element_size (type);

          if (size == 0 || size > MSG_WIRE_MAX_DATA_SIZE ||
              (element_size > 0 && size % element_size != 0))
            {
              msg_wire_close_fds (fds);
              return protocol_error (self, error, "a message of type %s in a descriptor has a bad size", type);
            }
          frame->data_fd = g_array_index (fds, int, n_fds - 1);
          g_array_index (fds, int, n_fds - 1) = -1;
          frame->data_size = size;
          frame->data_type = g_steal_pointer (&type);
        }
      else
        {
          if (self->tail != NULL)
            {
              self->tail_filled = 0;
              bytes = g_bytes_new_with_free_func (self->tail, data_len, recv_buffer_free, self->tail);
              self->tail = NULL;
            }
          else
            bytes = g_bytes_new (data_start, data_len);
          data = message_from_bytes (type, bytes, &frame->data_unchecked, &problem);
          g_bytes_unref (bytes);
          if (data == NULL)
            {
              msg_wire_close_fds (fds);
              return protocol_error (self, error, "a message of type %s %s", type, problem);
            }
        }
    }
  frame->data = g_steal_pointer (&data);

  p = h + MSG_WIRE_HEADER_SIZE + ALIGN8 (type_len);
  table_end = p + ports_len;
  for (guint i = 0; i < n_ports; i++)
    {
      MsgWirePort *port = &frame->ports[i];
      guint32 n_in_fds, n_out_fds;
      guint64 in_len, out_len, out_partial;

      /* What earlier entries carry may leave no room for this one. */
      if ((gsize) (table_end - p) < PORT_ENTRY_SIZE)
        {
          msg_wire_close_fds (fds);
          return protocol_error (self, error, "a frame's port table holds fewer ports than it declares");
        }
      n_in_fds = read_u32 (p);
      n_out_fds = read_u32 (p + 4);
      in_len = read_u64 (p + 8);
      out_len = read_u64 (p + 16);
      out_partial = read_u64 (p + 24);
      port->flags = read_u32 (p + 32);
      port->peer_features = read_u32 (p + 36);
      port->unacked_messages = read_u64 (p + 40);
      port->unacked_bytes = read_u64 (p + 48);
      port->high_water_mark = read_u64 (p + 56);
      p += PORT_ENTRY_SIZE;
      if ((port->flags & ~(guint32) (MSG_WIRE_PORT_HELLO_SENT | MSG_WIRE_PORT_PEER_HELLO)) != 0 ||
          (!(port->flags & MSG_WIRE_PORT_PEER_HELLO) && port->peer_features != 0))
        {
          msg_wire_close_fds (fds);
          return protocol_error (self, error, "a port entry has reserved bits set");
        }
      if (in_len > (guint64) (table_end - p) || ALIGN8 (in_len) > (guint64) (table_end - p) ||
          out_len > (guint64) (table_end - p) - ALIGN8 (in_len) ||
          ALIGN8 (out_len) > (guint64) (table_end - p) - ALIGN8 (in_len) ||
          n_in_fds > MSG_WIRE_MAX_FDS || n_out_fds > MSG_WIRE_MAX_FDS || out_partial > out_len ||
          fds_needed + 1 + n_in_fds + n_out_fds > n_fds - n_data_fds - n_message_fds)
        {
          msg_wire_close_fds (fds);
          return protocol_error (self, error, "a port entry does not fit the frame");
        }
      fds_needed += 1 + n_in_fds + n_out_fds;

      port->fd = g_array_index (fds, int, fd_index);
      g_array_index (fds, int, fd_index++) = -1;
      if (in_len > 0)
        port->in_prefix = g_bytes_new (p, in_len);
      p += ALIGN8 (in_len);
      if (out_len > 0)
        port->out_prefix = g_bytes_new (p, out_len);
      port->out_partial = out_partial;
      p += ALIGN8 (out_len);
      port->in_fds = g_array_new (FALSE, FALSE, sizeof (int));
      port->out_fds = g_array_new (FALSE, FALSE, sizeof (int));
      for (guint j = 0; j < n_in_fds; j++, fd_index++)
        {
          g_array_append_val (port->in_fds, g_array_index (fds, int, fd_index));
          g_array_index (fds, int, fd_index) = -1;
        }
      for (guint j = 0; j < n_out_fds; j++, fd_index++)
        {
          g_array_append_val (port->out_fds, g_array_index (fds, int, fd_index));
          g_array_index (fds, int, fd_index) = -1;
        }
    }
  if (fds_needed + n_message_fds + n_data_fds != n_fds || p != table_end)
    {
      msg_wire_close_fds (fds);
      return protocol_error (self, error, "a frame's port table and descriptors disagree");
    }
  /* The message's own descriptors, after those of its ports. */
  if (n_message_fds > 0)
    {
      frame->message_fds = g_array_sized_new (FALSE, FALSE, sizeof (int), n_message_fds);
      g_array_append_vals (frame->message_fds, &g_array_index (fds, int, fd_index), n_message_fds);
      for (guint j = 0; j < n_message_fds; j++)
        g_array_index (fds, int, fd_index + j) = -1;
    }

  self->start += from_tail ? head_size : frame_size;
  self->offset += frame_size;
  *frame_out = g_steal_pointer (&frame);
  return TRUE;
}

/* Importing a port -------------------------------------------------------- */

gboolean
msg_wire_port_split_out_prefix (const MsgWirePort  *port,
                                GArray             *segments,
                                GError            **error)
{
  gsize size = 0;
  const guint8 *data = port->out_prefix != NULL ? g_bytes_get_data (port->out_prefix, &size) : NULL;
  guint n_out_fds = port->out_fds != NULL ? port->out_fds->len : 0;
  gsize offset = port->out_partial;
  guint fd_index = 0;

  if (offset > size)
    {
      g_set_error_literal (error, MSG_PORT_ERROR, MSG_PORT_ERROR_PROTOCOL,
                           "Invalid data from the peer process: a transferred port's "
                           "partly written frame is longer than what it carries");
      return FALSE;
    }
  if (offset > 0)
    {
      MsgWireSegment partial = { 0, offset, 0, 0, TRUE };

      g_array_append_val (segments, partial);
    }
  while (offset < size)
    {
      MsgWireSegment segment = { offset, 0, fd_index, 0, FALSE };

      if (!msg_wire_frame_extent (data + offset, size - offset, &segment.size, &segment.n_fds) ||
          segment.n_fds > n_out_fds - fd_index)
        {
          g_set_error_literal (error, MSG_PORT_ERROR, MSG_PORT_ERROR_PROTOCOL,
                               "Invalid data from the peer process: what a transferred "
                               "port had not written is not whole frames");
          return FALSE;
        }
      g_array_append_val (segments, segment);
      offset += segment.size;
      fd_index += segment.n_fds;
    }
  if (fd_index != n_out_fds)
    {
      g_set_error_literal (error, MSG_PORT_ERROR, MSG_PORT_ERROR_PROTOCOL,
                           "Invalid data from the peer process: a transferred port "
                           "carries descriptors that belong to no frame");
      return FALSE;
    }
  return TRUE;
}

void
msg_wire_port_push_in_prefix (MsgWirePort    *port,
                              MsgWireDecoder *decoder)
{
  gsize size = 0;
  const guint8 *data = port->in_prefix != NULL ? g_bytes_get_data (port->in_prefix, &size) : NULL;
  guint n_fds = port->in_fds != NULL ? port->in_fds->len : 0;

  if (size == 0 && n_fds == 0)
    return;
  /* An empty GArray may have no storage: no &array[0] then. */
  msg_wire_decoder_push (decoder, data, size,
                         n_fds > 0 ? &g_array_index (port->in_fds, int, 0) : NULL, n_fds);
  if (n_fds > 0)
    g_array_set_size (port->in_fds, 0);
}

/* Payload descriptors ---------------------------------------------------- */

typedef struct
{
  gpointer address;
  gsize    size;
} Mapping;

static void
mapping_free (gpointer data)
{
  Mapping *mapping = data;

  munmap (mapping->address, mapping->size);
  g_free (mapping);
}

gboolean
msg_wire_frame_map_data (MsgWireFrame  *frame,
                         GError       **error)
{
  const int required = F_SEAL_SHRINK | F_SEAL_WRITE;
  const char *problem = NULL;
  g_autoptr(GBytes) bytes = NULL;
  Mapping *mapping;
  struct stat st;
  int seals;

  if (frame->data_unchecked)
    {
      frame->data_unchecked = FALSE;
      if (!g_variant_is_normal_form (frame->data))
        {
          g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_PROTOCOL,
                       "Invalid data from the peer process: a message of type %s "
                       "is not in normal form", g_variant_get_type_string (frame->data));
          g_clear_pointer (&frame->data, msg_variant_unref);
          return FALSE;
        }
    }
  if (frame->data_fd < 0)
    return TRUE;

  /* Sealed against writing and shrinking, the memory cannot change or go
   * away under the mapping; anything else could be a trap. */
  seals = fcntl (frame->data_fd, F_GET_SEALS);
  if (seals < 0 || (seals & required) != required)
    {
      g_set_error_literal (error, MSG_PORT_ERROR, MSG_PORT_ERROR_PROTOCOL,
                           "Invalid data from the peer process: a message came in a "
                           "descriptor that is not a sealed memfd");
      return FALSE;
    }
  if (fstat (frame->data_fd, &st) < 0 || st.st_size < 0 || (guint64) st.st_size != frame->data_size)
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_PROTOCOL,
                   "Invalid data from the peer process: a message declared as %" G_GSIZE_FORMAT
                   " bytes came in a memfd of another size", frame->data_size);
      return FALSE;
    }

  mapping = g_new (Mapping, 1);
  mapping->size = frame->data_size;
  mapping->address = mmap (NULL, mapping->size, PROT_READ, MAP_SHARED | MAP_POPULATE,
                           frame->data_fd, 0);
  if (mapping->address == MAP_FAILED)
    {
      int errsv = errno;

      g_free (mapping);
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_IO,
                   "Cannot map a message of %" G_GSIZE_FORMAT " bytes from the peer process: %s",
                   frame->data_size, g_strerror (errsv));
      return FALSE;
    }
  close (frame->data_fd);
  frame->data_fd = -1;

  bytes = g_bytes_new_with_free_func (mapping->address, mapping->size, mapping_free, mapping);
  frame->data = message_from_bytes (frame->data_type, bytes, NULL, &problem);
  if (frame->data == NULL)
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_PROTOCOL,
                   "Invalid data from the peer process: a message of type %s %s",
                   frame->data_type, problem);
      return FALSE;
    }
  g_clear_pointer (&frame->data_type, g_free);
  return TRUE;
}
