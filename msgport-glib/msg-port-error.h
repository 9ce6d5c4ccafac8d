/* msg-port-error.h: the MSG_PORT_ERROR domain
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined (MSG_INSIDE) && !defined (MSG_COMPILATION)
# error "Only <msgport-glib.h> can be included directly."
#endif

#include <glib.h>

#include "msgport-version-macros.h"

G_BEGIN_DECLS

/**
 * SECTION:msg-port-error
 * @Title: Errors
 * @Short_description: the MSG_PORT_ERROR error domain
 *
 * Errors from msgport-glib are #GError values in the %MSG_PORT_ERROR
 * domain, with a code from #MsgPortError. A failed post returns %FALSE
 * with such an error (from Python it raises `GLib.Error`, from JavaScript
 * it throws `Msg.PortError`); msg_port_main_get_close_reason() returns one
 * that says why a port ended.
 */

/**
 * MSG_PORT_ERROR:
 *
 * The error domain of msgport-glib: errors in it have codes from
 * #MsgPortError.
 */
#define MSG_PORT_ERROR (msg_port_error_quark ())

/**
 * MsgPortError:
 * @MSG_PORT_ERROR_FAILED: a failure with no more specific code
 * @MSG_PORT_ERROR_DATA_CLONE: the transfer list of a post is invalid: it
 *   holds the posting port itself, the same port twice, %NULL, a port
 *   that was already transferred or is closed (the DOM's `DataCloneError`),
 *   or, in a child forked without exec(), a socket-backed port of the
 *   parent's. Nothing was sent and no port was neutered.
 * @MSG_PORT_ERROR_TOO_LARGE: the message or its transfer list is larger
 *   than a port can carry across processes. Nothing was sent.
 * @MSG_PORT_ERROR_INVALID_SOCKET: the file descriptor given to
 *   msg_port_main_new_for_fd() is not a connected `AF_UNIX` `SOCK_STREAM`
 *   socket.
 * @MSG_PORT_ERROR_CLOSED: the port is closed (a close reason: this end
 *   called msg_port_main_close(), or its #GMainContext was finalized, or
 *   the operation needs an open port). Also what posting or flushing
 *   fails with, in a child forked without exec(), on a socket-backed port
 *   made before the fork: its socket is the parent's.
 * @MSG_PORT_ERROR_PEER_CLOSED: the other end closed the channel, or was
 *   dropped (a close reason).
 * @MSG_PORT_ERROR_PEER_GONE: the other end's process exited or crashed, or
 *   its socket was shut down (a close reason).
 * @MSG_PORT_ERROR_PROTOCOL: the peer process sent something that is not
 *   valid msgport-glib wire data (a close reason).
 * @MSG_PORT_ERROR_IO: reading from or writing to the port's socket failed
 *   (a close reason).
 * @MSG_PORT_ERROR_INVALID_ARGUMENT: an argument is out of its documented
 *   range, such as a child descriptor number below 3 given to
 *   msg_port_main_new_for_launcher(). Since: 1.0
 * @MSG_PORT_ERROR_TOO_MANY_OPEN_FILES: this process ran out of file
 *   descriptors (`EMFILE` or `ENFILE`): no socket could be made for a port,
 *   or descriptors that came with a message could not be received, in
 *   which case the port that received them closes with this reason. It is
 *   a local condition, not the peer's fault; the process works again once
 *   descriptors are free. Since: 1.0
 * @MSG_PORT_ERROR_KEEP_ALIVE_TIMEOUT: the peer process stopped answering
 *   the library's keep-alive pings (it is stopped, or its msgport-glib I/O
 *   thread is stuck) for about twice the port's
 *   #MsgPortMain:keep-alive-interval (a close reason). Since: 1.2
 * @MSG_PORT_ERROR_NO_REPLY: a request made with
 *   msg_port_main_request_async() ended without an answer: the responder
 *   closed or dropped the reply port, or the channel ended. Since: 1.2
 *
 * Error codes in the %MSG_PORT_ERROR domain. New codes may be appended in
 * later versions.
 *
 * Since: 1.0
 */
typedef enum
{
  MSG_PORT_ERROR_FAILED,
  MSG_PORT_ERROR_DATA_CLONE,
  MSG_PORT_ERROR_TOO_LARGE,
  MSG_PORT_ERROR_INVALID_SOCKET,
  MSG_PORT_ERROR_CLOSED,
  MSG_PORT_ERROR_PEER_CLOSED,
  MSG_PORT_ERROR_PEER_GONE,
  MSG_PORT_ERROR_PROTOCOL,
  MSG_PORT_ERROR_IO,
  MSG_PORT_ERROR_INVALID_ARGUMENT,
  MSG_PORT_ERROR_TOO_MANY_OPEN_FILES,
  MSG_PORT_ERROR_KEEP_ALIVE_TIMEOUT,
  MSG_PORT_ERROR_NO_REPLY,
} MsgPortError;

MSG_AVAILABLE_IN_ALL
GQuark msg_port_error_quark (void);

G_END_DECLS
