// SPDX-License-Identifier: LGPL-2.1-or-later
// Smoke test: Msg-1.0.typelib loads from GJS and carries a message.
import GLib from 'gi://GLib';
import Msg from 'gi://Msg?version=1.0';

const ctx = GLib.MainContext.default();
const ch = new Msg.ChannelMain();
let got = null;
ch.port2.connect('message', (port, event) => { got = event.data; });
ch.port2.start();
ch.port1.post(new GLib.Variant('s', 'hi'));

let timedOut = false;
const id = GLib.timeout_add_seconds(GLib.PRIORITY_DEFAULT, 30, () => { timedOut = true; return GLib.SOURCE_REMOVE; });
while (got === null && !timedOut)
    ctx.iteration(true);
if (timedOut)
    throw new Error('timed out');
GLib.source_remove(id);
if (got.deepUnpack() !== 'hi')
    throw new Error(`got ${got.deepUnpack()}`);
ch.port1.close();
print('1..1');
print('ok 1 /js/smoke');
