// SPDX-License-Identifier: LGPL-2.1-or-later
// Byte payloads from GJS: a Uint8Array in, a Uint8Array out.
import GLib from 'gi://GLib';
import Msg from 'gi://Msg?version=1.0';

import {assert, assertEqual, hangUp, iterateUntil, listen, run, test} from './harness.js';

function pattern(size) {
    const array = new Uint8Array(size);
    for (let i = 0; i < size; i++)
        array[i] = (i * 7) & 0xff;
    return array;
}

function sameBytes(a, b) {
    if (a.length !== b.length)
        return false;
    for (let i = 0; i < a.length; i++) {
        if (a[i] !== b[i])
            return false;
    }
    return true;
}

test('/bytes/uint8array', () => {
    const ch = new Msg.ChannelMain();
    const rec = listen(ch.port2);
    const payload = pattern(1 << 20);
    const bytes = new GLib.Bytes(payload);
    ch.port1.post(GLib.Variant.new_from_bytes(new GLib.VariantType('ay'), bytes, true));
    ch.port1.post(new GLib.Variant('ay', payload));
    iterateUntil(() => rec.events.length === 2);

    for (const event of rec.events) {
        assertEqual(event.data.get_type_string(), 'ay');
        const viaBytes = event.data.get_data_as_bytes().toArray();
        assert(viaBytes instanceof Uint8Array);
        assert(sameBytes(viaBytes, payload), 'get_data_as_bytes().toArray() differs');
        const unpacked = event.data.deepUnpack();
        assert(unpacked instanceof Uint8Array);
        assert(sameBytes(unpacked, payload), 'deepUnpack() differs');
    }
    hangUp(ch.port1, rec);
});

run();
