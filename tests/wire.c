/* wire.c: the wire decoder, white-box
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Feeds a stream of frames to the decoder in pieces of many sizes, the way
 * a socket hands them over, and checks that every frame comes out whole:
 * small ones out of the shared read buffer, large ones (read straight into
 * a buffer of their own), a large one with a port whose descriptor comes
 * with a byte in the middle of its data, and a decoder stolen from in the
 * middle of a large frame, as when a socket-backed port moves to another
 * process; then messages whose data travels in a sealed memfd, and the
 * descriptors a receiver must refuse in its place.
 */

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "msg-port-error.h"

#include "wire/msg-wire-private.h"

typedef struct
{
  GByteArray *bytes;
  int         fd;           /* the port frame's descriptor (owned) */
  gsize       fd_offset;    /* the byte the port frame's descriptor comes with */
  guint       port_index;   /* which frame carries the port */
  gsize       large_offset; /* where the first large frame starts */
  GPtrArray  *expected;     /* (element-type GVariant) */
} Stream;

/* A decoder past the handshake: the peer's hello came. */
static MsgWireDecoder *
test_decoder_new (void)
{
  MsgWireDecoder *decoder = msg_wire_decoder_new ();

  msg_wire_decoder_set_peer_hello (decoder, MSG_WIRE_FEATURES_ALL);
  return decoder;
}

static GVariant *
blob (gsize size,
      guint seed)
{
  guint8 *data = g_malloc (size);

  for (gsize i = 0; i < size; i++)
    data[i] = (i * 31 + seed) & 0xff;
  return g_variant_ref_sink (g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, data, size,
                                                      TRUE, g_free, data));
}

static void
append_frame (Stream       *stream,
              MsgWireFrame *frame)
{
  MsgWireEncoded encoded;
  g_autoptr(GArray) fds = g_array_new (FALSE, FALSE, sizeof (int));

  g_assert_true (msg_wire_encode (frame, &encoded, NULL));
  msg_wire_encoded_append (&encoded, stream->bytes, fds);
  msg_wire_encoded_clear (&encoded);
  if (fds->len > 0)
    {
      g_assert_cmpuint (fds->len, ==, 1);
      stream->fd = g_array_index (fds, int, 0);
    }
}

static void
append_message (Stream   *stream,
                GVariant *data)
{
  MsgWireFrame frame = { .kind = MSG_WIRE_FRAME_MESSAGE, .data = data, .data_fd = -1 };

  append_frame (stream, &frame);
  g_ptr_array_add (stream->expected, g_variant_ref (data));
}

/* Small and large messages, a large one with a port whose descriptor comes
 * with a byte in the middle of its data, a close with a reason. */
static void
stream_init (Stream *stream)
{
  g_autoptr(MsgWireFrame) port_frame = NULL;
  g_autoptr(MsgWireFrame) close_frame = msg_wire_frame_new (MSG_WIRE_FRAME_CLOSE, NULL, 0);
  g_autoptr(GVariant) small = g_variant_ref_sink (g_variant_new ("(us)", 7, "small"));
  g_autoptr(GVariant) large = blob (200000, 1);
  g_autoptr(GVariant) larger = blob (70001, 2);
  int pipe_fds[2];

  stream->bytes = g_byte_array_new ();
  stream->fd = -1;
  stream->expected = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);

  close_frame->close_reason = MSG_WIRE_CLOSE_TOO_LARGE;
  append_message (stream, small);
  stream->large_offset = stream->bytes->len;
  append_message (stream, large);

  g_assert_no_errno (pipe (pipe_fds));
  close (pipe_fds[1]);
  port_frame = msg_wire_frame_new (MSG_WIRE_FRAME_MESSAGE, g_variant_ref (large), 1);
  port_frame->ports[0].fd = pipe_fds[0];
  stream->fd_offset = stream->bytes->len + 150000;
  stream->port_index = stream->expected->len;
  append_frame (stream, port_frame);
  g_ptr_array_add (stream->expected, g_variant_ref (large));

  append_message (stream, larger);
  append_message (stream, small);
  append_frame (stream, close_frame);
}

static void
stream_clear (Stream *stream)
{
  g_byte_array_unref (stream->bytes);
  g_ptr_array_unref (stream->expected);
  if (stream->fd >= 0)
    close (stream->fd);
}

/* Feeds stream bytes [@from, @to) in pieces of @piece bytes (0: random
 * sizes), the port frame's descriptor (a duplicate) with the piece that
 * holds its first byte, and collects what comes out. */
static void
feed (MsgWireDecoder *decoder,
      Stream         *stream,
      gsize           from,
      gsize           to,
      gsize           piece,
      GPtrArray      *frames)
{
  gsize offset = from;

  while (offset < to)
    {
      MsgWireFrame *frame;
      GError *error = NULL;
      gsize room, n = piece > 0 ? piece : (gsize) g_test_rand_int_range (1, 100000);
      guint8 *where = msg_wire_decoder_reserve (decoder, 1, &room);
      int fd = -1;

      n = MIN (n, MIN (room, to - offset));
      memcpy (where, stream->bytes->data + offset, n);
      if (offset <= stream->fd_offset && stream->fd_offset < offset + n)
        fd = fcntl (stream->fd, F_DUPFD_CLOEXEC, 0);
      msg_wire_decoder_commit (decoder, n, &fd, fd >= 0 ? 1 : 0);
      offset += n;

      while (msg_wire_decoder_next (decoder, &frame, &error))
        g_ptr_array_add (frames, frame);
      g_assert_no_error (error);
    }
}

