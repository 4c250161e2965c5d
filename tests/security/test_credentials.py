"""Start-up checks of the certificate, key and CA files: one clear line per problem."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import SSL

from pacsref.security import (
    BCP195_TLS12_CIPHERS,
    StaticSecurity,
    TLSConfigurationError,
    load_credentials,
)
from pacsref.testing.tls import RawClientTLS, RawServerTLS, TestPKI

from .helpers import Issuer, attempt, build_certificate, key_usage


@pytest.fixture
def pki(tmp_path: Path) -> TestPKI:
    return TestPKI(tmp_path)


def _encrypt_key(path: Path, passphrase: bytes) -> Path:
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    encrypted = path.with_suffix(".enc.key")
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )
    )
    return encrypted


def test_good_files_load(pki: TestPKI) -> None:
    """The test PKI's server certificate, key and CA load without warnings."""
    credentials = load_credentials(pki.security())
    assert len(credentials.chain) == 1 and len(credentials.trusted) == 1
    assert credentials.warnings == ()
    assert credentials.leaf.subject.rfc4514_string().startswith("CN=PACSREF")


def test_missing_file_is_named(pki: TestPKI, tmp_path: Path) -> None:
    """A certificate path that does not exist: the field and the path are in the message."""
    missing = tmp_path / "nope.pem"
    security = StaticSecurity(missing, pki.server.private_key, (pki.ca_file,))
    with pytest.raises(TLSConfigurationError, match=r"certificate .*nope.pem: does not exist"):
        load_credentials(security)


def test_not_pem(pki: TestPKI, tmp_path: Path) -> None:
    """A file that is not PEM is reported as such, not as an OpenSSL stack trace."""
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    with pytest.raises(TLSConfigurationError, match="is not a PEM certificate file"):
        load_credentials(StaticSecurity(junk, pki.server.private_key, (pki.ca_file,)))
    with pytest.raises(TLSConfigurationError, match=r"private_key .* is not a PEM private key"):
        load_credentials(StaticSecurity(pki.server.certificate, junk, (pki.ca_file,)))


def test_encrypted_key_needs_the_right_passphrase(pki: TestPKI) -> None:
    """Encrypted key: no passphrase and a wrong one are told apart; the right one loads."""
    key = _encrypt_key(pki.server.private_key, b"s3cret")
    base = {"certificate": pki.server.certificate, "trust_roots": (pki.ca_file,)}
    with pytest.raises(TLSConfigurationError, match="is encrypted; give its passphrase"):
        load_credentials(StaticSecurity(private_key=key, **base))
    with pytest.raises(TLSConfigurationError, match="wrong passphrase"):
        load_credentials(StaticSecurity(private_key=key, passphrase=b"guess", **base))
    assert load_credentials(StaticSecurity(private_key=key, passphrase=b"s3cret", **base))


def test_passphrase_for_plain_key_is_harmless(pki: TestPKI) -> None:
    """A passphrase given for an unencrypted key is ignored rather than refused."""
    security = StaticSecurity(
        pki.server.certificate, pki.server.private_key, (pki.ca_file,), passphrase=b"unused"
    )
    assert load_credentials(security)


def test_key_must_match_certificate(pki: TestPKI) -> None:
    """The key of another certificate is refused, naming the certificate it should match."""
    other = pki.issue("other", common_name="OTHER")
    security = StaticSecurity(pki.server.certificate, other.private_key, (pki.ca_file,))
    with pytest.raises(TLSConfigurationError, match="does not match the first certificate"):
        load_credentials(security)


def test_expired_and_future_certificates(pki: TestPKI) -> None:
    """Our own certificate must be valid now: expired and not-yet-valid are start-up errors."""
    expired = pki.issue_expired("old", "OLD")
    with pytest.raises(TLSConfigurationError, match="expired on"):
        load_credentials(pki.security(expired))
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=2)
    future = pki.issue(
        "new", common_name="NEW", not_before=later, not_after=later + datetime.timedelta(days=1)
    )
    with pytest.raises(TLSConfigurationError, match="is not valid before"):
        load_credentials(pki.security(future))


def test_extended_key_usage(pki: TestPKI) -> None:
    """No serverAuth: error (clients refuse it); no clientAuth: only a warning (outbound)."""
    client_only = pki.issue_with_usages("c", "C", [ExtendedKeyUsageOID.CLIENT_AUTH])
    with pytest.raises(TLSConfigurationError, match="without serverAuth"):
        load_credentials(pki.security(client_only))
    server_only = pki.issue_server_only("s", "S")
    [warning] = load_credentials(pki.security(server_only)).warnings
    assert "no clientAuth" in warning


