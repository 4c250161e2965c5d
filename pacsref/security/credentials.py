"""Reading and checking the PEM files an :class:`~pacsref.addin.ISecurity` provider names.

Everything that can be wrong with a certificate set-up is found here, at
start-up, and reported as one line naming the file and the problem, instead
of surfacing later as a peer's terse "handshake failure" alert that nobody on
the server side ever sees. Checked: the files parse; the key decrypts with
the passphrase and matches the leaf certificate; the leaf is valid now; its
key is strong enough for BCP 195 (RFC 9325 4.5: RSA >= 2048 bits; ECC >= 256
bits, as PS3.15 B.13 requires for ECDHE); its Key Usage, if present, allows
digitalSignature (every suite we offer signs the handshake); its Extended Key
Usage, if present, allows TLS server authentication (without it every
verifying client refuses us). A missing clientAuth usage only matters for
outbound TLS to peers that require client certificates, so it is a warning,
not an error. The trusted CA certificates are checked too: one that is not a
CA, is out of its validity period, or is an intermediate without its root
would make every peer it should admit fail; each is a warning, since a CA
file may legitimately hold such leftovers next to working CAs.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import crypto

__all__ = ["Credentials", "TLSConfigurationError", "load_certificates", "load_credentials"]

#: RFC 9325 4.5 (and NIST SP 800-57): RSA keys below 2048 bits are too weak.
MIN_RSA_BITS = 2048
#: PS3.15 B.13: ECDHE key length shall be 256 bits or more; we hold ECC keys to the same.
MIN_EC_BITS = 256


class TLSConfigurationError(ValueError):
    """A certificate, key or CA file cannot be used; ``str()`` names the file and the problem.

    Attributes:
        field: the :class:`~pacsref.addin.ISecurity` attribute the file came from
            (``certificate``, ``private_key``, ``trust_roots``, ...), so an
            options file loader can point at its own key.
        path: the file, when the problem is about one.
    """

    def __init__(self, field: str, path: Path | None, problem: str) -> None:
        self.field = field
        self.path = path
        self.problem = problem
        where = f"{field} {path}" if path is not None else field
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True, slots=True)
class Credentials:
    """The loaded TLS material, ready for ``CertificateOptions``.

    Key and chain are ``cryptography`` objects (pyOpenSSL deprecates passing
    its own to a context); the trusted CAs are pyOpenSSL ``X509`` because
    Twisted adds them to an ``X509Store``, which takes nothing else.

    Attributes:
        key: our private key.
        chain: our certificate chain, leaf first.
        trusted: CA certificates peers' certificates must chain to.
        warnings: problems worth a log line that do not stop the server.
    """

    key: serialization.PrivateKeyTypes
    chain: tuple[x509.Certificate, ...]
    trusted: tuple[crypto.X509, ...]
    warnings: tuple[str, ...] = field(default=())

    @property
    def leaf(self) -> x509.Certificate:
        """Our own certificate (the first of the chain)."""
        return self.chain[0]


def load_certificates(path: Path, field: str) -> list[x509.Certificate]:
    """Every certificate of a PEM file, in file order.

    Raises:
        TLSConfigurationError: unreadable, not PEM, or no certificate in it.
    """
    data = _read(path, field)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise TLSConfigurationError(
            field, path, f"is not a PEM certificate file ({_first_line(exc)})"
        ) from None
    return certificates


def load_credentials(security: object, now: datetime.datetime | None = None) -> Credentials:
    """Load and check what an :class:`~pacsref.addin.ISecurity` provider points at.

    Args:
        security: provides ``certificate``, ``private_key``, ``passphrase``,
            ``trust_roots`` and ``require_peer_certificate``.
        now: the time certificates must be valid at (tests pass one).

    Raises:
        TLSConfigurationError: the first problem found.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    chain_path = Path(security.certificate)  # type: ignore[attr-defined]
    chain = load_certificates(chain_path, "certificate")
    leaf = chain[0]
    key = _load_key(
        Path(security.private_key),  # type: ignore[attr-defined]
        getattr(security, "passphrase", None),
    )
    _check_key_matches(key, leaf, chain_path)
    warnings = _check_leaf(leaf, chain_path, now)
    _check_key_strength(key, Path(security.private_key))  # type: ignore[attr-defined]
    trusted: list[tuple[Path, x509.Certificate]] = []
    for path in _paths(security.trust_roots):  # type: ignore[attr-defined]
        trusted.extend((path, c) for c in load_certificates(path, "trust_roots"))
    if security.require_peer_certificate and not trusted:  # type: ignore[attr-defined]
        raise TLSConfigurationError(
            "require_peer_certificate",
            None,
            "is on but no trusted CA certificate is configured, so no peer could be verified",
        )
    warnings += _check_trusted(
        trusted,
        now,
        security.require_peer_certificate,  # type: ignore[attr-defined]
    )
    return Credentials(
        key=key,
        chain=tuple(chain),
        trusted=tuple(crypto.X509.from_cryptography(c) for _, c in trusted),
        warnings=tuple(warnings),
    )


