"""Start-up checks of the trusted CA certificates, and why they are worth a warning.

A trusted CA that is not a CA, is out of its validity period, or is an
intermediate without its root used to load silently; every peer it should admit
was then refused at the handshake. Each now draws a warning naming the file, the
certificate and the reason; only a configuration that can verify nobody at all
(client certificates required, every CA out of date) is refused.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from OpenSSL import SSL

from pacsref.security import (
    StaticSecurity,
    TLSConfigurationError,
    load_credentials,
    server_tls_options,
)
from pacsref.testing.tls import LeafFiles, RawClientTLS, TestPKI

from .helpers import Issuer, attempt, build_certificate, issue_unparseable_san, key_usage

DAY = datetime.timedelta(days=1)


@pytest.fixture
def pki(tmp_path: Path) -> TestPKI:
    return TestPKI(tmp_path)


def _trusting(pki: TestPKI, *files: Path, required: bool = True) -> StaticSecurity:
    """Our usual server certificate, trusting exactly ``files``."""
    return StaticSecurity(
        pki.server.certificate, pki.server.private_key, files, require_peer_certificate=required
    )


def _ca(pki: TestPKI, name: str, **options: object) -> tuple[LeafFiles, Issuer]:
    """A self-signed CA (or, with ``ca=...``, something that is not quite one)."""
    options = {"ca": True, "extended_usages": (), "dns_names": (), **options}
    return build_certificate(pki.directory, name, name.upper(), **options)  # type: ignore[arg-type]


def test_the_test_pki_ca_draws_no_warning(pki: TestPKI) -> None:
    """A self-signed CA valid now, with Basic Constraints cA true: nothing to say."""
    assert load_credentials(pki.security()).warnings == ()


@pytest.mark.parametrize(
    ("ca", "why"),
    [(False, "Basic Constraints cA is false"), (None, "it has no Basic Constraints extension")],
    ids=["cA-false", "no-basic-constraints"],
)
def test_a_certificate_that_is_not_a_ca_is_warned_about(
    pki: TestPKI, ca: bool | None, why: str
) -> None:
    """Nothing chains to it; a self-signed one can only pin a peer presenting itself."""
    files, _ = _ca(pki, "notca", ca=ca)
    [warning] = load_credentials(_trusting(pki, pki.ca_file, files.certificate)).warnings
    assert warning == (
        f"trusted CA file {files.certificate}: CN=NOTCA is not a CA certificate ({why}), so "
        "no peer certificate can chain to it; only a peer presenting this very self-signed "
        "certificate is accepted"
    )


def test_a_leaf_issued_by_a_ca_is_not_a_ca_either(pki: TestPKI) -> None:
    """A peer's (CA-issued) certificate put in trusted_ca: not a CA, and not self-signed."""
    [warning] = load_credentials(_trusting(pki, pki.ca_file, pki.server.certificate)).warnings
    assert warning.startswith(f"trusted CA file {pki.server.certificate}: CN=PACSREF")
    assert warning.endswith(
        "is not a CA certificate (Basic Constraints cA is false), so no peer certificate can "
        "chain to it"
    )


def test_a_key_usage_without_key_cert_sign_is_not_a_ca(pki: TestPKI) -> None:
    """cA true is not enough when Key Usage is present and lacks keyCertSign (RFC 5280)."""
    files, _ = _ca(pki, "nosign", usage=key_usage(digital_signature=True, crl_sign=True))
    [warning] = load_credentials(_trusting(pki, pki.ca_file, files.certificate)).warnings
    assert "CN=NOSIGN is not a CA certificate (its Key Usage lacks keyCertSign)" in warning


def test_a_legacy_root_openssl_accepts_is_not_warned_about(pki: TestPKI) -> None:
    """No Basic Constraints but keyCertSign: OpenSSL (not in strict mode) takes it as a CA."""
    files, _ = _ca(pki, "legacy", ca=None, usage=key_usage(key_cert_sign=True, crl_sign=True))
    assert load_credentials(_trusting(pki, files.certificate)).warnings == ()


@pytest.mark.parametrize(
    ("start", "end", "words"),
    [(-10 * DAY, -DAY, "expired on"), (DAY, 10 * DAY, "is not valid before")],
    ids=["expired", "not-yet-valid"],
)
def test_a_ca_out_of_its_validity_period_is_warned_about(
    pki: TestPKI, start: datetime.timedelta, end: datetime.timedelta, words: str
) -> None:
    """Next to a working CA (a rollover) it is a warning; the server still starts."""
    files, _ = _ca(pki, "dated", valid_from=start, valid_until=end)
    [warning] = load_credentials(_trusting(pki, pki.ca_file, files.certificate)).warnings
    assert warning.startswith(f"trusted CA file {files.certificate}: CN=DATED {words} ")
    assert "so no peer certificate can be verified with it" in warning


