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
from pacsref.server.notifications import Notifier, ServerPaused, ServerResumed, ServerStopping

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
        self._stopping = False

    @property
    def paused(self) -> bool:
        """True while new associations are refused with (2, 3, 1) temporary-congestion.

        Also true once a stop began: the acceptance policy refuses the same way, and a
        Resume cannot undo a stop.
        """
        return self._paused or self._stopping

    @property
    def stopping(self) -> bool:
        """True once :meth:`begin_stop` was called."""
        return self._stopping

    @property
    def state(self) -> str:
        """``stopping``, ``paused`` or ``running`` (GetStatus)."""
        if self._stopping:
            return "stopping"
        return "paused" if self._paused else "running"

    def begin_stop(self, deadline: float) -> None:
        """Refuse new associations for good and tell watchers: ServerStopping, not ServerPaused.

        A stop is not a pause (no Resume follows), and watchers want to know how long the
        open clients have (``deadline``) and how many there are. Idempotent.
        """
        if self._stopping:
            return
        self._stopping = True
        open_clients = len(self.clients)
        log.info(
            "server {ae} stopping: new associations get A-ASSOCIATE-RJ (2, 3, 1); "
            "{open} open connection(s) have {deadline:g} s to finish",
            ae=self.ae_title,
            open=open_clients,
            deadline=deadline,
            kind="server.stopping",
        )
        self.notifier.publish(ServerStopping(deadline, open_clients))

    def pause(self) -> None:
        """Refuse new associations; the ones already open carry on. Idempotent."""
        if self._paused or self._stopping:
            return  # a stopping server already refuses; a ServerPaused now would mislead
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
        if not self._paused or self._stopping:
            return  # resuming cannot undo a stop
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
