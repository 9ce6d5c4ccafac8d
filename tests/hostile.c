/* hostile.c: what a peer process sends is untrusted
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Each case writes bytes (and descriptors) that are not valid msgport-glib
 * wire data through the raw end of a socket whose other end is a port, and
 * checks that the port closes cleanly with the right reason, after the
 * valid messages that came first; that every descriptor the process
 * received is closed again; and that another port is not disturbed.
 */

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "msg-test-utils.h"
#include "wire/msg-wire-private.h"

#define count_fds msg_test_count_fds
#define wait_for_fd_count msg_test_wait_for_fd_count

static void
send_raw (int           fd,
          const void   *data,
          gsize         size,
          const int    *fds,
          guint         n_fds)
{
  g_assert_cmpint (msg_test_send_raw (fd, data, size, fds, n_fds), ==, (gssize) size);
}

/* A header with the given fields, little endian. */
static void
header (guint8  *h,
        guint32  magic,
        guint8   kind,
        guint8   flags,
        guint16  n_ports,
        guint32  n_fds,
        guint32  type_len,
        guint32  ports_len,
        guint64  data_len)
{
  memset (h, 0, MSG_WIRE_HEADER_SIZE);
  for (guint i = 0; i < 4; i++)
    {
      h[i] = magic >> (8 * i);
      h[8 + i] = n_fds >> (8 * i);
      h[12 + i] = type_len >> (8 * i);
      h[16 + i] = ports_len >> (8 * i);
    }
  for (guint i = 0; i < 8; i++)
    h[24 + i] = data_len >> (8 * i);
  h[4] = kind;
  h[5] = flags;
  h[6] = n_ports & 0xff;
  h[7] = n_ports >> 8;
}

/* A valid frame for @data (taken), sent with @fds attached. */
static void
send_valid (int        raw,
            GVariant  *data,
            const int *fds,
            guint      n_fds)
{
  MsgWireFrame frame = { .kind = MSG_WIRE_FRAME_MESSAGE, .data = g_variant_ref_sink (data), .data_fd = -1 };
  MsgWireEncoded encoded;
  g_autoptr(GByteArray) bytes = g_byte_array_new ();
  g_autoptr(GArray) unused = g_array_new (FALSE, FALSE, sizeof (int));

  g_assert_true (msg_wire_encode (&frame, &encoded, NULL));
  msg_wire_encoded_append (&encoded, bytes, unused);
  msg_wire_encoded_clear (&encoded);
  g_variant_unref (frame.data);
  send_raw (raw, bytes->data, bytes->len, fds, n_fds);
}

/* A message frame of type @type (@type_len bytes) with @data as its
 * serialized value. */
static void
send_typed (int           raw,
            const char   *type,
            gsize         type_len,
            const void   *data,
            gsize         data_len)
{
  gsize size = MSG_WIRE_HEADER_SIZE + ((type_len + 7) & ~7) + data_len;
  g_autofree guint8 *frame = g_malloc0 (size);

  header (frame, MSG_WIRE_MAGIC, MSG_WIRE_FRAME_MESSAGE, 1, 0, 0, type_len, 0, data_len);
  memcpy (frame + MSG_WIRE_HEADER_SIZE, type, type_len);
  if (data_len > 0)
    memcpy (frame + MSG_WIRE_HEADER_SIZE + ((type_len + 7) & ~7), data, data_len);
  send_raw (raw, frame, size, NULL, 0);
}

/* A frame carrying one port: @port_fd, and an in-prefix of @prefix. */
static void
send_port (int           raw,
           int           port_fd,
           const void   *prefix,
           gsize         prefix_len,
           guint16       n_ports,
           guint32       n_fds,
           gboolean      attach)
{
  gsize ports_len = MSG_WIRE_PORT_ENTRY_SIZE + ((prefix_len + 7) & ~7);
  gsize size = MSG_WIRE_HEADER_SIZE + ports_len;
  g_autofree guint8 *frame = g_malloc0 (size);
  guint8 *entry = frame + MSG_WIRE_HEADER_SIZE;

  header (frame, MSG_WIRE_MAGIC, MSG_WIRE_FRAME_MESSAGE, 0, n_ports, n_fds, 0, ports_len, 0);
  for (guint i = 0; i < 8; i++)
    entry[8 + i] = (guint64) prefix_len >> (8 * i);
  /* flags 2: the peer's hello came (features 0), so that the garbage is
   * decoded as frames */
  entry[32] = MSG_WIRE_PORT_PEER_HELLO;
  if (prefix_len > 0)
    memcpy (entry + MSG_WIRE_PORT_ENTRY_SIZE, prefix, prefix_len);
  send_raw (raw, frame, size, &port_fd, attach ? 1 : 0);
}

