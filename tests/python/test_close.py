# SPDX-License-Identifier: LGPL-2.1-or-later
"""close() and the close signal, from Python."""

from gi.repository import GLib, Msg
from msgtest import Recorder, drain, iterate_until, listen


def close_reason_code(port):
    reason = port.get_close_reason()
    assert reason is None or reason.domain == GLib.quark_to_string(Msg.port_error_quark())
    return None if reason is None else reason.code


def test_close_delivers_what_was_posted_first_then_close_once_on_each_end():
    ch = Msg.ChannelMain()
    rec1, rec2 = listen(ch.port1), listen(ch.port2)
    for i in range(20):
        ch.port1.post(GLib.Variant('u', i))
    ch.port2.post(GLib.Variant('s', 'already in flight'))
    ch.port1.close()
    assert ch.port1.is_closed()

    iterate_until(lambda: rec1.n_close == 1 and rec2.n_close == 1)
    drain()
    assert rec2.values == list(range(20))
    assert rec2.messages_at_close == 20
    # The closing end delivers what had reached it, then emits close too.
    assert rec1.values == ['already in flight']
    assert rec1.messages_at_close == 1
    assert (rec1.n_close, rec2.n_close) == (1, 1)
    assert close_reason_code(ch.port1) == Msg.PortError.CLOSED
    assert close_reason_code(ch.port2) == Msg.PortError.PEER_CLOSED


def test_close_both_ends_at_once():
    ch = Msg.ChannelMain()
    rec1, rec2 = listen(ch.port1), listen(ch.port2)
    ch.port1.close()
    ch.port2.close()
    iterate_until(lambda: rec1.n_close and rec2.n_close)
    drain()
    assert (rec1.n_close, rec2.n_close) == (1, 1)


def test_close_from_the_message_handler():
    ch = Msg.ChannelMain()
    rec1 = Recorder(ch.port1)
    closes = []
    ch.port2.connect('message', lambda port, event: port.close())
    ch.port2.connect('close', lambda port: closes.append(port))
    ch.port1.start()
    ch.port2.start()
    ch.port1.post(GLib.Variant('s', 'please hang up'))
    iterate_until(lambda: closes and rec1.n_close)
    drain()
    assert closes == [ch.port2]
    assert rec1.n_close == 1


def test_close_unstarted_port_emits_nothing_there():
    ch = Msg.ChannelMain()
    rec1, rec2 = Recorder(ch.port1), Recorder(ch.port2)
    ch.port2.post(GLib.Variant('s', 'never delivered'))
    ch.port1.close()
    assert close_reason_code(ch.port1) == Msg.PortError.CLOSED
    ch.port2.start()
    iterate_until(lambda: rec2.n_close == 1)
    drain()
    assert rec1.events == [] and rec1.n_close == 0
    assert rec2.events == []
    assert close_reason_code(ch.port2) == Msg.PortError.PEER_CLOSED


def test_closed_port_drops_posts_and_ignores_start_and_close():
    ch = Msg.ChannelMain()
    rec1, rec2 = Recorder(ch.port1), Recorder(ch.port2)
    ch.port2.start()
    ch.port1.close()
    assert ch.port1.post(GLib.Variant('s', 'dropped')) is True
    assert ch.port1.post_message(GLib.Variant('s', 'dropped'), []) is True
    ch.port1.start()
    ch.port1.close()
    assert not ch.port1.is_started()
    iterate_until(lambda: rec2.n_close == 1)
    drain()
    assert rec2.events == []
    assert rec1.events == [] and rec1.n_close == 0


def test_port_started_after_peer_went_away_delivers_then_closes():
    ch = Msg.ChannelMain()
    rec2 = Recorder(ch.port2)
    for i in range(3):
        ch.port1.post(GLib.Variant('u', i))
    ch.port1.close()
    assert ch.port2.is_closed()  # disconnected, not started yet
    drain()
    assert rec2.events == [] and rec2.n_close == 0
    ch.port2.start()
    iterate_until(lambda: rec2.n_close == 1)
    assert rec2.values == [0, 1, 2]
    assert rec2.messages_at_close == 3
