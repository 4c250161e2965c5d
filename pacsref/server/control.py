"""Run-time control of one server: pause, resume, clients, notifications.

:class:`ServerControl` is what the administrative interface (a later issue)
will call for Pause, Resume, GetClients and DisconnectClient, and what Python
code calls today. It owns the pause state; the
:class:`~pacsref.server.clients.ClientRegistry` and the
:class:`~pacsref.server.notifications.Notifier` it holds are the factory's.
Methods must be called on the reactor thread (from a worker thread, use
``reactor.callFromThread``).
"""

from __future__ import annotations

from twisted.logger import Logger

from pacsref.server.clients import ClientInfo, ClientRegistry
from pacsref.server.notifications import Notifier, ServerPaused, ServerResumed

log = Logger(namespace="pacsref.server")

__all__ = ["ServerControl"]


class ServerControl:
    """Pause/resume and the client registry of one server.

    Args:
        clients: the server's connected clients.
        notifier: where ServerPaused/ServerResumed are published.
        ae_title: for log lines.
    """

    def __init__(self, clients: ClientRegistry, notifier: Notifier, ae_title: str = "") -> None:
        self.clients = clients
        self.notifier = notifier
        self.ae_title = ae_title
        self._paused = False

    @property
    def paused(self) -> bool:
        """True while new associations are refused with (2, 3, 1) temporary-congestion."""
        return self._paused

    def pause(self) -> None:
        """Refuse new associations; the ones already open carry on. Idempotent."""
        if self._paused:
            return
        self._paused = True
        log.info(
            "server {ae} paused: new associations get A-ASSOCIATE-RJ (2, 3, 1); "
            "{open} open connection(s) carry on",
            ae=self.ae_title,
            open=len(self.clients),
            kind="server.paused",
        )
        self.notifier.publish(ServerPaused())

    def resume(self) -> None:
        """Accept new associations again. Idempotent."""
        if not self._paused:
            return
        self._paused = False
        log.info("server {ae} resumed", ae=self.ae_title, kind="server.resumed")
        self.notifier.publish(ServerResumed())

    def list_clients(self) -> tuple[ClientInfo, ...]:
        """Every connected client (see :meth:`ClientRegistry.list`)."""
        return self.clients.list()

    def disconnect(self, client_id: int) -> bool:
        """A-ABORT and close one client; False when the id is unknown."""
        found = self.clients.disconnect(client_id)
        log.info(
            "disconnect client {client_id}: {outcome}",
            client_id=client_id,
            outcome="aborting" if found else "no such client",
            kind="client.disconnect",
        )
        return found
