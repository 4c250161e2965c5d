"""Patients are Patient ID *and* Issuer of Patient ID (PS3.3 C.7.1.1), and an index written by
the previous schema version (patients keyed by Patient ID alone) is migrated when storage starts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.storage.dicomgen import ROOT, make_instance
from tests.storage.helpers import associate, dataset_bytes, send_store, storage_harness
from tests.storage.test_parts import _module

STATUS = 0x0900
#: The schema version before the issuer (migration 2).
V1 = 1

schema = _module("schema")
writer = _module("writer")


def _instance(
    tmp_path: Path, name: str, patient_id: str, issuer: str | None, study_uid: str | None = None
) -> tuple[str, bytes]:
    path = make_instance(
        tmp_path / "in" / name, study_uid=study_uid or generate_uid(ROOT),
        series_uid=generate_uid(ROOT), patient_id=patient_id, issuer=issuer,
    )  # fmt: skip
    return dcmread(path).SOPInstanceUID, dataset_bytes(path)


def _rows(server_dir: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(server_dir / "data" / "index.sqlite") as db:
        return db.execute(sql).fetchall()


def _store_all(server_dir: Path, objects: list[tuple[str, bytes]]) -> None:
    conn = associate(storage_harness(server_dir))
    for n, (uid, data) in enumerate(objects, start=1):
        assert send_store(conn, uid, data, message_id=n)[0][STATUS] == 0x0000


def test_issuer_is_an_index_attribute(tmp_path: Path) -> None:
    """Issuer of Patient ID is read (raw walk and pydicom alike); "" when absent."""
    assert writer.INDEX_KEYWORDS[:2] == ("PatientID", "IssuerOfPatientID")
    with_issuer = make_instance(tmp_path / "a.dcm", study_uid=generate_uid(ROOT),
                                series_uid=generate_uid(ROOT), issuer="HOSP-A")  # fmt: skip
    without = make_instance(tmp_path / "b.dcm", study_uid=generate_uid(ROOT),
                            series_uid=generate_uid(ROOT))  # fmt: skip
    assert writer.read_attributes(with_issuer)["IssuerOfPatientID"] == "HOSP-A"
    assert writer.read_attributes(without)["IssuerOfPatientID"] == ""


def test_same_patient_id_different_issuers_are_two_patients(tmp_path: Path) -> None:
    """One Patient ID from two issuers: two patient rows, each with its own study."""
    server_dir = tmp_path / "PACSREF"
    _store_all(server_dir, [
        _instance(tmp_path, "a.dcm", "PID-7", "HOSP-A"),
        _instance(tmp_path, "b.dcm", "PID-7", "HOSP-B"),
    ])  # fmt: skip
    assert _rows(
        server_dir,
        "SELECT p.patient_id, p.issuer_of_patient_id, count(s.id) FROM patient p"
        " JOIN study s ON s.patient_fk = p.id GROUP BY p.id ORDER BY p.issuer_of_patient_id",
    ) == [("PID-7", "HOSP-A", 1), ("PID-7", "HOSP-B", 1)]


@pytest.mark.parametrize("issuer", ["HOSP-A", None])
def test_same_patient_id_and_issuer_is_one_patient(tmp_path: Path, issuer: str | None) -> None:
    """The same Patient ID and issuer (also: both without issuer) is one patient row."""
    server_dir = tmp_path / "PACSREF"
    _store_all(server_dir, [
        _instance(tmp_path, "a.dcm", "PID-7", issuer),
        _instance(tmp_path, "b.dcm", "PID-7", issuer),
    ])  # fmt: skip
    assert _rows(server_dir, "SELECT patient_id, issuer_of_patient_id FROM patient") == [
        ("PID-7", issuer or "")
    ]
    assert _rows(server_dir, "SELECT count(DISTINCT patient_fk), count(*) FROM study") == [(1, 2)]


def _write_v1_index(path: Path) -> None:
    """An index as the previous pacsref left it: schema version 1 with two patients' rows."""
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version (version) VALUES (?)", (V1,))
    for statement in schema.MIGRATIONS[0]("sqlite"):
        db.execute(statement)
    # Ids not starting at 1, so a rebuild renumbering them would show.
    db.executemany(
        "INSERT INTO patient (id, patient_id, patient_name, patient_birth_date, patient_sex)"
        " VALUES (?, ?, ?, ?, ?)",
        [(10, "PID-7", "Old^Seven", "19700101", "F"), (20, "PID-8", "Old^Eight", "", "M")],
    )
    db.executemany(
        "INSERT INTO study (id, patient_fk, study_instance_uid) VALUES (?, ?, ?)",
        [(1, 10, "1.2.3.1"), (2, 20, "1.2.3.2")],
    )
    db.execute("INSERT INTO series (id, study_fk, series_instance_uid) VALUES (5, 2, '1.2.3.2.1')")
    db.execute(
        "INSERT INTO instance (series_fk, sop_instance_uid, sop_class_uid, transfer_syntax_uid,"
        " path, size, received_at) VALUES (5, '1.2.3.2.1.1', '1.2', '1.2.840.10008.1.2.1',"
        " 'aa/1.2.3.2.1.1.dcm', 100, '2024-01-01T00:00:00+00:00')"
    )
    db.close()


