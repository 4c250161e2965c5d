"""SpoolWriter: fragments gathered into bounded batches, every byte written, errors surfaced."""

from __future__ import annotations

import errno
import itertools
import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pacsref.dimse import SPOOL_PREFIX, SPOOL_SUFFIX, MessageAssembler
from pacsref.dimse import spool as spool_module
from pacsref.dimse.spool import (
    BATCH_BYTES,
    BATCH_VIEWS,
    COPY_BELOW,
    PIN_BYTES,
    SpoolWriter,
    create_spool_file,
    writev_all,
)
from pacsref.dimse.writeback import WriteBehind
from pacsref.ul.events import PresentationDataValue as PDV

DEV_FULL = Path("/dev/full")


def _writer(path: Path) -> SpoolWriter:
    return SpoolWriter(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def test_pieces_wait_until_a_batch_is_full_then_all_arrive_in_order(tmp_path: Path) -> None:
    """Three 16 KiB views stay gathered; the fourth fills the batch; close writes the rest."""
    path = tmp_path / "spool"
    writer = _writer(path)
    received = bytes(range(256)) * 64 * 5  # 80 KiB, as if from one read
    pieces = [memoryview(received)[i : i + 16384] for i in range(0, len(received), 16384)]
    for piece in pieces[:3]:
        writer.write(piece)
    assert path.stat().st_size == 0
    writer.write(pieces[3])
    assert path.stat().st_size == BATCH_BYTES
    writer.write(pieces[4])
    writer.close()
    assert path.read_bytes() == received


def test_many_small_pieces_are_written_at_the_piece_limit(tmp_path: Path) -> None:
    """A peer sending tiny PDVs cannot make a batch longer than BATCH_VIEWS pieces."""
    path = tmp_path / "spool"
    writer = _writer(path)
    for i in range(BATCH_VIEWS + 3):
        writer.write(bytes([i]) * 10)
    assert path.stat().st_size == BATCH_VIEWS * 10
    writer.close()
    assert path.read_bytes() == b"".join(bytes([i]) * 10 for i in range(BATCH_VIEWS + 3))


def test_small_views_are_copied_so_they_pin_nothing(tmp_path: Path) -> None:
    """A view under COPY_BELOW bytes is copied; changing its source later changes nothing."""
    path = tmp_path / "spool"
    writer = _writer(path)
    source = bytearray(b"a" * (COPY_BELOW - 1))
    writer.write(memoryview(source))
    source[:] = b"b" * len(source)
    writer.close()
    assert path.read_bytes() == b"a" * (COPY_BELOW - 1)


def _pinned(buffer: bytearray) -> bool:
    """Whether a view of ``buffer`` is still alive: a bytearray with one cannot be resized."""
    try:
        buffer.append(0)
    except BufferError:
        return True
    buffer.pop()
    return False


def test_a_batch_keeps_no_more_than_pin_bytes_of_received_buffers_alive(tmp_path: Path) -> None:
    """A hostile peer's 128 KiB PDUs, each one COPY_BELOW-byte data PDV and thousands of empty
    ones: each view is large enough to be kept, yet the batch is written before the whole
    PDUs behind its views add up to PIN_BYTES (it used to keep fifteen, 1.9 MiB)."""
    path = tmp_path / "spool"
    writer = _writer(path)
    reads = [bytearray(bytes([i]) * 131078) for i in range(15)]
    for i, read in enumerate(reads):
        writer.write(memoryview(read)[12 : 12 + COPY_BELOW])
        kept = sum(len(r) for r in reads[: i + 1] if _pinned(r))
        assert kept < PIN_BYTES, f"after {i + 1} PDUs the batch keeps {kept} bytes alive"
    writer.close()
    assert not any(_pinned(r) for r in reads)
    assert path.read_bytes() == b"".join(bytes([i]) * COPY_BELOW for i in range(15))


def test_views_of_ordinary_reads_still_fill_a_batch_uncopied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """16 KiB PDVs from two 80 KiB reads (16 KiB PDUs parked across 64 KiB reads) wait until
    BATCH_BYTES as before, and a 128 KiB PDU's one PDV is written as the view itself."""
    batches: list[list[bytes | memoryview]] = []
    real_writev = os.writev

    def recording(fd: int, buffers: list[bytes | memoryview]) -> int:
        batches.append(list(buffers))
        return real_writev(fd, buffers)

    monkeypatch.setattr(os, "writev", recording)
    path = tmp_path / "spool"
    writer = _writer(path)
    reads = [bytes([1]) * 81920, bytes([2]) * 81920]
    pieces = [memoryview(reads[0])[i : i + 16384] for i in range(0, 81920, 16384)]
    pieces.append(memoryview(reads[1])[:16384])
    for piece in pieces[:3]:
        writer.write(piece)
    assert batches == []
    writer.write(pieces[3])
    assert len(batches) == 1
    assert all(b is p for b, p in zip(batches[0], pieces[:4], strict=True))  # not copied
    writer.write(pieces[4])
    writer.write(pieces[5])  # the second read's: both reads pinned, 160 KiB < PIN_BYTES
    assert len(batches) == 1
    pdu = bytes([3]) * 131078
    whole = memoryview(pdu)[12:]
    writer.write(whole)
    assert len(batches) == 2 and batches[1][-1] is whole
    writer.close()
    assert path.read_bytes() == b"".join(bytes(p) for p in [*pieces, whole])


def test_empty_pieces_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    writer = _writer(path)
    for _ in range(BATCH_VIEWS * 2):
        writer.write(b"")
    writer.write(b"x")
    writer.close()
    assert path.read_bytes() == b"x"


def test_short_writes_are_continued_until_every_byte_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """writev may write less than asked (signals, some file systems): the rest follows."""
    real_writev = os.writev
    calls = []

    def five_bytes_at_most(fd: int, buffers: list[bytes | memoryview]) -> int:
        calls.append(len(buffers))
        return real_writev(fd, [bytes(b"".join(bytes(b) for b in buffers)[:5])])

    monkeypatch.setattr(os, "writev", five_bytes_at_most)
    path = tmp_path / "spool"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    pieces: list[bytes | memoryview] = [b"abc", memoryview(b"defghij"), b"", b"klmnopqrstu"]
    writev_all(fd, pieces)
    os.close(fd)
    assert path.read_bytes() == b"abcdefghijklmnopqrstu"
    assert len(calls) == 5  # 21 bytes, 5 at a time


def test_a_writev_that_writes_nothing_is_an_error_not_a_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "writev", lambda fd, buffers: 0)
    fd = os.open(tmp_path / "spool", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with pytest.raises(OSError, match="wrote nothing"):
        writev_all(fd, [b"data"])
    os.close(fd)


@pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full (Linux) to fail writes")
def test_a_full_disk_raises_when_the_batch_is_written_and_close_still_closes() -> None:
    writer = SpoolWriter(os.open(DEV_FULL, os.O_WRONLY))
    writer.write(b"x" * 100)  # gathered: nothing written yet
    with pytest.raises(OSError) as raised:
        writer.write(b"y" * BATCH_BYTES)
    assert raised.value.errno == errno.ENOSPC
    writer.close()  # the failed batch is not retried; the descriptor is closed
    writer.close()


def test_abandon_closes_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    writer = _writer(path)
    writer.write(b"partial")
    writer.abandon()
    assert path.read_bytes() == b""
    writer.abandon()
    writer.close()


@pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full (Linux) to fail writes")
def test_assembler_reports_a_full_disk_found_at_a_batch_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error comes a batch late, yet the message is still delivered as spool-failed,
    its partial file deleted and the rest of the data set dropped."""

    def spool_on_a_full_disk(fd: int) -> SpoolWriter:
        os.close(fd)
        return SpoolWriter(os.open(DEV_FULL, os.O_WRONLY))

    monkeypatch.setattr("pacsref.dimse.assembler.SpoolWriter", spool_on_a_full_disk)
    from tests.dimse.test_dimse_assembler import STORE_RQ

    assembler = MessageAssembler(tmp_path, {1: "1.2.840.10008.1.2.1"})
    assert assembler.feed(PDV(1, True, True, STORE_RQ)) is None
    assert assembler.feed(PDV(1, False, False, b"a" * 16384)) is None  # gathered
    assert list(tmp_path.iterdir()) != []
    for _ in range(3):  # the batch fills and fails on the fourth
        assert assembler.feed(PDV(1, False, False, b"b" * 16384)) is None
    assert list(tmp_path.iterdir()) == []
    message = assembler.feed(PDV(1, False, True, b"last"))
    assert message is not None and message.dataset_path is None
    assert message.spool_failure is not None and message.spool_failure.errno == errno.ENOSPC


def test_spool_files_are_new_private_and_recognisable(tmp_path: Path) -> None:
    """Each call makes a new empty file, mode 0600, named so a start finds stale ones."""
    made = [create_spool_file(tmp_path, SPOOL_PREFIX, SPOOL_SUFFIX) for _ in range(3)]
    for fd, _ in made:
        os.close(fd)
    paths = [path for _, path in made]
    assert len(set(paths)) == 3
    assert sorted(tmp_path.glob(f"{SPOOL_PREFIX}*{SPOOL_SUFFIX}")) == sorted(paths)
    for path in paths:
        assert path.parent == tmp_path and path.stat().st_size == 0
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_spool_name_in_use_is_skipped_never_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file already there under the next name (a crashed run's, by chance) is left alone."""
    monkeypatch.setattr(spool_module, "_SERIAL", itertools.count(7))
    taken = tmp_path / f"p{os.getpid()}-{spool_module._TOKEN}-7.s"
    taken.write_bytes(b"someone else's")
    fd, path = create_spool_file(tmp_path, "p", ".s")
    os.close(fd)
    assert path == tmp_path / f"p{os.getpid()}-{spool_module._TOKEN}-8.s"
    assert taken.read_bytes() == b"someone else's"


def test_a_spool_directory_that_is_gone_is_an_os_error(tmp_path: Path) -> None:
    """The assembler turns this into a spool failure (0xA700), not an abort."""
    with pytest.raises(FileNotFoundError):
        create_spool_file(tmp_path / "gone", SPOOL_PREFIX, SPOOL_SUFFIX)


class _RecordingWriteBehind:
    """Stands in for the write-behind thread: records which descriptors were handed over."""

    def __init__(self) -> None:
        self.handed: list[int] = []

    def hand_over(self, fd: int, owner: object = None) -> None:
        self.handed.append(fd)


def test_a_large_data_set_has_its_write_started_as_it_arrives(tmp_path: Path) -> None:
    """At WRITE_BEHIND_START bytes, and after every WRITE_BEHIND_STEP more; smaller: never."""
    from pacsref.dimse.writeback import WRITE_BEHIND_START, WRITE_BEHIND_STEP

    behind = _RecordingWriteBehind()
    fd, path = create_spool_file(tmp_path, "pacsref-dimse-", ".dataset")
    writer = SpoolWriter(fd, write_behind=behind)
    piece = b"\0" * BATCH_BYTES
    written = 0
    while written < WRITE_BEHIND_START:
        assert behind.handed == []
        writer.write(piece)
        written += len(piece)
    assert behind.handed == [fd]
    for _ in range(WRITE_BEHIND_STEP // BATCH_BYTES - 1):
        writer.write(piece)
    assert behind.handed == [fd]
    writer.write(piece)
    assert behind.handed == [fd, fd]
    writer.close()
    assert path.stat().st_size == written + WRITE_BEHIND_STEP

    small = _RecordingWriteBehind()
    fd, _ = create_spool_file(tmp_path, "pacsref-dimse-", ".dataset")
    writer = SpoolWriter(fd, write_behind=small)
    for _ in range(WRITE_BEHIND_START // BATCH_BYTES - 1):
        writer.write(piece)
    writer.close()
    assert small.handed == []


def test_the_write_behind_thread_starts_a_duplicate_and_closes_it(tmp_path: Path) -> None:
    """The thread gets its own descriptor of the same file, closed after the start, so the
    writer may close or delete its file at any time; a failing start stops nothing."""
    import os
    import threading

    from pacsref.dimse.writeback import WriteBehind

    started: list[tuple[int, int]] = []
    release = threading.Event()
    done = threading.Event()

    def start(fd: int) -> None:
        started.append((fd, os.fstat(fd).st_ino))
        if len(started) == 1:
            # Held until all three are handed over: each duplicate is made while the first
            # is open, so no two share a number and a closed one cannot be reused unseen.
            release.wait(10)
            raise OSError("the device said no")
        if len(started) == 3:
            done.set()  # the first two are closed by now: one thread, in order

    behind = WriteBehind(start, enabled=True)
    fd, path = create_spool_file(tmp_path, "pacsref-dimse-", ".dataset")
    for _ in range(3):
        behind.hand_over(fd)
    release.set()
    assert done.wait(10), "the write-behind thread never got to the third file"
    inode = path.stat().st_ino
    assert [ino for _, ino in started] == [inode, inode, inode]
    duplicates = [dup for dup, _ in started]
    assert fd not in duplicates and len(set(duplicates)) == 3
    os.write(fd, b"still mine")  # the caller's descriptor is untouched
    os.close(fd)
    for dup in duplicates[:2]:
        with pytest.raises(OSError):
            os.fstat(dup)  # closed by the thread, the failed start's too


@pytest.mark.parametrize("enabled", [False, True])
def test_nothing_is_started_when_off_or_without_a_start_call(tmp_path: Path, enabled: bool) -> None:
    """Off (no add-in syncs what it stores), or a platform without sync_file_range: handing
    over does nothing (no thread, no duplicate descriptor)."""
    from pacsref.dimse.writeback import WriteBehind

    def start(fd: int) -> None:
        raise AssertionError("started although off")

    behind = WriteBehind(None, enabled=True) if enabled else WriteBehind(start)
    fd, _ = create_spool_file(tmp_path, "pacsref-dimse-", ".dataset")
    behind.hand_over(fd)
    assert behind._thread is None
    os.close(fd)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_the_real_write_start_is_accepted(tmp_path: Path) -> None:
    from pacsref.dimse.writeback import start_writeback, writeback_available

    assert writeback_available()
    fd, path = create_spool_file(tmp_path, "pacsref-dimse-", ".dataset")
    os.write(fd, b"\1" * 100_000)
    start_writeback(fd)
    os.close(fd)
    assert path.read_bytes() == b"\1" * 100_000


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def _wait_for(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _congested_write_behind() -> tuple[threading.Event, list[int], WriteBehind]:
    """A write-behind whose thread waits (up to 10 s) until the returned gate is set; the
    descriptors it was handed, in order."""
    gate = threading.Event()
    started: list[int] = []

    def congested(fd: int) -> None:
        started.append(fd)
        gate.wait(10)

    return gate, started, WriteBehind(congested, enabled=True)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts /proc/self/fd")
def test_a_stuck_write_behind_thread_holds_one_duplicate_per_spool_file() -> None:
    """While the thread waits for a congested device, more hints for the same file add no
    descriptor (they used to queue one per WRITE_BEHIND_STEP: 2054 for four 4 GiB stores);
    once it is free every file is started once and every duplicate closed."""
    from pacsref.dimse.writeback import WRITE_BEHIND_START, WRITE_BEHIND_STEP

    gate, started, behind = _congested_write_behind()
    before = _open_descriptors()
    writers = [SpoolWriter(os.open(os.devnull, os.O_WRONLY), behind) for _ in range(3)]
    piece = b"\0" * (1 << 20)
    for writer in writers:
        for _ in range((WRITE_BEHIND_START + 4 * WRITE_BEHIND_STEP) >> 20):
            writer.write(piece)  # five hints each
    try:
        assert _open_descriptors() == before + 3 + 3  # each writer's own, and one duplicate
    finally:
        gate.set()
    assert _wait_for(lambda: _open_descriptors() == before + 3)
    assert len(started) == 3
    for _ in range(WRITE_BEHIND_STEP >> 20):
        writers[0].write(piece)  # its next hint is taken up: the last one was acted on
    assert _wait_for(lambda: len(started) == 4)
    for writer in writers:
        writer.close()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts /proc/self/fd")
def test_no_more_than_max_handed_duplicates_exist_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hints from more spool files than MAX_HANDED while the thread is stuck are dropped."""
    from pacsref.dimse import writeback

    monkeypatch.setattr(writeback, "MAX_HANDED", 4)
    gate, started, behind = _congested_write_behind()
    fd, _ = create_spool_file(tmp_path, "pacsref-dimse-", ".dataset")
    before = _open_descriptors()
    owners = [object() for _ in range(10)]
    for owner in owners:
        behind.hand_over(fd, owner)
    try:
        assert _open_descriptors() == before + 4
    finally:
        gate.set()
    assert _wait_for(lambda: _open_descriptors() == before)
    assert len(started) == 4
    behind.hand_over(fd, owners[-1])  # room again: a later hint is acted on
    assert _wait_for(lambda: len(started) == 5)
    os.close(fd)
