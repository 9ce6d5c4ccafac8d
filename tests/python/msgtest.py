# SPDX-License-Identifier: LGPL-2.1-or-later
"""Helpers shared by the Python tests: waiting without sleeping, recording."""

import sys
import threading

import gi

gi.require_version('Msg', '1.0')
from gi.repository import GLib, Msg  # noqa: E402

# How long any wait in a test may take before the test fails.
TIMEOUT_SECONDS = 60

# Exceptions raised in callbacks (signal handlers, sources): PyGObject
# prints them through sys.excepthook and carries on, so an assert in a
# handler would only show as a timeout. They are kept here instead, and the
# wait that is under way, or the end of the test, raises the first one.
callback_errors = []


def _record_callback_error(kind, value, traceback):
    callback_errors.append(value.with_traceback(traceback))
    sys.__excepthook__(kind, value, traceback)


sys.excepthook = _record_callback_error


class CallbackError(AssertionError):
    """An exception was raised in a callback during the test."""


def raise_callback_errors():
    """Raises CallbackError from the first exception a callback raised."""
    if callback_errors:
        errors = list(callback_errors)
        callback_errors.clear()
        raise CallbackError('%d exception(s) raised in callbacks, the first: %r'
                            % (len(errors), errors[0])) from errors[0]


def iterate_until(cond, context=None, timeout=TIMEOUT_SECONDS):
    """Iterates @context (blocking) until cond() holds.

    Fails the test if that takes longer than @timeout seconds. Never sleeps:
    a timeout source attached to the same context wakes it up.
    """
    ctx = context if context is not None else GLib.MainContext.default()
    timed_out = []

    def on_timeout(*user_data):  # PyGObject passes the (None) user data
        timed_out.append(True)
        return GLib.SOURCE_REMOVE

    source = GLib.timeout_source_new_seconds(timeout)
    source.set_callback(on_timeout)
    source.attach(ctx)
    try:
        while not cond() and not timed_out:
            ctx.iteration(True)
            raise_callback_errors()
    finally:
        source.destroy()
    assert cond(), 'timed out waiting for %s' % (cond.__doc__ or cond)


def drain(context=None):
    """Dispatches what is ready without blocking, until nothing is.

    Used to show that something does NOT happen.
    """
    ctx = context if context is not None else GLib.MainContext.default()
    while ctx.iteration(False):
        raise_callback_errors()


def unpack(variant):
    return None if variant is None else variant.unpack()


class Recorder:
    """Records what a port emits: messages (data and ports) and close."""

    def __init__(self, port):
        self.port = port
        self.events = []
        self.n_close = 0
        self.messages_at_close = None
        self.threads = set()
        self._ids = [port.connect('message', self._on_message),
                     port.connect('close', self._on_close)]

    def _on_message(self, port, event):
        assert port is self.port
        self.events.append(event)
        self.threads.add(threading.get_ident())

    def _on_close(self, port):
        assert port is self.port
        self.n_close += 1
        self.messages_at_close = len(self.events)
        self.threads.add(threading.get_ident())

    @property
    def values(self):
        """The unpacked messages, in the order they arrived."""
        return [unpack(event.data) for event in self.events]

    def disconnect(self):
        """Disconnects the handlers, so that the port can go away."""
        for handler_id in self._ids:
            self.port.disconnect(handler_id)
        self._ids = []
        self.port = None


def listen(port):
    """Records what @port emits, and starts it."""
    rec = Recorder(port)
    port.start()
    return rec


def hang_up(port, *recorders):
    """Closes @port, then waits until each of @recorders has seen close."""
    port.close()
    iterate_until(lambda: all(rec.n_close for rec in recorders))


def assert_data_clone(excinfo):
    """Checks that a raised GLib.Error is MSG_PORT_ERROR_DATA_CLONE."""
    error = excinfo.value
    assert error.matches(Msg.port_error_quark(), Msg.PortError.DATA_CLONE), error
    assert error.domain == GLib.quark_to_string(Msg.port_error_quark())
    assert error.code == Msg.PortError.DATA_CLONE
