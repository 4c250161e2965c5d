"""The index keeps describing what is stored: rows C-FIND answers from never go stale.

- an object carrying less patient identity than its study's patient (no Issuer of Patient ID,
  Type 3; an empty Patient ID, Type 2) leaves the study with its patient, with the parent-row
  cache and without it; a different identity still moves it (a correction);
- ``check --repair`` deleting a row whose file is gone also deletes the series, study and
  patient rows it leaves empty and computes Modalities in Study again; so does a series moved
  to another study for the study it left;
- a file of the size its row records but modified after the row (a kill between the rename
  and the commit of an overwrite) is unlike its row, and the repair re-indexes it;
- on PostgreSQL, a repair beside a store into the same series or study: the repair keeps a
  series the store adds an instance to, and a store whose study a repair deletes makes it anew.

The index-level scenarios run on PostgreSQL too when ``PACSREF_TEST_POSTGRES_DSN`` names a
server (as in ``test_postgres.py``; they skip without it, and fail under ``CI=true``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.storage.dicomgen import ROOT, make_instance
from tests.storage.helpers import associate, dataset_bytes, send_store, storage, storage_harness
from tests.storage.postgres import new_database, psycopg_or_skip
from tests.storage.test_parent_rows import Index, _attributes
from tests.storage.test_parts import _module

check, index, uids, writer = _module("check"), _module("index"), _module("uids"), _module("writer")

STATUS = 0x0900

#: Every parent row, as C-FIND would see them (ids included: both paths must end alike).
TABLES = {
    "patient": "SELECT id, patient_id, issuer_of_patient_id, patient_name FROM patient",
    "study": "SELECT id, study_instance_uid, patient_fk, accession_number, modalities_in_study"
    " FROM study",
    "series": "SELECT id, series_instance_uid, study_fk, modality FROM series",
    "instance": "SELECT sop_instance_uid, series_fk FROM instance",
}
#: The studies C-FIND finds for PatientID=PID-1 with IssuerOfPatientID=HOSP.
STUDIES_OF_HOSP_PID_1 = (
    "SELECT s.study_instance_uid FROM study s JOIN patient p ON p.id = s.patient_fk"
    " WHERE p.patient_id = 'PID-1' AND p.issuer_of_patient_id = 'HOSP'"
)


def _dump(db: Index) -> dict[str, list[tuple[Any, ...]]]:
    return {table: sorted(db.rows(sql)) for table, sql in TABLES.items()}


# -- 1. A study keeps its patient over an object with less of its identity ----------------------

#: A study's objects as a modality and a workstation send them: (SOP Instance UID, overrides).
#: The images carry the issuer; the Presentation State and the SR do not, the SR has no Patient
#: ID; a later study of the same Patient ID without issuer is another patient's, as it was.
PARTIAL_IDENTITY = [
    ("9.1", {"IssuerOfPatientID": "HOSP", "AccessionNumber": "ACC1"}),
    ("9.2", {"SeriesInstanceUID": "1.2.3.1.2", "Modality": "PR"}),
    ("9.3", {"SeriesInstanceUID": "1.2.3.1.3", "Modality": "SR", "PatientID": ""}),
    ("9.4", {"IssuerOfPatientID": "HOSP", "PatientName": "DOE^JANE^M"}),
    ("9.5", {"StudyInstanceUID": "1.2.3.2", "SeriesInstanceUID": "1.2.3.2.1"}),
    ("9.6", {"SeriesInstanceUID": "1.2.3.1.2", "Modality": "PR", "PatientName": "X"}),
    ("9.7", {"StudyInstanceUID": "1.2.3.2", "SeriesInstanceUID": "1.2.3.2.1"}),
]


@pytest.mark.parametrize("cached", [True, False], ids=["cache", "no-cache"])
def test_partial_identity_leaves_the_study_with_its_patient(tmp_path: Path, cached: bool) -> None:
    """No ("PID-1", "") or ("", "") row is made for study 1.2.3.1, which stays findable by
    PID-1 and HOSP; study 1.2.3.2, new, gets ("PID-1", "") as before."""
    db = Index(tmp_path, index.ParentRows(limit=4096 if cached else 0))
    for uid, overrides in PARTIAL_IDENTITY:
        db.store(uid, **overrides)
        if uid in ("9.2", "9.3"):
            assert db.rows(STUDIES_OF_HOSP_PID_1) == [("1.2.3.1",)], uid
    assert db.rows(STUDIES_OF_HOSP_PID_1) == [("1.2.3.1",)]
    assert _dump(db)["patient"] == [
        (1, "PID-1", "HOSP", "DOE^JANE^M"), (2, "PID-1", "", "DOE^JANE"),
    ]  # fmt: skip
    assert db.rows("SELECT study_instance_uid, patient_fk, accession_number FROM study") == [
        ("1.2.3.1", 1, "ACC1"), ("1.2.3.2", 2, ""),
    ]  # fmt: skip


def test_the_cache_ends_in_the_rows_the_upserts_alone_leave(tmp_path: Path) -> None:
    """Every row and id the same with the cache and without it: a patient left alone is not
    cached, and a cached patient is not taken for the study's without the study's row."""
    with_cache = Index(tmp_path / "cache", index.ParentRows())
    without = Index(tmp_path / "none", index.ParentRows(limit=0))
    for uid, overrides in PARTIAL_IDENTITY:
        with_cache.store(uid, **overrides)
        without.store(uid, **overrides)
        assert _dump(with_cache) == _dump(without), uid


def test_a_cached_patient_of_another_study_does_not_move_this_one(tmp_path: Path) -> None:
    """("PID-1", "") is cached from study 1.2.3.2; the server restarts knowing nothing of
    study 1.2.3.1 (its patient has the issuer): a Presentation State of 1.2.3.1 without the
    issuer leaves it with ("PID-1", "HOSP") although its patient row is in the cache."""
    db = Index(tmp_path, index.ParentRows())
    db.store("9.1", IssuerOfPatientID="HOSP")
    db.cache.clear()  # a restart
    db.store("9.2", StudyInstanceUID="1.2.3.2", SeriesInstanceUID="1.2.3.2.1")
    db.store("9.3", SeriesInstanceUID="1.2.3.1.2", Modality="PR")
    assert db.rows(STUDIES_OF_HOSP_PID_1) == [("1.2.3.1",)]
    assert db.rows("SELECT patient_fk FROM study ORDER BY id") == [(1,), (2,)]


def test_a_full_identity_costs_what_it_did(tmp_path: Path) -> None:
    """The common path is unchanged: with the issuer, the first object writes its four rows
    and Modalities in Study, the next one its instance row only; without the issuer, the next
    object of a study the cache holds costs no statement more either."""
    db = Index(tmp_path, index.ParentRows())
    assert db.store("9.1", IssuerOfPatientID="HOSP") == [
        "INSERT patient", "INSERT study", "INSERT series", "INSERT instance",
        "SELECT modality", "UPDATE study",
    ]  # fmt: skip
    assert db.store("9.2", IssuerOfPatientID="HOSP") == ["INSERT instance"]
    db.store("9.3", StudyInstanceUID="1.2.3.2", SeriesInstanceUID="1.2.3.2.1")
    assert db.store("9.4", StudyInstanceUID="1.2.3.2", SeriesInstanceUID="1.2.3.2.1") == [
        "INSERT instance"
    ]


@pytest.mark.parametrize("cached", [True, False], ids=["cache", "no-cache"])
def test_another_identity_still_moves_the_study(tmp_path: Path, cached: bool) -> None:
    """The latest non-empty identity wins: another Patient ID (even without issuer) moves the
    study, and so does the same ID with an issuer after it had none (more of the identity)."""
    db = Index(tmp_path, index.ParentRows(limit=4096 if cached else 0))
    db.store("9.1")
    db.store("9.2", IssuerOfPatientID="HOSP")
    assert db.rows(STUDIES_OF_HOSP_PID_1) == [("1.2.3.1",)]
    db.store("9.3", PatientID="PID-2")
    assert db.rows(
        "SELECT p.patient_id, p.issuer_of_patient_id FROM study s"
        " JOIN patient p ON p.id = s.patient_fk"
    ) == [("PID-2", "")]


def test_a_new_study_gets_an_empty_identity(tmp_path: Path) -> None:
    """Nothing to keep: a study first seen without Patient ID belongs to patient ("", "")."""
    db = Index(tmp_path, index.ParentRows())
    db.store("9.1", PatientID="")
    assert db.rows("SELECT id, patient_id, issuer_of_patient_id FROM patient") == [(1, "", "")]
    assert db.rows("SELECT patient_fk FROM study") == [(1,)]


def test_a_stored_presentation_state_without_issuer_keeps_the_patient(tmp_path: Path) -> None:
    """Through C-STORE: an image with Issuer of Patient ID, then an object of the same study
    without it; one patient, with the issuer."""
    server_dir = tmp_path / "PACSREF"
    study = generate_uid(ROOT)
    conn = associate(storage_harness(server_dir))
    for n, issuer in enumerate(["HOSP", None], start=1):
        path = make_instance(
            tmp_path / f"{n}.dcm", study_uid=study, series_uid=generate_uid(ROOT), issuer=issuer
        )
        uid = dcmread(path).SOPInstanceUID
        assert send_store(conn, uid, dataset_bytes(path), message_id=n)[0][STATUS] == 0
    with sqlite3.connect(server_dir / "data" / "index.sqlite") as db:
        assert db.execute(STUDIES_OF_HOSP_PID_1).fetchall() == [(study,)]
        assert db.execute("SELECT count(*) FROM patient").fetchall() == [(1,)]


# -- 2. No empty parent rows, no stale Modalities in Study -------------------------------------


@pytest.mark.parametrize("cached", [True, False], ids=["cache", "no-cache"])
def test_a_series_moved_to_another_study_leaves_the_old_study_right(
    tmp_path: Path, cached: bool
) -> None:
    """Study 1 has a CT and an MR series; an object puts the MR series in study 2: study 1's
    Modalities in Study is CT alone (a query on MR must not match it)."""
    db = Index(tmp_path, index.ParentRows(limit=4096 if cached else 0))
    db.store("9.1")
    db.store("9.2", SeriesInstanceUID="1.2.3.1.2", Modality="MR")
    db.store("9.3", SeriesInstanceUID="1.2.3.1.2", Modality="MR", StudyInstanceUID="1.2.3.2")
    assert db.rows("SELECT study_instance_uid, modalities_in_study FROM study ORDER BY id") == [
        ("1.2.3.1", "CT"), ("1.2.3.2", "MR"),
    ]  # fmt: skip
    assert db.rows("SELECT study_fk FROM series ORDER BY id") == [(1,), (2,)]


#: What a store's moves leave behind: (SOP Instance UID, overrides), and the rows after them.
#: 9.2 corrects study 1.2.3.1's patient to PID-2 (PID-1 has no study left); 9.4 puts series
#: 1.2.3.3.1 in study 1.2.3.4 (1.2.3.3 has no series left); 9.1 comes again (overwrite) in a
#: series of its own (1.2.3.1.1, whose only instance it was, is left empty).
_PID_2 = {"PatientID": "PID-2"}
MOVES = [
    ("9.1", {}),
    ("9.2", {**_PID_2, "SeriesInstanceUID": "1.2.3.1.2", "Modality": "MR"}),
    ("9.3", {**_PID_2, "StudyInstanceUID": "1.2.3.3", "SeriesInstanceUID": "1.2.3.3.1"}),
    ("9.4", {**_PID_2, "StudyInstanceUID": "1.2.3.4", "SeriesInstanceUID": "1.2.3.3.1"}),
    ("9.1", {**_PID_2, "SeriesInstanceUID": "1.2.3.1.3", "Modality": "PT"}),
]
MOVED = {
    "patient": [("PID-2",)],
    "study": [("1.2.3.1", "PID-2", "MR\\PT"), ("1.2.3.4", "PID-2", "CT")],
    "series": [("1.2.3.1.2", "1.2.3.1"), ("1.2.3.1.3", "1.2.3.1"), ("1.2.3.3.1", "1.2.3.4")],
}
#: The rows C-FIND sees, by their UIDs (ids differ with the order of deletes and inserts).
MOVED_SQL = {
    "patient": "SELECT patient_id FROM patient",
    "study": "SELECT s.study_instance_uid, p.patient_id, s.modalities_in_study FROM study s"
    " JOIN patient p ON p.id = s.patient_fk",
    "series": "SELECT r.series_instance_uid, s.study_instance_uid FROM series r"
    " JOIN study s ON s.id = r.study_fk",
}


@pytest.mark.parametrize("cached", [True, False], ids=["cache", "no-cache"])
def test_a_store_that_moves_rows_deletes_those_it_leaves_empty(
    tmp_path: Path, cached: bool
) -> None:
    """A patient without studies, a study without series, a series without instances: none is
    left by the store that emptied it (C-FIND would still answer them), and a study that stays
    has its Modalities in Study computed again."""
    db = Index(tmp_path, index.ParentRows(limit=4096 if cached else 0))
    for uid, overrides in MOVES:
        db.store(uid, **overrides)
    assert {table: sorted(db.rows(sql)) for table, sql in MOVED_SQL.items()} == MOVED
    assert db.rows("SELECT count(*) FROM instance") == [(4,)]


def test_a_store_that_deletes_rows_makes_the_cache_forget_them(tmp_path: Path) -> None:
    """The patient PID-1 the cache holds is deleted when its only study moves to PID-2: the
    next object of PID-1 gets a new patient row, not the deleted one's id (SQLite refuses a
    study naming a patient that is not there: a failed store)."""
    db = Index(tmp_path, index.ParentRows())
    db.store("9.1", IssuerOfPatientID="HOSP")  # a full identity: its row is cached
    db.store("9.2", IssuerOfPatientID="HOSP", PatientID="PID-2")
    assert db.rows("SELECT patient_id FROM patient") == [("PID-2",)]
    db.store(
        "9.3", IssuerOfPatientID="HOSP", StudyInstanceUID="1.2.3.9", SeriesInstanceUID="1.2.3.9.1"
    )
    assert sorted(db.rows(MOVED_SQL["study"])) == [
        ("1.2.3.1", "PID-2", "CT"), ("1.2.3.9", "PID-1", "CT"),
    ]  # fmt: skip


def test_a_store_that_moves_nothing_costs_no_statement_more(tmp_path: Path) -> None:
    """The guards that find a move are in the upserts themselves: an object of a known study
    and series whose rows are not cached (a restart) writes the same statements as before."""
    db = Index(tmp_path, index.ParentRows())
    db.store("9.1")
    db.cache.clear()  # a restart
    assert db.store("9.2") == [
        "INSERT patient", "INSERT study", "INSERT series", "INSERT instance",
        "SELECT modality", "UPDATE study",
    ]  # fmt: skip


def _data(tmp_path: Path) -> tuple[Path, Any]:
    data = tmp_path / "data"
    config = index.IndexConfig("", data / "index.sqlite", True)
    index.prepare(config)
    return data, config


def _store_file(data: Path, config: Any, path: Path, cache: Any = None) -> None:
    """Index ``path`` as the server does (received now, the cache if given)."""
    connection = index.open_connection(config)
    try:
        cursor = connection.cursor()
        index.begin_write(cursor, config)
        written = index.record(
            cursor, config, writer.read_attributes(path),
            path=path.relative_to(data).as_posix(), size=path.stat().st_size,
            received_at=datetime.now(check.UTC).isoformat(timespec="milliseconds"),
            calling_ae="AE", cache=cache,
        )  # fmt: skip
        if cache is None:
            connection.commit()
        else:
            cache.commit(connection, written)
    finally:
        connection.close()


def _instance(data: Path, study: str, series: str, modality: str = "CT", **kw: Any) -> Path:
    """A stored file at its place in ``data``, of ``modality``."""
    uid = kw.pop("sop_uid", None) or generate_uid(ROOT)
    path = make_instance(
        uids.stored_path(data, uid), study_uid=study, series_uid=series, sop_uid=uid, **kw
    )
    if modality != "CT":
        ds = dcmread(path)
        ds.Modality = modality
        ds.save_as(path, enforce_file_format=True)
    return path


def _select(config: Any, sql: str) -> list[tuple[Any, ...]]:
    connection = index.open_connection(config)
    try:
        cursor = connection.cursor()
        cursor.execute(sql)
        rows = [tuple(row) for row in cursor.fetchall()]
        connection.commit()
        return sorted(rows)
    finally:
        connection.close()


def _received(config: Any) -> datetime:
    [(received_at,)] = _select(config, "SELECT received_at FROM instance")
    return datetime.fromisoformat(received_at)


def _written_after_its_row(config: Any, path: Path) -> None:
    """Stamp ``path`` a second after its row's receive time: written after the commit (a
    kill right after the rename of an overwrite), well beyond the file system's clock tick."""
    later = _received(config) + timedelta(seconds=1)
    os.utime(path, (later.timestamp(), later.timestamp()))


