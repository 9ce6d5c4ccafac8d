# SPDX-License-Identifier: LGPL-2.1-or-later
"""Ports between processes, from Python.

The parent is this test process; it spawns children with
Gio.SubprocessLauncher and Msg.PortMain.new_for_launcher(). Every child test
runs twice: with a Python child (child.py) and with a GJS child
(../js/child.js); both find their port with Msg.PortMain.get_parent_port()
and have the same modes. The children inherit the test environment, which
points GI_TYPELIB_PATH and LD_LIBRARY_PATH at the build tree.
"""

import contextlib
import os
import shutil
import signal
import socket
import sys

import pytest

from gi.repository import Gio, GLib, Msg
from msgtest import Recorder, drain, iterate_until, listen, unpack

HERE = os.path.dirname(os.path.abspath(__file__))
GJS = os.environ.get('MSG_TEST_GJS', shutil.which('gjs'))  # empty: none
ERROR_DOMAIN = 'msg-port-error-quark'
MiB = 1024 * 1024

CHILDREN = {
    'python': [sys.executable, os.path.join(HERE, 'child.py')],
    'gjs': [GJS, '-m', os.path.join(HERE, os.pardir, 'js', 'child.js')],
}


@pytest.fixture(params=sorted(CHILDREN))
def child_argv(request):
    """The command line of a child, in each language."""
    if request.param == 'gjs' and not GJS:
        pytest.skip('needs gjs')
    return CHILDREN[request.param]


class Child:
    """A child process spawned with a parent port (self.port, not started)."""

    def __init__(self, argv, flags=Gio.SubprocessFlags.NONE):
        launcher = Gio.SubprocessLauncher.new(flags)
        self.port = Msg.PortMain.new_for_launcher(launcher, -1)
        self.process = launcher.spawnv(argv)
        # Closing the launcher closes our copy of the child's end: from now
        # on the child is the only other holder of the socket, so its going
        # away is noticed.
        launcher.close()
        self.exited = False
        self.process.wait_async(None, self._on_exited)

    def _on_exited(self, process, result):
        process.wait_finish(result)
        self.exited = True

    def wait(self):
        """Waits until the child exits; fails after the timeout."""
        iterate_until(lambda: self.exited)

    def wait_success(self):
        """Waits until the child exits, and checks that it exited with 0."""
        self.wait()
        assert self.process.get_if_exited(), 'the child did not exit normally'
        assert self.process.get_exit_status() == 0

    def reap(self):
        """Kills the child if it is still running, and waits for it."""
        if not self.exited:
            self.process.force_exit()
            self.wait()


@contextlib.contextmanager
def spawned(argv, flags=Gio.SubprocessFlags.NONE):
    """Spawns a child; whatever happens in the block, the child is reaped
    and the port closed when it ends."""
    child = Child(argv, flags)
    try:
        yield child
    finally:
        child.port.close()
        child.reap()


def reason_code(port):
    """The code of port's close reason, checking that it is a GLib.Error in
    the MSG_PORT_ERROR domain."""
    reason = port.get_close_reason()
    assert isinstance(reason, GLib.Error), reason
    assert reason.domain == ERROR_DOMAIN
    assert reason.matches(Msg.port_error_quark(), reason.code)
    return reason.code


def sample_values():
    return [
        GLib.Variant('s', 'hello'),
        GLib.Variant('(sixdb)', ('a', -5, 2 ** 40, 2.5, True)),
        GLib.Variant('a{sv}', {'n': GLib.Variant('u', 7), 's': GLib.Variant('as', ['x', 'y'])}),
        GLib.Variant('mv', None),
        GLib.Variant('(h)', (42,)),  # a plain integer across processes
        GLib.Variant('t', 2 ** 64 - 1),
        GLib.Variant('ay', b''),
        GLib.Variant('a(sa{sv})', []),
        GLib.Variant('av', [GLib.Variant('(isav)', (1, 'x', [GLib.Variant('ay', b'zz')]))]),
        GLib.Variant.new_from_bytes(GLib.VariantType('ay'),
                                    GLib.Bytes.new(bytes(range(256)) * 4096), True),
    ]


# Messages ----------------------------------------------------------------


def test_values_and_none_round_trip_equal_and_in_order(child_argv):
    samples = sample_values()
    n = 2000
    with spawned(child_argv + ['echo']) as child:
        rec = listen(child.port)
        for value in samples:
            assert child.port.post(value) is True
        assert child.port.post(None) is True
        for i in range(n):
            child.port.post(GLib.Variant('u', i))

        iterate_until(lambda: len(rec.events) == len(samples) + 1 + n)
        for sent, event in zip(samples, rec.events):
            got = event.data
            assert got.get_type_string() == sent.get_type_string()
            assert got == sent
            assert got.is_normal_form()
        assert rec.events[len(samples)].data is None
        assert rec.values[len(samples) + 1:] == list(range(n))
        assert all(event.ports == [] for event in rec.events)