def test_previous_schema_version_is_migrated_at_start(tmp_path: Path) -> None:
    """A version-1 index: rows and ids kept, issuer "", uniqueness now on (ID, issuer)."""
    server_dir = tmp_path / "PACSREF"
    index_file = server_dir / "data" / "index.sqlite"
    _write_v1_index(index_file)

    harness = storage_harness(server_dir)
    assert _rows(server_dir, "SELECT version FROM schema_version") == [(schema.SCHEMA_VERSION,)]
    assert _rows(
        server_dir,
        "SELECT id, patient_id, issuer_of_patient_id, patient_name, patient_birth_date,"
        " patient_sex FROM patient ORDER BY id",
    ) == [(10, "PID-7", "", "Old^Seven", "19700101", "F"),
          (20, "PID-8", "", "Old^Eight", "", "M")]  # fmt: skip
    assert _rows(server_dir, "SELECT id, patient_fk FROM study ORDER BY id") == [(1, 10), (2, 20)]
    assert _rows(server_dir, "SELECT count(*) FROM instance") == [(1,)]
    with sqlite3.connect(index_file) as db:
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        indexes = {name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'patient'"
        )}  # fmt: skip
        assert "patient_name_ix" in indexes
        assert not db.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE 'patient_v%'"
        ).fetchall()
        # The references still name `patient` (not the rebuilt table's temporary name).
        [(study_sql,)] = db.execute("SELECT sql FROM sqlite_master WHERE name = 'study'")
        assert "REFERENCES patient(id)" in study_sql

    # The new uniqueness: (ID, issuer) once, the same ID from another issuer allowed.
    with sqlite3.connect(index_file) as db:
        db.execute("INSERT INTO patient (patient_id, issuer_of_patient_id) VALUES ('PID-7', 'X')")
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            db.execute(
                "INSERT INTO patient (patient_id, issuer_of_patient_id) VALUES ('PID-7', 'X')"
            )
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            db.execute("INSERT INTO patient (patient_id) VALUES ('PID-8')")
        db.rollback()

    # Storing through the migrated index: no issuer finds the old row, an issuer makes a new one;
    # foreign keys are enforced again (the migration switched them off only while it ran).
    conn = associate(harness)
    for n, issuer in enumerate((None, "HOSP-A"), start=1):
        uid, data = _instance(tmp_path, f"{n}.dcm", "PID-7", issuer)
        assert send_store(conn, uid, data, message_id=n)[0][STATUS] == 0x0000
    assert _rows(
        server_dir, "SELECT id, issuer_of_patient_id, patient_name FROM patient"
        " WHERE patient_id = 'PID-7' ORDER BY id",
    )[0] == (10, "", "Test^Patient")  # fmt: skip
    assert len(_rows(server_dir, "SELECT id FROM patient WHERE patient_id = 'PID-7'")) == 2
    index = _module("index")
    config = index.IndexConfig("", index_file, True)
    connection = index.open_connection(config)
    try:
        assert connection.execute("PRAGMA foreign_keys").fetchone() == (1,)
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            connection.execute("DELETE FROM patient WHERE id = 20")
    finally:
        connection.close()


def test_migration_restores_foreign_key_enforcement_and_is_atomic(tmp_path: Path) -> None:
    """A failing migration rolls back to the previous version and restores foreign_keys=ON."""
    index_file = tmp_path / "data" / "index.sqlite"
    _write_v1_index(index_file)
    # An orphan study (possible in a v1 index written without enforcement) fails the check.
    with sqlite3.connect(index_file) as db:
        db.execute("INSERT INTO study (id, patient_fk, study_instance_uid) VALUES (3, 99, '9.9')")
    db = sqlite3.connect(index_file, isolation_level=None)
    db.execute("PRAGMA foreign_keys=ON")
    with pytest.raises(schema.SchemaError, match="foreign key violations"):
        schema.migrate(db, "sqlite")
    assert db.execute("PRAGMA foreign_keys").fetchone() == (1,)
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(V1,)]
    columns = [row[1] for row in db.execute("PRAGMA table_info(patient)")]
    assert "issuer_of_patient_id" not in columns
    assert db.execute("SELECT count(*) FROM patient").fetchone() == (2,)
    db.close()