def _repair_a_lost_series(data: Path, config: Any) -> None:
    """A study of a CT and an MR image; the MR file is lost, then the CT file too."""
    study = generate_uid(ROOT)
    ct = _instance(data, study, generate_uid(ROOT))
    mr = _instance(data, study, generate_uid(ROOT), "MR")
    for path in (ct, mr):
        _store_file(data, config, path)
    mr.unlink()
    report = check.check_storage(data, config, repair=True)
    assert report.clean, report.lines()
    assert _select(config, "SELECT modality FROM series") == [("CT",)]
    assert _select(config, "SELECT modalities_in_study FROM study") == [("CT",)]
    ct.unlink()
    report = check.check_storage(data, config, repair=True)
    assert report.clean, report.lines()
    for table in ("instance", "series", "study", "patient"):
        assert _select(config, f"SELECT count(*) FROM {table}") == [(0,)], table


def _leave_empty_rows(data: Path, config: Any) -> str:
    """Rows as an earlier version left them after moves: an empty series (PT) in a study of
    stored CT and MR images, a study without series, a patient without studies. Each is an
    object's rows, then some of them deleted by hand, as the moves of old did. The study."""
    study = generate_uid(ROOT)
    for path in (
        _instance(data, study, generate_uid(ROOT)),
        _instance(data, study, generate_uid(ROOT), "MR"),
    ):
        _store_file(data, config, path)
    [(patient,)] = _select(config, "SELECT patient_id FROM patient")
    _record(config, "9.1", PatientID=patient, StudyInstanceUID=study, Modality="PT",
            SeriesInstanceUID="1.2.3.9.1")  # fmt: skip
    _record(config, "9.2", PatientID="PID-8", StudyInstanceUID="1.2.3.8",
            SeriesInstanceUID="1.2.3.8.1")  # fmt: skip
    _record(config, "9.3", PatientID="PID-7", StudyInstanceUID="1.2.3.7",
            SeriesInstanceUID="1.2.3.7.1")  # fmt: skip
    connection = index.open_connection(config)
    try:
        cursor = connection.cursor()
        cursor.execute("DELETE FROM instance WHERE sop_instance_uid IN ('9.1', '9.2', '9.3')")
        cursor.execute("DELETE FROM series WHERE series_instance_uid IN ('1.2.3.8.1', '1.2.3.7.1')")
        cursor.execute("DELETE FROM study WHERE study_instance_uid = '1.2.3.7'")
        connection.commit()
    finally:
        connection.close()
    return study