@pytest.mark.parametrize(
    "usage",
    [key_usage(key_agreement=True), key_usage(key_encipherment=True), key_usage(crl_sign=True)],
    ids=["keyAgreement", "keyEncipherment", "cRLSign"],
)
def test_key_usage_without_digital_signature_refused(pki: TestPKI, usage: x509.KeyUsage) -> None:
    """Every suite we offer signs the handshake with our key: a Key Usage without
    digitalSignature used to load, then fail every TLS 1.2 handshake ("no shared cipher")."""
    leaf, _ = build_certificate(pki.directory, "ku", "KU", issuer=Issuer.of(pki), usage=usage)
    with pytest.raises(TLSConfigurationError) as info:
        load_credentials(pki.security(leaf))
    assert info.value.field == "certificate" and info.value.path == leaf.certificate
    text = str(info.value)
    assert text.startswith(f"certificate {leaf.certificate}: has a Key Usage extension without ")
    assert "digitalSignature" in text and "TLS 1.3" in text and "RFC 5280 4.2.1.3" in text
    assert 'every TLS 1.2 handshake would fail with "no shared cipher"' in text  # an EC key


@pytest.mark.parametrize(
    "usage",
    [key_usage(digital_signature=True), key_usage(digital_signature=True, key_encipherment=True)],
    ids=["digitalSignature", "digitalSignature+keyEncipherment"],
)
def test_key_usage_with_digital_signature_loads(pki: TestPKI, usage: x509.KeyUsage) -> None:
    """keyEncipherment is neither needed (no RSA key transport suite) nor in the way."""
    leaf, _ = build_certificate(pki.directory, "ku", "KU", issuer=Issuer.of(pki), usage=usage)
    assert load_credentials(pki.security(leaf)).warnings == ()


def test_why_digital_signature_is_required(pki: TestPKI) -> None:
    """The premise of the refusal above: with only the BCP 195 (ECDHE) suites, OpenSSL finds
    no shared cipher for an EC certificate whose Key Usage lacks digitalSignature."""
    leaf, _ = build_certificate(
        pki.directory, "ku", "KU", issuer=Issuer.of(pki), usage=key_usage(key_agreement=True)
    )
    suites = ":".join(BCP195_TLS12_CIPHERS)
    server = RawServerTLS(leaf, max_version=SSL.TLS1_2_VERSION, ciphers=suites)
    outcome = attempt(server, RawClientTLS(None, max_version=SSL.TLS1_2_VERSION, ciphers=suites))
    assert not outcome.accepted and "no shared cipher" in outcome.server_reason


def test_weak_rsa_key_refused(pki: TestPKI, tmp_path: Path) -> None:
    """A 1024-bit RSA key is below BCP 195's 2048 bits."""
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", key_type=trustme.KeyType.RSA)
    # Re-sign a certificate for the weak key with cryptography (trustme picks its own key sizes).
    template = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(template.subject)
        .issuer_name(template.issuer)
        .public_key(weak.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(template.not_valid_before_utc)
        .not_valid_after(template.not_valid_after_utc)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_path, key_path = tmp_path / "weak.pem", tmp_path / "weak.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        weak.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(TLSConfigurationError, match="1024-bit RSA key"):
        load_credentials(StaticSecurity(cert_path, key_path, (pki.ca_file,)))


def _leaf_for(key: object, tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A certificate for ``key`` signed by a throwaway CA, both written as PEM."""
    ca = trustme.CA()
    template = x509.load_pem_x509_certificate(ca.issue_cert("localhost").cert_chain_pems[0].bytes())
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(template.subject)
        .issuer_name(template.issuer)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(x509.random_serial_number())
        .not_valid_before(template.not_valid_before_utc)
        .not_valid_after(template.not_valid_after_utc)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: dsa.generate_private_key(2048), "is a DSA key, which no TLS 1.2"),
        (lambda: ec.generate_private_key(ec.SECP256K1()), "is an EC key on secp256k1"),
    ],
    ids=["dsa-2048", "secp256k1"],
)
def test_keys_no_tls_handshake_can_use_are_refused_at_start_up(
    pki: TestPKI, tmp_path: Path, make: Any, words: str
) -> None:
    """They used to pass and then fail every handshake with "no shared cipher"."""
    cert_path, key_path = _leaf_for(make(), tmp_path, "odd")
    with pytest.raises(TLSConfigurationError, match=words):
        load_credentials(StaticSecurity(cert_path, key_path, (pki.ca_file,)))


def test_required_peer_certificate_needs_trust_roots(pki: TestPKI) -> None:
    """Requiring client certificates with no CA to verify them against is a contradiction."""
    with pytest.raises(TLSConfigurationError, match="require_peer_certificate: is on but no"):
        load_credentials(pki.security(trust=False))


def test_what_openssl_refuses_when_building_the_context_names_the_key(
    pki: TestPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OpenSSL refusal beyond our own checks (say a policy of its own on key sizes) is a
    TLSConfigurationError naming private_key, not a traceback out of the start-up."""
    from OpenSSL import SSL
    from twisted.internet.ssl import CertificateOptions

    from pacsref.security import server_tls_options

    def refuse(self: object) -> None:
        raise SSL.Error([("SSL routines", "", "ee key too small")])

    monkeypatch.setattr(CertificateOptions, "getContext", refuse)
    with pytest.raises(
        TLSConfigurationError, match="OpenSSL cannot use it: ee key too small"
    ) as info:
        server_tls_options(pki.security(pki.server))
    assert info.value.field == "private_key"
