# SPDX-License-Identifier: LGPL-2.1-or-later
"""PyGObject overrides for msgport-glib (the Msg namespace).

They add the attributes Python users expect from a MessagePort API and that
the typelib cannot give, because PyGObject only exposes GObject properties
through ``.props``::

    ch = Msg.ChannelMain()
    ch.port2.connect('message', lambda port, event: print(event.data, event.ports))

- ``MessageEvent.data``: the message, a ``GLib.Variant`` or ``None``;
- ``MessageEvent.ports``: the ports that came with it, a list (empty if
  there are none), in the order the sender listed them;
- ``MessageEvent.unix_fd_list``: the descriptors that came with it, a
  ``Gio.UnixFDList``, or ``None``;
- ``ChannelMain.port1`` and ``ChannelMain.port2``;
- ``MessageEvent.get_port(i)`` raises ``IndexError`` past the last port, as
  a Python sequence does, where C returns ``NULL``;
- ``PortMain.new_for_fd(fd)`` raises ``TypeError`` for anything but an
  ``int`` (a ``bool`` or a ``float`` included, which PyGObject would
  otherwise turn into a descriptor number) and ``ValueError`` for a number
  that is not a descriptor (negative, or beyond a C ``int``).

Everything else is the plain typelib. Nothing here wraps posting, so it
costs the same as without the overrides.
"""

_INT_MAX = 2 ** 31 - 1

from ..module import get_introspection_module
from ..overrides import override

Msg = get_introspection_module('Msg')

__all__ = []


class MessageEvent(Msg.MessageEvent):
    @property
    def data(self):
        """The message: a GLib.Variant, or None if None was posted."""
        return self.get_data()

    @property
    def ports(self):
        """The ports transferred with the message, as a list (not started)."""
        return self.get_ports()

    @property
    def unix_fd_list(self):
        """The descriptors that came with the message (a Gio.UnixFDList the
        event owns), or None."""
        return self.get_unix_fd_list()

    def get_port(self, index):
        """The port at index; IndexError if there is no such port."""
        port = Msg.MessageEvent.get_port(self, index) if 0 <= index else None
        if port is None:
            raise IndexError('MessageEvent has %d ports, no port %d'
                             % (self.get_n_ports(), index))
        return port


MessageEvent = override(MessageEvent)
__all__.append('MessageEvent')


class ChannelMain(Msg.ChannelMain):
    @property
    def port1(self):
        """The first port, entangled with port2."""
        return self.get_port1()

    @property
    def port2(self):
        """The second port, entangled with port1."""
        return self.get_port2()


ChannelMain = override(ChannelMain)
__all__.append('ChannelMain')


class PortMain(Msg.PortMain):
    @classmethod
    def new_for_fd(cls, fd):
        """A port that owns fd, a connected AF_UNIX stream socket.

        Raises TypeError unless fd is an int (not a bool), ValueError if it
        cannot be a descriptor, and GLib.Error (Msg.PortError.INVALID_SOCKET)
        if it is not such a socket; on any error the caller keeps fd.
        """
        if not isinstance(fd, int) or isinstance(fd, bool):
            raise TypeError('fd must be an int, not %s' % type(fd).__name__)
        if fd < 0 or fd > _INT_MAX:
            raise ValueError('%d is not a file descriptor' % fd)
        return Msg.PortMain.new_for_fd(fd)


PortMain = override(PortMain)
__all__.append('PortMain')
