"""Starting the device's write of a spool file's pages before anyone waits for them.

A durable store ends with an ``fdatasync`` of the spool file, and the peer waits for its
response until that returns. Left alone, Linux writes a file's dirty pages back only after
they are 30 s old or when a tenth or so of memory is dirty, so for a large data set the whole
object is written at that ``fdatasync``: a 600 MB multi-frame object took about a second more
than the same store without it (bench/README.md, "Ninth round"), and a 4 GB tomosynthesis
study would keep a modality waiting for its C-STORE-RSP far longer than its DIMSE timeout.

So once :data:`WRITE_BEHIND_START` bytes of a data set have arrived, and after every further
:data:`WRITE_BEHIND_STEP` bytes, its spool file's dirty pages are handed to the device
(``sync_file_range(SYNC_FILE_RANGE_WRITE)``: start, do not wait), and the final
``fdatasync`` waits only for the last stretch. Smaller data sets are never touched: for
the 512 KiB images of a CT series an early start measured worse with 8 and 16 associations
(it splits the kernel's larger write-back requests; bench/README.md, rounds two, six and
seven), and their store starts their write itself (the storage add-in's ``HeldSpool``).

Only a server whose stores are made durable gains from it: without the final ``fdatasync``
nobody waits for the pages, and starting their write while the data set still arrives made
the same 600 MB store about a quarter slower (the device's work competes with the receive on
two vCPUs). So it is off until an add-in that syncs what it stores turns it on
(:attr:`WriteBehind.enabled`; the storage add-in does, for durability "fsync").

Starting a write can wait for a free request slot of the device, so the reactor never makes
the call: it hands a duplicate of the descriptor to one background thread per process, which
keeps the file open (even if the transfer is aborted and the file deleted meanwhile) until
the call is made. The call is a hint: its errors are ignored, ``fdatasync`` reports what
matters. Where the C library has no ``sync_file_range`` (not Linux) nothing is started.

Being a hint, it is also dropped rather than queued without end. While the thread waits for
a congested device, each further :data:`WRITE_BEHIND_STEP` of every large data set would add
a duplicate descriptor (four 4 GiB stores: some two thousand open at once, past a default
limit of 1024). So a spool file has at most one hand-over waiting or in progress (the call
made for it starts whatever is dirty by then, later pages included), and no more than
:data:`MAX_HANDED` of them exist at once; a hint beyond either is not made.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import sys
import threading
from collections.abc import Callable

__all__ = [
    "MAX_HANDED",
    "WRITE_BEHIND",
    "WRITE_BEHIND_START",
    "WRITE_BEHIND_STEP",
    "WriteBehind",
    "start_writeback",
    "writeback_available",
]

#: A spool file gets its write started once this many bytes were written to it ...
WRITE_BEHIND_START = 16 * 1024 * 1024
#: ... and again after every further this many bytes.
WRITE_BEHIND_STEP = 8 * 1024 * 1024

#: Duplicated descriptors waiting for (or in) the thread's call at most; more are not made.
MAX_HANDED = 64

#: ``sync_file_range`` flag: start writing the range's dirty pages, do not wait for them.
_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """glibc's ``sync_file_range`` (Linux), or None where the C library has none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


_sync_file_range = _load_sync_file_range()


def writeback_available() -> bool:
    """Whether this platform can start a file's write-back (Linux)."""
    return _sync_file_range is not None


def start_writeback(fd: int) -> None:
    """Start writing every dirty page of ``fd``'s file; may wait for the device, not for I/O."""
    if _sync_file_range is not None:
        _sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


class WriteBehind:
    """The background thread that starts spool files' write-back for the reactor.

    One per process (:data:`WRITE_BEHIND`); its thread starts with the first file handed to
    it and is a daemon, so it never holds up a shutdown (an unstarted write costs nothing).
    ``start`` is the call made on that thread (tests pass their own); None: nothing is done.
    ``enabled``: whether handing over does anything (module docstring: off by default).
    """

    def __init__(self, start: Callable[[int], None] | None, enabled: bool = False) -> None:
        self.enabled = enabled
        self._start = start
        self._files: queue.SimpleQueue[tuple[int, object]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: duplicates handed over and not yet closed by the thread, and their owners
        self._handed = 0
        self._owners: set[object] = set()

    def hand_over(self, fd: int, owner: object = None) -> None:
        """Have the write of ``fd``'s dirty pages started soon; ``fd`` stays the caller's.

        ``owner`` (the caller's spool writer): nothing is done while a hand-over of the same
        owner waits or is in progress, since that call starts this file's pages too. None:
        no such check. Nothing either when :data:`MAX_HANDED` are out (module docstring).
        """
        if not self.enabled or self._start is None:
            return
        with self._lock:
            if self._handed >= MAX_HANDED or (owner is not None and owner in self._owners):
                return
            try:
                duplicate = os.dup(fd)
            except OSError:
                return  # out of descriptors: the final fdatasync writes everything, as before
            self._handed += 1
            if owner is not None:
                self._owners.add(owner)
            self._files.put((duplicate, owner))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(self._start,), name="pacsref-write-behind",
                    daemon=True,
                )  # fmt: skip
                self._thread.start()

    def _run(self, start: Callable[[int], None]) -> None:
        while True:
            fd, owner = self._files.get()
            try:
                start(fd)
            except Exception:  # a hint: fdatasync reports real I/O errors
                pass
            finally:
                with contextlib.suppress(OSError):
                    os.close(fd)
                with self._lock:
                    self._handed -= 1
                    self._owners.discard(owner)


#: The process's write-behind thread, used by every :class:`~pacsref.dimse.spool.SpoolWriter`.
WRITE_BEHIND = WriteBehind(start_writeback if writeback_available() else None)
