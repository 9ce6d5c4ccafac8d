#!/usr/bin/env -S gjs -m
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Offloading work to a helper process, with request and reply.
//
// The application spawns a Python helper (examples/python/offload_helper.py)
// with a parent port, and awaits the answers to its requests:
// Msg.PortMain.request_async() posts each request with a fresh reply port,
// and the helper answers with event.reply(). Gio._promisify() makes the
// request awaitable; several are in flight at once, each gets its own
// answer. A job the helper does not know gets no reply, which the request
// reports as Msg.PortError.NO_REPLY; a timeout gives Gio.IOErrorEnum.TIMED_OUT.
//
//   gjs -m offload.js     (MSG_EXAMPLE_PYTHON names the Python to run the
//                          helper with; /usr/bin/python3 by default)
import Gio from 'gi://Gio';
import GLib from 'gi://GLib';
import Msg from 'gi://Msg?version=1.0';
import System from 'system';

Gio._promisify(Msg.PortMain.prototype, 'request_async', 'request_finish');
Gio._promisify(Gio.Subprocess.prototype, 'wait_check_async', 'wait_check_finish');

const TIMEOUT_MS = 30000;

function request(port, name, arg) {
    return port.request_async(new GLib.Variant('(su)', [name, arg]), TIMEOUT_MS, null);
}

async function main() {
    const python = GLib.getenv('MSG_EXAMPLE_PYTHON') ?? '/usr/bin/python3';
    const here = GLib.path_get_dirname(GLib.filename_from_uri(import.meta.url)[0]);
    const helper = GLib.build_filenamev([here, '..', 'python', 'offload_helper.py']);

    const launcher = new Gio.SubprocessLauncher({flags: Gio.SubprocessFlags.NONE});
    const port = Msg.PortMain.new_for_launcher(launcher, -1);
    const child = launcher.spawnv([python, helper]);
    launcher.close();
    // The replies come on reply ports, not on this one: it need not even
    // be started.

    print('app: asking the helper for three results at once');
    const [primes, bigPrimes, squares] = await Promise.all([
        request(port, 'count-primes', 1000),
        request(port, 'count-primes', 1000000),
        request(port, 'sum-of-squares', 1000),
    ]);
    print(`app: ${primes.deepUnpack()} primes below 1000, ` +
        `${bigPrimes.deepUnpack()} below a million, ` +
        `sum of squares below 1000: ${squares.deepUnpack()}`);

    let noReply = false;
    try {
        await request(port, 'no-such-job', 0);
    } catch (e) {
        noReply = e.matches(Msg.PortError, Msg.PortError.NO_REPLY);
        print(`app: no-such-job failed: ${e.message}`);
    }

    // Closing the port ends the helper.
    port.close();
    await child.wait_check_async(null);
    print('app: the helper exited; done');

    return primes.deepUnpack() === 168 && bigPrimes.deepUnpack() === 78498 &&
        squares.deepUnpack() === 332833500 && noReply;
}

const loop = new GLib.MainLoop(null, false);
let ok = false;
main().then(result => {
    ok = result;
}).catch(e => {
    printerr(`offload.js: ${e.message}`);
}).finally(() => loop.quit());
loop.run();
if (!ok)
    printerr('offload.js: wrong results');
System.exit(ok ? 0 : 1);
