"""Overwriting a duplicate: the previous version's second name, its failures and its leftovers.

``duplicates = "overwrite"`` links the stored file to a second name in the spool directory
before the new file is renamed over it (docs/storage.md, "Duplicates"). That name must never
meet a leftover of an earlier run (a container restarts with the same process ID), a failure
to make it is a failed write like any other (0xA700 for a full disk), and a failure to remove
it must not change what the peer hears: success once the row is committed, the store's own
error otherwise. What the log says must be true, and the next start tells a redundant second
name (removed) from a previous version that may be the only copy (kept, explained by UID).
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian

from pacsref.testing.harness import ServerHarness, SyncPool, SyncReactor
from tests.storage.dicomgen import ROOT, make_instance
from tests.storage.helpers import associate, dataset_bytes, send_store, storage, storage_harness

STATUS = 0x0900
ERROR_COMMENT = 0x0902
OVERWRITE = 'durability = "fsync"\nduplicates = "overwrite"\n'
OVERWRITTEN = "overwritten (duplicates=overwrite)"


def _instance(
    tmp_path: Path, name: str, uid: str | None = None, number: int = 1
) -> tuple[str, bytes]:
    """A CT image's SOP Instance UID and data set; ``number`` tells two versions apart.

    Its study and series UIDs are random but of one length, so two versions are of one size
    (``generate_uid``'s vary by a digit or two): a size that differs by chance would make
    ``check`` call the file unlike its row, which some tests here must rule out.
    """
    path = make_instance(
        tmp_path / "in" / name, study_uid=_fixed_length_uid(), series_uid=_fixed_length_uid(),
        transfer_syntax=ExplicitVRLittleEndian, sop_uid=uid, number=number,
    )  # fmt: skip
    return dcmread(path).SOPInstanceUID, dataset_bytes(path)


def _fixed_length_uid() -> str:
    """A random UID of 63 characters under the test root (no component starts with 0)."""
    return f"{ROOT}1{secrets.randbelow(10**36):036d}"


def _rows(server_dir: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(server_dir / "data" / "index.sqlite") as db:
        return db.execute("SELECT sop_instance_uid, instance_number, size FROM instance").fetchall()


def _in_place(server_dir: Path) -> Path:
    [stored] = (server_dir / "data").glob("*/*.dcm")
    return stored


def _stored_once(
    tmp_path: Path, inline: bool = False, options: str = OVERWRITE
) -> tuple[ServerHarness, Any, str, bytes, bytes]:
    """A server holding one object: (harness, association, UID, its data, a newer version)."""
    harness = storage_harness(tmp_path / "PACSREF", options, durable_inline=inline)
    uid, first = _instance(tmp_path, "a.dcm")
    _, second = _instance(tmp_path, "b.dcm", uid=uid, number=7)
    conn = associate(harness)
    assert send_store(conn, uid, first)[0][STATUS] == 0x0000
    return harness, conn, uid, first, second


def _server_dir(harness: ServerHarness) -> Path:
    return storage(harness).server_dir


def _spool_names(harness: ServerHarness) -> list[str]:
    return sorted(path.name for path in harness.server.spool_dir.iterdir())


def _restart(harness: ServerHarness) -> None:
    """Stop the storage add-in and start it again: its start-up clean-up runs once more."""
    addin = storage(harness)
    addin.stopService()
    addin.start(reactor=SyncReactor(), threadpool=SyncPool())


def _record_links(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names ``os.link`` makes from now on (it still links)."""
    made: list[str] = []
    real_link = os.link

    def recording_link(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        real_link(source, target, *args, **kwargs)
        made.append(Path(target).name)

    monkeypatch.setattr(os, "link", recording_link)
    return made


def _fail_unlink(monkeypatch: pytest.MonkeyPatch, marker: str) -> None:
    """``Path.unlink`` of a file whose name holds ``marker`` fails with EIO."""
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if marker in self.name:
            raise OSError(errno.EIO, "Input/output error (injected on an unlink)")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)


def _no_traceback(log_lines: list[str]) -> bool:
    return not any("Traceback" in line for line in log_lines)


# -- 1. the second name is unique and says whose it is ---------------------------------------


@pytest.mark.parametrize("inline", [False, True])
def test_leftovers_of_a_run_with_this_process_id_do_not_stop_an_overwrite(
    tmp_path: Path, inline: bool
) -> None:
    """A container restarts with the same process ID: second names its killed run left (as
    earlier versions named them, a process ID and a per-start serial) stay as they are and do
    not make the overwrite fail with EEXIST."""
    harness, conn, uid, _, second = _stored_once(tmp_path, inline)
    spool_dir = harness.server.spool_dir
    leftovers = [spool_dir / f"pacsref-dimse-{os.getpid()}-previous-{n}.dataset" for n in range(5)]
    for n, leftover in enumerate(leftovers):
        leftover.write_bytes(f"what a killed run kept, {n}".encode())
    [rsp] = send_store(conn, uid, second, message_id=2)
    assert rsp[STATUS] == 0x0000, rsp.get(ERROR_COMMENT)
    assert dataset_bytes(_in_place(_server_dir(harness))) == second
    assert [(row[0], row[1]) for row in _rows(_server_dir(harness))] == [(uid, "7")]
    for n, leftover in enumerate(leftovers):
        assert leftover.read_bytes() == f"what a killed run kept, {n}".encode()
    assert _spool_names(harness) == sorted(leftover.name for leftover in leftovers)


def test_a_taken_second_name_is_skipped_and_names_hold_the_uid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should a second name exist after all, the next one is used; every name says whose
    previous version it is, and none is left once the overwrite is committed."""
    harness, conn, uid, _, second = _stored_once(tmp_path)
    tried: list[str] = []
    real_link = os.link

    def link(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        tried.append(Path(target).name)
        if len(tried) == 1:
            raise FileExistsError(errno.EEXIST, "File exists (injected)", str(target))
        real_link(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "link", link)
    [rsp] = send_store(conn, uid, second, message_id=2)
    assert rsp[STATUS] == 0x0000, rsp.get(ERROR_COMMENT)
    assert len(tried) == 2 and tried[0] != tried[1]
    token = hashlib.sha256(os.fsencode((_server_dir(harness) / "data").resolve())).hexdigest()
    assert all(name.endswith(f"-previous-{token[:8]}-{uid}.dataset") for name in tried), tried
    assert all(name.startswith(f"pacsref-dimse-{os.getpid()}-") for name in tried), tried
    assert dataset_bytes(_in_place(_server_dir(harness))) == second
    assert _spool_names(harness) == []


# -- 2. making the second name is an I/O step like the others --------------------------------


def test_the_second_name_is_durable_before_the_new_file_takes_the_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Durable: the spool directory holding the second name is fsynced after the link and
    before the new file is renamed over the old one, so a power failure between that rename
    and the commit cannot lose the version acknowledged earlier."""
    harness, conn, uid, _, second = _stored_once(tmp_path)
    writer = sys.modules[type(storage(harness)).__module__ + ".writer"]
    steps: list[str] = []
    real_fsync_dir, real_replace, real_link = writer._fsync_dir, os.replace, os.link
    spool_dir = harness.server.spool_dir

    def fsync_dir(path: Path) -> None:
        steps.append("fsync spool dir" if Path(path) == spool_dir else "fsync other dir")
        real_fsync_dir(path)

    def replace(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        steps.append("rename into place")
        real_replace(source, target, *args, **kwargs)

    def link(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        steps.append("link")
        real_link(source, target, *args, **kwargs)

    monkeypatch.setattr(writer, "_fsync_dir", fsync_dir)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "link", link)
    assert send_store(conn, uid, second, message_id=2)[0][STATUS] == 0x0000
    assert steps[:3] == ["link", "fsync spool dir", "rename into place"], steps


def test_a_second_name_whose_directory_fsync_fails_is_taken_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fsync after the link fails (EIO): the store fails as a failed write, the second
    name is gone, and the first version stays in place, indexed."""
    harness, conn, uid, first, second = _stored_once(tmp_path)
    writer = sys.modules[type(storage(harness)).__module__ + ".writer"]
    real_fsync_dir = writer._fsync_dir
    spool_dir = harness.server.spool_dir

    def failing(path: Path) -> None:
        if Path(path) == spool_dir:
            raise OSError(errno.EIO, "Input/output error (injected on the spool fsync)")
        real_fsync_dir(path)

    monkeypatch.setattr(writer, "_fsync_dir", failing)
    rows = _rows(_server_dir(harness))
    [rsp] = send_store(conn, uid, second, message_id=2)
    assert rsp[STATUS] == 0x0110 and "cannot store: " in rsp[ERROR_COMMENT]
    assert _spool_names(harness) == []
    assert dataset_bytes(_in_place(_server_dir(harness))) == first
    assert _rows(_server_dir(harness)) == rows


@pytest.mark.parametrize(
    ("error", "status", "comment"),
    [(errno.ENOSPC, 0xA700, "storage full: "), (errno.EIO, 0x0110, "cannot store: ")],
)
def test_a_failed_link_is_answered_as_a_failed_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: int, status: int, comment: str
) -> None:
    """Nothing is renamed when the link fails: a full disk is 0xA700 (a modality retries it
    later), any other error the add-in's own 0x0110 (``_io_failure``), and the first object
    stays in place with its row."""
    harness, conn, uid, first, second = _stored_once(tmp_path)
    rows = _rows(_server_dir(harness))

    def link(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(error, os.strerror(error) + " (injected on a link)")

    monkeypatch.setattr(os, "link", link)
    [rsp] = send_store(conn, uid, second, message_id=2)
    assert rsp[STATUS] == status
    assert comment in str(rsp[ERROR_COMMENT]), rsp[ERROR_COMMENT]
    assert dataset_bytes(_in_place(_server_dir(harness))) == first
    assert _rows(_server_dir(harness)) == rows
    assert _spool_names(harness) == []


# -- 3. removing the second name cannot change the outcome -----------------------------------


@pytest.mark.parametrize("inline", [False, True])
def test_a_second_name_not_removed_after_the_commit_leaves_the_store_a_success(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_lines: list[str], inline: bool
) -> None:
    """The new version is in place and indexed when the second name's unlink fails (EIO,
    EROFS): the peer hears 0x0000, and the log names the file and the error."""
    harness, conn, uid, _, second = _stored_once(tmp_path, inline)
    _fail_unlink(monkeypatch, "-previous-")
    [rsp] = send_store(conn, uid, second, message_id=2)
    monkeypatch.undo()
    assert rsp[STATUS] == 0x0000, rsp.get(ERROR_COMMENT)
    stored = _in_place(_server_dir(harness))
    assert dataset_bytes(stored) == second
    assert _rows(_server_dir(harness)) == [(uid, "7", stored.stat().st_size)]
    [kept] = _spool_names(harness)
    assert any(
        f"could not remove {harness.server.spool_dir / kept}" in line
        and "Input/output error (injected on an unlink)" in line
        for line in log_lines
    ), log_lines
    assert any(OVERWRITTEN in line for line in log_lines)
    assert _no_traceback(log_lines), log_lines


def test_a_new_file_not_removed_after_a_full_index_keeps_the_stores_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_lines: list[str]
) -> None:
    """The index is full (0xA700) and the file renamed into place cannot be removed again:
    the peer still hears 0xA700, not the unlink's EIO, and the log names the file."""
    harness = storage_harness(tmp_path / "PACSREF", 'durability = "fsync"\n')
    module = sys.modules[type(storage(harness)).__module__]
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13  # type: ignore[attr-defined]  # SQLITE_FULL

    def record(*args: object, **kwargs: object) -> int:
        raise full

    monkeypatch.setattr(module.sql, "record", record)
    _fail_unlink(monkeypatch, ".dcm")
    uid, data = _instance(tmp_path, "a.dcm")
    [rsp] = send_store(associate(harness), uid, data)
    assert rsp[STATUS] == 0xA700
    assert str(rsp[ERROR_COMMENT]).startswith("index full"), rsp[ERROR_COMMENT]
    assert any(
        f"could not remove {_in_place(_server_dir(harness))} after its store failed" in line
        for line in log_lines
    ), log_lines


def test_a_second_name_not_removed_after_a_failed_rename_keeps_the_stores_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_lines: list[str]
) -> None:
    """The rename of the new file fails (ENOSPC: 0xA700) and so does the removal of the
    previous version's second name: the peer hears the rename's error, the first object is in
    place with its row, and the next start removes the second name (the file in place)."""
    harness, conn, uid, first, second = _stored_once(tmp_path)
    rows = _rows(_server_dir(harness))

    def replace(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device (injected on a rename)")

    monkeypatch.setattr(os, "replace", replace)
    _fail_unlink(monkeypatch, "-previous-")
    [rsp] = send_store(conn, uid, second, message_id=2)
    monkeypatch.undo()
    assert rsp[STATUS] == 0xA700
    assert "No space left on device" in str(rsp[ERROR_COMMENT])
    assert dataset_bytes(_in_place(_server_dir(harness))) == first
    assert _rows(_server_dir(harness)) == rows
    [kept] = _spool_names(harness)
    assert any(f"could not remove {harness.server.spool_dir / kept}" in line for line in log_lines)
    _restart(harness)
    assert _spool_names(harness) == []


# -- 4. only a real overwrite is logged as one -----------------------------------------------


@pytest.mark.parametrize(
    ("policy", "overwritten"), [("keep-first", False), ("refuse", False), ("overwrite", True)]
)
def test_only_a_replaced_file_is_logged_as_overwritten(
    tmp_path: Path, log_lines: list[str], policy: str, overwritten: bool
) -> None:
    """A copy stored in place of an indexed instance whose file had gone replaced nothing
    (keep-first, refuse: the log says it is stored in its place); an overwrite of a file in
    place is logged as one."""
    options = f'durability = "fsync"\nduplicates = "{policy}"\n'
    harness, conn, uid, _, second = _stored_once(tmp_path, options=options)
    if not overwritten:
        _in_place(_server_dir(harness)).unlink()
    assert send_store(conn, uid, second, message_id=2)[0][STATUS] == 0x0000
    assert dataset_bytes(_in_place(_server_dir(harness))) == second
    assert any(OVERWRITTEN in line for line in log_lines) is overwritten, log_lines
    assert any("is stored in its place" in line for line in log_lines) is not overwritten


# -- 5. a put-back whose directory fsync fails is a put-back ---------------------------------


def test_a_put_back_whose_directory_fsync_fails_is_logged_as_put_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_lines: list[str]
) -> None:
    """Every fsync of a bucket directory fails (the spool directory's, after the link, does
    not): the overwrite fails (0x0110) and the previous version is renamed back, only its
    directory entry may not be durable. The log says so, not that it is kept in the spool
    directory, which is empty."""
    harness, conn, uid, first, second = _stored_once(tmp_path)
    writer = sys.modules[type(storage(harness)).__module__ + ".writer"]
    real_fsync_dir = writer._fsync_dir

    def failing(path: Path) -> None:
        if Path(path) == harness.server.spool_dir:
            real_fsync_dir(path)
            return
        raise OSError(errno.EIO, "Input/output error (injected on a directory fsync)")

    monkeypatch.setattr(writer, "_fsync_dir", failing)
    assert send_store(conn, uid, second, message_id=2)[0][STATUS] == 0x0110
    stored = _in_place(_server_dir(harness))
    assert dataset_bytes(stored) == first
    assert _spool_names(harness) == []
    relative = stored.relative_to(_server_dir(harness) / "data")
    assert any(
        f"put the overwritten {relative} back, but its directory's fsync failed" in line
        and "may not be durable" in line
        for line in log_lines
    ), log_lines
    assert not any("could not put" in line for line in log_lines), log_lines


