"""The factory that builds one :class:`DicomServerProtocol` per accepted connection."""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import ServerFactory

from pacsref.server.clients import ClientRegistry
from pacsref.server.context import ServerContext
from pacsref.server.control import ServerControl
from pacsref.server.dispatch import Dispatcher
from pacsref.server.notifications import Notifier
from pacsref.server.protocol import DicomServerProtocol


class DicomServerFactory(ServerFactory):
    """Holds the server's run-time state: live connections, clients, notifications, pause.

    Args:
        server: the server's shared state.
        reactor: provides time (``callLater``) and ``callFromThread`` for add-in
            calls; tests pass a ``Clock``-based fake.

    Attributes:
        notifications: the server's :class:`Notifier` (subscribe here).
        clients: the :class:`ClientRegistry` of connected peers.
        control: pause/resume and client disconnection (:class:`ServerControl`).
    """

    def __init__(self, server: ServerContext, reactor: Any) -> None:
        self.server = server
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.dispatcher = Dispatcher(server, reactor)
        self.connections: set[DicomServerProtocol] = set()
        self.notifications = Notifier()
        self.clients = ClientRegistry(self.notifications)
        self.control = ServerControl(self.clients, self.notifications, server.settings.ae_title)

    def buildProtocol(self, addr: IAddress) -> DicomServerProtocol:
        return DicomServerProtocol(self, self.clock)

    def connection_made(self, protocol: DicomServerProtocol) -> None:
        """Called by a protocol once its transport is up."""
        self.connections.add(protocol)

    def connection_lost(self, protocol: DicomServerProtocol) -> None:
        """Called by a protocol when its transport has gone."""
        self.connections.discard(protocol)
