"""Certificate identities and the AE-title binding rules, with plain values."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from pacsref.security import (
    CertificateBinding,
    CertificateIdentity,
    IdentityKind,
    binding_refusal,
    normalize_fingerprint,
)
from pacsref.testing.tls import TestPKI

from .helpers import issue_unparseable_san

CT = CertificateIdentity("aa" * 32, ("CT_ROOM_1",), ("ct1.example",), "CN=CT_ROOM_1")
MR = CertificateIdentity("bb" * 32, ("MR_1",), (), "CN=MR_1")
STRANGER = CertificateIdentity("cc" * 32, ("STRANGER",), (), "CN=STRANGER")

TABLE = (
    CertificateBinding(IdentityKind.SUBJECT_CN, "CT_ROOM_1", frozenset({"CT_ROOM_1", "CT_QR"})),
    CertificateBinding(IdentityKind.FINGERPRINT_SHA256, "BB:" * 31 + "BB", frozenset({"MR_1"})),
)


def test_identity_of_a_real_certificate(tmp_path: Path) -> None:
    """CN, SAN DNS names (lower-cased) and the SHA-256 fingerprint are read from a certificate."""
    pki = TestPKI(tmp_path)
    files = pki.issue("ct", "CT1.Example.org", "10.0.0.7", common_name="CT_ROOM_1")
    certificate = x509.load_pem_x509_certificate(files.certificate.read_bytes())
    identity = CertificateIdentity.of(certificate)
    assert identity.subject_cns == ("CT_ROOM_1",)
    assert identity.san_dns == ("ct1.example.org",)
    assert identity.fingerprint_sha256 == certificate.fingerprint(hashes.SHA256()).hex()
    assert identity.subject.startswith("CN=CT_ROOM_1")


@pytest.mark.parametrize(
    "text", ["AB:" * 31 + "AB", "ab" * 32, " " + "Ab" * 32 + "\n", "ab " * 31 + "ab"]
)
def test_fingerprint_spellings(text: str) -> None:
    """Colons, spaces and case do not matter in a fingerprint."""
    assert normalize_fingerprint(text) == "ab" * 32


@pytest.mark.parametrize("text", ["ab" * 31, "zz" * 32, "ab" * 33, ""])
def test_bad_fingerprints(text: str) -> None:
    """Anything but 64 hex digits is refused."""
    with pytest.raises(ValueError, match="64 hex digits"):
        normalize_fingerprint(text)


def test_binding_values_are_normalised() -> None:
    """Fingerprints lose colons and case, DNS names their case, AE titles their padding."""
    row = CertificateBinding(IdentityKind.SAN_DNS, " CT1.Example ", frozenset({" CT1 "}))
    assert row.value == "ct1.example" and row.ae_titles == {"CT1"}
    assert row.matches(CT) and not row.matches(MR)
    fingerprint = CertificateBinding(IdentityKind.FINGERPRINT_SHA256, "AA:" * 31 + "AA", {"X"})
    assert fingerprint.value == "aa" * 32 and fingerprint.matches(CT)


def test_subject_cn_match_is_exact() -> None:
    """A CN binding matches only the same text: no case folding, no prefix."""
    assert CertificateBinding(IdentityKind.SUBJECT_CN, "CT_ROOM_1", frozenset({"X"})).matches(CT)
    assert not CertificateBinding(IdentityKind.SUBJECT_CN, "ct_room_1", frozenset({"X"})).matches(
        CT
    )
    assert not CertificateBinding(IdentityKind.SUBJECT_CN, "CT_ROOM", frozenset({"X"})).matches(CT)


def test_binding_needs_titles() -> None:
    """A row without AE titles is a mistake, refused at construction."""
    with pytest.raises(ValueError, match="ae_titles"):
        CertificateBinding(IdentityKind.SUBJECT_CN, "X", frozenset())


@pytest.mark.parametrize(
    ("calling", "identity", "allowed"),
    [
        ("CT_ROOM_1", CT, True),  # bound certificate, one of its titles
        ("CT_QR", CT, True),  # bound certificate, its other title
        ("MR_1", CT, False),  # bound certificate, another row's title
        ("ANYONE", CT, False),  # bound certificate, unbound title
        ("MR_1", MR, True),  # fingerprint row
        ("CT_ROOM_1", STRANGER, False),  # bound title, certificate of nobody in that row
        ("CT_ROOM_1", None, False),  # bound title, no certificate
        ("ANYONE", STRANGER, True),  # neither bound: the table only restricts
        ("ANYONE", None, True),
    ],
)
def test_binding_rules(calling: str, identity: CertificateIdentity | None, allowed: bool) -> None:
    """Both directions are enforced; what the table does not name is left alone."""
    refusal = binding_refusal(TABLE, calling, identity)
    assert (refusal is None) is allowed, refusal


def test_require_binding_refuses_unlisted_certificates() -> None:
    """With require_binding a certificate (or none) that matches no row is refused too."""
    assert binding_refusal(TABLE, "ANYONE", STRANGER, require_binding=True) is not None
    assert binding_refusal(TABLE, "ANYONE", None, require_binding=True) is not None
    assert binding_refusal(TABLE, "CT_ROOM_1", CT, require_binding=True) is None


def test_refusal_reasons_name_the_parties() -> None:
    """The reason says which certificate, which AE title and which rows, for the log."""
    wrong_title = binding_refusal(TABLE, "MR_1", CT)
    assert wrong_title is not None
    assert "CN=CT_ROOM_1" in wrong_title and "CT_QR, CT_ROOM_1" in wrong_title
    assert "'MR_1'" in wrong_title
    impostor = binding_refusal(TABLE, "CT_ROOM_1", STRANGER)
    assert impostor is not None
    assert 'subject_cn = "CT_ROOM_1"' in impostor and "CN=STRANGER" in impostor
    assert "no certificate" in (binding_refusal(TABLE, "MR_1", None) or "")


def test_calling_title_padding_is_ignored() -> None:
    """The Calling AE Title arrives space-padded to 16 characters; padding is not significant."""
    assert binding_refusal(TABLE, "MR_1            ", MR) is None


def test_identity_of_an_unparseable_certificate_names_the_problem(tmp_path: Path) -> None:
    """OpenSSL verifies a SAN dNSName with a 0xE9 byte; cryptography cannot parse it. The
    error names the certificate (by what can still be read) and the malformed part."""
    files = issue_unparseable_san(TestPKI(tmp_path), "bad", "BADSAN")
    certificate = x509.load_pem_x509_certificate(files.certificate.read_bytes())
    fingerprint = certificate.fingerprint(hashes.SHA256()).hex()
    with pytest.raises(ValueError, match="subject_alternative_name") as info:
        CertificateIdentity.of(certificate)
    assert str(info.value).startswith(
        f"certificate CN=BADSAN (sha256 {fingerprint[:16]}...) cannot be read: "
        "its extensions are malformed ("
    )
