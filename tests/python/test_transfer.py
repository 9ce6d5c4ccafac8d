# SPDX-License-Identifier: LGPL-2.1-or-later
"""Transfer lists: moving ports with messages, from Python."""

import pytest

from gi.repository import GLib, Msg
from msgtest import Recorder, assert_data_clone, drain, hang_up, iterate_until, listen


def test_ports_arrive_in_the_event_in_order_and_work():
    carrier = Msg.ChannelMain()
    a, b = Msg.ChannelMain(), Msg.ChannelMain()
    rec = listen(carrier.port2)

    assert carrier.port1.post_message(GLib.Variant('s', 'ports'), [a.port2, b.port2])
    assert a.port2.is_neutered() and b.port2.is_neutered()
    iterate_until(lambda: rec.events)

    event = rec.events[0]
    assert event.data.unpack() == 'ports'
    assert event.props.n_ports == 2
    moved_a, moved_b = event.ports
    assert event.get_ports() == [moved_a, moved_b]
    assert list(event.props.ports) == [moved_a, moved_b]
    assert event.get_port(1) is moved_b
    assert moved_a is not a.port2
    assert not moved_a.is_started() and not moved_a.is_neutered()

    # Start the received port and talk through it, both ways.
    rec_moved, rec_a1 = listen(moved_a), listen(a.port1)
    a.port1.post(GLib.Variant('u', 1))
    moved_a.post(GLib.Variant('u', 2))
    # The neutered handle does nothing at all.
    assert a.port2.post(GLib.Variant('u', 3)) is True
    a.port2.start()
    a.port2.close()
    assert not a.port2.is_started() and not a.port2.is_closed()
    iterate_until(lambda: rec_moved.events and rec_a1.events)
    assert rec_moved.values == [1]
    assert rec_a1.values == [2]

    for port in (moved_a, moved_b, carrier.port1):
        port.close()
    iterate_until(lambda: rec_a1.n_close and rec_moved.n_close and rec.n_close)
    drain()
    assert rec_a1.values == [2]


@pytest.mark.parametrize('started', [False, True], ids=['unstarted', 'started'])
def test_queued_and_in_flight_messages_follow_the_port(started):
    carrier = Msg.ChannelMain()
    ch = Msg.ChannelMain()
    sender, moving = ch.port1, ch.port2
    rec = Recorder(carrier.port2)
    rec_old = Recorder(moving)
    carrier.port2.start()
    if started:
        moving.start()

    for i in range(50):
        sender.post(GLib.Variant('u', i))
    carrier.port1.post_message(None, [moving])
    for i in range(50, 100):
        sender.post(GLib.Variant('u', i))

    iterate_until(lambda: rec.events)
    moved = rec.events[0].ports[0]
    for i in range(100, 150):
        sender.post(GLib.Variant('u', i))
    rec_new = listen(moved)
    iterate_until(lambda: len(rec_new.events) == 150)
    assert rec_new.values == list(range(150))

    hang_up(sender, rec_new)
    drain()
    assert rec_old.events == [] and rec_old.n_close == 0
    hang_up(carrier.port1, rec)


def test_transfer_from_its_own_handler_moves_the_rest_of_the_batch():
    carrier = Msg.ChannelMain()
    ch = Msg.ChannelMain()
    rec = Recorder(carrier.port2)
    seen = []

    def move_away_after_ten(port, event):
        seen.append(event.data.unpack())
        if len(seen) == 10:
            assert carrier.port1.post_message(None, [port])
            assert port.is_neutered()

    ch.port2.connect('message', move_away_after_ten)
    carrier.port2.start()
    for i in range(30):
        ch.port1.post(GLib.Variant('u', i))
    ch.port2.start()

    iterate_until(lambda: rec.events)
    assert seen == list(range(10))
    moved = rec.events[0].ports[0]
    rec_new = listen(moved)
    iterate_until(lambda: len(rec_new.events) == 20)
    assert rec_new.values == list(range(10, 30))
    assert seen == list(range(10))

    moved.close()
    carrier.port1.close()
    iterate_until(lambda: rec_new.n_close and rec.n_close)


