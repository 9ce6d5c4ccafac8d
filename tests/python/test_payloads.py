# SPDX-License-Identifier: LGPL-2.1-or-later
"""Byte payloads from Python: GLib.Bytes in, GLib.Bytes out."""

import os
import sys

from gi.repository import Gio, GLib, Msg
from msgtest import drain, iterate_until, listen

HERE = os.path.dirname(os.path.abspath(__file__))
MiB = 1024 * 1024


def from_bytes(data):
    """An 'ay' message of data (a Python bytes object)."""
    return GLib.Variant.new_from_bytes(GLib.VariantType.new('ay'), GLib.Bytes.new(data), True)


def test_bytes_in_process():
    ch = Msg.ChannelMain()
    rec = listen(ch.port2)
    payload = bytes(range(256)) * 4096  # 1 MiB
    ch.port1.post(from_bytes(payload))
    iterate_until(lambda: rec.events)
    data = rec.events[0].data
    assert data.get_type_string() == 'ay'
    got = data.get_data_as_bytes()
    assert isinstance(got, GLib.Bytes)
    assert got.get_size() == len(payload)
    assert got.get_data() == payload
    ch.port1.close()
    drain()


def test_bytes_across_processes_in_a_memfd():
    """16 MiB and more cross in a sealed memfd (there and back, through
    child.py's echo) and arrive as the same bytes."""
    launcher = Gio.SubprocessLauncher.new(Gio.SubprocessFlags.NONE)
    port = Msg.PortMain.new_for_launcher(launcher, -1)
    process = launcher.spawnv([sys.executable, os.path.join(HERE, 'child.py'), 'echo'])
    launcher.close()
    exited = []
    process.wait_check_async(None, lambda p, r: exited.append(p.wait_check_finish(r)))

    rec = listen(port)
    payload = os.urandom(16 * MiB + 3)
    port.post(from_bytes(payload))
    iterate_until(lambda: rec.events)
    got = rec.events[0].data.get_data_as_bytes()
    assert got.get_size() == len(payload)
    assert got.get_data() == payload

    port.close()
    iterate_until(lambda: exited)
    assert exited == [True]
