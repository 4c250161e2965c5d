"""When a store runs on the reactor thread (the storage add-in's inline store), and when not.

A relaxed store of a data set up to 1 MiB into the SQLite index is done inline; it waits for nothing
there, so whatever would make it wait (the index's write lock held by another connection, the
instance's lock held, a data set only pydicom can read) hands the whole store to the index pool
before anything on disk has changed. A durable store of such a data set is inline too when its
flushes delay nobody (addins/storage/inline.py): the data on a local disk, one association
storing, no slow store lately. Large data sets and a PostgreSQL index always go to the pool.
test_store.py runs every store scenario with both durabilities, durable both ways.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pacsref.testing.harness import ServerHarness, SyncReactor
from tests.storage.dicomgen import ROOT, make_instance
from tests.storage.helpers import associate, dataset_bytes, send_store, storage, storage_harness

STATUS = 0x0900
RELAXED = 'durability = "relaxed"\n'


class HeldPool:
    """A thread pool that keeps its jobs until :meth:`run_all`, so a test sees who used it."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[[bool, Any], None], Callable[..., Any], tuple[Any, ...]]]
        self.jobs = []

    def callInThreadWithCallback(
        self, on_result: Callable[[bool, Any], None], f: Callable[..., Any], *args: Any, **kw: Any
    ) -> None:
        self.jobs.append((on_result, f, args))

    def start(self) -> None:
        """Nothing to start."""

    def stop(self) -> None:
        """Nothing to stop."""

    def run_all(self) -> None:
        jobs, self.jobs = self.jobs, []
        for on_result, f, args in jobs:
            on_result(True, f(*args))


def _harness(
    server_dir: Path, options: str = RELAXED, durable_inline: bool = False
) -> tuple[ServerHarness, HeldPool]:
    harness = storage_harness(server_dir, options=options, durable_inline=durable_inline)
    pool = HeldPool()
    storage(harness).pool.threadpool = pool
    return harness, pool


def _instance(tmp_path: Path, rows: int = 16) -> tuple[str, bytes]:
    path = make_instance(
        tmp_path / "in" / f"{rows}.dcm", study_uid=generate_uid(ROOT),
        series_uid=generate_uid(ROOT), rows=rows, cols=rows,
        transfer_syntax=ExplicitVRLittleEndian,
    )  # fmt: skip
    return dcmread(path).SOPInstanceUID, dataset_bytes(path)