def test_received_port_can_be_transferred_on():
    first, second = Msg.ChannelMain(), Msg.ChannelMain()
    ch = Msg.ChannelMain()
    rec_first, rec_second = listen(first.port2), listen(second.port2)

    first.port1.post_message(None, [ch.port2])
    iterate_until(lambda: rec_first.events)
    hop = rec_first.events[0].ports[0]
    second.port1.post_message(None, [hop])
    assert hop.is_neutered()
    iterate_until(lambda: rec_second.events)
    final = rec_second.events[0].ports[0]

    rec_final = listen(final)
    ch.port1.post(GLib.Variant('s', 'two hops'))
    iterate_until(lambda: rec_final.events)
    assert rec_final.values == ['two hops']
    for port in (final, first.port1, second.port1):
        port.close()
    iterate_until(lambda: rec_first.n_close and rec_second.n_close and rec_final.n_close)


BAD_LISTS = ['self', 'duplicate', 'none', 'already-transferred', 'closed']


@pytest.mark.parametrize('kind', BAD_LISTS)
def test_invalid_transfer_list_raises_data_clone(kind):
    ch = Msg.ChannelMain()
    good = Msg.ChannelMain()
    other = Msg.ChannelMain()
    sink = Msg.ChannelMain()
    rec = Recorder(ch.port2)
    if kind == 'self':
        bad = ch.port1
    elif kind == 'duplicate':
        bad = good.port1
    elif kind == 'none':
        bad = None
    elif kind == 'already-transferred':
        bad = other.port1
        assert sink.port1.post_message(None, [bad])
        assert bad.is_neutered()
    elif kind == 'closed':
        bad = other.port1
        bad.close()
    transfer = [good.port1, bad, good.port2]

    ch.port2.start()
    with pytest.raises(GLib.Error) as excinfo:
        ch.port1.post_message(GLib.Variant('u', 1), transfer)
    assert_data_clone(excinfo)
    # Nothing was sent, nothing neutered.
    assert not good.port1.is_neutered() and not good.port2.is_neutered()
    assert not ch.port1.is_neutered()

    # The same errors come first on a closed port too.
    ch.port1.close()
    with pytest.raises(GLib.Error) as excinfo:
        ch.port1.post_message(GLib.Variant('u', 1), transfer)
    assert_data_clone(excinfo)
    assert not good.port1.is_neutered()

    iterate_until(lambda: rec.n_close == 1)
    assert rec.events == []


def test_doomed_transfer_of_the_own_peer_loses_the_channel():
    ch = Msg.ChannelMain()
    other = Msg.ChannelMain()
    rec1, rec2 = Recorder(ch.port1), Recorder(ch.port2)
    rec_other = Recorder(other.port1)
    for port in (ch.port1, ch.port2, other.port1):
        port.start()

    assert ch.port1.post_message(GLib.Variant('u', 1), [other.port2, ch.port2]) is True
    assert ch.port2.is_neutered()
    assert other.port2.is_neutered()
    assert ch.port1.is_closed()

    iterate_until(lambda: rec1.n_close == 1 and rec_other.n_close == 1)
    assert ch.port1.get_close_reason().code == Msg.PortError.CLOSED
    drain()
    assert rec1.events == []
    assert rec2.events == [] and rec2.n_close == 0


def test_closed_port_neuters_and_loses_the_ports_it_is_given():
    ch = Msg.ChannelMain()
    other = Msg.ChannelMain()
    rec_other = listen(other.port1)
    ch.port1.close()
    assert ch.port1.post_message(None, [other.port2]) is True
    assert other.port2.is_neutered()
    iterate_until(lambda: rec_other.n_close == 1)


def test_neutered_port_ignores_its_transfer_list():
    carrier = Msg.ChannelMain()
    ch = Msg.ChannelMain()
    other = Msg.ChannelMain()
    moving = ch.port1
    assert carrier.port1.post_message(None, [moving])
    # Not even checked: None would be an error on a live port.
    assert moving.post_message(None, [other.port1, None]) is True
    assert not other.port1.is_neutered()
    assert not other.port1.is_closed()


def test_disconnected_port_closes_again_at_its_new_home():
    carrier = Msg.ChannelMain()
    ch = Msg.ChannelMain()
    moving = ch.port2
    rec = Recorder(carrier.port2)
    rec_old = listen(moving)
    ch.port1.post(GLib.Variant('u', 1))
    hang_up(ch.port1, rec_old)
    assert rec_old.values == [1]

    carrier.port2.start()
    assert carrier.port1.post_message(None, [moving])
    iterate_until(lambda: rec.events)
    moved = rec.events[0].ports[0]
    rec_new = listen(moved)
    iterate_until(lambda: rec_new.n_close == 1)
    assert rec_new.events == []
    assert moved.get_close_reason().code == Msg.PortError.PEER_CLOSED
    hang_up(carrier.port1, rec)
