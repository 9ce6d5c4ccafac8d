# SPDX-License-Identifier: LGPL-2.1-or-later
"""What a new user tries first, and gets wrong: objects made without a
channel, out-of-range numbers, values that are not descriptors. Each gives a
Python exception or a documented result, never a crash or a CRITICAL (the
suite runs with G_DEBUG=fatal-criticals)."""

import gc
import socket

import pytest

from gi.repository import Gio, GLib, GObject, Msg
from msgtest import drain, iterate_until, listen


def error_code(excinfo):
    error = excinfo.value
    assert error.domain == GLib.quark_to_string(Msg.port_error_quark())
    return error.code


@pytest.mark.parametrize('make', [lambda: Msg.PortMain(),
                                  lambda: GObject.new(Msg.PortMain)])
def test_port_made_without_a_channel_is_closed_and_every_call_a_no_op(make):
    port = make()
    assert port.is_closed() and not port.is_started() and not port.is_neutered()
    reason = port.get_close_reason()
    assert reason.matches(Msg.port_error_quark(), Msg.PortError.CLOSED)

    rec = listen(port)          # start() does nothing on a closed port
    assert not port.is_started()
    assert port.post(GLib.Variant('s', 'dropped'))
    assert port.post_message(None, [])
    assert port.flush(None)
    port.close()
    drain()
    assert rec.events == [] and rec.n_close == 0
    rec.disconnect()

    # It cannot be transferred (it is closed), and posting it on a real
    # channel fails without neutering anything.
    ch = Msg.ChannelMain()
    with pytest.raises(GLib.Error) as excinfo:
        ch.port1.post_message(None, [port])
    assert error_code(excinfo) == Msg.PortError.DATA_CLONE
    assert not port.is_neutered()

    # Finalizing it is fine too (it used to crash here).
    del port, make
    gc.collect()


def test_port_made_without_a_channel_neuters_what_it_is_asked_to_carry():
    lone = Msg.PortMain()
    ch = Msg.ChannelMain()
    rec = listen(ch.port2)
    # A closed port drops the message and neuters the ports it carries, so
    # their peers close (the DOM's rule for a closed port).
    assert lone.post_message(GLib.Variant('s', 'lost'), [ch.port1])
    assert ch.port1.is_neutered()
    iterate_until(lambda: rec.n_close == 1)
    assert rec.events == []


def test_channel_and_event_made_with_gobject_new():
    ch = GObject.new(Msg.ChannelMain)
    assert isinstance(ch.port1, Msg.PortMain) and not ch.port1.is_closed()
    rec = listen(ch.port2)
    ch.port1.post(GLib.Variant('u', 7))
    iterate_until(lambda: rec.events)
    assert rec.values == [7]

    for event in (Msg.MessageEvent(), GObject.new(Msg.MessageEvent)):
        assert event.data is None and event.ports == [] and event.get_n_ports() == 0
        assert len(event.props.ports) == 0
        with pytest.raises(IndexError):
            event.get_port(0)


def test_get_port_out_of_range_raises_index_error():
    carrier, other = Msg.ChannelMain(), Msg.ChannelMain()
    events = []
    carrier.port2.connect('message', lambda port, event: events.append(event))
    carrier.port2.start()
    carrier.port1.post_message(None, [other.port1])
    iterate_until(lambda: events)
    event = events[0]
    assert event.get_port(0) is event.ports[0]
    for index in (1, 5, -1):
        with pytest.raises(IndexError):
            event.get_port(index)
    carrier.port1.close()


@pytest.mark.parametrize('child_fd', [-5, -2, 0, 1, 2])
def test_new_for_launcher_refuses_standard_streams_and_negative_numbers(child_fd):
    launcher = Gio.SubprocessLauncher.new(Gio.SubprocessFlags.NONE)
    with pytest.raises(GLib.Error) as excinfo:
        Msg.PortMain.new_for_launcher(launcher, child_fd)
    assert error_code(excinfo) == Msg.PortError.INVALID_ARGUMENT
    assert str(child_fd) in excinfo.value.message
    launcher.close()


def test_new_for_launcher_twice_on_one_launcher_is_refused():
    launcher = Gio.SubprocessLauncher.new(Gio.SubprocessFlags.NONE)
    port = Msg.PortMain.new_for_launcher(launcher, 5)
    with pytest.raises(GLib.Error) as excinfo:
        Msg.PortMain.new_for_launcher(launcher, 6)
    assert error_code(excinfo) == Msg.PortError.INVALID_ARGUMENT
    assert not port.is_closed()
    launcher.close()
    port.close()


@pytest.mark.parametrize('value', [1.5, float('nan'), '3', True, False, None, b'3'])
def test_new_for_fd_refuses_what_is_not_an_int(value):
    with pytest.raises(TypeError):
        Msg.PortMain.new_for_fd(value)


@pytest.mark.parametrize('value', [-1, -2 ** 40, 2 ** 31, 2 ** 40])
def test_new_for_fd_refuses_numbers_that_are_not_descriptors(value):
    with pytest.raises(ValueError):
        Msg.PortMain.new_for_fd(value)


def test_new_for_fd_still_takes_a_socket():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    left = Msg.PortMain.new_for_fd(ours.detach())
    right = Msg.PortMain.new_for_fd(theirs.detach())
    rec = listen(right)
    left.post(GLib.Variant('s', 'over a socket'))
    iterate_until(lambda: rec.events)
    assert rec.values == ['over a socket']
    left.close()
    iterate_until(lambda: rec.n_close == 1)