def test_close_from_the_parent_ends_the_child(child_argv):
    with spawned(child_argv + ['echo']) as child:
        rec = listen(child.port)
        child.port.post(GLib.Variant('s', 'last'))
        child.port.close()
        assert child.port.is_closed()
        iterate_until(lambda: rec.n_close == 1)
        assert reason_code(child.port) == Msg.PortError.CLOSED
        # The child exits 0 only if its port closed with PEER_CLOSED.
        child.wait_success()
        drain()
        assert rec.n_close == 1


# Transfer lists ----------------------------------------------------------


def test_ports_go_to_the_child_and_come_back_and_still_talk(child_argv):
    """Two ports of local channels go to the child in one transfer list and
    come back in its answer, in order, with every message that was queued on
    them or in flight; then they still talk to their peers."""
    a, b = Msg.ChannelMain(), Msg.ChannelMain()
    rec_a, rec_b = listen(a.port1), listen(b.port1)
    n = 500
    with spawned(child_argv + ['echo']) as child:
        rec = listen(child.port)
        for i in range(n):
            a.port1.post(GLib.Variant('u', i))
            b.port1.post(GLib.Variant('s', 'b%d' % i))
        assert child.port.post_message(GLib.Variant('s', 'ports'), [a.port2, b.port2])
        assert a.port2.is_neutered() and b.port2.is_neutered()
        for i in range(n, 2 * n):
            a.port1.post(GLib.Variant('u', i))

        iterate_until(lambda: rec.events)
        event = rec.events[0]
        assert unpack(event.data) == 'ports'
        assert len(event.ports) == 2
        back_a, back_b = event.ports
        assert not back_a.is_started() and not back_a.is_neutered()
        rec_back_a, rec_back_b = listen(back_a), listen(back_b)
        iterate_until(lambda: len(rec_back_a.events) == 2 * n and len(rec_back_b.events) == n)
        assert rec_back_a.values == list(range(2 * n))
        assert rec_back_b.values == ['b%d' % i for i in range(n)]

        back_a.post(GLib.Variant('s', 'reply to a'))
        back_b.post(GLib.Variant('s', 'reply to b'))
        iterate_until(lambda: rec_a.events and rec_b.events)
        assert rec_a.values == ['reply to a'] and rec_b.values == ['reply to b']

        a.port1.close()
        back_b.close()
        iterate_until(lambda: rec_back_a.n_close and rec_b.n_close)
        assert reason_code(back_a) == Msg.PortError.PEER_CLOSED
        assert reason_code(b.port1) == Msg.PortError.PEER_CLOSED

        child.port.close()
        child.wait_success()


# Close reasons -----------------------------------------------------------


def test_child_closing_is_peer_closed(child_argv):
    # The child stays until its standard input ends: see child_close_exit.
    with spawned(child_argv + ['close'], Gio.SubprocessFlags.STDIN_PIPE) as child:
        rec = listen(child.port)
        iterate_until(lambda: rec.n_close == 1)
        assert rec.values == ['bye']
        assert rec.messages_at_close == 1
        assert reason_code(child.port) == Msg.PortError.PEER_CLOSED
        child.process.get_stdin_pipe().close()
        child.wait_success()


def test_child_closing_flushing_and_exiting_is_peer_closed():
    """close() then flush() is enough to exit: flush() waits for everything
    posted so far and for the close itself. The Python child exits with
    os._exit() at once, so a few rounds would show a race."""
    for _ in range(10):
        with spawned(CHILDREN['python'] + ['close-exit']) as child:
            rec = listen(child.port)
            iterate_until(lambda: rec.n_close == 1)
            child.wait_success()
            assert rec.values == ['bye']
            assert reason_code(child.port) == Msg.PortError.PEER_CLOSED


def test_child_killed_mid_stream_is_peer_gone(child_argv):
    with spawned(child_argv + ['stream']) as child:
        rec = Recorder(child.port)
        child.port.start()
        iterate_until(lambda: len(rec.events) >= 1000)
        child.process.send_signal(signal.SIGKILL)
        iterate_until(lambda: rec.n_close == 1)
        drain()
        assert rec.n_close == 1
        assert reason_code(child.port) == Msg.PortError.PEER_GONE
        # What arrived before the end is an ordered prefix, close comes last.
        assert rec.messages_at_close == len(rec.events)
        assert rec.values == list(range(len(rec.events)))
        child.wait()
        assert child.process.get_if_signaled()
        assert child.process.get_term_sig() == signal.SIGKILL


def test_child_flushing_then_exiting_delivers_everything(child_argv):
    n = 20000
    with spawned(child_argv + ['burst-exit', str(n)]) as child:
        rec = listen(child.port)
        iterate_until(lambda: rec.n_close == 1)
        assert len(rec.events) == n
        assert rec.messages_at_close == n
        assert rec.values == list(range(n))
        # It exited without closing its port.
        assert reason_code(child.port) == Msg.PortError.PEER_GONE
        child.wait_success()


