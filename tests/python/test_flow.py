# SPDX-License-Identifier: LGPL-2.1-or-later
"""Flow control and per-port counters, from Python."""

import threading

from gi.repository import Gio, GLib, Msg
from msgtest import drain, iterate_until

KIB = 1024


def message(i, size=KIB):
    return GLib.Variant('ay', bytes([i % 256]) * size)


def wait_writable(port, cancellable=None):
    """Runs wait_writable_async() to its end: (True, None) or (False, error)."""
    result = []

    def done(source, res):
        try:
            result.append((source.wait_writable_finish(res), None))
        except GLib.Error as error:
            result.append((False, error))

    port.wait_writable_async(cancellable, done)
    return result


def test_counters_and_properties():
    ch = Msg.ChannelMain()
    for i in range(3):
        ch.port1.post(message(i))
    assert ch.port1.props.buffered_amount == 3 * KIB
    assert ch.port1.props.buffered_messages == 3
    assert ch.port1.get_messages_sent() == 3
    assert ch.port1.props.bytes_sent == 3 * KIB
    assert ch.port2.props.queued_messages == 3
    assert ch.port1.props.writable
    assert ch.port1.props.high_water_mark == 0

    got = []
    ch.port2.connect('message', lambda port, event: got.append(event.get_data()))
    ch.port2.start()
    iterate_until(lambda: len(got) == 3 and ch.port1.props.buffered_messages == 0)
    assert ch.port1.props.buffered_amount == 0
    assert ch.port2.props.messages_received == 3
    assert ch.port2.props.bytes_received == 3 * KIB
    assert ch.port2.props.max_queued_messages == 3
    ch.port1.close()
    drain()


def test_mark_writable_drain_and_wait():
    ch = Msg.ChannelMain()
    port = ch.port1
    drains, writable = [], []
    port.connect('drain', lambda p: drains.append(p.props.writable))
    port.connect('notify::writable', lambda p, pspec: writable.append(p.props.writable))
    port.start()
    port.props.high_water_mark = 4 * KIB

    for i in range(6):
        assert port.post(message(i))  # never fails above the mark
    assert not port.is_writable()
    iterate_until(lambda: writable == [False])

    waiting = wait_writable(port)
    drain()
    assert waiting == []

    got = []
    ch.port2.connect('message', lambda p, event: got.append(1))
    ch.port2.start()
    iterate_until(lambda: waiting and drains)
    assert waiting == [(True, None)]
    assert drains == [True]
    assert writable == [False, True]
    assert len(got) == 6
    port.close()
    drain()


def test_wait_writable_cancelled_and_closed():
    ch = Msg.ChannelMain()
    port = ch.port1
    port.set_high_water_mark(KIB)
    port.post(message(0))
    assert not port.props.writable

    cancellable = Gio.Cancellable()
    cancelled = wait_writable(port, cancellable)
    cancellable.cancel()
    iterate_until(lambda: cancelled)
    ok, error = cancelled[0]
    assert not ok
    assert error.matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED)

    closed = wait_writable(port)
    ch.port2.close()
    iterate_until(lambda: closed)
    ok, error = closed[0]
    assert not ok
    assert error.matches(Msg.port_error_quark(), Msg.PortError.PEER_CLOSED)
    assert port.props.buffered_amount == 0
    assert port.props.writable


def test_paced_producer_across_threads():
    ch = Msg.ChannelMain()
    port = ch.port1
    mark = 8 * KIB
    port.props.high_water_mark = mark
    # Started, so that the credits for the last messages wake this context
    # (notify::buffered-amount) while it waits for them.
    port.start()
    n = 500
    received = []
    ready = threading.Event()
    loop_context = GLib.MainContext()
    loop = GLib.MainLoop.new(loop_context, False)

    def consumer():
        loop_context.push_thread_default()
        ch.port2.connect('message', lambda p, event: received.append(event.get_data().unpack()[0]))
        ch.port2.start()
        ready.set()
        loop.run()
        loop_context.pop_thread_default()

    thread = threading.Thread(target=consumer)
    thread.start()
    ready.wait()

    try:
        posted = 0
        max_buffered = 0
        while posted < n:
            while posted < n and port.props.writable:
                port.post(message(posted))
                posted += 1
            max_buffered = max(max_buffered, port.props.buffered_amount)
            result = wait_writable(port)
            iterate_until(lambda: result)
            assert result == [(True, None)]
        iterate_until(lambda: port.props.buffered_messages == 0)
        assert max_buffered <= mark
        assert port.props.messages_sent == n
    finally:
        loop_context.invoke_full(GLib.PRIORITY_DEFAULT, loop.quit)
        thread.join()
    assert received == [i % 256 for i in range(n)]
    port.close()
    drain()
