"""When a durable store may flush on the reactor thread (docs/storage.md, "Inline stores").

A durable store of a small data set done on the reactor thread saves the two thread hand-offs
of the index pool, and with them most of a store's cost beyond its flushes: case a durable
1.85 -> 1.47 s median, six of six alternating rounds (bench/README.md, "Twelfth round"). But
there the reactor waits for the disk, and while it waits nothing else is served. So it is
done only where that wait is short and delays nobody else:

- the data directory is on a local disk file system (:data:`LOCAL_FILE_SYSTEMS`): a flush to
  NFS, CIFS or FUSE can wait on a network, and a hard-mounted NFS server that went away would
  hold the whole server, admin socket included;
- the previous store came from the same association (or there was none): one modality
  sending, as most do. Several associations storing at once keep the pool, which flushes
  theirs in parallel (case b with 16 associations was slower inline: 1.79-1.90 s pooled,
  1.88-2.21 s inline);
- no inline store was slow lately: one that took longer than :data:`SLOW_STORE_SECONDS` (a
  degraded or overloaded disk) sends durable stores to the pool for
  :data:`SLOW_STORE_PAUSE_SECONDS`, with one warning.

Everything else about an inline store (the size bound, the locks only tried, the fallback to
the pool with nothing changed) is the relaxed inline store's (``StorageAddin._store_inline``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from twisted.logger import Logger

from pacsref.addin import AssociationInfo
from pacsref.mounts import mount_of, read_mounts

__all__ = [
    "LOCAL_FILE_SYSTEMS",
    "SLOW_STORE_PAUSE_SECONDS",
    "SLOW_STORE_SECONDS",
    "InlineDurableGate",
    "file_system_type",
]

log = Logger(namespace="pacsref.addin.storage")

#: File systems on a local block device (or in memory) whose flush waits for that device only.
LOCAL_FILE_SYSTEMS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "zfs", "jfs", "reiserfs", "bcachefs",
     "tmpfs", "ramfs"}
)  # fmt: skip

#: An inline durable store taking longer than this (seconds) means the disk is slow now.
SLOW_STORE_SECONDS = 0.05
#: ... and durable stores then go to the index pool for this long (seconds).
SLOW_STORE_PAUSE_SECONDS = 60.0


def file_system_type(path: Path, mounts: str | None = None) -> str | None:
    """The type of the file system holding ``path`` (``"ext4"``), or None if unknown."""
    if mounts is None:
        mounts = read_mounts()
    if mounts is None:
        return None
    found = mount_of(path, mounts)
    return None if found is None else found[2]


class InlineDurableGate:
    """Decides, store by store, whether a durable store may run on the reactor thread.

    Used on the reactor thread only (``handle_store``), so it needs no lock.

    Args:
        file_system: the type of the data directory's file system (:func:`file_system_type`).
        clock: monotonic seconds; tests pass a fake one.
    """

    def __init__(
        self, file_system: str | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.file_system = file_system
        self.local = file_system in LOCAL_FILE_SYSTEMS
        self._clock = clock
        self._last_association: AssociationInfo | None = None
        self._pooled_until = 0.0

    def allows(self, association: AssociationInfo) -> bool:
        """Whether this store may be inline; every store, inline or not, must ask (it is
        how the gate learns that another association stores)."""
        previous, self._last_association = self._last_association, association
        if not self.local:
            return False
        if previous is not None and previous is not association:
            return False
        return self._clock() >= self._pooled_until

    def timed(self) -> float:
        """Now, for :meth:`took`."""
        return self._clock()

    def took(self, started: float) -> None:
        """An inline durable store that began at ``started`` (:meth:`timed`) has ended."""
        now = self._clock()
        seconds = now - started
        if seconds <= SLOW_STORE_SECONDS or now < self._pooled_until:
            return
        self._pooled_until = now + SLOW_STORE_PAUSE_SECONDS
        log.warn(
            "a durable store on the reactor thread took {ms:.0f} ms (more than {limit:.0f} ms: "
            "the disk is slow); durable stores go to the index pool for the next {pause:.0f} s, "
            "so that the server does not wait on the disk",
            ms=seconds * 1000,
            limit=SLOW_STORE_SECONDS * 1000,
            pause=SLOW_STORE_PAUSE_SECONDS,
        )
