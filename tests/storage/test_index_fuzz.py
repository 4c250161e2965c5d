"""Random stores that move rows, concurrently on PostgreSQL and in turn on SQLite: the index
ends with no row without children, Modalities in Study as its series say, each instance where
its last store put it, and no store fails.

Small pools of instances, patients (partial identities included), studies, series and
modalities, so that overwrites move instances between series, series between studies and
studies between patients all the time. Each PostgreSQL connection stores as the storage
add-in does (``StorageAddin._publish``): the instance's lock, ``record`` with
``settle_later``, the commit, the second look (``settle_left_rows``). A run of this kind, at
6-8 connections and 300-400 stores a seed, found the deadlocks that
``tests/storage/test_index_consistency.py`` now reproduces one by one; this one stays small
enough for every CI run. A lock timeout turns a wait that would hang into a failure.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.storage.postgres import new_database, psycopg_or_skip
from tests.storage.test_parent_rows import _attributes
from tests.storage.test_parts import _module

index = _module("index")

UIDS = [f"9.{n}" for n in range(1, 11)]
PATIENTS = [
    ("PID-1", "HOSP"), ("PID-1", ""), ("PID-2", "HOSP"), ("PID-2", ""),
    ("PID-3", "OTHER"), ("", ""), ("", "HOSP"),
]  # fmt: skip
STUDIES = [f"1.2.3.{n}" for n in range(1, 5)]
SERIES = [f"1.2.9.{n}" for n in range(1, 7)]
MODALITIES = ["CT", "CT", "MR", "MR", "PT", "SR", ""]


def _random_store(rng: random.Random) -> dict[str, str]:
    patient_id, issuer = rng.choice(PATIENTS)
    return {
        "SOPInstanceUID": rng.choice(UIDS),
        "PatientID": patient_id,
        "IssuerOfPatientID": issuer,
        "PatientName": rng.choice(["DOE^JANE", "DOE^J", ""]),
        "StudyInstanceUID": rng.choice(STUDIES),
        "SeriesInstanceUID": rng.choice(SERIES),
        "Modality": rng.choice(MODALITIES),
        "AccessionNumber": rng.choice(["", "ACC1", "ACC2"]),
    }


def _problems(cursor: Any, last: dict[str, dict[str, str]]) -> list[str]:
    """What is wrong with the index, given the last committed store of each instance."""
    problems = [f"row with nothing under it: {row.what}" for row in index.empty_rows(cursor)]
    cursor.execute("SELECT id, study_instance_uid, modalities_in_study FROM study")
    for study_id, uid, modalities in cursor.fetchall():
        cursor.execute(f"SELECT modality FROM series WHERE study_fk = {int(study_id)}")
        expected = "\\".join(sorted({m for (m,) in cursor.fetchall() if m}))
        if modalities != expected:
            problems.append(f"study {uid}: Modalities in Study {modalities!r}, not {expected!r}")
    cursor.execute(
        "SELECT i.sop_instance_uid, r.series_instance_uid FROM instance i"
        " JOIN series r ON r.id = i.series_fk"
    )
    where = dict(cursor.fetchall())
    for uid, store in last.items():
        if where.get(uid) != store["SeriesInstanceUID"]:
            problems.append(f"instance {uid} in {where.get(uid)}, not {store['SeriesInstanceUID']}")
    return problems


@pytest.fixture
def postgres_dsn() -> Iterator[str]:
    with new_database(psycopg_or_skip()) as dsn:
        yield dsn


@pytest.mark.parametrize("seed", [1, 2])
def test_postgresql_concurrent_moves(tmp_path: Path, postgres_dsn: str, seed: int) -> None:
    config = index.IndexConfig(postgres_dsn, tmp_path / "unused.sqlite", True)
    index.prepare(config)
    rng = random.Random(seed)
    plans = [[_random_store(rng) for _ in range(60)] for _ in range(4)]
    last: dict[str, dict[str, str]] = {}
    errors: list[str] = []
    guard = threading.Lock()

    def store(connection: Any, attributes: dict[str, str]) -> None:
        uid = attributes["SOPInstanceUID"]
        cursor = connection.cursor()
        index.lock_instance(cursor, config, uid)
        try:
            left: list[Any] = []
            index.record(
                cursor, config, _attributes(**attributes), path=f"{uid}.dcm", size=1,
                received_at="t", calling_ae="MOD", settle_later=left,
            )  # fmt: skip
            connection.commit()
            with guard:
                last[uid] = attributes  # under the instance's lock: in commit order
            if left:
                index.settle_left_rows(connection, config, left)
        except Exception as exc:
            connection.rollback()
            with guard:
                errors.append(f"{attributes}: {type(exc).__name__}: {exc}")
        finally:
            index.unlock_instance(cursor, config, uid)

    def work(plan: list[dict[str, str]]) -> None:
        connection = index.open_connection(config)
        connection.execute("SET lock_timeout = '20s'")
        connection.commit()
        try:
            for attributes in plan:
                store(connection, attributes)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(plan,), daemon=True) for plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a store hangs"
    assert errors == []
    connection = index.open_connection(config)
    try:
        assert _problems(connection.cursor(), last) == []
    finally:
        connection.close()


@pytest.mark.parametrize("cache", [None, 4096, 3], ids=["no-cache", "cache", "small-cache"])
@pytest.mark.parametrize("seed", [1, 2])
def test_sqlite_moves(tmp_path: Path, seed: int, cache: int | None) -> None:
    config = index.IndexConfig("", tmp_path / "index.sqlite", True)
    index.prepare(config)
    parents = None if cache is None else index.ParentRows(limit=cache)
    rng = random.Random(seed)
    last: dict[str, dict[str, str]] = {}
    connection = index.open_connection(config)
    try:
        for _ in range(300):
            attributes = _random_store(rng)
            cursor = connection.cursor()
            index.begin_write(cursor, config)
            written = index.record(
                cursor, config, _attributes(**attributes), path="x.dcm", size=1,
                received_at="t", calling_ae="MOD", cache=parents,
            )  # fmt: skip
            if parents is None:
                connection.commit()
            else:
                parents.commit(connection, written)
            last[attributes["SOPInstanceUID"]] = attributes
        assert _problems(connection.cursor(), last) == []
    finally:
        connection.close()
