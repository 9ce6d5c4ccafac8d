# SPDX-License-Identifier: LGPL-2.1-or-later
"""Request and reply (request_async(), event.reply()) from Python."""

import pytest

from gi.repository import Gio, GLib, Msg
from msgtest import drain, iterate_until


def respond(port, event):
    text = event.data.unpack()
    if text == 'ignore':
        return
    event.reply(GLib.Variant('s', text * 2))
    with pytest.raises(GLib.Error) as info:
        event.reply(GLib.Variant('s', 'again'))
    assert info.value.matches(Msg.port_error_quark(), Msg.PortError.CLOSED)


def request(port, message, timeout_ms=-1, cancellable=None):
    """Makes a request; returns a list that gets [reply] or [GLib.Error]."""
    outcome = []

    def done(port, result):
        try:
            outcome.append(port.request_finish(result))
        except GLib.Error as error:
            outcome.append(error)

    port.request_async(message, timeout_ms, cancellable, done)
    return outcome


def test_request_gets_its_reply():
    ch = Msg.ChannelMain()
    ch.port2.connect('message', respond)
    ch.port2.start()
    first = request(ch.port1, GLib.Variant('s', 'ab'))
    second = request(ch.port1, GLib.Variant('s', 'cd'), 10000)
    iterate_until(lambda: first and second)
    assert first[0].unpack() == 'abab'
    assert second[0].unpack() == 'cdcd'
    drain()
    assert len(first) == 1 and len(second) == 1
    ch.port1.close()
    drain()


def test_no_reply_timeout_and_cancel():
    ch = Msg.ChannelMain()
    kept = []
    ch.port2.connect('message', lambda port, event: kept.append(event))
    ch.port2.start()

    timed_out = request(ch.port1, GLib.Variant('s', 'keep'), 10)
    iterate_until(lambda: timed_out)
    assert timed_out[0].matches(Gio.io_error_quark(), Gio.IOErrorEnum.TIMED_OUT)

    cancellable = Gio.Cancellable()
    cancelled = request(ch.port1, GLib.Variant('s', 'keep'), -1, cancellable)
    iterate_until(lambda: len(kept) == 2)
    cancellable.cancel()
    iterate_until(lambda: cancelled)
    assert cancelled[0].matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED)

    # The responder sees both reply ports closed; its late replies fail.
    for event in kept:
        iterate_until(lambda: event.ports[0].is_closed())
        with pytest.raises(GLib.Error) as info:
            event.reply(GLib.Variant('s', 'late'))
        assert info.value.matches(Msg.port_error_quark(), Msg.PortError.CLOSED)

    ch.port1.close()
    drain()


def test_dropped_reply_port_gives_no_reply():
    ch = Msg.ChannelMain()
    seen = []
    ch.port2.connect('message', lambda port, event: seen.append(event.data))
    ch.port2.start()
    dropped = request(ch.port1, None)
    iterate_until(lambda: dropped)
    assert seen == [None]
    assert dropped[0].matches(Msg.port_error_quark(), Msg.PortError.NO_REPLY)
    ch.port1.close()
    drain()


def test_reply_to_a_plain_message_fails():
    ch = Msg.ChannelMain()
    errors = []

    def on_message(port, event):
        try:
            event.reply(GLib.Variant('s', 'x'))
        except GLib.Error as error:
            errors.append(error)

    ch.port2.connect('message', on_message)
    ch.port2.start()
    ch.port1.post(GLib.Variant('s', 'plain'))
    iterate_until(lambda: errors)
    assert errors[0].matches(Msg.port_error_quark(), Msg.PortError.INVALID_ARGUMENT)
    ch.port1.close()
    drain()
