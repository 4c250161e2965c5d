"""The server's TLS state: built once from the ISecurity add-in, consulted per connection.

:func:`configure_security` runs while the server context is built: it finds
the one add-in providing :class:`~pacsref.addin.ISecurity`, loads its files
and prepares the listener's options, the outbound options and the binding
table. It never raises: a server that is not secure must start even with a
broken or absent security add-in. :func:`secure_startup_problem` is the other
half, asked by ``twistd pacsref`` before the reactor starts: when Server
Secure is on and there is no usable provider, it says why in one line
(DESIGN.md: "a secure server without a security add-in refuses to start,
clearly").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

from pacsref.addin.interfaces import ISecurity
from pacsref.security.credentials import Credentials, TLSConfigurationError
from pacsref.security.identity import CertificateIdentity, binding_refusal
from pacsref.security.options import ServerTLSOptions, client_tls_options, server_tls_options

__all__ = [
    "SecureTransport",
    "configure_security",
    "secure_startup_problem",
    "security_providers",
]

log = Logger(namespace="pacsref.security")


@dataclass(frozen=True)
class SecureTransport:
    """What the server needs for TLS, prepared once at start-up.

    Attributes:
        provider: the add-in providing ISecurity.
        listener: connection creator for ``reactor.listenSSL``.
        credentials: the loaded certificate, key and trusted CAs.
    """

    provider: Any
    listener: ServerTLSOptions
    credentials: Credentials

    @classmethod
    def build(cls, provider: object) -> SecureTransport:
        """Load ``provider``'s files and build the listener options.

        Raises:
            TLSConfigurationError: a file is missing or unusable.
        """
        listener = server_tls_options(provider)
        return cls(provider, listener, listener.credentials)

    def client_options(self, hostname: str) -> object:
        """Outbound TLS to ``hostname`` (the AE table's host), identity checked against it."""
        return client_tls_options(self.provider, hostname, self.credentials)

    def binding_refusal(
        self, calling_ae_title: str, identity: CertificateIdentity | None
    ) -> str | None:
        """Why the peer's certificate may not call as ``calling_ae_title``, or None."""
        bindings = tuple(getattr(self.provider, "bindings", ()) or ())
        require = bool(getattr(self.provider, "require_binding", False))
        if not bindings and not require:
            return None
        return binding_refusal(bindings, calling_ae_title, identity, require)

    def describe(self) -> str:
        """One line for the start-up log: certificate, expiry, peer policy, bindings."""
        leaf = self.credentials.leaf
        peers = (
            "client certificates required"
            if self.listener.require_peer_certificate
            else "client certificates optional"
            if self.credentials.trusted
            else "no client certificates"
        )
        bindings = len(tuple(getattr(self.provider, "bindings", ()) or ()))
        return (
            f"{leaf.subject.rfc4514_string()}, valid until "
            f"{leaf.not_valid_after_utc:%Y-%m-%d}; {peers}; {bindings} AE-title binding(s); "
            "TLS 1.2+ with BCP 195 cipher suites"
        )


def security_providers(addins: Iterable[object]) -> list[object]:
    """The loaded add-ins providing ISecurity, in load order."""
    return [addin for addin in addins if ISecurity.providedBy(addin)]


def _name(addin: object) -> str:
    return str(getattr(addin, "name", type(addin).__name__))


def configure_security(addins: Sequence[object]) -> SecureTransport | None:
    """The server's TLS state from its add-ins, or None when there is no usable provider.

    Never raises (see the module docstring); every reason for None that an
    operator could act on is logged.
    """
    providers = security_providers(addins)
    if not providers:
        return None
    if len(providers) > 1:
        log.error(
            "TLS disabled: add-ins {names} all provide ISecurity; keep only one",
            names=", ".join(_name(p) for p in providers),
        )
        return None
    try:
        transport = SecureTransport.build(providers[0])
    except TLSConfigurationError as exc:
        log.error(
            "TLS disabled: the TLS set-up of add-in {name} is unusable: {error}",
            name=_name(providers[0]),
            error=str(exc),
        )
        return None
    for warning in transport.credentials.warnings:
        log.warn("TLS: {warning}", warning=warning)
    log.info("TLS available: {summary}", summary=transport.describe())
    return transport


def secure_startup_problem(
    server_secure: bool, addins: Sequence[object], failures: Iterable[object]
) -> str | None:
    """Why a server with Server Secure on cannot start, in one line; None if it can.

    Args:
        server_secure: the Server Secure setting.
        addins: the loaded add-ins.
        failures: the add-ins that failed to load (``AddinFailure``), whose
            errors often are the reason (a broken ``security.toml``).
    """
    if not server_secure:
        return None
    providers = security_providers(addins)
    if len(providers) > 1:
        names = ", ".join(_name(p) for p in providers)
        return f"Server Secure is on but add-ins {names} all provide ISecurity; keep only one"
    if providers:
        try:
            SecureTransport.build(providers[0])
        except TLSConfigurationError as exc:
            return f"Server Secure is on but the TLS set-up is unusable: {exc}"
        return None
    failed = [
        f"add-in {getattr(f, 'name', '?')} failed to load: "
        + "; ".join(str(getattr(f, "error", f)).splitlines())
        for f in failures
    ]
    reason = "Server Secure is on but no add-in provides ISecurity"
    if failed:
        return f"{reason} ({' | '.join(failed)})"
    return (
        f"{reason}: give the security add-in its options in "
        "addin-options/security.toml (see docs/security.md)"
    )
