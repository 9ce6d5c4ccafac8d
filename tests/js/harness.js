// SPDX-License-Identifier: LGPL-2.1-or-later
// A small TAP harness for the GJS tests, and helpers to wait without
// sleeping and to record what a port emits.
import GLib from 'gi://GLib';
import Msg from 'gi://Msg?version=1.0';
import System from 'system';

// How long any wait in a test may take before the test fails.
export const TIMEOUT_SECONDS = 60;

const tests = [];

/** Adds a test; run() runs them in order. */
export function test(name, func) {
    tests.push([name, func]);
}

/** Runs the tests, printing TAP; exits with 1 if any failed. */
export function run() {
    print(`1..${tests.length}`);
    let failed = 0;
    tests.forEach(([name, func], i) => {
        try {
            drain();
            func();
            drain();
            print(`ok ${i + 1} ${name}`);
        } catch (e) {
            failed++;
            print(`not ok ${i + 1} ${name}`);
            for (const line of `${e}\n${e.stack ?? ''}`.split('\n'))
                print(`# ${line}`);
        }
    });
    if (failed > 0)
        System.exit(1);
}

export function assert(cond, what = 'assertion failed') {
    if (!cond)
        throw new Error(what);
}

export function assertEqual(actual, expected, what = '') {
    const a = JSON.stringify(actual), e = JSON.stringify(expected);
    if (a !== e)
        throw new Error(`${what ? `${what}: ` : ''}expected ${e}, got ${a}`);
}

/** Calls func and checks that it throws a Msg.PortError with this code. */
export function assertThrowsPortError(func, code) {
    try {
        func();
    } catch (e) {
        assert(e instanceof GLib.Error, `not a GLib.Error: ${e}`);
        assert(e.matches(Msg.PortError, code), `wrong error: ${e} (code ${e.code})`);
        assertEqual(e.domain, Msg.port_error_quark(), 'domain');
        assertEqual(e.code, code, 'code');
        return e;
    }
    throw new Error('did not throw');
}

/**
 * Iterates the context (blocking) until cond() holds; throws if that takes
 * longer than TIMEOUT_SECONDS. A timeout source on the same context wakes
 * it up: nothing sleeps.
 */
export function iterateUntil(cond, context = GLib.MainContext.default()) {
    let timedOut = false;
    const source = GLib.timeout_source_new_seconds(TIMEOUT_SECONDS);
    source.set_callback(() => {
        timedOut = true;
        return GLib.SOURCE_REMOVE;
    });
    source.attach(context);
    try {
        while (!cond() && !timedOut)
            context.iteration(true);
    } finally {
        source.destroy();
    }
    if (!cond())
        throw new Error(`timed out waiting for ${cond}`);
}

/** Dispatches what is ready without blocking: to show that nothing happens. */
export function drain(context = GLib.MainContext.default()) {
    while (context.iteration(false))
        ;
}

/** Records what a port emits. */
export class Recorder {
    constructor(port) {
        this.port = port;
        this.events = [];
        this.nClose = 0;
        this.messagesAtClose = null;
        port.connect('message', (p, event) => {
            assert(p === port, 'emitted on another port');
            this.events.push(event);
        });
        port.connect('close', p => {
            assert(p === port, 'emitted on another port');
            this.nClose++;
            this.messagesAtClose = this.events.length;
        });
    }

    /** The unpacked messages, in the order they arrived. */
    get values() {
        return this.events.map(e => e.data === null ? null : e.data.deepUnpack());
    }
}

/** Records what port emits, and starts it. */
export function listen(port) {
    const rec = new Recorder(port);
    port.start();
    return rec;
}

/** Closes port, then waits until each recorder has seen close. */
export function hangUp(port, ...recorders) {
    port.close();
    iterateUntil(() => recorders.every(rec => rec.nClose > 0));
}
