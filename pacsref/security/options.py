"""TLS connection creators for the DICOM listener and for outbound requests.

Built explicitly with ``CertificateOptions`` (STYLE.md principle 13): the
``ssl:`` endpoint string cannot require or verify client certificates
(``twisted/internet/endpoints.py``), and the defaults of a bare context are
not BCP 195. What we set, and why (sources in docs/security.md):

* **Versions**: TLS 1.2 minimum (``raiseMinimumTo=TLSv1_2``), TLS 1.3 when the
  peer offers it (OpenSSL picks the highest common version). SSL 3, TLS 1.0
  and 1.1 are refused: RFC 8996 deprecates them, PS3.15 B.10 ("Non-Downgrading
  BCP 195") and B.12/B.13 forbid negotiating them.
* **TLS 1.2 cipher suites**: exactly the four RFC 9325 4.2 recommends, all
  ECDHE (forward secrecy) with AES-GCM (AEAD); AES-128 first, the suite RFC
  9325 4.2.1 asks clients to propose first. No RSA key transport and no
  finite-field DHE (RFC 9325 4.1 discourages both; RFC 10015, which updates
  RFC 9325, deprecates them for TLS 1.2), no CBC, no SHA-1 MAC, no NULL, no
  RC4, no 3DES.
* **TLS 1.3 suites**: the three of RFC 8446 9.1 (AES-128-GCM, AES-256-GCM,
  ChaCha20-Poly1305), pinned on the server so an ``openssl.cnf`` cannot add
  the CCM-8 suites; the client keeps OpenSSL's default, which is the same set.
* **No renegotiation** (server), no resumption: no stateless session tickets
  and no session cache (Twisted's defaults; under TLS 1.3 OpenSSL still sends
  NewSessionTicket messages no handshake can use), single-use (EC)DH keys.
* **Key Usage**: the peer's own certificate must allow digitalSignature where it
  has a Key Usage at all (:func:`_signing_problem`).
* **Peer certificates**: verified against the configured CAs only, never the
  system store (a DICOM site trusts its own CA, not every web CA); required
  when ``require_peer_certificate`` is on. Outbound, the peer's identity is
  checked with service_identity against the AE table's host (RFC 9525 rules:
  DNS names against SAN dNSName, IP addresses against SAN iPAddress), in our
  own verify callback: Twisted's (26.10) treats only ``VerificationError`` as a
  refusal, and lets a certificate without any subjectAltName through after
  logging service_identity's ``CertificateError``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from OpenSSL import SSL, crypto
from service_identity import CertificateError, VerificationError
from service_identity.hazmat import DNSMismatch, IPAddressMismatch, ServiceID
from service_identity.pyopenssl import DNS_ID, IPAddress_ID, extract_patterns
from service_identity.pyopenssl import verify_service_identity as _verify_identity
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.ssl import (
    AcceptableCiphers,
    Certificate,
    CertificateOptions,
    TLSVersion,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pacsref.security.credentials import (
    Credentials,
    TLSConfigurationError,
    forbids_signing,
    load_credentials,
)

__all__ = [
    "BCP195_TLS12_CIPHERS",
    "MINIMUM_TLS_VERSION",
    "TLS13_CIPHERSUITES",
    "ClientTLSCreator",
    "ServerTLSOptions",
    "VerificationFailure",
    "client_tls_options",
    "server_tls_options",
    "verification_failure",
]

log = Logger(namespace="pacsref.security")

#: RFC 9325 4.2, in OpenSSL's names; AES-128 first (RFC 9325 4.2.1).
BCP195_TLS12_CIPHERS: tuple[str, ...] = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",  # TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    "ECDHE-RSA-AES128-GCM-SHA256",  # TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    "ECDHE-ECDSA-AES256-GCM-SHA384",  # TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    "ECDHE-RSA-AES256-GCM-SHA384",  # TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
)

#: RFC 8446 9.1: the MUST and the two SHOULD suites of TLS 1.3.
TLS13_CIPHERSUITES: tuple[str, ...] = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
)

MINIMUM_TLS_VERSION = TLSVersion.TLSv1_2

_ACCEPTABLE_CIPHERS = AcceptableCiphers.fromOpenSSLCipherString(":".join(BCP195_TLS12_CIPHERS))

#: What to add to OpenSSL's own text of a verify error, for the reader who must act on it.
_VERIFY_HINTS = {
    "unable to get local issuer certificate": "not signed by a trusted CA",
    "certificate purpose": "no clientAuth/serverAuth Extended Key Usage",
}


def verify_error_text(code: int) -> str:
    """OpenSSL's text for the X509_V_ERR_* ``code``, with a hint where one helps.

    Taken from the linked OpenSSL itself (``X509_verify_cert_error_string``): the numbers
    differ between OpenSSL versions (24 was "invalid CA certificate" in 1.1 and 3.x), so a
    table of our own named the wrong reason, or only a number, under another version.
    """
    text = _openssl_verify_text(code)
    for fragment, hint in _VERIFY_HINTS.items():
        if fragment in text:
            return f"{text} ({hint})"
    return text


def _openssl_verify_text(code: int) -> str:
    try:
        from OpenSSL._util import ffi, lib  # pyOpenSSL's binding of the OpenSSL it loads

        return ffi.string(lib.X509_verify_cert_error_string(code)).decode("ascii", "replace")
    except (ImportError, AttributeError):  # a pyOpenSSL without it: the number at least
        return f"X509 verify error {code}"


@dataclass(frozen=True, slots=True)
class VerificationFailure:
    """Why OpenSSL refused a peer certificate, as its verify callback saw it.

    Attributes:
        code: the X509_V_ERR_* number.
        depth: 0 for the peer's own certificate, 1 for its issuer, ...
        subject: the failing certificate's subject (RFC 4514).
    """

    code: int
    depth: int
    subject: str
    #: why, when it is not an X509 error (the outbound identity check); code is then 0
    detail: str = ""

    def describe(self) -> str:
        """``certificate has expired (depth 0, CN=ct1)``."""
        reason = self.detail or verify_error_text(self.code)
        return f"{reason} (depth {self.depth}, {self.subject or 'empty subject'})"


#: First verification failure per TLS connection, kept only as long as the connection lives.
_failures: weakref.WeakKeyDictionary[SSL.Connection, VerificationFailure] = (
    weakref.WeakKeyDictionary()
)


def verification_failure(connection: object) -> VerificationFailure | None:
    """The recorded reason ``connection``'s peer certificate was refused, if it was."""
    try:
        return _failures.get(connection)  # type: ignore[arg-type]
    except TypeError:  # not weak-referenceable: not an SSL.Connection
        return None


