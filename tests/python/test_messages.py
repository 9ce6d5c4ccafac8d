# SPDX-License-Identifier: LGPL-2.1-or-later
"""Channels, posting, starting and delivery order, from Python."""

import pytest

from gi.repository import GLib, Msg
from msgtest import Recorder, drain, hang_up, iterate_until, listen, unpack


def test_channel_has_two_entangled_ports():
    ch = Msg.ChannelMain()
    port1, port2 = ch.props.port1, ch.props.port2
    assert isinstance(port1, Msg.PortMain) and isinstance(port2, Msg.PortMain)
    assert port1 is not port2
    assert ch.get_port1() is port1 and ch.get_port2() is port2
    assert ch.port1 is port1 and ch.port2 is port2  # the override
    for port in (port1, port2):
        assert not port.is_started()
        assert not port.is_closed()
        assert not port.is_neutered()
        assert port.get_close_reason() is None


def test_version():
    assert Msg.get_major_version() == 1
    assert Msg.check_version(Msg.get_major_version(), 0, 0) is None
    assert Msg.check_version(Msg.get_major_version() + 1, 0, 0) is not None


VALUES = [
    GLib.Variant('s', 'hello'),
    GLib.Variant('s', ''),
    GLib.Variant('b', True),
    GLib.Variant('y', 255),
    GLib.Variant('n', -32768),
    GLib.Variant('q', 65535),
    GLib.Variant('i', -7),
    GLib.Variant('u', 7),
    GLib.Variant('x', -2 ** 63),
    GLib.Variant('t', 2 ** 64 - 1),
    GLib.Variant('d', 3.5),
    GLib.Variant('o', '/org/example/Object'),
    GLib.Variant('g', 'a{sv}'),
    GLib.Variant('ay', b'\x00\x01binary\xff'),
    GLib.Variant('as', ['a', 'b', 'c']),
    GLib.Variant('aai', [[1, 2], [], [3]]),
    GLib.Variant('a{sv}', {'name': GLib.Variant('s', 'x'), 'n': GLib.Variant('i', 1)}),
    GLib.Variant('(sidb)', ('s', 1, 2.0, False)),
    GLib.Variant('()', ()),
    GLib.Variant('v', GLib.Variant('s', 'boxed')),
    GLib.Variant('mi', None),
    GLib.Variant('mi', 5),
    # 1 MiB; GLib.Variant('ay', ...) would build it byte by byte
    GLib.Variant.new_from_bytes(GLib.VariantType('ay'),
                                GLib.Bytes.new(bytes(range(256)) * 4096), True),
]


@pytest.mark.parametrize('value', VALUES, ids=lambda v: v.get_type_string())
def test_post_arrives_equal_and_same_type(value):
    ch = Msg.ChannelMain()
    rec = listen(ch.port2)
    assert ch.port1.post(value) is True
    iterate_until(lambda: rec.events)
    got = rec.events[0].data
    assert got.get_type_string() == value.get_type_string()
    assert got == value
    assert rec.events[0].props.data == value
    assert rec.events[0].get_data() == value
    hang_up(ch.port1, rec)


def test_post_none():
    ch = Msg.ChannelMain()
    rec = listen(ch.port2)
    assert ch.port1.post(None)
    assert ch.port1.post_message(None, [])
    assert ch.port1.post_message(None, None)
    iterate_until(lambda: len(rec.events) == 3)
    for event in rec.events:
        assert event.data is None
        assert event.props.data is None
        assert event.ports == []
        assert event.props.n_ports == 0
    hang_up(ch.port1, rec)


def test_post_message_with_empty_transfer_list():
    ch = Msg.ChannelMain()
    rec = listen(ch.port2)
    assert ch.port1.post_message(GLib.Variant('s', 'hi'), [])
    iterate_until(lambda: rec.events)
    assert rec.values == ['hi']
    hang_up(ch.port2, rec)


def test_posting_emits_nothing_by_itself():
    ch = Msg.ChannelMain()
    rec = listen(ch.port2)
    ch.port1.post(GLib.Variant('i', 1))
    assert rec.events == []  # not from inside post()
    iterate_until(lambda: rec.events)
    hang_up(ch.port1, rec)


def test_order_both_directions():
    ch = Msg.ChannelMain()
    rec1, rec2 = listen(ch.port1), listen(ch.port2)
    for i in range(500):
        ch.port1.post(GLib.Variant('u', i))
        ch.port2.post(GLib.Variant('u', 1000 + i))
    iterate_until(lambda: len(rec1.events) == 500 and len(rec2.events) == 500)
    assert rec2.values == list(range(500))
    assert rec1.values == [1000 + i for i in range(500)]
    hang_up(ch.port1, rec1, rec2)


def test_queued_until_start():
    ch = Msg.ChannelMain()
    rec = Recorder(ch.port2)
    for i in range(100):
        ch.port1.post(GLib.Variant('u', i))
    drain()
    assert rec.events == []
    assert not ch.port2.is_started()

    ch.port2.start()
    assert ch.port2.is_started()
    iterate_until(lambda: len(rec.events) == 100)
    assert rec.values == list(range(100))
    hang_up(ch.port2, rec)


def test_start_twice_does_nothing():
    ch = Msg.ChannelMain()
    rec = listen(ch.port2)
    ch.port2.start()
    ch.port1.post(GLib.Variant('i', 1))
    iterate_until(lambda: rec.events)
    drain()
    assert rec.values == [1]
    hang_up(ch.port1, rec)
    assert rec.values == [1]


def test_handler_post_is_delivered_in_a_later_dispatch():
    """A message posted from a handler to a port on the same context waits for
    the next dispatch, so other sources are not starved."""
    ch = Msg.ChannelMain()
    rec1 = Recorder(ch.port1)
    replies = []

    def on_message(port, event):
        replies.append(unpack(event.data))
        port.post(GLib.Variant('s', 'reply'))

    ch.port2.connect('message', on_message)
    ch.port1.start()
    ch.port2.start()
    ch.port1.post(GLib.Variant('s', 'ping'))
    iterate_until(lambda: replies)
    assert rec1.events == []
    iterate_until(lambda: rec1.events)
    assert rec1.values == ['reply']
    hang_up(ch.port1, rec1)


def test_message_func_instead_of_the_signal():
    ch = Msg.ChannelMain()
    signals, values = [], []
    ch.port2.connect('message', lambda port, event: signals.append(event))

    def func(port, event, data):
        assert port is ch.port2 and data == 'data'
        values.append(event.get_data().unpack())

    ch.port2.set_message_func(func, 'data')
    ch.port2.start()
    for i in range(10):
        ch.port1.post(GLib.Variant('u', i))
    iterate_until(lambda: len(values) == 10)
    assert values == list(range(10))
    assert signals == []

    ch.port2.set_message_func(None)
    ch.port1.post(GLib.Variant('u', 10))
    iterate_until(lambda: signals)
    assert values == list(range(10))
    ch.port1.close()
    iterate_until(lambda: ch.port2.is_closed() or ch.port2.get_close_reason() is not None)