def test_only_expired_cas_cannot_verify_anybody(pki: TestPKI) -> None:
    """Client certificates required and no CA valid now: refused like no CA at all. With
    client certificates optional the server is still useful, so it only warns."""
    files, _ = _ca(pki, "expired", valid_from=-10 * DAY, valid_until=-DAY)
    with pytest.raises(TLSConfigurationError) as info:
        load_credentials(_trusting(pki, files.certificate))
    assert info.value.field == "trust_roots" and info.value.path == files.certificate
    assert "holds no CA certificate valid now (CN=EXPIRED expired on " in str(info.value)
    assert str(info.value).endswith("so no peer could be verified")
    [warning] = load_credentials(_trusting(pki, files.certificate, required=False)).warnings
    assert "CN=EXPIRED expired on" in warning


def test_a_trusted_certificate_cryptography_cannot_parse_is_not_a_crash(pki: TestPKI) -> None:
    """The checks parse extensions; one that cryptography refuses (OpenSSL does not) is a
    warning that it cannot be checked, not an exception out of the start-up."""
    odd = issue_unparseable_san(pki, "odd", "ODD")
    [warning] = load_credentials(_trusting(pki, pki.ca_file, odd.certificate)).warnings
    assert warning.startswith(f"trusted CA file {odd.certificate}: certificate (sha256 ")
    assert "cannot be checked, cryptography cannot parse it (" in warning


def _sub_ca(pki: TestPKI) -> tuple[Path, LeafFiles]:
    """An intermediate of the PKI's CA as its own file, and a client chain it issued."""
    sub = pki.ca.create_child_ca()
    sub_file = pki.directory / "sub-ca.pem"
    sub_file.write_bytes(sub.cert_pem.bytes())
    leaf = sub.issue_cert(common_name="CT_ROOM_1")
    chain = LeafFiles(pki.directory / "ct-chain.pem", pki.directory / "ct.key")
    chain.certificate.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    chain.private_key.write_bytes(leaf.private_key_pem.bytes())
    return sub_file, chain


def test_an_intermediate_alone_is_warned_about(pki: TestPKI) -> None:
    """The issuing sub-CA without its root: every peer it issued would be refused."""
    sub_file, _ = _sub_ca(pki)
    [warning] = load_credentials(_trusting(pki, sub_file)).warnings
    assert warning.startswith(f"trusted CA file {sub_file}: ")
    assert "is not self-signed: it is an intermediate CA, issued by " in warning
    assert "Peers are verified up to a self-signed root" in warning
    assert '"unable to get issuer certificate"' in warning
    assert "in the file as well" in warning


@pytest.mark.parametrize("layout", ["one file", "two files"])
def test_an_intermediate_with_its_root_is_fine(pki: TestPKI, layout: str) -> None:
    """Root and intermediate together, in one file or in two: no warning."""
    sub_file, _ = _sub_ca(pki)
    if layout == "one file":
        bundle = pki.directory / "bundle.pem"
        bundle.write_bytes(sub_file.read_bytes() + pki.ca_file.read_bytes())
        security = _trusting(pki, bundle)
    else:
        security = _trusting(pki, sub_file, pki.ca_file)
    assert load_credentials(security).warnings == ()


class _ChainClientTLS(RawClientTLS):
    """A raw client that sends its whole chain file, intermediates included."""

    def __init__(self, chain: LeafFiles, version: int) -> None:
        super().__init__(chain, SSL.TLS1_2_VERSION, version)
        self.context.use_certificate_chain_file(str(chain.certificate))


@pytest.mark.parametrize("version", [SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION], ids=["1.2", "1.3"])
def test_what_the_intermediate_warning_predicts(pki: TestPKI, version: int) -> None:
    """Peers are verified up to a self-signed root (no PARTIAL_CHAIN): trusting the sub-CA
    alone refuses the client it issued, even though the client sends it; the root admits it."""
    sub_file, chain = _sub_ca(pki)
    alone = attempt(server_tls_options(_trusting(pki, sub_file)), _ChainClientTLS(chain, version))
    assert not alone.accepted
    assert "unable to get issuer certificate" in alone.server_reason
    rooted = attempt(
        server_tls_options(_trusting(pki, pki.ca_file)), _ChainClientTLS(chain, version)
    )
    assert rooted.accepted, rooted.server_reason
