#!/usr/bin/env -S gjs -m
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// A worker reports progress through a port, and stops when its port closes.
//
// GJS runs JavaScript on one thread, so this worker is a job that runs in
// small steps from idle callbacks on the main context. It only talks to the
// rest of the program through its port, exactly as the C and Python
// workers do from their own threads: the code that shows the progress and
// cancels does not change if the worker moves to a thread written in C or
// Python (see worker-thread.c and worker_thread.py).
//
//   gjs -m worker.js                 run to the end
//   gjs -m worker.js --cancel-at 30  cancel once 30 % is reported
import GLib from 'gi://GLib';
import Msg from 'gi://Msg?version=1.0';
import System from 'system';

const N_STEPS = 100;

/** Works in steps on the main context, posting progress to port. */
function startWorker(port) {
    let step = 0;
    const work = GLib.idle_add(GLib.PRIORITY_DEFAULT_IDLE, () => {
        step++;
        port.post(new GLib.Variant('u', step));
        if (step < N_STEPS)
            return GLib.SOURCE_CONTINUE;
        // Done: everything posted before close() is still delivered.
        port.close();
        return GLib.SOURCE_REMOVE;
    });
    // Cancelled by the other end (or closed by us when done): stop.
    port.connect('close', () => {
        if (step < N_STEPS)
            GLib.source_remove(work);
    });
    port.start();
    return () => step;
}

const cancelAt = ARGV[0] === '--cancel-at' ? Number(ARGV[1]) : 0;
const channel = new Msg.ChannelMain();
const loop = new GLib.MainLoop(null, false);
let progress = 0;
let cancelled = false;

channel.port1.connect('message', (port, event) => {
    // After close() the messages that had already arrived are still
    // delivered: a cancelled job may report a little more progress.
    if (cancelled)
        return;
    progress = event.data.deepUnpack();
    if (progress % 10 === 0)
        print(`progress: ${progress} %`);
    if (progress === cancelAt) {
        print('cancelling');
        cancelled = true;
        port.close();
    }
});
channel.port1.connect('close', () => loop.quit());
channel.port1.start();

const workerStep = startWorker(channel.port2);
loop.run();

if (cancelled) {
    print(`cancelled at ${progress} %; the worker stopped after step ${workerStep()}`);
} else if (progress === N_STEPS) {
    print('done');
} else {
    printerr(`stopped at ${progress} %`);
    System.exit(1);
}
