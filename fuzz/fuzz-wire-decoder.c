/* fuzz-wire-decoder.c: libFuzzer target for the wire decoder
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Everything a peer process sends goes through msg_wire_decoder_next(), and
 * the data of a message that came in a descriptor through
 * msg_wire_frame_map_data(). The input is fed in two pieces (split where its
 * first byte says), so that frames cut across reads are exercised too; its
 * last byte says how many descriptors (0-3) come with the first piece:
 * alternately a sealed memfd of 64 bytes and /dev/null, so that frames that
 * carry ports or data in a descriptor decode, and their data is mapped or
 * refused.
 */

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "wire/msg-wire-private.h"

int LLVMFuzzerTestOneInput (const uint8_t *data,
                            size_t         size);

/* A memfd sealed as a sender seals it, holding 64 bytes. */
static int
sealed_memfd (void)
{
  static int fd = -1;

  if (fd < 0)
    {
      guint8 bytes[64];

      for (guint i = 0; i < sizeof bytes; i++)
        bytes[i] = i;
      fd = memfd_create ("fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING);
      g_assert (fd >= 0);
      g_assert (write (fd, bytes, sizeof bytes) == sizeof bytes);
      g_assert (fcntl (fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) == 0);
    }
  return fd;
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

static gboolean
drain (MsgWireDecoder *decoder)
{
  MsgWireFrame *frame = NULL;
  GError *error = NULL;

  while (msg_wire_decoder_next (decoder, &frame, &error))
    {
      if (!msg_wire_frame_map_data (frame, NULL))
        g_assert (frame->data == NULL);
      g_clear_pointer (&frame, msg_wire_frame_free);
    }
  if (error == NULL)
    return TRUE;
  g_error_free (error);
  return FALSE;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  MsgWireDecoder *decoder = msg_wire_decoder_new ();
  gsize split = size > 0 ? (data[0] * size) / 256 : 0;
  guint n_fds = size > 1 ? data[size - 1] % 4 : 0;
  int fds[3];
  int lowest_free;

  sealed_memfd ();
  lowest_free = lowest_free_fd ();
  for (guint i = 0; i < n_fds; i++)
    {
      fds[i] = i % 2 == 0 ? fcntl (sealed_memfd (), F_DUPFD_CLOEXEC, 0)
                          : open ("/dev/null", O_RDONLY | O_CLOEXEC);
      g_assert (fds[i] >= 0);
    }

  /* The decoder takes the descriptors, and closes them on every path. */
  msg_wire_decoder_push (decoder, data, split, fds, n_fds);
  if (drain (decoder))
    {
      msg_wire_decoder_push (decoder, data + split, size - split, NULL, 0);
      drain (decoder);
    }

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