def test_child_exiting_while_written_to_is_peer_gone():
    # The child reads a few messages and exits while we still write: the
    # write fails with EPIPE or ECONNRESET, which is the peer going away
    # (PEER_GONE), not an I/O error.
    chunk = GLib.Variant('ay', bytes(16 * 1024))
    for after in (1, 50, 300):
        with spawned(CHILDREN['python'] + ['exit-after', str(after)]) as child:
            rec = listen(child.port)

            def post_burst():
                if child.port.is_closed():
                    return GLib.SOURCE_REMOVE
                for _ in range(16):
                    child.port.post(chunk)
                return GLib.SOURCE_CONTINUE

            source = GLib.idle_source_new()
            source.set_callback(lambda *args: post_burst())
            source.attach(None)
            try:
                iterate_until(lambda: rec.n_close == 1)
            finally:
                source.destroy()
            assert reason_code(child.port) == Msg.PortError.PEER_GONE
            child.wait_success()


# Sockets made by hand ----------------------------------------------------


def socket_ports():
    """Two entangled ports over a socket pair, in this process."""
    left, right = socket.socketpair()
    return Msg.PortMain.new_for_fd(left.detach()), Msg.PortMain.new_for_fd(right.detach())


def test_socketpair_ports_talk_and_close():
    left, right = socket_ports()
    rec_left, rec_right = listen(left), listen(right)
    for value in sample_values():
        left.post(value)
    right.post(None)
    iterate_until(lambda: len(rec_right.events) == len(sample_values()) and rec_left.events)
    assert [event.data for event in rec_right.events] == sample_values()
    assert rec_left.values == [None]
    left.close()
    iterate_until(lambda: rec_left.n_close and rec_right.n_close)
    assert reason_code(left) == Msg.PortError.CLOSED
    assert reason_code(right) == Msg.PortError.PEER_CLOSED


def test_too_large_for_a_process_port_sends_nothing():
    left, right = socket_ports()
    rec = listen(right)
    # 129 times the same 1 MiB child: over 128 MiB serialized, 1 MiB in memory.
    chunk = GLib.Variant.new_from_bytes(GLib.VariantType('ay'), GLib.Bytes.new(bytes(MiB)), True)
    too_big = GLib.Variant.new_array(None, [chunk] * 129)
    assert too_big.get_size() > 128 * MiB
    other = Msg.ChannelMain()

    with pytest.raises(GLib.Error) as excinfo:
        left.post_message(too_big, [other.port2])
    assert excinfo.value.matches(Msg.port_error_quark(), Msg.PortError.TOO_LARGE)
    assert excinfo.value.domain == ERROR_DOMAIN
    assert not other.port2.is_neutered()

    channels = [Msg.ChannelMain() for _ in range(513)]
    too_many = [port for ch in channels for port in (ch.port1, ch.port2)]
    with pytest.raises(GLib.Error) as excinfo:
        left.post_message(None, too_many)
    assert excinfo.value.matches(Msg.port_error_quark(), Msg.PortError.TOO_LARGE)
    assert not any(port.is_neutered() for port in too_many)

    left.post(GLib.Variant('s', 'after'))
    iterate_until(lambda: rec.events)
    left.close()
    iterate_until(lambda: rec.n_close == 1)
    assert rec.values == ['after']


def invalid_socket(fd):
    with pytest.raises(GLib.Error) as excinfo:
        Msg.PortMain.new_for_fd(fd)
    assert excinfo.value.matches(Msg.port_error_quark(), Msg.PortError.INVALID_SOCKET)
    assert excinfo.value.domain == ERROR_DOMAIN


def test_new_for_fd_refuses_what_is_not_a_connected_unix_stream_socket():
    with pytest.raises(ValueError):
        Msg.PortMain.new_for_fd(-1)     # the override checks before the call

    read_end, write_end = os.pipe()
    try:
        invalid_socket(read_end)
        os.fstat(read_end)  # still ours, still open
    finally:
        os.close(read_end)
        os.close(write_end)

    for sock in [*socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM),
                 socket.socket(socket.AF_UNIX, socket.SOCK_STREAM),
                 socket.socket(socket.AF_INET, socket.SOCK_STREAM)]:
        with sock:
            invalid_socket(sock.fileno())
            assert sock.fileno() >= 0
            os.fstat(sock.fileno())


# Keep-alive ---------------------------------------------------------------


def test_keep_alive_notices_a_stopped_child(child_argv):
    with spawned(child_argv + ['echo']) as child:
        child.port.props.keep_alive_interval = 100
        assert child.port.get_keep_alive_interval() == 100
        rec = listen(child.port)
        child.port.post(GLib.Variant('s', 'are you there'))
        iterate_until(lambda: len(rec.events) == 1)

        pid = int(child.process.get_identifier())
        os.kill(pid, signal.SIGSTOP)
        try:
            iterate_until(lambda: rec.n_close == 1)
            assert reason_code(child.port) == Msg.PortError.KEEP_ALIVE_TIMEOUT
        finally:
            # Killed while stopped; it may be gone (and reaped) already.
            child.process.force_exit()
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
