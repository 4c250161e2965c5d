"""The spool file of a data set in transit: fragments gathered, written with one ``writev``.

A 512 KiB data set arrives as 32 PDVs of 16 KiB from a peer that sends 16 KiB PDUs (pynetdicom,
or any peer when the server announces DCMTK's default maximum of 16384), about four in each
64 KiB read. Written one by one through a ``BufferedWriter``, each PDV is a system call plus the
writer's own bookkeeping; gathered and written with ``os.writev`` they are one call per batch:
about 40-60 us -> 21-23 us per 64 KiB on the development machine (bench/README.md, "Fifth
round"). The data stay ``memoryview``s of the received bytes until written, so nothing is
copied in Python.

What a batch may hold is bounded, so that a peer cannot make the server keep more than a read
or two of its data in memory: at most :data:`BATCH_BYTES` bytes and :data:`BATCH_VIEWS` pieces
(also below the kernel's ``IOV_MAX``), and a piece under :data:`COPY_BELOW` bytes is copied, so
that a tiny view never pins the whole read it came from. A view keeps its whole received buffer
alive (a read, or a P-DATA-TF PDU joined from several), not only its own bytes: a peer sending
maximum-size PDUs that each hold one :data:`COPY_BELOW`-byte data PDV and thousands of empty
ones would otherwise have one batch keep some fifteen whole PDUs (2 MiB at our default maximum
PDU, 15 MiB at 1 MiB). So the buffers a batch's views keep are counted too, each once, and the
batch is written once they reach :data:`PIN_BYTES`. A peer's ordinary PDUs, one large PDV each
or several in a read, fill :data:`BATCH_BYTES` first, as before; and nothing is copied.

A data set of :data:`~pacsref.dimse.writeback.WRITE_BEHIND_START` bytes or more has the
device's write of its pages started as it arrives (:mod:`pacsref.dimse.writeback`), so that a
durable store's final ``fdatasync`` does not write the whole object at once.

A write error (a full disk) surfaces when the batch is written: in :meth:`SpoolWriter.write`
that fills it, or in :meth:`SpoolWriter.close` for the last one. Either way before the data set
is delivered, which is all the assembler needs: a message whose spool failed is answered with a
failure status and its partial file deleted.
"""

from __future__ import annotations

import errno
import itertools
import os
import secrets
from pathlib import Path

from pacsref.dimse.writeback import WRITE_BEHIND, WRITE_BEHIND_START, WRITE_BEHIND_STEP, WriteBehind

__all__ = [
    "BATCH_BYTES",
    "BATCH_VIEWS",
    "COPY_BELOW",
    "PIN_BYTES",
    "SpoolWriter",
    "create_spool_file",
    "writev_all",
]

#: Bytes gathered before they are written.
BATCH_BYTES = 64 * 1024
#: Pieces gathered before they are written (Linux's IOV_MAX is 1024).
BATCH_VIEWS = 64
#: Pieces smaller than this are copied rather than kept as views of their read.
COPY_BELOW = 4096
#: Bytes of received buffers a batch's views may keep alive before it is written: two 64 KiB
#: reads and a PDU that spans them. Ordinary PDUs of 4-128 KiB fill :data:`BATCH_BYTES` first
#: (their batches measured the same with it); 2 x 64 KiB split those of 16 KiB PDUs in 64 KiB
#: reads, whose parked PDUs make buffers of some 80 KiB.
PIN_BYTES = 3 * BATCH_BYTES

