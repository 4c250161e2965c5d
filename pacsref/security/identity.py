"""Who a peer certificate names, and which calling AE titles it may use.

PS3.15 B.1 leaves "the significance of any certificates exchanged during
peer entity authentication" to the site's policy: TLS proves the peer holds a
key a trusted CA vouched for, nothing ties that key to the Calling AE Title
the peer then writes into its A-ASSOCIATE-RQ. Any holder of a valid site
certificate could claim to be the CT scanner. The binding table closes that
gap: it maps a certificate identity to the calling AE titles it may use.

A certificate is identified by one of three selectors (docs/security.md,
"AE-title binding"):

* ``fingerprint_sha256``: the SHA-256 of the DER certificate. Pins exactly one
  certificate; must be updated at every renewal. The strongest, and the only
  one that does not trust the CA to keep names unique.
* ``san_dns``: a dNSName of the Subject Alternative Name extension, compared
  case-insensitively and literally (a wildcard entry matches only the same
  wildcard text, never evaluated as a pattern). What RFC 9525 (6125bis) says
  identities should live in; survives renewal.
* ``subject_cn``: a commonName of the subject, compared exactly. Legacy, but
  it is what many DICOM device certificates carry (DCMTK's examples have
  nothing else); survives renewal.

Matching is deliberately exact: a binding table is an access-control list,
and "almost the same name" must not grant access.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

__all__ = [
    "CertificateBinding",
    "CertificateIdentity",
    "IdentityKind",
    "binding_refusal",
    "normalize_fingerprint",
]

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")

#: What ``cryptography`` raises for a subject or extension it cannot parse: ``ValueError``
#: for bad DER or string encodings, the other two for structures it refuses outright.
_PARSE_ERRORS = (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


class IdentityKind(enum.StrEnum):
    """The certificate selectors a binding may use; the value is the options-file key."""

    #: SHA-256 of the DER encoding, 64 hex digits (colons and case ignored).
    FINGERPRINT_SHA256 = "fingerprint_sha256"
    #: A dNSName of the subjectAltName extension (RFC 5280 4.2.1.6), case-insensitive.
    SAN_DNS = "san_dns"
    #: A commonName attribute of the subject (RFC 5280 4.1.2.6), exact.
    SUBJECT_CN = "subject_cn"


def normalize_fingerprint(text: str) -> str:
    """``AB:CD:...`` or ``abcd...`` -> 64 lower-case hex digits.

    Raises:
        ValueError: not 64 hex digits once colons and spaces are removed.
    """
    digits = re.sub(r"[\s:]", "", text).lower()
    if not _HEX64.match(digits):
        raise ValueError("is not a SHA-256 fingerprint (64 hex digits, colons allowed)")
    return digits


@dataclass(frozen=True, slots=True)
class CertificateIdentity:
    """The parts of a (verified) peer certificate a binding can select on.

    Attributes:
        fingerprint_sha256: SHA-256 of the DER certificate, lower-case hex.
        subject_cns: the subject's commonName values.
        san_dns: the subjectAltName dNSName values, lower-cased.
        subject: the subject as RFC 4514 text, for log lines.
    """

    fingerprint_sha256: str
    subject_cns: tuple[str, ...]
    san_dns: tuple[str, ...]
    subject: str

    @classmethod
    def of(cls, certificate: x509.Certificate) -> CertificateIdentity:
        """Read the identity of a ``cryptography`` certificate.

        ``cryptography`` parses the subject and the extensions only when they
        are first read, and more strictly than OpenSSL: a certificate OpenSSL
        verified (a byte 0xE9 in a SAN dNSName, say) can still fail here. Such a
        certificate identifies nobody, so the caller must refuse the peer; the
        error says which part is malformed and names the certificate by what
        can still be read (its fingerprint always can).

        Raises:
            ValueError: the subject or the extensions cannot be parsed.
        """
        der = certificate.public_bytes(Encoding.DER)
        fingerprint = hashlib.sha256(der).hexdigest()
        try:
            subject = certificate.subject
            cns = tuple(
                str(attribute.value)
                for attribute in subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            )
            subject_text = subject.rfc4514_string()
        except _PARSE_ERRORS as exc:
            raise ValueError(
                f"certificate (sha256 {fingerprint[:16]}...) cannot be read: its subject is "
                f"malformed ({_first_line(exc)})"
            ) from None
        try:
            san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            dns: tuple[str, ...] = ()
        except _PARSE_ERRORS as exc:
            raise ValueError(
                f"certificate {subject_text or '(empty subject)'} (sha256 {fingerprint[:16]}...) "
                f"cannot be read: its extensions are malformed ({_first_line(exc)})"
            ) from None
        else:
            dns = tuple(name.lower() for name in san.value.get_values_for_type(x509.DNSName))
        return cls(
            fingerprint_sha256=fingerprint,
            subject_cns=cns,
            san_dns=dns,
            subject=subject_text,
        )

    def describe(self) -> str:
        """Subject and short fingerprint, for log lines and refusal reasons."""
        return f"{self.subject or '(empty subject)'} (sha256 {self.fingerprint_sha256[:16]}...)"


@dataclass(frozen=True, slots=True)
class CertificateBinding:
    """One row of the binding table: a certificate selector and the AE titles it may call as.

    Attributes:
        kind: which part of the certificate ``value`` is compared with.
        value: the normalised selector value (fingerprint: lower-case hex without
            colons; SAN DNS: lower case; subject CN: as written).
        ae_titles: the calling AE titles (spaces stripped, case kept) a
            certificate matching this row may use.
    """

    kind: IdentityKind
    value: str
    ae_titles: frozenset[str]

    def __post_init__(self) -> None:
        kind = IdentityKind(self.kind)
        object.__setattr__(self, "kind", kind)
        value = self.value
        if kind is IdentityKind.FINGERPRINT_SHA256:
            value = normalize_fingerprint(value)
        elif kind is IdentityKind.SAN_DNS:
            value = value.strip().lower()
        if not value:
            raise ValueError(f"{kind.value} must not be empty")
        object.__setattr__(self, "value", value)
        titles = frozenset(title.strip(" ") for title in self.ae_titles)
        if not titles or "" in titles:
            raise ValueError("ae_titles must list at least one non-empty AE title")
        object.__setattr__(self, "ae_titles", titles)

    def matches(self, identity: CertificateIdentity) -> bool:
        """Does ``identity`` carry this row's selector value (exact comparison)?"""
        if self.kind is IdentityKind.FINGERPRINT_SHA256:
            return identity.fingerprint_sha256 == self.value
        if self.kind is IdentityKind.SAN_DNS:
            return self.value in identity.san_dns
        return self.value in identity.subject_cns

    def describe(self) -> str:
        """``san_dns = "ct1.example"``: the row as the operator wrote it."""
        return f'{self.kind.value} = "{self.value}"'


