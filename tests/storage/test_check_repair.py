"""``check --repair`` never makes things worse: what it cannot be sure of, it reports.

- a file whose data set is another instance than its name says is not indexed (that would give
  the other instance's row this file);
- a row whose file cannot be looked at (EACCES, EIO, a stale NFS handle) is not taken for a
  row without its file, so it is not deleted;
- a row whose file a running server stored again since the check looked is kept.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid

from tests.storage.dicomgen import ROOT, make_instance
from tests.storage.test_parts import _module

check, sql, uids, writer = _module("check"), _module("index"), _module("uids"), _module("writer")


def _index_dir(tmp_path: Path) -> tuple[Path, Any]:
    data = tmp_path / "data"
    config = sql.IndexConfig("", data / "index.sqlite", True)
    sql.prepare(config)
    return data, config


def _index(data: Path, config: Any, path: Path) -> None:
    connection = sql.open_connection(config)
    cursor = connection.cursor()
    sql.begin_write(cursor, config)
    sql.record(
        cursor, config, writer.read_attributes(path), path=path.relative_to(data).as_posix(),
        size=path.stat().st_size, received_at="t", calling_ae="AE",
    )  # fmt: skip
    connection.commit()
    connection.close()


def _rows(config: Any) -> list[tuple[str, str]]:
    connection = sql.open_connection(config)
    try:
        return connection.execute("SELECT sop_instance_uid, path FROM instance").fetchall()
    finally:
        connection.close()


def _instance(data: Path, uid: str) -> Path:
    return make_instance(
        uids.stored_path(data, uid), study_uid=generate_uid(ROOT), series_uid=generate_uid(ROOT),
        sop_uid=uid,
    )  # fmt: skip


def test_file_holding_another_instance_is_reported_not_indexed(tmp_path: Path) -> None:
    """A's data set saved under B's name (a bad copy): A's row keeps A's file, B gets none."""
    data, config = _index_dir(tmp_path)
    a, b = generate_uid(ROOT), generate_uid(ROOT)
    good = _instance(data, a)
    _index(data, config, good)
    copy = uids.stored_path(data, b)
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(good, copy)
    report = check.check_storage(data, config, repair=True)
    assert _rows(config) == [(a, uids.stored_name(a))]
    assert report.files_of_another_instance == [f"{copy} ({a})"]
    assert not report.clean
    assert f"file holding another instance than its name says: {copy} ({a})" in report.lines()


def test_row_of_a_file_that_cannot_be_looked_at_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stat() failing with EACCES is not "file missing": reported unreadable, row kept."""
    data, config = _index_dir(tmp_path)
    a = generate_uid(ROOT)
    good = _instance(data, a)
    _index(data, config, good)
    real_stat = Path.stat

    def stat(self: Path, *args: Any, **kw: Any) -> Any:
        if self == good:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kw)

    monkeypatch.setattr(Path, "stat", stat)
    report = check.check_storage(data, config, repair=True)
    monkeypatch.undo()
    assert report.rows_without_file == []
    assert report.unreadable_files == [f"{good} (Permission denied)"]
    assert _rows(config) == [(a, uids.stored_name(a))]


def test_row_of_a_file_stored_again_meanwhile_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row's file was missing when looked at; a running server stores the instance again
    before the repair deletes the row: the row stays, with its file."""
    data, config = _index_dir(tmp_path)
    a = generate_uid(ROOT)
    final = _instance(data, a)
    kept = tmp_path / "kept.dcm"
    shutil.copy(final, kept)
    _index(data, config, final)
    final.unlink()
    real_begin = check.sql.begin_write

    def begin_write(cursor: Any, config: Any) -> None:
        if not final.exists():
            shutil.copy(kept, final)  # the server's rename (its commit finds the row there)
        real_begin(cursor, config)

    monkeypatch.setattr(check.sql, "begin_write", begin_write)
    report = check.check_storage(data, config, repair=True)
    monkeypatch.undo()
    assert final.exists()
    assert _rows(config) == [(a, uids.stored_name(a))]
    assert report.repaired == [f"kept the index row of {a} (its file is back)"]
    assert report.clean


def test_a_second_copy_in_another_bucket_is_reported(tmp_path: Path) -> None:
    """The same file name in two bucket directories: the one out of place is reported."""
    data, config = _index_dir(tmp_path)
    a = generate_uid(ROOT)
    good = _instance(data, a)
    _index(data, config, good)
    other_bucket = "00" if good.parent.name != "00" else "01"
    stray = data / other_bucket / good.name
    stray.parent.mkdir(exist_ok=True)
    shutil.copy(good, stray)
    report = check.check_storage(data, config)
    assert report.misplaced_files == [str(stray)]
    assert report.files == 2
