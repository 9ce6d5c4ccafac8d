# SPDX-License-Identifier: LGPL-2.1-or-later
"""Who keeps a port alive, from Python."""

import gc

from gi.repository import GLib, Msg
from msgtest import Recorder, iterate_until, listen


def test_started_port_owned_only_by_its_handler_keeps_working():
    got = []
    finalized = []
    closed = []

    def make_listener():
        ch = Msg.ChannelMain()
        port2 = ch.port2
        port2.connect('message', lambda port, event: got.append(event.data.unpack()))
        port2.connect('close', lambda port: closed.append(True))
        port2.weak_ref(lambda: finalized.append(True))
        port2.start()
        return ch.port1  # nothing in Python refers to port2 any more

    port1 = make_listener()
    gc.collect()
    assert not finalized

    port1.post(GLib.Variant('s', 'still listening'))
    iterate_until(lambda: got)
    assert got == ['still listening']

    # Closed, it lets go of itself.
    port1.close()
    iterate_until(lambda: closed and finalized)


def test_dropping_an_unstarted_port_closes_it():
    ch = Msg.ChannelMain()
    port1 = ch.port1
    rec = listen(port1)
    del ch  # the only owner of port2, which was never started
    gc.collect()
    iterate_until(lambda: rec.n_close == 1)
    assert port1.get_close_reason().matches(Msg.port_error_quark(),
                                            Msg.PortError.PEER_CLOSED)


def test_an_event_keeps_its_ports_until_it_goes():
    """A port that arrives in an event nobody keeps is dropped: its peer
    emits close."""
    carrier = Msg.ChannelMain()
    ch = Msg.ChannelMain()
    rec = Recorder(ch.port1)
    seen = []
    carrier.port2.connect('message', lambda port, event: seen.append(len(event.ports)))
    carrier.port2.start()
    ch.port1.start()
    carrier.port1.post_message(None, [ch.port2])
    iterate_until(lambda: rec.n_close == 1)
    assert seen == [1]
    assert ch.port1.get_close_reason().code == Msg.PortError.PEER_CLOSED
    carrier.port1.close()
