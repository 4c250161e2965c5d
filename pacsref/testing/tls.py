"""TLS for tests: certificates made on the spot, and TLS connections pumped in memory.

:class:`TestPKI` makes a CA and certificates with ``trustme`` (a test
dependency, imported lazily) and writes them as PEM files, since the server
reads files; special cases trustme cannot make (a certificate without the
clientAuth usage) are signed with ``cryptography`` and the same CA key.

:func:`connect_tls` joins a server factory and a client protocol through
Twisted's ``TLSMemoryBIOFactory`` over ``twisted.test.iosim`` with a
``Clock``: the real OpenSSL handshake, no sockets, no sleeps (STYLE.md
principles 9 and 13). ``iosim`` is not public Twisted API, so this is the one
place it is wrapped for TLS.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.test import iosim
from zope.interface import implementer

from pacsref.security import CertificateBinding, StaticSecurity

__all__ = [
    "LeafFiles",
    "RawClientTLS",
    "RawServerTLS",
    "TLSConnection",
    "TestPKI",
    "connect_tls",
    "write_leaf",
    "write_security_options",
]

#: The loopback addresses the in-memory connections pretend to use.
SERVER_ADDRESS = IPv4Address("TCP", "127.0.0.1", 11112)
CLIENT_ADDRESS = IPv4Address("TCP", "127.0.0.1", 40000)


@dataclass(frozen=True, slots=True)
class LeafFiles:
    """A certificate and its key, as PEM files (chain file: leaf first)."""

    certificate: Path
    private_key: Path


def write_leaf(
    directory: Path, name: str, certificate: x509.Certificate, key: CertificateIssuerPrivateKeyTypes
) -> LeafFiles:
    """Write ``certificate`` and its unencrypted ``key`` as ``name.pem`` and ``name.key``."""
    files = LeafFiles(directory / f"{name}.pem", directory / f"{name}.key")
    files.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    files.private_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


class TestPKI:
    """A throw-away CA and certificates for one test, written under ``directory``.

    Args:
        directory: where the PEM files go (a pytest ``tmp_path``).
        server_identities: SAN entries of the server certificate (host names or IPs).
        server_cn: the server certificate's subject CN.
        rsa: RSA keys instead of trustme's default ECDSA P-256.
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(
        self,
        directory: Path,
        server_identities: Iterable[str] = ("localhost", "127.0.0.1"),
        server_cn: str = "PACSREF",
        rsa: bool = False,
    ) -> None:
        import trustme

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key_type = trustme.KeyType.RSA if rsa else trustme.KeyType.ECDSA
        self.ca = trustme.CA(organization_name="pacsref test CA", key_type=self._key_type)
        self.ca_file = self.directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.server = self.issue("server", *server_identities, common_name=server_cn)

    def issue(
        self,
        name: str,
        *identities: str,
        common_name: str | None = None,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        ca: Any = None,
    ) -> LeafFiles:
        """A leaf certificate (serverAuth + clientAuth) written as ``name.pem``/``name.key``.

        ``ca`` issues it instead of this PKI's CA (an untrusted issuer).
        """
        leaf = (ca or self.ca).issue_cert(
            *identities,
            common_name=common_name,
            not_before=not_before,
            not_after=not_after,
            key_type=self._key_type,
        )
        files = LeafFiles(self.directory / f"{name}.pem", self.directory / f"{name}.key")
        leaf.cert_chain_pems[0].write_to_path(str(files.certificate))
        leaf.private_key_pem.write_to_path(str(files.private_key))
        return files

    def issue_expired(self, name: str, common_name: str) -> LeafFiles:
        """A certificate that expired yesterday (valid for the day before)."""
        now = datetime.datetime.now(datetime.UTC)
        return self.issue(
            name,
            common_name=common_name,
            not_before=now - datetime.timedelta(days=2),
            not_after=now - datetime.timedelta(days=1),
        )

    def issue_untrusted(self, name: str, common_name: str) -> LeafFiles:
        """A certificate from another CA, which the server does not trust."""
        import trustme

        return self.issue(name, common_name=common_name, ca=trustme.CA())

    def issue_with_usages(
        self,
        name: str,
        common_name: str,
        usages: Iterable[x509.ObjectIdentifier],
        key_usage: x509.KeyUsage | None = None,
    ) -> LeafFiles:
        """A certificate with exactly these Extended Key Usages, signed by this CA.

        trustme always grants serverAuth and clientAuth; a wrong-purpose
        certificate (e.g. serverAuth only, presented as a client certificate)
        needs ``cryptography`` directly. ``key_usage``: a critical Key Usage extension.
        """
        ca_key = serialization.load_pem_private_key(self.ca.private_key_pem.bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.ca.cert_pem.bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        )
        if key_usage is not None:
            certificate = certificate.add_extension(key_usage, critical=True)
        signed = certificate.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        return write_leaf(self.directory, name, signed, key)

    def issue_key_agreement_only(self, name: str, common_name: str) -> LeafFiles:
        """clientAuth, but a Key Usage of keyAgreement alone: it may not sign a handshake."""
        return self.issue_with_usages(
            name, common_name, [ExtendedKeyUsageOID.CLIENT_AUTH], key_usage=_key_usage(False)
        )

    def issue_signing_client(self, name: str, common_name: str) -> LeafFiles:
        """clientAuth with a Key Usage of digitalSignature alone: a proper client certificate."""
        return self.issue_with_usages(
            name, common_name, [ExtendedKeyUsageOID.CLIENT_AUTH], key_usage=_key_usage(True)
        )

    def issue_server_only(self, name: str, common_name: str) -> LeafFiles:
        """serverAuth only: the wrong purpose for a client certificate."""
        return self.issue_with_usages(name, common_name, [ExtendedKeyUsageOID.SERVER_AUTH])

    def security(
        self,
        leaf: LeafFiles | None = None,
        *,
        require_peer_certificate: bool = True,
        trust: bool = True,
        bindings: Iterable[CertificateBinding] = (),
        require_binding: bool = False,
    ) -> StaticSecurity:
        """An ISecurity provider presenting ``leaf`` (default: the server certificate)."""
        leaf = leaf or self.server
        return StaticSecurity(
            certificate=leaf.certificate,
            private_key=leaf.private_key,
            trust_roots=(self.ca_file,) if trust else (),
            require_peer_certificate=require_peer_certificate,
            bindings=tuple(bindings),
            require_binding=require_binding,
        )


