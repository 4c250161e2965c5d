"""The spool file held open for its store (addins/storage/writer.py, ``HeldSpool``).

What must hold: a durable store of a large data set starts the device's write at once (so the
final ``fdatasync`` waits for less), a small or relaxed one does not, ``make_durable`` flushes
only when durable, and the file descriptor is always closed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.storage.test_parts import _module

writer = _module("writer")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Record write-back starts and fdatasyncs instead of making them."""
    seen: list[tuple[str, int]] = []

    def start_write(fd: int) -> None:
        seen.append(("sync_file_range", fd))

    monkeypatch.setattr(writer, "start_writeback", start_write)
    monkeypatch.setattr(writer.os, "fdatasync", lambda fd: seen.append(("fdatasync", fd)))
    return seen


def _spool(tmp_path: Path, size: int) -> Path:
    path = tmp_path / "spool.dcm"
    path.write_bytes(b"\0" * size)
    return path


def test_a_large_durable_data_set_starts_its_write_before_the_fdatasync(
    tmp_path: Path, calls: list[tuple[str, int]]
) -> None:
    path = _spool(tmp_path, writer.WRITE_BEHIND_MIN_BYTES)
    with writer.HeldSpool(path, durable=True) as held:
        assert held.size == writer.WRITE_BEHIND_MIN_BYTES
        assert [name for name, _ in calls] == ["sync_file_range"]
        held.make_durable()
    assert [name for name, _ in calls] == ["sync_file_range", "fdatasync"]
    assert calls[0][1] == calls[1][1]  # one descriptor, held from start to flush


def test_a_small_data_set_is_only_flushed(tmp_path: Path, calls: list[tuple[str, int]]) -> None:
    path = _spool(tmp_path, writer.WRITE_BEHIND_MIN_BYTES - 1)
    with writer.HeldSpool(path, durable=True) as held:
        held.make_durable()
    assert [name for name, _ in calls] == ["fdatasync"]


def test_relaxed_durability_neither_starts_writes_nor_flushes(
    tmp_path: Path, calls: list[tuple[str, int]]
) -> None:
    path = _spool(tmp_path, 4 * writer.WRITE_BEHIND_MIN_BYTES)
    with writer.HeldSpool(path, durable=False) as held:
        held.make_durable()
        assert held.size == 4 * writer.WRITE_BEHIND_MIN_BYTES
    assert calls == []


def test_the_descriptor_is_closed_on_leaving(tmp_path: Path, calls: list[tuple[str, int]]) -> None:
    path = _spool(tmp_path, writer.WRITE_BEHIND_MIN_BYTES)
    with pytest.raises(RuntimeError), writer.HeldSpool(path, durable=True):
        raise RuntimeError("the store failed")
    fd = calls[0][1]
    with pytest.raises(OSError):
        os.fstat(fd)  # closed (and not reused by anything in between)


def test_a_missing_spool_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        writer.HeldSpool(tmp_path / "gone.dcm", durable=True)


@pytest.mark.skipif(
    os.uname().sysname != "Linux", reason="sync_file_range is Linux's own system call"
)
def test_the_real_write_start_and_flush_succeed(tmp_path: Path) -> None:
    """On Linux the C library's sync_file_range is found and accepts the call."""
    from pacsref.dimse.writeback import writeback_available

    assert writeback_available()
    path = _spool(tmp_path, 2 * writer.WRITE_BEHIND_MIN_BYTES)
    with writer.HeldSpool(path, durable=True) as held:
        held.make_durable()
    assert path.read_bytes() == b"\0" * (2 * writer.WRITE_BEHIND_MIN_BYTES)
