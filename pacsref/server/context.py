"""Everything one running server shares between its connections.

Built once at start-up from the server directory: the settings, the loaded
add-ins, the presentation-context table they declare, the service registry
and the thread pool add-ins run on. Connections only read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import Interface

from pacsref.addin import (
    AddinFailure,
    IAddin,
    IDicomRequest,
    ServiceRegistry,
    default_services,
    load_addins,
)
from pacsref.association import AcceptorConfig, ContextTable
from pacsref.settings import ServerLayout, ServerSettings, load_settings

log = Logger(namespace="pacsref.server")


@dataclass
class ServerContext:
    """The shared, read-mostly state of one server process.

    Attributes:
        server_dir: the server directory (``<root>/<AE>``).
        settings: its validated settings.
        addins: add-ins that loaded and verified, in load order.
        failures: add-ins that did not load, each with its exception text;
            reported at start-up and kept for the admin interface.
        contexts: what the add-ins declare we can accept.
        registry: base services and add-in services.
        threadpool: where add-in code runs, never the reactor thread.
        spool_dir: the Temporary Directory for DIMSE data sets.
    """

    server_dir: Path
    settings: ServerSettings
    addins: list[Any]
    failures: list[AddinFailure]
    contexts: ContextTable
    registry: ServiceRegistry
    threadpool: ThreadPool
    spool_dir: Path
    acceptor: AcceptorConfig = field(init=False)
    next_association_id: int = 0
    _routes: dict[tuple[str, Any], list[Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.acceptor = AcceptorConfig(
            ae_title=self.settings.ae_title,
            implementation_class_uid=self.settings.implementation_class_uid,
            implementation_version_name=self.settings.implementation_version_name,
            max_pdu_length=self.settings.max_pdu_length,
        )

    def addins_for(self, abstract_syntax: str, interface: type[Interface]) -> list[Any]:
        """Add-ins that declared ``abstract_syntax`` and provide ``interface``.

        Memoised: the add-in set is fixed once the server runs, and this is
        asked for every DIMSE request.
        """
        key = (abstract_syntax, interface)
        found = self._routes.get(key)
        if found is None:
            found = self._routes[key] = [
                addin
                for addin in self.addins
                if interface.providedBy(addin)
                and any(c.abstract_syntax == abstract_syntax for c in addin.presentation_contexts())
            ]
        return found

    def new_association_id(self) -> int:
        """A server-unique number that ties together the log lines of one association."""
        self.next_association_id += 1
        return self.next_association_id


def build_server_context(server_dir: Path, reactor: Any | None = None) -> ServerContext:
    """Load settings and add-ins of ``server_dir`` into a :class:`ServerContext`.

    Raises:
        SettingsError: the settings file is missing or invalid.
    """
    layout = ServerLayout(server_dir)
    settings = load_settings(layout.settings_file)
    result = load_addins(layout.addins_dir, strict=False)
    for failure in result.failures:
        log.error("add-in {addin} failed to load: {error}", addin=failure.name, error=failure.error)
    defaults = default_services()
    requestor = None
    if reactor is not None:
        from pacsref.server.requestor import DicomRequestor

        requestor = DicomRequestor(reactor, settings)
        defaults[IDicomRequest] = requestor
    registry = ServiceRegistry(defaults)
    if requestor is not None:
        requestor.bind(registry)
    registry.register_addins(result.addins)
    contexts = ContextTable(
        context for addin in result.addins for context in IAddin(addin).presentation_contexts()
    )
    spool_dir = settings.effective_temporary_directory(server_dir)
    spool_dir.mkdir(parents=True, exist_ok=True)
    threadpool = ThreadPool(minthreads=1, maxthreads=20, name=f"pacsref-{settings.ae_title}")
    context = ServerContext(
        server_dir=server_dir,
        settings=settings,
        addins=list(result.addins),
        failures=list(result.failures),
        contexts=contexts,
        registry=registry,
        threadpool=threadpool,
        spool_dir=spool_dir,
    )
    return context
