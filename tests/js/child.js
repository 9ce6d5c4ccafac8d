// SPDX-License-Identifier: LGPL-2.1-or-later
// A child process in GJS, talking to its parent through the parent port:
// tests/python/child.py in JavaScript, with the same modes.
//
//   gjs -m child.js [echo]         posts every message back, with its ports;
//                                  when the parent closes, exits 0 if the
//                                  close reason is PEER_CLOSED
//   gjs -m child.js close          posts 'bye', flushes, closes the port, and
//                                  once it has emitted close with the reason
//                                  CLOSED, waits for the end of its standard
//                                  input, then exits 0
//   gjs -m child.js close-exit     posts 'bye', closes the port, flushes, and
//                                  exits at once
//   gjs -m child.js burst-exit N   posts the numbers 0 .. N-1 (as 't'),
//                                  flushes, and exits at once, without closing
//   gjs -m child.js stream         posts numbers (as 't') in bursts until killed
//
// Any failure exits non-zero.
import Gio from 'gi://Gio';
import GLib from 'gi://GLib';
import Msg from 'gi://Msg?version=1.0';
import System from 'system';

function fail(what) {
    printerr(`child.js: ${what}`);
    System.exit(1);
}

const [mode = 'echo', arg = '0'] = System.programArgs;
const loop = new GLib.MainLoop(null, false);
let status = 0;

const parent = Msg.PortMain.get_parent_port();
if (parent === null)
    fail('no parent port');
if (Msg.PortMain.get_parent_port() !== parent || GLib.getenv(Msg.PARENT_PORT_ENV) !== null)
    fail('the parent port is not taken once');

function quitExpecting(expected) {
    return port => {
        const reason = port.get_close_reason();
        if (reason === null || !reason.matches(Msg.PortError, expected)) {
            printerr(`child.js: closed with reason ${reason}, expected code ${expected}`);
            status = 1;
        }
        loop.quit();
    };
}

switch (mode) {
case 'echo':
    parent.connect('message', (port, event) => {
        port.post_message(event.data, event.get_ports());
    });
    parent.connect('close', quitExpecting(Msg.PortError.PEER_CLOSED));
    break;
case 'close':
    // Started first: a port closed before it was started emits nothing.
    parent.connect('close', quitExpecting(Msg.PortError.CLOSED));
    parent.start();
    parent.post(new GLib.Variant('s', 'bye'));
    parent.flush(null);
    parent.close();
    break;
case 'close-exit':
    parent.post(new GLib.Variant('s', 'bye'));
    parent.close();
    parent.flush(null);
    System.exit(0);
    break;
case 'burst-exit': {
    const n = Number(arg);
    for (let i = 0; i < n; i++)
        parent.post(new GLib.Variant('t', i));
    parent.flush(null);
    // Right away: no close, no main loop.
    System.exit(0);
    break;
}
case 'stream': {
    let next = 0;
    GLib.idle_add(GLib.PRIORITY_DEFAULT_IDLE, () => {
        for (let i = 0; i < 100; i++)
            parent.post(new GLib.Variant('t', next++));
        return GLib.SOURCE_CONTINUE;
    });
    parent.connect('close', () => loop.quit());
    break;
}
default:
    fail(`unknown mode '${mode}'`);
}

parent.start();
loop.run();
if (mode === 'close') {
    // The close frame is written by the library's I/O thread, and nothing
    // says when it is out (flush() after close() returns at once): stay
    // until the parent has seen it and closes our standard input.
    const stdin = new Gio.UnixInputStream({fd: 0, closeFd: false});
    while (stdin.read_bytes(4096, null).get_size() > 0)
        ;
}
System.exit(status);