typedef struct
{
  const char  *path;
  void       (*send) (int raw);
  gint         code;          /* the close reason */
  guint        n_valid;       /* valid messages sent before the bad data */
} HostileCase;

static void send_bad_magic (int raw);

/* A version-1 frame: refused, by name. */
static void
send_version_1 (int raw)
{
  guint8 h[MSG_WIRE_HEADER_SIZE];

  header (h, MSG_WIRE_MAGIC_V1, MSG_WIRE_FRAME_MESSAGE, 0, 0, 0, 0, 0, 0);
  send_raw (raw, h, sizeof h, NULL, 0);
}

static void
send_second_hello (int raw)
{
  guint8 h[MSG_WIRE_MAX_CONTROL_SIZE];

  send_raw (raw, h, msg_wire_encode_control (MSG_WIRE_FRAME_HELLO, MSG_WIRE_FEATURES_ALL, 0, h),
            NULL, 0);
}

/* An acknowledgement, a ping and a pong with a body of the wrong size. */
static void
send_short_ack (int raw)
{
  guint8 h[MSG_WIRE_HEADER_SIZE + 8] = { 0, };

  header (h, MSG_WIRE_MAGIC, MSG_WIRE_FRAME_ACK, 0, 0, 0, 0, 0, 8);
  send_raw (raw, h, sizeof h, NULL, 0);
}

static void
send_long_pong (int raw)
{
  guint8 h[MSG_WIRE_HEADER_SIZE + 8] = { 0, };

  header (h, MSG_WIRE_MAGIC, MSG_WIRE_FRAME_PONG, 0, 0, 0, 0, 0, 8);
  send_raw (raw, h, sizeof h, NULL, 0);
}

/* A ping that also declares a descriptor. */
static void
send_ping_with_fd (int raw)
{
  guint8 h[MSG_WIRE_HEADER_SIZE + 8] = { 0, };
  int fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);

  header (h, MSG_WIRE_MAGIC, MSG_WIRE_FRAME_PING, 0, 0, 1, 0, 0, 8);
  send_raw (raw, h, sizeof h, &fd, 1);
  close (fd);
}

/* Control frames are fine after messages, acknowledgements of what was
 * never sent included; then a bad frame. */
static void
send_controls_then_bad (int raw)
{
  guint8 h[MSG_WIRE_MAX_CONTROL_SIZE];

  send_raw (raw, h, msg_wire_encode_control (MSG_WIRE_FRAME_ACK, 1000, 1 << 20, h), NULL, 0);
  send_raw (raw, h, msg_wire_encode_control (MSG_WIRE_FRAME_PONG, 0, 0, h), NULL, 0);
  send_raw (raw, h, msg_wire_encode_control (MSG_WIRE_FRAME_PING, 1000, 0, h), NULL, 0);
  send_bad_magic (raw);
}

static void
send_bad_magic (int raw)
{
  guint8 h[MSG_WIRE_HEADER_SIZE];

  header (h, 0xdeadbeef, MSG_WIRE_FRAME_MESSAGE, 0, 0, 0, 0, 0, 0);
  send_raw (raw, h, sizeof h, NULL, 0);
}

static void
send_truncated_then_hang_up (int raw)
{
  guint8 h[MSG_WIRE_HEADER_SIZE];

  header (h, MSG_WIRE_MAGIC, MSG_WIRE_FRAME_MESSAGE, 1, 0, 0, 1, 0, 4);
  send_raw (raw, h, sizeof h, NULL, 0);
  send_raw (raw, "i\0\0\0\0\0\0\0" "\1\0", 10, NULL, 0);
  shutdown (raw, SHUT_RDWR);
}

static void
send_hang_up (int raw)
{
  shutdown (raw, SHUT_RDWR);
}

