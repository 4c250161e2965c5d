"""The storage index on PostgreSQL: runs only when a server is given in PACSREF_TEST_POSTGRES_DSN.

``.ci/run`` starts a throwaway PostgreSQL and sets the variable; tox passes it through and
installs the ``postgres`` extra (psycopg). Locally, set e.g.
``PACSREF_TEST_POSTGRES_DSN=postgresql://user:pw@127.0.0.1:5432/db`` and ``pip install
.[postgres]``. Without either the tests skip, saying so; under ``CI=true`` they fail instead
(like the DCMTK rule, :func:`pacsref.testing.dcmtk.in_ci`), so a CI run never passes with the
PostgreSQL path untested. The database must be empty or hold a pacsref index; the user must be
allowed to create databases for the tests that need an index of their own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from pacsref.testing.dcmtk import in_ci
from tests.storage.dicomgen import ROOT, make_instance
from tests.storage.helpers import associate, dataset_bytes, send_store, storage_harness
from tests.storage.test_parts import _module

DSN = os.environ.get("PACSREF_TEST_POSTGRES_DSN", "")
STATUS = 0x0900


@pytest.fixture(autouse=True)
def _postgres() -> Any:
    """psycopg, when a server is configured; else skip (fail under CI=true)."""
    if not DSN:
        reason = "PostgreSQL index not tested: set PACSREF_TEST_POSTGRES_DSN to run it"
        if in_ci():
            pytest.fail(reason + " (.ci/run starts one)")
        pytest.skip(reason)
    try:
        import psycopg
    except ImportError:
        reason = "psycopg missing: install the postgres extra (pip install .[postgres])"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    return psycopg


@pytest.fixture
def fresh_dsn(_postgres: Any) -> Iterator[str]:
    """A DSN naming a new, empty database, dropped afterwards (a check sees only our rows)."""
    name = f"pacsref_test_{uuid.uuid4().hex[:12]}"
    with _postgres.connect(DSN, autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(DSN)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    with _postgres.connect(DSN, autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _instance(tmp_path: Path, name: str, study_uid: str) -> tuple[str, bytes]:
    path = make_instance(tmp_path / name, study_uid=study_uid, series_uid=generate_uid(ROOT))
    return dcmread(path).SOPInstanceUID, dataset_bytes(path)


def test_store_indexes_into_postgresql(tmp_path: Path, _postgres: Any) -> None:
    """With index_dsn set, a store is indexed in PostgreSQL."""
    harness = storage_harness(tmp_path / "PACSREF", options=f'index_dsn = "{DSN}"\n')
    uid, data = _instance(tmp_path, "a.dcm", generate_uid(ROOT))
    assert send_store(associate(harness), uid, data)[0][STATUS] == 0

    with _postgres.connect(DSN) as db:
        rows = db.execute("SELECT calling_ae FROM instance WHERE sop_instance_uid = %s", (uid,))
        assert rows.fetchall() == [("MODALITY",)]


def test_postgresql_index_duplicates_and_check(
    tmp_path: Path, fresh_dsn: str, _postgres: Any
) -> None:
    """Two series of one study, a refused duplicate, then check and repair on PostgreSQL."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(
        server_dir, options=f'index_dsn = "{fresh_dsn}"\nduplicates = "refuse"\n'
    )
    study = generate_uid(ROOT)
    first, first_data = _instance(tmp_path, "a.dcm", study)
    second, second_data = _instance(tmp_path, "b.dcm", study)
    conn = associate(harness)
    assert send_store(conn, first, first_data)[0][STATUS] == 0x0000
    assert send_store(conn, second, second_data, message_id=2)[0][STATUS] == 0x0000
    assert send_store(conn, first, first_data, message_id=3)[0][STATUS] == 0x0111

    with _postgres.connect(fresh_dsn) as db:
        counts = db.execute(
            "SELECT (SELECT count(*) FROM patient), (SELECT count(*) FROM study),"
            " (SELECT count(*) FROM series), (SELECT count(*) FROM instance)"
        ).fetchone()
    assert counts == (1, 1, 2, 2)

    check, index = _module("check"), _module("index")
    config = index.IndexConfig(fresh_dsn, server_dir / "data" / "index.sqlite", False)
    report = check.check_storage(server_dir / "data", config)
    assert report.clean and report.indexed == 2 and report.files == 2, report.lines()

    [lost] = (server_dir / "data").glob(f"*/{second}.dcm")
    lost.unlink()
    report = check.check_storage(server_dir / "data", config)
    assert report.rows_without_file == [second], report.lines()
    report = check.check_storage(server_dir / "data", config, repair=True)
    assert report.clean and [r for r in report.repaired if second in r], report.lines()
    assert check.check_storage(server_dir / "data", config).clean


