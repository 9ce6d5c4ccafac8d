// SPDX-License-Identifier: LGPL-2.1-or-later
// Channels, posting, starting and delivery order, from GJS.
import GLib from 'gi://GLib';
import Msg from 'gi://Msg?version=1.0';

import {Recorder, assert, assertEqual, drain, hangUp, iterateUntil, listen, run, test} from './harness.js';

test('/channel/ports', () => {
    const ch = new Msg.ChannelMain();
    const {port1, port2} = ch;
    assert(port1 instanceof Msg.PortMain && port2 instanceof Msg.PortMain);
    assert(port1 !== port2);
    assert(ch.get_port1() === port1 && ch.get_port2() === port2);
    for (const port of [port1, port2]) {
        assert(!port.is_started() && !port.is_closed() && !port.is_neutered());
        assertEqual(port.get_close_reason(), null);
    }
});

test('/version', () => {
    assertEqual(Msg.get_major_version(), 1);
    assertEqual(Msg.check_version(Msg.get_major_version(), 0, 0), null);
    assert(Msg.check_version(Msg.get_major_version() + 1, 0, 0) !== null);
});

const VALUES = [
    ['s', 'hello'], ['s', ''], ['b', true], ['y', 255], ['n', -32768], ['q', 65535],
    ['i', -7], ['u', 7], ['x', -(2 ** 53)], ['t', 2 ** 53], ['d', 3.5],
    ['o', '/org/example/Object'], ['as', ['a', 'b']], ['aai', [[1, 2], [], [3]]],
    ['a{sv}', {name: new GLib.Variant('s', 'x')}], ['(sidb)', ['s', 1, 2.5, false]],
    ['()', []], ['v', new GLib.Variant('s', 'boxed')], ['mi', null], ['mi', 5],
];

test('/post/values-arrive-equal', () => {
    const ch = new Msg.ChannelMain();
    const rec = listen(ch.port2);
    const sent = VALUES.map(([type, value]) => new GLib.Variant(type, value));
    sent.push(new GLib.Variant('ay', new Uint8Array(1 << 20).fill(7)));  // 1 MiB
    for (const value of sent)
        assert(ch.port1.post(value) === true);
    iterateUntil(() => rec.events.length === sent.length);
    rec.events.forEach((event, i) => {
        const got = event.data;
        assertEqual(got.get_type_string(), sent[i].get_type_string());
        assert(got.equal(sent[i]), `message ${i} (${sent[i].print(true)}) differs`);
        assert(event.get_data().equal(sent[i]));
    });
    hangUp(ch.port1, rec);
});

test('/post/null', () => {
    const ch = new Msg.ChannelMain();
    const rec = listen(ch.port2);
    assert(ch.port1.post(null));
    assert(ch.port1.post_message(null, []));
    assert(ch.port1.post_message(null, null));
    iterateUntil(() => rec.events.length === 3);
    for (const event of rec.events) {
        assertEqual(event.data, null);
        assertEqual(event.get_data(), null);
        assertEqual(event.nPorts, 0);
        assertEqual([...event.ports].length, 0);
        assertEqual(event.get_ports().length, 0);
    }
    hangUp(ch.port1, rec);
});

test('/post/emits-nothing-by-itself', () => {
    const ch = new Msg.ChannelMain();
    const rec = listen(ch.port2);
    ch.port1.post(new GLib.Variant('i', 1));
    assertEqual(rec.events.length, 0);
    iterateUntil(() => rec.events.length === 1);
    hangUp(ch.port1, rec);
});

test('/post/order-both-directions', () => {
    const ch = new Msg.ChannelMain();
    const rec1 = listen(ch.port1), rec2 = listen(ch.port2);
    const expected1 = [], expected2 = [];
    for (let i = 0; i < 500; i++) {
        ch.port1.post(new GLib.Variant('u', i));
        ch.port2.post(new GLib.Variant('u', 1000 + i));
        expected2.push(i);
        expected1.push(1000 + i);
    }
    iterateUntil(() => rec1.events.length === 500 && rec2.events.length === 500);
    assertEqual(rec2.values, expected2);
    assertEqual(rec1.values, expected1);
    hangUp(ch.port1, rec1, rec2);
});

test('/post/queued-until-start', () => {
    const ch = new Msg.ChannelMain();
    const rec = new Recorder(ch.port2);
    const expected = [];
    for (let i = 0; i < 100; i++) {
        ch.port1.post(new GLib.Variant('u', i));
        expected.push(i);
    }
    drain();
    assertEqual(rec.events.length, 0);
    ch.port2.start();
    ch.port2.start();  // a second start() does nothing
    assert(ch.port2.is_started());
    iterateUntil(() => rec.events.length === 100);
    drain();
    assertEqual(rec.values, expected);
    hangUp(ch.port2, rec);
});

test('/post/from-handler-waits-for-next-dispatch', () => {
    const ch = new Msg.ChannelMain();
    const rec1 = listen(ch.port1);
    const seen = [];
    ch.port2.connect('message', (port, event) => {
        seen.push(event.data.deepUnpack());
        port.post(new GLib.Variant('s', 'reply'));
    });
    ch.port2.start();
    ch.port1.post(new GLib.Variant('s', 'ping'));
    iterateUntil(() => seen.length === 1);
    assertEqual(rec1.events.length, 0);
    iterateUntil(() => rec1.events.length === 1);
    assertEqual(rec1.values, ['reply']);
    hangUp(ch.port1, rec1);
});

test('/message-func/instead-of-signal', () => {
    const ch = new Msg.ChannelMain();
    const signals = [], values = [];
    ch.port2.connect('message', (port, event) => signals.push(event));
    ch.port2.set_message_func((port, event) => {
        assert(port === ch.port2);
        values.push(event.data.deepUnpack());
    });
    ch.port2.start();
    for (let i = 0; i < 10; i++)
        ch.port1.post(new GLib.Variant('u', i));
    iterateUntil(() => values.length === 10);
    assertEqual(values, [...Array(10).keys()]);
    assertEqual(signals.length, 0);

    ch.port2.set_message_func(null);
    ch.port1.post(new GLib.Variant('u', 10));
    iterateUntil(() => signals.length === 1);
    assertEqual(values.length, 10);
    ch.port1.close();
    iterateUntil(() => ch.port2.get_close_reason() !== null);
});

run();
