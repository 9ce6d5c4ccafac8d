# SPDX-License-Identifier: LGPL-2.1-or-later
"""Smoke test: Msg-1.0.typelib loads from PyGObject and carries a message."""

import gi

gi.require_version('Msg', '1.0')
from gi.repository import GLib, Msg  # noqa: E402


def iterate_until(cond, timeout_s=30):
    ctx = GLib.MainContext.default()
    timed_out = []
    source = GLib.timeout_source_new_seconds(timeout_s)
    source.set_callback(lambda *a: timed_out.append(True) or False)
    source.attach(ctx)
    try:
        while not cond() and not timed_out:
            ctx.iteration(True)
    finally:
        source.destroy()
    assert not timed_out, 'timed out'


def test_one_message():
    ch = Msg.ChannelMain()
    got = []
    ch.props.port2.connect('message', lambda port, event: got.append(event.props.data))
    ch.props.port2.start()
    assert ch.props.port1.post(GLib.Variant('s', 'hi'))
    iterate_until(lambda: got)
    assert got[0].unpack() == 'hi'
    ch.props.port1.close()
