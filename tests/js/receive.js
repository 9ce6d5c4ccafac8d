// SPDX-License-Identifier: LGPL-2.1-or-later
// Awaiting messages from GJS: receive_async() through Gio._promisify, a
// `for await` loop over a port, the end of a channel, cancellation,
// receive() and flush_async().
import Gio from 'gi://Gio';
import GLib from 'gi://GLib';
import Msg from 'gi://Msg?version=1.0';

import {assert, assertEqual, iterateUntil, run, test} from './harness.js';

Gio._promisify(Msg.PortMain.prototype, 'receive_async', 'receive_finish');
Gio._promisify(Msg.PortMain.prototype, 'flush_async', 'flush_finish');

// The messages of a port, until its channel ends.
async function* messages(port) {
    for (;;) {
        let event;
        try {
            event = await port.receive_async(null);
        } catch (e) {
            if (e instanceof GLib.Error && e.domain === Msg.port_error_quark())
                return;  // the close reason: the channel ended
            throw e;
        }
        yield event;
    }
}

// Runs an async test function to completion on the default context.
function runAsync(func) {
    let done = false, error = null;
    func().then(() => (done = true), e => {
        error = e;
        done = true;
    });
    iterateUntil(() => done);
    if (error !== null)
        throw error;
}

test('/receive/for-await', () => runAsync(async () => {
    const ch = new Msg.ChannelMain();
    for (let i = 0; i < 10; i++)
        ch.port1.post(new GLib.Variant('u', i));
    ch.port1.close();
    const got = [];
    for await (const event of messages(ch.port2))
        got.push(event.get_data().unpack());
    assertEqual(got, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert(!ch.port2.is_started());
}));

test('/receive/pending-fifo-and-end', () => runAsync(async () => {
    const ch = new Msg.ChannelMain();
    const first = ch.port2.receive_async(null);
    const second = ch.port2.receive_async(null);
    const third = ch.port2.receive_async(null);
    ch.port1.post(new GLib.Variant('s', 'a'));
    ch.port1.post(new GLib.Variant('s', 'b'));
    ch.port1.close();
    assertEqual((await first).get_data().unpack(), 'a');
    assertEqual((await second).get_data().unpack(), 'b');
    let reason = null;
    try {
        await third;
    } catch (e) {
        reason = e;
    }
    assert(reason !== null && reason.matches(Msg.PortError, Msg.PortError.PEER_CLOSED),
        `${reason}`);
}));

test('/receive/cancel', () => runAsync(async () => {
    const ch = new Msg.ChannelMain();
    const cancellable = new Gio.Cancellable();
    const pending = ch.port2.receive_async(cancellable);
    cancellable.cancel();
    let error = null;
    try {
        await pending;
    } catch (e) {
        error = e;
    }
    assert(error !== null && error.matches(Gio.IOErrorEnum, Gio.IOErrorEnum.CANCELLED), `${error}`);
    // Nothing was taken from the port.
    ch.port1.post(new GLib.Variant('s', 'kept'));
    assertEqual((await ch.port2.receive_async(null)).get_data().unpack(), 'kept');
}));

test('/receive/started-port-refuses', () => runAsync(async () => {
    const ch = new Msg.ChannelMain();
    ch.port2.start();
    let error = null;
    try {
        await ch.port2.receive_async(null);
    } catch (e) {
        error = e;
    }
    assert(error !== null && error.matches(Msg.PortError, Msg.PortError.INVALID_ARGUMENT), `${error}`);
    ch.port2.close();
}));

test('/receive/sync-with-timeout', () => {
    const ch = new Msg.ChannelMain();
    let error = null;
    try {
        ch.port2.receive(0, null);
    } catch (e) {
        error = e;
    }
    assert(error !== null && error.matches(Gio.IOErrorEnum, Gio.IOErrorEnum.TIMED_OUT), `${error}`);
    ch.port1.post(new GLib.Variant('s', 'now'));
    assertEqual(ch.port2.receive(-1, null).get_data().unpack(), 'now');
});

test('/receive/ports-and-flush', () => runAsync(async () => {
    const ch = new Msg.ChannelMain();
    const inner = new Msg.ChannelMain();
    ch.port1.post_message(new GLib.Variant('s', 'with a port'), [inner.port2]);
    assert(await ch.port1.flush_async(null));
    const event = await ch.port2.receive_async(null);
    const [port] = event.get_ports();
    inner.port1.post(new GLib.Variant('s', 'through'));
    assertEqual((await port.receive_async(null)).get_data().unpack(), 'through');
}));

test('/priority/property', () => {
    const ch = new Msg.ChannelMain();
    assertEqual(ch.port1.priority, GLib.PRIORITY_DEFAULT);
    ch.port1.priority = GLib.PRIORITY_HIGH;
    assertEqual(ch.port1.get_priority(), GLib.PRIORITY_HIGH);
});

run();
