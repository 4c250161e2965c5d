"""``<server dir>/addin-options/security.toml``: the Security add-in's options, validated.

The file is edited by hand, so every problem is reported the way
``settings.toml`` problems are (:class:`pacsref.settings.SettingsError`): the
file, the field, the value, why, and what is allowed, all problems at once.
Relative paths are relative to the server directory, never to the working
directory (a daemon does not choose it). Beyond the shape of the values, the
files themselves are checked by :func:`pacsref.security.load_credentials`
(PEM, passphrase, key match, validity, key strength, Extended Key Usage), and
its findings are reported against the option that named the file.

Example::

    certificate = "tls/server-chain.pem"   # leaf first, then intermediates
    private_key = "tls/server.key"
    passphrase_file = "tls/server.pass"    # or passphrase = "..."; omit if not encrypted
    trusted_ca = ["tls/site-ca.pem"]       # CAs that sign peer certificates
    require_client_certificate = true
    require_binding = false

    [[binding]]
    subject_cn = "CT_ROOM_1"
    ae_titles = ["CT_ROOM_1"]

    [[binding]]
    fingerprint_sha256 = "3A:7F:...:C2"
    ae_titles = ["MR_1", "MR_1_QR"]
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pacsref.addin import normalize_ae_title
from pacsref.addin.errors import AeTitleError
from pacsref.security import (
    CertificateBinding,
    IdentityKind,
    StaticSecurity,
    TLSConfigurationError,
    load_credentials,
    normalize_fingerprint,
)
from pacsref.settings import MISSING, SettingsError, SettingsProblem

__all__ = ["ALLOWED", "OPTIONS_FILE", "SecurityOptions", "load_options"]

#: Where the options live, relative to the server directory.
OPTIONS_FILE = Path("addin-options") / "security.toml"

#: What each key accepts, in the words the error messages use.
ALLOWED: Mapping[str, str] = {
    "certificate": "path of a PEM certificate chain file, leaf first (relative to the server "
    "directory)",
    "private_key": "path of the PEM private key of the certificate",
    "passphrase": "the private key's passphrase as a string (or use passphrase_file)",
    "passphrase_file": "path of a file holding the passphrase on its first line",
    "trusted_ca": "a path or a list of paths of PEM CA certificate files",
    "require_client_certificate": "true or false",
    "require_binding": "true or false",
    "binding": "[[binding]] tables, each with one of fingerprint_sha256, san_dns or "
    "subject_cn, and ae_titles",
}
_BINDING_KEYS = {kind.value for kind in IdentityKind} | {"ae_titles", "description"}
_BINDING_ALLOWED = (
    "one of fingerprint_sha256 (64 hex digits, colons allowed), san_dns (a DNS name) or "
    "subject_cn (text), plus ae_titles (a list of 1-16 character AE titles) and an optional "
    "description"
)
#: ISecurity attribute named in a TLSConfigurationError -> the key of this file.
_OPTION_FOR = {
    "certificate": "certificate",
    "private_key": "private_key",
    "trust_roots": "trusted_ca",
    "require_peer_certificate": "require_client_certificate",
}


@dataclass(frozen=True)
class SecurityOptions:
    """The validated options; paths absolute, passphrase as bytes."""

    certificate: Path
    private_key: Path
    trust_roots: tuple[Path, ...] = ()
    require_peer_certificate: bool = True
    passphrase: bytes | None = None
    bindings: tuple[CertificateBinding, ...] = ()
    require_binding: bool = False
    warnings: tuple[str, ...] = field(default=())

    def as_security(self) -> StaticSecurity:
        """The same values as an ISecurity provider (for checking the files)."""
        return StaticSecurity(
            certificate=self.certificate,
            private_key=self.private_key,
            trust_roots=self.trust_roots,
            require_peer_certificate=self.require_peer_certificate,
            passphrase=self.passphrase,
            bindings=self.bindings,
            require_binding=self.require_binding,
        )


class _Problems:
    """Collects problems of one file so that all of them are reported together."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[SettingsProblem] = []

    def add(self, key: str | None, value: object, reason: str, allowed: str = "") -> None:
        self.items.append(SettingsProblem(self.source, key, value, reason, allowed))

    def raise_if_any(self) -> None:
        if self.items:
            raise SettingsError(self.items)


def load_options(server_dir: Path) -> SecurityOptions | None:
    """Read and check ``<server_dir>/addin-options/security.toml``; None if there is none.

    Raises:
        SettingsError: every problem of the file, each naming file, key, value and rule.
    """
    path = Path(server_dir) / OPTIONS_FILE
    if not path.exists():
        return None
    problems = _Problems(str(path))
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError.single(str(path), f"cannot be read: {exc}") from None
    options = _parse(raw, Path(server_dir), problems)
    problems.raise_if_any()
    assert options is not None
    try:
        credentials = load_credentials(options.as_security())
    except TLSConfigurationError as exc:
        key = _OPTION_FOR.get(exc.field, exc.field)
        shown = _as_written(exc.path, Path(server_dir)) if exc.path is not None else MISSING
        problems.add(key, shown, exc.problem, ALLOWED.get(key, ""))
        problems.raise_if_any()
        raise  # pragma: no cover - raise_if_any always raises here
    return SecurityOptions(**{**options.__dict__, "warnings": credentials.warnings})


def _as_written(path: Path, server_dir: Path) -> str:
    """A path relative to the server directory, as the file most likely spells it."""
    try:
        return str(path.relative_to(server_dir))
    except ValueError:
        return str(path)