static void
check_frames (Stream    *stream,
              GPtrArray *frames,
              guint      first)
{
  struct stat expected_st, st;

  g_assert_no_errno (fstat (stream->fd, &expected_st));
  g_assert_cmpuint (frames->len, ==, stream->expected->len + 1 - first);
  for (guint i = 0; i < stream->expected->len - first; i++)
    {
      MsgWireFrame *frame = g_ptr_array_index (frames, i);
      GVariant *expected = g_ptr_array_index (stream->expected, first + i);

      g_assert_cmpint (frame->kind, ==, MSG_WIRE_FRAME_MESSAGE);
      g_assert_true (g_variant_equal (frame->data, expected));
      if (first + i == stream->port_index)
        {
          /* Its descriptor is the pipe's. */
          g_assert_cmpuint (frame->n_ports, ==, 1);
          g_assert_no_errno (fstat (frame->ports[0].fd, &st));
          g_assert_cmpuint (st.st_ino, ==, expected_st.st_ino);
        }
      else
        g_assert_cmpuint (frame->n_ports, ==, 0);
    }
  g_assert_cmpint (((MsgWireFrame *) g_ptr_array_index (frames, frames->len - 1))->kind,
                   ==, MSG_WIRE_FRAME_CLOSE);
  g_assert_cmpint (((MsgWireFrame *) g_ptr_array_index (frames, frames->len - 1))->close_reason,
                   ==, MSG_WIRE_CLOSE_TOO_LARGE);
}

static void
test_wire_decoder_pieces (void)
{
  const gsize pieces[] = { 1, 7, 4096, 65539, 1 << 20, 0, 0, 0 };

  g_test_summary ("A stream of small and large frames fed in pieces of any size decodes "
                  "to the same frames, descriptors included");

  for (guint i = 0; i < G_N_ELEMENTS (pieces); i++)
    {
      Stream stream;
      MsgWireDecoder *decoder = test_decoder_new ();
      g_autoptr(GPtrArray) frames = g_ptr_array_new_with_free_func ((GDestroyNotify) msg_wire_frame_free);

      stream_init (&stream);
      feed (decoder, &stream, 0, stream.bytes->len, pieces[i], frames);
      check_frames (&stream, frames, 0);
      g_assert_true (msg_wire_decoder_is_empty (decoder));
      msg_wire_decoder_free (decoder);
      stream_clear (&stream);
    }
}

static void
test_wire_decoder_steal (void)
{
  g_test_summary ("Stealing what a decoder holds in the middle of a large frame, and "
                  "pushing it into a new decoder, loses and reorders nothing");

  /* Cut in the first large frame, in its data, at points read into its
   * own buffer and not. */
  for (gsize cut = 100; cut < 200000; cut += 39999)
    {
      Stream stream;
      MsgWireDecoder *decoder = test_decoder_new ();
      MsgWireDecoder *next = test_decoder_new ();
      g_autoptr(GPtrArray) frames = g_ptr_array_new_with_free_func ((GDestroyNotify) msg_wire_frame_free);
      g_autoptr(GByteArray) stolen = g_byte_array_new ();
      g_autoptr(GArray) stolen_fds = g_array_new (FALSE, FALSE, sizeof (int));
      gsize at;

      stream_init (&stream);
      at = stream.large_offset + cut;
      feed (decoder, &stream, 0, at, 5000, frames);
      g_assert_cmpuint (frames->len, ==, 1);
      g_assert_false (msg_wire_decoder_is_empty (decoder));

      msg_wire_decoder_steal (decoder, stolen, stolen_fds);
      g_assert_true (msg_wire_decoder_is_empty (decoder));
      g_assert_cmpuint (stolen_fds->len, ==, 0);
      msg_wire_decoder_push (next, stolen->data, stolen->len, NULL, 0);
      g_ptr_array_set_size (frames, 0);
      feed (next, &stream, at, stream.bytes->len, 0, frames);
      check_frames (&stream, frames, 1);

      msg_wire_decoder_free (decoder);
      msg_wire_decoder_free (next);
      stream_clear (&stream);
    }
}

/* Decodes one message frame of @data from a stream of its own. */
static GVariant *
decode_message (MsgWireDecoder *decoder,
                GVariant       *data)
{
  Stream stream = { .fd_offset = G_MAXSIZE };
  g_autoptr(GPtrArray) frames = g_ptr_array_new_with_free_func ((GDestroyNotify) msg_wire_frame_free);
  MsgWireFrame *frame;

  stream.bytes = g_byte_array_new ();
  stream.fd = -1;
  stream.expected = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  append_message (&stream, data);
  feed (decoder, &stream, 0, stream.bytes->len, 4096, frames);
  g_assert_cmpuint (frames->len, ==, 1);
  frame = g_ptr_array_index (frames, 0);
  g_assert_true (g_variant_equal (frame->data, data));
  stream_clear (&stream);
  return g_variant_ref (frame->data);
}

static void
test_wire_decoder_recycled (void)
{
  MsgWireDecoder *decoder = test_decoder_new ();
  g_autoptr(GVariant) first = blob (1 << 20, 1);
  g_autoptr(GVariant) second = blob (1 << 20, 2);
  g_autoptr(GVariant) third = blob (1 << 20, 3);
  GVariant *received_first, *received_second, *received_third;
  guintptr first_data;

  g_test_summary ("The buffer of a large message is reused for a later one once the "
                  "message is dropped, never while it is alive");

  /* The tests before this one leave only buffers too small for 1 MiB
   * frames in the pool, so the third frame can only get the first's. */
  received_first = decode_message (decoder, first);
  received_second = decode_message (decoder, second);
  g_assert_true (g_variant_get_data (received_first) != g_variant_get_data (received_second));
  first_data = (guintptr) g_variant_get_data (received_first);
  g_variant_unref (received_first);

  received_third = decode_message (decoder, third);
  g_assert_cmpuint ((guintptr) g_variant_get_data (received_third), ==, first_data);
  g_assert_true (g_variant_equal (received_second, second));
  g_assert_true (g_variant_equal (received_third, third));

  g_variant_unref (received_second);
  g_variant_unref (received_third);
  msg_wire_decoder_free (decoder);
}

