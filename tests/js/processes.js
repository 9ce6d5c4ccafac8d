// SPDX-License-Identifier: LGPL-2.1-or-later
// Ports between processes, from GJS.
//
// This GJS process is the parent: it spawns children with
// Gio.SubprocessLauncher and Msg.PortMain.new_for_launcher(). Each child
// test runs with a GJS child (child.js) and a Python child
// (../python/child.py); both find their port with
// Msg.PortMain.get_parent_port() and have the same modes. The children
// inherit the test environment, which points GI_TYPELIB_PATH and
// LD_LIBRARY_PATH at the build tree.
import Gio from 'gi://Gio';
import GLib from 'gi://GLib';
import Msg from 'gi://Msg?version=1.0';

import {
    Recorder, assert, assertEqual, assertThrowsPortError, drain, iterateUntil, listen, run,
    test,
} from './harness.js';

const SIGKILL = 9;
const here = GLib.path_get_dirname(GLib.filename_from_uri(import.meta.url)[0]);
const gjsPath = GLib.getenv('MSG_TEST_GJS') || GLib.find_program_in_path('gjs');
// The Python that has PyGObject; set (empty if there is none) by meson.
const pythonPath = GLib.getenv('MSG_TEST_PYTHON') ?? '/usr/bin/python3';

const CHILDREN = {
    gjs: [gjsPath, '-m', GLib.build_filenamev([here, 'child.js'])],
};
if (pythonPath)
    CHILDREN.python = [pythonPath, GLib.build_filenamev([here, '..', 'python', 'child.py'])];
else
    print('# no Python with PyGObject: the Python children are skipped');

function range(from, to) {
    return Array.from({length: to - from}, (_, i) => from + i);
}

/** A child process spawned with a parent port (child.port, not started). */
class Child {
    constructor(argv, flags = Gio.SubprocessFlags.NONE) {
        const launcher = new Gio.SubprocessLauncher({flags});
        this.port = Msg.PortMain.new_for_launcher(launcher, -1);
        this.process = launcher.spawnv(argv);
        // Closes our copy of the child's end (JavaScript cannot drop the
        // launcher at a known time): from now on the child is the only
        // other holder of the socket, so its going away is noticed.
        launcher.close();
        this.exited = false;
        this.process.wait_async(null, (process, result) => {
            process.wait_finish(result);
            this.exited = true;
        });
    }

    /** Waits until the child exits; throws after the timeout. */
    wait() {
        iterateUntil(() => this.exited);
    }

    /** Waits until the child exits, and checks that it exited with 0. */
    waitSuccess() {
        this.wait();
        assert(this.process.get_if_exited(), 'the child did not exit normally');
        assertEqual(this.process.get_exit_status(), 0, 'exit status');
    }

    /** Kills the child if it is still running, and waits for it. */
    reap() {
        if (!this.exited) {
            this.process.force_exit();
            this.wait();
        }
    }
}

/**
 * Spawns a child and calls func with it; whatever happens, the child is
 * reaped and its port closed afterwards.
 */
function withChild(argv, func, flags = Gio.SubprocessFlags.NONE) {
    const child = new Child(argv, flags);
    try {
        func(child);
    } finally {
        child.port.close();
        child.reap();
    }
}

/** The code of port's close reason, a GLib.Error in the Msg.PortError domain. */
function reasonCode(port) {
    const reason = port.get_close_reason();
    assert(reason instanceof GLib.Error, `not a GLib.Error: ${reason}`);
    assertEqual(reason.domain, Msg.port_error_quark(), 'domain');
    assert(reason.matches(Msg.PortError, reason.code));
    return reason.code;
}

function sampleValues() {
    return [
        new GLib.Variant('s', 'hello'),
        new GLib.Variant('(sixdb)', ['a', -5, 2 ** 40, 2.5, true]),
        new GLib.Variant('a{sv}', {
            n: new GLib.Variant('u', 7),
            s: new GLib.Variant('as', ['x', 'y']),
        }),
        new GLib.Variant('mv', null),
        new GLib.Variant('(h)', [42]),
        new GLib.Variant('ay', new Uint8Array(0)),
        new GLib.Variant('a(sa{sv})', []),
        GLib.Variant.new_from_bytes(new GLib.VariantType('ay'),
            new GLib.Bytes(new Uint8Array(1024 * 1024).map((_, i) => i & 0xff)), true),
    ];
}

