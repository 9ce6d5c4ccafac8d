#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The helper process of examples/js/offload.js.

It answers the requests that come on its parent port (made by
Msg.PortMain.request_async() in the parent) with event.reply(): each
request is a job ('(su)': its name and its argument), each reply a number
('t'). A job it does not know gets no reply: the helper drops the event,
and with it the reply port, so the parent's request fails with
Msg.PortError.NO_REPLY. When the parent closes the port, the helper exits.

    offload_helper.py   as examples/js/offload.js spawns it
"""

import sys

import gi

gi.require_version('Msg', '1.0')
from gi.repository import GLib, Msg  # noqa: E402


def count_primes(limit):
    """The primes below limit, by a sieve: some work worth a process."""
    if limit < 3:
        return 0
    sieve = bytearray([1]) * limit
    sieve[0:2] = b'\0\0'
    for i in range(2, int(limit ** 0.5) + 1):
        if sieve[i]:
            sieve[i * i::i] = bytearray(len(range(i * i, limit, i)))
    return sum(sieve)


JOBS = {
    'count-primes': count_primes,
    'sum-of-squares': lambda n: sum(i * i for i in range(n)),
}


def main():
    loop = GLib.MainLoop()
    parent = Msg.PortMain.get_parent_port()
    if parent is None:
        print('offload_helper.py: not spawned with a parent port', file=sys.stderr)
        return 1

    def on_request(port, event):
        name, arg = event.data.unpack()
        job = JOBS.get(name)
        if job is None:
            print('  helper: no job "%s": no reply' % name, flush=True)
            return
        result = job(arg)
        print('  helper: %s(%d) = %d' % (name, arg, result), flush=True)
        event.reply(GLib.Variant('t', result))

    parent.connect('message', on_request)
    parent.connect('close', lambda port: loop.quit())
    parent.start()
    loop.run()
    return 0


if __name__ == '__main__':
    sys.exit(main())
