#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Writes the seed corpora of fuzz-wire-decoder and fuzz-wire-import: valid
frames (see docs/wire-format.md) and a few near misses. Standard library
only.

    fuzz/make-corpus.py fuzz/corpus
"""

import os
import struct
import sys

MAGIC = 0x3247534D  # "MSG2"
MAGIC_V1 = 0x3147534D


def pad8(b):
    return b + b'\0' * (-len(b) % 8)


def frame(kind=1, type_=b'', data=b'', ports=b'', n_ports=0, n_fds=0, flags=None):
    if flags is None:
        flags = 1 if type_ else 0
    header = struct.pack('<IBBHIIIIQ', MAGIC, kind, flags, n_ports, n_fds,
                         len(type_), len(ports), 0, len(data))
    return header + pad8(type_) + ports + data


def control(kind, *args):
    """A hello (3), acknowledgement (4), ping (5) or pong (6)."""
    body = b''.join(struct.pack('<Q', a) for a in args)
    return struct.pack('<IBBHIIIIQ', MAGIC, kind, 0, 0, 0, 0, 0, 0, len(body)) + body


HELLO = control(3, 3)


# flags 3: the socket's hello was sent, and the peer's came (features 3).
def port_entry(in_prefix=b'', out_prefix=b'', n_in=0, n_out=0, out_partial=0, flags=3,
               features=3):
    # then what it posted and the peer did not acknowledge, and its mark
    return (struct.pack('<IIQQQIIQQQ', n_in, n_out, len(in_prefix), len(out_prefix),
                        out_partial, flags, features if flags & 2 else 0, 2, 128, 4096)
            + pad8(in_prefix) + pad8(out_prefix))


# fuzz-wire-decoder: each stream starts with the peer's hello.
seeds = {
    'string': frame(type_=b's', data=b'hello\0'),
    'struct': frame(type_=b'(si)', data=b'ab\0\0' + struct.pack('<i', 7)),
    'bytes': frame(type_=b'ay', data=bytes(range(64))),
    'null': frame(),
    'close': frame(kind=2),
    'two-frames': frame(type_=b'u', data=struct.pack('<I', 1)) + frame(kind=2),
    'port-with-prefixes': frame(n_ports=1, n_fds=1,
                                ports=port_entry(frame(type_=b'u', data=b'\1\0\0\0'),
                                                 frame(kind=2))),
    'vardict': frame(type_=b'a{sv}', data=b'k\0' + b'\0' * 6 + b'\1\0\0\0\0u' + b'\x0e\x10'),
    'not-normal': frame(type_=b's', data=b'abc'),
    # The last byte of an input is how many descriptors (0-3) come with its
    # first piece: a sealed memfd of 64 bytes, then /dev/null, alternately.
    'data-in-memfd': frame(type_=b'ay', data=struct.pack('<Q', 64), n_fds=1, flags=3) + b'\1',
    'data-in-memfd-wrong-size': frame(type_=b'ay', data=struct.pack('<Q', 65), n_fds=1, flags=3) + b'\1',
    'data-in-dev-null': frame(n_ports=1, n_fds=2, ports=port_entry(), type_=b'ay',
                              data=struct.pack('<Q', 64), flags=3) + b'\2',
    'bad-magic': b'\0' * 32,
    'truncated': frame(type_=b's', data=b'hello\0')[:40],
    'acknowledgement-ping-pong': control(4, 2, 100) + control(5, 1000) + control(6),
    'hello-twice': HELLO,
    'ack-too-short': control(4, 2),
    'port-hello-not-heard': frame(n_ports=1, n_fds=1, ports=port_entry(HELLO + frame(kind=2),
                                                                       flags=0)),
}
seeds = {name: HELLO + content for name, content in seeds.items()}
seeds['no-hello'] = frame(type_=b's', data=b'hello\0')
seeds['version-1'] = struct.pack('<IBBHIIIIQ', MAGIC_V1, 3, 0, 0, 0, 0, 0, 0, 8) + b'\3' + b'\0' * 7

# fuzz-wire-import: the first byte is how many descriptors (0-15) come with
# the rest, cycling through a sealed memfd of 64 bytes, /dev/null and an
# unsealed memfd; the rest is frames whose ports carry what their previous
# owner had read (in) and not written (out).
message = frame(type_=b'u', data=struct.pack('<I', 1))
in_memfd = frame(type_=b'ay', data=struct.pack('<Q', 64), n_fds=1, flags=3)
nested = frame(n_ports=1, n_fds=2,
               ports=port_entry(in_prefix=message, out_prefix=message, n_in=1))
import_seeds = {
    'port-in-out': b'\1' + frame(n_ports=1, n_fds=1,
                                 ports=port_entry(message + frame(kind=2), message)),
    'port-out-partial': b'\1' + frame(n_ports=1, n_fds=1,
                                      ports=port_entry(out_prefix=message[20:] + message,
                                                       out_partial=len(message) - 20)),
    'port-out-partial-too-long': b'\1' + frame(n_ports=1, n_fds=1,
                                               ports=port_entry(out_prefix=message,
                                                                out_partial=len(message) + 1)),
    'port-out-not-frames': b'\1' + frame(n_ports=1, n_fds=1,
                                         ports=port_entry(out_prefix=message[8:])),
    'port-out-fds': b'\2' + frame(n_ports=1, n_fds=2,
                                  ports=port_entry(out_prefix=in_memfd, n_out=1)),
    'port-out-surplus-fds': b'\3' + frame(n_ports=1, n_fds=3,
                                          ports=port_entry(out_prefix=in_memfd, n_out=2)),
    'port-in-fds': b'\3' + frame(n_ports=1, n_fds=3,
                                 ports=port_entry(in_prefix=in_memfd + message, n_in=2)),
    'port-nested': b'\3' + frame(n_ports=1, n_fds=3,
                                 ports=port_entry(in_prefix=nested, n_in=2)),
    'two-ports-and-memfd': b'\4' + frame(n_ports=2, n_fds=4, type_=b'ay',
                                         data=struct.pack('<Q', 64), flags=3,
                                         ports=port_entry(message) + port_entry(n_out=1)),
    'no-ports': b'\0' + message + frame(kind=2),
}

root = sys.argv[1] if len(sys.argv) > 1 else 'corpus'
for corpus, contents in (('wire-decoder', seeds), ('wire-import', import_seeds)):
    out = os.path.join(root, corpus)
    os.makedirs(out, exist_ok=True)
    for name, content in contents.items():
        with open(os.path.join(out, name), 'wb') as f:
            f.write(content)
