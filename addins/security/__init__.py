"""Security add-in: DICOM TLS (BCP 195) for this server and its outbound requests.

A shipped add-in, so it is copied into *every* new server's ``addins/``
folder, secure or not. It therefore decides at load time what it is:

* ``<server dir>/addin-options/security.toml`` exists: it loads and checks
  it (and the certificate, key and CA files it names) and provides
  :class:`~pacsref.addin.ISecurity`; a server with Server Secure on then
  listens with TLS. A broken file stops the add-in from loading, naming every
  problem, and a secure server then refuses to start with that reason.
* no such file: it provides nothing but :class:`~pacsref.addin.IAddin` and
  says so in one log line, so a plain server is unaffected.

The server directory is found from where this package was loaded:
``<server dir>/addins/security/__init__.py``. See docs/security.md.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

from twisted.logger import Logger
from zope.interface import implementer

from pacsref.addin import IAddin, ISecurity
from pacsref.security import CertificateBinding

from .options import OPTIONS_FILE, SecurityOptions, load_options

__all__ = ["ActiveSecurityAddin", "InactiveSecurityAddin", "addin", "security_addin"]

log = Logger(namespace="pacsref.addin.security")


@implementer(IAddin)
class InactiveSecurityAddin:
    """No options file: provides no security; present only so the folder stays uniform."""

    name = "security"

    def __init__(self, options_file: Path) -> None:
        self.options_file = options_file
        self.description = f"DICOM TLS security, inactive (no {options_file})"

    def presentation_contexts(self) -> tuple[()]:
        """None: security is a property of the connection, not a SOP class."""
        return ()


@implementer(IAddin, ISecurity)
class ActiveSecurityAddin:
    """Provides :class:`~pacsref.addin.ISecurity` from a validated options file."""

    name = "security"

    def __init__(self, options: SecurityOptions, options_file: Path) -> None:
        self.options_file = options_file
        self.certificate: Path = options.certificate
        self.private_key: Path = options.private_key
        self.passphrase: bytes | None = options.passphrase
        self.trust_roots: tuple[Path, ...] = options.trust_roots
        self.require_peer_certificate: bool = options.require_peer_certificate
        self.bindings: tuple[CertificateBinding, ...] = options.bindings
        self.require_binding: bool = options.require_binding
        peers = "client certificate required" if self.require_peer_certificate else "optional"
        self.description = (
            f"DICOM TLS security (BCP 195, TLS 1.2+): {self.certificate.name}, "
            f"{peers}, {len(self.bindings)} AE-title binding(s)"
        )

    def presentation_contexts(self) -> tuple[()]:
        """None: security is a property of the connection, not a SOP class."""
        return ()


def _warn_readable(path: Path, what: str) -> None:
    """A secret readable by group or others is worth a warning, not a refusal."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warn(
            "{what} {path} is readable by other users (mode {mode:o}); chmod 600 it",
            what=what,
            path=str(path),
            mode=stat.S_IMODE(mode),
        )


def security_addin(server_dir: Path) -> ActiveSecurityAddin | InactiveSecurityAddin:
    """The add-in for ``server_dir``: active with its options file, inactive without.

    Raises:
        SettingsError: the options file (or a file it names) has problems.
    """
    options_file = Path(server_dir) / OPTIONS_FILE
    options = load_options(Path(server_dir))
    if options is None:
        log.info(
            "security add-in inactive: no {file}; this server cannot be secure",
            file=str(options_file),
        )
        return InactiveSecurityAddin(options_file)
    for warning in options.warnings:
        log.warn("security add-in: {warning}", warning=warning)
    _warn_readable(options.private_key, "private key")
    if options.passphrase is not None:
        _warn_readable(options_file, "options file (holds or names the key passphrase)")
        passphrase_file = _passphrase_file(options_file, Path(server_dir))
        if passphrase_file is not None:
            _warn_readable(passphrase_file, "passphrase file")
    return ActiveSecurityAddin(options, options_file)


def _passphrase_file(options_file: Path, server_dir: Path) -> Path | None:
    """The ``passphrase_file`` the options file names, resolved as ``load_options`` does.

    The passphrase in it unlocks the key, so it is as secret as the key; but
    :class:`SecurityOptions` keeps only the passphrase, not where it came from,
    so the path is read again from the file ``load_options`` has just validated.
    """
    try:
        value = tomllib.loads(options_file.read_text(encoding="utf-8")).get("passphrase_file")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    if not isinstance(value, str) or not value.strip():
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else server_dir / path


#: ``<server dir>/addins/security/__init__.py`` -> ``<server dir>``.
_SERVER_DIR = Path(os.path.abspath(__file__)).parent.parent.parent

#: The instance the loader picks up.
addin = security_addin(_SERVER_DIR)
