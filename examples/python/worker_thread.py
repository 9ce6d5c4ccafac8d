#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A worker thread reports progress through a port.

The main thread creates a channel and starts a worker thread with one of
its ports. The worker starts that port in its own GMainContext and works in
small steps, posting its progress after each one; when it is done it closes
its port. The main thread prints the progress. To cancel, the main thread
closes its own port: the worker sees 'close' and stops early.

    worker_thread.py                 run to the end
    worker_thread.py --cancel-at 30  cancel once 30 % is reported
"""

import argparse
import sys
import threading

import gi

gi.require_version('Msg', '1.0')
from gi.repository import GLib, Msg  # noqa: E402

N_STEPS = 100


class Worker(threading.Thread):
    def __init__(self, port):
        super().__init__(name='worker')
        self.port = port  # the worker's end, started in the worker
        self.step = 0

    def run(self):
        # start() binds the port to the thread-default context of the caller.
        context = GLib.MainContext.new()
        context.push_thread_default()
        loop = GLib.MainLoop.new(context, False)
        # Either we closed it when done, or the main thread cancelled.
        self.port.connect('close', lambda port: loop.quit())
        self.port.start()

        work = GLib.idle_source_new()
        work.set_callback(self.do_step)
        work.attach(context)
        loop.run()
        work.destroy()
        context.pop_thread_default()

    def do_step(self, *args):
        """One step of "work" per main-loop iteration of the worker's context."""
        self.step += 1
        self.port.post(GLib.Variant('u', self.step))
        if self.step < N_STEPS:
            return GLib.SOURCE_CONTINUE
        # Done: everything posted before close() is still delivered.
        self.port.close()
        return GLib.SOURCE_REMOVE


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cancel-at', type=int, default=0, metavar='PERCENT')
    args = parser.parse_args()

    channel = Msg.ChannelMain()
    port = channel.port1
    worker = Worker(channel.port2)
    loop = GLib.MainLoop()
    state = {'progress': 0, 'cancelled': False}

    def on_progress(port, event):
        # After close() the messages that had already arrived are still
        # delivered: a cancelled job may report a little more progress.
        if state['cancelled']:
            return
        state['progress'] = event.data.unpack()
        if state['progress'] % 10 == 0:
            print('progress: %d %%' % state['progress'])
        if state['progress'] == args.cancel_at:
            print('cancelling')
            state['cancelled'] = True
            port.close()

    port.connect('message', on_progress)
    port.connect('close', lambda port: loop.quit())
    port.start()

    worker.start()
    loop.run()
    worker.join()

    if state['cancelled']:
        print('cancelled at %d %%; the worker stopped after step %d'
              % (state['progress'], worker.step))
    elif state['progress'] == N_STEPS:
        print('done')
    else:
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
