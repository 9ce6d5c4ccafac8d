/* fuzz-wire-decoder.c: libFuzzer target for the wire decoder
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Everything a peer process sends goes through msg_wire_decoder_next(). The
 * input is fed in two pieces (split where its first byte says), so that
 * frames cut across reads are exercised too.
 */

#include <stdint.h>

#include "wire/msg-wire-private.h"

int LLVMFuzzerTestOneInput (const uint8_t *data,
                            size_t         size);

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  MsgWireDecoder *decoder = msg_wire_decoder_new ();
  MsgWireFrame *frame = NULL;
  GError *error = NULL;
  gsize split = size > 0 ? (data[0] * size) / 256 : 0;
  gboolean failed = FALSE;

  msg_wire_decoder_push (decoder, data, split, NULL, 0);
  while (!failed && msg_wire_decoder_next (decoder, &frame, &error))
    g_clear_pointer (&frame, msg_wire_frame_free);
  failed = error != NULL;
  g_clear_error (&error);

  if (!failed)
    {
      msg_wire_decoder_push (decoder, data + split, size - split, NULL, 0);
      while (msg_wire_decoder_next (decoder, &frame, &error))
        g_clear_pointer (&frame, msg_wire_frame_free);
      g_clear_error (&error);
    }

  msg_wire_decoder_free (decoder);
  return 0;
}
