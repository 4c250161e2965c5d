"""The service tree of one server: service log, thread pool, then the DICOM listener.

``makeService`` (see :mod:`pacsref.server.tap`) returns a ``MultiService``
whose children start in order: the service log first when it is enabled (so
it records the start-up), the add-in thread pool next, so that the first
association already has somewhere to run add-ins, then the listener.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from pacsref.admin.service import AdminService
from pacsref.log import ServiceLogService
from pacsref.server.context import ServerContext
from pacsref.server.factory import DicomServerFactory
from pacsref.server.graceful import drain
from pacsref.server.live_settings import live_settings_for
from pacsref.server.signals import PauseSignalService

log = Logger(namespace="pacsref.server")


class ThreadPoolService(Service):
    """Starts and stops the add-in thread pool with the server."""

    def __init__(self, server: ServerContext) -> None:
        self.server = server

    def startService(self) -> None:
        super().startService()
        self.server.threadpool.start()

    def stopService(self) -> None:
        super().stopService()
        self.server.threadpool.stop()


class DicomListenerService(Service):
    """Listens for DICOM connections on the settings' IP address and port.

    A secure server (Server Secure on) listens with TLS: ``listenSSL`` with the
    connection creator built explicitly from the ISecurity add-in
    (:mod:`pacsref.security`), never an ``ssl:`` endpoint string, which cannot
    require client certificates (STYLE.md principle 13).
    """

    def __init__(self, factory: DicomServerFactory, reactor: Any) -> None:
        self.factory = factory
        self.reactor = reactor
        self.port: IListeningPort | None = None

    def startService(self) -> None:
        super().startService()
        settings = self.factory.server.settings
        security = self.factory.server.security
        if settings.server_secure and security is None:
            # Never fall back to plain TCP: a secure server that cannot do TLS stays down
            # (twistd refuses earlier with the reason; this guards other callers).
            raise RuntimeError("Server Secure is on but no usable ISecurity add-in is loaded")
        if security is not None and settings.server_secure:
            self.port = self.reactor.listenSSL(
                settings.port,
                self.factory,
                security.listener,
                backlog=128,
                interface=settings.ip_address,
            )
        else:
            self.port = self.reactor.listenTCP(
                settings.port, self.factory, backlog=128, interface=settings.ip_address
            )
        address = self.port.getHost()
        log.info(
            "pacsref {ae} listening on {host}:{port}{tls}",
            ae=settings.ae_title,
            host=address.host,
            port=address.port,
            tls=" with TLS" if settings.server_secure and security is not None else "",
        )

    def stopService(self) -> Deferred[int]:
        """Stop accepting, then let open associations finish (see :mod:`.graceful`).

        Fires, with the number of clients aborted at the deadline, once none is left.
        """
        if not self.running:
            return succeed(0)  # already stopped (the root stops it first, then again)
        super().stopService()
        control = self.factory.control
        deadline = self.factory.server.settings.stop_timeout
        # Before the port closes, so that no A-ASSOCIATE-RQ slips in between: from now on a
        # new one gets (2, 3, 1), and watchers hear ServerStopping (not ServerPaused).
        control.begin_stop(deadline)
        port, self.port = self.port, None
        stopped = maybeDeferred(port.stopListening) if port is not None else succeed(None)

        def listening_stopped(_: object) -> Deferred[int]:
            return drain(control.clients, self.reactor, deadline)

        return stopped.addCallback(listening_stopped)


class StartFailed(SystemExit, Exception):
    """A service of the tree failed to start; ``str()`` is one line for the operator.

    Both exits at once, on purpose. twistd's runner catches ``Exception`` from
    ``startService`` to remove the pidfile and pass ``str()`` to a daemon's parent through
    its status pipe; and an uncaught ``SystemExit`` whose code is 1 ends the interpreter with
    status 1 and no traceback. The line itself is written to the real standard error by
    :class:`ServerService` first, since twistd has by then pointed ``sys.stderr`` at its log.
    """

    def __init__(self, message: str) -> None:
        super().__init__(1)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class ServerService(MultiService):
    """The server's root service: on stop, the DICOM listener drains before anything else stops.

    ``MultiService`` stops its children all at once; the add-in services and the thread pool
    must outlive the associations that use them, so the listener (named ``dicom``) is stopped
    first and the others, in reverse start order, once it has finished. The admin service is
    the last child, so it stops first of those, after the drain: watchers hear every
    ClientDisconnected of the stop before their connection closes.

    A child that fails to start stops those already started (the DICOM port is closed, the
    thread pool's threads end) and the failure is raised as :class:`StartFailed`; without
    that, twistd would leave the port open and the process hung on the pool's threads. When
    the reactor is already running (a service started late), it is stopped instead.
    """

    def __init__(self, reactor: Any = None) -> None:
        super().__init__()
        self.reactor = reactor

    def startService(self) -> None:
        Service.startService(self)
        started: list[IService] = []
        try:
            for child in self:
                child.startService()
                started.append(child)
        except Exception as exc:
            self._start_failed(exc, started)

    def _start_failed(self, exc: Exception, started: list[IService]) -> None:
        self.running = 0
        ae_title = self.name.removeprefix("pacsref-")
        message = f"cannot start server {ae_title}: {_one_line(exc)}"
        log.critical("{message}", message=message, kind="server.start_failed")
        listener = self.namedServices.get("dicom")
        port = getattr(listener, "port", None)
        for child in reversed(started):
            stopped = maybeDeferred(child.stopService)
            stopped.addErrback(lambda failure: None)  # already failing; the start error counts
        reactor = self.reactor
        if reactor is not None and getattr(reactor, "running", False):
            reactor.stop()  # the port closes as the reactor shuts down
            return
        sock = getattr(port, "socket", None)
        if sock is not None:
            sock.close()  # stopListening's own close waits for a reactor that will not run
        stderr = sys.__stderr__  # /dev/null in a daemon, whose parent prints str(StartFailed)
        if stderr is not None:
            try:
                stderr.write(f"pacsref: {message}\n")
                stderr.flush()
            except (OSError, ValueError):
                pass
        raise StartFailed(message) from exc

    def stopService(self) -> Deferred[Any]:
        try:
            listener: IService | None = self.getServiceNamed("dicom")
        except KeyError:
            listener = None
        if listener is None or not listener.running:
            return super().stopService()  # type: ignore[no-any-return]
        drained = maybeDeferred(listener.stopService)
        drained.addErrback(lambda failure: log.failure("draining failed", failure))
        return drained.addCallback(lambda _: super(ServerService, self).stopService())


def server_service(server: ServerContext, reactor: Any) -> MultiService:
    """The MultiService for ``server``: [service log,] thread pool, then listener.

    The root carries ``factory`` and ``control`` (pause/resume, clients,
    notifications) for the twistd plugin and the admin interface.
    """
    root = ServerService(reactor)
    root.setName(f"pacsref-{server.settings.ae_title}")
    if server.service_log is not None:
        ServiceLogService(server.service_log).setServiceParent(root)
    ThreadPoolService(server).setServiceParent(root)
    # Add-ins that are Twisted services (e.g. storage opening its index) start before
    # the listener, so the first association finds them ready (DESIGN.md, "Server runtime").
    for addin in server.addins:
        if IService.providedBy(addin):
            addin.setServiceParent(root)
    factory = DicomServerFactory(server, reactor)
    listener = DicomListenerService(factory, reactor)
    listener.setName("dicom")
    listener.setServiceParent(root)
    PauseSignalService(factory.control, reactor).setServiceParent(root)
    # The administrative socket (pacsref.admin, docs/admin-protocol.md), after the listener.
    live = live_settings_for(factory)
    AdminService(factory.control, server, reactor, live_settings=live).setServiceParent(root)
    root.factory = factory  # type: ignore[attr-defined]
    root.live_settings = live  # type: ignore[attr-defined]
    root.control = factory.control  # type: ignore[attr-defined]
    return root