for (const [language, argv] of Object.entries(CHILDREN)) {
    test(`/processes/${language}/round-trip-then-close`, () => {
        const samples = sampleValues();
        const n = 1000;
        withChild([...argv, 'echo'], child => {
            const rec = listen(child.port);
            for (const value of samples)
                assert(child.port.post(value) === true);
            assert(child.port.post(null) === true);
            for (let i = 0; i < n; i++)
                child.port.post(new GLib.Variant('u', i));

            iterateUntil(() => rec.events.length === samples.length + 1 + n);
            samples.forEach((sent, i) => {
                const got = rec.events[i].data;
                assertEqual(got.get_type_string(), sent.get_type_string(), `type of ${i}`);
                assert(got.equal(sent), `message ${i} differs: ${got.print(true)}`);
            });
            assertEqual(rec.events[samples.length].data, null);
            assertEqual(rec.values.slice(samples.length + 1), range(0, n));
            assert(rec.events.every(event => event.nPorts === 0));

            // Closing from the parent ends the child, which exits 0 only if
            // its port closed with PEER_CLOSED.
            child.port.close();
            iterateUntil(() => rec.nClose === 1);
            assertEqual(reasonCode(child.port), Msg.PortError.CLOSED);
            child.waitSuccess();
            drain();
            assertEqual(rec.nClose, 1);
        });
    });

    test(`/processes/${language}/port-there-and-back`, () => {
        const ch = new Msg.ChannelMain();
        const recPeer = listen(ch.port1);
        const n = 500;
        withChild([...argv, 'echo'], child => {
            const rec = listen(child.port);
            for (let i = 0; i < n; i++)
                ch.port1.post(new GLib.Variant('u', i));
            assert(child.port.post_message(new GLib.Variant('s', 'port'), [ch.port2]));
            assert(ch.port2.is_neutered());
            for (let i = n; i < 2 * n; i++)
                ch.port1.post(new GLib.Variant('u', i));

            iterateUntil(() => rec.events.length === 1);
            assertEqual(rec.values, ['port']);
            const [back] = rec.events[0].ports;
            assert(back !== ch.port2 && !back.is_started() && !back.is_neutered());
            const recBack = listen(back);
            iterateUntil(() => recBack.events.length === 2 * n);
            assertEqual(recBack.values, range(0, 2 * n));

            back.post(new GLib.Variant('s', 'still talking'));
            iterateUntil(() => recPeer.events.length === 1);
            assertEqual(recPeer.values, ['still talking']);
            ch.port1.close();
            iterateUntil(() => recBack.nClose === 1 && recPeer.nClose === 1);
            assertEqual(reasonCode(back), Msg.PortError.PEER_CLOSED);

            child.port.close();
            child.waitSuccess();
        });
    });

    test(`/processes/${language}/child-closes`, () => {
        // The child stays until its standard input ends (see child.js).
        withChild([...argv, 'close'], child => {
            const rec = listen(child.port);
            iterateUntil(() => rec.nClose === 1);
            assertEqual(rec.values, ['bye']);
            assertEqual(reasonCode(child.port), Msg.PortError.PEER_CLOSED);
            child.process.get_stdin_pipe().close(null);
            child.waitSuccess();
        }, Gio.SubprocessFlags.STDIN_PIPE);
    });

    test(`/processes/${language}/killed-is-peer-gone`, () => {
        withChild([...argv, 'stream'], child => {
            const rec = new Recorder(child.port);
            child.port.start();
            iterateUntil(() => rec.events.length >= 1000);
            child.process.send_signal(SIGKILL);
            iterateUntil(() => rec.nClose === 1);
            drain();
            assertEqual(rec.nClose, 1);
            assertEqual(reasonCode(child.port), Msg.PortError.PEER_GONE);
            // What arrived is an ordered prefix, and close came last.
            assertEqual(rec.messagesAtClose, rec.events.length);
            const values = rec.values;
            assert(values.every((value, i) => value === i), 'out of order');
            child.wait();
            assert(child.process.get_if_signaled(), 'not killed by a signal');
            assertEqual(child.process.get_term_sig(), SIGKILL);
        });
    });

    test(`/processes/${language}/flush-then-exit`, () => {
        const n = 10000;
        withChild([...argv, 'burst-exit', `${n}`], child => {
            const rec = listen(child.port);
            iterateUntil(() => rec.nClose === 1);
            assertEqual(rec.events.length, n);
            assert(rec.values.every((value, i) => value === i), 'out of order');
            assertEqual(reasonCode(child.port), Msg.PortError.PEER_GONE);
            child.waitSuccess();
        });
    });
}

test('/processes/too-large', () => {
    // A process port refuses what it cannot carry before anything is sent,
    // so this needs no child: the launcher holds the other end.
    const launcher = new Gio.SubprocessLauncher({flags: Gio.SubprocessFlags.NONE});
    const port = Msg.PortMain.new_for_launcher(launcher, -1);
    // 129 times the same 1 MiB child: over 128 MiB serialized, 1 MiB in memory.
    const chunk = GLib.Variant.new_from_bytes(new GLib.VariantType('ay'),
        new GLib.Bytes(new Uint8Array(1024 * 1024)), true);
    const tooBig = GLib.Variant.new_array(null, Array(129).fill(chunk));
    assert(tooBig.get_size() > 128 * 1024 * 1024);
    const other = new Msg.ChannelMain();
    assertThrowsPortError(() => port.post_message(tooBig, [other.port2]),
        Msg.PortError.TOO_LARGE);
    assert(!other.port2.is_neutered() && !port.is_closed());
    port.close();
    launcher.close();
});

run();