/* Memfds ------------------------------------------------------------------ */

/* Encodes @frame and decodes it again, its descriptors coming with its
 * first byte. */
static MsgWireFrame *
reencode (MsgWireFrame *frame,
          guint         expected_fds)
{
  MsgWireEncoded encoded;
  g_autoptr(GByteArray) bytes = g_byte_array_new ();
  g_autoptr(GArray) fds = g_array_new (FALSE, FALSE, sizeof (int));
  MsgWireDecoder *decoder = test_decoder_new ();
  MsgWireFrame *decoded = NULL;
  GError *error = NULL;

  g_assert_true (msg_wire_encode (frame, &encoded, NULL));
  msg_wire_encoded_append (&encoded, bytes, fds);
  msg_wire_encoded_clear (&encoded);
  g_assert_cmpuint (fds->len, ==, expected_fds);

  msg_wire_decoder_push (decoder, bytes->data, bytes->len, (const int *) (void *) fds->data, fds->len);
  g_assert_true (msg_wire_decoder_next (decoder, &decoded, &error));
  g_assert_no_error (error);
  g_assert_true (msg_wire_decoder_is_empty (decoder));
  msg_wire_decoder_free (decoder);
  return decoded;
}

static void
test_wire_memfd_round_trip (void)
{
  g_autoptr(GVariant) large = blob (100000, 3);
  g_autoptr(GVariant) small = g_variant_ref_sink (g_variant_new ("(us)", 7, "small"));
  g_autoptr(GVariant) structured = NULL;
  g_autoptr(MsgWireFrame) with_port = NULL;
  g_autoptr(MsgWireFrame) decoded = NULL;
  GVariantBuilder builder;
  GVariant *cases[3];
  int pipe_fds[2];
  struct stat expected_st, st;

  g_test_summary ("A message over the memfd threshold travels in a sealed memfd, after the "
                  "descriptors of its ports, and maps back to an equal value; smaller ones "
                  "stay inline");

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a(ts)"));
  for (guint i = 0; i < 5000; i++)
    g_variant_builder_add (&builder, "(ts)", (guint64) i, "abcdefghijklmnopqrstuvwxyz012345");
  structured = g_variant_ref_sink (g_variant_builder_end (&builder));

  msg_wire_set_memfd_threshold (4096);
  cases[0] = large;
  cases[1] = structured;
  cases[2] = small;
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      MsgWireFrame frame = { .kind = MSG_WIRE_FRAME_MESSAGE, .data = cases[i], .data_fd = -1 };
      gboolean in_memfd = cases[i] != small;
      g_autoptr(MsgWireFrame) got = reencode (&frame, in_memfd ? 1 : 0);
      GError *error = NULL;

      if (in_memfd)
        {
          g_assert_null (got->data);
          g_assert_cmpint (got->data_fd, >=, 0);
          g_assert_cmpint (fcntl (got->data_fd, F_GET_SEALS) & (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW),
                           ==, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW);
          g_assert_cmpuint (got->data_size, ==, g_variant_get_size (cases[i]));
        }
      g_assert_true (msg_wire_frame_map_data (got, &error));
      g_assert_no_error (error);
      g_assert_cmpint (got->data_fd, ==, -1);
      g_assert_true (g_variant_equal (got->data, cases[i]));
    }

  /* The port's descriptor first, the data's last. */
  g_assert_no_errno (pipe (pipe_fds));
  close (pipe_fds[1]);
  g_assert_no_errno (fstat (pipe_fds[0], &expected_st));
  with_port = msg_wire_frame_new (MSG_WIRE_FRAME_MESSAGE, g_variant_ref (large), 1);
  with_port->ports[0].fd = pipe_fds[0];
  decoded = reencode (with_port, 2);
  g_assert_no_errno (fstat (decoded->ports[0].fd, &st));
  g_assert_cmpuint (st.st_ino, ==, expected_st.st_ino);
  g_assert_true (msg_wire_frame_map_data (decoded, NULL));
  g_assert_true (g_variant_equal (decoded->data, large));

  msg_wire_set_memfd_threshold (-1);
}

