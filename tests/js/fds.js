// SPDX-License-Identifier: LGPL-2.1-or-later
// Open file descriptors inside messages, from GJS (Gio.UnixFDList).
import Gio from 'gi://Gio';
import GLib from 'gi://GLib';
import Msg from 'gi://Msg?version=1.0';

import {assert, assertEqual, assertThrowsPortError, hangUp, iterateUntil, listen, run, test} from './harness.js';

/** A temporary file, open: [fd, path]. */
function tmpFile() {
    return GLib.file_open_tmp('msgport-fds-XXXXXX');
}

test('/fds/file-arrives-and-works', () => {
    const ch = new Msg.ChannelMain();
    const rec = listen(ch.port2);
    const [fd, path] = tmpFile();
    const list = Gio.UnixFDList.new_from_array([fd]);  // takes fd

    assert(ch.port1.post_with_unix_fd_list(new GLib.Variant('(sh)', ['file', 0]), [], list));
    iterateUntil(() => rec.events.length === 1);
    const event = rec.events[0];
    const received = event.get_unix_fd_list();
    assert(received !== null && event.unix_fd_list === received);
    assertEqual(received.get_length(), 1);
    assert(received.peek_fds()[0] !== list.peek_fds()[0], 'the receiver has its own');
    const [, handle] = event.data.deepUnpack();
    const out = Gio.UnixOutputStream.new(received.get(handle), true);
    out.write_all(new TextEncoder().encode('from gjs'), null);
    out.close(null);
    const [, contents] = GLib.file_get_contents(path);
    assertEqual(new TextDecoder().decode(contents), 'from gjs');
    GLib.unlink(path);
    hangUp(ch.port1, rec);
});

test('/fds/without-list', () => {
    const ch = new Msg.ChannelMain();
    const rec = listen(ch.port2);
    assert(ch.port1.post_with_unix_fd_list(new GLib.Variant('h', 7), [], null));
    assert(ch.port1.post_with_unix_fd_list(new GLib.Variant('h', -1), [], Gio.UnixFDList.new()));
    iterateUntil(() => rec.events.length === 2);
    assertEqual(rec.values, [7, -1]);
    assert(rec.events.every(e => e.get_unix_fd_list() === null));
    hangUp(ch.port1, rec);
});

test('/fds/bad-handle-refused', () => {
    const ch = new Msg.ChannelMain();
    const other = new Msg.ChannelMain();
    const rec = listen(ch.port2);
    const [fd, path] = tmpFile();
    const list = Gio.UnixFDList.new_from_array([fd]);
    GLib.unlink(path);

    for (const handle of [1, -2]) {
        assertThrowsPortError(() => ch.port1.post_with_unix_fd_list(
            new GLib.Variant('ah', [0, handle]), [other.port2], list), Msg.PortError.DATA_CLONE);
    }
    assert(!other.port2.is_neutered());
    ch.port1.post(new GLib.Variant('s', 'next'));
    iterateUntil(() => rec.events.length === 1);
    assertEqual(rec.values, ['next']);
    hangUp(ch.port1, rec);
});

run();
