# SPDX-License-Identifier: LGPL-2.1-or-later
"""Open file descriptors inside messages, from Python (Gio.UnixFDList)."""

import os
import sys
import tempfile
import threading

import pytest

from gi.repository import Gio, GLib, Msg
from msgtest import assert_data_clone, hang_up, iterate_until, listen


def count_fds():
    return len(os.listdir('/proc/self/fd'))


@pytest.fixture
def fd_baseline():
    """Fails the test unless the descriptors it opened are all closed."""
    GLib.MainContext.default()
    before = count_fds()
    yield
    iterate_until(lambda: count_fds() == before)


def fd_list_of(*fds):
    """A Gio.UnixFDList of duplicates of @fds; the caller keeps its own."""
    fd_list = Gio.UnixFDList.new()
    for fd in fds:
        fd_list.append(fd)
    return fd_list


def test_pipe_arrives_and_works(fd_baseline):
    ch = Msg.ChannelMain()
    rec = listen(ch.port2)
    read_fd, write_fd = os.pipe()
    fd_list = fd_list_of(read_fd, write_fd)

    assert ch.port1.post_with_unix_fd_list(
        GLib.Variant('(shh)', ('pipe', 1, 0)), [], fd_list)
    # The caller's list and descriptors are its own: it may close them now.
    assert fd_list.get_length() == 2
    sent = fd_list.peek_fds()
    del fd_list
    os.close(read_fd)
    os.close(write_fd)

    iterate_until(lambda: len(rec.events) == 1)
    event = rec.events[0]
    received = event.get_unix_fd_list()
    assert received is event.props.unix_fd_list
    assert received is event.unix_fd_list  # the override
    assert received.get_length() == 2
    assert not set(received.peek_fds()) & set(sent)
    name, h_write, h_read = event.data.unpack()
    assert name == 'pipe'
    w = received.get(h_write)
    r = received.get(h_read)
    os.write(w, b'hi')
    assert os.read(r, 2) == b'hi'
    os.close(w)
    os.close(r)

    hang_up(ch.port1, rec)
    rec.disconnect()
    del event, received, rec


def test_without_list_handles_are_integers(fd_baseline):
    ch = Msg.ChannelMain()
    rec = listen(ch.port2)
    assert ch.port1.post_with_unix_fd_list(GLib.Variant('h', 7), [], None)
    assert ch.port1.post_with_unix_fd_list(GLib.Variant('h', -1), [],
                                           Gio.UnixFDList.new())
    iterate_until(lambda: len(rec.events) == 2)
    assert [e.data.unpack() for e in rec.events] == [7, -1]
    assert all(e.get_unix_fd_list() is None for e in rec.events)
    assert all(e.unix_fd_list is None for e in rec.events)
    hang_up(ch.port1, rec)
    rec.disconnect()


@pytest.mark.parametrize('message', [
    GLib.Variant('h', 1),
    GLib.Variant('h', -2),
    GLib.Variant('ah', [0, 5]),
    GLib.Variant('(sv)', ('x', GLib.Variant('h', 3))),
])
def test_bad_handles_refused(fd_baseline, message):
    ch = Msg.ChannelMain()
    other = Msg.ChannelMain()
    rec = listen(ch.port2)
    read_fd, write_fd = os.pipe()
    fd_list = fd_list_of(write_fd)
    os.close(read_fd)
    os.close(write_fd)

    with pytest.raises(GLib.Error) as excinfo:
        ch.port1.post_with_unix_fd_list(message, [other.port2], fd_list)
    assert_data_clone(excinfo)
    assert not other.port2.is_neutered()

    ch.port1.post(GLib.Variant('s', 'next'))
    iterate_until(lambda: len(rec.events) == 1)
    assert rec.values == ['next']
    hang_up(ch.port1, rec)
    rec.disconnect()
    del fd_list