static int
new_memfd (const void *data,
           gsize       size,
           guint       seals)
{
  int fd = memfd_create ("wire-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (write (fd, data, size), ==, (gssize) size);
  if (seals != 0)
    g_assert_no_errno (fcntl (fd, F_ADD_SEALS, seals));
  return fd;
}

static void
test_wire_memfd_refused (void)
{
  const guint all = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
  struct {
    const char *type;
    int         fd;
    gsize       size;
  } cases[5];
  int pipe_fds[2];

  g_test_summary ("A data descriptor that is not a memfd sealed against writing and "
                  "shrinking, or not of the declared size, or not a valid message, is a "
                  "protocol error, and its descriptor is closed with the frame");

  g_assert_no_errno (pipe (pipe_fds));
  close (pipe_fds[1]);
  cases[0].fd = new_memfd ("abcdefgh", 8, 0);
  cases[1].fd = new_memfd ("abcdefgh", 8, F_SEAL_SHRINK | F_SEAL_GROW);
  cases[2].fd = pipe_fds[0];
  cases[3].fd = new_memfd ("abcdefgh", 8, all);
  cases[4].fd = new_memfd ("abc", 3, all);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      cases[i].type = i == 4 ? "s" : "ay";
      cases[i].size = i == 3 ? 4096 : i == 4 ? 3 : 8;
    }

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(MsgWireFrame) frame = msg_wire_frame_new (MSG_WIRE_FRAME_MESSAGE, NULL, 0);
      g_autoptr(GError) error = NULL;
      int fd = cases[i].fd;

      frame->data_type = g_strdup (cases[i].type);
      frame->data_fd = fd;
      frame->data_size = cases[i].size;
      g_assert_false (msg_wire_frame_map_data (frame, &error));
      g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_PROTOCOL);
      g_test_message ("%s", error->message);
      g_assert_null (frame->data);
      g_clear_pointer (&frame, msg_wire_frame_free);
      g_assert_cmpint (fcntl (fd, F_GETFD), ==, -1);
    }
}

/* A message frame of type "ay" declared to be in a descriptor of @size
 * bytes, with @flags, @data_len and @n_fds as given. */
static void
push_fd_frame (MsgWireDecoder *decoder,
               guint8          flags,
               guint64         data_len,
               guint32         n_fds,
               guint64         size)
{
  guint8 frame[MSG_WIRE_HEADER_SIZE + 8 + 8] = { 0, };
  int fd = n_fds > 0 ? new_memfd ("abcdefgh", 8, F_SEAL_WRITE | F_SEAL_SHRINK) : -1;

  for (guint i = 0; i < 4; i++)
    {
      frame[i] = MSG_WIRE_MAGIC >> (8 * i);
      frame[8 + i] = n_fds >> (8 * i);
    }
  frame[4] = MSG_WIRE_FRAME_MESSAGE;
  frame[5] = flags;
  frame[12] = 2;  /* type_len */
  for (guint i = 0; i < 8; i++)
    {
      frame[24 + i] = data_len >> (8 * i);
      frame[MSG_WIRE_HEADER_SIZE + 8 + i] = size >> (8 * i);
    }
  memcpy (frame + MSG_WIRE_HEADER_SIZE, "ay", 2);
  msg_wire_decoder_push (decoder, frame, MSG_WIRE_HEADER_SIZE + 8 + data_len, &fd, fd >= 0 ? 1 : 0);
}

static void
test_wire_memfd_bad_header (void)
{
  const struct {
    guint8  flags;
    guint64 data_len;
    guint32 n_fds;
    guint64 size;
  } cases[] = {
    { MSG_WIRE_FLAG_DATA | MSG_WIRE_FLAG_DATA_FD, 8, 1, 8 },   /* valid */
    { MSG_WIRE_FLAG_DATA_FD, 8, 1, 8 },                        /* no data flag */
    { MSG_WIRE_FLAG_DATA | MSG_WIRE_FLAG_DATA_FD, 0, 1, 8 },   /* no size */
    { MSG_WIRE_FLAG_DATA | MSG_WIRE_FLAG_DATA_FD, 8, 0, 8 },   /* no descriptor */
    { MSG_WIRE_FLAG_DATA | MSG_WIRE_FLAG_DATA_FD, 8, 1, 0 },   /* empty */
    { MSG_WIRE_FLAG_DATA | MSG_WIRE_FLAG_DATA_FD, 8, 1, MSG_WIRE_MAX_DATA_SIZE + 1 },
    { MSG_WIRE_FLAG_DATA | MSG_WIRE_FLAG_DATA_FD, 8, 2, 8 },   /* declares one that did not come */
  };

  g_test_summary ("The decoder refuses a data descriptor that the header does not declare "
                  "right, and closes what came with it");

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      MsgWireDecoder *decoder = test_decoder_new ();
      g_autoptr(MsgWireFrame) frame = NULL;
      g_autoptr(GError) error = NULL;
      gboolean ok;

      push_fd_frame (decoder, cases[i].flags, cases[i].data_len, cases[i].n_fds, cases[i].size);
      ok = msg_wire_decoder_next (decoder, &frame, &error);
      if (i == 0)
        {
          g_assert_true (ok);
          g_assert_cmpint (frame->data_fd, >=, 0);
          g_assert_cmpuint (frame->data_size, ==, 8);
          g_assert_true (msg_wire_frame_map_data (frame, NULL));
          g_assert_cmpuint (g_variant_get_size (frame->data), ==, 8);
        }
      else
        {
          g_assert_false (ok);
          g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_PROTOCOL);
          g_test_message ("%s", error->message);
        }
      msg_wire_decoder_free (decoder);
    }
}

static ino_t
inode_of (int fd)
{
  struct stat st;

  g_assert_no_errno (fstat (fd, &st));
  return st.st_ino;
}

