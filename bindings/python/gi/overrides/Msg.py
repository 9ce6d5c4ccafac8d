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
- ``ChannelMain.port1`` and ``ChannelMain.port2``.

Everything else is the plain typelib. Nothing here wraps a method, so
posting costs the same as without the overrides.
"""

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