def _index_rows(server_dir: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(server_dir / "data" / "index.sqlite") as db:
        return db.execute("SELECT path FROM instance").fetchall()


def _stored(server_dir: Path) -> list[Path]:
    return sorted((server_dir / "data").glob("*/*.dcm"))


def test_a_small_relaxed_store_is_answered_without_the_pool(tmp_path: Path) -> None:
    server_dir = tmp_path / "PACSREF"
    harness, pool = _harness(server_dir)
    uid, data = _instance(tmp_path)
    [response] = send_store(associate(harness), uid, data)
    assert response[STATUS] == 0x0000
    assert pool.jobs == []
    [path] = _stored(server_dir)
    assert dataset_bytes(path) == data
    assert _index_rows(server_dir) == [(path.relative_to(server_dir / "data").as_posix(),)]


@pytest.mark.parametrize(
    ("options", "rows"),
    [
        pytest.param("", 16, id="durable-off-a-local-disk"),
        pytest.param(RELAXED, 1024, id="relaxed-but-over-INLINE_MAX_BYTES"),
        pytest.param("", 1024, id="durable-but-over-INLINE_MAX_BYTES"),
    ],
)
def test_large_stores_and_durable_stores_off_a_local_disk_go_to_the_pool(
    tmp_path: Path, options: str, rows: int
) -> None:
    server_dir = tmp_path / "PACSREF"
    harness, pool = _harness(server_dir, options, durable_inline=rows > 16)
    uid, data = _instance(tmp_path, rows)
    if rows > 16:
        addin_module = sys.modules[type(storage(harness)).__module__]
        assert len(data) > addin_module.INLINE_MAX_BYTES
    conn = associate(harness)
    assert send_store(conn, uid, data) == []  # not answered until the pool runs the store
    assert len(pool.jobs) == 1
    pool.run_all()
    assert [r[STATUS] for r in _responses(conn)] == [0x0000]
    assert len(_stored(server_dir)) == 1


def test_a_busy_index_hands_the_store_to_the_pool_before_touching_the_disk(
    tmp_path: Path,
) -> None:
    """Another connection holds SQLite's write lock: the inline store does not wait for it."""
    server_dir = tmp_path / "PACSREF"
    harness, pool = _harness(server_dir)
    uid, data = _instance(tmp_path)
    other = sqlite3.connect(server_dir / "data" / "index.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    conn = associate(harness)
    assert send_store(conn, uid, data) == []
    assert len(pool.jobs) == 1
    assert _stored(server_dir) == []  # nothing renamed into place yet
    assert len(list(harness.server.spool_dir.iterdir())) == 1  # the spool waits for the pool
    other.rollback()
    other.close()
    pool.run_all()
    assert [r[STATUS] for r in _responses(conn)] == [0x0000]
    assert len(_stored(server_dir)) == 1 and len(_index_rows(server_dir)) == 1
    assert list(harness.server.spool_dir.iterdir()) == []


def test_a_held_instance_lock_hands_the_store_to_the_pool(tmp_path: Path) -> None:
    """A pool thread storing the same SOP Instance UID holds its lock: no waiting inline."""
    server_dir = tmp_path / "PACSREF"
    harness, pool = _harness(server_dir)
    addin = storage(harness)
    uid, data = _instance(tmp_path)
    lock = addin._locks[hash(uid) % len(addin._locks)]
    conn = associate(harness)
    with lock:
        assert send_store(conn, uid, data) == []
    assert len(pool.jobs) == 1
    pool.run_all()
    assert [r[STATUS] for r in _responses(conn)] == [0x0000]


def test_a_pool_thread_writing_the_index_hands_the_store_to_the_pool(tmp_path: Path) -> None:
    """A durable store on a pool thread holds the add-in's index writer: no waiting inline."""
    server_dir = tmp_path / "PACSREF"
    harness, pool = _harness(server_dir)
    addin = storage(harness)
    uid, data = _instance(tmp_path)
    conn = associate(harness)
    with addin._index_writer:
        assert send_store(conn, uid, data) == []
        assert _stored(server_dir) == []  # nothing renamed before the writer was tried
    assert len(pool.jobs) == 1
    pool.run_all()
    assert [r[STATUS] for r in _responses(conn)] == [0x0000]
    assert len(_stored(server_dir)) == 1 and len(_index_rows(server_dir)) == 1


def test_a_failed_index_write_leaves_the_index_to_the_next_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pool store whose rows fail rolls back and frees the writer before it reports."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir)  # durable: every store on the (synchronous) pool
    addin = storage(harness)
    sql = sys.modules[type(addin).__module__].sql

    def fail(*args: Any, **kw: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sql, "record", fail)
    conn = associate(harness)
    first_uid, first = _instance(tmp_path, rows=16)
    [response] = send_store(conn, first_uid, first, message_id=1)
    assert response[STATUS] == 0x0110
    assert not addin._index_writer.locked()
    assert _stored(server_dir) == []  # the renamed file was taken back
    monkeypatch.undo()
    uid, data = _instance(tmp_path, rows=17)
    [response] = send_store(conn, uid, data, message_id=2)
    assert response[STATUS] == 0x0000
    assert len(_index_rows(server_dir)) == 1


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_data_set_only_pydicom_can_read_goes_to_the_pool(tmp_path: Path) -> None:
    """The raw attribute walk gives up on bytes that are no data set; pydicom decides."""
    server_dir = tmp_path / "PACSREF"
    harness, pool = _harness(server_dir)
    conn = associate(harness)
    assert send_store(conn, generate_uid(ROOT), b"\xff" * 100) == []
    assert len(pool.jobs) == 1
    pool.run_all()
    [response] = _responses(conn)
    assert response[STATUS] in (0xC000, 0xA900)
    assert _stored(server_dir) == [] and _index_rows(server_dir) == []


def test_the_inline_connection_is_closed_when_the_add_in_stops(tmp_path: Path) -> None:
    server_dir = tmp_path / "PACSREF"
    harness, _ = _harness(server_dir)
    uid, data = _instance(tmp_path)
    send_store(associate(harness), uid, data)
    addin = storage(harness)
    connection = addin._inline_connection
    assert connection is not None
    addin.stopService()
    assert addin._inline_connection is None
    with pytest.raises(sqlite3.ProgrammingError):
        connection.execute("SELECT 1")


def _responses(conn: Any) -> list[dict[int, object]]:
    from tests.server.helpers import responses

    return responses(conn.received())


class FakeClock:
    """Monotonic seconds that move only when a test moves them."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _durable_harness(server_dir: Path) -> tuple[ServerHarness, HeldPool, FakeClock]:
    harness, pool = _harness(server_dir, "", durable_inline=True)
    addin = storage(harness)
    clock = FakeClock()
    addin._durable_gate = type(addin._durable_gate)("ext4", clock)
    return harness, pool, clock


def test_a_small_durable_store_on_a_local_disk_is_flushed_and_answered_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_dir = tmp_path / "PACSREF"
    harness, pool, _ = _durable_harness(server_dir)
    writer = sys.modules[type(storage(harness)).__module__ + ".writer"]
    flushed: list[int] = []
    real_fdatasync = writer.os.fdatasync
    monkeypatch.setattr(writer.os, "fdatasync", lambda fd: (flushed.append(fd), real_fdatasync(fd)))
    uid, data = _instance(tmp_path)
    [response] = send_store(associate(harness), uid, data)
    assert response[STATUS] == 0x0000
    assert pool.jobs == []
    assert len(flushed) == 1  # the spool file's fdatasync, before the answer
    [path] = _stored(server_dir)
    assert dataset_bytes(path) == data
    assert _index_rows(server_dir) == [(path.relative_to(server_dir / "data").as_posix(),)]


def test_durable_stores_from_two_associations_go_to_the_pool(tmp_path: Path) -> None:
    """Several modalities storing at once: the pool flushes their objects in parallel."""
    server_dir = tmp_path / "PACSREF"
    harness, pool, _ = _durable_harness(server_dir)
    first, second = associate(harness), associate(harness)
    sent = [_instance(tmp_path, rows) for rows in (16, 17, 18, 19)]
    assert [r[STATUS] for r in send_store(first, *sent[0], message_id=1)] == [0x0000]  # inline
    assert send_store(second, *sent[1], message_id=1) == []  # the previous store was first's
    assert len(pool.jobs) == 1
    pool.run_all()
    assert [r[STATUS] for r in _responses(second)] == [0x0000]
    assert send_store(first, *sent[2], message_id=2) == []  # the previous store was second's
    pool.run_all()
    assert [r[STATUS] for r in _responses(first)] == [0x0000]
    assert [r[STATUS] for r in send_store(first, *sent[3], message_id=3)] == [0x0000]  # inline
    assert pool.jobs == []
    assert len(_stored(server_dir)) == 4 and len(_index_rows(server_dir)) == 4


def test_a_slow_inline_durable_store_sends_durable_stores_to_the_pool_for_a_minute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_lines: list[str]
) -> None:
    server_dir = tmp_path / "PACSREF"
    harness, pool, clock = _durable_harness(server_dir)
    addin_module = sys.modules[type(storage(harness)).__module__]
    real_rename = addin_module.durable_rename

    def slow_rename(*args: Any) -> None:
        clock.now += 0.2  # the directory's fsync took 200 ms
        real_rename(*args)

    monkeypatch.setattr(addin_module, "durable_rename", slow_rename)
    conn = associate(harness)
    sent = [_instance(tmp_path, rows) for rows in (16, 17, 18)]
    assert [r[STATUS] for r in send_store(conn, *sent[0], message_id=1)] == [0x0000]
    assert pool.jobs == []  # inline, and slow
    [warning] = [line for line in log_lines if "reactor thread took" in line]
    assert "took 200 ms" in warning and "for the next 60 s" in warning
    assert send_store(conn, *sent[1], message_id=2) == []
    assert len(pool.jobs) == 1
    pool.run_all()
    assert [r[STATUS] for r in _responses(conn)] == [0x0000]
    clock.now += 60
    monkeypatch.setattr(addin_module, "durable_rename", real_rename)
    assert [r[STATUS] for r in send_store(conn, *sent[2], message_id=3)] == [0x0000]  # inline
    assert pool.jobs == []
    assert len([line for line in log_lines if "reactor thread took" in line]) == 1


def test_a_fast_inline_durable_store_keeps_durable_stores_inline(tmp_path: Path) -> None:
    server_dir = tmp_path / "PACSREF"
    harness, pool, clock = _durable_harness(server_dir)
    gate = storage(harness)._durable_gate
    started = gate.timed()
    clock.now += 0.05  # at the limit, not over it
    gate.took(started)
    conn = associate(harness)
    assert [r[STATUS] for r in send_store(conn, *_instance(tmp_path))] == [0x0000]
    assert pool.jobs == []


NFS_MOUNTS = """\
/dev/vda1 / ext4 rw,relatime 0 0
server:/export /srv/pacs nfs4 rw,relatime,vers=4.2 0 0
tmpfs /dev/shm tmpfs rw 0 0
"""


def test_only_a_local_disk_file_system_lets_durable_stores_be_inline(tmp_path: Path) -> None:
    harness, _ = _harness(tmp_path / "PACSREF")
    inline = sys.modules[type(storage(harness)).__module__ + ".inline"]
    assert inline.file_system_type(Path("/srv/pacs/PACSREF/data"), NFS_MOUNTS) == "nfs4"
    assert inline.file_system_type(Path("/var/lib/pacs"), NFS_MOUNTS) == "ext4"
    assert inline.file_system_type(Path("/var/lib/pacs"), "") is None
    association = object()
    for kind, allowed in (("nfs4", False), ("fuse.sshfs", False), (None, False),
                          ("ext4", True), ("xfs", True), ("tmpfs", True)):  # fmt: skip
        gate = inline.InlineDurableGate(kind)
        assert gate.allows(association) is allowed, kind  # type: ignore[arg-type]


def test_a_durable_server_off_a_local_disk_says_so_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_lines: list[str]
) -> None:
    server_dir = tmp_path / "PACSREF"
    mounts = f"server:/export {tmp_path} nfs4 rw 0 0\n"
    harness = ServerHarness(server_dir)
    addin = storage(harness)
    inline = sys.modules[type(addin).__module__ + ".inline"]
    monkeypatch.setattr(inline, "read_mounts", lambda: mounts)
    addin.start(reactor=SyncReactor(), threadpool=HeldPool())
    assert addin._durable_gate.file_system == "nfs4" and not addin._durable_gate.local
    assert any("data directory on nfs4" in line and "index pool" in line for line in log_lines)
