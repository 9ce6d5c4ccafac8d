#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A child process with a parent port.

The parent spawns a child process (this same script, with --child) and
hands it a port with Msg.PortMain.new_for_launcher(). It sends the child
sentences over that port; the child finds its end with
Msg.PortMain.get_parent_port() and answers each with its number of words.
When all the answers are in, the parent closes the port: the child sees
'close' and exits, and the parent waits for it.

    parent_child.py          the parent
    parent_child.py --child  the child, as the parent spawns it
"""

import sys

import gi

gi.require_version('Msg', '1.0')
from gi.repository import Gio, GLib, Msg  # noqa: E402

SENTENCES = [
    'ports move between processes with their messages',
    'one socket per channel',
    'hello',
]


def child():
    loop = GLib.MainLoop()
    # Set up by the parent's Msg.PortMain.new_for_launcher().
    parent = Msg.PortMain.get_parent_port()
    if parent is None:
        print('parent_child.py --child: not spawned with a parent port', file=sys.stderr)
        return 1

    def on_job(port, event):
        text = event.data.unpack()
        n_words = len(text.split())
        print('  child:  counted %d words in "%s"' % (n_words, text), flush=True)
        port.post(GLib.Variant('(su)', (text, n_words)))

    def on_close(port):
        print('  child:  the parent closed the port; exiting', flush=True)
        loop.quit()

    parent.connect('message', on_job)
    parent.connect('close', on_close)
    parent.start()
    loop.run()
    return 0


def main():
    loop = GLib.MainLoop()
    answers = []
    closed = []
    exited = []

    print('msgport-glib %d.%d.%d parent and child process demo (Python)' % (
        Msg.get_major_version(), Msg.get_minor_version(), Msg.get_micro_version()))

    # The port's other end becomes descriptor 3 of the child.
    launcher = Gio.SubprocessLauncher.new(Gio.SubprocessFlags.NONE)
    port = Msg.PortMain.new_for_launcher(launcher, -1)
    child_process = launcher.spawnv([sys.executable, __file__, '--child'])
    # Closes our copy of the child's end, so that if the child died, our
    # port would see it ('close', with Msg.PortError.PEER_GONE).
    launcher.close()

    def on_answer(port, event):
        text, n_words = event.data.unpack()
        print('parent:   "%s" has %d words' % (text, n_words), flush=True)
        answers.append(n_words)
        if len(answers) == len(SENTENCES):
            print('parent:   all answers in; closing the port', flush=True)
            port.close()

    def maybe_quit():
        if closed and exited:
            loop.quit()

    def on_close(port):
        closed.append(True)
        maybe_quit()

    def on_child_exited(process, result):
        try:
            exited.append(process.wait_check_finish(result))
        except GLib.Error as error:
            print('parent:   the child failed: %s' % error.message, file=sys.stderr)
            exited.append(False)
        maybe_quit()

    port.connect('message', on_answer)
    port.connect('close', on_close)
    port.start()

    print('parent:   spawned a child; handing it %d sentences' % len(SENTENCES), flush=True)
    for sentence in SENTENCES:
        port.post(GLib.Variant('s', sentence))

    child_process.wait_check_async(None, on_child_exited)
    loop.run()

    if answers != [len(s.split()) for s in SENTENCES] or exited != [True]:
        print('demo failed: %r' % answers, file=sys.stderr)
        return 1
    print('parent:   the child exited; done')
    return 0


if __name__ == '__main__':
    sys.exit(child() if sys.argv[1:] == ['--child'] else main())