# -- 6. the next start tells a redundant second name from a previous version -----------------


def _killed_between_link_and_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ServerHarness:
    """A server as a run killed after an overwrite's link and before its rename leaves it: a
    second name of the very file in place (the name a real overwrite made, linked again)."""
    harness, conn, uid, _, second = _stored_once(tmp_path)
    made = _record_links(monkeypatch)
    assert send_store(conn, uid, second, message_id=2)[0][STATUS] == 0x0000
    monkeypatch.undo()
    [name] = made
    os.link(_in_place(_server_dir(harness)), harness.server.spool_dir / name)
    return harness


def test_a_second_name_of_the_file_in_place_is_removed_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_lines: list[str]
) -> None:
    """A run killed after the link and before the rename leaves a second name of the very
    file in place: nothing to keep, so the next start removes it with the stale spool files.
    (The name is the one a real overwrite made, linked again to the file in place.)"""
    harness = _killed_between_link_and_rename(tmp_path, monkeypatch)
    log_lines.clear()
    _restart(harness)
    assert _spool_names(harness) == []
    assert any("removed 1 stale spool file(s)" in line for line in log_lines), log_lines
    assert not any("previous" in line for line in log_lines), log_lines


def test_a_second_name_of_the_file_in_place_is_no_disagreement_for_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same leftover, seen by ``check`` before any restart (the server stopped): the
    second name is the file in place under another name, not a previous version, so index
    and files agree; before, check reported it as one left by an interrupted overwrite."""
    harness = _killed_between_link_and_rename(tmp_path, monkeypatch)
    report = storage(harness).check()
    assert report.clean, report.lines()
    assert report.previous_versions == []


def _failed_overwrite_leaving_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[ServerHarness, str, bytes, Path]:
    """An overwrite whose index write fails and whose put-back fails too: the new version in
    place under the first one's row, the first one under its second name (returned)."""
    harness, conn, uid, first, second = _stored_once(tmp_path)
    module = sys.modules[type(storage(harness)).__module__]
    real_replace = os.replace

    def record(*args: object, **kwargs: object) -> int:
        raise sqlite3.OperationalError("disk I/O error (injected on the index write)")

    def replace(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        if "-previous-" in Path(source).name:
            raise OSError(errno.EIO, "Input/output error (injected on the put-back)")
        real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(module.sql, "record", record)
    monkeypatch.setattr(os, "replace", replace)
    assert send_store(conn, uid, second, message_id=2)[0][STATUS] == 0x0110
    monkeypatch.undo()
    assert dataset_bytes(_in_place(_server_dir(harness))) == second
    [kept] = harness.server.spool_dir.iterdir()
    assert dataset_bytes(kept) == first
    return harness, uid, first, kept


def test_a_previous_version_left_behind_is_kept_and_named_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_lines: list[str]
) -> None:
    """The second name left by a failed overwrite holds the previous version (another inode
    than the file in place): kept, and the warning says whose it is, that the file in place is
    the newer one, and that a repair re-indexes it and then removes the leftover."""
    harness, uid, first, kept = _failed_overwrite_leaving_the_previous_version(
        tmp_path, monkeypatch
    )
    log_lines.clear()
    _restart(harness)
    assert dataset_bytes(kept) == first
    [warning] = [line for line in log_lines if str(kept) in line]
    assert f"the previous version of instance {uid}" in warning
    assert "left by an interrupted or failed overwrite" in warning
    assert "is the newer version" in warning
    assert "`pacsref server check --repair` re-indexes it and then removes this file" in warning
    assert "could not put back" not in warning