def _paths(value: object) -> Sequence[Path]:
    if isinstance(value, str | Path):
        return [Path(value)]
    return [Path(p) for p in value]  # type: ignore[attr-defined]


def _read(path: Path, field: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TLSConfigurationError(field, path, "does not exist") from None
    except IsADirectoryError:
        raise TLSConfigurationError(field, path, "is a directory, not a PEM file") from None
    except OSError as exc:
        raise TLSConfigurationError(field, path, f"cannot be read: {exc.strerror}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _load_key(path: Path, passphrase: bytes | str | None) -> serialization.PrivateKeyTypes:
    data = _read(path, "private_key")
    password = passphrase.encode() if isinstance(passphrase, str) else passphrase
    try:
        return serialization.load_pem_private_key(data, password=password or None)
    except TypeError as exc:  # cryptography's wording for passphrase mismatches
        if "not encrypted" in str(exc):
            # A passphrase for a plain key is harmless; load it without one.
            return serialization.load_pem_private_key(data, password=None)
        raise TLSConfigurationError(
            "private_key", path, "is encrypted; give its passphrase (passphrase or passphrase_file)"
        ) from None
    except ValueError as exc:
        text = str(exc).lower()
        if "password" in text or "decrypt" in text:
            raise TLSConfigurationError(
                "private_key", path, "cannot be decrypted: wrong passphrase"
            ) from None
        raise TLSConfigurationError(
            "private_key", path, f"is not a PEM private key ({_first_line(exc)})"
        ) from None
    except Exception as exc:  # e.g. UnsupportedAlgorithm
        raise TLSConfigurationError(
            "private_key", path, f"cannot be loaded ({type(exc).__name__}: {_first_line(exc)})"
        ) from None


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_key_matches(
    key: serialization.PrivateKeyTypes, leaf: x509.Certificate, chain_path: Path
) -> None:
    if _spki(key.public_key()) != _spki(leaf.public_key()):
        raise TLSConfigurationError(
            "private_key",
            None,
            f"does not match the first certificate of {chain_path} "
            f"({leaf.subject.rfc4514_string()}); the chain file must start with the leaf "
            "certificate of this key",
        )


def _check_leaf(leaf: x509.Certificate, path: Path, now: datetime.datetime) -> list[str]:
    if leaf.not_valid_after_utc < now:
        raise TLSConfigurationError(
            "certificate", path, f"expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    if leaf.not_valid_before_utc > now:
        raise TLSConfigurationError(
            "certificate",
            path,
            f"is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
        )
    _check_key_usage(leaf, path)
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return []
    if ExtendedKeyUsageOID.SERVER_AUTH not in usages:
        raise TLSConfigurationError(
            "certificate",
            path,
            "has an Extended Key Usage without serverAuth (1.3.6.1.5.5.7.3.1); TLS clients "
            "refuse it as a server certificate",
        )
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        return [
            f"certificate {path} has no clientAuth Extended Key Usage: outbound TLS "
            "(C-MOVE sub-operations, IDicomRequest) to peers that require client "
            "certificates will be refused"
        ]
    return []


def _check_trusted(
    trusted: Sequence[tuple[Path, x509.Certificate]], now: datetime.datetime, required: bool
) -> list[str]:
    """Warnings for trusted CA certificates that cannot verify a peer as configured.

    Each would otherwise load silently and then show up only as every peer
    refused: a certificate that is not a CA (no peer certificate chains to it),
    one out of its validity period (OpenSSL checks the anchor's dates too), and
    an intermediate whose issuer is not configured (peers are verified up to a
    self-signed root; PARTIAL_CHAIN, which would stop at an intermediate, is
    deliberately off). Warnings, not refusals: a CA file may hold several CAs,
    and an old root kept next to its successor, or a new one added before its
    start date, is a normal rollover that must not stop the server.

    Raises:
        TLSConfigurationError: peer certificates are required and *every*
            trusted certificate is out of its validity period. That is the
            "no trusted CA, so no peer could be verified" refusal above, only
            with dead CAs: such a server could serve nobody.
    """
    subjects = {c.subject for _, c in trusted}
    warnings: list[str] = []
    out_of_date: list[str] = []
    for path, ca in trusted:
        try:
            found, dates = _trusted_problems(ca, subjects, now)
        except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
            # OpenSSL may still use it; cryptography, stricter, cannot check it.
            fingerprint = ca.fingerprint(hashes.SHA256()).hex()[:16]
            warnings.append(
                f"trusted CA file {path}: certificate (sha256 {fingerprint}...) cannot be "
                f"checked, cryptography cannot parse it ({_first_line(exc)})"
            )
            continue
        warnings += (f"trusted CA file {path}: {problem}" for problem in found)
        if dates:
            out_of_date.append(dates)
    if required and trusted and len(out_of_date) == len(trusted):
        files = sorted({str(path) for path, _ in trusted})
        single = len(files) == 1
        which = "" if single else f" (files: {', '.join(files)})"
        raise TLSConfigurationError(
            "trust_roots",
            trusted[0][0] if single else None,
            f"holds no CA certificate valid now ({'; '.join(out_of_date)}), so no peer could "
            f"be verified{which}",
        )
    return warnings


def _trusted_problems(
    ca: x509.Certificate, subjects: set[x509.Name], now: datetime.datetime
) -> tuple[list[str], str]:
    """What is wrong with one trusted certificate, and why it is out of date ("" if not).

    ``subjects`` are those of every trusted certificate, to find an intermediate's issuer.
    """
    name = ca.subject.rfc4514_string() or "(empty subject)"
    problems: list[str] = []
    self_signed = ca.issuer == ca.subject
    not_ca = _not_a_ca(ca)
    if not_ca:
        pinned = "; only a peer presenting this very self-signed certificate is accepted"
        problems.append(
            f"{name} is not a CA certificate ({not_ca}), so no peer certificate can chain to "
            f"it{pinned if self_signed else ''}"
        )
    dates = until = ""
    if ca.not_valid_after_utc < now:
        dates = f"{name} expired on {ca.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    elif ca.not_valid_before_utc > now:
        dates = f"{name} is not valid before {ca.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        until = " until then"
    if dates:
        problems.append(f"{dates}, so no peer certificate can be verified with it{until}")
    if not self_signed and not not_ca and ca.issuer not in subjects:
        issuer = ca.issuer.rfc4514_string()
        problems.append(
            f"{name} is not self-signed: it is an intermediate CA, issued by {issuer}. Peers "
            "are verified up to a self-signed root, so every peer certificate it issued is "
            f'refused ("unable to get issuer certificate"); put the root CA ({issuer}) in the '
            "file as well"
        )
    return problems, dates


def _not_a_ca(certificate: x509.Certificate) -> str:
    """Why OpenSSL will not take ``certificate`` as an issuer, or "" if it will.

    RFC 5280 4.2.1.9: a CA certificate has Basic Constraints with cA true (and, if
    it has a Key Usage, keyCertSign, 4.2.1.3). OpenSSL also accepts, outside
    strict mode, the legacy roots without Basic Constraints: X.509 v1
    certificates, and ones whose Key Usage has keyCertSign; so do we.
    """
    extensions = certificate.extensions
    constraints: x509.BasicConstraints | None
    try:
        constraints = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    try:
        usage: x509.KeyUsage | None = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if constraints is not None and not constraints.ca:
        return "Basic Constraints cA is false"
    legacy = certificate.version is x509.Version.v1 or (usage is not None and usage.key_cert_sign)
    if constraints is None and not legacy:
        return "it has no Basic Constraints extension"
    if usage is not None and not usage.key_cert_sign:
        return "its Key Usage lacks keyCertSign"
    return ""


def forbids_signing(certificate: x509.Certificate) -> bool:
    """Whether ``certificate``'s Key Usage forbids signing with its key (no digitalSignature),
    which every TLS handshake we make or accept needs of both ends (see
    :func:`_check_key_usage`). No Key Usage extension means no restriction."""
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return not usage.digital_signature


def _check_key_usage(leaf: x509.Certificate, path: Path) -> None:
    """Every handshake we can make signs with our key, so Key Usage must allow signing.

    We offer only ECDHE suites in TLS 1.2 (the server signs its ServerKeyExchange)
    and TLS 1.3 (the server signs CertificateVerify), and as a client we sign
    CertificateVerify too. A Key Usage extension without digitalSignature forbids
    all of that (RFC 5246 7.4.2, RFC 8446 4.4.2.2, RFC 5280 4.2.1.3). With an EC
    key OpenSSL then finds "no shared cipher" for every TLS 1.2 peer; with any key,
    clients that enforce Key Usage refuse it. keyEncipherment does not matter: no
    RSA key transport suite is offered. No Key Usage extension means no restriction.
    """
    if forbids_signing(leaf):
        consequence = (
            'every TLS 1.2 handshake would fail with "no shared cipher"'
            if isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
            else "peers that enforce Key Usage would refuse it"
        )
        raise TLSConfigurationError(
            "certificate",
            path,
            "has a Key Usage extension without digitalSignature, which TLS with ECDHE (the "
            "only TLS 1.2 suites offered) and TLS 1.3 need, as they sign the handshake with "
            f"this key (RFC 5246 7.4.2, RFC 8446 4.4.2.2, RFC 5280 4.2.1.3); {consequence}",
        )


#: Curves whose keys can sign a TLS 1.3 handshake (RFC 8446 4.2.3) and a BCP 195 TLS 1.2
#: ECDHE-ECDSA one; OpenSSL finds no shared cipher for the others (secp256k1, say).
_TLS_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})


def _check_key_strength(key: serialization.PrivateKeyTypes, path: Path) -> None:
    if not isinstance(
        key,
        rsa.RSAPrivateKey
        | ec.EllipticCurvePrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        raise TLSConfigurationError(
            "private_key",
            path,
            f"is a {type(key).__name__.removesuffix('PrivateKey').lstrip('_')} key, which no "
            "TLS 1.2 (BCP 195) or TLS 1.3 cipher suite can use; use RSA (2048 bits or more), "
            "EC (P-256, P-384, P-521), Ed25519 or Ed448",
        )
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name not in _TLS_CURVES:
        raise TLSConfigurationError(
            "private_key",
            path,
            f"is an EC key on {key.curve.name}, which no TLS 1.2 (BCP 195) or TLS 1.3 "
            "handshake can use; use P-256, P-384 or P-521",
        )
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_BITS:
        raise TLSConfigurationError(
            "private_key",
            path,
            f"is a {key.key_size}-bit RSA key; BCP 195 needs at least {MIN_RSA_BITS} bits",
        )
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size < MIN_EC_BITS:
        raise TLSConfigurationError(
            "private_key",
            path,
            f"is a {key.curve.key_size}-bit EC key ({key.curve.name}); at least "
            f"{MIN_EC_BITS} bits are needed",
        )
