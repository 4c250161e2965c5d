"""The persistent default :class:`IAeTitles`: ``<server dir>/aetitles.toml``.

The file is human-editable TOML, one ``[[ae]]`` table per peer::

    [[ae]]
    ae_title = "CT_ROOM3"
    host = "10.20.0.13"
    port = 104
    description = "CT scanner, room 3"
    move_destination = true
    secure = false

``ae_title``, ``host`` and ``port`` are required; the others default to
``""``, ``true`` and ``false`` (see :class:`~pacsref.addin.aetitles.AeInfo`).
A missing file is an empty table; the file is created by the first change.
Loading validates everything and reports *all* problems at once, each naming
the file, the entry, the field, the bad value and what is allowed, as
:mod:`pacsref.settings` does, so that a hand-edited file is fixed in one pass.

Every change is written before it becomes visible, atomically
(:func:`pacsref.settings.atomic_write_bytes`: temporary file in the same
directory, fsync, ``os.replace``, fsync of the directory), so a crash leaves
the old table or the new one, never a truncated file that would stop the
server from starting. If the file was edited by hand since it was read, a
change first reloads it, so the edit is kept rather than overwritten.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pacsref.addin.aetitles import (
    FIELD_ALLOWED,
    FIELD_CHECKS,
    AeFieldError,
    AeInfo,
    MemoryAeTitles,
    Resolver,
    _Table,
    resolve_addresses,
)
from pacsref.addin.errors import AeTitleError
from pacsref.settings.errors import MISSING
from pacsref.settings.toml_io import StrPath, atomic_write_bytes
from pacsref.settings.tomltext import describe_value, toml_scalar, toml_string

__all__ = [
    "AE_TITLES_FILE_NAME",
    "AeTableFileError",
    "AeTableProblem",
    "FileAeTitles",
    "dumps_ae_table",
    "loads_ae_table",
    "read_ae_table",
]

#: The table's file name inside the server directory.
AE_TITLES_FILE_NAME = "aetitles.toml"

#: Fields an ``[[ae]]`` table must have; the rest take AeInfo's defaults.
REQUIRED_FIELDS = ("ae_title", "host", "port")

_TOML_ALLOWED = "TOML: [[ae]] tables of key = value lines, strings in double quotes"

_HEADER = """\
# AE title table of a pacsref server: the DICOM peers it knows.
# One [[ae]] table per peer; strings go in double quotes. A running server reads hand edits
# when told to reload (or restarted), and before it changes the table itself, so they are not
# overwritten; it then rewrites this file, keeping this header but no other comments.
#   ae_title          required; 1-16 printable ASCII characters, no backslash. Case is kept,
#                     but two titles that differ only in letter case are refused as duplicates.
#   host              required; IP address or host name the peer is reached at and must
#                     connect from.
#   port              required; TCP port of the peer's DICOM listener, 1-65535.
#   description       free text. Default "".
#   move_destination  true if C-MOVE may send to this peer. Default true.
#   secure            true to connect to this peer with DICOM TLS. Default false.
"""


@dataclass(frozen=True, slots=True)
class AeTableProblem:
    """One thing wrong with an AE title file, kept structured for tools and tests.

    ``entry`` is the 1-based position of the ``[[ae]]`` table (None for
    problems with the file as a whole); ``ae_title`` is that entry's title when
    it could be read; ``value`` is :data:`~pacsref.settings.MISSING` for an
    absent field.
    """

    source: str
    entry: int | None
    ae_title: str | None
    field: str | None
    value: object
    reason: str
    allowed: str

    def __str__(self) -> str:
        """One self-contained line: file, entry, field, value, reason, what is allowed."""
        where = ""
        if self.entry is not None:
            title = "" if self.ae_title is None else f" ({toml_string(self.ae_title)})"
            where = f"[[ae]] entry {self.entry}{title}: "
        subject = ""
        if self.field is not None:
            shown = "" if self.value is MISSING else f" = {describe_value(self.value)}"
            subject = f"{self.field}{shown} "
        text = f"{self.source}: {where}{subject}{self.reason}"
        return f"{text}; allowed: {self.allowed}" if self.allowed else text


class AeTableFileError(AeTitleError):
    """An AE title file cannot be read or is invalid; ``str()`` lists every problem, one a line."""

    def __init__(self, problems: Iterable[AeTableProblem]) -> None:
        self.problems: tuple[AeTableProblem, ...] = tuple(problems)
        if not self.problems:
            raise ValueError("AeTableFileError needs at least one problem")
        super().__init__("\n".join(str(problem) for problem in self.problems))

    def __reduce__(self) -> tuple[type[AeTableFileError], tuple[tuple[AeTableProblem, ...]]]:
        """Pickle by problems (the default would pass the message string to ``__init__``)."""
        return (type(self), (self.problems,))

    @classmethod
    def single(cls, source: str, reason: str, allowed: str = "") -> AeTableFileError:
        """An error about the file as a whole (unreadable, not UTF-8, TOML syntax)."""
        return cls([AeTableProblem(source, None, None, None, MISSING, reason, allowed)])


def dumps_ae_table(entries: Iterable[AeInfo]) -> str:
    """The TOML text of ``entries``; :func:`loads_ae_table` reads it back equal.

    Every field is written, defaults included, so the file shows all there is to edit.
    """
    parts = [_HEADER]
    for info in entries:
        parts.append("\n[[ae]]\n")
        for name in FIELD_CHECKS:
            value = getattr(info, name)
            parts.append(f"{name} = {toml_scalar(value)}\n")
    return "".join(parts)


def _entry_problems(
    source: str, index: int, entry: Mapping[str, object]
) -> tuple[dict[str, object], list[AeTableProblem]]:
    """Check one ``[[ae]]`` table field by field, so every bad field is reported, not the first."""
    raw_title = entry.get("ae_title")
    title = (raw_title.strip(" ") or None) if isinstance(raw_title, str) else None
    problems: list[AeTableProblem] = []

    def problem(field: str | None, value: object, reason: str, allowed: str) -> None:
        problems.append(AeTableProblem(source, index, title, field, value, reason, allowed))

    for key in entry:
        if key not in FIELD_CHECKS:
            close = difflib.get_close_matches(key, list(FIELD_CHECKS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problem(key, MISSING, f"is not a known field{hint}", ", ".join(FIELD_CHECKS))
    values: dict[str, object] = {}
    for name, check in FIELD_CHECKS.items():
        if name not in entry:
            if name in REQUIRED_FIELDS:
                problem(name, MISSING, "is missing", FIELD_ALLOWED[name])
            continue
        try:
            values[name] = check(entry[name])
        except AeFieldError as exc:
            problem(name, exc.value, exc.reason, exc.allowed)
    return values, problems


def loads_ae_table(text: str, source: str = "<string>") -> tuple[AeInfo, ...]:
    """Parse and validate an AE title table; every failure is an :class:`AeTableFileError`."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AeTableFileError.single(source, f"invalid TOML syntax: {exc}", _TOML_ALLOWED) from exc
    problems: list[AeTableProblem] = []
    for key in document:
        if key != "ae":
            problems.append(
                AeTableProblem(
                    source,
                    None,
                    None,
                    key,
                    document[key],
                    "is not a known key",
                    "only [[ae]] tables",
                )
            )
    tables = document.get("ae", [])
    if not isinstance(tables, list):
        problems.append(
            AeTableProblem(
                source,
                None,
                None,
                "ae",
                tables,
                "is not an array of tables",
                "[[ae]] tables (double brackets)",
            )
        )
        tables = []
    infos: list[AeInfo] = []
    seen: dict[str, tuple[int, str]] = {}
    for index, entry in enumerate(tables, start=1):
        if not isinstance(entry, dict):
            problems.append(
                AeTableProblem(
                    source,
                    index,
                    None,
                    None,
                    MISSING,
                    f"is {describe_value(entry)}, not a table",
                    "[[ae]] tables (double brackets)",
                )
            )
            continue
        values, entry_problems = _entry_problems(source, index, entry)
        title = values.get("ae_title")
        if isinstance(title, str):  # valid title: check it even if other fields are bad
            first = seen.setdefault(title.upper(), (index, title))
            if first[0] != index:
                how = "" if first[1] == title else ", differing only in letter case"
                entry_problems.insert(
                    0,
                    AeTableProblem(
                        source,
                        index,
                        title,
                        "ae_title",
                        entry["ae_title"],
                        f"duplicates [[ae]] entry {first[0]} ({toml_string(first[1])}){how}",
                        "each AE title once (compared without padding and ignoring letter case)",
                    ),
                )
        problems.extend(entry_problems)
        if not entry_problems:
            infos.append(AeInfo(**values))  # type: ignore[arg-type]  # every field checked
    if problems:
        raise AeTableFileError(problems)
    return tuple(infos)


