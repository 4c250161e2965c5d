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

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.storage.dicomgen import ROOT, make_instance
from tests.storage.helpers import associate, dataset_bytes, send_store, storage, storage_harness
from tests.storage.postgres import DSN, new_database, psycopg_or_skip
from tests.storage.test_index_empty_values import IMAGE, STUDY_SQL, store_all, study_objects
from tests.storage.test_parent_rows import _attributes
from tests.storage.test_parts import _module

STATUS = 0x0900


@pytest.fixture(autouse=True)
def _postgres() -> Any:
    """psycopg, when a server is configured; else skip (fail under CI=true)."""
    return psycopg_or_skip()


@pytest.fixture
def fresh_dsn(_postgres: Any) -> Iterator[str]:
    """A DSN naming a new, empty database, dropped afterwards (a check sees only our rows)."""
    with new_database(_postgres) as dsn:
        yield dsn


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


def test_postgresql_empty_values_keep_stored_ones(
    tmp_path: Path, fresh_dsn: str, _postgres: Any
) -> None:
    """As on SQLite (test_index_empty_values.py), with no parent-row cache: a Presentation
    State with empty Accession Number, Study Description and Patient's Birth Date keeps the
    image's; a later non-empty value replaces them."""
    harness = storage_harness(tmp_path / "PACSREF", options=f'index_dsn = "{fresh_dsn}"\n')
    store_all(harness, study_objects(tmp_path))
    with _postgres.connect(fresh_dsn) as db:
        assert db.execute(STUDY_SQL).fetchall() == [("ACC1", "Synthetic study", "1")]
        assert db.execute("SELECT patient_birth_date FROM patient").fetchall() == [("19700101",)]

    index = _module("index")
    config = index.IndexConfig(fresh_dsn, tmp_path / "unused.sqlite", False)
    connection = index.open_connection(config)
    try:
        for n, values in enumerate(
            [IMAGE, dict.fromkeys(IMAGE, ""), {"AccessionNumber": "ACC2"}], start=1
        ):
            index.record(
                connection.cursor(), config, _attributes(SOPInstanceUID=f"9.{n}", **values),
                path=f"{n}.dcm", size=1, received_at="t", calling_ae="MOD",
            )  # fmt: skip
            connection.commit()
        rows = connection.execute(
            "SELECT accession_number, study_description FROM study"
            " WHERE study_instance_uid = '1.2.3.1'"
        ).fetchall()
        assert rows == [("ACC2", "Synthetic study")]
        assert connection.execute(
            "SELECT patient_birth_date FROM patient WHERE patient_id = 'PID-1'"
        ).fetchall() == [("19700101",)]
    finally:
        connection.close()


def _lock_config(tmp_path: Path) -> Any:
    return _module("index").IndexConfig(DSN, tmp_path / "unused.sqlite", False)


def _held_by_another_session(db: Any, uid: str) -> bool:
    """Whether another session holds ``uid``'s instance lock (tried without waiting)."""
    got = db.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (uid,)).fetchone()
    if got[0]:
        db.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (uid,))
    db.commit()
    return not got[0]