def _generation(config: Any) -> int:
    [(value,)] = _select(config, "SELECT value FROM index_generation")
    return int(value)


def _check_and_repair_empty_rows(data: Path, config: Any) -> None:
    study = _leave_empty_rows(data, config)
    report = check.check_storage(data, config)
    assert not report.clean
    assert report.empty_rows == [
        f"series 1.2.3.9.1 of study {study}, without instances",
        "study 1.2.3.8 of patient 'PID-8', without series",
        "patient 'PID-7' (issuer ''), without studies",
    ]
    assert f"index row with nothing under it: {report.empty_rows[0]}" in report.lines()
    generation = _generation(config)
    report = check.check_storage(data, config, repair=True)
    assert report.clean, report.lines()
    assert report.repaired == [
        f"removed the index row of series 1.2.3.9.1 of study {study}, without instances",
        "removed the index row of study 1.2.3.8 of patient 'PID-8', without series, and its"
        " patient left empty",
        "removed the index row of patient 'PID-7' (issuer ''), without studies",
    ]
    assert _generation(config) > generation  # a running server forgets the ids it cached
    assert _select(config, "SELECT study_instance_uid, modalities_in_study FROM study") == [
        (study, "CT\\MR")
    ]
    assert _select(config, "SELECT count(*) FROM patient") == [(1,)]
    assert check.check_storage(data, config).clean


