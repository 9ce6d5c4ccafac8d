# SPDX-License-Identifier: LGPL-2.1-or-later
"""A child process in Python: echoes what its parent posts on the parent port.

Spawned by tests/process.c (/process/child/python) with a port set up by
msg_port_main_new_for_launcher().
"""

import sys

import gi

gi.require_version('Msg', '1.0')
from gi.repository import GLib, Msg  # noqa: E402


def main():
    loop = GLib.MainLoop()
    parent = Msg.PortMain.get_parent_port()
    if parent is None:
        print('child.py: no parent port', file=sys.stderr)
        return 1

    def on_message(port, event):
        port.post_message(event.props.data, event.get_ports())

    parent.connect('message', on_message)
    parent.connect('close', lambda port: loop.quit())
    parent.start()
    loop.run()
    return 0


if __name__ == '__main__':
    sys.exit(main())
