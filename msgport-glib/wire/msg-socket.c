/* msg-socket.c: Unix stream sockets, checked and set up
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * What the transport asks of a descriptor before it uses it, how it sets
 * one up, and a socket pair for a port that leaves the process.
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "msg-io-thread-private.h"
#include "msg-port-error.h"
#include "msg-socket-private.h"

/* The send buffer a connection asks for. Linux doubles it for its own
 * bookkeeping and caps it at twice net.core.wmem_max: 512 KiB, or 416 KiB
 * with the default wmem_max, against 208 KiB by default. A writer of large
 * messages is woken half as often: cross-process W-1m throughput +10%. */
#define SEND_BUFFER_SIZE      (256 * 1024)

gboolean
msg_socket_set_nonblocking (int      fd,
                            GError **error)
{
  int flags = fcntl (fd, F_GETFL);

  if (flags < 0 || fcntl (fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
      fcntl (fd, F_SETFD, FD_CLOEXEC) < 0)
    {
      int errsv = errno;

      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_SOCKET,
                   "Cannot use descriptor %d: %s", fd, g_strerror (errsv));
      return FALSE;
    }
  return TRUE;
}

gboolean
msg_transport_check_socket (int      fd,
                            GError **error)
{
  struct stat st;
  int value;
  socklen_t len = sizeof value;
  struct sockaddr_storage address;
  socklen_t address_len = sizeof address;

  if (fd < 0 || fstat (fd, &st) < 0)
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_SOCKET,
                   "%d is not a valid file descriptor", fd);
      return FALSE;
    }
  if (!S_ISSOCK (st.st_mode))
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_SOCKET,
                   "Descriptor %d is not a socket", fd);
      return FALSE;
    }
  if (getsockopt (fd, SOL_SOCKET, SO_DOMAIN, &value, &len) < 0 || value != AF_UNIX)
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_SOCKET,
                   "Descriptor %d is not an AF_UNIX socket", fd);
      return FALSE;
    }
  len = sizeof value;
  if (getsockopt (fd, SOL_SOCKET, SO_TYPE, &value, &len) < 0 || value != SOCK_STREAM)
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_SOCKET,
                   "Descriptor %d is not a SOCK_STREAM socket", fd);
      return FALSE;
    }
  if (getpeername (fd, (struct sockaddr *) &address, &address_len) < 0)
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_SOCKET,
                   "Socket %d is not connected", fd);
      return FALSE;
    }
  return TRUE;
}

/* Best effort: the socket works with whatever it has. Never shrinks a
 * buffer that is larger already (getsockopt() reports the doubled size). */
void
msg_socket_grow_send_buffer (int fd)
{
  int size = 0;
  socklen_t len = sizeof size;

  if (getsockopt (fd, SOL_SOCKET, SO_SNDBUF, &size, &len) == 0 && size < 2 * SEND_BUFFER_SIZE)
    (void) setsockopt (fd, SOL_SOCKET, SO_SNDBUF, &(int) { SEND_BUFFER_SIZE }, sizeof (int));
}

gboolean
msg_socket_new_pair (int fds[2])
{
  int errsv;

  if (msg_io_syscalls ()->socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
    return FALSE;
  /* It fails only under valgrind, which hands out descriptors above the
   * limit it emulates, then refuses them. */
  if (msg_socket_set_nonblocking (fds[0], NULL))
    return TRUE;
  errsv = errno;
  close (fds[0]);
  close (fds[1]);
  errno = errsv;
  return FALSE;
}
