/* fuzz-wire-import.c: libFuzzer target for what a decoded frame carries
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A frame that a peer sends may carry ports, and each port the past of its
 * connection: bytes and descriptors its previous owner had read but not
 * decoded (handed to the new owner's decoder), and bytes and descriptors
 * it had not written (cut into frames, each sent with its own
 * descriptors), and its data may come in a memfd. The transport imports
 * such a port through msg_wire_port_push_in_prefix() and
 * msg_wire_port_split_out_prefix(), which need no socket; this target
 * drives them with every frame decoded from the input, the frames in a
 * port's read prefix too, to a few levels deep.
 *
 * The input: its first byte says how many descriptors (0-15) come with
 * the rest of it, and of which kinds, cycling through a sealed memfd of
 * 64 bytes, /dev/null and an unsealed memfd, so that port tables, prefixes
 * and data descriptors all find descriptors to take. The rest is fed to a
 * decoder in one piece.
 */

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "msg-port-error.h"
#include "wire/msg-wire-private.h"

int LLVMFuzzerTestOneInput (const uint8_t *data,
                            size_t         size);

#define MAX_DEPTH 3

/* Two memfds of 64 bytes: [0] unsealed, [1] sealed as a sender seals it.
 * Made on the first input; each input passes duplicates to the decoder. */
static int memfds[2] = { -1, -1 };
#define ALL_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)

static void
make_memfds (void)
{
  for (guint sealed = 0; sealed < 2; sealed++)
    {
      guint8 bytes[64];
      int fd;

      /* A descriptor closed twice may close one of these in between. */
      if (memfds[sealed] >= 0)
        {
          g_assert (fcntl (memfds[sealed], F_GET_SEALS) == (sealed ? ALL_SEALS : 0));
          continue;
        }
      for (guint i = 0; i < sizeof bytes; i++)
        bytes[i] = i;
      fd = memfd_create ("fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING);
      g_assert (fd >= 0);
      g_assert (write (fd, bytes, sizeof bytes) == sizeof bytes);
      if (sealed)
        g_assert (fcntl (fd, F_ADD_SEALS, ALL_SEALS) == 0);
      memfds[sealed] = fd;
    }
}

/* The lowest free descriptor: if an input leaks one, it is higher after
 * the input than before. (Compared within an input: libFuzzer's leak
 * checks open descriptors of their own between inputs.) */
static int
lowest_free_fd (void)
{
  int fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);

  g_assert (fd >= 0);
  close (fd);
  return fd;
}

static void drain (MsgWireDecoder *decoder,
                   guint           depth);

/* What the transport does with a port that arrived, short of the socket. */
static void
import_port (MsgWirePort *port,
             guint        depth)
{
  g_autoptr(GArray) segments = g_array_new (FALSE, FALSE, sizeof (MsgWireSegment));
  GError *error = NULL;
  gsize out_size = port->out_prefix != NULL ? g_bytes_get_size (port->out_prefix) : 0;
  guint n_out_fds = port->out_fds != NULL ? port->out_fds->len : 0;

  g_assert (port->fd >= 0);

  if (msg_wire_port_split_out_prefix (port, segments, &error))
    {
      gsize offset = 0;
      guint fd_index = 0;

      /* The segments cover the prefix and its descriptors exactly, in
       * order. */
      for (guint i = 0; i < segments->len; i++)
        {
          MsgWireSegment *segment = &g_array_index (segments, MsgWireSegment, i);

          g_assert (segment->offset == offset);
          g_assert (segment->size > 0);
          g_assert (segment->first_fd == fd_index);
          offset += segment->size;
          fd_index += segment->n_fds;
        }
      g_assert (offset == out_size);
      g_assert (fd_index == n_out_fds);
    }
  else
    {
      g_assert (error != NULL && error->domain == MSG_PORT_ERROR &&
                error->code == MSG_PORT_ERROR_PROTOCOL);
      g_clear_error (&error);
    }

  if (depth < MAX_DEPTH)
    {
      MsgWireDecoder *decoder = msg_wire_decoder_new ();

      /* As connection_import() does. */
      if (port->flags & MSG_WIRE_PORT_PEER_HELLO)
        msg_wire_decoder_set_peer_hello (decoder, port->peer_features);
      msg_wire_port_push_in_prefix (port, decoder);
      g_assert (port->in_fds == NULL || port->in_fds->len == 0);
      drain (decoder, depth + 1);
      msg_wire_decoder_free (decoder);
    }
}

static void
drain (MsgWireDecoder *decoder,
       guint           depth)
{
  MsgWireFrame *frame = NULL;
  GError *error = NULL;

  while (msg_wire_decoder_next (decoder, &frame, &error))
    {
      if (msg_wire_frame_map_data (frame, &error))
        g_assert (frame->data_fd < 0 && frame->data_type == NULL);
      else
        {
          g_assert (frame->data == NULL);
          g_clear_error (&error);
        }
      for (guint i = 0; i < frame->n_ports; i++)
        import_port (&frame->ports[i], depth);
      g_clear_pointer (&frame, msg_wire_frame_free);
    }
  g_clear_error (&error);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  MsgWireDecoder *decoder;
  guint n_fds;
  int fds[15];
  int lowest_free;

  make_memfds ();
  if (size < 1)
    return 0;
  lowest_free = lowest_free_fd ();
  n_fds = data[0] % 16;
  for (guint i = 0; i < n_fds; i++)
    {
      switch (i % 3)
        {
        case 0:
          fds[i] = fcntl (memfds[1], F_DUPFD_CLOEXEC, 0);
          break;
        case 1:
          fds[i] = open ("/dev/null", O_RDONLY | O_CLOEXEC);
          break;
        default:
          fds[i] = fcntl (memfds[0], F_DUPFD_CLOEXEC, 0);
          break;
        }
      g_assert (fds[i] >= 0);
    }

  /* The decoder takes the descriptors, and closes them on every path. */
  decoder = msg_wire_decoder_new ();
  /* The carrying socket's handshake is behind it. */
  msg_wire_decoder_set_peer_hello (decoder, MSG_WIRE_FEATURES_ALL);
  msg_wire_decoder_push (decoder, data + 1, size - 1, fds, n_fds);
  drain (decoder, 0);
  msg_wire_decoder_free (decoder);
  if (lowest_free_fd () > lowest_free)
    {
      /* abort(), which libFuzzer reports with the input; G_BREAKPOINT()
       * would not be */
      g_printerr ("a descriptor leaked\n");
      abort ();
    }
  return 0;
}
