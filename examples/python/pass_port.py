#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The main thread hands a port to a worker thread inside a message.

The main thread creates a control channel and gives one end to a worker
thread, which starts it in its own GMainContext. Then it creates a second
channel for jobs and hands one of its ports to the worker *in a message* on
the control channel. The worker starts that port and answers each job on
it; when the main thread closes the job channel, the worker sees 'close',
says goodbye on the control channel and stops.
"""

import sys
import threading

import gi

gi.require_version('Msg', '1.0')
from gi.repository import GLib, Msg  # noqa: E402

SENTENCES = [
    'ports move between threads with their messages',
    'one wake-up per batch',
    'hello',
]


def worker_thread(control):
    context = GLib.MainContext.new()
    context.push_thread_default()
    loop = GLib.MainLoop.new(context, False)

    def on_job(jobs, event):
        text = event.data.unpack()
        n_words = len(text.split())
        print('  worker: counted %d words in "%s"' % (n_words, text))
        jobs.post(GLib.Variant('(su)', (text, n_words)))

    def on_jobs_closed(jobs):
        print('  worker: the job port was closed; saying goodbye')
        control.post(GLib.Variant('s', 'bye'))
        control.close()

    def on_control(control, event):
        if len(event.ports) != 1:
            return
        # The port came in the message: start it here, in the worker's context.
        jobs, = event.ports
        print('  worker: received a port in a message; starting it in the worker thread')
        jobs.connect('message', on_job)
        jobs.connect('close', on_jobs_closed)
        jobs.start()

    control.connect('message', on_control)
    control.connect('close', lambda control: loop.quit())
    control.start()
    loop.run()
    context.pop_thread_default()


def main():
    control = Msg.ChannelMain()
    jobs = Msg.ChannelMain()
    loop = GLib.MainLoop()
    answers = []
    said_bye = []

    print('msgport-glib %d.%d.%d worker demo (Python)' % (
        Msg.get_major_version(), Msg.get_minor_version(), Msg.get_micro_version()))
    thread = threading.Thread(target=worker_thread, args=(control.port2,), name='worker')
    thread.start()

    def on_answer(port, event):
        text, n_words = event.data.unpack()
        print('main:   "%s" has %d words' % (text, n_words))
        answers.append(n_words)
        if len(answers) == len(SENTENCES):
            print('main:   all answers in; closing the job channel')
            port.close()

    def on_control(port, event):
        print('main:   the worker says "%s"' % event.data.unpack())
        said_bye.append(True)

    control.port1.connect('message', on_control)
    control.port1.connect('close', lambda port: loop.quit())
    control.port1.start()

    # Jobs can be posted before the worker has the port: they are queued on
    # it and travel with it.
    for sentence in SENTENCES:
        jobs.port1.post(GLib.Variant('s', sentence))

    print('main:   handing a port to the worker in a message')
    control.port1.post_message(GLib.Variant('s', 'here is your job port'), [jobs.port2])

    jobs.port1.connect('message', on_answer)
    jobs.port1.start()

    loop.run()
    thread.join()

    if answers != [len(s.split()) for s in SENTENCES] or not said_bye:
        print('demo failed: %r' % answers, file=sys.stderr)
        return 1
    print('main:   done')
    return 0


if __name__ == '__main__':
    sys.exit(main())
