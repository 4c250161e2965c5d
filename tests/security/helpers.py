"""A recording protocol for in-memory TLS tests, a one-call handshake runner, and
certificate builders for what trustme (and so :class:`~pacsref.testing.tls.TestPKI`)
cannot make: chosen Key Usage and Basic Constraints, CAs out of their validity period,
and a certificate OpenSSL verifies but ``cryptography`` cannot parse."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from pacsref.security import handshake_failure, tls_session
from pacsref.testing.tls import LeafFiles, TestPKI, TLSConnection, connect_tls, write_leaf


@implementer(IHandshakeListener)
class Recorder(Protocol):
    """Remembers what happened to it; reads TLS facts while the connection still exists.

    ``handshake_failure`` and ``tls_session`` need the live ``SSL.Connection``,
    which Twisted drops right after ``connectionLost``, so they are read inside
    the callbacks, as the server's protocol does.
    """

    def __init__(self) -> None:
        self.data = b""
        self.lost: Failure | None = None
        self.failure_text: str | None = None
        self.session: dict[str, object] = {}

    def handshakeCompleted(self) -> None:
        self.session = tls_session(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self.lost = reason
        self.failure_text = handshake_failure(self.transport, reason)


class RecorderFactory(Factory):
    """Builds :class:`Recorder` s and keeps them, so a test can look at the server side."""

    def __init__(self) -> None:
        self.built: list[Recorder] = []

    def buildProtocol(self, addr: object) -> Recorder:
        protocol = Recorder()
        protocol.factory = self
        self.built.append(protocol)
        return protocol


@dataclass
class Outcome:
    """Both sides of one attempted TLS connection after a message from the client."""

    server: Recorder
    client: Recorder
    connection: TLSConnection
    sent: bytes = field(default=b"ping")

    @property
    def accepted(self) -> bool:
        """The server got the client's application data and neither side failed."""
        return self.server.data == self.sent and self.server.lost is None

    @property
    def server_reason(self) -> str:
        """Why the server ended the connection (empty when it did not)."""
        return self.server.failure_text or ""


def attempt(server_options: object, client_options: object) -> Outcome:
    """Handshake, then send ``ping`` from the client (TLS 1.3 verifies client certificates
    after the client considers the handshake done, so only data shows the verdict)."""
    factory = RecorderFactory()
    client = Recorder()
    connection = connect_tls(factory, client, server_options, client_options)
    outcome = Outcome(factory.built[0], client, connection)
    if client.lost is None:
        client.transport.write(outcome.sent)
        connection.flush()
    return outcome


#: Both TLS usages, as trustme grants them.
BOTH_USAGES = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)


def key_usage(**granted: bool) -> x509.KeyUsage:
    """A KeyUsage extension with only the named bits set, e.g. ``key_usage(key_agreement=True)``."""
    bits = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    bits.update(granted)
    return x509.KeyUsage(**bits)


@dataclass(frozen=True)
class Issuer:
    """A certificate and the key that signs with it, for :func:`build_certificate`."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def of(cls, pki: TestPKI) -> Issuer:
        """The CA of a (default, ECDSA) :class:`TestPKI`."""
        key = serialization.load_pem_private_key(pki.ca.private_key_pem.bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey), "needs an ECDSA TestPKI"
        return cls(x509.load_pem_x509_certificate(pki.ca.cert_pem.bytes()), key)


def build_certificate(
    directory: Path,
    name: str,
    common_name: str,
    *,
    issuer: Issuer | None = None,
    ca: bool | None = False,
    usage: x509.KeyUsage | None = None,
    extended_usages: Sequence[x509.ObjectIdentifier] = BOTH_USAGES,
    dns_names: Sequence[str] = ("localhost",),
    valid_from: datetime.timedelta = datetime.timedelta(hours=-1),
    valid_until: datetime.timedelta = datetime.timedelta(days=30),
) -> tuple[LeafFiles, Issuer]:
    """A P-256 certificate written as ``name.pem``/``name.key``, and itself as an issuer.

    Args:
        issuer: who signs it; None for a self-signed certificate.
        ca: the cA flag of Basic Constraints; None leaves the extension out.
        usage: a Key Usage extension (critical), or None for none.
        extended_usages: the Extended Key Usages; empty leaves the extension out.
        dns_names: SAN dNSNames; empty leaves the extension out.
        valid_from, valid_until: the validity period, relative to now.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + valid_from)
        .not_valid_after(now + valid_until)
    )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    if extended_usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(extended_usages)), False)
    if dns_names:
        names = [x509.DNSName(n) for n in dns_names]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    certificate = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    return write_leaf(directory, name, certificate, key), Issuer(certificate, key)


def _der(tag: int, body: bytes) -> bytes:
    """One DER TLV (definite length)."""
    if len(body) < 0x80:
        return bytes([tag, len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


#: AlgorithmIdentifier of ecdsa-with-SHA256 (RFC 5758 3.2: no parameters).
_ECDSA_WITH_SHA256 = _der(0x30, _der(0x06, bytes.fromhex("2a8648ce3d040302")))


def issue_unparseable_san(pki: TestPKI, name: str, common_name: str) -> LeafFiles:
    """A certificate of ``pki``'s CA whose SAN dNSName holds the byte 0xE9.

    OpenSSL verifies it (an IA5String's charset is not its concern); ``cryptography``
    refuses to parse its extensions. ``cryptography`` will not build such a name, so
    a clean certificate is built, the byte patched into its TBSCertificate, and the
    result signed again with the CA key.
    """
    files, _ = build_certificate(
        pki.directory, name, common_name, issuer=Issuer.of(pki), dns_names=["ct-roomq.example"]
    )
    certificate = x509.load_pem_x509_certificate(files.certificate.read_bytes())
    tbs = certificate.tbs_certificate_bytes.replace(b"ct-roomq", b"ct-room\xe9")
    signature = Issuer.of(pki).key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    der = _der(0x30, tbs + _ECDSA_WITH_SHA256 + _der(0x03, b"\x00" + signature))
    patched = x509.load_der_x509_certificate(der)  # loads: only its extensions are refused
    files.certificate.write_bytes(patched.public_bytes(serialization.Encoding.PEM))
    return files