def _waits_for_advisory_lock(db: Any, pid: int) -> bool:
    """Whether backend ``pid`` waits for an advisory lock, within 10 s (a condition, polled)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        (waiting,) = db.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND pid = %s",
            (pid,),
        ).fetchone()
        db.commit()
        if waiting:
            return True
        time.sleep(0.005)
    return False


def test_postgresql_instance_lock_makes_a_second_server_wait(tmp_path: Path) -> None:
    """Two servers' connections: the second's lock on the same UID waits for the first's
    unlock; another UID is not held up."""
    index = _module("index")
    config = _lock_config(tmp_path)
    uid, other = generate_uid(ROOT), generate_uid(ROOT)
    first, second, observer = (index.open_connection(config) for _ in range(3))
    try:
        # A wait that should not happen fails the test instead of hanging it.
        second.execute("SET lock_timeout = '10s'")
        second.commit()
        index.lock_instance(first.cursor(), config, uid)
        assert _held_by_another_session(observer, uid)

        index.lock_instance(second.cursor(), config, other)  # returns: not the same lock
        index.unlock_instance(second.cursor(), config, other)
        assert not _held_by_another_session(observer, other)

        locked = threading.Event()
        failure: list[BaseException] = []

        def lock_second() -> None:
            try:
                index.lock_instance(second.cursor(), config, uid)
                locked.set()
            except BaseException as exc:
                failure.append(exc)

        waiter = threading.Thread(target=lock_second, daemon=True)
        waiter.start()
        assert _waits_for_advisory_lock(observer, second.info.backend_pid), failure
        assert not locked.is_set()
        first.commit()  # the caller's commit does not release it ...
        assert not locked.is_set() and _held_by_another_session(observer, uid)
        index.unlock_instance(first.cursor(), config, uid)  # ... the unlock does
        waiter.join(timeout=10)
        assert locked.is_set(), failure
        index.unlock_instance(second.cursor(), config, uid)
        assert not _held_by_another_session(observer, uid)
    finally:
        for connection in (first, second, observer):
            connection.close()


def test_postgresql_instance_lock_released_after_a_failed_transaction(
    tmp_path: Path, _postgres: Any
) -> None:
    """A session-level lock outlives a rollback; unlock_instance releases it even when the
    transaction failed, and leaves the connection idle, not in a transaction."""
    status = _postgres.pq.TransactionStatus
    index = _module("index")
    config = _lock_config(tmp_path)
    uid = generate_uid(ROOT)
    connection, observer = (index.open_connection(config) for _ in range(2))
    try:
        cursor = connection.cursor()
        index.lock_instance(cursor, config, uid)
        connection.rollback()
        assert _held_by_another_session(observer, uid)
        with pytest.raises(_postgres.errors.DivisionByZero):
            cursor.execute("SELECT 1 / 0")
        assert connection.info.transaction_status == status.INERROR
        index.unlock_instance(cursor, config, uid)
        assert not _held_by_another_session(observer, uid)
        assert connection.info.transaction_status == status.IDLE
    finally:
        connection.close()
        observer.close()


def _commit_then_fail(monkeypatch: pytest.MonkeyPatch, *, commits: bool) -> None:
    """The pool connection's COMMIT raises as a lost connection does, after committing or not."""
    import psycopg

    real_commit = psycopg.Connection.commit

    def commit(self: Any) -> None:
        if commits:
            real_commit(self)
        self.close()  # gone, with its transaction if it was not committed, and its locks
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(psycopg.Connection, "commit", commit)


def _stored(server_dir: Path) -> list[Path]:
    return list((server_dir / "data").glob("*/*.dcm"))


def _indexed(dsn: str, _postgres: Any) -> list[tuple[str]]:
    db = _postgres.connect(dsn, autocommit=True)  # no ``with``: it would commit at the end
    try:
        return db.execute("SELECT sop_instance_uid FROM instance").fetchall()  # type: ignore[no-any-return]
    finally:
        db.close()