@implementer(IOpenSSLClientConnectionCreator)
class RawClientTLS:
    """A client connection creator from a bare ``SSL.Context``: a misbehaving TLS peer.

    For offers our own options never make (TLS 1.0, weak suites, an expired
    or wrong-purpose certificate: :func:`pacsref.security.load_credentials`
    refuses to load those), so the server's refusals can be tested in memory.
    It does not verify the server: the tests are about what the server does.

    Args:
        leaf: the client certificate to present, or None for none.
        min_version, max_version: ``SSL.TLS1_VERSION`` ... ``SSL.TLS1_3_VERSION``.
        ciphers: an OpenSSL TLS 1.2 cipher string; ``@SECLEVEL=0`` is added so
            that OpenSSL itself does not veto the old offers being tested.
    """

    def __init__(
        self,
        leaf: LeafFiles | None = None,
        min_version: int = SSL.TLS1_2_VERSION,
        max_version: int = SSL.TLS1_3_VERSION,
        ciphers: str | None = None,
    ) -> None:
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_min_proto_version(min_version)
        context.set_max_proto_version(max_version)
        if ciphers is not None or min_version < SSL.TLS1_2_VERSION:
            context.set_cipher_list(f"{ciphers or 'ALL'}:@SECLEVEL=0".encode("ascii"))
        if leaf is not None:
            context.use_certificate_file(str(leaf.certificate))
            context.use_privatekey_file(str(leaf.private_key))
        self.context = context

    def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        """A connection from the bare context; Twisted sets the connect state."""
        return SSL.Connection(self.context)


