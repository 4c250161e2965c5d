"""The BCP 195 TLS options, proven by real OpenSSL handshakes pumped in memory.

Each test makes its certificates with trustme (or cryptography, for what
trustme cannot make), builds the server's options exactly as the listener
does, and lets a client (ours, or a deliberately bad one) try. No sockets,
no sleeps: ``TLSMemoryBIOFactory`` over ``iosim`` with a ``Clock``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import SSL

from pacsref.security import (
    BCP195_TLS12_CIPHERS,
    TLS13_CIPHERSUITES,
    client_tls_options,
    server_tls_options,
)
from pacsref.security.options import verify_error_text
from pacsref.testing.tls import RawClientTLS, RawServerTLS, TestPKI

from .helpers import attempt


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def rsa_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("rsa-pki"), rsa=True)


@pytest.fixture(scope="module")
def server(pki: TestPKI) -> object:
    return server_tls_options(pki.security())


def test_tls13_handshake_with_client_certificate(pki: TestPKI, server: object) -> None:
    """Our client and server agree on TLS 1.3; the server sees the client's certificate."""
    client = client_tls_options(pki.security(pki.issue("ct1", common_name="CT1")), "127.0.0.1")
    outcome = attempt(server, client)
    assert outcome.accepted, outcome.server_reason
    assert outcome.server.session["tls_version"] == "TLSv1.3"
    assert outcome.server.session["cipher"] in {
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
    }
    assert str(outcome.server.session["peer_certificate"]).startswith("CN=CT1")


@pytest.mark.parametrize("cipher", BCP195_TLS12_CIPHERS)
def test_tls12_handshake_with_each_bcp195_suite(
    pki: TestPKI, rsa_pki: TestPKI, cipher: str
) -> None:
    """A TLS 1.2-only client offering one RFC 9325 4.2 suite gets exactly that suite."""
    authority = rsa_pki if "-RSA-" in cipher else pki
    leaf = authority.issue("tls12", common_name="CT1")
    client = RawClientTLS(leaf, SSL.TLS1_2_VERSION, SSL.TLS1_2_VERSION, ciphers=cipher)
    outcome = attempt(server_tls_options(authority.security()), client)
    assert outcome.accepted, outcome.server_reason
    assert outcome.server.session["tls_version"] == "TLSv1.2"
    assert outcome.server.session["cipher"] == cipher


@pytest.mark.parametrize(
    ("version", "name"), [(SSL.TLS1_VERSION, "TLS 1.0"), (SSL.TLS1_1_VERSION, "TLS 1.1")]
)
def test_old_protocol_versions_refused(
    pki: TestPKI, server: object, version: int, name: str
) -> None:
    """A client that offers only TLS 1.0 or 1.1 is refused in the handshake (RFC 8996)."""
    client = RawClientTLS(pki.issue("old", common_name="OLD"), version, version)
    outcome = attempt(server, client)
    assert not outcome.accepted, name
    assert outcome.server_reason == "unsupported protocol"
    assert outcome.client.lost is not None


@pytest.mark.parametrize(
    "cipher",
    [
        "AES128-GCM-SHA256",  # RSA key transport: no forward secrecy
        "AES128-SHA",  # RSA key transport, CBC, SHA-1 (TLS 1.2's MTI suite)
        "DHE-RSA-AES128-GCM-SHA256",  # finite-field DHE: RFC 9325 4.1 SHOULD NOT
        "ECDHE-RSA-AES128-SHA256",  # CBC (MAC-then-encrypt)
        "ECDHE-RSA-AES256-SHA",  # CBC with SHA-1
        "ECDHE-RSA-CHACHA20-POLY1305",  # fine cryptographically, but not in RFC 9325 4.2
    ],
)
def test_suites_outside_bcp195_refused(rsa_pki: TestPKI, cipher: str) -> None:
    """A TLS 1.2 client offering only a suite outside RFC 9325 4.2 is refused: no shared cipher."""
    client = RawClientTLS(
        rsa_pki.issue("weak", common_name="WEAK"), SSL.TLS1_2_VERSION, SSL.TLS1_2_VERSION, cipher
    )
    outcome = attempt(server_tls_options(rsa_pki.security()), client)
    assert not outcome.accepted
    assert outcome.server_reason == "no shared cipher"