static void
send_oversized (int raw)
{
  guint8 h[MSG_WIRE_HEADER_SIZE];

  /* Declares more than the limit; nothing else follows. */
  header (h, MSG_WIRE_MAGIC, MSG_WIRE_FRAME_MESSAGE, 1, 0, 0, 2, 0,
          (guint64) MSG_WIRE_MAX_DATA_SIZE + 1);
  send_raw (raw, h, sizeof h, NULL, 0);
}

static void
send_huge_type (int raw)
{
  guint8 h[MSG_WIRE_HEADER_SIZE];

  header (h, MSG_WIRE_MAGIC, MSG_WIRE_FRAME_MESSAGE, 1, 0, 0, G_MAXUINT32, 0, 0);
  send_raw (raw, h, sizeof h, NULL, 0);
}

static void
send_bad_type (int raw)
{
  send_typed (raw, "(i", 2, "\1\0\0\0", 4);
}

static void
send_indefinite_type (int raw)
{
  send_typed (raw, "a*", 2, "", 0);
}

static void
send_not_normal (int raw)
{
  /* A string without its terminating NUL. */
  send_typed (raw, "s", 1, "abc", 3);
}

static void
send_bad_array_size (int raw)
{
  send_typed (raw, "ai", 2, "\1\0\0\0\2", 5);
}

static void
send_nul_in_type (int raw)
{
  send_typed (raw, "i\0", 2, "\1\0\0\0", 4);
}

static void
send_missing_fds (int raw)
{
  send_port (raw, -1, NULL, 0, 1, 1, FALSE);
}

static void
send_stray_fd (int raw)
{
  int fds[2];

  g_assert_cmpint (pipe (fds), ==, 0);
  send_valid (raw, g_variant_new_uint32 (1), fds, 2);
  close (fds[0]);
  close (fds[1]);
}

static void
send_surplus_fds (int raw)
{
  int sockets[2], extra[2];
  guint8 frame[MSG_WIRE_HEADER_SIZE + 32] = { 0, };
  int fds[3];

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM, 0, sockets), ==, 0);
  g_assert_cmpint (pipe (extra), ==, 0);
  header (frame, MSG_WIRE_MAGIC, MSG_WIRE_FRAME_MESSAGE, 0, 1, 1, 0, 32, 0);
  fds[0] = sockets[0];
  fds[1] = extra[0];
  fds[2] = extra[1];
  send_raw (raw, frame, sizeof frame, fds, 3);
  close (sockets[0]);
  close (sockets[1]);
  close (extra[0]);
  close (extra[1]);
}

static void
send_pipe_as_port (int raw)
{
  int fds[2];

  g_assert_cmpint (pipe (fds), ==, 0);
  send_port (raw, fds[0], NULL, 0, 1, 1, TRUE);
  close (fds[0]);
  close (fds[1]);
}

static void
send_close_with_data (int raw)
{
  guint8 h[MSG_WIRE_HEADER_SIZE];

  header (h, MSG_WIRE_MAGIC, MSG_WIRE_FRAME_CLOSE, 0, 0, 0, 0, 0, 8);
  send_raw (raw, h, sizeof h, NULL, 0);
}

/* A close frame whose reason (the u32 at offset 20) is none we know. */
static void
send_unknown_close_reason (int raw)
{
  guint8 h[MSG_WIRE_HEADER_SIZE];

  header (h, MSG_WIRE_MAGIC, MSG_WIRE_FRAME_CLOSE, 0, 0, 0, 0, 0, 0);
  h[20] = MSG_WIRE_CLOSE_TOO_LARGE + 1;
  send_raw (raw, h, sizeof h, NULL, 0);
}

static void
send_unknown_kind (int raw)
{
  guint8 h[MSG_WIRE_HEADER_SIZE];

  header (h, MSG_WIRE_MAGIC, 9, 0, 0, 0, 0, 0, 0);
  send_raw (raw, h, sizeof h, NULL, 0);
}

static void
send_reserved_bits (int raw)
{
  guint8 h[MSG_WIRE_HEADER_SIZE];

  header (h, MSG_WIRE_MAGIC, MSG_WIRE_FRAME_MESSAGE, 0x80, 0, 0, 0, 0, 0);
  send_raw (raw, h, sizeof h, NULL, 0);
}

/* A message of type "u" whose header counts @n_message_fds descriptors of
 * its own (the u32 at offset 20) in @n_fds, sent with @n_fds descriptors
 * (/dev/null), which this process closes once they are sent. */
