#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A GTK 4 window shows a worker thread's progress; Cancel closes the port.

The window creates a channel and starts a worker thread with one of its
ports. The worker starts that port in its own GMainContext and counts the
primes below a limit in chunks, posting (chunks done, primes so far) after
each; when it is done it posts its result and closes its port. The window
starts the other port on the main context, so the progress arrives there
as 'message' signals and updates the widgets directly, with no locks and
no GLib.idle_add(). Cancel closes the window's port: the worker sees
'close' between two chunks and stops.

    gtk_progress.py                      interactive
    gtk_progress.py --auto               quit when the work is done
    gtk_progress.py --auto --cancel-at 20    press Cancel at 20 %, then quit
"""

import argparse
import sys
import threading

import gi

gi.require_version('Gtk', '4.0')
gi.require_version('Msg', '1.0')
from gi.repository import Gio, GLib, Gtk, Msg  # noqa: E402

N_CHUNKS = 100


def count_primes(start, stop):
    count = 0
    for n in range(max(start, 2), stop):
        if n % 2 == 0:
            count += n == 2
            continue
        d = 3
        while d * d <= n:
            if n % d == 0:
                break
            d += 2
        else:
            count += 1
    return count


class Worker(threading.Thread):
    """Counts primes below @limit, reporting through @port."""

    def __init__(self, port, limit):
        super().__init__(name='prime-worker', daemon=True)
        self.port = port
        self.limit = limit
        self.chunk = 0
        self.primes = 0

    def run(self):
        context = GLib.MainContext.new()
        context.push_thread_default()
        loop = GLib.MainLoop.new(context, False)
        # The window closed its port (Cancel), or we closed ours when done.
        self.port.connect('close', lambda port: loop.quit())
        self.port.start()
        work = GLib.idle_source_new()
        work.set_callback(self.do_chunk)
        work.attach(context)
        loop.run()
        work.destroy()
        context.pop_thread_default()

    def do_chunk(self, *args):
        size = self.limit // N_CHUNKS
        self.primes += count_primes(self.chunk * size, (self.chunk + 1) * size)
        self.chunk += 1
        self.port.post(GLib.Variant('(uu)', (self.chunk, self.primes)))
        if self.chunk < N_CHUNKS:
            return GLib.SOURCE_CONTINUE
        self.port.close()
        return GLib.SOURCE_REMOVE


class ProgressWindow(Gtk.ApplicationWindow):
    def __init__(self, app, limit):
        super().__init__(application=app, title='msgport-glib: worker progress')
        self.set_default_size(420, -1)
        self.limit = limit
        self.finished = False
        self.cancelled = False
        self.progress = 0

        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=12,
                      margin_top=24, margin_bottom=24, margin_start=24, margin_end=24)
        self.set_child(box)
        box.append(Gtk.Label(label='Counting the primes below %d in a worker thread' % limit,
                             xalign=0))
        self.bar = Gtk.ProgressBar(show_text=True)
        box.append(self.bar)
        self.status = Gtk.Label(label='Starting…', xalign=0)
        box.append(self.status)
        self.cancel_button = Gtk.Button(label='Cancel', halign=Gtk.Align.END)
        self.cancel_button.connect('clicked', self.on_cancel_clicked)
        box.append(self.cancel_button)

        channel = Msg.ChannelMain()
        self.port = channel.port1
        self.port.connect('message', self.on_progress)
        self.port.connect('close', self.on_port_closed)
        self.port.start()  # on the main context: handlers run in the GTK thread
        self.worker = Worker(channel.port2, limit)
        self.worker.start()

    def on_progress(self, port, event):
        # After close() the messages that had already arrived are still
        # delivered; a cancelled job keeps its last shown state.
        if self.cancelled:
            return
        chunk, primes = event.data.unpack()
        self.progress = chunk
        self.bar.set_fraction(chunk / N_CHUNKS)
        self.status.set_label('%d primes so far' % primes)
        if chunk == N_CHUNKS:
            self.finished = True
            self.status.set_label('Done: %d primes below %d' % (primes, self.limit))

    def on_cancel_clicked(self, button):
        self.cancelled = True
        self.status.set_label('Cancelled at %d %%' % self.progress)
        self.port.close()

    def on_port_closed(self, port):
        self.cancel_button.set_sensitive(False)
        self.get_application().on_work_ended(self)


class ProgressApp(Gtk.Application):
    def __init__(self, args):
        super().__init__(application_id='org.example.MsgportProgress',
                         flags=Gio.ApplicationFlags.NON_UNIQUE)
        self.args = args
        self.window = None
        self.ok = False

    def do_activate(self):
        self.window = ProgressWindow(self, self.args.limit)
        if self.args.cancel_at:
            self.window.port.connect('message', self.maybe_press_cancel)
        self.window.present()

    def maybe_press_cancel(self, port, event):
        window = self.window
        if not window.cancelled and window.progress >= self.args.cancel_at:
            window.cancel_button.emit('clicked')

    def on_work_ended(self, window):
        self.ok = window.cancelled if self.args.cancel_at else window.finished
        if self.args.auto:
            self.quit()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--auto', action='store_true', help='quit when the work ends')
    parser.add_argument('--cancel-at', type=int, default=0, metavar='PERCENT',
                        help='with --auto, press Cancel at this progress')
    parser.add_argument('--limit', type=int, default=2_000_000, help='count primes below this')
    args = parser.parse_args()

    app = ProgressApp(args)
    status = app.run([sys.argv[0]])
    if app.window is None:
        return 1
    worker = app.window.worker
    worker.join(60)
    if worker.is_alive():
        print('the worker did not stop', file=sys.stderr)
        return 1
    if app.window.cancelled:
        print('cancelled at %d %%; the worker stopped after chunk %d of %d'
              % (app.window.progress, worker.chunk, N_CHUNKS))
        # It saw 'close' between two chunks, long before the end.
        app.ok = app.ok and worker.chunk < N_CHUNKS
    elif app.window.finished:
        print('done: %d primes below %d' % (worker.primes, args.limit))
    if args.auto and not app.ok:
        return 1
    return status


if __name__ == '__main__':
    sys.exit(main())