static void
test_wire_message_fds_round_trip (void)
{
  g_autoptr(GVariant) large = blob (100000, 4);
  g_autoptr(GVariant) small = g_variant_ref_sink (g_variant_new ("(hh)", 0, 1));
  int pipe_fds[2], port_pipe[2];
  ino_t pipe_inode, null_inode, port_inode;

  g_test_summary ("A message's own descriptors travel after those of its ports and "
                  "before the memfd of its data, counted at offset 20 of the header, "
                  "and decode in order into the frame's message_fds");

  g_assert_no_errno (pipe (pipe_fds));
  g_assert_no_errno (pipe (port_pipe));
  close (port_pipe[1]);
  pipe_inode = inode_of (pipe_fds[0]);
  port_inode = inode_of (port_pipe[0]);

  for (guint i = 0; i < 2; i++)
    {
      gboolean with_port_and_memfd = i == 1;
      g_autoptr(MsgWireFrame) frame = NULL;
      g_autoptr(MsgWireFrame) decoded = NULL;
      MsgWireEncoded encoded;
      g_autoptr(GByteArray) bytes = g_byte_array_new ();
      g_autoptr(GArray) fds = g_array_new (FALSE, FALSE, sizeof (int));
      MsgWireDecoder *decoder = test_decoder_new ();
      int null_fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);
      int pipe_fd = fcntl (pipe_fds[1], F_DUPFD_CLOEXEC, 0);
      guint n_port_fds = with_port_and_memfd ? 1 : 0;
      GError *error = NULL;

      null_inode = inode_of (null_fd);
      if (with_port_and_memfd)
        msg_wire_set_memfd_threshold (4096);
      frame = msg_wire_frame_new (MSG_WIRE_FRAME_MESSAGE,
                                  g_variant_ref (with_port_and_memfd ? large : small),
                                  n_port_fds);
      if (with_port_and_memfd)
        frame->ports[0].fd = fcntl (port_pipe[0], F_DUPFD_CLOEXEC, 0);
      frame->message_fds = g_array_new (FALSE, FALSE, sizeof (int));
      g_array_append_val (frame->message_fds, pipe_fd);
      g_array_append_val (frame->message_fds, null_fd);

      g_assert_true (msg_wire_encode (frame, &encoded, &error));
      g_assert_no_error (error);
      /* Taken by the encoding. */
      g_assert_cmpuint (frame->message_fds->len, ==, 0);
      msg_wire_encoded_append (&encoded, bytes, fds);
      msg_wire_encoded_clear (&encoded);
      g_assert_cmpuint (fds->len, ==, n_port_fds + 2 + (with_port_and_memfd ? 1 : 0));
      g_assert_cmpuint (bytes->data[20], ==, 2);
      g_assert_cmpuint (bytes->data[8], ==, fds->len);
      /* Ports, then the message's, then the memfd. */
      if (with_port_and_memfd)
        g_assert_cmpuint (inode_of (g_array_index (fds, int, 0)), ==, port_inode);
      g_assert_cmpuint (inode_of (g_array_index (fds, int, n_port_fds)), ==, pipe_inode);
      g_assert_cmpuint (inode_of (g_array_index (fds, int, n_port_fds + 1)), ==, null_inode);
      if (with_port_and_memfd)
        g_assert_cmpint (fcntl (g_array_index (fds, int, 3), F_GET_SEALS), >, 0);

      msg_wire_decoder_push (decoder, bytes->data, bytes->len,
                             (const int *) (void *) fds->data, fds->len);
      g_assert_true (msg_wire_decoder_next (decoder, &decoded, &error));
      g_assert_no_error (error);
      g_assert_true (msg_wire_decoder_is_empty (decoder));
      msg_wire_decoder_free (decoder);

      g_assert_nonnull (decoded->message_fds);
      g_assert_cmpuint (decoded->message_fds->len, ==, 2);
      g_assert_cmpuint (inode_of (g_array_index (decoded->message_fds, int, 0)), ==, pipe_inode);
      g_assert_cmpuint (inode_of (g_array_index (decoded->message_fds, int, 1)), ==, null_inode);
      g_assert_cmpuint (decoded->n_ports, ==, n_port_fds);
      if (with_port_and_memfd)
        {
          g_assert_cmpuint (inode_of (decoded->ports[0].fd), ==, port_inode);
          g_assert_cmpint (decoded->data_fd, >=, 0);
        }
      g_assert_true (msg_wire_frame_map_data (decoded, &error));
      g_assert_no_error (error);
      g_assert_true (g_variant_equal (decoded->data, with_port_and_memfd ? large : small));

      /* The received ends work: what goes into the pipe's write end
       * comes out of its read end. */
      g_assert_cmpint (write (g_array_index (decoded->message_fds, int, 0), "x", 1), ==, 1);
      {
        char byte = 0;

        g_assert_cmpint (read (pipe_fds[0], &byte, 1), ==, 1);
        g_assert_cmpint (byte, ==, 'x');
      }
      msg_wire_set_memfd_threshold (-1);
    }

  /* A close frame carries none, and a message without any has 0. */
  {
    g_autoptr(MsgWireFrame) plain = msg_wire_frame_new (MSG_WIRE_FRAME_MESSAGE,
                                                        g_variant_ref (small), 0);
    g_autoptr(MsgWireFrame) decoded = reencode (plain, 0);

    g_assert_null (decoded->message_fds);
  }

  close (pipe_fds[0]);
  close (pipe_fds[1]);
  close (port_pipe[0]);
}

/* A message frame of type "u" with @n_ports ports (entries with no
 * prefixes), @n_message_fds at offset 20, @n_fds declared and @n_sent
 * descriptors (/dev/null) sent with it, whose numbers go in @sent. */