def test_commit_that_raised_but_happened_is_a_success(
    tmp_path: Path, fresh_dsn: str, _postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection went during COMMIT, after the server committed: 0x0000, file and row."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir, options=f'index_dsn = "{fresh_dsn}"\n')
    uid, data = _instance(tmp_path, "a.dcm", generate_uid(ROOT))
    _commit_then_fail(monkeypatch, commits=True)
    assert send_store(associate(harness), uid, data)[0][STATUS] == 0x0000
    assert len(_stored(server_dir)) == 1
    assert _indexed(fresh_dsn, _postgres) == [(uid,)]


def test_commit_that_raised_and_did_not_happen_stores_nothing(
    tmp_path: Path, fresh_dsn: str, _postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The COMMIT failed for good: 0x0110, and the file is taken out again."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir, options=f'index_dsn = "{fresh_dsn}"\n')
    uid, data = _instance(tmp_path, "a.dcm", generate_uid(ROOT))
    _commit_then_fail(monkeypatch, commits=False)
    assert send_store(associate(harness), uid, data)[0][STATUS] == 0x0110
    assert _stored(server_dir) == []
    assert _indexed(fresh_dsn, _postgres) == []


def test_commit_whose_outcome_is_unknown_keeps_the_file_for_repair(
    tmp_path: Path, fresh_dsn: str, _postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody can tell whether the COMMIT happened: 0x0110, and the file stays, so that
    `check --repair` indexes it rather than a row being left without its file."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir, options=f'index_dsn = "{fresh_dsn}"\n')
    uid, data = _instance(tmp_path, "a.dcm", generate_uid(ROOT))
    _commit_then_fail(monkeypatch, commits=False)
    module = sys.modules[type(storage(harness)).__module__]

    def unreachable(*args: Any, **kw: Any) -> Any:
        raise OSError("connection refused")

    monkeypatch.setattr(module.sql, "open_connection", unreachable)
    assert send_store(associate(harness), uid, data)[0][STATUS] == 0x0110
    assert len(_stored(server_dir)) == 1
    monkeypatch.undo()
    check, index = _module("check"), _module("index")
    config = index.IndexConfig(fresh_dsn, server_dir / "data" / "index.sqlite", True)
    assert check.check_storage(server_dir / "data", config, repair=True).repaired
    assert _indexed(fresh_dsn, _postgres) == [(uid,)]


def _skipping_store(harness: Any, monkeypatch: pytest.MonkeyPatch, row: tuple[Any, ...]) -> Any:
    """The harness add-in's index module, its ``record`` made to report ``row`` as skipped
    by its clean-up (as when another store held it): what the store does after its commit."""
    sql = sys.modules[type(storage(harness)).__module__].sql
    real = sql.record

    def record(*args: Any, **kwargs: Any) -> Any:
        written = real(*args, **kwargs)
        kwargs["settle_later"].append(row)
        return written

    monkeypatch.setattr(sql, "record", record)
    return sql


def _empty_patient(dsn: str, _postgres: Any) -> int:
    with _postgres.connect(dsn) as db:
        (row_id,) = db.execute(
            "INSERT INTO patient (patient_id, issuer_of_patient_id, patient_name,"
            " patient_birth_date, patient_sex) VALUES ('LEFT', '', '', '', '') RETURNING id"
        ).fetchone()
    return int(row_id)


def test_a_store_looks_again_at_what_its_clean_up_skipped_after_its_commit(
    tmp_path: Path, fresh_dsn: str, _postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row the store's clean-up had to skip (another transaction held it) is deleted, if
    empty, once the store committed (index.settle_left_rows)."""
    harness = storage_harness(tmp_path / "PACSREF", options=f'index_dsn = "{fresh_dsn}"\n')
    _skipping_store(harness, monkeypatch, (None, None, _empty_patient(fresh_dsn, _postgres)))
    uid, data = _instance(tmp_path, "a.dcm", generate_uid(ROOT))
    assert send_store(associate(harness), uid, data)[0][STATUS] == 0
    with _postgres.connect(fresh_dsn) as db:
        left = db.execute("SELECT count(*) FROM patient WHERE patient_id = 'LEFT'").fetchone()
    assert left == (0,)


def test_a_failed_second_look_is_logged_and_the_store_stands(
    tmp_path: Path,
    fresh_dsn: str,
    _postgres: Any,
    monkeypatch: pytest.MonkeyPatch,
    log_events: list[dict[str, Any]],
) -> None:
    """The object is stored and indexed when the second look fails: success, and one warning
    saying that a repair deletes what is left."""
    harness = storage_harness(tmp_path / "PACSREF", options=f'index_dsn = "{fresh_dsn}"\n')
    sql = _skipping_store(harness, monkeypatch, (None, None, _empty_patient(fresh_dsn, _postgres)))

    def settle(*args: Any) -> None:
        raise _postgres.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(sql, "settle_left_rows", settle)
    uid, data = _instance(tmp_path, "a.dcm", generate_uid(ROOT))
    assert send_store(associate(harness), uid, data)[0][STATUS] == 0
    [warning] = [e for e in log_events if "could not be looked at again" in e.get("log_format", "")]
    assert warning["uid"] == uid and "server closed the connection" in str(warning["error"])
    with _postgres.connect(fresh_dsn) as db:
        stored = db.execute("SELECT count(*) FROM instance WHERE sop_instance_uid = %s", (uid,))
        assert stored.fetchone() == (1,)


def test_a_commit_that_raised_but_happened_still_looks_again_or_says_so(
    tmp_path: Path,
    fresh_dsn: str,
    _postgres: Any,
    monkeypatch: pytest.MonkeyPatch,
    log_events: list[dict[str, Any]],
) -> None:
    """The connection went during COMMIT, after the server committed, and the clean-up had
    skipped a row: 0x0000, and the second look, on the broken connection, is one warning
    instead of being passed over in silence."""
    harness = storage_harness(tmp_path / "PACSREF", options=f'index_dsn = "{fresh_dsn}"\n')
    _skipping_store(harness, monkeypatch, (None, None, _empty_patient(fresh_dsn, _postgres)))
    _commit_then_fail(monkeypatch, commits=True)
    uid, data = _instance(tmp_path, "a.dcm", generate_uid(ROOT))
    assert send_store(associate(harness), uid, data)[0][STATUS] == 0x0000
    assert _indexed(fresh_dsn, _postgres) == [(uid,)]
    [warning] = [e for e in log_events if "could not be looked at again" in e.get("log_format", "")]
    assert warning["uid"] == uid
