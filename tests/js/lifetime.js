// SPDX-License-Identifier: LGPL-2.1-or-later
// Who keeps a port alive, from GJS, and the idioms JS users expect:
// event.data, event.ports, port.post(v).
import GLib from 'gi://GLib';
import Gio from 'gi://Gio';
import Msg from 'gi://Msg?version=1.0';
import System from 'system';

import {Recorder, assert, assertEqual, hangUp, iterateUntil, listen, run, test} from './harness.js';

test('/lifetime/started-port-owned-by-its-handler', () => {
    const got = [];
    let closed = false;
    const makeListener = () => {
        const ch = new Msg.ChannelMain();
        ch.port2.connect('message', (port, event) => got.push(event.data.deepUnpack()));
        ch.port2.connect('close', () => (closed = true));
        ch.port2.start();
        return ch.port1;  // nothing in JS refers to port2 any more
    };
    const port1 = makeListener();
    System.gc();
    port1.post(new GLib.Variant('s', 'still listening'));
    iterateUntil(() => got.length === 1);
    assertEqual(got, ['still listening']);
    port1.close();
    iterateUntil(() => closed);
});

test('/lifetime/event-nobody-keeps-drops-its-ports', () => {
    const carrier = new Msg.ChannelMain();
    const ch = new Msg.ChannelMain();
    const rec = listen(ch.port1);
    const seen = [];
    carrier.port2.connect('message', (port, event) => seen.push(event.nPorts));
    carrier.port2.start();
    carrier.port1.post_message(null, [ch.port2]);
    iterateUntil(() => seen.length === 1);
    // The event and its port are garbage now; collecting them closes the port.
    System.gc();
    iterateUntil(() => rec.nClose === 1);
    assertEqual(seen, [1]);
    assertEqual(ch.port1.get_close_reason().code, Msg.PortError.PEER_CLOSED);
    carrier.port1.close();
});

test('/idioms/event-data-and-ports', () => {
    const carrier = new Msg.ChannelMain();
    const a = new Msg.ChannelMain(), b = new Msg.ChannelMain();
    const rec = listen(carrier.port2);
    carrier.port1.post_message(new GLib.Variant('a{sv}', {k: new GLib.Variant('i', 1)}),
        [a.port1, b.port1]);
    carrier.port1.post(null);
    iterateUntil(() => rec.events.length === 2);

    const [event, empty] = rec.events;
    assert(event instanceof Msg.MessageEvent);
    assertEqual(event.data.deepUnpack().k.deepUnpack(), 1);
    assertEqual(event.data.recursiveUnpack(), {k: 1});
    assert(event.ports instanceof Gio.ListModel);
    assertEqual(event.ports.get_n_items(), 2);
    const [first, second] = event.ports;
    assert(first instanceof Msg.PortMain && second instanceof Msg.PortMain);
    assert(Array.from(event.ports).every((port, i) => port === event.get_ports()[i]));
    assert(event.ports === event.get_port_list());
    assertEqual(empty.data, null);
    assertEqual([...empty.ports].length, 0);

    const recA = listen(a.port2);
    first.post(new GLib.Variant('s', 'through a received port'));
    iterateUntil(() => recA.events.length === 1);
    assertEqual(recA.values, ['through a received port']);
    second.close();
    hangUp(first, recA);
    hangUp(carrier.port1, rec);
});

test('/idioms/errors-are-port-errors', () => {
    const ch = new Msg.ChannelMain();
    try {
        ch.port1.post_message(null, [ch.port1]);
        throw new Error('did not throw');
    } catch (e) {
        assert(e instanceof GLib.Error, `${e}`);
        assert(e instanceof Msg.PortError, `${e}`);
        assertEqual(e.code, Msg.PortError.DATA_CLONE);
    }
    const rec = new Recorder(ch.port2);
    ch.port1.close();
    assert(ch.port1.get_close_reason() instanceof Msg.PortError);
    assertEqual(rec.nClose, 0);
});

run();
