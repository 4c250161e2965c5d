"""The index schema and its migrations, for SQLite and PostgreSQL.

The schema is versioned: table ``schema_version`` holds one row, the number of migrations
applied; :data:`MIGRATIONS` is the ordered list, and opening an index applies the missing ones
in one transaction each, so an index created by an older pacsref is brought up to date on
start and a newer one is refused instead of misread. Each migration is a function taking the
dialect (``"sqlite"`` or ``"postgresql"``) and returning its statements, so the two dialects
differ only where they must (the type of an auto-numbered key).

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


#: Ordered migrations; the schema version is how many have been applied.
MIGRATIONS: Sequence[Callable[[str], list[str]]] = (_v1_tables,)
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaError(RuntimeError):
    """The index was written by a newer pacsref (its schema version is ahead of ours)."""


def _param(dialect: str) -> str:
    return "?" if dialect == "sqlite" else "%s"


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
    applied = 0
    for version in range(current, SCHEMA_VERSION):
        if dialect == "sqlite":
            cursor.execute("BEGIN IMMEDIATE")
        for statement in MIGRATIONS[version](dialect):
            cursor.execute(statement)
        p = _param(dialect)
        cursor.execute(f"UPDATE schema_version SET version = {p}", (version + 1,))
        connection.commit()
        applied += 1
    return applied