def test_check_reports_and_repair_deletes_rows_with_nothing_under_them(tmp_path: Path) -> None:
    """An index an earlier version left rows in after moves: reported, then deleted by a
    repair, with the rows above them they leave empty; the study that keeps its images has
    its Modalities in Study computed again."""
    _check_and_repair_empty_rows(*_data(tmp_path))


def test_repair_deletes_the_parents_a_lost_file_leaves_empty(tmp_path: Path) -> None:
    """The MR series goes with its one instance and Modalities in Study says CT; the last
    file lost takes its series, study and patient with it."""
    _repair_a_lost_series(*_data(tmp_path))


def test_repair_makes_a_running_server_forget_the_rows_it_deleted(tmp_path: Path) -> None:
    """The server cached the study's rows; the repair deletes them. The server's next object
    of that study must write them again, not reuse ids of deleted rows."""
    data, config = _data(tmp_path)
    cache = index.ParentRows()
    study, series = generate_uid(ROOT), generate_uid(ROOT)
    lost = _instance(data, study, series)
    _store_file(data, config, lost, cache)
    [(before,)] = _select(config, "SELECT value FROM index_generation")
    lost.unlink()
    assert check.check_storage(data, config, repair=True).clean
    [(after,)] = _select(config, "SELECT value FROM index_generation")
    assert after > before
    assert _select(config, "SELECT count(*) FROM series") == [(0,)]
    again = _instance(data, study, series)
    _store_file(data, config, again, cache)
    assert _select(config, "SELECT count(*) FROM study") == [(1,)]
    assert check.check_storage(data, config).clean


def test_repair_of_a_new_version_in_another_series_drops_the_old_one(tmp_path: Path) -> None:
    """Re-indexing a file whose new version belongs to another series (a kill during its
    overwrite) leaves no series without instances behind."""
    data, config = _data(tmp_path)
    study = generate_uid(ROOT)
    path = _instance(data, study, generate_uid(ROOT))
    _store_file(data, config, path)
    uid = dcmread(path).SOPInstanceUID
    _instance(data, study, generate_uid(ROOT), "MR", sop_uid=uid, number=7)
    _written_after_its_row(config, path)
    report = check.check_storage(data, config, repair=True)
    assert report.clean and report.repaired == [f"re-indexed {path}"], report.lines()
    assert _select(config, "SELECT modality FROM series") == [("MR",)]
    assert _select(config, "SELECT modalities_in_study FROM study") == [("MR",)]


# -- 3. A file written after its row is unlike it ----------------------------------------------


def test_a_same_size_file_written_after_its_row_is_reindexed(tmp_path: Path) -> None:
    """What a kill between the rename and the commit of an overwrite leaves: the new version,
    of the old one's size, under the old row. The check tells it by its time; the repair
    indexes the file's own values."""
    data, config = _data(tmp_path)
    study, series = generate_uid(ROOT), generate_uid(ROOT)
    path = _instance(data, study, series, number=1)
    _store_file(data, config, path)
    uid = dcmread(path).SOPInstanceUID
    size = path.stat().st_size
    _instance(data, study, series, sop_uid=uid, number=7)  # "renamed into place"
    assert path.stat().st_size == size
    _written_after_its_row(config, path)
    report = check.check_storage(data, config)
    assert report.files_newer_than_row == [str(path)] and not report.clean, report.lines()
    assert f"file modified after its index row was written: {path}" in report.lines()
    report = check.check_storage(data, config, repair=True)
    assert report.clean and report.repaired == [f"re-indexed {path}"], report.lines()
    assert _select(config, "SELECT instance_number FROM instance") == [("7",)]
    assert check.check_storage(data, config).clean


def test_a_file_within_the_slack_of_its_row_agrees(tmp_path: Path) -> None:
    """A file stamped less than a millisecond after the receive time (which is cut to
    milliseconds) is its row's; one stamped beyond the slack is not."""
    data, config = _data(tmp_path)
    path = _instance(data, generate_uid(ROOT), generate_uid(ROOT))
    _store_file(data, config, path)
    received = _received(config)
    within = received + timedelta(microseconds=999)
    os.utime(path, ns=(int(within.timestamp() * 1e9),) * 2)
    assert check.check_storage(data, config).clean
    beyond = received + check.MTIME_SLACK + timedelta(milliseconds=1)
    os.utime(path, ns=(int(beyond.timestamp() * 1e9),) * 2)
    assert check.check_storage(data, config).files_newer_than_row == [str(path)]