static void
push_message_fds_frame (MsgWireDecoder *decoder,
                        guint           n_ports,
                        guint32         n_message_fds,
                        guint32         n_fds,
                        guint8          flags,
                        guint           n_sent,
                        int            *sent)
{
  gsize ports_len = n_ports * MSG_WIRE_PORT_ENTRY_SIZE;
  gsize data_len = (flags & MSG_WIRE_FLAG_DATA_FD) ? 8 : 4;
  gsize size = MSG_WIRE_HEADER_SIZE + 8 + ports_len + data_len;
  guint8 *frame = g_malloc0 (size);

  for (guint i = 0; i < 4; i++)
    frame[i] = MSG_WIRE_MAGIC >> (8 * i);
  frame[4] = MSG_WIRE_FRAME_MESSAGE;
  frame[5] = MSG_WIRE_FLAG_DATA | flags;
  frame[6] = n_ports;
  for (guint i = 0; i < 4; i++)
    {
      frame[8 + i] = n_fds >> (8 * i);
      frame[16 + i] = ports_len >> (8 * i);
      frame[20 + i] = n_message_fds >> (8 * i);
    }
  frame[12] = 1;  /* type_len */
  frame[24] = data_len;
  frame[MSG_WIRE_HEADER_SIZE] = 'u';
  if (flags & MSG_WIRE_FLAG_DATA_FD)
    frame[MSG_WIRE_HEADER_SIZE + 8 + ports_len] = 4;  /* the memfd's size */
  for (guint i = 0; i < n_sent; i++)
    {
      sent[i] = open ("/dev/null", O_RDONLY | O_CLOEXEC);
      g_assert_cmpint (sent[i], >=, 0);
    }
  msg_wire_decoder_push (decoder, frame, size, sent, n_sent);
  g_free (frame);
}

static void
test_wire_message_fds_bad_counts (void)
{
  const struct {
    guint   n_ports;
    guint32 n_message_fds;
    guint32 n_fds;
    guint8  flags;
    guint   n_sent;
    gboolean valid;
  } cases[] = {
    { 0, 2, 2, 0, 2, TRUE },
    { 1, 2, 3, 0, 3, TRUE },
    { 0, 3, 2, 0, 2, FALSE },                        /* more than the frame */
    { 0, 1, 2, 0, 2, FALSE },                        /* one left over */
    { 1, 2, 2, 0, 2, FALSE },                        /* none left for the port */
    { 0, 2, 2, MSG_WIRE_FLAG_DATA_FD, 2, FALSE },    /* none left for the memfd */
    { 0, G_MAXUINT32, 2, 0, 2, FALSE },              /* overflows a sum */
    { 0, 2, 3, 0, 2, FALSE },                        /* one that did not come */
  };

  g_test_summary ("A message whose own descriptors, those of its ports and its memfd "
                  "do not add up to the frame's is a protocol error, and every "
                  "descriptor that came with it is closed");

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      MsgWireDecoder *decoder = test_decoder_new ();
      MsgWireFrame *frame = NULL;
      GError *error = NULL;
      int sent[4];
      gboolean ok;

      push_message_fds_frame (decoder, cases[i].n_ports, cases[i].n_message_fds,
                              cases[i].n_fds, cases[i].flags, cases[i].n_sent, sent);
      ok = msg_wire_decoder_next (decoder, &frame, &error);
      if (cases[i].valid)
        {
          g_assert_no_error (error);
          g_assert_true (ok);
          g_assert_cmpuint (frame->message_fds->len, ==, cases[i].n_message_fds);
          /* In order, after the ports'. */
          for (guint j = 0; j < cases[i].n_message_fds; j++)
            g_assert_cmpint (g_array_index (frame->message_fds, int, j), ==,
                             sent[cases[i].n_ports + j]);
          msg_wire_frame_free (frame);
        }
      else
        {
          g_assert_false (ok);
          g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_PROTOCOL);
          g_test_message ("%s", error->message);
          g_clear_error (&error);
        }
      msg_wire_decoder_free (decoder);
      for (guint j = 0; j < cases[i].n_sent; j++)
        g_assert_cmpint (fcntl (sent[j], F_GETFD), ==, -1);
    }
}

static void
test_wire_decoder_empty (void)
{
  MsgWireDecoder *decoder = test_decoder_new ();
  g_autoptr(GByteArray) stolen = g_byte_array_new ();
  g_autoptr(GArray) stolen_fds = g_array_new (FALSE, FALSE, sizeof (int));
  MsgWireFrame *frame = NULL;
  GError *error = NULL;

  g_test_summary ("A decoder given nothing yet, not even a buffer, can be pushed "
                  "nothing, asked for a frame and stolen from (no arithmetic on a NULL "
                  "buffer: clang's UBSan checks that)");

  msg_wire_decoder_push (decoder, NULL, 0, NULL, 0);
  g_assert_false (msg_wire_decoder_next (decoder, &frame, &error));
  g_assert_no_error (error);
  g_assert_null (frame);
  g_assert_true (msg_wire_decoder_is_empty (decoder));
  msg_wire_decoder_steal (decoder, stolen, stolen_fds);
  g_assert_cmpuint (stolen->len, ==, 0);
  g_assert_cmpuint (stolen_fds->len, ==, 0);
  msg_wire_decoder_free (decoder);
}

/* Writes @value little endian at @p, in @size bytes. */
static void
put_le (guint8  *p,
        guint64  value,
        guint    size)
{
  for (guint i = 0; i < size; i++)
    p[i] = value >> (8 * i);
}