static void
send_message_fds (int     raw,
                  guint32 n_message_fds,
                  guint32 n_fds)
{
  guint8 frame[MSG_WIRE_HEADER_SIZE + 8 + 8] = { 0, };
  int fds[4];

  g_assert_cmpuint (n_fds, <=, G_N_ELEMENTS (fds));
  header (frame, MSG_WIRE_MAGIC, MSG_WIRE_FRAME_MESSAGE, MSG_WIRE_FLAG_DATA, 0, n_fds, 1, 0, 4);
  for (guint i = 0; i < 4; i++)
    frame[20 + i] = n_message_fds >> (8 * i);
  frame[MSG_WIRE_HEADER_SIZE] = 'u';
  for (guint i = 0; i < n_fds; i++)
    fds[i] = open ("/dev/null", O_RDONLY | O_CLOEXEC);
  send_raw (raw, frame, MSG_WIRE_HEADER_SIZE + 8 + 4, fds, n_fds);
  for (guint i = 0; i < n_fds; i++)
    close (fds[i]);
}

/* More descriptors of its own than the frame has. */
static void
send_message_fds_beyond_frame (int raw)
{
  send_message_fds (raw, 3, 2);
}

/* Fewer than the frame has, and no port or memfd to take the rest. */
static void
send_message_fds_left_over (int raw)
{
  send_message_fds (raw, 1, 3);
}

static void send_valid_and_close (int raw);

/* A valid frame for @data (taken) with @n_fds descriptors of its own
 * (/dev/null), whatever its handles say. */
static void
send_with_message_fds (int       raw,
                       GVariant *data,
                       guint     n_fds)
{
  MsgWireFrame frame = { .kind = MSG_WIRE_FRAME_MESSAGE, .data = g_variant_ref_sink (data), .data_fd = -1 };
  MsgWireEncoded encoded;
  g_autoptr(GByteArray) bytes = g_byte_array_new ();
  g_autoptr(GArray) fds = g_array_new (FALSE, FALSE, sizeof (int));

  frame.message_fds = g_array_new (FALSE, FALSE, sizeof (int));
  for (guint i = 0; i < n_fds; i++)
    {
      int fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);

      g_assert_cmpint (fd, >=, 0);
      g_array_append_val (frame.message_fds, fd);
    }
  g_assert_true (msg_wire_encode (&frame, &encoded, NULL));
  msg_wire_encoded_append (&encoded, bytes, fds);
  msg_wire_encoded_clear (&encoded);
  g_variant_unref (frame.data);
  g_array_unref (frame.message_fds);
  send_raw (raw, bytes->data, bytes->len, (const int *) (void *) fds->data, fds->len);
  msg_wire_close_fds (fds);
}

/* Handles that do not index the message's descriptors: the message is
 * refused where the port checks it, and its descriptors are closed. */
static void
send_handle_out_of_range (int raw)
{
  send_with_message_fds (raw, g_variant_new_handle (2), 2);
}

static void
send_handle_negative (int raw)
{
  /* An array of fixed-size values: no normal-form walk, the handles are
   * checked all the same. */
  const gint32 handles[] = { 0, -2 };

  send_with_message_fds (raw, g_variant_new_fixed_array (G_VARIANT_TYPE_HANDLE, handles, 2,
                                                         sizeof (gint32)), 1);
}

static void
send_handle_in_variant_then_more (int raw)
{
  send_with_message_fds (raw, g_variant_new ("(hv)", 0, g_variant_new_handle (1)), 1);
  send_valid_and_close (raw);
}

static void
send_port_table_mismatch (int raw)
{
  guint8 h[MSG_WIRE_HEADER_SIZE];

  header (h, MSG_WIRE_MAGIC, MSG_WIRE_FRAME_MESSAGE, 0, 1, 1, 0, 0, 0);
  send_raw (raw, h, sizeof h, NULL, 0);
}

static void
send_prefix_overflow (int raw)
{
  int sockets[2];
  guint8 frame[MSG_WIRE_HEADER_SIZE + 32] = { 0, };

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM, 0, sockets), ==, 0);
  header (frame, MSG_WIRE_MAGIC, MSG_WIRE_FRAME_MESSAGE, 0, 1, 1, 0, 32, 0);
  frame[MSG_WIRE_HEADER_SIZE + 8 + 7] = 0xff;  /* in_len: 2^63 and more */
  send_raw (raw, frame, sizeof frame, &sockets[0], 1);
  close (sockets[0]);
  close (sockets[1]);
}

