"""The service tree of one server: thread pool, then the DICOM listener.

``makeService`` (see :mod:`pacsref.server.tap`) returns a ``MultiService``
whose children start in order: the add-in thread pool first, so that the
first association already has somewhere to run add-ins, then the listener.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from pacsref.server.context import ServerContext
from pacsref.server.factory import DicomServerFactory

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
    """Listens for DICOM connections on the settings' IP address and port."""

    def __init__(self, factory: DicomServerFactory, reactor: Any) -> None:
        self.factory = factory
        self.reactor = reactor
        self.port: IListeningPort | None = None

    def startService(self) -> None:
        super().startService()
        settings = self.factory.server.settings
        self.port = self.reactor.listenTCP(
            settings.port, self.factory, backlog=128, interface=settings.ip_address
        )
        address = self.port.getHost()
        log.info(
            "pacsref {ae} listening on {host}:{port}",
            ae=settings.ae_title,
            host=address.host,
            port=address.port,
        )

    def stopService(self) -> Any:
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


def server_service(server: ServerContext, reactor: Any) -> MultiService:
    """The MultiService for ``server``: thread pool, then listener."""
    root = MultiService()
    root.setName(f"pacsref-{server.settings.ae_title}")
    ThreadPoolService(server).setServiceParent(root)
    factory = DicomServerFactory(server, reactor)
    listener = DicomListenerService(factory, reactor)
    listener.setName("dicom")
    listener.setServiceParent(root)
    root.factory = factory  # type: ignore[attr-defined]
    return root