static void
test_wire_decoder_ports_crowded_out (void)
{
  /* Two entries' worth of port table, but the first entry's read prefix
   * takes the room of the second. */
  guint8 frame[MSG_WIRE_HEADER_SIZE + 64] = { 0, };
  MsgWireDecoder *decoder = test_decoder_new ();
  g_autoptr(MsgWireFrame) decoded = NULL;
  g_autoptr(GError) error = NULL;
  int fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);

  g_test_summary ("A frame whose port table holds fewer ports than its header declares "
                  "is refused, not decoded with ports that have no descriptor");

  put_le (frame, MSG_WIRE_MAGIC, 4);
  frame[4] = MSG_WIRE_FRAME_MESSAGE;
  put_le (frame + 6, 2, 2);                          /* n_ports */
  put_le (frame + 8, 1, 4);                          /* n_fds */
  put_le (frame + 16, 64, 4);                        /* ports_len */
  put_le (frame + MSG_WIRE_HEADER_SIZE + 8, 32, 8);  /* in_len */

  g_assert_cmpint (fd, >=, 0);
  msg_wire_decoder_push (decoder, frame, sizeof frame, &fd, 1);
  g_assert_false (msg_wire_decoder_next (decoder, &decoded, &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_PROTOCOL);
  g_assert_null (decoded);
  g_assert_cmpint (fcntl (fd, F_GETFD), ==, -1);
  msg_wire_decoder_free (decoder);
}

static void
test_wire_port_split_out_prefix (void)
{
  MsgWireFrame *frame = msg_wire_frame_new (MSG_WIRE_FRAME_MESSAGE, g_variant_ref_sink (g_variant_new_uint32 (7)), 0);
  MsgWireEncoded encoded;
  g_autoptr(GByteArray) one = g_byte_array_new ();
  g_autoptr(GArray) no_fds = g_array_new (FALSE, FALSE, sizeof (int));
  const struct {
    gsize    skip;         /* bytes of the first frame already written */
    guint    n_frames;
    gsize    out_partial;
    guint    n_out_fds;
    gboolean valid;
    guint    n_segments;
  } cases[] = {
    { 0, 0, 0, 0, TRUE, 0 },
    { 0, 2, 0, 0, TRUE, 2 },
    { 5, 2, 0, 0, FALSE, 0 },   /* starts in the middle of a frame */
    { 5, 2, 0, 0, TRUE, 2 },    /* the same, declared: out_partial set below */
    { 0, 1, 0, 1, FALSE, 0 },   /* a descriptor no frame declares */
    { 0, 1, 1000, 0, FALSE, 0 },  /* a partial frame longer than the prefix */
  };

  g_test_summary ("What a transferred port had not written is cut into the rest of a "
                  "frame and whole frames, with their descriptors, or refused");

  g_assert_true (msg_wire_encode (frame, &encoded, NULL));
  msg_wire_encoded_append (&encoded, one, no_fds);
  msg_wire_encoded_clear (&encoded);
  msg_wire_frame_free (frame);

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      MsgWirePort port = { .fd = -1 };
      g_autoptr(GByteArray) bytes = g_byte_array_new ();
      g_autoptr(GArray) segments = g_array_new (FALSE, FALSE, sizeof (MsgWireSegment));
      g_autoptr(GError) error = NULL;

      for (guint j = 0; j < cases[i].n_frames; j++)
        g_byte_array_append (bytes, one->data + (j == 0 ? cases[i].skip : 0),
                             one->len - (j == 0 ? cases[i].skip : 0));
      port.out_partial = cases[i].out_partial;
      if (i == 3)
        port.out_partial = one->len - cases[i].skip;
      if (bytes->len > 0)
        port.out_prefix = g_bytes_new (bytes->data, bytes->len);
      port.out_fds = g_array_new (FALSE, FALSE, sizeof (int));
      for (guint j = 0; j < cases[i].n_out_fds; j++)
        {
          int fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);

          g_array_append_val (port.out_fds, fd);
        }

      if (cases[i].valid)
        {
          g_assert_true (msg_wire_port_split_out_prefix (&port, segments, &error));
          g_assert_no_error (error);
          g_assert_cmpuint (segments->len, ==, cases[i].n_segments);
          for (guint j = 0; j < segments->len; j++)
            {
              MsgWireSegment *segment = &g_array_index (segments, MsgWireSegment, j);

              g_assert_cmpuint (segment->offset, ==, j == 0 ? 0 : one->len - cases[i].skip);
              g_assert_cmpuint (segment->size, ==, j == 0 ? one->len - cases[i].skip : one->len);
              g_assert_cmpuint (segment->n_fds, ==, 0);
            }
        }
      else
        {
          g_assert_false (msg_wire_port_split_out_prefix (&port, segments, &error));
          g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_PROTOCOL);
        }
      msg_wire_port_clear (&port);
    }
}

