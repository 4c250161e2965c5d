"""``check --repair`` never makes things worse: what it cannot be sure of, it reports.

- a file whose data set is another instance than its name says is not indexed (that would give
  the other instance's row this file);
- a row whose file cannot be looked at (EACCES, EIO, a stale NFS handle) is not taken for a
  row without its file, so it is not deleted;
- a row whose file a running server stored again since the check looked is kept.
"""

from __future__ import annotations

import os
import shutil
import threading
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


def _row_size(config: Any, uid: str) -> tuple[str, int] | None:
    connection = sql.open_connection(config)
    try:
        row = sql.instance_row(connection.cursor(), config, uid)
        return None if row is None else (row.path, row.size)
    finally:
        connection.close()


@pytest.mark.parametrize("indexed", [False, True])
def test_a_file_cut_short_is_reported_not_indexed(tmp_path: Path, indexed: bool) -> None:
    """A file cut inside its pixel data still has every index attribute in its first bytes;
    the repair walks it to the end and reports it instead of vouching for it (with a row of
    the whole file's size, that row is left as it was)."""
    data, config = _index_dir(tmp_path)
    a = generate_uid(ROOT)
    path = _instance(data, a)
    if indexed:
        _index(data, config, path)
    whole = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(whole - 100)
    report = check.check_storage(data, config, repair=True)
    [line] = report.unreadable_files
    assert line.startswith(f"{path} (not a whole data set: element (7FE0,0010) at offset ")
    assert line.endswith("but the file ends 412 bytes after its header)"), line
    assert report.repaired == [] and not report.clean
    assert _row_size(config, a) == ((uids.stored_name(a), whole) if indexed else None)


def test_a_directory_at_a_rows_place_is_reported_and_the_row_kept(tmp_path: Path) -> None:
    """Not a missing file (the row is not deleted) and not a stored file (not counted)."""
    data, config = _index_dir(tmp_path)
    a = generate_uid(ROOT)
    path = _instance(data, a)
    _index(data, config, path)
    path.unlink()
    path.mkdir()
    report = check.check_storage(data, config, repair=True)
    assert report.unreadable_files == [f"{path} (a directory)"]
    assert (report.rows_without_file, report.repaired, report.files) == ([], [], 0)
    assert _rows(config) == [(a, uids.stored_name(a))] and not report.clean


def test_symbolic_links_are_reported_never_followed(tmp_path: Path) -> None:
    """A stored file's name pointing at a file outside the data root, and a bucket directory
    that is a link: reported, nothing indexed from them."""
    data, config = _index_dir(tmp_path)
    a, b = generate_uid(ROOT), generate_uid(ROOT)
    while uids.stored_path(data, b).parent == uids.stored_path(data, a).parent:
        b = generate_uid(ROOT)  # one bucket in 256: replacing b's would remove a's link too
    outside = _instance(tmp_path / "elsewhere", a)
    link = uids.stored_path(data, a)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    bucket = uids.stored_path(data, b).parent
    elsewhere = tmp_path / "bucket"
    _instance(elsewhere, b)  # elsewhere/<its bucket>/<b>.dcm
    if bucket.exists():
        shutil.rmtree(bucket)
    bucket.symlink_to(elsewhere / bucket.name, target_is_directory=True)
    report = check.check_storage(data, config, repair=True)
    assert sorted(report.unreadable_files) == sorted(
        [f"{link} (a symbolic link)", f"{bucket} (a bucket directory that is a symbolic link)"]
    )
    assert _rows(config) == [] and report.repaired == [] and not report.clean


def test_a_fifo_named_like_a_stored_file_does_not_hang_the_check(tmp_path: Path) -> None:
    """Opening a FIFO waits for a writer for ever: it is reported from its directory entry."""
    data, config = _index_dir(tmp_path)
    fifo = uids.stored_path(data, generate_uid(ROOT))
    fifo.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(fifo)
    reports: list[Any] = []
    worker = threading.Thread(
        target=lambda: reports.append(check.check_storage(data, config, repair=True)),
        daemon=True,
    )
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "check --repair is stuck on a FIFO"
    assert reports[0].unreadable_files == [f"{fifo} (a FIFO)"]


