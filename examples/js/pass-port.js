#!/usr/bin/env -S gjs -m
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// A port handed over inside a message.
//
// A word-counting service listens on a control port. The client creates a
// channel for jobs and hands one of its ports to the service *in a message*
// on the control port; the service starts the port it received and answers
// each job on it. When the client closes the job channel, the service sees
// 'close', says goodbye on the control port and hangs up.
//
// Everything here runs on the main context, as GJS has one JavaScript
// thread; the protocol is the same as in worker-demo.c and pass_port.py,
// where the service is a worker thread.
import GLib from 'gi://GLib';
import Msg from 'gi://Msg?version=1.0';
import System from 'system';

const SENTENCES = [
    'ports move between threads with their messages',
    'one wake-up per batch',
    'hello',
];

/** The service: answers jobs on every port that arrives on control. */
function startService(control) {
    control.connect('message', (port, event) => {
        // The port came in the message: start it to receive the jobs.
        const [jobs] = event.ports;
        if (!jobs)
            return;
        print('  service: received a port in a message; starting it');
        jobs.connect('message', (jobsPort, job) => {
            const text = job.data.deepUnpack();
            const nWords = text.split(' ').filter(word => word !== '').length;
            print(`  service: counted ${nWords} words in "${text}"`);
            jobsPort.post(new GLib.Variant('(su)', [text, nWords]));
        });
        jobs.connect('close', () => {
            print('  service: the job port was closed; saying goodbye');
            control.post(new GLib.Variant('s', 'bye'));
            control.close();
        });
        jobs.start();
    });
    control.start();
}

const control = new Msg.ChannelMain();
const jobs = new Msg.ChannelMain();
const loop = new GLib.MainLoop(null, false);
const answers = [];
let saidBye = false;

startService(control.port2);

control.port1.connect('message', (port, event) => {
    print(`client:  the service says "${event.data.deepUnpack()}"`);
    saidBye = true;
});
control.port1.connect('close', () => loop.quit());
control.port1.start();

// Jobs can be posted before the service has the port: they are queued on
// it and travel with it.
for (const sentence of SENTENCES)
    jobs.port1.post(new GLib.Variant('s', sentence));

print('client:  handing a port to the service in a message');
control.port1.post_message(new GLib.Variant('s', 'here is your job port'), [jobs.port2]);

jobs.port1.connect('message', (port, event) => {
    const [text, nWords] = event.data.deepUnpack();
    print(`client:  "${text}" has ${nWords} words`);
    answers.push(nWords);
    if (answers.length === SENTENCES.length) {
        print('client:  all answers in; closing the job channel');
        port.close();
    }
});
jobs.port1.start();

loop.run();

if (answers.join() !== '7,4,1' || !saidBye) {
    printerr(`demo failed: ${answers}`);
    System.exit(1);
}
print('client:  done');
