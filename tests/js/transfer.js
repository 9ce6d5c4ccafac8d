// SPDX-License-Identifier: LGPL-2.1-or-later
// Transfer lists: moving ports with messages, from GJS.
import GLib from 'gi://GLib';
import Msg from 'gi://Msg?version=1.0';

import {
    Recorder, assert, assertEqual, assertThrowsPortError, drain, hangUp, iterateUntil,
    listen, run, test,
} from './harness.js';

function range(from, to) {
    return Array.from({length: to - from}, (_, i) => from + i);
}

test('/transfer/ports-arrive-in-order-and-work', () => {
    const carrier = new Msg.ChannelMain();
    const a = new Msg.ChannelMain(), b = new Msg.ChannelMain();
    const rec = listen(carrier.port2);

    assert(carrier.port1.post_message(new GLib.Variant('s', 'ports'), [a.port2, b.port2]));
    assert(a.port2.is_neutered() && b.port2.is_neutered());
    iterateUntil(() => rec.events.length === 1);

    const [event] = rec.events;
    assertEqual(event.data.deepUnpack(), 'ports');
    assertEqual(event.nPorts, 2);
    const [movedA, movedB] = event.ports;
    const array = event.get_ports();
    assert(array.length === 2 && array[0] === movedA && array[1] === movedB);
    assert(event.get_port(1) === movedB);
    assert(movedA !== a.port2);
    assert(!movedA.is_started() && !movedA.is_neutered());

    const recMoved = listen(movedA), recA1 = listen(a.port1);
    a.port1.post(new GLib.Variant('u', 1));
    movedA.post(new GLib.Variant('u', 2));
    assert(a.port2.post(new GLib.Variant('u', 3)) === true);  // neutered: nothing
    a.port2.start();
    a.port2.close();
    assert(!a.port2.is_started() && !a.port2.is_closed());
    iterateUntil(() => recMoved.events.length === 1 && recA1.events.length === 1);
    assertEqual(recMoved.values, [1]);
    assertEqual(recA1.values, [2]);

    movedB.close();
    hangUp(movedA, recA1, recMoved);
    hangUp(carrier.port1, rec);
    assertEqual(recA1.values, [2]);
});

for (const started of [false, true]) {
    test(`/transfer/queued-follow/${started ? 'started' : 'unstarted'}`, () => {
        const carrier = new Msg.ChannelMain();
        const ch = new Msg.ChannelMain();
        const sender = ch.port1, moving = ch.port2;
        const rec = listen(carrier.port2);
        const recOld = new Recorder(moving);
        if (started)
            moving.start();

        for (let i = 0; i < 50; i++)
            sender.post(new GLib.Variant('u', i));
        carrier.port1.post_message(null, [moving]);
        for (let i = 50; i < 100; i++)
            sender.post(new GLib.Variant('u', i));
        iterateUntil(() => rec.events.length === 1);
        const [moved] = rec.events[0].ports;
        for (let i = 100; i < 150; i++)
            sender.post(new GLib.Variant('u', i));
        const recNew = listen(moved);
        iterateUntil(() => recNew.events.length === 150);
        assertEqual(recNew.values, range(0, 150));

        hangUp(sender, recNew);
        drain();
        assertEqual([recOld.events.length, recOld.nClose], [0, 0]);
        hangUp(carrier.port1, rec);
    });
}

test('/transfer/from-own-handler', () => {
    const carrier = new Msg.ChannelMain();
    const ch = new Msg.ChannelMain();
    const rec = listen(carrier.port2);
    const seen = [];
    ch.port2.connect('message', (port, event) => {
        seen.push(event.data.deepUnpack());
        if (seen.length === 10) {
            carrier.port1.post_message(null, [port]);
            assert(port.is_neutered());
        }
    });
    for (let i = 0; i < 30; i++)
        ch.port1.post(new GLib.Variant('u', i));
    ch.port2.start();
    iterateUntil(() => rec.events.length === 1);
    assertEqual(seen, range(0, 10));
    const [moved] = rec.events[0].ports;
    const recNew = listen(moved);
    iterateUntil(() => recNew.events.length === 20);
    assertEqual(recNew.values, range(10, 30));
    assertEqual(seen, range(0, 10));
    hangUp(moved, recNew);
    hangUp(carrier.port1, rec);
});

test('/transfer/received-port-moves-on', () => {
    const first = new Msg.ChannelMain(), second = new Msg.ChannelMain();
    const ch = new Msg.ChannelMain();
    const recFirst = listen(first.port2), recSecond = listen(second.port2);
    first.port1.post_message(null, [ch.port2]);
    iterateUntil(() => recFirst.events.length === 1);
    const [hop] = recFirst.events[0].ports;
    second.port1.post_message(null, [hop]);
    assert(hop.is_neutered());
    iterateUntil(() => recSecond.events.length === 1);
    const [final] = recSecond.events[0].ports;
    const recFinal = listen(final);
    ch.port1.post(new GLib.Variant('s', 'two hops'));
    iterateUntil(() => recFinal.events.length === 1);
    assertEqual(recFinal.values, ['two hops']);
    hangUp(final, recFinal);
    hangUp(first.port1, recFirst);
    hangUp(second.port1, recSecond);
});