def read_ae_table(path: StrPath) -> tuple[AeInfo, ...]:
    """Read and validate an AE title file; a missing file is an empty table.

    An unreadable file or text that is not UTF-8 (a byte order mark is
    tolerated) is an :class:`AeTableFileError`, like any invalid content.
    """
    path = Path(path)
    source = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ()
    except OSError as exc:
        raise AeTableFileError.single(
            source, f"cannot be read ({exc.strerror or exc})", "a readable file"
        ) from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise AeTableFileError.single(
            source, f"is not UTF-8 text (bad byte at offset {exc.start}, line {line})", "UTF-8 text"
        ) from exc
    return loads_ae_table(text, source)


_Stamp = tuple[int, int, int] | None


def _stamp(path: Path) -> _Stamp:
    """Identity of the file's current version (inode, mtime, size); None when absent.

    ``os.replace`` gives every save a new inode, and editors that write in
    place change mtime or size, so a differing stamp means "changed on disk".
    """
    try:
        result = path.stat()
    except FileNotFoundError:
        return None
    return (result.st_ino, result.st_mtime_ns, result.st_size)


class FileAeTitles(MemoryAeTitles):
    """The AE title table kept in ``aetitles.toml`` (the module docstring has the format).

    Construction loads the file and resolves every host (raising
    :class:`AeTableFileError` for an invalid file, so a server does not start
    with a table it misread). Lookups are served from memory; each change is
    saved atomically before it becomes visible, and a save that fails raises
    :class:`AeTitleError` and leaves both the file and the table unchanged.

    ``add``/``update``/``reload`` may block on DNS for host names and always on
    fsync: call them from a worker thread, not the reactor.
    """

    def __init__(self, path: StrPath, resolver: Resolver = resolve_addresses) -> None:
        self.path = Path(path)
        self._disk_stamp: _Stamp = None
        super().__init__((), resolver)
        with self._lock:
            self._load_locked()

    @classmethod
    def in_server_dir(
        cls, server_dir: StrPath, resolver: Resolver = resolve_addresses
    ) -> FileAeTitles:
        """The table of the server whose directory is ``server_dir``."""
        return cls(Path(server_dir) / AE_TITLES_FILE_NAME, resolver)

    def __repr__(self) -> str:
        return f"<FileAeTitles {str(self.path)!r} with {len(self.list())} entries>"

    def reload(self) -> None:
        """Read the file again (after a hand edit) and resolve every host again.

        An invalid file raises :class:`AeTableFileError` and the table in
        memory stays as it was.
        """
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> None:
        stamp = _stamp(self.path)  # before reading: a write in between shows as a change later
        table = {info.ae_title: (info, self._resolver(info)) for info in read_ae_table(self.path)}
        self._disk_stamp = stamp
        self._table = table

    def _writable_table(self) -> _Table:
        """Catch up with a hand edit first, so that saving the change does not erase it."""
        if _stamp(self.path) != self._disk_stamp:
            self._load_locked()
        return self._table

    def _commit(self, table: _Table) -> None:
        data = dumps_ae_table(info for info, _ in table.values()).encode("utf-8")
        try:
            atomic_write_bytes(self.path, data)
        except OSError as exc:
            raise AeTitleError(
                f"cannot save the AE title table to {self.path} ({exc.strerror or exc}); "
                "nothing was changed"
            ) from exc
        self._disk_stamp = _stamp(self.path)
        super()._commit(table)