#: ``tempfile.mkstemp``'s flags: exclusive, no symbolic link followed, not inherited.
_CREATE_FLAGS = (
    os.O_RDWR
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
#: Names tried before giving up, as ``tempfile.TMP_MAX``.
_ATTEMPTS = 10000
#: Unique per process start: with the process ID, no two servers (or a crashed run's leftovers)
#: pick the same name but by chance, which ``O_EXCL`` then catches.
_TOKEN = secrets.token_hex(4)
_SERIAL = itertools.count()


def create_spool_file(directory: Path, prefix: str, suffix: str) -> tuple[int, Path]:
    """Create a new, empty spool file in ``directory``: (its descriptor, its path).

    What ``tempfile.mkstemp`` does, with the same flags and mode 0600, for a message on every
    store's path: a name from the process ID, a per-start token and a serial number instead of
    eight random letters, which spares mkstemp's argument checks, random choice and path
    normalisation (measured: bench/README.md, "Eighth round"). A name that exists already is
    skipped.
    """
    for _ in range(_ATTEMPTS):
        path = directory / f"{prefix}{os.getpid()}-{_TOKEN}-{next(_SERIAL)}{suffix}"
        try:
            return os.open(path, _CREATE_FLAGS, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no unused spool file name in {directory}")


def writev_all(fd: int, pieces: list[bytes | memoryview]) -> None:
    """Write every byte of ``pieces`` to ``fd`` in order, however short each ``writev`` is."""
    while pieces:
        written = os.writev(fd, pieces)
        if written == 0:  # never for a regular file with room; do not loop for ever on one
            raise OSError(errno.EIO, "writev wrote nothing to the spool file")
        while pieces and written >= len(pieces[0]):
            written -= len(pieces[0])
            pieces = pieces[1:]
        if written:
            pieces = [memoryview(pieces[0])[written:], *pieces[1:]]


def _buffer_size(source: object) -> int:
    """Bytes of the buffer a ``memoryview`` keeps alive (its ``obj``), whatever its format."""
    if isinstance(source, (bytes, bytearray)):
        return len(source)
    with memoryview(source) as whole:  # type: ignore[arg-type]  # a view's obj exports a buffer
        return whole.nbytes


class SpoolWriter:
    """Write-only spool file over a raw descriptor; :meth:`close` writes what is left."""

    __slots__ = (
        "_behind",
        "_fd",
        "_next_write_behind",
        "_pending",
        "_pending_bytes",
        "_pinned",
        "_source",
        "_written",
    )

    def __init__(self, fd: int, write_behind: WriteBehind = WRITE_BEHIND) -> None:
        self._fd: int | None = fd
        self._pending: list[bytes | memoryview] = []
        self._pending_bytes = 0
        #: bytes of the received buffers the pending views keep alive, each counted once ...
        self._pinned = 0
        #: ... and the last one counted: a read's PDVs arrive one after the other
        self._source: object = None
        self._written = 0
        self._next_write_behind = WRITE_BEHIND_START
        self._behind = write_behind

    def write(self, data: bytes | memoryview) -> None:
        """Add ``data``; write the batch once it is full.

        Raises:
            OSError: writing the batch failed (nothing more is written by this object
                unless the caller retries).
        """
        size = len(data)
        if not size:
            return
        if isinstance(data, memoryview):
            if size < COPY_BELOW:
                data = bytes(data)
            else:
                source = data.obj
                if source is not self._source:
                    self._source = source
                    self._pinned += _buffer_size(source)
        self._pending.append(data)
        self._pending_bytes += size
        if (
            self._pending_bytes >= BATCH_BYTES
            or len(self._pending) >= BATCH_VIEWS
            or self._pinned >= PIN_BYTES
        ):
            self.flush()

    def flush(self) -> None:
        """Write the gathered pieces now (a failed batch is dropped, not retried)."""
        pending = self._pending
        if not pending or self._fd is None:
            return
        written = self._pending_bytes
        self._pending = []
        self._pending_bytes = 0
        self._pinned = 0
        self._source = None  # or the written batch's last buffer stays alive until the next
        writev_all(self._fd, pending)
        self._written += written
        if self._written >= self._next_write_behind:
            self._next_write_behind = self._written + WRITE_BEHIND_STEP
            self._behind.hand_over(self._fd, self)

    def close(self) -> None:
        """Write what is gathered, then close the descriptor (even when the write fails)."""
        fd = self._fd
        if fd is None:
            return
        try:
            self.flush()
        finally:
            self._fd = None
            self._pending = []
            os.close(fd)

    def abandon(self) -> None:
        """Close without writing what is gathered: the partial file is about to be deleted."""
        fd = self._fd
        self._fd = None
        self._pending = []
        self._pending_bytes = 0
        self._pinned = 0
        self._source = None
        if fd is not None:
            os.close(fd)