def test_a_previous_version_with_no_file_in_place_is_kept_as_maybe_the_only_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_lines: list[str]
) -> None:
    """Its instance's file has gone since: the leftover may be the only copy, and the warning
    says that a repair puts it back where it belongs."""
    harness, uid, first, kept = _failed_overwrite_leaving_the_previous_version(
        tmp_path, monkeypatch
    )
    in_place = _in_place(_server_dir(harness))
    in_place.unlink()
    log_lines.clear()
    _restart(harness)
    assert dataset_bytes(kept) == first
    [warning] = [line for line in log_lines if str(kept) in line]
    assert f"the previous version of instance {uid}" in warning
    assert "no file is in place" in warning and "only copy" in warning
    assert f"`pacsref server check --repair` puts it back in place ({in_place})" in warning


def test_a_second_name_of_an_earlier_version_is_kept_as_before(
    tmp_path: Path, log_lines: list[str]
) -> None:
    """Earlier versions named the second name by process ID and serial only: it cannot be
    matched to its instance, so it is kept with the warning those versions gave."""
    harness, *_ = _stored_once(tmp_path)
    old = harness.server.spool_dir / f"pacsref-dimse-{os.getpid()}-previous-3.dataset"
    old.write_bytes(b"the only copy")
    _restart(harness)
    assert old.read_bytes() == b"the only copy"
    assert any(
        f"{old} is an overwritten object that a failed store could not put back: kept" in line
        for line in log_lines
    ), log_lines