static void
send_fd_flood (int raw)
{
  guint8 h[MSG_WIRE_HEADER_SIZE];
  int fds[2];
  int flood[8];

  /* An incomplete frame that declares no descriptors, then a byte at a
   * time with descriptors attached: refused at once, not hoarded. */
  header (h, MSG_WIRE_MAGIC, MSG_WIRE_FRAME_MESSAGE, 1, 0, 0, 2, 0, 1024 * 1024);
  send_raw (raw, h, sizeof h, NULL, 0);
  send_raw (raw, "ay\0\0\0\0\0\0", 8, NULL, 0);
  g_assert_cmpint (pipe (fds), ==, 0);
  for (guint i = 0; i < G_N_ELEMENTS (flood); i++)
    flood[i] = fds[i % 2];
  /* The port may hang up after the first batch already. */
  for (guint i = 0; i < 4; i++)
    msg_test_send_raw (raw, "x", 1, flood, G_N_ELEMENTS (flood));
  close (fds[0]);
  close (fds[1]);
}

static void
send_garbage (int raw)
{
  guint8 garbage[4096];

  for (guint i = 0; i < sizeof garbage; i++)
    garbage[i] = g_test_rand_int_range (0, 256);
  send_raw (raw, garbage, sizeof garbage, NULL, 0);
}

/* A message of @type whose data is declared to be @size bytes in a
 * descriptor, @data_fd, which is sent with it and closed. */
static void
send_in_descriptor (int         raw,
                    const char *type,
                    int         data_fd,
                    guint64     size)
{
  guint8 frame[MSG_WIRE_HEADER_SIZE + 8 + 8] = { 0, };

  g_assert_cmpuint (strlen (type), <=, 8);
  header (frame, MSG_WIRE_MAGIC, MSG_WIRE_FRAME_MESSAGE, MSG_WIRE_FLAG_DATA | MSG_WIRE_FLAG_DATA_FD,
          0, 1, strlen (type), 0, 8);
  memcpy (frame + MSG_WIRE_HEADER_SIZE, type, strlen (type));
  for (guint i = 0; i < 8; i++)
    frame[MSG_WIRE_HEADER_SIZE + 8 + i] = size >> (8 * i);
  send_raw (raw, frame, sizeof frame, &data_fd, 1);
  close (data_fd);
}

static int
new_memfd (const char *data,
           guint       seals)
{
  int fd = memfd_create ("hostile", MFD_CLOEXEC | MFD_ALLOW_SEALING);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (write (fd, data, strlen (data)), ==, (gssize) strlen (data));
  if (seals != 0)
    g_assert_no_errno (fcntl (fd, F_ADD_SEALS, seals));
  return fd;
}

static void
send_unsealed_memfd (int raw)
{
  /* The sender could still change it under the receiver's mapping. */
  send_in_descriptor (raw, "ay", new_memfd ("abcdefgh", F_SEAL_SHRINK | F_SEAL_GROW), 8);
}

static void
send_pipe_as_data (int raw)
{
  int fds[2];

  g_assert_cmpint (pipe (fds), ==, 0);
  close (fds[1]);
  send_in_descriptor (raw, "ay", fds[0], 8);
}

static void
send_memfd_too_small (int raw)
{
  /* Mapping past its end would be a SIGBUS. */
  send_in_descriptor (raw, "ay", new_memfd ("abcdefgh", F_SEAL_WRITE | F_SEAL_SHRINK), 1 << 20);
}

static void
send_memfd_not_normal (int raw)
{
  send_in_descriptor (raw, "s", new_memfd ("abc", F_SEAL_WRITE | F_SEAL_SHRINK), 3);
}

/* The port's own context checks a message before it emits it, after the
 * I/O thread read on: valid messages and the peer's close frame that came
 * after a refused message are read, and must neither be emitted nor
 * change why the port closed. */
