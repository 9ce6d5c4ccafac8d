# SPDX-License-Identifier: LGPL-2.1-or-later
"""The PyGObject override (gi/overrides/Msg.py): event.data, event.ports,
ch.port1 and ch.port2."""

import gi.overrides

from gi.repository import GLib, Msg
from msgtest import hang_up, iterate_until, listen


def test_override_is_loaded():
    assert Msg.MessageEvent.__module__ == 'gi.overrides.Msg'
    assert Msg.ChannelMain.__module__ == 'gi.overrides.Msg'
    assert any(path.endswith('gi/overrides') for path in gi.overrides.__path__)


def test_event_data_and_ports():
    carrier = Msg.ChannelMain()
    a, b = Msg.ChannelMain(), Msg.ChannelMain()
    got = []
    carrier.port2.connect('message', lambda port, event: got.append((event, event.data, event.ports)))
    carrier.port2.start()
    carrier.port1.post_message(GLib.Variant('a{sv}', {'k': GLib.Variant('i', 1)}),
                               [a.port1, b.port1])
    carrier.port1.post(None)
    iterate_until(lambda: len(got) == 2)

    event, data, ports = got[0]
    assert isinstance(event, Msg.MessageEvent)
    assert data.unpack() == {'k': 1}
    assert isinstance(ports, list) and len(ports) == 2
    assert ports == event.get_ports() == list(event.props.ports)
    first, second = ports
    assert isinstance(first, Msg.PortMain)

    event, data, ports = got[1]
    assert data is None and ports == []
    assert len(event.props.ports) == 0

    # The ports that came in the event work.
    rec = listen(a.port2)
    first.post(GLib.Variant('s', 'through a received port'))
    iterate_until(lambda: rec.events)
    assert rec.events[0].data.unpack() == 'through a received port'
    for port in (first, second, carrier.port1):
        hang_up(port, rec)


def test_channel_ports_as_attributes():
    ch = Msg.ChannelMain()
    assert ch.port1 is ch.props.port1
    assert ch.port2 is ch.props.port2