def _record_verification(
    connection: SSL.Connection, certificate: crypto.X509, code: int, depth: int, ok: int
) -> bool:
    """OpenSSL verify callback: keep OpenSSL's verdict, remember the first refusal's reason.

    OpenSSL only reports "certificate verify failed" in its error queue; the
    X509 error code (expired? untrusted? wrong purpose?) is seen here only,
    and it is what the administrator needs in the log.
    """
    if not ok:
        _remember(connection, certificate, code, depth)
        return False
    if depth == 0:
        problem = _signing_problem(certificate)
        if problem is not None:
            _remember(connection, certificate, 0, depth, problem)
            return False
    return True


def _signing_problem(certificate: crypto.X509) -> str | None:
    """Why the peer's own certificate may not sign its handshake, or None if it may.

    A TLS peer proves it holds its key by a signature (CertificateVerify; in TLS 1.2 the
    ECDHE key exchange too), which a certificate whose Key Usage lacks digitalSignature
    forbids (RFC 8446 4.4.2.2-4.4.2.3, RFC 5280 4.2.1.3). OpenSSL's purpose check lets a
    keyAgreement-only client certificate through, so it is checked here, by the rule our
    own certificate is held to at start (:func:`.credentials.forbids_signing`).
    """
    try:
        forbidden = forbids_signing(certificate.to_cryptography())
    except Exception:
        # Extensions cryptography cannot parse: such a certificate is refused in its own
        # words once the handshake is done (the peer identity is read then), or by the
        # outbound identity check.
        return None
    if not forbidden:
        return None
    return (
        "key usage does not allow digitalSignature, which a TLS peer's certificate needs "
        "to sign its handshake (RFC 8446 4.4.2.3)"
    )


