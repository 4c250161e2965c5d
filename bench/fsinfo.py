"""Which file system a benchmark writes to, and whether it is one that distorts the figures.

Printed with the storage benchmarks' results because the disk decides much of what they
measure: on ext4 without a journal (the development disk of the seventh round, bench/README.md)
creating a file is slow for a minute after many files were deleted, and the flush behind every
fsync costs what the virtual disk makes it cost. Linux only; elsewhere the description says so.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["JBD2_DIR", "describe", "has_journal", "mount_of"]

#: Where Linux lists every jbd2 journal (one entry per journaled ext4 file system).
JBD2_DIR = Path("/proc/fs/jbd2")

NO_JOURNAL_NOTE = (
    "no journal: creating a file is slow for a minute after many files were deleted "
    '(bench/README.md, "Seventh round")'
)


def _unescape(field: str) -> str:
    r"""/proc/mounts escapes space, tab, newline and backslash as \040, \011, \012, \134."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mount_of(path: Path, mounts: str) -> tuple[str, str, str] | None:
    """(device, mount point, type) of the mount holding ``path``, from /proc/mounts text."""
    target = os.path.realpath(path)
    best: tuple[str, str, str] | None = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        device, point, kind = _unescape(fields[0]), _unescape(fields[1]), fields[2]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[1])):
            best = (device, point, kind)
    return best


def has_journal(device: str, jbd2_dir: Path = JBD2_DIR) -> bool:
    """Whether ext4 on ``device`` has a journal: jbd2 lists each one as ``<dev>-<inode>``."""
    name = os.path.basename(os.path.realpath(device))
    try:
        return any(entry.name.startswith(name + "-") for entry in jbd2_dir.iterdir())
    except OSError:
        return False


def describe(path: Path, mounts: str | None = None, jbd2_dir: Path = JBD2_DIR) -> str:
    """One line: the file system ``path`` is on, with a note when it distorts the figures.

    ``mounts`` (the text of /proc/mounts) and ``jbd2_dir`` are read from the system unless given.
    """
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return f"{path}: file system unknown (no /proc/mounts)"
    found = mount_of(path, mounts)
    if found is None:
        return f"{path}: file system unknown"
    device, point, kind = found
    text = f"{path}: {kind} on {device} (mounted on {point})"
    if kind == "ext4" and not has_journal(device, jbd2_dir):
        text += ", " + NO_JOURNAL_NOTE
    return text
