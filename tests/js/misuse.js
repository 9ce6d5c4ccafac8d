// SPDX-License-Identifier: LGPL-2.1-or-later
// What a new user tries first from GJS, and gets wrong: objects made
// without a channel, out-of-range numbers. Each gives an exception or a
// documented result, never a crash or a CRITICAL (the suite runs with
// G_DEBUG=fatal-criticals, which would abort GJS).
import GLib from 'gi://GLib';
import GObject from 'gi://GObject';
import Gio from 'gi://Gio';
import Msg from 'gi://Msg?version=1.0';
import System from 'system';

import {assert, assertEqual, assertThrowsPortError, drain, iterateUntil, listen, run, test} from './harness.js';

for (const [name, make] of [['new', () => new Msg.PortMain()],
    ['gobject-new', () => GObject.Object.new(Msg.PortMain.$gtype, [], [])]]) {
    test(`/misuse/port-without-channel/${name}`, () => {
        const port = make();
        assert(port.is_closed(), 'closed');
        assert(!port.is_started() && !port.is_neutered(), 'not started, not neutered');
        const reason = port.get_close_reason();
        assert(reason.matches(Msg.PortError, Msg.PortError.CLOSED), `reason ${reason}`);
        const rec = listen(port);
        assert(!port.is_started(), 'start() does nothing');
        assert(port.post(new GLib.Variant('s', 'dropped')), 'post');
        assert(port.post_message(null, []), 'post_message');
        assert(port.flush(null), 'flush');
        port.close();
        drain();
        assertEqual(rec.events.length + rec.nClose, 0, 'nothing emitted');

        const ch = new Msg.ChannelMain();
        assertThrowsPortError(() => ch.port1.post_message(null, [port]), Msg.PortError.DATA_CLONE);
        assert(!port.is_neutered(), 'not neutered by a refused post');
        System.gc();
    });
}

test('/misuse/channel-and-event-from-gobject-new', () => {
    const ch = GObject.Object.new(Msg.ChannelMain.$gtype, [], []);
    const rec = listen(ch.port2);
    ch.port1.post(new GLib.Variant('u', 7));
    iterateUntil(() => rec.events.length === 1);
    assertEqual(rec.values, [7]);

    const event = new Msg.MessageEvent();
    assertEqual(event.data, null, 'data');
    assertEqual(event.nPorts, 0, 'n-ports');
    assertEqual(event.get_ports().length, 0, 'get_ports()');
    assertEqual([...event.ports].length, 0, 'ports');
    assertEqual(event.get_port(0), null, 'get_port(0)');
});

test('/misuse/get-port-out-of-range-is-null', () => {
    const carrier = new Msg.ChannelMain(), other = new Msg.ChannelMain();
    const rec = listen(carrier.port2);
    carrier.port1.post_message(null, [other.port1]);
    iterateUntil(() => rec.events.length === 1);
    const [event] = rec.events;
    assert(event.get_port(0) instanceof Msg.PortMain, 'port 0');
    assertEqual(event.get_port(1), null, 'get_port(1)');
    assertEqual(event.get_port(5), null, 'get_port(5)');
    carrier.port1.close();
});

test('/misuse/new-for-launcher-child-fd', () => {
    for (const childFd of [-5, -2, 0, 1, 2]) {
        const launcher = Gio.SubprocessLauncher.new(Gio.SubprocessFlags.NONE);
        const e = assertThrowsPortError(() => Msg.PortMain.new_for_launcher(launcher, childFd),
            Msg.PortError.INVALID_ARGUMENT);
        assert(e.message.includes(`${childFd}`), e.message);
        launcher.close();
    }
    const launcher = Gio.SubprocessLauncher.new(Gio.SubprocessFlags.NONE);
    const port = Msg.PortMain.new_for_launcher(launcher, -1);
    assertThrowsPortError(() => Msg.PortMain.new_for_launcher(launcher, 4),
        Msg.PortError.INVALID_ARGUMENT);
    launcher.close();
    port.close();
});

test('/misuse/new-for-fd-not-a-socket', () => {
    // GJS turns any number into an int before the call (1.5 becomes 1):
    // the library then checks what the descriptor is. (Numbers that land
    // on a standard stream are left out: under a test runner one may be a
    // socket.)
    for (const fd of [-1, -1.5, 2 ** 40])
        assertThrowsPortError(() => Msg.PortMain.new_for_fd(fd), Msg.PortError.INVALID_SOCKET);
});

run();
