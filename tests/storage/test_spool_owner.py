"""Whose spool file is it: a leftover of a killed run is removed at the next start even when
its process ID has been given to another process since.

A container restarting after a ``kill -9`` hands out the same small process IDs again, so the
ID in a leftover's name may belong to a live process that never wrote it (a ``sleep``, or the
new server one number on); the start-up clean-up kept such files for as long as that process
ran. A process that started after the file last changed is not its writer.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pacsref.dimse import SPOOL_PREFIX, SPOOL_SUFFIX
from pacsref.processes import process_start
from tests.storage.helpers import storage, storage_harness


@pytest.fixture
def other_process() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not this one (it never writes a spool file)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield child
    finally:
        child.kill()
        child.wait()


def _module(harness: object) -> object:
    return sys.modules[type(storage(harness)).__module__]  # type: ignore[arg-type]


def _leftover(spool_dir: Path, pid: int) -> Path:
    path = spool_dir / f"{SPOOL_PREFIX}{pid}-0badc0de-0{SPOOL_SUFFIX}"
    path.write_bytes(b"\0" * 1000)  # a partial transfer
    return path


def _restart(harness: object) -> None:
    from pacsref.testing.harness import SyncPool, SyncReactor

    addin = storage(harness)  # type: ignore[arg-type]
    addin.stopService()
    addin.start(reactor=SyncReactor(), threadpool=SyncPool())


def test_a_leftover_whose_process_id_was_reused_is_removed_at_start(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    other_process: subprocess.Popen[bytes],
    log_lines: list[str],
) -> None:
    """The process holding the leftover's ID started after the leftover last changed (here:
    a minute after, as /proc would say of a process started by the restart): removed."""
    harness = storage_harness(tmp_path / "PACSREF")
    module = _module(harness)
    leftover = _leftover(harness.server.spool_dir, other_process.pid)
    changed = leftover.stat().st_ctime
    monkeypatch.setattr(module, "process_start", lambda pid: changed + 60.0)
    _restart(harness)
    assert not leftover.exists()
    assert any("removed 1 stale spool file(s)" in line for line in log_lines), log_lines


def test_a_spool_file_of_a_live_writer_is_left_alone_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, other_process: subprocess.Popen[bytes]
) -> None:
    """Its process started before the file last changed: it may be writing it (servers may
    share a temporary directory), so the file stays; so it does when /proc cannot tell."""
    harness = storage_harness(tmp_path / "PACSREF")
    module = _module(harness)
    leftover = _leftover(harness.server.spool_dir, other_process.pid)
    changed = leftover.stat().st_ctime
    monkeypatch.setattr(module, "process_start", lambda pid: changed - 60.0)
    _restart(harness)
    assert leftover.exists()
    monkeypatch.setattr(module, "process_start", lambda pid: None)
    _restart(harness)
    assert leftover.exists()


def test_process_start_is_read_from_proc(
    tmp_path: Path, other_process: subprocess.Popen[bytes]
) -> None:
    """The start time of a real process, as the wall clock saw it (to /proc's 10 ms ticks,
    within the add-in's slack), and None for an ID no process holds."""
    started = process_start(other_process.pid)
    if not Path("/proc/self/stat").exists():
        assert started is None
        return
    assert started is not None
    assert time.time() - 60 <= started <= time.time() + 0.5
    assert process_start(2**22 + 1) is None  # above pid_max: no such process