def test_a_reindexed_file_agrees_with_its_row_afterwards(tmp_path: Path) -> None:
    """The repair records the file's own time, cut to milliseconds: not newer than its row
    the next time, whatever the sub-millisecond part of the file's time."""
    data, config = _data(tmp_path)
    path = _instance(data, generate_uid(ROOT), generate_uid(ROOT))
    stamp = datetime(2024, 1, 2, 3, 4, 5, tzinfo=check.UTC)
    os.utime(path, ns=(int(stamp.timestamp()) * 10**9 + 999_600_000,) * 2)  # recorded .999
    report = check.check_storage(data, config, repair=True)
    assert report.repaired == [f"re-indexed {path}"], report.lines()
    assert check.check_storage(data, config).clean


def test_objects_stored_by_the_server_agree_with_their_rows(tmp_path: Path) -> None:
    """The store writes the file before it reads the receive time: a check right after any
    number of stores (each within the file system's clock tick of the next) finds nothing."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir, 'duplicates = "overwrite"\n')
    conn = associate(harness)
    study, series = generate_uid(ROOT), generate_uid(ROOT)
    for n in range(1, 21):
        path = make_instance(tmp_path / f"{n}.dcm", study_uid=study, series_uid=series)
        uid = dcmread(path).SOPInstanceUID
        assert send_store(conn, uid, dataset_bytes(path), message_id=n)[0][STATUS] == 0
        # and again, overwriting: the second file is written after the first row
        assert send_store(conn, uid, dataset_bytes(path), message_id=100 + n)[0][STATUS] == 0
    report = storage(harness).check()
    assert report.clean and report.indexed == 20, report.lines()


# -- PostgreSQL ----------------------------------------------------------------------------------


@pytest.fixture
def postgres_dsn() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards (skipped without a
    server or psycopg, failed instead under ``CI=true``: :mod:`tests.storage.postgres`)."""
    with new_database(psycopg_or_skip()) as dsn:
        yield dsn


def _record(config: Any, uid: str, **overrides: str) -> None:
    """One object's rows, as a server on a PostgreSQL index writes them (no cache)."""
    connection = index.open_connection(config)
    try:
        cursor = connection.cursor()
        index.record(
            cursor, config, _attributes(SOPInstanceUID=uid, **overrides), path=f"{uid}.dcm",
            size=1, received_at="t", calling_ae="MOD",
        )  # fmt: skip
        connection.commit()
    finally:
        connection.close()


def test_postgresql_partial_identity_and_moved_series(tmp_path: Path, postgres_dsn: str) -> None:
    """The same SQL on PostgreSQL: the conditional patient upsert, the guarded series upsert
    and the old study's Modalities in Study; the rows as on SQLite without cache."""
    config = index.IndexConfig(postgres_dsn, tmp_path / "unused.sqlite", True)
    index.prepare(config)
    sqlite = Index(tmp_path, index.ParentRows(limit=0))
    for uid, overrides in PARTIAL_IDENTITY:
        _record(config, uid, **overrides)
        sqlite.store(uid, **overrides)
    move = {"SeriesInstanceUID": "1.2.3.1.2", "Modality": "PR", "StudyInstanceUID": "1.2.3.2"}
    _record(config, "9.8", **move)
    sqlite.store("9.8", **move)
    assert _select(config, STUDIES_OF_HOSP_PID_1) == [("1.2.3.1",)]
    without_ids = "SELECT study_instance_uid, accession_number, modalities_in_study FROM study"
    assert _select(config, without_ids) == sorted(sqlite.rows(without_ids)) == [
        ("1.2.3.1", "ACC1", "CT\\SR"), ("1.2.3.2", "", "CT\\PR"),
    ]  # fmt: skip
    patients = "SELECT patient_id, issuer_of_patient_id, patient_name FROM patient"
    assert _select(config, patients) == sorted(sqlite.rows(patients))


