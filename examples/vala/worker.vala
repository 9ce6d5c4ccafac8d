/* worker.vala: a worker thread answering on a port handed to it, in Vala
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The main thread makes a channel and hands port2 to a worker thread,
 * which starts it in a main context of its own and answers every number
 * with its square. The main thread posts 1 to 5, prints the answers and
 * closes its port, which ends the worker's loop.
 *
 *   valac --pkg msgport-glib-1.0 worker.vala && ./worker
 */

int main () {
    var loop = new MainLoop ();
    var channel = new Msg.ChannelMain ();
    Msg.PortMain port = channel.port1;
    Msg.PortMain worker_port = channel.port2;
    int answers = 0;

    var worker = new Thread<int> ("worker", () => {
        /* Ports are started in the thread that should receive their
         * messages: its thread-default context. */
        var context = new MainContext ();
        context.push_thread_default ();
        var worker_loop = new MainLoop (context);

        worker_port.message.connect ((p, event) => {
            int32 n = event.data.get_int32 ();
            try {
                p.post (new Variant.int32 (n * n));
            } catch (Error e) {
                critical ("worker: %s", e.message);
            }
        });
        worker_port.close.connect (() => worker_loop.quit ());
        worker_port.start ();
        worker_loop.run ();
        context.pop_thread_default ();
        return 0;
    });

    port.message.connect ((p, event) => {
        print ("main: the worker answered %d\n", event.data.get_int32 ());
        if (++answers == 5) {
            p.close ();
        }
    });
    port.close.connect (() => loop.quit ());
    port.start ();

    try {
        for (int32 i = 1; i <= 5; i++) {
            port.post (new Variant.int32 (i));
        }
    } catch (Error e) {
        printerr ("main: %s\n", e.message);
        return 1;
    }

    loop.run ();
    worker.join ();
    print ("main: the worker has stopped\n");
    return 0;
}
