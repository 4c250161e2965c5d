"""Whether a ``temporary_directory`` can be spooled into, on the machine the server runs on.

Not part of the settings model's validation: a ``settings.toml`` may be read (validated,
edited) anywhere, where the path means nothing. Both places that save a new value on the
server's machine call :func:`check_temporary_directory` before saving, so that a bad path is
refused when it is given and not at the next start: the manager (``pacsref server add|edit``)
and the admin socket's UpdateSettings (which a direct admin client reaches without the
manager).
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from pacsref.settings.model import ServerSettings

__all__ = ["TemporaryDirectoryError", "check_temporary_directory"]


class TemporaryDirectoryError(ValueError):
    """``temporary_directory`` names a place the server could not spool into; says why."""


def check_temporary_directory(settings: ServerSettings, server_dir: Path) -> None:
    """Raise :class:`TemporaryDirectoryError` unless the server could spool into the directory.

    The directory must be a writable directory or be creatable. Writability is tested by
    creating (and removing) a file, not with ``os.access``: root passes ``os.access`` even
    where it cannot write (a read-only mount). What this check creates to find out is removed
    again, so a refused or mistyped path leaves nothing behind (the server makes the
    directory when it starts). Blocking: a server calls it on a worker thread.

    An empty ``temporary_directory`` (the default, ``<server dir>/tmp``) is not checked: the
    server directory's own layout is the server's business at start.
    """
    if not settings.temporary_directory:
        return
    target = settings.effective_temporary_directory(server_dir)
    what = f"temporary_directory {settings.temporary_directory!r}"
    if target.exists() and not target.is_dir():
        raise TemporaryDirectoryError(f"cannot use {what}: {target} is not a directory")
    created: list[Path] = []
    probe = target
    while not probe.exists() and probe != probe.parent:
        created.append(probe)
        probe = probe.parent
    try:
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TemporaryDirectoryError(
                f"cannot use {what}: cannot create {target}: {_reason(exc)}"
            ) from None
        try:
            with tempfile.TemporaryFile(dir=target):
                pass
        except OSError as exc:
            raise TemporaryDirectoryError(
                f"cannot use {what}: cannot write in {target}: {_reason(exc)}"
            ) from None
    finally:
        for directory in created:  # deepest first
            with contextlib.suppress(OSError):
                directory.rmdir()


def _reason(exc: OSError) -> str:
    """The operating system's words without Python's ``[Errno N]`` decoration."""
    return exc.strerror or str(exc)