def binding_refusal(
    bindings: Sequence[CertificateBinding],
    calling_ae_title: str,
    identity: CertificateIdentity | None,
    require_binding: bool = False,
) -> str | None:
    """Why ``calling_ae_title`` may not be used with this certificate, or None if it may.

    The binding is enforced in both directions (docs/security.md):

    1. a certificate that matches rows may call only as one of their AE titles;
    2. an AE title named in some rows may be used only with a certificate
       matching one of those rows (so another valid certificate, or none,
       cannot impersonate it);
    3. with ``require_binding``, a certificate matching no row is refused.

    Anything else is allowed: the table restricts, it does not have to be complete.

    Args:
        bindings: the table.
        calling_ae_title: the Calling AE Title of the A-ASSOCIATE-RQ.
        identity: the peer's verified certificate, or None when it sent none.
        require_binding: refuse certificates that match no row.
    """
    calling = calling_ae_title.strip(" ")
    matching = [b for b in bindings if identity is not None and b.matches(identity)]
    if matching:
        allowed = _titles(matching)
        if calling not in allowed:
            return (
                f"certificate {identity.describe()} is bound to calling AE "  # type: ignore[union-attr]
                f"title(s) {', '.join(sorted(allowed))}, not {calling!r}"
            )
        return None
    claiming = [b for b in bindings if calling in b.ae_titles]
    if claiming:
        rows = "; ".join(b.describe() for b in claiming)
        presented = "no certificate" if identity is None else identity.describe()
        return (
            f"calling AE title {calling!r} is bound to {rows}, but the peer presented {presented}"
        )
    if require_binding:
        presented = "no certificate" if identity is None else f"certificate {identity.describe()}"
        return f"{presented} matches no binding and require_binding is on"
    return None


def _titles(rows: Iterable[CertificateBinding]) -> frozenset[str]:
    return frozenset(title for row in rows for title in row.ae_titles)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
