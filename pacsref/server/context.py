"""Everything one running server shares between its connections.

Built once at start-up from the server directory: the settings, the loaded
add-ins, the presentation-context table they declare, the service registry
and the thread pool add-ins run on, plus what the acceptance policy consults
(the AE title table, the resolved addresses of its hosts, the association
hooks) and the service log when it is enabled. Connections only read it;
run-time state that changes (clients, pause) is the factory's
(:class:`pacsref.server.control.ServerControl`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet.defer import DeferredSemaphore
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import Interface

from pacsref.addin import (
    AddinFailure,
    FileAeTitles,
    IAbstractSyntaxFallback,
    IAddin,
    IAeTitles,
    IAssociationHook,
    IDicomRequest,
    IUserIdentityNegotiation,
    ServiceRegistry,
    default_services,
    load_addins,
)
from pacsref.association import AcceptorConfig, ContextTable, SupportedContext
from pacsref.log import ServiceLog
from pacsref.security import SecureTransport, configure_security
from pacsref.server.addresses import HostAddresses
from pacsref.settings import ServerLayout, ServerSettings, SettingsError, load_settings

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
        addresses: IP addresses of the host names in the AE title table.
        service_log: the service log, or None when Enable Service Log is off.
        security: TLS for the listener and outbound requests, from the add-in
            providing ISecurity; None without a usable one (see
            :func:`pacsref.security.configure_security`).
        declared: each add-in's declared abstract syntaxes, by add-in name, from its one
            ``presentation_contexts()`` call at start-up (:func:`_declared_contexts`).
    """

    server_dir: Path
    settings: ServerSettings
    addins: list[Any]
    failures: list[AddinFailure]
    contexts: ContextTable
    registry: ServiceRegistry
    threadpool: ThreadPool
    spool_dir: Path
    addresses: HostAddresses = field(default_factory=HostAddresses)
    service_log: ServiceLog | None = None
    security: SecureTransport | None = None
    declared: dict[str, frozenset[str]] = field(default_factory=dict)
    acceptor: AcceptorConfig = field(init=False)
    next_association_id: int = 0
    #: How many User Identity verifications run at once (one per CPU): a passcode check
    #: costs tens of milliseconds of CPU, and any peer may ask for one
    #: (:func:`pacsref.server.identity.verify_identity`).
    identity_limiter: DeferredSemaphore = field(
        default_factory=lambda: DeferredSemaphore(max(1, os.cpu_count() or 1)), repr=False
    )
    _routes: dict[tuple[str, Any], list[Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.acceptor = acceptor_config(self.settings)

    def addins_for(self, abstract_syntax: str, interface: type[Interface]) -> list[Any]:
        """Add-ins that declared ``abstract_syntax`` and provide ``interface``.

        Memoised: the add-in set is fixed once the server runs, and this is
        asked for every DIMSE request.
        """
        key = (abstract_syntax, interface)
        found = self._routes.get(key)
        if found is None:
            found = [
                addin
                for addin in self.addins
                if interface.providedBy(addin)
                and abstract_syntax in self.declared.get(addin.name, ())
            ]
            if found or abstract_syntax in self.contexts:
                self._routes[key] = found
            else:
                # Accepted through IAbstractSyntaxFallback: not memoised, so peers
                # proposing ever new UIDs cannot grow the table.
                return [
                    addin
                    for addin in self.addins
                    if interface.providedBy(addin)
                    and IAbstractSyntaxFallback.providedBy(addin)
                    and addin.context_for_unknown(abstract_syntax) is not None
                ]
        return found

    @property
    def ae_titles(self) -> Any:
        """The AE title table (:class:`~pacsref.addin.IAeTitles`) in use: default or add-in."""
        return self.registry.get(IAeTitles)

    @property
    def association_hooks(self) -> list[Any]:
        """Add-ins providing :class:`~pacsref.addin.IAssociationHook`, in load order."""
        key = ("", IAssociationHook)
        found = self._routes.get(key)
        if found is None:
            found = self._routes[key] = [a for a in self.addins if IAssociationHook.providedBy(a)]
        return found

    @property
    def identity_verifiers(self) -> list[Any]:
        """Add-ins providing :class:`~pacsref.addin.IUserIdentityNegotiation`, in load order."""
        key = ("", IUserIdentityNegotiation)
        found = self._routes.get(key)
        if found is None:
            found = self._routes[key] = [
                a for a in self.addins if IUserIdentityNegotiation.providedBy(a)
            ]
        return found

    def new_association_id(self) -> int:
        """A server-unique number that ties together the log lines of one association."""
        self.next_association_id += 1
        return self.next_association_id


def acceptor_config(settings: ServerSettings) -> AcceptorConfig:
    """What negotiation needs of the settings; rebuilt when live settings change them."""
    return AcceptorConfig(
        ae_title=settings.ae_title,
        implementation_class_uid=settings.implementation_class_uid,
        implementation_version_name=settings.implementation_version_name,
        max_pdu_length=settings.max_pdu_length,
    )


def _fallback_for(addins: list[Any]) -> Callable[[str], SupportedContext | None] | None:
    """The first answer of the add-ins providing IAbstractSyntaxFallback, or None if none do."""
    fallbacks = [a for a in addins if IAbstractSyntaxFallback.providedBy(a)]
    if not fallbacks:
        return None

    def fallback(abstract_syntax: str) -> SupportedContext | None:
        for addin in fallbacks:
            context = addin.context_for_unknown(abstract_syntax)
            if context is not None:
                return context
        return None

    return fallback


def prepare_spool_dir(settings: ServerSettings, server_dir: Path, source: Path) -> Path:
    """The Temporary Directory, created if needed and proven writable by writing a file.

    Checked at start-up, not at the first C-STORE: a spool that cannot be created or written
    would otherwise fail every data set with a traceback while the server looks healthy. The
    probe writes a real file because ``os.access`` answers yes to root on a read-only mount.

    Raises:
        SettingsError: one line naming ``source``, the ``temporary_directory`` setting, its
            value and the directory.
    """
    spool_dir = settings.effective_temporary_directory(server_dir)

    def refuse(what: str, exc: OSError) -> SettingsError:
        return SettingsError.single(
            str(source),
            f"{what} {spool_dir} ({exc.strerror or exc})",
            'a directory the server can create and write to, or "" for <server dir>/tmp',
            field="temporary_directory",
            value=settings.temporary_directory,
        )

    try:
        spool_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise refuse("cannot create the directory", exc) from None
    try:
        with tempfile.TemporaryFile(dir=spool_dir):
            pass
    except OSError as exc:
        raise refuse("cannot write in the directory", exc) from None
    return spool_dir


def _declared_contexts(
    addins: list[Any], failures: list[AddinFailure]
) -> tuple[list[Any], dict[str, tuple[SupportedContext, ...]]]:
    """Each add-in's presentation contexts, asked for once; the add-ins that answered.

    The server keeps these answers for its whole run: an add-in's
    ``presentation_contexts()`` is not called per association or per request, where a slow,
    changing or raising answer would cost every peer (and a raise here at start-up would
    end it with a traceback). One that raises now, or yields anything but
    ``SupportedContext``, becomes a load failure like any other (``failures``), shown by the
    admin interface and ``pacsref addins list``; the server starts without it.
    """
    kept: list[Any] = []
    declared: dict[str, tuple[SupportedContext, ...]] = {}
    for addin in addins:
        name = getattr(addin, "name", repr(addin))
        try:
            contexts = tuple(IAddin(addin).presentation_contexts())
            for context in contexts:
                if not isinstance(context, SupportedContext):
                    raise TypeError(
                        f"presentation_contexts() must yield SupportedContext, not {context!r}"
                    )
        except Exception as exc:
            failures.append(
                AddinFailure(name, f"{type(exc).__name__}: {exc} (presentation_contexts())")
            )
            continue
        kept.append(addin)
        declared[name] = contexts
    return kept, declared


def build_server_context(server_dir: Path, reactor: Any | None = None) -> ServerContext:
    """Load settings and add-ins of ``server_dir`` into a :class:`ServerContext`.

    Raises:
        SettingsError: the settings file is missing or invalid, or its Temporary Directory
            cannot be created or written.
    """
    layout = ServerLayout(server_dir)
    settings = load_settings(layout.settings_file)
    result = load_addins(layout.addins_dir, strict=False)
    addins, declared = _declared_contexts(result.addins, result.failures)
    for failure in result.failures:
        log.error("add-in {addin} failed to load: {error}", addin=failure.name, error=failure.error)
    defaults = default_services()
    # The persistent AE title table (<server dir>/aetitles.toml) replaces the in-memory default.
    defaults[IAeTitles] = FileAeTitles.in_server_dir(server_dir)
    requestor = None
    if reactor is not None:
        from pacsref.server.requestor import DicomRequestor

        requestor = DicomRequestor(reactor, settings)
        defaults[IDicomRequest] = requestor
    registry = ServiceRegistry(defaults)
    if requestor is not None:
        requestor.bind(registry)
    registry.register_addins(addins)
    security = configure_security(addins)
    if requestor is not None:
        requestor.security = security
    contexts = ContextTable(
        (context for addin in addins for context in declared[addin.name]),
        fallback=_fallback_for(addins),
    )
    spool_dir = prepare_spool_dir(settings, server_dir, layout.settings_file)
    if requestor is not None:
        requestor.spool_dir = spool_dir
    threadpool = ThreadPool(minthreads=1, maxthreads=20, name=f"pacsref-{settings.ae_title}")
    addresses = HostAddresses()
    titles = registry.get(IAeTitles)
    if not callable(getattr(titles, "addresses", None)):
        # An add-in table that does not cache addresses itself: resolve its host names now,
        # the one time blocking is harmless (the reactor is not running yet).
        addresses.resolve_now(info.host for info in titles.list())  # type: ignore[attr-defined]
    service_log = ServiceLog(layout.logs_dir) if settings.enable_service_log else None
    context = ServerContext(
        server_dir=server_dir,
        settings=settings,
        addins=addins,
        failures=list(result.failures),
        declared={name: frozenset(c.abstract_syntax for c in cs) for name, cs in declared.items()},
        contexts=contexts,
        registry=registry,
        threadpool=threadpool,
        spool_dir=spool_dir,
        addresses=addresses,
        service_log=service_log,
        security=security,
    )
    return context