def _patient_instance(tmp_path: Path, name: str, issuer: str | None) -> tuple[str, bytes]:
    path = make_instance(
        tmp_path / name, study_uid=generate_uid(ROOT), series_uid=generate_uid(ROOT),
        patient_id="PID-7", issuer=issuer,
    )  # fmt: skip
    return dcmread(path).SOPInstanceUID, dataset_bytes(path)


def test_postgresql_patient_is_id_and_issuer(
    tmp_path: Path, fresh_dsn: str, _postgres: Any
) -> None:
    """Same Patient ID from two issuers: two patients; the same ID and issuer again: no third."""
    harness = storage_harness(tmp_path / "PACSREF", options=f'index_dsn = "{fresh_dsn}"\n')
    conn = associate(harness)
    for n, issuer in enumerate(("HOSP-A", "HOSP-B", "HOSP-A"), start=1):
        uid, data = _patient_instance(tmp_path, f"{n}.dcm", issuer)
        assert send_store(conn, uid, data, message_id=n)[0][STATUS] == 0x0000
    with _postgres.connect(fresh_dsn) as db:
        rows = db.execute(
            "SELECT p.patient_id, p.issuer_of_patient_id, count(s.id) FROM patient p"
            " JOIN study s ON s.patient_fk = p.id GROUP BY p.id ORDER BY 2"
        ).fetchall()
    assert rows == [("PID-7", "HOSP-A", 2), ("PID-7", "HOSP-B", 1)]


def test_postgresql_previous_schema_version_is_migrated(
    tmp_path: Path, fresh_dsn: str, _postgres: Any
) -> None:
    """A version-1 PostgreSQL index: rows and ids kept, issuer "", uniqueness on (ID, issuer)."""
    schema = _module("schema")
    with _postgres.connect(fresh_dsn) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version (version) VALUES (1)")
        for statement in schema.MIGRATIONS[0]("postgresql"):
            db.execute(statement)
        db.execute(
            "INSERT INTO patient (id, patient_id, patient_name) VALUES"
            " (10, 'PID-7', 'Old^Seven'), (20, 'PID-8', 'Old^Eight')"
        )
        db.execute(
            "INSERT INTO study (id, patient_fk, study_instance_uid) VALUES"
            " (1, 10, '1.2.3.1'), (2, 20, '1.2.3.2')"
        )
        # As if the rows had been numbered by their sequences.
        db.execute("SELECT setval(pg_get_serial_sequence('patient', 'id'), 20)")
        db.execute("SELECT setval(pg_get_serial_sequence('study', 'id'), 2)")

    harness = storage_harness(tmp_path / "PACSREF", options=f'index_dsn = "{fresh_dsn}"\n')
    with _postgres.connect(fresh_dsn) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [
            (schema.SCHEMA_VERSION,)
        ]
        assert db.execute(
            "SELECT id, patient_id, issuer_of_patient_id, patient_name FROM patient ORDER BY id"
        ).fetchall() == [(10, "PID-7", "", "Old^Seven"), (20, "PID-8", "", "Old^Eight")]
        assert db.execute("SELECT id, patient_fk FROM study ORDER BY id").fetchall() == [
            (1, 10), (2, 20)
        ]  # fmt: skip
        constraints = db.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'patient'::regclass AND contype = 'u'"
        ).fetchall()
        assert constraints == [
            ("patient_id_issuer_key", "UNIQUE (patient_id, issuer_of_patient_id)")
        ]
        db.execute("INSERT INTO patient (patient_id, issuer_of_patient_id) VALUES ('PID-7', 'X')")
        with pytest.raises(_postgres.errors.UniqueViolation):
            db.execute("INSERT INTO patient (patient_id) VALUES ('PID-8')")
        db.rollback()

    # Storing through the migrated index: no issuer finds the old row, an issuer a new one.
    conn = associate(harness)
    for n, issuer in enumerate((None, "HOSP-A"), start=1):
        uid, data = _patient_instance(tmp_path, f"{n}.dcm", issuer)
        assert send_store(conn, uid, data, message_id=n)[0][STATUS] == 0x0000
    with _postgres.connect(fresh_dsn) as db:
        rows = db.execute(
            "SELECT issuer_of_patient_id, patient_name FROM patient"
            " WHERE patient_id = 'PID-7' ORDER BY issuer_of_patient_id"
        ).fetchall()
        assert rows == [("", "Test^Patient"), ("HOSP-A", "Test^Patient")]
        assert db.execute("SELECT id FROM patient WHERE issuer_of_patient_id = ''"
                          " AND patient_id = 'PID-7'").fetchall() == [(10,)]  # fmt: skip