@implementer(IOpenSSLServerConnectionCreator)
class RawServerTLS:
    """A server connection creator from a bare ``SSL.Context``: a misbehaving TLS server.

    For testing that our *client* refuses what a bad peer offers (TLS 1.0/1.1,
    suites outside BCP 195).
    """

    def __init__(
        self,
        leaf: LeafFiles,
        min_version: int = SSL.TLS1_2_VERSION,
        max_version: int = SSL.TLS1_3_VERSION,
        ciphers: str | None = None,
    ) -> None:
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_min_proto_version(min_version)
        context.set_max_proto_version(max_version)
        if ciphers is not None or min_version < SSL.TLS1_2_VERSION:
            context.set_cipher_list(f"{ciphers or 'ALL'}:@SECLEVEL=0".encode("ascii"))
        context.use_certificate_file(str(leaf.certificate))
        context.use_privatekey_file(str(leaf.private_key))
        self.context = context

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        """A connection from the bare context; Twisted sets the accept state."""
        return SSL.Connection(self.context)


@dataclass
class TLSConnection:
    """Both ends of an in-memory TLS connection and the pump between them.

    Attributes:
        client: the client's ``TLSMemoryBIOProtocol`` (its ``wrappedProtocol``
            is the application protocol).
        server: the server's ``TLSMemoryBIOProtocol``.
        pump: moves bytes; ``pump.flush()`` until quiet.
        clock: the time both TLS layers and the application protocols use.
    """

    client: TLSMemoryBIOProtocol
    server: TLSMemoryBIOProtocol
    pump: iosim.IOPump
    clock: Clock

    def flush(self) -> None:
        """Move bytes until neither side has anything to send."""
        self.pump.flush()


def connect_tls(
    server_factory: Factory,
    client_protocol: Protocol,
    server_options: object,
    client_options: object | None,
    clock: Clock | None = None,
) -> TLSConnection:
    """Connect ``client_protocol`` to a protocol of ``server_factory`` over TLS, in memory.

    The handshake runs during the initial flush; a refused handshake has
    already ended both sides (``connectionLost``) when this returns. With
    ``client_options`` None the client speaks plain TCP to the TLS server
    (plain DICOM on the TLS port, or a peer that never sends a ClientHello);
    ``client`` is then the client protocol itself.
    """
    clock = clock or Clock()
    server_tls = TLSMemoryBIOFactory(server_options, False, server_factory, clock)
    server = server_tls.buildProtocol(CLIENT_ADDRESS)
    if client_options is None:
        client: Any = client_protocol
    else:
        client_tls = TLSMemoryBIOFactory(
            client_options, True, Factory.forProtocol(lambda: client_protocol), clock
        )
        client = client_tls.buildProtocol(SERVER_ADDRESS)
    pump = iosim.connect(
        server,
        iosim.FakeTransport(server, True, SERVER_ADDRESS, CLIENT_ADDRESS),
        client,
        iosim.FakeTransport(client, False, CLIENT_ADDRESS, SERVER_ADDRESS),
        clock=clock,
    )
    return TLSConnection(client, server, pump, clock)


def write_security_options(
    server_dir: Path,
    pki: TestPKI,
    *,
    require_client_certificate: bool = True,
    bindings: Iterable[tuple[str, str, Iterable[str]]] = (),
    require_binding: bool = False,
) -> Path:
    """Write ``<server_dir>/addin-options/security.toml`` for ``pki``'s server certificate.

    Args:
        bindings: ``(selector, value, ae_titles)`` rows, e.g.
            ``("subject_cn", "CT_ROOM_1", ["CT_ROOM_1"])``.

    Returns:
        the options file.
    """
    lines = [
        f"certificate = {_toml(pki.server.certificate)}",
        f"private_key = {_toml(pki.server.private_key)}",
        f"trusted_ca = [{_toml(pki.ca_file)}]",
        f"require_client_certificate = {str(require_client_certificate).lower()}",
        f"require_binding = {str(require_binding).lower()}",
    ]
    for selector, value, titles in bindings:
        listed = ", ".join(_toml(title) for title in titles)
        lines += ["", "[[binding]]", f"{selector} = {_toml(value)}", f"ae_titles = [{listed}]"]
    path = Path(server_dir) / "addin-options" / "security.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: object) -> str:
    from pacsref.settings.tomltext import toml_string

    return toml_string(str(value))


def _key_usage(digital_signature: bool) -> x509.KeyUsage:
    """digitalSignature alone, or keyAgreement alone."""
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=not digital_signature, key_cert_sign=False,
        crl_sign=False, encipher_only=False, decipher_only=False,
    )  # fmt: skip
