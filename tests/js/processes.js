// SPDX-License-Identifier: LGPL-2.1-or-later
// Ports between processes, from GJS.
//
// TODO(process transport): a child process with a parent port. When
// msg_port_main_new_for_fd() and the parent-port API land, test from GJS:
// spawning a child (Gio.SubprocessLauncher) that finds its parent port;
// messages and transfer lists both ways; close and the close reasons
// PEER_GONE / PROTOCOL / IO; flush() before exit.
print('1..0 # SKIP the process transport is not merged yet');
