"""The index schema and its migrations, for SQLite and PostgreSQL.

The schema is versioned: table ``schema_version`` holds one row, the number of migrations
applied; :data:`MIGRATIONS` is the ordered list, and opening an index applies the missing ones
in one transaction each, so an index created by an older pacsref is brought up to date on
start and a newer one is refused instead of misread. Each migration is a function taking the
dialect (``"sqlite"`` or ``"postgresql"``) and returning its statements, so the two dialects
differ only where they must (the type of an auto-numbered key; SQLite rebuilds a table where
PostgreSQL alters it). SQLite migrations run with foreign key enforcement off and are checked
with ``PRAGMA foreign_key_check`` before they commit.

Patients are keyed by Patient ID together with Issuer of Patient ID (migration 2).

Tables follow the Query/Retrieve information model (PS3.4 C.6.1.1): patient, study, series,
instance, each row linked to its parent, with the unique and required keys C-FIND matches on
and what retrieval needs (the stored file's path relative to the data root, its size and
transfer syntax, when and from whom it arrived).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]


def _v1_tables(dialect: str) -> list[str]:
    key = "INTEGER PRIMARY KEY" if dialect == "sqlite" else "BIGSERIAL PRIMARY KEY"
    return [
        f"""CREATE TABLE patient (
            id {key},
            patient_id TEXT NOT NULL UNIQUE,
            patient_name TEXT NOT NULL DEFAULT '',
            patient_birth_date TEXT NOT NULL DEFAULT '',
            patient_sex TEXT NOT NULL DEFAULT ''
        )""",
        f"""CREATE TABLE study (
            id {key},
            patient_fk BIGINT NOT NULL REFERENCES patient(id),
            study_instance_uid TEXT NOT NULL UNIQUE,
            study_date TEXT NOT NULL DEFAULT '',
            study_time TEXT NOT NULL DEFAULT '',
            accession_number TEXT NOT NULL DEFAULT '',
            study_id TEXT NOT NULL DEFAULT '',
            study_description TEXT NOT NULL DEFAULT '',
            referring_physician_name TEXT NOT NULL DEFAULT '',
            modalities_in_study TEXT NOT NULL DEFAULT ''
        )""",
        f"""CREATE TABLE series (
            id {key},
            study_fk BIGINT NOT NULL REFERENCES study(id),
            series_instance_uid TEXT NOT NULL UNIQUE,
            modality TEXT NOT NULL DEFAULT '',
            series_number TEXT NOT NULL DEFAULT '',
            series_description TEXT NOT NULL DEFAULT ''
        )""",
        f"""CREATE TABLE instance (
            id {key},
            series_fk BIGINT NOT NULL REFERENCES series(id),
            sop_instance_uid TEXT NOT NULL UNIQUE,
            sop_class_uid TEXT NOT NULL,
            instance_number TEXT NOT NULL DEFAULT '',
            transfer_syntax_uid TEXT NOT NULL,
            path TEXT NOT NULL,
            size BIGINT NOT NULL,
            received_at TEXT NOT NULL,
            calling_ae TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX study_patient ON study(patient_fk)",
        "CREATE INDEX series_study ON series(study_fk)",
        "CREATE INDEX instance_series ON instance(series_fk)",
        "CREATE INDEX patient_name_ix ON patient(patient_name)",
        "CREATE INDEX study_date_ix ON study(study_date)",
        "CREATE INDEX study_accession_ix ON study(accession_number)",
    ]


def _v2_patient_issuer(dialect: str) -> list[str]:
    """Patients are keyed by Patient ID *and* Issuer of Patient ID (0010,0021).

    PS3.3 C.7.1.1 identifies a patient by the pair; keyed by Patient ID alone, two patients
    with the same ID from different issuers were one row. Existing patients get issuer ''
    (what an object without the attribute gets), so their rows and ids are kept.

    PostgreSQL alters the table in place (the v1 ``UNIQUE`` column constraint got the default
    name ``patient_patient_id_key``). SQLite cannot drop a ``UNIQUE`` constraint, so the table
    is rebuilt as https://sqlite.org/lang_altertable.html#otheralter says: create, copy with
    the ids (``study.patient_fk`` stays valid), drop, rename, re-create the index; :func:`migrate`
    runs it with foreign key enforcement off and checks the keys before committing.
    """
    if dialect == "postgresql":
        return [
            "ALTER TABLE patient ADD COLUMN issuer_of_patient_id TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE patient DROP CONSTRAINT patient_patient_id_key",
            "ALTER TABLE patient ADD CONSTRAINT patient_id_issuer_key"
            " UNIQUE (patient_id, issuer_of_patient_id)",
        ]
    return [
        """CREATE TABLE patient_v2 (
            id INTEGER PRIMARY KEY,
            patient_id TEXT NOT NULL,
            issuer_of_patient_id TEXT NOT NULL DEFAULT '',
            patient_name TEXT NOT NULL DEFAULT '',
            patient_birth_date TEXT NOT NULL DEFAULT '',
            patient_sex TEXT NOT NULL DEFAULT '',
            UNIQUE (patient_id, issuer_of_patient_id)
        )""",
        "INSERT INTO patient_v2 (id, patient_id, patient_name, patient_birth_date, patient_sex)"
        " SELECT id, patient_id, patient_name, patient_birth_date, patient_sex FROM patient",
        "DROP TABLE patient",
        "ALTER TABLE patient_v2 RENAME TO patient",
        "CREATE INDEX patient_name_ix ON patient(patient_name)",
    ]


