// SPDX-License-Identifier: LGPL-2.1-or-later
// close() and the close signal, from GJS.
import GLib from 'gi://GLib';
import Msg from 'gi://Msg?version=1.0';

import {Recorder, assert, assertEqual, drain, iterateUntil, listen, run, test} from './harness.js';

function closeReason(port) {
    const reason = port.get_close_reason();
    assert(reason === null || reason.domain === Msg.port_error_quark());
    return reason === null ? null : reason.code;
}

test('/close/delivers-first-then-close-once-each-end', () => {
    const ch = new Msg.ChannelMain();
    const rec1 = listen(ch.port1), rec2 = listen(ch.port2);
    const expected = [];
    for (let i = 0; i < 20; i++) {
        ch.port1.post(new GLib.Variant('u', i));
        expected.push(i);
    }
    ch.port2.post(new GLib.Variant('s', 'already in flight'));
    ch.port1.close();
    assert(ch.port1.is_closed());
    iterateUntil(() => rec1.nClose === 1 && rec2.nClose === 1);
    drain();
    assertEqual(rec2.values, expected);
    assertEqual(rec2.messagesAtClose, 20);
    assertEqual(rec1.values, ['already in flight']);
    assertEqual(rec1.messagesAtClose, 1);
    assertEqual([rec1.nClose, rec2.nClose], [1, 1]);
    assertEqual(closeReason(ch.port1), Msg.PortError.CLOSED);
    assertEqual(closeReason(ch.port2), Msg.PortError.PEER_CLOSED);
    assert(ch.port1.get_close_reason().matches(Msg.PortError, Msg.PortError.CLOSED));
});

test('/close/both-ends', () => {
    const ch = new Msg.ChannelMain();
    const rec1 = listen(ch.port1), rec2 = listen(ch.port2);
    ch.port1.close();
    ch.port2.close();
    iterateUntil(() => rec1.nClose > 0 && rec2.nClose > 0);
    drain();
    assertEqual([rec1.nClose, rec2.nClose], [1, 1]);
});

test('/close/from-handler', () => {
    const ch = new Msg.ChannelMain();
    const rec1 = listen(ch.port1);
    const closes = [];
    ch.port2.connect('message', port => port.close());
    ch.port2.connect('close', port => closes.push(port));
    ch.port2.start();
    ch.port1.post(new GLib.Variant('s', 'please hang up'));
    iterateUntil(() => closes.length > 0 && rec1.nClose > 0);
    drain();
    assert(closes.length === 1 && closes[0] === ch.port2);
    assertEqual(rec1.nClose, 1);
});

test('/close/unstarted-emits-nothing-there', () => {
    const ch = new Msg.ChannelMain();
    const rec1 = new Recorder(ch.port1), rec2 = new Recorder(ch.port2);
    ch.port2.post(new GLib.Variant('s', 'never delivered'));
    ch.port1.close();
    assertEqual(closeReason(ch.port1), Msg.PortError.CLOSED);
    ch.port2.start();
    iterateUntil(() => rec2.nClose === 1);
    drain();
    assertEqual([rec1.events.length, rec1.nClose, rec2.events.length], [0, 0, 0]);
    assertEqual(closeReason(ch.port2), Msg.PortError.PEER_CLOSED);
});

test('/close/closed-port-drops-posts', () => {
    const ch = new Msg.ChannelMain();
    const rec1 = new Recorder(ch.port1), rec2 = listen(ch.port2);
    ch.port1.close();
    assert(ch.port1.post(new GLib.Variant('s', 'dropped')) === true);
    assert(ch.port1.post_message(new GLib.Variant('s', 'dropped'), []) === true);
    ch.port1.start();
    ch.port1.close();
    assert(!ch.port1.is_started());
    iterateUntil(() => rec2.nClose === 1);
    drain();
    assertEqual([rec2.events.length, rec1.events.length, rec1.nClose], [0, 0, 0]);
});

test('/close/start-after-peer-went-away', () => {
    const ch = new Msg.ChannelMain();
    const rec2 = new Recorder(ch.port2);
    for (let i = 0; i < 3; i++)
        ch.port1.post(new GLib.Variant('u', i));
    ch.port1.close();
    assert(ch.port2.is_closed());
    drain();
    assertEqual([rec2.events.length, rec2.nClose], [0, 0]);
    ch.port2.start();
    iterateUntil(() => rec2.nClose === 1);
    assertEqual(rec2.values, [0, 1, 2]);
    assertEqual(rec2.messagesAtClose, 3);
});

run();