def _parse(raw: Mapping[str, object], server_dir: Path, problems: _Problems) -> SecurityOptions:
    for key in raw:
        if key not in ALLOWED:
            # Its value is not shown: a misspelt "passphrase" would print the secret.
            problems.add(key, "...", "is not a known option", ", ".join(ALLOWED))
    certificate = _path(raw, "certificate", server_dir, problems, required=True)
    private_key = _path(raw, "private_key", server_dir, problems, required=True)
    passphrase = _passphrase(raw, server_dir, problems)
    trusted = _trusted(raw, server_dir, problems)
    require_client = _flag(raw, "require_client_certificate", True, problems)
    require_binding = _flag(raw, "require_binding", False, problems)
    bindings = _bindings(raw.get("binding", []), problems)
    trusted_bad = any(problem.field == "trusted_ca" for problem in problems.items)
    if require_client and not trusted and not trusted_bad:
        problems.add(
            "require_client_certificate",
            True,
            "needs trusted_ca: client certificates can only be verified against trusted CAs",
            ALLOWED["trusted_ca"],
        )
    if (bindings or require_binding) and not trusted and not trusted_bad:
        problems.add(
            "binding",
            MISSING,
            "needs trusted_ca: without it no client certificate is asked for or verified",
            ALLOWED["trusted_ca"],
        )
    return SecurityOptions(
        certificate=certificate or server_dir,
        private_key=private_key or server_dir,
        trust_roots=tuple(trusted),
        require_peer_certificate=require_client,
        passphrase=passphrase,
        bindings=tuple(bindings),
        require_binding=require_binding,
    )


def _path(
    raw: Mapping[str, object], key: str, server_dir: Path, problems: _Problems, required: bool
) -> Path | None:
    value = raw.get(key, MISSING)
    if value is MISSING:
        if required:
            problems.add(key, MISSING, "is required", ALLOWED[key])
        return None
    if not isinstance(value, str) or not value.strip():
        problems.add(key, value, "is not a non-empty string", ALLOWED[key])
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else server_dir / path


def _passphrase(raw: Mapping[str, object], server_dir: Path, problems: _Problems) -> bytes | None:
    if "passphrase" in raw and "passphrase_file" in raw:
        problems.add("passphrase", "...", "and passphrase_file are both given", "only one of them")
        return None
    if "passphrase" in raw:
        value = raw["passphrase"]
        if not isinstance(value, str):
            # Never the value: a passphrase written as a number is still the passphrase.
            problems.add(
                "passphrase", f"<{type(value).__name__}>", "is not a string", ALLOWED["passphrase"]
            )
            return None
        return value.encode("utf-8")
    path = _path(raw, "passphrase_file", server_dir, problems, required=False)
    if path is None:
        return None
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        problems.add("passphrase_file", str(path), f"cannot be read: {exc.strerror}")
        return None
    return lines[0] if lines else b""


def _trusted(raw: Mapping[str, object], server_dir: Path, problems: _Problems) -> list[Path]:
    value = raw.get("trusted_ca", [])
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and v.strip() for v in items):
        problems.add("trusted_ca", value, "is not a path or a list of paths", ALLOWED["trusted_ca"])
        return []
    paths = [Path(v).expanduser() for v in items]
    return [p if p.is_absolute() else server_dir / p for p in paths]


def _flag(raw: Mapping[str, object], key: str, default: bool, problems: _Problems) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        problems.add(key, value, "is not a boolean", ALLOWED[key])
        return default
    return value


def _bindings(value: object, problems: _Problems) -> list[CertificateBinding]:
    if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
        problems.add("binding", value, "is not a list of [[binding]] tables", ALLOWED["binding"])
        return []
    rows: list[CertificateBinding] = []
    seen: dict[tuple[IdentityKind, str], int] = {}
    for number, row in enumerate(value, start=1):
        binding = _binding(row, f"binding[{number}]", problems)
        if binding is None:
            continue
        key = (binding.kind, binding.value)
        if key in seen:
            problems.add(
                f"binding[{number}]",
                binding.describe(),
                f"repeats the identity of binding[{seen[key]}]",
                "each certificate identity once; list all its AE titles in one ae_titles",
            )
            continue
        seen[key] = number
        rows.append(binding)
    return rows


def _binding(row: dict[str, object], where: str, problems: _Problems) -> CertificateBinding | None:
    for key in row:
        if key not in _BINDING_KEYS:
            problems.add(f"{where}.{key}", row[key], "is not a known key", _BINDING_ALLOWED)
    selectors = [kind for kind in IdentityKind if kind.value in row]
    if len(selectors) != 1:
        named = ", ".join(k.value for k in selectors) or "none"
        problems.add(where, MISSING, f"names {named} as identity", _BINDING_ALLOWED)
        return None
    kind = selectors[0]
    value = row[kind.value]
    if not isinstance(value, str) or not value.strip():
        problems.add(f"{where}.{kind.value}", value, "is not a non-empty string", _BINDING_ALLOWED)
        return None
    if kind is IdentityKind.FINGERPRINT_SHA256:
        try:
            normalize_fingerprint(value)
        except ValueError as exc:
            problems.add(f"{where}.{kind.value}", value, str(exc), _BINDING_ALLOWED)
            return None
    titles = _titles(row.get("ae_titles", MISSING), f"{where}.ae_titles", problems)
    if not titles:
        return None
    return CertificateBinding(kind, value, frozenset(titles))


def _titles(value: object, where: str, problems: _Problems) -> list[str]:
    if value is MISSING:
        problems.add(where, MISSING, "is required", _BINDING_ALLOWED)
        return []
    if not isinstance(value, list) or not value:
        problems.add(where, value, "is not a non-empty list of AE titles", _BINDING_ALLOWED)
        return []
    titles = []
    for item in value:
        try:
            titles.append(normalize_ae_title(item))
        except AeTitleError as exc:
            problems.add(where, item, f"is not a valid AE title ({exc})", _BINDING_ALLOWED)
    return titles if len(titles) == len(value) else []
