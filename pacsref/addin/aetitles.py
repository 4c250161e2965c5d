"""AE title entries and the default, in-memory :class:`IAeTitles` provider.

An :class:`AeInfo` validates itself on construction (as h11's events do), so a
bad title is refused where it is typed, by the admin interface or a settings
file, not when a C-MOVE later tries to connect to it. :class:`MemoryAeTitles`
adds the table-level rules (no duplicates, known titles for update/remove). A
later issue makes the table persistent; it will keep these rules by reusing
:class:`AeInfo`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from zope.interface import implementer

from pacsref.addin.errors import AeTitleError
from pacsref.addin.interfaces import IAeTitles

__all__ = ["AeInfo", "MemoryAeTitles", "normalize_ae_title"]

#: PS3.5 6.2: an AE value holds at most 16 characters.
MAX_AE_TITLE_LENGTH = 16


def normalize_ae_title(ae_title: object) -> str:
    """Validate an AE title and return it without its insignificant spaces.

    PS3.5 6.2 (VR AE): at most 16 characters of the default character
    repertoire (printable ASCII) without backslash, leading and trailing
    spaces not significant, a value of only spaces not allowed. The length is
    counted after removing the insignificant spaces, since only the stripped
    title is ever stored or sent. Case is kept: AE titles are case sensitive.

    Raises:
        AeTitleError: naming the value and the rule it breaks.
    """
    if not isinstance(ae_title, str):
        raise AeTitleError(f"AE title must be a string, not {type(ae_title).__name__}")
    if not ae_title:
        raise AeTitleError("AE title must not be empty")
    stripped = ae_title.strip(" ")
    if not stripped:
        raise AeTitleError("AE title must not consist only of spaces")
    if len(stripped) > MAX_AE_TITLE_LENGTH:
        raise AeTitleError(
            f"AE title {ae_title!r} has {len(stripped)} significant characters; "
            f"at most {MAX_AE_TITLE_LENGTH} are allowed"
        )
    if "\\" in stripped:
        raise AeTitleError(f"AE title {ae_title!r} must not contain a backslash")
    bad = [c for c in stripped if not 0x20 <= ord(c) <= 0x7E]
    if bad:
        raise AeTitleError(
            f"AE title {ae_title!r} contains {bad[0]!r}: only printable ASCII "
            "characters are allowed (no control characters)"
        )
    return stripped


@dataclass(frozen=True, slots=True)
class AeInfo:
    """One known peer: its AE title and where to reach it.

    The title is stored normalised (see :func:`normalize_ae_title`), so two
    entries that differ only by padding compare equal.

    Attributes:
        ae_title: the AE title, 1-16 significant characters.
        host: host name or IP address used to connect to the peer (C-MOVE
            destinations, IDicomRequest).
        port: its TCP port, 1-65535.
        description: free text for the operator.
    """

    ae_title: str
    host: str
    port: int
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae_title", normalize_ae_title(self.ae_title))
        host = self.host.strip() if isinstance(self.host, str) else None
        if not host:
            raise AeTitleError(f"AE title {self.ae_title!r}: host must be a non-empty string")
        if any(c.isspace() or not c.isprintable() for c in host):
            raise AeTitleError(
                f"AE title {self.ae_title!r}: host {self.host!r} contains spaces or "
                "control characters"
            )
        object.__setattr__(self, "host", host)
        port = self.port
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise AeTitleError(
                f"AE title {self.ae_title!r}: port {port!r} is not an integer in 1-65535"
            )
        if not isinstance(self.description, str):
            raise AeTitleError(f"AE title {self.ae_title!r}: description must be a string")


@implementer(IAeTitles)
class MemoryAeTitles:
    """The default AE title table, held in memory.

    A lock guards the table because add-in handlers (worker threads) and the
    admin interface (reactor thread) use it concurrently. Entries keep their
    insertion order, which is the order GetAeTitles shows them in.
    """

    def __init__(self, entries: Iterable[AeInfo] = ()) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, AeInfo] = {}
        for info in entries:
            self.add(info)

    def __repr__(self) -> str:
        return f"<MemoryAeTitles with {len(self._entries)} entries>"

    def list(self) -> tuple[AeInfo, ...]:
        """Every entry, as a snapshot tuple."""
        with self._lock:
            return tuple(self._entries.values())

    def get(self, ae_title: str) -> AeInfo | None:
        """The entry for ``ae_title`` (spaces insignificant), or None if unknown or invalid."""
        try:
            key = normalize_ae_title(ae_title)
        except AeTitleError:
            return None
        with self._lock:
            return self._entries.get(key)

    def add(self, info: AeInfo) -> AeInfo:
        """Add ``info``; raise :class:`AeTitleError` if its title is already present."""
        info = _check_info(info)
        with self._lock:
            if info.ae_title in self._entries:
                raise AeTitleError(f"AE title {info.ae_title!r} already exists")
            self._entries[info.ae_title] = info
        return info

    def update(self, old_ae_title: str, info: AeInfo) -> AeInfo:
        """Replace entry ``old_ae_title`` by ``info``, keeping its position in the table."""
        info = _check_info(info)
        old = normalize_ae_title(old_ae_title)
        with self._lock:
            if old not in self._entries:
                raise AeTitleError(f"AE title {old!r} does not exist")
            if info.ae_title != old and info.ae_title in self._entries:
                raise AeTitleError(
                    f"cannot rename AE title {old!r} to {info.ae_title!r}: "
                    f"{info.ae_title!r} already exists"
                )
            self._entries = {
                (info.ae_title if key == old else key): (info if key == old else value)
                for key, value in self._entries.items()
            }
        return info

    def remove(self, ae_title: str) -> AeInfo:
        """Remove and return the entry ``ae_title``; raise :class:`AeTitleError` if unknown."""
        key = normalize_ae_title(ae_title)
        with self._lock:
            try:
                return self._entries.pop(key)
            except KeyError:
                raise AeTitleError(f"AE title {key!r} does not exist") from None


def _check_info(info: object) -> AeInfo:
    # The admin interface decodes JSON into AeInfo; anything else reaching the
    # table is a programming error, but still one the operator should read.
    if not isinstance(info, AeInfo):
        raise AeTitleError(f"expected an AeInfo, not {type(info).__name__}")
    return info
