"""Which mount holds a path, from the text of ``/proc/mounts`` (Linux).

The storage add-in asks it whether its data directory is on a local disk before it lets a
durable store flush on the reactor thread (``addins/storage/inline.py``), and the storage
benchmarks print it beside their figures (``bench/fsinfo.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MOUNTS", "mount_of", "read_mounts"]

#: Where Linux lists the mounts this process sees.
MOUNTS = Path("/proc/mounts")


def _unescape(field: str) -> str:
    r"""/proc/mounts escapes space, tab, newline and backslash as \040, \011, \012, \134."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mount_of(path: Path, mounts: str) -> tuple[str, str, str] | None:
    """(device, mount point, type) of the mount holding ``path``, from /proc/mounts text.

    The longest mount point containing the resolved path wins; of two mounts on one point,
    the later one (it hides the earlier).
    """
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


def read_mounts(mounts: Path = MOUNTS) -> str | None:
    """The text of ``/proc/mounts``, or None where there is none (not Linux, no /proc)."""
    try:
        return mounts.read_text()
    except OSError:
        return None
