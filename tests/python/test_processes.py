# SPDX-License-Identifier: LGPL-2.1-or-later
"""Ports between processes, from Python.

TODO(process transport): a child process with a parent port. When
msg_port_main_new_for_fd() and the parent-port API land, test from Python:
spawning a child (GSubprocessLauncher) that finds its parent port; messages
and transfer lists both ways; a port moved to the child and on to a thread;
close and the close reasons PEER_GONE / PROTOCOL / IO; flush() before exit.
"""

import pytest


@pytest.mark.skip(reason='TODO: the process transport is not merged yet')
def test_child_process_with_a_parent_port():
    pass
