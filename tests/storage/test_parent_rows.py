"""The parent-row cache: unchanged patient, study and series rows are not written again, and
the index ends exactly as it would without the cache (values, ids, Modalities in Study)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.storage.test_parts import _module

index = _module("index")
writer = _module("writer")


def _attributes(**overrides: str) -> Any:
    values = dict.fromkeys(writer.INDEX_KEYWORDS, "")
    values.update(
        PatientID="PID-1",
        PatientName="DOE^JANE",
        StudyInstanceUID="1.2.3.1",
        SeriesInstanceUID="1.2.3.1.1",
        Modality="CT",
        SOPClassUID="1.2.840.10008.5.1.4.1.1.2",
    )
    values.update(overrides)
    return writer.IndexAttributes(values, "1.2.840.10008.1.2.1")


def _step(statement: str) -> str:
    """``INSERT INTO patient ...`` -> ``INSERT patient``; ``UPDATE study SET ...`` ->
    ``UPDATE study``; ``SELECT DISTINCT modality ...`` -> ``SELECT modality``."""
    words = statement.split()
    return f"{words[0]} {words[1] if words[0] == 'UPDATE' else words[2]}"


class Index:
    """An embedded index with a statement counter, written the way the add-in writes it."""

    def __init__(self, tmp_path: Path, cache: Any) -> None:
        self.config = index.IndexConfig("", tmp_path / "index.sqlite", False)
        index.prepare(self.config)
        self.connection = index.open_connection(self.config)
        self.cache = cache
        self.statements: list[str] = []
        self.connection.set_trace_callback(self.statements.append)

    def store(self, uid: str, **overrides: str) -> list[str]:
        """Record one instance; the statements it took (BEGIN, COMMIT and the cache's read of
        the index generation excluded: they are the same for every store)."""
        self.statements.clear()
        cursor = self.connection.cursor()
        index.begin_write(cursor, self.config)
        written = index.record(
            cursor, self.config, _attributes(SOPInstanceUID=uid, **overrides),
            path=f"{uid}.dcm", size=1, received_at="t", calling_ae="MOD", cache=self.cache,
        )  # fmt: skip
        self.cache.commit(self.connection, written)
        return [
            _step(statement)
            for statement in self.statements[1:-1]
            if statement != "SELECT value FROM index_generation"
        ]

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.connection.execute(sql).fetchall()


def test_second_instance_of_a_series_writes_only_its_own_row(tmp_path: Path) -> None:
    db = Index(tmp_path, index.ParentRows())
    first = db.store("1.2.3.1.1.1")
    assert first == [
        "INSERT patient", "INSERT study", "INSERT series", "INSERT instance",
        "SELECT modality", "UPDATE study",
    ]  # fmt: skip
    assert db.store("1.2.3.1.1.2") == ["INSERT instance"]
    assert db.rows("SELECT count(*) FROM instance") == [(2,)]
    assert db.rows("SELECT series_fk FROM instance GROUP BY series_fk") == [(1,)]


def test_a_changed_value_writes_that_row_again(tmp_path: Path) -> None:
    """A corrected patient name updates the patient row; study and series stay cached."""
    db = Index(tmp_path, index.ParentRows())
    db.store("1.2.3.1.1.1")
    assert db.store("1.2.3.1.1.2", PatientName="DOE^JANE^M") == [
        "INSERT patient", "INSERT instance",
    ]  # fmt: skip
    assert db.rows("SELECT patient_name FROM patient") == [("DOE^JANE^M",)]
    # and back: the cache holds the last committed values, not the first ones
    assert db.store("1.2.3.1.1.3") == ["INSERT patient", "INSERT instance"]
    assert db.rows("SELECT patient_name FROM patient") == [("DOE^JANE",)]


def test_a_new_series_recomputes_modalities_in_study(tmp_path: Path) -> None:
    db = Index(tmp_path, index.ParentRows())
    db.store("1.2.3.1.1.1")
    steps = db.store("1.2.3.1.2.1", SeriesInstanceUID="1.2.3.1.2", Modality="PR")
    assert steps == ["INSERT series", "INSERT instance", "SELECT modality", "UPDATE study"]
    assert db.rows("SELECT modalities_in_study FROM study") == [("CT\\PR",)]


@pytest.mark.parametrize("cached", [True, False])
def test_index_is_the_same_with_and_without_the_cache(tmp_path: Path, cached: bool) -> None:
    """The cache only skips statements whose effect is already in the index."""
    db = Index(tmp_path / str(cached), index.ParentRows(limit=4096 if cached else 0))
    for n, (series, modality, name) in enumerate([
        ("1.2.3.1.1", "CT", "A"), ("1.2.3.1.1", "CT", "A"), ("1.2.3.1.2", "MR", "A"),
        ("1.2.3.1.1", "CT", "B"), ("1.2.3.1.2", "MR", "B"), ("1.2.3.1.1", "CT", "B"),
    ]):  # fmt: skip
        db.store(f"9.{n}", SeriesInstanceUID=series, Modality=modality, PatientName=name)
    assert db.rows("SELECT id, patient_id, patient_name FROM patient") == [(1, "PID-1", "B")]
    assert db.rows("SELECT id, patient_fk, modalities_in_study FROM study") == [(1, 1, "CT\\MR")]
    assert db.rows("SELECT id, study_fk, modality FROM series ORDER BY id") == [
        (1, 1, "CT"), (2, 1, "MR"),
    ]  # fmt: skip
    assert db.rows("SELECT sop_instance_uid, series_fk FROM instance ORDER BY id") == [
        ("9.0", 1), ("9.1", 1), ("9.2", 2), ("9.3", 1), ("9.4", 2), ("9.5", 1),
    ]  # fmt: skip


def test_a_failed_commit_leaves_nothing_in_the_cache(tmp_path: Path) -> None:
    """Rows of a rolled-back transaction must not be cached: their ids do not exist."""
    db = Index(tmp_path, index.ParentRows())
    cursor = db.connection.cursor()
    index.begin_write(cursor, db.config)
    written = index.record(cursor, db.config, _attributes(SOPInstanceUID="1.1"), path="p",
                           size=1, received_at="t", calling_ae="MOD", cache=db.cache)  # fmt: skip

    class FailingCommit:
        def commit(self) -> None:
            raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError):
        db.cache.commit(FailingCommit(), written)
    db.connection.rollback()
    assert len(db.cache) == 0
    assert db.store("1.2") == [
        "INSERT patient", "INSERT study", "INSERT series", "INSERT instance",
        "SELECT modality", "UPDATE study",
    ]  # fmt: skip


def test_the_oldest_rows_are_forgotten_beyond_the_limit() -> None:
    cache = index.ParentRows(limit=2)

    class Connection:
        def commit(self) -> None:
            pass

    for n in range(3):
        cache.commit(Connection(), [(("series", (str(n),)), ((str(n),), n))])
    assert len(cache) == 2
    assert cache.lookup("series", ("0",), ("0",)) is None
    assert cache.lookup("series", ("2",), ("2",)) == 2
    assert cache.lookup("series", ("2",), ("other",)) is None


def test_rows_rewritten_by_a_repair_are_not_skipped(tmp_path: Path) -> None:
    """``check --repair`` beside the server rewrites a patient row and bumps the generation:
    the next store of the cached values writes the row again instead of skipping it."""
    db = Index(tmp_path, index.ParentRows())
    db.store("1.2.3.1.1.1", PatientName="DOE^JANE")
    assert db.store("1.2.3.1.1.2", PatientName="DOE^JANE") == ["INSERT instance"]
    repair = index.open_connection(db.config)
    repair.execute("BEGIN IMMEDIATE")
    repair.execute("UPDATE patient SET patient_name = 'DOE^J'")
    index.bump_generation(repair.cursor(), db.config)
    repair.commit()
    repair.close()
    assert db.store("1.2.3.1.1.3", PatientName="DOE^JANE")[0] == "INSERT patient"
    assert db.rows("SELECT patient_name FROM patient") == [("DOE^JANE",)]