def _remember(
    connection: SSL.Connection, certificate: crypto.X509, code: int, depth: int, detail: str = ""
) -> None:
    """Keep the first refusal's reason for :func:`verification_failure`."""
    try:
        if connection not in _failures:
            subject = certificate.to_cryptography().subject.rfc4514_string()
            _failures[connection] = VerificationFailure(code, depth, subject, detail)
    except Exception:  # an exception here would be swallowed by OpenSSL
        log.failure("recording a certificate verification failure")


def _openssl_reasons(error: SSL.Error) -> str:
    """``ee key too small`` etc.: the reason strings of OpenSSL's error queue."""
    reasons = [str(entry[-1]) for entry in (error.args[0] if error.args else []) if entry]
    return "; ".join(reasons) or str(error)


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLSOptions:
    """The listener's connection creator: ``CertificateOptions`` plus per-connection diagnostics.

    Wraps (rather than subclasses) ``CertificateOptions`` so only its public
    interface is used; what it adds is the verify callback that records why a
    client certificate was refused.

    Attributes:
        options: the ``CertificateOptions`` built from the credentials.
        credentials: what it was built from (for start-up log lines).
        require_peer_certificate: a client certificate is demanded.
    """

    def __init__(self, options: CertificateOptions, credentials: Credentials, require: bool):
        self.options = options
        self.credentials = credentials
        self.require_peer_certificate = require
        # Build the context now: a key/certificate mismatch or an unusable cipher list
        # fails at start-up, not at the first connection. getContext() caches it, and
        # every connection is made from this one context.
        context = options.getContext()
        context.set_tls13_ciphersuites(":".join(TLS13_CIPHERSUITES).encode("ascii"))
        context.set_options(SSL.OP_NO_RENEGOTIATION)

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        """A new server-side ``SSL.Connection`` whose verify callback records failures."""
        connection = self.options.serverConnectionForTLS(tlsProtocol)  # type: ignore[arg-type]
        mode = connection.get_verify_mode()
        if mode & SSL.VERIFY_PEER:
            connection.set_verify(mode, _record_verification)
        return connection


def _identity_problem(hostname: str, service_id: ServiceID, certificate: crypto.X509) -> str | None:
    """Why ``certificate`` does not identify ``hostname`` (RFC 9525), or None when it does.

    Any exception counts as a refusal: service_identity raises ``CertificateError`` for a
    certificate without subjectAltName and a parse error for a malformed one, and a
    certificate we cannot read is not one we can trust.
    """
    try:
        _verify_identity(extract_patterns(certificate), [service_id], [])
    except VerificationError as exc:
        kinds = {
            "dNSName" if isinstance(e, DNSMismatch) else "iPAddress"
            for e in exc.errors
            if isinstance(e, DNSMismatch | IPAddressMismatch)
        }
        which = " or ".join(sorted(kinds)) or "entry"
        return f"not issued for {hostname} (no subjectAltName {which} matches it)"
    except CertificateError as exc:
        return f"not issued for {hostname} ({exc})"
    except Exception as exc:
        return f"not issued for {hostname} (its names cannot be read: {exc})"
    return None


