# SPDX-License-Identifier: LGPL-2.1-or-later
"""Awaiting messages from Python: receive_async() with a callback, the end
of a channel, cancellation, receive() in a worker thread, flush_async().

PyGObject 3.42 (Debian 12) has no asyncio integration (gi.events came in
3.50), so the Python pattern is the GIO callback one: each callback asks
for the next message."""

import threading

from gi.repository import Gio, GLib, Msg
from msgtest import iterate_until


def receive_all(port):
    """Receives every message of port until its channel ends; returns the
    values and the error that ended the loop."""
    values, end = [], []

    def on_message(port, result):
        try:
            event = port.receive_finish(result)
        except GLib.Error as e:
            end.append(e)
            return
        values.append(event.get_data().unpack())
        port.receive_async(None, on_message)

    port.receive_async(None, on_message)
    iterate_until(lambda: end)
    return values, end[0]


def test_callback_loop_receives_in_order_then_the_close_reason():
    ch = Msg.ChannelMain()
    for i in range(10):
        ch.port1.post(GLib.Variant('u', i))
    ch.port1.close()
    values, end = receive_all(ch.port2)
    assert values == list(range(10))
    assert end.matches(Msg.port_error_quark(), Msg.PortError.PEER_CLOSED)
    assert not ch.port2.is_started()


def test_pending_receives_are_served_in_order():
    ch = Msg.ChannelMain()
    got = []
    for _ in range(3):
        ch.port2.receive_async(None, lambda port, result: got.append(port.receive_finish(result)))
    ch.port1.post(GLib.Variant('s', 'a'))
    ch.port1.post(GLib.Variant('s', 'b'))
    ch.port1.post(GLib.Variant('s', 'c'))
    iterate_until(lambda: len(got) == 3)
    assert [event.get_data().unpack() for event in got] == ['a', 'b', 'c']


def test_cancelled_receive_takes_no_message():
    ch = Msg.ChannelMain()
    cancellable = Gio.Cancellable()
    errors = []

    def on_cancelled(port, result):
        try:
            port.receive_finish(result)
        except GLib.Error as e:
            errors.append(e)

    ch.port2.receive_async(cancellable, on_cancelled)
    cancellable.cancel()
    iterate_until(lambda: errors)
    assert errors[0].matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED)
    ch.port1.post(GLib.Variant('s', 'kept'))
    assert ch.port2.receive(-1, None).get_data().unpack() == 'kept'


def test_receive_in_a_worker_thread_with_a_timeout():
    ch = Msg.ChannelMain()
    got, errors = [], []

    def worker():
        while True:
            try:
                got.append(ch.port2.receive(10000, None).get_data().unpack())
            except GLib.Error as e:
                errors.append(e)
                return

    thread = threading.Thread(target=worker)
    thread.start()
    for i in range(100):
        ch.port1.post(GLib.Variant('u', i))
    ch.port1.close()
    thread.join()
    assert got == list(range(100))
    assert errors[0].matches(Msg.port_error_quark(), Msg.PortError.PEER_CLOSED)


def test_receive_times_out():
    ch = Msg.ChannelMain()
    try:
        ch.port2.receive(0, None)
    except GLib.Error as e:
        assert e.matches(Gio.io_error_quark(), Gio.IOErrorEnum.TIMED_OUT)
    else:
        raise AssertionError('receive(0) returned with nothing queued')


def test_flush_async_and_priority():
    ch = Msg.ChannelMain()
    done = []
    ch.port1.post(GLib.Variant('s', 'x'))
    ch.port1.flush_async(None, lambda port, result: done.append(port.flush_finish(result)))
    iterate_until(lambda: done)
    assert done == [True]
    assert ch.port2.props.priority == GLib.PRIORITY_DEFAULT
    ch.port2.props.priority = GLib.PRIORITY_LOW
    assert ch.port2.get_priority() == GLib.PRIORITY_LOW
