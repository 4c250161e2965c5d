"""An :class:`~pacsref.addin.ISecurity` provider holding its values directly.

The in-memory provider every interface ships with (STYLE.md principle 11):
tests build one from certificates they made, and ``pacsref echo --tls`` from
its command line, without an options file or an add-in folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from zope.interface import implementer

from pacsref.addin.interfaces import ISecurity
from pacsref.security.identity import CertificateBinding

__all__ = ["StaticSecurity"]


@implementer(ISecurity)
@dataclass(frozen=True)
class StaticSecurity:
    """TLS parameters given as values; see :class:`~pacsref.addin.ISecurity` for each.

    ``require_peer_certificate`` defaults to True, the mutual authentication
    DICOM TLS is normally deployed with (DCMTK's ``--require-peer-cert`` is
    its default as well).
    """

    certificate: Path
    private_key: Path
    trust_roots: Sequence[Path] = ()
    require_peer_certificate: bool = True
    passphrase: bytes | None = None
    bindings: Sequence[CertificateBinding] = field(default=())
    require_binding: bool = False
