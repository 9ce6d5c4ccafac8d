/* msg-socket-private.h: Unix stream sockets, checked and set up
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Checks that @fd is a connected AF_UNIX SOCK_STREAM socket. */
gboolean      msg_transport_check_socket      (int        fd,
                                               GError   **error);
/* Makes @fd non-blocking and close-on-exec. */
gboolean      msg_socket_set_nonblocking      (int        fd,
                                               GError   **error);
/* Asks for a larger send buffer; best effort. */
void          msg_socket_grow_send_buffer     (int        fd);
/* A connected socket pair, both ends close-on-exec, @fds[0] (ours)
 * non-blocking; @fds[1] is for another process. FALSE with errno set. */
gboolean      msg_socket_new_pair             (int        fds[2]);

G_END_DECLS
