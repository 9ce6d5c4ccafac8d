// SPDX-License-Identifier: LGPL-2.1-or-later
// Flow control and counters, from GJS: wait_writable_async() promisified.
import Gio from 'gi://Gio';
import GLib from 'gi://GLib';
import Msg from 'gi://Msg?version=1.0';

import {assert, assertEqual, drain, iterateUntil, run, test} from './harness.js';

Gio._promisify(Msg.PortMain.prototype, 'wait_writable_async', 'wait_writable_finish');

const KIB = 1024;

function message(i) {
    return new GLib.Variant('ay', new Uint8Array(KIB).fill(i % 256));
}

/** Runs an async function to its end on the default context. */
function settle(promise) {
    const outcome = {};
    promise.then(value => {
        outcome.value = value;
        outcome.done = true;
    }, error => {
        outcome.error = error;
        outcome.done = true;
    });
    iterateUntil(() => outcome.done);
    return outcome;
}

test('/flow/counters-and-properties', () => {
    const ch = new Msg.ChannelMain();
    for (let i = 0; i < 3; i++)
        ch.port1.post(message(i));
    assertEqual(ch.port1.buffered_amount, 3 * KIB, 'buffered-amount');
    assertEqual(ch.port1.buffered_messages, 3, 'buffered-messages');
    assertEqual(ch.port1.get_bytes_sent(), 3 * KIB, 'bytes-sent');
    assertEqual(ch.port2.queued_messages, 3, 'queued-messages');
    assert(ch.port1.writable, 'writable');
    let received = 0;
    ch.port2.connect('message', () => received++);
    ch.port2.start();
    iterateUntil(() => received === 3 && ch.port1.buffered_messages === 0);
    assertEqual(ch.port2.messages_received, 3, 'messages-received');
    assertEqual(ch.port2.max_queued_messages, 3, 'max-queued-messages');
    ch.port1.close();
    drain();
});

test('/flow/paced-producer-awaits-writable', () => {
    const ch = new Msg.ChannelMain();
    const port = ch.port1;
    const mark = 4 * KIB;
    let drains = 0, received = 0, maxBuffered = 0;
    port.high_water_mark = mark;
    port.connect('drain', () => drains++);
    port.start();
    ch.port2.connect('message', () => received++);
    ch.port2.start();

    const n = 100;
    const outcome = settle((async () => {
        for (let i = 0; i < n; i++) {
            if (!port.writable)
                assertEqual(await port.wait_writable_async(null), true, 'wait result');
            port.post(message(i));
            maxBuffered = Math.max(maxBuffered, port.buffered_amount);
        }
    })());
    if (outcome.error)
        throw outcome.error;
    iterateUntil(() => received === n);
    assert(maxBuffered <= mark, `buffered ${maxBuffered} above the mark`);
    assert(drains > 0, 'no drain');
    port.close();
    drain();
});

test('/flow/wait-fails-with-close-reason-and-cancel', () => {
    const ch = new Msg.ChannelMain();
    const port = ch.port1;
    port.set_high_water_mark(KIB);
    port.post(message(0));
    assert(!port.is_writable(), 'above the mark');

    const cancellable = new Gio.Cancellable();
    const waiting = port.wait_writable_async(cancellable);
    cancellable.cancel();
    const cancelled = settle(waiting);
    assert(cancelled.error?.matches(Gio.IOErrorEnum, Gio.IOErrorEnum.CANCELLED),
        `not cancelled: ${cancelled.error}`);

    const closing = port.wait_writable_async(null);
    ch.port2.close();
    const closed = settle(closing);
    assert(closed.error?.matches(Msg.PortError, Msg.PortError.PEER_CLOSED),
        `not the close reason: ${closed.error}`);
    assertEqual(port.buffered_amount, 0, 'buffered after the end');
    assert(port.writable, 'writable after the end');
});

run();