def test_postgresql_a_store_that_moves_rows_deletes_those_it_leaves_empty(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """The same SQL on PostgreSQL, where the old rows are locked before they are deleted. The
    index's generation is left alone there: nothing reads it (no parent-row cache), and one
    row every moving store updated would serialise them and could deadlock one with a repair
    waiting for rows the store holds."""
    config = index.IndexConfig(postgres_dsn, tmp_path / "unused.sqlite", True)
    index.prepare(config)
    generation = _generation(config)
    for uid, overrides in MOVES:
        _record(config, uid, **overrides)
    assert {table: _select(config, sql) for table, sql in MOVED_SQL.items()} == MOVED
    assert _generation(config) == generation


def _store_open(config: Any, uid: str, left: list[Any], **overrides: str) -> Any:
    """A store's rows on PostgreSQL, not committed yet: its connection. What its clean-up
    skipped goes to ``left``, for :func:`index.settle_left_rows` after its commit. A wait
    for a lock fails after 5 s instead of hanging the test."""
    connection = index.open_connection(config)
    cursor = connection.cursor()
    cursor.execute("SET lock_timeout = '5s'")
    index.record(
        cursor, config, _attributes(SOPInstanceUID=uid, **overrides), path=f"{uid}.dcm",
        size=1, received_at="t", calling_ae="MOD", settle_later=left,
    )  # fmt: skip
    return connection


def _settle(config: Any, left: list[Any]) -> None:
    connection = index.open_connection(config)
    try:
        index.settle_left_rows(connection, config, left)
    finally:
        connection.close()


def test_postgresql_a_store_leaves_a_row_another_store_holds(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """Store B writes a new study of PID-1 and has not committed yet (PID-1's row locked)
    when store A moves PID-1's other study to PID-2: A does not wait for B (waiting could
    deadlock with a store moving rows the other way; the lock timeout would fail it here),
    and once both committed, A's second look keeps PID-1, which B's study holds."""
    config = index.IndexConfig(postgres_dsn, tmp_path / "unused.sqlite", True)
    index.prepare(config)
    _record(config, "9.1")
    left_a: list[Any] = []
    b = _store_open(config, "9.2", [], StudyInstanceUID="1.2.3.2", SeriesInstanceUID="1.2.3.2.1")
    a = _store_open(config, "9.3", left_a, PatientID="PID-2")
    a.commit()
    b.commit()
    for connection in (a, b):
        connection.close()
    assert left_a, "PID-1 was not skipped"
    _settle(config, left_a)
    assert {table: _select(config, sql) for table, sql in MOVED_SQL.items()} == {
        "patient": [("PID-1",), ("PID-2",)],
        "study": [("1.2.3.1", "PID-2", "CT"), ("1.2.3.2", "PID-1", "CT")],
        "series": [("1.2.3.1.1", "1.2.3.1"), ("1.2.3.2.1", "1.2.3.2")],
    }


def test_postgresql_two_stores_moving_away_from_one_row_leave_it_to_neither(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """Both studies of PID-1 are moved at once, to PID-2 and PID-3: the first store's clean-up
    still sees the second study, the second one skips PID-1 (the first holds it). Its second
    look, after both committed, deletes PID-1. So for the two instances of a CT series moved
    away at once (overwrites) to other patients: the series goes, and the study keeps its MR
    series alone, and says so in Modalities in Study."""
    config = index.IndexConfig(postgres_dsn, tmp_path / "unused.sqlite", True)
    index.prepare(config)
    _record(config, "9.1")
    _record(config, "9.2", StudyInstanceUID="1.2.3.2", SeriesInstanceUID="1.2.3.2.1")
    in_study_4 = {"PatientID": "PID-9", "StudyInstanceUID": "1.2.3.4"}
    _record(config, "9.3", **in_study_4, SeriesInstanceUID="1.2.3.4.1")
    _record(config, "9.4", **in_study_4, SeriesInstanceUID="1.2.3.4.1")
    _record(config, "9.5", **in_study_4, SeriesInstanceUID="1.2.3.4.2", Modality="MR")
    left: list[Any] = []
    moves = [
        ("9.1", {"PatientID": "PID-2"}),
        ("9.2", {"PatientID": "PID-3", "StudyInstanceUID": "1.2.3.2",
                 "SeriesInstanceUID": "1.2.3.2.1"}),
        ("9.3", {"PatientID": "PID-5", "StudyInstanceUID": "1.2.3.5",
                 "SeriesInstanceUID": "1.2.3.5.1"}),
        ("9.4", {"PatientID": "PID-6", "StudyInstanceUID": "1.2.3.6",
                 "SeriesInstanceUID": "1.2.3.6.1"}),
    ]  # fmt: skip
    stores = [_store_open(config, uid, left, **overrides) for uid, overrides in moves]
    for connection in stores:
        connection.commit()
        connection.close()
    assert left, "nothing was skipped"
    _settle(config, left)
    assert _select(config, "SELECT patient_id FROM patient") == [
        ("PID-2",), ("PID-3",), ("PID-5",), ("PID-6",), ("PID-9",),
    ]  # fmt: skip
    assert _select(config, "SELECT count(*) FROM patient p WHERE NOT EXISTS"
                   " (SELECT 1 FROM study WHERE patient_fk = p.id)") == [(0,)]  # fmt: skip
    assert ("1.2.3.4.1", "1.2.3.4") not in _select(config, MOVED_SQL["series"])
    assert ("1.2.3.4", "PID-9", "MR") in _select(config, MOVED_SQL["study"])


def test_postgresql_a_store_whose_moves_share_an_old_study_waits_for_nothing(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """A correction moves instance 9.1 out of series R1 into series R2, and R2 out of study S1,
    while another transaction holds S1's patient (a second look, say): both clean-up entries
    name S1. Computing S1's Modalities in Study once per entry updated its row twice, and
    PostgreSQL checks the foreign key of a row the transaction updated again, locking the
    patient: the store waited for the holder out of the writers' order (a deadlock with a
    second look waiting for S1; the lock timeout here). Once, after the deletes: no wait."""
    config = index.IndexConfig(postgres_dsn, tmp_path / "unused.sqlite", True)
    index.prepare(config)
    for uid, series, modality in (("9.1", "1.2.9.1", "CT"), ("9.2", "1.2.9.2", "MR"),
                                  ("9.3", "1.2.9.3", "PT")):  # fmt: skip
        _record(config, uid, SeriesInstanceUID=series, Modality=modality)
    holder = index.open_connection(config)
    try:
        holder.execute("SELECT id FROM patient WHERE patient_id = 'PID-1' FOR UPDATE")
        left: list[Any] = []
        store = _store_open(config, "9.1", left, PatientID="PID-2", StudyInstanceUID="1.2.3.2",
                            SeriesInstanceUID="1.2.9.2", Modality="MR")  # fmt: skip
        store.commit()
        store.close()
    finally:
        holder.rollback()
        holder.close()
    _settle(config, left)
    assert {table: _select(config, sql) for table, sql in MOVED_SQL.items()} == {
        "patient": [("PID-1",), ("PID-2",)],
        "study": [("1.2.3.1", "PID-1", "PT"), ("1.2.3.2", "PID-2", "MR")],
        "series": [("1.2.9.2", "1.2.3.2"), ("1.2.9.3", "1.2.3.1")],
    }


def test_postgresql_a_lone_store_skips_nothing(tmp_path: Path, postgres_dsn: str) -> None:
    """A store that moves an instance, its series' study and that study's patient at once,
    with no other transaction open, settles everything in its own transaction: a row its
    clean-up deleted itself a step before is not taken for one another transaction holds."""
    config = index.IndexConfig(postgres_dsn, tmp_path / "unused.sqlite", True)
    index.prepare(config)
    _record(config, "9.1", SeriesInstanceUID="2.1")
    _record(config, "9.2", StudyInstanceUID="1.2", SeriesInstanceUID="2.2")
    _record(config, "9.3", SeriesInstanceUID="2.3")
    left: list[Any] = []
    store = _store_open(
        config, "9.1", left, PatientID="PID-3", StudyInstanceUID="1.2", SeriesInstanceUID="2.3"
    )
    store.commit()
    store.close()
    assert left == []
    assert _select(config, MOVED_SQL["series"]) == [("2.2", "1.2"), ("2.3", "1.2")]
    assert _select(config, "SELECT patient_id FROM patient") == [("PID-3",)]


def test_postgresql_a_second_look_does_not_deadlock_with_a_store_moving_back(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """Store A moved study S2 to PID-3 and series X into S2, and skipped the rows two open
    stores held (two entries to look at again). Its second look comes while store T moves S2
    back to PID-2 (holding PID-2, waiting for S2, which store W holds). A second look that
    waited, holding an entry's rows while it waited for the next one's, closed a cycle with
    T, and PostgreSQL aborted one of the two. It waits for nothing: it leaves what is held,
    and a later look, with W and T done, settles the rest."""
    config = index.IndexConfig(postgres_dsn, tmp_path / "unused.sqlite", True)
    index.prepare(config)
    _record(config, "9.1")
    _record(config, "9.3", PatientID="PID-2", StudyInstanceUID="1.2.3.2",
            SeriesInstanceUID="1.2.3.2.1")  # fmt: skip
    holders = [
        _store_open(config, "9.8", [], SeriesInstanceUID="1.2.3.1.3"),
        _store_open(config, "9.9", [], PatientID="PID-2", StudyInstanceUID="1.2.3.9",
                    SeriesInstanceUID="1.2.3.9.1"),
    ]  # fmt: skip
    left: list[Any] = []
    a = _store_open(config, "9.4", left, PatientID="PID-3", StudyInstanceUID="1.2.3.2",
                    SeriesInstanceUID="1.2.3.1.1")  # fmt: skip
    a.commit()
    for holder in holders:
        holder.commit()
        holder.close()
    assert len(left) == 2, left
    w = _store_open(config, "9.7", [], PatientID="PID-3", StudyInstanceUID="1.2.3.2",
                    SeriesInstanceUID="1.2.3.2.9")  # fmt: skip

    def store_t() -> None:
        t = _store_open(config, "9.6", [], PatientID="PID-2", StudyInstanceUID="1.2.3.2",
                        SeriesInstanceUID="1.2.3.1.1")  # fmt: skip
        t.commit()
        t.close()

    t, t_outcome = _run_aside(store_t)
    _until_one_waits_for_a_lock(config, t)
    held = index.settle_left_rows(a, config, left, pauses=())  # a's lock_timeout: 5 s
    w.commit()
    w.close()
    t.join(30)
    assert not t.is_alive() and "error" not in t_outcome, t_outcome
    assert index.settle_left_rows(a, config, held, pauses=()) == []
    cursor = a.cursor()
    assert index.empty_rows(cursor) == []
    a.close()


def test_postgresql_a_series_moved_out_of_a_study_being_stored_into(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """Store T2 adds a CT image to study 1.2.3.1 and computes its Modalities in Study while
    store T1 moves the study's MR series away: T1 skips the study (T2 holds it). Its second
    look does not wait for T2 either: while T2 is open it finds the study held again and
    says so; once T2 committed, it computes the study's Modalities in Study again: CT alone,
    not T2's CT\\MR."""
    config = index.IndexConfig(postgres_dsn, tmp_path / "unused.sqlite", True)
    index.prepare(config)
    _record(config, "9.1")
    _record(config, "9.2", SeriesInstanceUID="1.2.3.1.2", Modality="MR")
    t2 = _store_open(config, "9.3", [])
    left: list[Any] = []
    t1 = _store_open(config, "9.4", left, PatientID="PID-2", StudyInstanceUID="1.2.3.5",
                     SeriesInstanceUID="1.2.3.1.2", Modality="MR")  # fmt: skip
    t1.commit()
    assert left
    held = index.settle_left_rows(t1, config, left, pauses=())  # t1's lock_timeout: 5 s
    assert held == left
    t2.commit()
    t2.close()
    assert index.settle_left_rows(t1, config, held, pauses=()) == []
    t1.close()
    assert ("1.2.3.1", "PID-1", "CT") in _select(config, MOVED_SQL["study"])


def test_postgresql_check_and_repair_of_rows_with_nothing_under_them(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """The same on PostgreSQL."""
    data = tmp_path / "data"
    config = index.IndexConfig(postgres_dsn, data / "unused.sqlite", True)
    index.prepare(config)
    _check_and_repair_empty_rows(data, config)


def test_postgresql_repair_deletes_empty_parents(tmp_path: Path, postgres_dsn: str) -> None:
    """``check --repair`` on PostgreSQL: the lost MR series and, at last, the whole study."""
    data = tmp_path / "data"
    config = index.IndexConfig(postgres_dsn, data / "index.sqlite", True)
    index.prepare(config)
    _repair_a_lost_series(data, config)


def _run_aside(work: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``work()`` in a thread; its result or its exception in the dict returned."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _until_one_waits_for_a_lock(config: Any, thread: threading.Thread, count: int = 1) -> None:
    """Return once a session of the database waits for a row lock (the other connection), or
    ``count`` sessions do."""
    waiting = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 10
    while _select(config, waiting) != [(count,)]:
        assert thread.is_alive() and time.monotonic() < deadline, "nothing waits for a lock"
        time.sleep(0.05)


def test_postgresql_repair_beside_a_store_into_the_same_series(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """``check --repair`` deletes the row of a lost file while a server stores another
    instance of its series (the series row upserted, the instance inserted, not committed):
    the repair waits for the store, then keeps the series, which is no longer empty; it used
    to delete it anyway (its ``NOT EXISTS`` saw the snapshot from before the wait) and fail
    on the foreign key, rolling the repair back."""
    data = tmp_path / "data"
    config = index.IndexConfig(postgres_dsn, data / "unused.sqlite", True)
    index.prepare(config)
    study, series = generate_uid(ROOT), generate_uid(ROOT)
    lost = _instance(data, study, series)
    _store_file(data, config, lost)
    lost.unlink()
    new = _instance(data, study, series)
    new_uid = dcmread(new).SOPInstanceUID
    store = index.open_connection(config)
    try:
        cursor = store.cursor()
        index.lock_instance(cursor, config, new_uid)
        index.record(
            cursor, config, writer.read_attributes(new),
            path=new.relative_to(data).as_posix(), size=new.stat().st_size,
            received_at=datetime.now(check.UTC).isoformat(timespec="milliseconds"),
            calling_ae="AE",
        )  # fmt: skip
        repair, outcome = _run_aside(lambda: check.check_storage(data, config, repair=True))
        _until_one_waits_for_a_lock(config, repair)
        store.commit()
        index.unlock_instance(cursor, config, new_uid)
    finally:
        store.close()
    repair.join(30)
    assert not repair.is_alive()
    assert "error" not in outcome, outcome
    report = outcome["result"]
    assert report.clean, report.lines()
    assert any("removed index row" in line for line in report.repaired), report.lines()
    assert _select(config, "SELECT sop_instance_uid FROM instance") == [(new_uid,)]
    assert _select(config, "SELECT series_instance_uid FROM series") == [(series,)]
    assert _select(config, "SELECT study_instance_uid FROM study") == [(study,)]


def test_postgresql_repair_does_not_wait_for_a_store_in_its_transaction(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """``check --repair`` re-indexes a file whose new version is another patient's while a
    store writes another instance into the series the old version was in (not committed):
    the repair waits for the store nowhere (its clean-up and its second look skip the rows
    the store holds, and say so), so no lock cycle can form with it. Once both are done, the
    series holds the store's instance and its study a right Modalities in Study."""
    data = tmp_path / "data"
    config = index.IndexConfig(postgres_dsn, data / "unused.sqlite", True)
    index.prepare(config)
    study, series = generate_uid(ROOT), generate_uid(ROOT)
    path = _instance(data, study, series)
    _store_file(data, config, path)
    uid = dcmread(path).SOPInstanceUID
    make_instance(path, study_uid=generate_uid(ROOT), series_uid=generate_uid(ROOT),
                  sop_uid=uid, patient_id="PID-2")  # fmt: skip
    _written_after_its_row(config, path)
    store = _store_open(config, "9.9", [], StudyInstanceUID=study, SeriesInstanceUID=series)
    try:
        repair, outcome = _run_aside(lambda: check.check_storage(data, config, repair=True))
        repair.join(30)
        assert not repair.is_alive(), "the repair waits for the store"
        store.commit()
    finally:
        store.close()
    assert "error" not in outcome, outcome
    assert outcome["result"].repaired == [
        f"re-indexed {path}",
        f"the rows {path} was moved away from were still held by other transactions; any left"
        " empty is looked for again at the end",
    ]
    moved = (
        "SELECT p.patient_id FROM instance i JOIN series r ON r.id = i.series_fk"
        " JOIN study s ON s.id = r.study_fk JOIN patient p ON p.id = s.patient_fk"
        f" WHERE i.sop_instance_uid = '{uid}'"
    )
    assert _select(config, moved) == [("PID-2",)]
    assert _select(config, f"SELECT series_instance_uid FROM series WHERE series_instance_uid"
                   f" = '{series}'") == [(series,)]  # fmt: skip
    assert ("9.9",) in _select(config, "SELECT sop_instance_uid FROM instance")
    assert (study, "PID-1", "CT") in _select(config, MOVED_SQL["study"])


class _AfterStatement:
    """A cursor that calls ``then()`` once, right after its first statement starting with
    ``prefix`` (another connection's repair between two statements of a store)."""

    def __init__(self, cursor: Any, prefix: str, then: Any) -> None:
        self._cursor, self._prefix, self._then = cursor, prefix, then

    def execute(self, statement: str, parameters: Any = ()) -> Any:
        result = self._cursor.execute(statement, parameters)
        if self._then is not None and statement.startswith(self._prefix):
            then, self._then = self._then, None
            then()
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


def _repair_row(config: Any, uid: str) -> Any:
    """A repair's connection, in which the row of ``uid`` and its empty parents are deleted
    (not committed yet)."""
    connection = index.open_connection(config)
    cursor = connection.cursor()
    index.delete_instance(cursor, config, uid)
    return connection


def test_postgresql_a_study_deleted_under_a_partial_identity_store(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """An object without issuer of a study whose patient has one leaves the study with its
    patient (no upsert); when a repair deletes that study, its last file lost, between that
    decision and the read of the study's patient, the store makes the study anew, with the
    object's patient, as for a new study (it used to fail: ``TypeError`` on no row)."""
    config = index.IndexConfig(postgres_dsn, tmp_path / "unused.sqlite", True)
    index.prepare(config)
    _record(config, "9.1", IssuerOfPatientID="HOSP")

    def repair() -> None:
        repair = _repair_row(config, "9.1")
        repair.commit()
        repair.close()

    connection = index.open_connection(config)
    try:
        cursor = _AfterStatement(connection.cursor(), "INSERT INTO patient", repair)
        index.record(
            cursor, config, _attributes(SOPInstanceUID="9.2"), path="9.2.dcm", size=1,
            received_at="t", calling_ae="MOD",
        )  # fmt: skip
        connection.commit()
    finally:
        connection.close()
    patients = "SELECT patient_id, issuer_of_patient_id FROM patient"
    assert _select(config, patients) == [("PID-1", "")]
    assert _select(config, "SELECT study_instance_uid FROM study") == [("1.2.3.1",)]
    assert _select(config, "SELECT sop_instance_uid FROM instance") == [("9.2",)]


def test_postgresql_a_partial_identity_store_waits_for_a_repair(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """The same with the repair not committed yet when the store reads the study's patient:
    the store waits for it, then makes the study anew (it used to read the patient the
    repair was deleting and fail on the foreign key of the study it inserted)."""
    config = index.IndexConfig(postgres_dsn, tmp_path / "unused.sqlite", True)
    index.prepare(config)
    _record(config, "9.1", IssuerOfPatientID="HOSP")
    repair = _repair_row(config, "9.1")
    try:
        store, outcome = _run_aside(lambda: _record(config, "9.2"))
        _until_one_waits_for_a_lock(config, store)
        repair.commit()
    finally:
        repair.close()
    store.join(30)
    assert not store.is_alive()
    assert "error" not in outcome, outcome
    patients = "SELECT patient_id, issuer_of_patient_id FROM patient"
    assert _select(config, patients) == [("PID-1", "")]
    assert _select(config, "SELECT sop_instance_uid FROM instance") == [("9.2",)]


def test_a_repair_whose_second_look_fails_says_so_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second look at rows a re-index skipped fails (PostgreSQL may pick it to end a
    deadlock): one line in the report, and the repair goes on to the end."""
    data, config = _data(tmp_path)
    path = _instance(data, generate_uid(ROOT), generate_uid(ROOT))
    _store_file(data, config, path)
    _written_after_its_row(config, path)
    real_record = check.sql.record

    def record(*args: Any, **kwargs: Any) -> Any:
        written = real_record(*args, **kwargs)
        kwargs["settle_later"].append((None, None, 1))
        return written

    def settle(*args: Any) -> None:
        raise sqlite3.OperationalError("deadlock detected")

    monkeypatch.setattr(check.sql, "record", record)
    monkeypatch.setattr(check.sql, "settle_left_rows", settle)
    report = check.check_storage(data, config, repair=True)
    assert report.repaired == [
        f"re-indexed {path}",
        f"could not look again at the rows {path} was moved away from (deadlock detected)",
    ]
    assert report.clean, report.lines()
