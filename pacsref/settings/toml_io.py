"""Reading and writing ``settings.toml``: commented, human-editable, written atomically.

The file is flat ``key = value`` TOML with one comment line per field, grouped like the
framework's dialog (Settings tab, Advanced tab), so that an administrator can edit it without
documentation. Reading uses :mod:`tomllib`; writing is by hand (the stdlib has no TOML writer and
the file holds only scalars). Saving is atomic -- temporary file in the same directory, fsync,
``os.replace``, fsync of the directory -- so a crash or full disk leaves either the old file or
the new one, never a truncated file that would stop the server from starting.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import tomllib
from pathlib import Path

from pacsref.settings.errors import MISSING, SettingsError, SettingsProblem
from pacsref.settings.fields import FIELD_SPECS
from pacsref.settings.model import ServerSettings, settings_from_mapping
from pacsref.settings.tomltext import toml_scalar

StrPath = str | os.PathLike[str]

_TOML_ALLOWED = 'TOML "key = value" lines, strings in double quotes, e.g. ae_title = "STORE"'
_LINE_RE = re.compile(r"\(at line (\d+), column \d+\)")

_HEADER = """\
# pacsref settings for the DICOM server {ae}.
# Edit with any text editor; the server reads this file when it starts. Only ae_title is
# required: a key left out takes its default. Unknown keys are errors, never ignored.
# Strings go in double quotes; numbers and true/false do not. Timeouts are in seconds.
"""


def _field_comment(comment: str, allowed: str, default: object) -> str:
    """One comment line telling the editor what the field does, what is allowed, the default."""
    if default is MISSING:
        return f"# {comment} Allowed: {allowed}. Required."
    assert isinstance(default, str | int | float | bool)
    return f"# {comment} Allowed: {allowed}. Default: {toml_scalar(default)}."


def dumps_settings(settings: ServerSettings) -> str:
    """Return the commented TOML text of ``settings``; :func:`loads_settings` reads it back equal.

    Every field is written, defaults included, so the file shows all there is to edit.
    """
    values = settings.as_mapping()
    lines = [_HEADER.format(ae=toml_scalar(settings.ae_title))]
    group = None
    for spec in FIELD_SPECS:
        if spec.group != group:
            group = spec.group
            lines.append(f"# ===== {group} =====\n")
        lines.append(_field_comment(spec.comment, spec.allowed, spec.default))
        lines.append(f"{spec.name} = {toml_scalar(values[spec.name])}\n")
    return "\n".join(lines)


def _syntax_line(message: str, text: str) -> int:
    """Line of a :class:`tomllib.TOMLDecodeError` (3.11 only has it inside the message)."""
    match = _LINE_RE.search(message)
    if match:
        return int(match.group(1))
    return max(1, text.count("\n") + (0 if text.endswith("\n") else 1))  # "at end of document"


def loads_settings(text: str, source: str = "<string>") -> ServerSettings:
    """Parse settings from TOML text; every error is a :class:`SettingsError` naming ``source``."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(
            [
                SettingsProblem(
                    source,
                    None,
                    MISSING,
                    f"invalid TOML syntax: {exc}",
                    _TOML_ALLOWED,
                    line=_syntax_line(str(exc), text),
                )
            ]
        ) from exc
    return settings_from_mapping(document, source=source)


def load_settings(path: StrPath) -> ServerSettings:
    """Read and validate a ``settings.toml``; every failure is a :class:`SettingsError`.

    That includes an unreadable or missing file and text that is not UTF-8 (a UTF-8 byte order
    mark, as some Windows editors add, is tolerated). All field problems are reported together.
    """
    path = Path(path)
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = f"cannot be read ({exc.strerror or exc})"
        raise SettingsError.single(source, reason, "a readable settings file") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        reason = f"is not UTF-8 text (bad byte at offset {exc.start}, line {line})"
        raise SettingsError.single(source, reason, "UTF-8 text", line=line) from exc
    return loads_settings(text, source=source)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable; a no-op where directories cannot be opened."""
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        with contextlib.suppress(OSError):  # some file systems refuse fsync on directories
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: StrPath, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a mix.

    The temporary file is created next to ``path`` (``os.replace`` is only atomic within one
    file system) with an unpredictable name, and removed again if anything fails. An existing
    file's permission bits are kept; a new file gets the usual ``0o666 & ~umask``.

    A ``path`` that is a symbolic link (an administrator keeping ``settings.toml`` under
    ``/etc``) is written through: the file it points at is replaced, and the link stays.
    Replacing the link itself would leave the edited values where nobody looks for them.
    """
    path = Path(os.path.realpath(path))
    directory = path.parent
    temporary = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        mode: int | None = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(temporary, flags, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def save_settings(settings: ServerSettings, path: StrPath) -> None:
    """Write ``settings`` to ``path`` as commented TOML, atomically (see module docstring).

    I/O failures propagate as :class:`OSError` (the settings themselves are always valid); the
    previous file, if any, is then left untouched.
    """
    atomic_write_bytes(path, dumps_settings(settings).encode("utf-8"))