@implementer(IOpenSSLClientConnectionCreator)
class ClientTLSCreator:
    """Outbound connection creator: Twisted's client options, with our own verify callback.

    The callback keeps OpenSSL's verdict on the chain, records why a certificate was refused
    (:func:`verification_failure`, as on the listener), and refuses a leaf that does not
    identify the AE table's host, whatever exception the identity check raises.

    Args:
        options: what ``optionsForClientTLS`` built (context, SNI, versions, suites).
        hostname: the AE table's host the peer must be.
    """

    def __init__(self, options: object, hostname: str) -> None:
        self.options = options
        self.hostname = hostname
        self.service_id: ServiceID = (
            IPAddress_ID(hostname)
            if isIPAddress(hostname) or isIPv6Address(hostname)
            else DNS_ID(hostname)
        )

    def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        """Twisted's client connection, its verify callback replaced by :meth:`_verifier`."""
        connection: SSL.Connection = self.options.clientConnectionForTLS(tlsProtocol)  # type: ignore[attr-defined]
        connection.set_verify(
            SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._verifier(tlsProtocol)
        )
        return connection

    def _verifier(
        self, tlsProtocol: object
    ) -> Callable[[SSL.Connection, crypto.X509, int, int, int], bool]:
        protocol = weakref.ref(tlsProtocol)  # the connection must not keep its protocol alive

        def verify(
            connection: SSL.Connection, certificate: crypto.X509, code: int, depth: int, ok: int
        ) -> bool:
            if not ok:
                _remember(connection, certificate, code, depth)
                return False
            if depth != 0:
                return True
            problem = _signing_problem(certificate) or _identity_problem(
                self.hostname, self.service_id, certificate
            )
            if problem is None:
                return True
            _remember(connection, certificate, 0, depth, problem)
            live = protocol()
            if live is not None:
                # Twisted's own way to end the connection with this reason: the handshake
                # fails, and connectionLost gets it rather than "certificate verify failed".
                live.failVerification(Failure(VerificationError(problem)))  # type: ignore[attr-defined]
            return False

        return verify


def server_tls_options(security: object) -> ServerTLSOptions:
    """The listener's TLS options from an :class:`~pacsref.addin.ISecurity` provider.

    Raises:
        TLSConfigurationError: a file is missing, unreadable or unusable.
    """
    credentials = load_credentials(security)
    require = bool(security.require_peer_certificate)  # type: ignore[attr-defined]
    verify = bool(credentials.trusted)
    options = CertificateOptions(
        privateKey=credentials.key,
        certificate=credentials.chain[0],
        extraCertChain=list(credentials.chain[1:]),
        verify=verify,
        caCerts=list(credentials.trusted) if verify else None,
        requireCertificate=require,
        raiseMinimumTo=MINIMUM_TLS_VERSION,
        acceptableCiphers=_ACCEPTABLE_CIPHERS,
        enableSessions=False,
        enableSessionTickets=False,
    )
    try:
        return ServerTLSOptions(options, credentials, require)
    except SSL.Error as exc:  # what OpenSSL refuses beyond the checks of load_credentials
        raise TLSConfigurationError(
            "private_key",
            Path(security.private_key),  # type: ignore[attr-defined]
            f"OpenSSL cannot use it: {_openssl_reasons(exc)}",
        ) from None


def client_tls_options(
    security: object, hostname: str, credentials: Credentials | None = None
) -> object:
    """Outbound TLS options: our certificate, the configured CAs, the peer checked against
    ``hostname`` (the AE table's host) with service_identity.

    Args:
        security: the :class:`~pacsref.addin.ISecurity` provider.
        hostname: the host the AE table gives for the peer; a DNS name is
            matched against the peer certificate's SAN dNSName entries, an IP
            address against its iPAddress entries.
        credentials: already loaded credentials (saves re-reading the files).

    Returns:
        a :class:`ClientTLSCreator` (an ``IOpenSSLClientConnectionCreator``).

    Raises:
        TLSConfigurationError: no trusted CA is configured (the peer could not
            be verified), or a file is unusable.
    """
    credentials = credentials or load_credentials(security)
    if not credentials.trusted:
        raise TLSConfigurationError(
            "trust_roots",
            None,
            "is empty: an outbound TLS peer cannot be verified without a trusted CA",
        )
    trust_root = trustRootFromCertificates([Certificate(c) for c in credentials.trusted])
    options = optionsForClientTLS(
        hostname,
        trustRoot=trust_root,
        extraCertificateOptions={
            "privateKey": credentials.key,
            "certificate": credentials.chain[0],
            "extraCertChain": list(credentials.chain[1:]),
            "raiseMinimumTo": MINIMUM_TLS_VERSION,
            "acceptableCiphers": _ACCEPTABLE_CIPHERS,
        },
    )
    return ClientTLSCreator(options, hostname)