def test_server_offers_only_bcp195_suites(server: object) -> None:
    """The server's TLS 1.2 cipher list is exactly RFC 9325 4.2, AES-128 first."""
    context = server.options.getContext()  # type: ignore[attr-defined]
    names = SSL.Connection(context).get_cipher_list()
    assert [name for name in names if not name.startswith("TLS_")] == list(BCP195_TLS12_CIPHERS)
    assert [name for name in names if name.startswith("TLS_")] == list(TLS13_CIPHERSUITES)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        ("issue_expired", "certificate has expired"),
        ("issue_untrusted", "unable to get local issuer certificate"),
        # X509_V_ERR_INVALID_PURPOSE is 26 in every OpenSSL; its text is not ("unsupported"
        # in 1.1 and 3.x, "unsuitable" in 4.0): the server logs the linked one's own.
        ("issue_server_only", verify_error_text(26)),
    ],
)
@pytest.mark.parametrize("version", [SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION])
def test_bad_client_certificates_refused_with_reason(
    pki: TestPKI, server: object, make: str, reason: str, version: int
) -> None:
    """Expired, untrusted and wrong-purpose client certificates are refused, and the server
    can say which of the three it was (the verify callback's record)."""
    leaf = getattr(pki, make)(make, "BAD")
    outcome = attempt(server, RawClientTLS(leaf, version, version))
    assert not outcome.accepted
    assert outcome.server_reason.startswith(f"peer certificate refused: {reason}")
    assert "CN=BAD" in outcome.server_reason


@pytest.mark.parametrize("version", [SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION])
def test_a_client_certificate_that_may_not_sign_is_refused(
    pki: TestPKI, server: object, version: int
) -> None:
    """Key Usage keyAgreement only: it may not sign the handshake (RFC 8446 4.4.2.3), which
    OpenSSL's purpose check lets through; refused, saying so. digitalSignature: accepted."""
    outcome = attempt(
        server, RawClientTLS(pki.issue_key_agreement_only("ka", "KA"), version, version)
    )
    assert not outcome.accepted
    assert outcome.server_reason.startswith(
        "peer certificate refused: key usage does not allow digitalSignature"
    )
    assert "CN=KA" in outcome.server_reason
    signing = pki.issue_signing_client("ds", "DS")
    assert attempt(server, RawClientTLS(signing, version, version)).accepted


@pytest.mark.parametrize("version", [SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION])
def test_missing_client_certificate_refused_when_required(
    pki: TestPKI, server: object, version: int
) -> None:
    """No client certificate while one is required: refused, and said so."""
    outcome = attempt(server, RawClientTLS(None, version, version))
    assert not outcome.accepted
    assert outcome.server_reason == "peer did not return a certificate"


def test_optional_client_certificate(pki: TestPKI) -> None:
    """With require_peer_certificate off, no certificate is fine but a bad one is still refused."""
    server = server_tls_options(pki.security(require_peer_certificate=False))
    assert attempt(server, RawClientTLS(None)).accepted
    refused = attempt(server, RawClientTLS(pki.issue_expired("late", "LATE")))
    assert refused.server_reason.startswith("peer certificate refused: certificate has expired")


def test_without_trust_roots_no_certificate_is_requested(pki: TestPKI) -> None:
    """No trusted CA and no requirement: the server asks for no client certificate at all."""
    server = server_tls_options(pki.security(require_peer_certificate=False, trust=False))
    outcome = attempt(server, RawClientTLS(pki.issue("any", common_name="ANY")))
    assert outcome.accepted
    assert outcome.server.session["peer_certificate"] == "none"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_client_verifies_server_identity(pki: TestPKI, server: object, host: str) -> None:
    """Outbound: the AE table's host (IP or DNS name) must be in the server certificate's SAN."""
    client = client_tls_options(pki.security(), host)
    assert attempt(server, client).accepted


