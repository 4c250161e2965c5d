"""Which file system a benchmark writes to, and whether it is one that distorts the figures.

Printed with the storage benchmarks' results because the disk decides much of what they
measure: on ext4 without a journal (the development disk of the seventh round, bench/README.md)
creating a file is slow for a minute after many files were deleted, and the flush behind every
fsync costs what the virtual disk makes it cost. Linux only; elsewhere the description says so.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pacsref.mounts import mount_of

__all__ = ["JBD2_DIR", "describe", "has_journal", "mount_of"]

#: Where Linux lists every jbd2 journal (one entry per journaled ext4 file system).
JBD2_DIR = Path("/proc/fs/jbd2")

NO_JOURNAL_NOTE = (
    "no journal: creating a file is slow for a minute after many files were deleted "
    '(bench/README.md, "Seventh round")'
)


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