def _v3_index_generation(dialect: str) -> list[str]:
    """A counter that writers other than the storing server bump (``check --repair``).

    The server keeps the patient, study and series rows it last wrote in memory and skips
    upserts that could not change them (``index.ParentRows``). A repair run while it serves
    may rewrite such a row behind it; the server reads this counter in each write
    transaction and forgets its cache when it moved. One row, one column, both dialects.
    """
    return [
        "CREATE TABLE index_generation (value INTEGER NOT NULL)",
        "INSERT INTO index_generation (value) VALUES (0)",
    ]


#: Ordered migrations; the schema version is how many have been applied.
MIGRATIONS: Sequence[Callable[[str], list[str]]] = (
    _v1_tables,
    _v2_patient_issuer,
    _v3_index_generation,
)
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaError(RuntimeError):
    """The index was written by a newer pacsref (its schema version is ahead of ours), or a
    migration would leave broken references (SQLite: ``PRAGMA foreign_key_check``)."""


def migrate(connection: Any, dialect: str) -> int:
    """Bring the index behind the DB-API ``connection`` to :data:`SCHEMA_VERSION`.

    Each migration and its version bump commit together, so a crash mid-way leaves the
    index at a consistent earlier version. Returns the number of migrations applied.
    """
    cursor = connection.cursor()
    cursor.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    cursor.execute("SELECT version FROM schema_version")
    row = cursor.fetchone()
    if row is None:
        cursor.execute("INSERT INTO schema_version (version) VALUES (0)")
        current = 0
    else:
        current = int(row[0])
    connection.commit()
    if current > SCHEMA_VERSION:
        raise SchemaError(
            f"index schema version {current} is newer than this pacsref's {SCHEMA_VERSION}"
        )
    if current == SCHEMA_VERSION:
        return 0
    if dialect == "sqlite":
        return _migrate_sqlite(connection, cursor, current)
    applied = 0
    for version in range(current, SCHEMA_VERSION):
        # PostgreSQL: the row lock makes a second server starting on the same index wait, then
        # see the version the first one committed (DDL is transactional there).
        cursor.execute("SELECT version FROM schema_version FOR UPDATE")
        if int(cursor.fetchone()[0]) != version:
            connection.rollback()
            continue
        for statement in MIGRATIONS[version](dialect):
            cursor.execute(statement)
        cursor.execute("UPDATE schema_version SET version = %s", (version + 1,))
        connection.commit()
        applied += 1
    return applied


def _migrate_sqlite(connection: Any, cursor: Any, current: int) -> int:
    """SQLite: each migration in a ``BEGIN IMMEDIATE`` transaction, foreign keys not enforced.

    A table rebuild drops a table other tables refer to; with enforcement on, that ``DROP``
    deletes the rows first and fails on the references. ``PRAGMA foreign_keys`` is a no-op
    inside a transaction, so it is switched off before ``BEGIN`` and restored after the commit;
    ``PRAGMA foreign_key_check`` then verifies every reference before the commit.
    """
    (enforced,) = cursor.execute("PRAGMA foreign_keys").fetchone()
    cursor.execute("PRAGMA foreign_keys=OFF")
    applied = 0
    try:
        for version in range(current, SCHEMA_VERSION):
            cursor.execute("BEGIN IMMEDIATE")
            try:
                # Another process may have migrated while we waited for the write lock.
                (now,) = cursor.execute("SELECT version FROM schema_version").fetchone()
                if int(now) != version:
                    connection.rollback()
                    if int(now) >= SCHEMA_VERSION:
                        break
                    continue
                for statement in MIGRATIONS[version]("sqlite"):
                    cursor.execute(statement)
                broken = cursor.execute("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise SchemaError(
                        f"foreign key violations (table, rowid, parent, fk) after migration"
                        f" {version + 1}, rolled back: {broken[:5]}"
                    )
                cursor.execute("UPDATE schema_version SET version = ?", (version + 1,))
                connection.commit()
                applied += 1
            except BaseException:
                connection.rollback()
                raise
    finally:
        cursor.execute(f"PRAGMA foreign_keys={'ON' if enforced else 'OFF'}")
    return applied