const BAD_LISTS = {
    self: ctx => ctx.ch.port1,
    duplicate: ctx => ctx.good.port1,
    'already-transferred': ctx => {
        assert(ctx.sink.port1.post_message(null, [ctx.other.port1]));
        return ctx.other.port1;
    },
    closed: ctx => {
        ctx.other.port1.close();
        return ctx.other.port1;
    },
};

for (const [kind, makeBad] of Object.entries(BAD_LISTS)) {
    test(`/transfer/error/${kind}`, () => {
        const ctx = {
            ch: new Msg.ChannelMain(),
            good: new Msg.ChannelMain(),
            other: new Msg.ChannelMain(),
            sink: new Msg.ChannelMain(),
        };
        const {ch, good} = ctx;
        const rec = listen(ch.port2);
        const transfer = [good.port1, makeBad(ctx), good.port2];

        assertThrowsPortError(() => ch.port1.post_message(new GLib.Variant('u', 1), transfer),
            Msg.PortError.DATA_CLONE);
        assert(!good.port1.is_neutered() && !good.port2.is_neutered());
        assert(!ch.port1.is_neutered());

        // The same errors come first on a closed port too.
        ch.port1.close();
        assertThrowsPortError(() => ch.port1.post_message(new GLib.Variant('u', 1), transfer),
            Msg.PortError.DATA_CLONE);
        assert(!good.port1.is_neutered());
        iterateUntil(() => rec.nClose === 1);
        assertEqual(rec.events.length, 0);
        // Received a message and never started: close, or dropping it warns.
        ctx.sink.port2.close();
    });
}

test('/transfer/error/null', () => {
    // GJS 1.74 refuses null in an array of objects before the call, with
    // a plain Error, so the library never sees it; nothing is sent.
    const ch = new Msg.ChannelMain();
    const good = new Msg.ChannelMain();
    const rec = listen(ch.port2);
    let error = null;
    try {
        ch.port1.post_message(new GLib.Variant('u', 1), [good.port1, null]);
    } catch (e) {
        error = e;
    }
    assert(error !== null, 'did not throw');
    assert(!good.port1.is_neutered());
    hangUp(ch.port1, rec);
    assertEqual(rec.events.length, 0);
});

test('/transfer/doomed', () => {
    const ch = new Msg.ChannelMain();
    const other = new Msg.ChannelMain();
    const rec1 = listen(ch.port1), rec2 = listen(ch.port2);
    const recOther = listen(other.port1);

    assert(ch.port1.post_message(new GLib.Variant('u', 1), [other.port2, ch.port2]) === true);
    assert(ch.port2.is_neutered() && other.port2.is_neutered());
    assert(ch.port1.is_closed());
    iterateUntil(() => rec1.nClose === 1 && recOther.nClose === 1);
    assertEqual(ch.port1.get_close_reason().code, Msg.PortError.CLOSED);
    drain();
    assertEqual([rec1.events.length, rec2.events.length, rec2.nClose], [0, 0, 0]);
});

test('/transfer/on-closed-port', () => {
    const ch = new Msg.ChannelMain();
    const other = new Msg.ChannelMain();
    const recOther = listen(other.port1);
    ch.port1.close();
    assert(ch.port1.post_message(null, [other.port2]) === true);
    assert(other.port2.is_neutered());
    iterateUntil(() => recOther.nClose === 1);
});

test('/transfer/neutered-sender-ignores-list', () => {
    const carrier = new Msg.ChannelMain();
    const ch = new Msg.ChannelMain();
    const other = new Msg.ChannelMain();
    const moving = ch.port1;
    assert(carrier.port1.post_message(null, [moving]));
    assert(moving.post_message(null, [other.port1, other.port1]) === true);
    assert(!other.port1.is_neutered() && !other.port1.is_closed());
    // Received a message and never started: close, or dropping it warns.
    carrier.port2.close();
});

test('/transfer/disconnected-port', () => {
    const carrier = new Msg.ChannelMain();
    const ch = new Msg.ChannelMain();
    const moving = ch.port2;
    const rec = new Recorder(carrier.port2);
    const recOld = listen(moving);
    ch.port1.post(new GLib.Variant('u', 1));
    hangUp(ch.port1, recOld);
    assertEqual(recOld.values, [1]);

    carrier.port2.start();
    assert(carrier.port1.post_message(null, [moving]));
    iterateUntil(() => rec.events.length === 1);
    const [moved] = rec.events[0].ports;
    const recNew = listen(moved);
    iterateUntil(() => recNew.nClose === 1);
    assertEqual(recNew.events.length, 0);
    assertEqual(moved.get_close_reason().code, Msg.PortError.PEER_CLOSED);
    hangUp(carrier.port1, rec);
});

run();
