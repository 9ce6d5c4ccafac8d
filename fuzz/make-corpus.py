#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Writes the seed corpus of fuzz-wire-decoder: valid frames (see
docs/wire-format.md) and a few near misses. Standard library only.

    fuzz/make-corpus.py fuzz/corpus/wire-decoder
"""

import os
import struct
import sys

MAGIC = 0x3147534D


def pad8(b):
    return b + b'\0' * (-len(b) % 8)


def frame(kind=1, type_=b'', data=b'', ports=b'', n_ports=0, n_fds=0, flags=None):
    if flags is None:
        flags = 1 if type_ else 0
    header = struct.pack('<IBBHIIIIQ', MAGIC, kind, flags, n_ports, n_fds,
                         len(type_), len(ports), 0, len(data))
    return header + pad8(type_) + ports + data


def port_entry(in_prefix=b'', out_prefix=b'', n_in=0, n_out=0, out_partial=0):
    return (struct.pack('<IIQQQ', n_in, n_out, len(in_prefix), len(out_prefix), out_partial)
            + pad8(in_prefix) + pad8(out_prefix))


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
}

out = sys.argv[1] if len(sys.argv) > 1 else 'corpus/wire-decoder'
os.makedirs(out, exist_ok=True)
for name, content in seeds.items():
    with open(os.path.join(out, name), 'wb') as f:
        f.write(content)
