"""Failures around putting a stored file in place leave the data root as it was before.

The store answers a failure in each case here, so it must not keep anything: no file without
an index row, and an overwritten object's file back in place. And the free-space reserve only
refuses what would be written: a resent object the archive already holds is answered as the
duplicates policy says, however full the disk.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import sys
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pacsref.testing.harness import ServerHarness
from tests.storage.dicomgen import ROOT, make_instance
from tests.storage.helpers import associate, dataset_bytes, send_store, storage, storage_harness

STATUS = 0x0900


def _rows(server_dir: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(server_dir / "data" / "index.sqlite") as db:
        return db.execute("SELECT sop_instance_uid, size FROM instance").fetchall()


def _instance(
    tmp_path: Path, name: str, uid: str | None = None, number: int = 1
) -> tuple[str, bytes]:
    path = make_instance(
        tmp_path / "in" / name, study_uid=generate_uid(ROOT), series_uid=generate_uid(ROOT),
        transfer_syntax=ExplicitVRLittleEndian, sop_uid=uid, number=number,
    )  # fmt: skip
    return dcmread(path).SOPInstanceUID, dataset_bytes(path)


def _fail_directory_fsync(monkeypatch: pytest.MonkeyPatch, harness: ServerHarness) -> None:
    writer = sys.modules[type(storage(harness)).__module__ + ".writer"]

    def failing(path: Path) -> None:
        raise OSError(errno.EIO, "Input/output error (injected on a directory fsync)")

    monkeypatch.setattr(writer, "_fsync_dir", failing)


def test_failed_directory_fsync_removes_the_new_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rename happened, the directory's fsync failed: 0x0110, and no file is left."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir, 'durability = "fsync"\n')
    uid, data = _instance(tmp_path, "a.dcm")
    conn = associate(harness)
    _fail_directory_fsync(monkeypatch, harness)
    [rsp] = send_store(conn, uid, data)
    assert rsp[STATUS] == 0x0110
    assert "Input/output err" in str(rsp[0x0902])  # Error Comment: LO, 64 characters
    assert list((server_dir / "data").glob("*/*.dcm")) == []
    assert _rows(server_dir) == []


def test_failed_directory_fsync_puts_the_overwritten_file_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overwriting: the first object, acknowledged before, is in place again with its row."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir, 'durability = "fsync"\nduplicates = "overwrite"\n')
    uid, first = _instance(tmp_path, "a.dcm")
    conn = associate(harness)
    assert send_store(conn, uid, first)[0][STATUS] == 0x0000
    rows = _rows(server_dir)
    _, second = _instance(tmp_path, "b.dcm", uid=uid, number=7)
    _fail_directory_fsync(monkeypatch, harness)
    assert send_store(conn, uid, second, message_id=2)[0][STATUS] == 0x0110
    [stored] = list((server_dir / "data").glob("*/*.dcm"))
    assert dataset_bytes(stored) == first
    assert _rows(server_dir) == rows
    assert list(harness.server.spool_dir.iterdir()) == []


@pytest.mark.parametrize(("policy", "status"), [("keep-first", 0x0000), ("refuse", 0x0111)])
def test_reserve_does_not_refuse_a_duplicate_kept_out(
    tmp_path: Path, policy: str, status: int
) -> None:
    """Below the reserve, a resent archived object still gets its duplicates answer; a new
    one gets 0xA700."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir, f'duplicates = "{policy}"\n')
    uid, data = _instance(tmp_path, "a.dcm")
    conn = associate(harness)
    assert send_store(conn, uid, data)[0][STATUS] == 0x0000
    stats = os.statvfs(tmp_path)
    addin = storage(harness)
    reserve = stats.f_bavail * stats.f_frsize // 2**20 + 10**6
    addin.options_changed({**addin.options.as_mapping(), "minimum_free_space_mib": reserve})
    assert send_store(conn, uid, data, message_id=2)[0][STATUS] == status
    new_uid, new_data = _instance(tmp_path, "b.dcm")
    assert send_store(conn, new_uid, new_data, message_id=3)[0][STATUS] == 0xA700
    assert [row[0] for row in _rows(server_dir)] == [uid]


def test_failed_rollback_still_removes_the_new_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index write fails and so does its rollback (one broken disk): no file is left."""
    from twisted.enterprise import adbapi

    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir, 'durability = "fsync"\n')
    module = sys.modules[type(storage(harness)).__module__]

    def failing_record(*args: object, **kw: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    def failing_rollback(self: object) -> None:
        raise sqlite3.OperationalError("disk I/O error (rollback)")

    monkeypatch.setattr(module.sql, "record", failing_record)
    monkeypatch.setattr(adbapi.Connection, "rollback", failing_rollback)
    uid, data = _instance(tmp_path, "a.dcm")
    conn = associate(harness)
    assert send_store(conn, uid, data)[0][STATUS] == 0x0110
    assert list((server_dir / "data").glob("*/*.dcm")) == []