def _instance_numbers(server_dir: Path) -> list[tuple[object, ...]]:
    return [(uid, number) for uid, number, _ in _rows(server_dir)]


def test_check_repair_finishes_an_interrupted_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A previous version left in the spool directory is a sure sign that the instance's row
    may describe it rather than the file in place, whatever their sizes and times (an
    overwrite killed within a clock tick of the previous store is not told by time): check
    reports it, and the repair does what the overwrite's commit would have done, re-indexing
    the file in place and removing the previous version. Checked again, all agree."""
    harness, uid, _, kept = _failed_overwrite_leaving_the_previous_version(tmp_path, monkeypatch)
    server_dir = _server_dir(harness)
    assert _instance_numbers(server_dir) == [(uid, "1")]  # the row still says the first
    report = storage(harness).check()
    assert not report.clean
    assert report.lines()[-1:] != ["index and files agree"]
    assert f"previous version left by an interrupted overwrite: {kept} ({uid})" in report.lines()
    report = storage(harness).check(repair=True)
    assert report.clean, report.lines()
    assert f"removed {kept}, the previous version of {uid}" in report.repaired
    assert _instance_numbers(server_dir) == [(uid, "7")]
    assert not kept.exists() and dcmread(_in_place(server_dir)).InstanceNumber == 7
    assert storage(harness).check().clean


def test_check_repair_puts_back_a_previous_version_that_is_the_only_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no file in place, the previous version is the instance's only copy and its row
    describes it: the repair puts it back in place instead of deleting the row as one
    without a file."""
    harness, uid, first, kept = _failed_overwrite_leaving_the_previous_version(
        tmp_path, monkeypatch
    )
    server_dir = _server_dir(harness)
    in_place = _in_place(server_dir)
    in_place.unlink()
    report = storage(harness).check(repair=True)
    assert report.clean, report.lines()
    assert f"put {kept}, the only copy of {uid}, back in place" in report.repaired
    assert dataset_bytes(in_place) == first and not kept.exists()
    assert _instance_numbers(server_dir) == [(uid, "1")]
    assert storage(harness).check().clean


