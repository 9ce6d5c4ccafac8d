# SPDX-License-Identifier: LGPL-2.1-or-later
"""Ports across Python threads, each with its own GMainContext."""

import threading

from gi.repository import GLib, Msg
from msgtest import TIMEOUT_SECONDS, hang_up, iterate_until, listen


class Worker(threading.Thread):
    """A thread running its own GMainContext, pushed as thread-default.

    It starts @control there. Each port that arrives on @control is started
    in the worker too, and echoes what it receives as (message, thread id);
    after @hand_back messages on such a port, the worker transfers the port
    back over @control. When a job port closes, the worker closes @control
    and stops.
    """

    def __init__(self, control, hand_back=None):
        super().__init__(name='msg-worker', daemon=True)
        self.control = control
        self.hand_back = hand_back
        self.error = None
        self.emitted_in = set()

    def run(self):
        context = GLib.MainContext.new()
        context.push_thread_default()
        try:
            loop = GLib.MainLoop.new(context, False)
            self.control.connect('message', self.on_control)
            self.control.connect('close', lambda port: loop.quit())
            self.control.start()
            loop.run()
        except Exception as error:  # reported to the main thread
            self.error = error
        finally:
            context.pop_thread_default()

    def on_control(self, control, event):
        self.emitted_in.add(threading.get_ident())
        for port in event.ports:
            port.connect('message', self.on_job)
            port.connect('close', lambda port: self.control.close())
            port.start()

    def on_job(self, port, event):
        self.emitted_in.add(threading.get_ident())
        port.post(GLib.Variant('(vt)', (event.data, threading.get_ident())))
        if self.hand_back is not None and event.data.unpack() == self.hand_back:
            self.control.post_message(GLib.Variant('s', 'yours again'), [port])


def start_worker(**kwargs):
    control = Msg.ChannelMain()
    worker = Worker(control.port2, **kwargs)
    worker.start()
    return control.port1, worker


def stop_worker(control, worker):
    control.close()
    worker.join(TIMEOUT_SECONDS)
    assert not worker.is_alive(), 'the worker thread did not stop'
    assert worker.error is None, worker.error


def test_worker_receives_a_port_in_a_message_and_echoes():
    control, worker = start_worker()
    try:
        rec_control = listen(control)
        jobs = Msg.ChannelMain()
        rec = listen(jobs.port1)

        # Posted before the worker has the port: they travel with it.
        for i in range(100):
            jobs.port1.post(GLib.Variant('u', i))
        assert control.post_message(GLib.Variant('s', 'your job port'), [jobs.port2])
        assert jobs.port2.is_neutered()
        for i in range(100, 200):
            jobs.port1.post(GLib.Variant('u', i))

        iterate_until(lambda: len(rec.events) == 200)
        echoed = [event.data.unpack() for event in rec.events]
        assert [value for value, _ in echoed] == list(range(200))
        worker_threads = {thread for _, thread in echoed}
        assert worker_threads == {worker.ident}
        assert rec.threads == {threading.get_ident()}

        # Closing the job channel makes the worker hang up and stop.
        hang_up(jobs.port1, rec_control, rec)
        assert rec_control.events == []
        assert worker.emitted_in == {worker.ident}
    finally:
        stop_worker(control, worker)


def test_port_goes_to_a_worker_and_comes_back_in_order():
    """Messages stay in order, exactly once, while their port moves to
    another thread and back."""
    control, worker = start_worker(hand_back=49)
    try:
        rec_control = listen(control)
        jobs = Msg.ChannelMain()
        rec = listen(jobs.port1)

        control.post_message(None, [jobs.port2])
        for i in range(100):
            jobs.port1.post(GLib.Variant('u', i))
        iterate_until(lambda: rec_control.events)
        assert rec_control.events[0].data.unpack() == 'yours again'
        home = rec_control.events[0].ports[0]
        rec_home = listen(home)

        iterate_until(lambda: len(rec_home.events) == 50 and len(rec.events) == 50)
        assert [value for value, _ in (e.data.unpack() for e in rec.events)] == list(range(50))
        assert rec_home.values == list(range(50, 100))
        assert {thread for _, thread in (e.data.unpack() for e in rec.events)} == {worker.ident}
        assert rec_home.threads == {threading.get_ident()}
        hang_up(home, rec)
    finally:
        stop_worker(control, worker)


def test_posts_from_many_threads_arrive_once_and_in_order_per_thread():
    ch = Msg.ChannelMain()
    rec = listen(ch.port2)
    n_threads, n_messages = 4, 500

    def sender(index):
        for i in range(n_messages):
            ch.port1.post(GLib.Variant('(uu)', (index, i)))

    threads = [threading.Thread(target=sender, args=(index,)) for index in range(n_threads)]
    for thread in threads:
        thread.start()
    iterate_until(lambda: len(rec.events) == n_threads * n_messages)
    for thread in threads:
        thread.join(TIMEOUT_SECONDS)
        assert not thread.is_alive()

    per_thread = {index: [] for index in range(n_threads)}
    for index, i in rec.values:
        per_thread[index].append(i)
    for index in range(n_threads):
        assert per_thread[index] == list(range(n_messages))
    hang_up(ch.port1, rec)


def test_close_from_another_thread():
    ch = Msg.ChannelMain()
    rec = listen(ch.port2)

    def post_then_close():
        for i in range(10):
            ch.port1.post(GLib.Variant('u', i))
        ch.port1.close()

    thread = threading.Thread(target=post_then_close)
    thread.start()
    iterate_until(lambda: rec.n_close == 1)
    thread.join(TIMEOUT_SECONDS)
    assert rec.values == list(range(10))
    assert rec.threads == {threading.get_ident()}