def test_a_file_whose_row_a_running_server_commits_meanwhile_is_not_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows are read, then the files listed; a store committed in between has a file
    and, looked up again, a row: no false "file without index row", nothing re-indexed."""
    data, config = _index_dir(tmp_path)
    a = generate_uid(ROOT)
    path = _instance(data, a)
    real = check._stored_files

    def listed(data_root: Path, report: Any) -> Any:
        _index(data, config, path)  # the server's commit, after the check read the rows
        return real(data_root, report)

    monkeypatch.setattr(check, "_stored_files", listed)
    report = check.check_storage(data, config, repair=True)
    assert report.files_without_row == [] and report.repaired == [] and report.clean


def test_a_reindex_leaves_a_row_the_server_wrote_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the check's look and its re-index, the server overwrote the file and
    committed its row: the re-index sees the row changed under its lock and leaves it."""
    data, config = _index_dir(tmp_path)
    a = generate_uid(ROOT)
    path = _instance(data, a)
    _index(data, config, path)
    with open(path, "ab") as handle:
        handle.write(b"\0\0")  # a size its row does not record: to be re-indexed
    newer = make_instance(
        tmp_path / "newer.dcm", study_uid=generate_uid(ROOT), series_uid=generate_uid(ROOT),
        sop_uid=a, rows=32,
    )  # fmt: skip
    real_begin = check.sql.begin_write

    def begin_write(cursor: Any, config: Any) -> None:
        monkeypatch.setattr(check.sql, "begin_write", real_begin)
        shutil.copy(newer, path)  # the server's overwrite ...
        _index(data, config, path)  # ... and its commit, before the check's lock
        real_begin(cursor, config)

    monkeypatch.setattr(check.sql, "begin_write", begin_write)
    report = check.check_storage(data, config, repair=True)
    assert report.repaired == [f"left {path} alone (the server indexed it meanwhile)"]
    assert _row_size(config, a) == (uids.stored_name(a), newer.stat().st_size)


def test_a_file_removed_during_the_repair_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server undid a failed store's rename after the check listed the file."""
    data, config = _index_dir(tmp_path)
    path = _instance(data, generate_uid(ROOT))
    real_begin = check.sql.begin_write

    def begin_write(cursor: Any, config: Any) -> None:
        path.unlink(missing_ok=True)
        real_begin(cursor, config)

    monkeypatch.setattr(check.sql, "begin_write", begin_write)
    report = check.check_storage(data, config, repair=True)
    assert report.repaired == [f"left {path} alone (it was removed meanwhile)"]
    assert _rows(config) == []


def test_a_file_whose_study_uid_is_no_uid_is_reported_as_such(tmp_path: Path) -> None:
    """Not "another instance than its name says": the SOP Instance UID is right."""
    data, config = _index_dir(tmp_path)
    a = generate_uid(ROOT)
    path = make_instance(
        uids.stored_path(data, a), study_uid="1.2.x", series_uid=generate_uid(ROOT), sop_uid=a
    )
    report = check.check_storage(data, config, repair=True)
    assert report.files_of_another_instance == []
    [line] = report.unreadable_files
    assert line.startswith(f"{path} (its StudyInstanceUID '1.2.x' "), line
    assert _rows(config) == []


def test_a_reindexed_row_records_the_file_time_in_milliseconds(tmp_path: Path) -> None:
    """As the server writes received_at, so that both sort and compare alike."""
    data, config = _index_dir(tmp_path)
    a = generate_uid(ROOT)
    _instance(data, a)
    check.check_storage(data, config, repair=True)
    connection = sql.open_connection(config)
    try:
        [(received_at,)] = connection.execute("SELECT received_at FROM instance").fetchall()
    finally:
        connection.close()
    assert len(received_at.split(".")[1]) == len("123+00:00"), received_at


def test_stored_file_names_outside_the_buckets_are_reported_misplaced(tmp_path: Path) -> None:
    """Directly in the data root, or one directory too deep: the server never puts a file
    there, and the check used not to look (they were counted nowhere)."""
    data, config = _index_dir(tmp_path)
    a, b = generate_uid(ROOT), generate_uid(ROOT)
    top = make_instance(
        data / f"{a}.dcm", study_uid=generate_uid(ROOT), series_uid=generate_uid(ROOT), sop_uid=a
    )
    place = uids.stored_path(data, b)
    deep = make_instance(
        place.parent / "extra" / place.name,
        study_uid=generate_uid(ROOT), series_uid=generate_uid(ROOT), sop_uid=b,
    )  # fmt: skip
    report = check.check_storage(data, config, repair=True)
    assert sorted(report.misplaced_files) == sorted([str(top), str(deep)])
    assert report.files == 0 and _rows(config) == [] and not report.clean


def test_without_an_index_every_stored_file_is_one_without_a_row(tmp_path: Path) -> None:
    """The report of a plain check when the embedded index does not exist yet (it is not
    created): files are listed and compared with nothing."""
    data = tmp_path / "data"
    a = generate_uid(ROOT)
    path = _instance(data, a)
    report = check.check_without_index(data)
    assert (report.indexed, report.files, report.files_without_row) == (0, 1, [str(path)])
    assert not report.clean and not (data / "index.sqlite").exists()
    assert check.check_without_index(tmp_path / "nothing").clean