@pytest.mark.parametrize(
    ("host", "kind"), [("127.0.0.2", "iPAddress"), ("pacs.example.org", "dNSName")]
)
def test_client_refuses_server_with_other_identity(
    pki: TestPKI, server: object, host: str, kind: str
) -> None:
    """Outbound: a valid certificate for another host is refused by service_identity."""
    outcome = attempt(server, client_tls_options(pki.security(), host))
    assert not outcome.accepted
    assert (outcome.client.failure_text or "").startswith(
        f"peer certificate refused: not issued for {host} (no subjectAltName {kind} matches it)"
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_client_refuses_a_trusted_certificate_without_subject_alt_name(
    pki: TestPKI, host: str
) -> None:
    """Outbound: a certificate from our CA that names no host (a CN only, as many device
    certificates are) identifies nobody. Twisted's own check let it through after logging
    service_identity's CertificateError, so any holder of such a certificate could answer
    for every AE marked secure; the client must not send a byte of DICOM to it."""
    impostor = pki.issue_with_usages(
        f"cn-only-{host}", host, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    outcome = attempt(RawServerTLS(impostor), client_tls_options(pki.security(), host))
    assert not outcome.accepted
    assert outcome.server.data == b""
    assert (outcome.client.failure_text or "").startswith(
        f"peer certificate refused: not issued for {host} (Certificate does not contain any "
    )


def test_client_names_why_an_expired_server_certificate_is_refused(pki: TestPKI) -> None:
    """Outbound: the X509 reason reaches the log line, not just "certificate verify failed"."""
    expired = pki.issue_expired("expired-server", common_name="OLDPACS")
    outcome = attempt(RawServerTLS(expired), client_tls_options(pki.security(), "localhost"))
    assert not outcome.accepted
    assert (outcome.client.failure_text or "").startswith(
        "peer certificate refused: certificate has expired (depth 0, CN=OLDPACS,"
    )


def test_client_refuses_untrusted_server(pki: TestPKI, tmp_path: Path) -> None:
    """Outbound: a server whose certificate comes from a CA we do not trust is refused."""
    other = TestPKI(tmp_path / "other")
    outcome = attempt(
        server_tls_options(other.security()), client_tls_options(pki.security(), "localhost")
    )
    assert not outcome.accepted
    # the other server sends its chain up to its own root, which we do not trust
    assert (outcome.client.failure_text or "").startswith(
        "peer certificate refused: self-signed certificate in certificate chain (depth 1, "
    )


def test_client_offers_only_bcp195_suites(pki: TestPKI) -> None:
    """Outbound: our ClientHello carries no TLS 1.2 suite outside RFC 9325 4.2."""
    creator = client_tls_options(pki.security(), "localhost")
    connection = creator.clientConnectionForTLS(_FakeTLSProtocol())  # type: ignore[attr-defined]
    names = connection.get_cipher_list()
    assert [n for n in names if not n.startswith("TLS_")] == list(BCP195_TLS12_CIPHERS)


@pytest.mark.parametrize("version", [SSL.TLS1_VERSION, SSL.TLS1_1_VERSION])
def test_client_refuses_old_protocol_server(pki: TestPKI, version: int) -> None:
    """Outbound: a peer that speaks only TLS 1.0 or 1.1 finds nothing it can accept in our
    ClientHello (we offer 1.2 and 1.3 only); the connection fails on both ends."""
    server = RawServerTLS(pki.server, version, version)
    outcome = attempt(server, client_tls_options(pki.security(), "localhost"))
    assert not outcome.accepted
    assert outcome.server_reason == "unsupported protocol"
    assert outcome.client.failure_text == "tlsv1 alert protocol version"


def test_client_refuses_weak_suite_server(rsa_pki: TestPKI) -> None:
    """Outbound: a TLS 1.2 peer that accepts only a suite outside BCP 195 is refused."""
    server = RawServerTLS(rsa_pki.server, SSL.TLS1_2_VERSION, SSL.TLS1_2_VERSION, "AES128-SHA")
    outcome = attempt(server, client_tls_options(rsa_pki.security(), "localhost"))
    assert not outcome.accepted
    assert outcome.client.lost is not None


class _FakeTLSProtocol:
    """Just enough of a TLSMemoryBIOProtocol for Twisted's ALPN lookup."""

    class factory:
        wrappedFactory = None


def test_verify_errors_read_as_the_linked_openssl_says_them() -> None:
    """The reason is OpenSSL's own text for the code, with a hint where one helps: codes
    differ between OpenSSL versions, so no table of ours can name them (24 was "invalid CA
    certificate" in 1.1 and 3.x; 79 is in 4.0). Never only a number where OpenSSL knows it."""
    from OpenSSL._util import ffi, lib

    for code in (10, 22, 24, 34, 66, 68, 79):
        expected = ffi.string(lib.X509_verify_cert_error_string(code)).decode()
        assert verify_error_text(code) == expected
        assert not verify_error_text(code).startswith("X509 verify error")
    assert verify_error_text(20) == (
        "unable to get local issuer certificate (not signed by a trusted CA)"
    )
    assert verify_error_text(26).endswith(
        "certificate purpose (no clientAuth/serverAuth Extended Key Usage)"
    )
