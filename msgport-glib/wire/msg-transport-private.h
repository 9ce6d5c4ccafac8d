/* msg-transport-private.h: ports over Unix sockets
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <errno.h>

#include <gio/gio.h>

#include "msg-dispatcher-private.h"
#include "msg-endpoint-private.h"
#include "msg-io-thread-private.h"
#include "msg-socket-private.h"
#include "msg-port-error.h"

G_BEGIN_DECLS

/* The MsgPortError code for a system call that failed with @errsv: the
 * peer went away (EPIPE, ECONNRESET), this process is out of descriptors
 * (EMFILE, ENFILE), or anything else (IO). */
static inline int
msg_transport_error_code (int errsv)
{
  switch (errsv)
    {
    case EPIPE:
    case ECONNRESET:
      return MSG_PORT_ERROR_PEER_GONE;
    case EMFILE:
    case ENFILE:
      return MSG_PORT_ERROR_TOO_MANY_OPEN_FILES;
    default:
      return MSG_PORT_ERROR_IO;
    }
}

/* With @always, every post is queued for the I/O thread, none written by
 * the posting thread; without (the default), a post that finds nothing
 * queued and no write in progress is written at once, except after the
 * first in one main-loop callback. Tests only: the default path is then
 * direct for a thread that posts outside any callback. */
void          msg_transport_set_always_queue  (gboolean           always);

/* How many sockets are read by a port's context now. Tests only. */
guint         msg_transport_count_leases      (void);

/* A new endpoint whose peer is the port at the other end of @fd (taken
 * only on success). */
MsgEndpoint  *msg_transport_new_endpoint      (int                 fd,
                                               GError            **error);
/* Whether @sink writes to a socket. */
gboolean      msg_transport_is_socket_sink    (MsgSink            *sink);
/* Sets the keep-alive interval of the connection behind @sink, a socket
 * sink (0: off). Any thread. */
void          msg_transport_set_keep_alive    (MsgSink            *sink,
                                               guint               interval_ms);
/* FALSE, with %MSG_PORT_ERROR_CLOSED, if @sink writes to a socket made
 * before this process was forked (this is the child: the socket is the
 * parent's); TRUE otherwise, also for other sinks. Any thread. */
gboolean      msg_transport_check_process     (MsgSink            *sink,
                                               GError            **error);
/* Whether a message with @n_fds descriptors (not 0) and @n_ports ports
 * may be posted to @sink: always, unless it writes to a socket whose
 * peer said in its hello that it takes no descriptors
 * (%MSG_PORT_ERROR_DATA_CLONE), or they are more than a frame carries
 * (%MSG_PORT_ERROR_TOO_LARGE). With @sink %NULL, only the count is
 * checked. Any thread. */
gboolean      msg_transport_check_fds         (MsgSink            *sink,
                                               guint               n_fds,
                                               guint               n_ports,
                                               GError            **error);
/* Blocks until what was delivered to @sink so far has been written. */
void          msg_transport_flush_async       (MsgSink            *sink,
                                               GTask              *task);
gboolean      msg_transport_flush             (MsgSink            *sink,
                                               GCancellable       *cancellable,
                                               GError            **error);

/* For tests: whether the I/O thread may lease a socket to the context its
 * messages go to (msg-context-reads.c); on by default. Off, the I/O
 * thread reads every socket. */
void msg_transport_set_context_reads (gboolean enabled);

G_END_DECLS