static void
test_wire_handshake (void)
{
  MsgWireDecoder *decoder = msg_wire_decoder_new ();
  MsgWireFrame *frame = NULL;
  GError *error = NULL;
  guint8 buffer[3 * MSG_WIRE_MAX_CONTROL_SIZE];
  gsize size = 0;
  guint32 features;

  g_test_summary ("Each end's first frame is a hello whose features the decoder keeps "
                  "(bits it does not know too); control frames decode to their body");

  size += msg_wire_encode_control (MSG_WIRE_FRAME_HELLO, 0x80000003u, 0, buffer);
  size += msg_wire_encode_control (MSG_WIRE_FRAME_ACK, 7, 4096, buffer + size);
  size += msg_wire_encode_control (MSG_WIRE_FRAME_PING, 250, 0, buffer + size);
  g_assert_false (msg_wire_decoder_get_peer_hello (decoder, &features));
  msg_wire_decoder_push (decoder, buffer, size, NULL, 0);

  g_assert_true (msg_wire_decoder_next (decoder, &frame, &error));
  g_assert_no_error (error);
  g_assert_cmpint (frame->kind, ==, MSG_WIRE_FRAME_HELLO);
  g_assert_cmpuint (frame->args[0], ==, 0x80000003u);
  g_clear_pointer (&frame, msg_wire_frame_free);
  g_assert_true (msg_wire_decoder_get_peer_hello (decoder, &features));
  g_assert_cmpuint (features, ==, 0x80000003u);

  g_assert_true (msg_wire_decoder_next (decoder, &frame, &error));
  g_assert_cmpint (frame->kind, ==, MSG_WIRE_FRAME_ACK);
  g_assert_cmpuint (frame->args[0], ==, 7);
  g_assert_cmpuint (frame->args[1], ==, 4096);
  g_clear_pointer (&frame, msg_wire_frame_free);

  g_assert_true (msg_wire_decoder_next (decoder, &frame, &error));
  g_assert_cmpint (frame->kind, ==, MSG_WIRE_FRAME_PING);
  g_assert_cmpuint (frame->args[0], ==, 250);
  g_clear_pointer (&frame, msg_wire_frame_free);
  g_assert_false (msg_wire_decoder_next (decoder, &frame, &error));
  g_assert_no_error (error);
  g_assert_true (msg_wire_decoder_is_empty (decoder));

  /* A second hello is refused. */
  size = msg_wire_encode_control (MSG_WIRE_FRAME_HELLO, 3, 0, buffer);
  msg_wire_decoder_push (decoder, buffer, size, NULL, 0);
  g_assert_false (msg_wire_decoder_next (decoder, &frame, &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_PROTOCOL);
  g_clear_error (&error);
  msg_wire_decoder_free (decoder);

  /* So is anything but a hello first. */
  decoder = msg_wire_decoder_new ();
  size = msg_wire_encode_control (MSG_WIRE_FRAME_PONG, 0, 0, buffer);
  msg_wire_decoder_push (decoder, buffer, size, NULL, 0);
  g_assert_false (msg_wire_decoder_next (decoder, &frame, &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_PROTOCOL);
  g_clear_error (&error);
  msg_wire_decoder_free (decoder);
}

static void
test_wire_port_entry_handshake (void)
{
  MsgWireFrame *frame = msg_wire_frame_new (MSG_WIRE_FRAME_MESSAGE, NULL, 1);
  MsgWireEncoded encoded;
  MsgWireDecoder *decoder = test_decoder_new ();
  MsgWireFrame *decoded = NULL;
  GByteArray *bytes = g_byte_array_new ();
  GArray *fds = g_array_new (FALSE, FALSE, sizeof (int));
  GError *error = NULL;
  int pipe_fds[2];

  g_test_summary ("A port's entry carries where its socket's handshake stands "
                  "(whether this end said hello, the features the peer announced) and "
                  "its flow control (what it posted unacknowledged, its mark)");

  g_assert_no_errno (pipe (pipe_fds));
  close (pipe_fds[1]);
  frame->ports[0].fd = pipe_fds[0];
  frame->ports[0].flags = MSG_WIRE_PORT_HELLO_SENT | MSG_WIRE_PORT_PEER_HELLO;
  frame->ports[0].peer_features = MSG_WIRE_FEATURE_ACK;
  frame->ports[0].unacked_messages = 3;
  frame->ports[0].unacked_bytes = 300;
  frame->ports[0].high_water_mark = 1 << 20;
  g_assert_true (msg_wire_encode (frame, &encoded, &error));
  g_assert_no_error (error);
  msg_wire_encoded_append (&encoded, bytes, fds);
  msg_wire_encoded_clear (&encoded);
  msg_wire_decoder_push (decoder, bytes->data, bytes->len, &g_array_index (fds, int, 0), fds->len);
  g_assert_true (msg_wire_decoder_next (decoder, &decoded, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (decoded->ports[0].flags, ==, MSG_WIRE_PORT_HELLO_SENT | MSG_WIRE_PORT_PEER_HELLO);
  g_assert_cmpuint (decoded->ports[0].peer_features, ==, MSG_WIRE_FEATURE_ACK);
  g_assert_cmpuint (decoded->ports[0].unacked_messages, ==, 3);
  g_assert_cmpuint (decoded->ports[0].unacked_bytes, ==, 300);
  g_assert_cmpuint (decoded->ports[0].high_water_mark, ==, 1 << 20);

  msg_wire_frame_free (decoded);
  msg_wire_frame_free (frame);
  msg_wire_decoder_free (decoder);
  g_byte_array_unref (bytes);
  g_array_unref (fds);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/wire/decoder/pieces", test_wire_decoder_pieces);
  g_test_add_func ("/wire/handshake", test_wire_handshake);
  g_test_add_func ("/wire/port-entry/handshake", test_wire_port_entry_handshake);
  g_test_add_func ("/wire/decoder/steal", test_wire_decoder_steal);
  g_test_add_func ("/wire/decoder/recycled", test_wire_decoder_recycled);
  g_test_add_func ("/wire/decoder/empty", test_wire_decoder_empty);
  g_test_add_func ("/wire/decoder/ports-crowded-out", test_wire_decoder_ports_crowded_out);
  g_test_add_func ("/wire/port/split-out-prefix", test_wire_port_split_out_prefix);
  g_test_add_func ("/wire/memfd/round-trip", test_wire_memfd_round_trip);
  g_test_add_func ("/wire/memfd/refused", test_wire_memfd_refused);
  g_test_add_func ("/wire/memfd/bad-header", test_wire_memfd_bad_header);
  g_test_add_func ("/wire/message-fds/round-trip", test_wire_message_fds_round_trip);
  g_test_add_func ("/wire/message-fds/bad-counts", test_wire_message_fds_bad_counts);

  return g_test_run ();
}