def test_descriptor_crosses_to_a_thread(fd_baseline):
    ch = Msg.ChannelMain()
    done = threading.Event()
    errors = []

    def worker():
        context = GLib.MainContext.new()
        context.push_thread_default()
        try:
            loop = GLib.MainLoop.new(context, False)

            def on_message(port, event):
                try:
                    fds = event.get_unix_fd_list().steal_fds()
                    os.write(fds[event.data.unpack()], b'from worker')
                    for fd in fds:
                        os.close(fd)
                    done.set()
                    GLib.MainContext.default().wakeup()
                except Exception as error:  # reported to the main thread
                    errors.append(error)
                finally:
                    port.close()

            ch.port2.connect('message', on_message)
            ch.port2.connect('close', lambda port: loop.quit())
            ch.port2.start()
            loop.run()
        finally:
            context.pop_thread_default()

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    read_fd, write_fd = os.pipe()
    fd_list = Gio.UnixFDList.new_from_array([write_fd])  # takes write_fd
    assert ch.port1.post_with_unix_fd_list(GLib.Variant('h', 0), [], fd_list)
    del fd_list  # closes write_fd: only the worker's copy is left

    iterate_until(done.is_set)
    thread.join()
    assert not errors, errors
    assert os.read(read_fd, 64) == b'from worker'
    assert os.read(read_fd, 64) == b''  # the worker closed the last write end
    os.close(read_fd)


def test_dropped_queue_closes_descriptors(fd_baseline):
    ch = Msg.ChannelMain()
    read_fd, write_fd = os.pipe()
    fd_list = fd_list_of(write_fd)
    for i in range(5):
        assert ch.port1.post_with_unix_fd_list(GLib.Variant('(uh)', (i, 0)), [], fd_list)
    del fd_list
    os.close(write_fd)
    ch.port2.close()  # never started: its queue, and the descriptors, go
    assert os.read(read_fd, 1) == b''
    os.close(read_fd)


def read_to_end(fd):
    """Reads the pipe @fd to its end of file, iterating the default context
    while it waits."""
    os.set_blocking(fd, False)
    chunks = []
    done = []

    def on_ready(*args):
        try:
            while True:
                chunk = os.read(fd, 64)
                if not chunk:
                    done.append(True)
                    return GLib.SOURCE_REMOVE
                chunks.append(chunk)
        except BlockingIOError:
            return GLib.SOURCE_CONTINUE

    GLib.unix_fd_add_full(GLib.PRIORITY_DEFAULT, fd,
                          GLib.IOCondition.IN | GLib.IOCondition.HUP, on_ready)
    iterate_until(lambda: done)
    return b''.join(chunks)


def wait_for_fd_count(expected):
    """Iterates until this process has @expected descriptors open: the
    library's I/O thread closes them without waking the default context,
    so a timer wakes it to look again (as msg_test_wait_for_fd_count())."""
    tick = GLib.timeout_add(5, lambda *args: GLib.SOURCE_CONTINUE)
    try:
        iterate_until(lambda: count_fds() == expected)
    finally:
        GLib.source_remove(tick)


def test_file_and_pipe_to_a_child_process():
    """A Python parent hands a Python child an open file and a pipe beside a
    reply port; the child reads the file into the pipe and answers. Every
    descriptor is closed again, in both processes."""
    child_py = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'child.py')
    launcher = Gio.SubprocessLauncher.new(Gio.SubprocessFlags.NONE)
    port = Msg.PortMain.new_for_launcher(launcher, -1)
    process = launcher.spawnv([sys.executable, child_py, 'fds'])
    launcher.close()
    exited = []
    process.wait_async(None, lambda p, result: exited.append(p.wait_finish(result)))
    rec = listen(port)

    # A round trip first: what the library and GLib open once is open.
    port.post(GLib.Variant('(s)', ('echo',)))
    iterate_until(lambda: len(rec.events) == 1)
    baseline = count_fds()

    reply = Msg.ChannelMain()
    rec_reply = listen(reply.port1)
    read_fd, write_fd = os.pipe()
    with tempfile.TemporaryFile() as f:
        f.write(b'a file for the child')
        f.flush()
        fd_list = fd_list_of(f.fileno(), write_fd)
    os.close(write_fd)
    assert port.post_with_unix_fd_list(GLib.Variant('(shh)', ('use', 0, 1)),
                                       [reply.port2], fd_list)
    del fd_list
    assert reply.port2.is_neutered()

    iterate_until(lambda: rec_reply.n_close == 1)
    assert rec_reply.values == ['a file for the child']
    # To the end of file: the child closed its copy too.
    assert read_to_end(read_fd) == b'a file for the child'
    os.close(read_fd)
    rec_reply.disconnect()
    del rec_reply, reply
    wait_for_fd_count(baseline)

    port.close()
    iterate_until(lambda: exited)
    assert process.get_if_exited() and process.get_exit_status() == 0
    rec.disconnect()
