# SPDX-License-Identifier: LGPL-2.1-or-later
"""A child process in Python, talking to its parent through the parent port.

Spawned with a port set up by msg_port_main_new_for_launcher(), by
tests/process.c (/process/child/python), tests/python/test_processes.py and
tests/js/processes.js. tests/js/child.js is the same program in GJS.

    child.py [echo]         posts every message back, with its ports; when
                            the parent closes, exits 0 if the close reason
                            is PEER_CLOSED
    child.py close          posts 'bye', flushes, closes the port, and once
                            it has emitted close with the reason CLOSED,
                            waits for the end of its standard input, then
                            exits 0
    child.py close-exit     posts 'bye', closes the port, flushes, and
                            exits at once
    child.py burst-exit N   posts the numbers 0 .. N-1 (as 't'), flushes,
                            and exits at once, without closing
    child.py stream         posts numbers (as 't') in bursts until killed
    child.py exit-after N   exits 0 at once on the Nth message, without
                            closing
    child.py fds            ('use', h_file, h_pipe) with a port: reads the
                            file from its start, writes it into the pipe,
                            posts it on the port and closes the port;
                            ('echo', ...): posts it back with its
                            descriptors and ports

Any failure exits non-zero.
"""

import os
import sys

import gi

gi.require_version('Msg', '1.0')
from gi.repository import GLib, Msg  # noqa: E402


def reason_code(port):
    reason = port.get_close_reason()
    if reason is None or reason.domain != GLib.quark_to_string(Msg.port_error_quark()):
        return None
    return reason.code


def main(argv):
    mode = argv[1] if len(argv) > 1 else 'echo'
    loop = GLib.MainLoop()
    status = []
    parent = Msg.PortMain.get_parent_port()
    if parent is None:
        print('child.py: no parent port', file=sys.stderr)
        return 1
    taken_once = Msg.PortMain.get_parent_port() is parent
    if not taken_once or GLib.getenv(Msg.PARENT_PORT_ENV) is not None:
        print('child.py: the parent port is not taken once', file=sys.stderr)
        return 1

    def on_close(port, expected):
        code = reason_code(port)
        if code != expected:
            print('child.py: closed with reason %r, expected %r' % (code, expected),
                  file=sys.stderr)
            status.append(1)
        loop.quit()

    if mode == 'echo':
        def on_message(port, event):
            port.post_message(event.props.data, event.get_ports())

        parent.connect('message', on_message)
        parent.connect('close', on_close, Msg.PortError.PEER_CLOSED)
    elif mode == 'close':
        # Started first: a port closed before it was started emits nothing.
        parent.connect('close', on_close, Msg.PortError.CLOSED)
        parent.start()
        parent.post(GLib.Variant('s', 'bye'))
        parent.flush(None)
        parent.close()
    elif mode == 'close-exit':
        parent.post(GLib.Variant('s', 'bye'))
        parent.close()
        parent.flush(None)
        os._exit(0)
    elif mode == 'burst-exit':
        for i in range(int(argv[2])):
            parent.post(GLib.Variant('t', i))
        parent.flush(None)
        # Right away: no close, no main loop, no clean-up.
        os._exit(0)
    elif mode == 'exit-after':
        left = [int(argv[2])]

        def on_message(port, event):
            left[0] -= 1
            if left[0] <= 0:
                os._exit(0)

        parent.connect('message', on_message)
    elif mode == 'fds':
        def on_message(port, event):
            data = event.data.unpack()
            fd_list = event.get_unix_fd_list()
            if data[0] == 'use':
                fds = fd_list.peek_fds()
                text = os.pread(fds[data[1]], 256, 0)
                os.write(fds[data[2]], text)
                reply = event.get_ports()[0]
                reply.post(GLib.Variant('s', text.decode()))
                reply.close()
            else:
                port.post_with_unix_fd_list(event.data, event.get_ports(), fd_list)

        parent.connect('message', on_message)
        parent.connect('close', on_close, Msg.PortError.PEER_CLOSED)
    elif mode == 'stream':
        counter = iter(range(2 ** 63))

        def burst():
            for _ in range(100):
                parent.post(GLib.Variant('t', next(counter)))
            return GLib.SOURCE_CONTINUE

        GLib.idle_add(burst)
        parent.connect('close', lambda port: loop.quit())
    else:
        print('child.py: unknown mode %r' % mode, file=sys.stderr)
        return 2

    parent.start()
    loop.run()
    if mode == 'close':
        # The close frame is written by the library's I/O thread, and nothing
        # says when it is out (flush() after close() returns at once): stay
        # until the parent has seen it and closes our standard input.
        sys.stdin.buffer.read()
    return status[0] if status else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
