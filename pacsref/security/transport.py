"""What a protocol can learn from its (possibly TLS) transport.

``reactor.listenSSL`` wraps the application protocol in Twisted's
``TLSMemoryBIOProtocol``, so the protocol's ``transport`` is that wrapper,
not the TCP connection: ``getHandle()`` returns the ``OpenSSL.SSL.Connection``
(no ``setsockopt``), ``connectionMade`` fires *before* the handshake, and a
failed handshake arrives as ``connectionLost`` with an ``OpenSSL.SSL.Error``.
These helpers hide those facts from ``pacsref.server``: find the socket under
any number of wrappers, tell whether TLS is in use, read the verified peer
certificate, and turn a handshake failure into one line for the log.
"""

from __future__ import annotations

import socket
from typing import Any

from cryptography import x509
from OpenSSL import SSL
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import ISSLTransport
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from pacsref.security.identity import CertificateIdentity
from pacsref.security.options import verification_failure

__all__ = [
    "handshake_failure",
    "is_tls",
    "peer_certificate",
    "peer_identity",
    "tls_session",
    "underlying_socket",
]

#: How deep to look for the socket below wrapping transports (TLS, policies...).
_MAX_WRAPPERS = 8


def is_tls(transport: object) -> bool:
    """True when ``transport`` carries TLS (``listenSSL``, ``startTLS`` or a wrapping factory)."""
    return isinstance(transport, TLSMemoryBIOProtocol) or ISSLTransport.providedBy(transport)


def underlying_socket(transport: object) -> socket.socket | None:
    """The socket below ``transport`` and its wrappers, or None (in-memory transports).

    A TLS wrapper's ``getHandle()`` is the OpenSSL connection, so the search
    goes down ``.transport`` links until a handle with ``setsockopt`` turns up.
    """
    current: Any = transport
    for _ in range(_MAX_WRAPPERS):
        if current is None:
            return None
        get_handle = getattr(current, "getHandle", None)
        handle = get_handle() if get_handle is not None else None
        if isinstance(handle, socket.socket) or (
            handle is not None
            and not isinstance(handle, SSL.Connection)
            and hasattr(handle, "setsockopt")
        ):
            return handle  # type: ignore[no-any-return]
        current = getattr(current, "transport", None)
    return None


def peer_certificate(transport: object) -> x509.Certificate | None:
    """The peer's certificate once the handshake is done; None without TLS or certificate.

    On a server that verifies peers, a certificate returned here passed
    verification (otherwise the handshake failed and no data ever arrived).
    """
    get = getattr(transport, "getPeerCertificate", None)
    if get is None or not is_tls(transport):
        return None
    try:
        certificate = get()
    except Exception:  # connection already torn down
        return None
    return certificate.to_cryptography() if certificate is not None else None


def peer_identity(transport: object) -> CertificateIdentity | None:
    """:class:`CertificateIdentity` of the peer's certificate, or None."""
    certificate = peer_certificate(transport)
    return CertificateIdentity.of(certificate) if certificate is not None else None


def _connection(transport: object) -> SSL.Connection | None:
    get_handle = getattr(transport, "getHandle", None)
    try:
        handle = get_handle() if get_handle is not None else None
    except Exception:
        return None
    return handle if isinstance(handle, SSL.Connection) else None


def tls_session(transport: object) -> dict[str, Any]:
    """Negotiated version, cipher and peer subject, as log fields (empty without TLS)."""
    connection = _connection(transport)
    if connection is None:
        return {}
    identity = peer_identity(transport)
    return {
        "tls_version": connection.get_protocol_version_name(),
        "cipher": connection.get_cipher_name(),
        "peer_certificate": identity.describe() if identity is not None else "none",
    }


def handshake_failure(transport: object, reason: Failure | None) -> str:
    """Why a TLS handshake failed, in one line, most specific first.

    1. our verify callback saw the peer certificate refused (expired,
       untrusted, wrong purpose, ...): that reason;
    2. an ``OpenSSL.SSL.Error``: OpenSSL's reason strings, e.g. ``unsupported
       protocol`` (a TLS 1.0/1.1 offer), ``no shared cipher``, ``wrong version
       number`` / ``packet length too long`` (plain DICOM on the TLS port),
       ``peer did not return a certificate``;
    3. the peer closed the TCP connection (a port probe, a client that gave up);
    4. anything else: the failure's message.
    """
    connection = _connection(transport)
    failure = verification_failure(connection) if connection is not None else None
    if failure is not None:
        return f"peer certificate refused: {failure.describe()}"
    if reason is None:
        return "connection closed before the handshake completed"
    if reason.check(ConnectionDone, ConnectionLost):
        # A port probe, a client that gave up, or one that dropped us mid-handshake.
        return "the peer closed the connection during the handshake"
    value = reason.value
    if isinstance(value, SSL.Error):
        return _ssl_error_text(value)
    return reason.getErrorMessage() or type(value).__name__


def _ssl_error_text(error: SSL.Error) -> str:
    """``[('SSL routines', '', 'unsupported protocol')]`` -> ``unsupported protocol``."""
    parts: list[str] = []
    for item in error.args[0] if error.args and isinstance(error.args[0], list) else []:
        if isinstance(item, tuple) and item:
            text = str(item[-1])
            if text and text not in parts:
                parts.append(text)
    return "; ".join(parts) or str(error) or "TLS error"