static void
send_valid_and_close (int raw)
{
  guint8 h[MSG_WIRE_HEADER_SIZE];

  send_valid (raw, g_variant_new_uint32 (1000), NULL, 0);
  send_valid (raw, g_variant_new_string ("after"), NULL, 0);
  header (h, MSG_WIRE_MAGIC, MSG_WIRE_FRAME_CLOSE, 0, 0, 0, 0, 0, 0);
  send_raw (raw, h, sizeof h, NULL, 0);
}

static void
send_not_normal_then_more (int raw)
{
  send_not_normal (raw);
  send_valid_and_close (raw);
}

static void
send_memfd_not_normal_then_more (int raw)
{
  send_memfd_not_normal (raw);
  send_valid_and_close (raw);
}

static void
send_unsealed_memfd_then_more (int raw)
{
  send_unsealed_memfd (raw);
  send_valid_and_close (raw);
}

static const HostileCase cases[] = {
  { "/hostile/bad-magic", send_bad_magic, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/version-1", send_version_1, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/second-hello", send_second_hello, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/control/short-ack", send_short_ack, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/control/long-pong", send_long_pong, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/control/ping-with-fd", send_ping_with_fd, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/control/then-bad", send_controls_then_bad, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/truncated-then-hang-up", send_truncated_then_hang_up, MSG_PORT_ERROR_PEER_GONE, 3 },
  { "/hostile/hang-up", send_hang_up, MSG_PORT_ERROR_PEER_GONE, 3 },
  { "/hostile/oversized", send_oversized, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/huge-type", send_huge_type, MSG_PORT_ERROR_PROTOCOL, 0 },
  { "/hostile/bad-type", send_bad_type, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/indefinite-type", send_indefinite_type, MSG_PORT_ERROR_PROTOCOL, 1 },
  { "/hostile/nul-in-type", send_nul_in_type, MSG_PORT_ERROR_PROTOCOL, 1 },
  { "/hostile/not-normal-form", send_not_normal, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/bad-array-size", send_bad_array_size, MSG_PORT_ERROR_PROTOCOL, 2 },
  { "/hostile/missing-fds", send_missing_fds, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/stray-fds", send_stray_fd, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/surplus-fds", send_surplus_fds, MSG_PORT_ERROR_PROTOCOL, 1 },
  { "/hostile/pipe-as-port", send_pipe_as_port, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/close-with-data", send_close_with_data, MSG_PORT_ERROR_PROTOCOL, 0 },
  { "/hostile/unknown-close-reason", send_unknown_close_reason, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/unknown-kind", send_unknown_kind, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/reserved-bits", send_reserved_bits, MSG_PORT_ERROR_PROTOCOL, 1 },
  { "/hostile/port-table-mismatch", send_port_table_mismatch, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/message-fds/beyond-frame", send_message_fds_beyond_frame, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/message-fds/left-over", send_message_fds_left_over, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/message-fds/handle-out-of-range", send_handle_out_of_range, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/message-fds/handle-negative", send_handle_negative, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/message-fds/handle-in-variant-then-more", send_handle_in_variant_then_more,
    MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/prefix-overflow", send_prefix_overflow, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/fd-flood", send_fd_flood, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/garbage", send_garbage, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/memfd/unsealed", send_unsealed_memfd, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/memfd/pipe", send_pipe_as_data, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/memfd/too-small", send_memfd_too_small, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/memfd/not-normal-form", send_memfd_not_normal, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/not-normal-form-then-more", send_not_normal_then_more, MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/memfd/not-normal-form-then-more", send_memfd_not_normal_then_more,
    MSG_PORT_ERROR_PROTOCOL, 3 },
  { "/hostile/memfd/unsealed-then-more", send_unsealed_memfd_then_more, MSG_PORT_ERROR_PROTOCOL, 3 },
};

static void
test_hostile (gconstpointer data)
{
  const HostileCase *hostile = data;
  guint baseline = count_fds ();
  MsgPortMain *port, *healthy_a, *healthy_b;
  g_autoptr(MsgRecorder) rec = NULL;
  g_autoptr(MsgRecorder) rec_healthy = NULL;
  g_autoptr(GError) reason = NULL;
  int raw, raw_healthy;

  msg_test_socket_port (&raw, &port);
  rec = msg_recorder_new (port);
  msg_port_main_start (port);

  /* Another connection, which must not notice anything. */
  msg_test_socket_port_for_port (&raw_healthy, &healthy_a);
  healthy_b = msg_port_main_new_for_fd (raw_healthy, NULL);
  rec_healthy = msg_recorder_new (healthy_b);
  msg_port_main_start (healthy_b);

  for (guint i = 0; i < hostile->n_valid; i++)
    send_valid (raw, g_variant_new_uint32 (i), NULL, 0);
  hostile->send (raw);

  msg_test_wait_until (NULL, rec->n_close == 1);
  g_assert_cmpuint (rec->n_messages_at_close, ==, hostile->n_valid);
  for (guint i = 0; i < hostile->n_valid; i++)
    g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec, i)), ==, i);
  reason = msg_port_main_get_close_reason (port);
  g_assert_nonnull (reason);
  g_test_message ("close reason: %s", reason->message);
  g_assert_error (reason, MSG_PORT_ERROR, hostile->code);
  msg_test_drain (NULL);
  g_assert_cmpuint (rec->n_close, ==, 1);
  g_assert_cmpuint (rec->events->len, ==, hostile->n_valid);

  msg_port_main_post (healthy_a, g_variant_new_string ("still here"), NULL);
  msg_test_wait_until (NULL, rec_healthy->events->len == 1);
  g_assert_cmpuint (rec_healthy->n_close, ==, 0);

  close (raw);
  g_clear_pointer (&rec, msg_recorder_free);
  g_object_unref (port);
  msg_port_main_close (healthy_a);
  msg_test_wait_until (NULL, rec_healthy->n_close == 1);
  g_clear_pointer (&rec_healthy, msg_recorder_free);
  g_object_unref (healthy_a);
  g_object_unref (healthy_b);

  wait_for_fd_count (baseline);
}

static void
test_hostile_port_prefix (void)
{
  guint baseline = count_fds ();
  MsgPortMain *port, *received;
  g_autoptr(MsgRecorder) rec = NULL;
  g_autoptr(MsgRecorder) rec_received = NULL;
  g_autoptr(GError) reason = NULL;
  int raw, sockets[2];

  g_test_summary ("A port that arrives with garbage in what it carries closes with "
                  "PROTOCOL; the port that carried it is not disturbed");

  msg_test_socket_port (&raw, &port);
  rec = msg_recorder_new (port);
  msg_port_main_start (port);

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM, 0, sockets), ==, 0);
  send_port (raw, sockets[0], "garbage! garbage! garbage! garbage! garbage!", 40, 1, 1, TRUE);
  close (sockets[0]);

  msg_test_wait_until (NULL, rec->events->len == 1);
  received = msg_message_event_get_port (g_ptr_array_index (rec->events, 0), 0);
  rec_received = msg_recorder_new (received);
  msg_port_main_start (received);
  msg_test_wait_until (NULL, rec_received->n_close == 1);
  reason = msg_port_main_get_close_reason (received);
  g_assert_error (reason, MSG_PORT_ERROR, MSG_PORT_ERROR_PROTOCOL);

  send_valid (raw, g_variant_new_string ("carrier still works"), NULL, 0);
  msg_test_wait_until (NULL, rec->events->len == 2);
  g_assert_cmpuint (rec->n_close, ==, 0);

  close (sockets[1]);
  close (raw);
  msg_test_wait_until (NULL, rec->n_close == 1);
  g_clear_pointer (&rec_received, msg_recorder_free);
  g_clear_pointer (&rec, msg_recorder_free);
  g_object_unref (port);
  wait_for_fd_count (baseline);
}

int
main (int    argc,
      char **argv)
{
  MsgPortMain *warm_up;
  guint before;
  int raw;

  g_test_init (&argc, &argv, NULL);
  /* Before any test counts descriptors (test_hostile()). */
  msg_test_start_symbolizer ();

  /* Create the default main context and start the library's I/O thread
   * (its context has one eventfd) before the tests count descriptors. */
  g_main_context_iteration (g_main_context_default (), FALSE);
  before = count_fds ();
  msg_test_socket_port (&raw, &warm_up);
  close (raw);
  g_object_unref (warm_up);
  wait_for_fd_count (before + 1);

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    g_test_add_data_func (cases[i].path, &cases[i], test_hostile);
  g_test_add_func ("/hostile/port-with-bad-prefix", test_hostile_port_prefix);

  return g_test_run ();
}