def test_two_previous_versions_of_one_instance_are_left_for_a_person(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which of two previous versions the row describes cannot be known: both are reported,
    and the repair leaves them (and the instance's row) alone."""
    harness, uid, _, kept = _failed_overwrite_leaving_the_previous_version(tmp_path, monkeypatch)
    other = kept.with_name(kept.name.replace("-previous-", "9-previous-"))
    os.link(kept, other)
    # Not newer than its row either (an overwrite more than MTIME_SLACK after the first
    # store would be re-indexed by its time, whatever the leftovers say).
    first = kept.stat()
    os.utime(_in_place(_server_dir(harness)), ns=(first.st_atime_ns, first.st_mtime_ns))
    report = storage(harness).check(repair=True)
    assert not report.clean
    listed = [line for line in report.lines() if "interrupted overwrite" in line]
    assert len(listed) == 2 and kept.exists() and other.exists()
    assert _instance_numbers(_server_dir(harness)) == [(uid, "1")]


def test_previous_versions_of_another_data_root_are_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_lines: list[str]
) -> None:
    """Servers may share a temporary directory: another data root's previous version is
    neither reported by check nor touched by a repair or a start, even for an instance this
    server stores too."""
    harness, uid, _, kept = _failed_overwrite_leaving_the_previous_version(tmp_path, monkeypatch)
    # The same leftover as another server's: only the data root's token differs.
    foreign = kept.with_name(f"{kept.name.split('-previous-')[0]}-previous-00000000-{uid}.dataset")
    os.rename(kept, foreign)
    report = storage(harness).check(repair=True)
    assert not [line for line in report.lines() if "interrupted overwrite" in line]
    assert foreign.exists()
    log_lines.clear()
    _restart(harness)
    assert foreign.exists() and not [line for line in log_lines if str(foreign) in line]


def test_a_previous_version_that_cannot_be_put_back_keeps_its_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The only copy's row is not deleted as one without a file when putting the copy back
    fails: both stay, reported, for the next repair or a person."""
    harness, uid, first, kept = _failed_overwrite_leaving_the_previous_version(
        tmp_path, monkeypatch
    )
    _in_place(_server_dir(harness)).unlink()
    check_module = sys.modules[type(storage(harness)).__module__ + ".check"]

    def link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EIO, "Input/output error (injected on the put-back)")

    monkeypatch.setattr(check_module.os, "link", link)
    report = storage(harness).check(repair=True)
    monkeypatch.undo()
    assert not report.clean
    assert any(line.startswith(f"could not put {kept} back") for line in report.repaired)
    assert not any("removed index row" in line for line in report.repaired), report.repaired
    assert _instance_numbers(_server_dir(harness)) == [(uid, "1")]
    assert dataset_bytes(kept) == first
    report = storage(harness).check(repair=True)  # the disk is well again
    assert report.clean, report.lines()


def test_a_previous_version_of_an_instance_without_a_row_is_settled_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file in place without a row, with a previous version beside it: indexed once, from
    the file in place, and the previous version removed; no second look reports it as
    indexed "meanwhile" by someone else."""
    harness, uid, _, kept = _failed_overwrite_leaving_the_previous_version(tmp_path, monkeypatch)
    server_dir = _server_dir(harness)
    with sqlite3.connect(server_dir / "data" / "index.sqlite") as db:
        db.execute("DELETE FROM instance WHERE sop_instance_uid = ?", (uid,))
    report = storage(harness).check(repair=True)
    assert report.clean, report.lines()
    assert f"removed {kept}, the previous version of {uid}" in report.repaired
    assert not [line for line in report.repaired if "meanwhile" in line], report.repaired
    assert _instance_numbers(server_dir) == [(uid, "7")]
