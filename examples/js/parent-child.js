#!/usr/bin/env -S gjs -m
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// A child process with a parent port.
//
// The parent spawns a child process (this same script, with --child) and
// hands it a port with Msg.PortMain.new_for_launcher(). It sends the child
// sentences over that port; the child finds its end with
// Msg.PortMain.get_parent_port() and answers each with its number of words.
// When all the answers are in, the parent closes the port: the child sees
// 'close' and exits, and the parent waits for it.
//
//   gjs -m parent-child.js          the parent
//   gjs -m parent-child.js --child  the child, as the parent spawns it
import Gio from 'gi://Gio';
import GLib from 'gi://GLib';
import Msg from 'gi://Msg?version=1.0';
import System from 'system';

const SENTENCES = [
    'ports move between processes with their messages',
    'one socket per channel',
    'hello',
];

function child() {
    const loop = new GLib.MainLoop(null, false);
    // Set up by the parent's Msg.PortMain.new_for_launcher().
    const parent = Msg.PortMain.get_parent_port();
    if (parent === null) {
        printerr('parent-child.js --child: not spawned with a parent port');
        return 1;
    }

    parent.connect('message', (port, event) => {
        const text = event.data.deepUnpack();
        const nWords = text.split(' ').filter(word => word !== '').length;
        print(`  child:  counted ${nWords} words in "${text}"`);
        port.post(new GLib.Variant('(su)', [text, nWords]));
    });
    parent.connect('close', () => {
        print('  child:  the parent closed the port; exiting');
        loop.quit();
    });
    parent.start();
    loop.run();
    return 0;
}

function parent() {
    const loop = new GLib.MainLoop(null, false);
    const answers = [];
    let closed = false, exited = false, childOk = false;

    print(`msgport-glib ${Msg.get_major_version()}.${Msg.get_minor_version()}.` +
        `${Msg.get_micro_version()} parent and child process demo (JavaScript)`);

    // The port's other end becomes descriptor 3 of the child.
    const launcher = new Gio.SubprocessLauncher({flags: Gio.SubprocessFlags.NONE});
    const port = Msg.PortMain.new_for_launcher(launcher, -1);
    const script = GLib.filename_from_uri(import.meta.url)[0];
    const childProcess = launcher.spawnv(['gjs', '-m', script, '--child']);
    // Closes our copy of the child's end, so that if the child died, our
    // port would see it ('close', with Msg.PortError.PEER_GONE).
    launcher.close();

    const maybeQuit = () => {
        if (closed && exited)
            loop.quit();
    };

    port.connect('message', (p, event) => {
        const [text, nWords] = event.data.deepUnpack();
        print(`parent:   "${text}" has ${nWords} words`);
        answers.push(nWords);
        if (answers.length === SENTENCES.length) {
            print('parent:   all answers in; closing the port');
            p.close();
        }
    });
    port.connect('close', () => {
        closed = true;
        maybeQuit();
    });
    port.start();

    print(`parent:   spawned a child; handing it ${SENTENCES.length} sentences`);
    for (const sentence of SENTENCES)
        port.post(new GLib.Variant('s', sentence));

    childProcess.wait_check_async(null, (process, result) => {
        try {
            childOk = process.wait_check_finish(result);
        } catch (e) {
            printerr(`parent:   the child failed: ${e.message}`);
        }
        exited = true;
        maybeQuit();
    });
    loop.run();

    if (answers.join() !== '7,4,1' || !childOk) {
        printerr(`demo failed: ${answers}`);
        return 1;
    }
    print('parent:   the child exited; done');
    return 0;
}

System.exit(System.programArgs[0] === '--child' ? child() : parent());
