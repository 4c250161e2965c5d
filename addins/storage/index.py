"""The SQL index of stored objects, through DB-API drivers and ``twisted.enterprise.adbapi``.

SQLite (the standard library's ``sqlite3``) is the embedded default, at
``<server dir>/data/index.sqlite``, in WAL mode: readers (a future C-FIND) never block the
writer, and a commit appends to the log instead of rewriting pages. ``synchronous=NORMAL`` when
durability is "fsync" (the stored file is on disk before the C-STORE-RSP, and a row lost with
the log's tail is rebuilt from it by ``check --repair``: see ``_sqlite_setup``), ``OFF``
when "relaxed".
PostgreSQL (``psycopg`` 3) is chosen by a ``postgresql://`` DSN so several servers can share
one index; relaxed durability there is ``synchronous_commit = off``.

The same SQL serves both: ``INSERT ... ON CONFLICT ... DO UPDATE ... RETURNING`` exists in
SQLite >= 3.35 and PostgreSQL >= 9.5; only the parameter marker differs (``?`` / ``%s``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.enterprise import adbapi

from .schema import migrate
from .writer import IndexAttributes

__all__ = [
    "INDEX_FILE",
    "IndexConfig",
    "InstanceRow",
    "ParentRows",
    "lock_instance",
    "make_pool",
    "open_connection",
    "unlock_instance",
]

#: The SQLite index file, relative to the data root.
INDEX_FILE = "index.sqlite"


@dataclass(frozen=True, slots=True)
class IndexConfig:
    """Where the index is and how hard it must hold on to commits."""

    dsn: str
    sqlite_path: Path
    durable: bool

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return "postgresql" if self.dsn else "sqlite"

    @property
    def param(self) -> str:
        """The driver's parameter marker."""
        return "%s" if self.dsn else "?"

    def sql(self, statement: str) -> str:
        """``statement`` written with ``?`` markers, in this driver's style."""
        return statement if not self.dsn else statement.replace("?", "%s")


@dataclass(frozen=True, slots=True)
class InstanceRow:
    """One ``instance`` row as ``check`` needs it."""

    sop_instance_uid: str
    path: str
    size: int
    #: When the store that wrote the row took it (``datetime.isoformat``, UTC, milliseconds):
    #: a file modified later is not the one the row describes (:mod:`.check`).
    received_at: str


def _sqlite_setup(connection: sqlite3.Connection, durable: bool) -> None:
    connection.execute("PRAGMA journal_mode=WAL")
    # Durable: NORMAL, not FULL. In WAL mode NORMAL commits survive a crash of the
    # process (kill -9) but the last ones may roll back after a power loss; the stored
    # files themselves are fsynced before the commit, and `pacsref server check --repair`
    # re-indexes any file whose row was lost (docs/storage.md). This saves one fsync per
    # stored object.
    connection.execute(f"PRAGMA synchronous={'NORMAL' if durable else 'OFF'}")
    connection.execute("PRAGMA foreign_keys=ON")


def _sqlite_kwargs(config: IndexConfig, wait: float = 30.0) -> dict[str, Any]:
    # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a writer takes the
    # write lock before reading what it will update (no SQLITE_BUSY upgrade failures);
    # timeout: wait up to 30 s for another writer (another association) to commit.
    return {
        "database": str(config.sqlite_path),
        "timeout": wait,
        "isolation_level": None,
        "check_same_thread": False,
    }


def open_connection(config: IndexConfig, wait: float = 30.0) -> Any:
    """A plain DB-API connection (start-up migration, ``pacsref server check``, inline store).

    ``wait``: seconds SQLite waits for another writer before ``BEGIN IMMEDIATE`` fails with
    "database is locked" (0 for the inline store, which must not wait on the reactor);
    PostgreSQL: seconds to wait for the connection (at least 1; libpq's ``connect_timeout``).
    """
    if config.dsn:
        import psycopg

        connection = psycopg.connect(config.dsn, connect_timeout=max(1, round(wait)))
        if not config.durable:
            connection.execute("SET synchronous_commit = off")
        return connection
    config.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(**_sqlite_kwargs(config, wait))
    _sqlite_setup(connection, config.durable)
    return connection


def prepare(config: IndexConfig) -> int:
    """Create the index if needed and apply missing migrations; returns how many ran."""
    connection = open_connection(config)
    try:
        return migrate(connection, config.dialect)
    finally:
        connection.close()


def make_pool(config: IndexConfig, reactor: Any, max_threads: int) -> adbapi.ConnectionPool:
    """An adbapi pool of up to ``max_threads`` connections, set up like :func:`open_connection`."""
    if config.dsn:

        def open_pg(connection: Any) -> None:
            if not config.durable:
                connection.execute("SET synchronous_commit = off")
                connection.commit()

        return adbapi.ConnectionPool(
            "psycopg",
            config.dsn,
            cp_min=1,
            cp_max=max_threads,
            cp_openfun=open_pg,
            cp_reactor=reactor,
            cp_reconnect=True,
        )
    return adbapi.ConnectionPool(
        "sqlite3",
        cp_min=1,
        cp_max=max_threads,
        cp_openfun=lambda c: _sqlite_setup(c, config.durable),
        cp_reactor=reactor,
        **_sqlite_kwargs(config),
    )


def begin_write(cursor: Any, config: IndexConfig) -> None:
    """Start the write transaction (SQLite: take the write lock now)."""
    if not config.dsn:
        cursor.execute("BEGIN IMMEDIATE")


def lock_instance(cursor: Any, config: IndexConfig, uid: str) -> None:
    """Hold ``uid`` against the other servers sharing this index, until :func:`unlock_instance`.

    Servers sharing a PostgreSQL index share its storage root too (docs/storage.md), and
    the duplicates policy is decided by :func:`find_path` before anything is locked in the
    database: two servers receiving the same SOP Instance UID at once would both find no row,
    both rename onto the same stored path and both answer success, even under "refuse" or
    "keep-first". Taken before that look-up and released after the commit, this lock makes
    the second server wait, then see the first one's row.

    PostgreSQL: a session-level advisory lock on a 64-bit hash of the UID (two UIDs may share
    a hash; they then only wait for each other). Blocks until it is granted; a server that
    dies holding it loses it with its connection. Session-level, not transaction-level, so
    that it does not depend on how the caller's statements fall into transactions: it
    survives commit *and rollback*, so the caller must call :func:`unlock_instance` in a
    ``finally``, after the transaction's commit or rollback (releasing it before the commit
    would let the other server look before the row is visible). Like every advisory lock it
    is counted: taken twice on one connection, it is held until released twice.

    SQLite: nothing. The add-in already serialises an instance within the process, and an
    embedded index has no other server writing to the same storage root.
    """
    if config.dsn:
        cursor.execute(config.sql("SELECT pg_advisory_lock(hashtextextended(?, 0))"), (uid,))


def unlock_instance(cursor: Any, config: IndexConfig, uid: str) -> None:
    """Release what :func:`lock_instance` took for ``uid``; call it in a ``finally``.

    PostgreSQL: a transaction that failed ("current transaction is aborted") refuses every
    statement, the unlock too, so it is rolled back first: nothing in it can be committed any
    more. A transaction still open (the caller did not end it: a refused duplicate only
    read) is left open; one the unlock had to begin is committed again at once, so that the
    connection does not go back to its pool idle in a transaction. A connection that is
    closed or broken has nothing to release: the server ended its session and the lock with
    it.

    SQLite: nothing.
    """
    if not config.dsn:
        return
    from psycopg.pq import TransactionStatus

    connection = cursor.connection
    status = connection.info.transaction_status
    if connection.closed or status == TransactionStatus.UNKNOWN:
        return
    if status == TransactionStatus.INERROR:
        connection.rollback()
        status = TransactionStatus.IDLE
    cursor.execute(config.sql("SELECT pg_advisory_unlock(hashtextextended(?, 0))"), (uid,))
    if status == TransactionStatus.IDLE:
        connection.commit()


def find_path(cursor: Any, config: IndexConfig, sop_instance_uid: str) -> str | None:
    """The stored path of ``sop_instance_uid``, or None if it is not indexed."""
    cursor.execute(
        config.sql("SELECT path FROM instance WHERE sop_instance_uid = ?"), (sop_instance_uid,)
    )
    row = cursor.fetchone()
    return None if row is None else str(row[0])


def instance_written(
    cursor: Any, config: IndexConfig, sop_instance_uid: str
) -> tuple[str, int] | None:
    """``(received_at, size)`` of the indexed instance: which store wrote its row; or None."""
    return _text_and_size(cursor, config, "received_at", sop_instance_uid)


def _text_and_size(
    cursor: Any, config: IndexConfig, column: str, sop_instance_uid: str
) -> tuple[str, int] | None:
    cursor.execute(
        config.sql(f"SELECT {column}, size FROM instance WHERE sop_instance_uid = ?"),
        (sop_instance_uid,),
    )
    row = cursor.fetchone()
    return None if row is None else (str(row[0]), int(row[1]))


def _upsert(
    cursor: Any,
    config: IndexConfig,
    table: str,
    key: str | tuple[str, ...],
    row: dict[str, Any],
    keep: frozenset[str] = frozenset(),
    *,
    unless: tuple[str, tuple[Any, ...]] | None = None,
    same: str | None = None,
) -> tuple[Any, ...] | None:
    """Insert ``row`` or update the row with the same ``key`` (a column, or the columns of a
    composite unique constraint); returns the row as stored: its id, then ``row``'s columns.

    ``keep``: text columns in which an empty incoming value leaves the stored one alone. A
    study's objects do not all carry every attribute (a Presentation State or Key Object
    Selection often has no Accession Number or Study Description); written as is, the last
    one would blank what the images stored and C-FIND on those keys would no longer find the
    study. A non-empty value still replaces the stored one: the latest object wins, as a
    corrected name should. ``COALESCE(NULLIF(..))`` means the same on SQLite and PostgreSQL.

    Two conditions let the caller decide in the same statement, so that the usual case costs
    no statement more than a plain upsert; both return None when they held nothing back:

    * ``unless``: ``(query, parameters)``; when the query finds a row, nothing is inserted or
      updated (``INSERT ... SELECT ... WHERE NOT EXISTS``; SQLite needs the ``WHERE`` there
      anyway to parse ``ON CONFLICT`` after a ``SELECT``);
    * ``same``: a column; an existing row whose value differs is not updated (``DO UPDATE
      ... WHERE``), so that the caller can read the old value first.
    """
    keys = (key,) if isinstance(key, str) else key
    columns = list(row)
    marks = ", ".join("?" for _ in columns)
    updates = ", ".join(
        f"{c} = COALESCE(NULLIF(excluded.{c}, ''), {table}.{c})" if c in keep
        else f"{c} = excluded.{c}"
        for c in columns if c not in keys
    )  # fmt: skip
    values = tuple(row.values())
    source = f"VALUES ({marks})"
    if unless is not None:
        query, parameters = unless
        source = f"SELECT {marks} WHERE NOT EXISTS ({query})"
        values += parameters
    guard = "" if same is None else f" WHERE {table}.{same} = excluded.{same}"
    cursor.execute(
        config.sql(
            f"INSERT INTO {table} ({', '.join(columns)}) {source} "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}{guard} "
            f"RETURNING id, {', '.join(columns)}"
        ),
        values,
    )
    stored = cursor.fetchone()
    return None if stored is None else tuple(stored)


#: A pending :class:`ParentRows` entry: ((table, key), (values as stored, row id)).
ParentEntry = tuple[tuple[str, tuple[Any, ...]], tuple[tuple[Any, ...], int]]


class ParentRows:
    """The patient, study and series rows this process last wrote, with their values and ids.

    A modality sends a study's instances one after another, each carrying the same patient,
    study and series attributes; upserting three unchanged rows and recomputing Modalities in
    Study for every instance is most of the index's work for small objects. When the upsert
    could not change the row this process last committed for the key - every incoming value
    equals the stored one or is empty, which the upsert keeps the stored value over (see
    :func:`_upsert`) - :func:`record` uses the id and skips the statements.

    An entry is the row as the upsert returned it, not as it was sent: after an image with an
    Accession Number and a Presentation State without one, the row still holds the number, so
    the study's next image finds its row cached, and an object bringing an Accession Number
    to a row stored without one does not.

    Only valid while this process is the index's one writer of parent rows (the embedded
    SQLite index; ``check --repair`` run beside the server rewrites and deletes rows, and
    bumps the index's generation so that the cache is dropped: :meth:`follow_generation`); a
    shared PostgreSQL index is written by other servers too, so it gets no cache. Entries are
    added only after the commit that wrote them (:meth:`commit`), so a rolled-back transaction
    never leaves an id behind, and the whole cache is dropped when a store fails
    (:meth:`clear`).
    """

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._rows: dict[tuple[str, tuple[Any, ...]], tuple[tuple[Any, ...], int]] = {}
        self._lock = threading.Lock()
        #: The index's generation the entries belong to (:meth:`follow_generation`).
        self._generation: int | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def lookup(self, table: str, key: tuple[Any, ...], values: tuple[Any, ...]) -> int | None:
        """The id of the row ``table``/``key`` if upserting ``values`` would leave it as
        it was last committed: each value equal to the stored one, or ``""`` (kept)."""
        with self._lock:
            hit = self._rows.get((table, key))
        if hit is None:
            return None
        stored, row_id = hit
        if stored == values or all(
            new == old or new == "" for new, old in zip(values, stored, strict=True)
        ):
            return row_id
        return None

    def entry(self, table: str, key: tuple[Any, ...]) -> tuple[tuple[Any, ...], int] | None:
        """The values and id last committed for ``table``/``key``, whatever would be upserted
        now: where a study row points (:func:`_patient`)."""
        with self._lock:
            return self._rows.get((table, key))

    def commit(self, connection: Any, entries: list[ParentEntry]) -> None:
        """Commit ``connection`` and remember the rows it wrote, as one step.

        One step, so that the cache learns concurrent writers' rows in their commit order
        (SQLite serialises the writers; without the lock a slower thread could record an
        older value after a newer one).
        """
        with self._lock:
            connection.commit()
            self._add(entries)

    def _add(self, entries: list[ParentEntry]) -> None:
        """Remember rows just committed; the oldest entries go beyond ``limit``."""
        for where, row in entries:
            self._rows.pop(where, None)  # re-insert: dict order is age order
            self._rows[where] = row
        while len(self._rows) > self._limit:
            del self._rows[next(iter(self._rows))]

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()

    def follow_generation(self, cursor: Any, config: IndexConfig) -> None:
        """Forget every entry if another writer changed the index since the last call.

        Call it inside the write transaction, before :meth:`lookup`: ``check --repair``
        bumps the counter in the transaction that rewrites rows
        (:func:`bump_generation`), so a value read under the write lock is current until
        this transaction's commit.
        """
        cursor.execute("SELECT value FROM index_generation")
        (generation,) = cursor.fetchone()
        with self._lock:
            if generation != self._generation:
                self._rows.clear()
                self._generation = generation


def bump_generation(cursor: Any, config: IndexConfig) -> None:
    """Tell storing servers that rows changed behind them (schema migration 3); in the
    transaction that changes them."""
    cursor.execute("UPDATE index_generation SET value = value + 1")


def _parent(
    cursor: Any,
    config: IndexConfig,
    cache: ParentRows | None,
    pending: list[ParentEntry],
    table: str,
    key: tuple[str, ...],
    row: dict[str, Any],
) -> tuple[int, bool]:
    """The id of the patient/study/series ``row``; True when it was written (not cached).

    Every column but the key and the parent's id (``*_fk``) keeps its stored value over an
    empty one (:func:`_keep`).
    """
    key_values = tuple(row[column] for column in key)
    if cache is not None:
        cached = cache.lookup(table, key_values, tuple(row.values()))
        if cached is not None:
            return cached, False
    upserted = _upsert(cursor, config, table, key, row, _keep(row, key))
    assert upserted is not None  # no condition: always written
    return _written(pending, table, key_values, upserted), True


def _keep(row: dict[str, Any], key: tuple[str, ...]) -> frozenset[str]:
    """The columns of a parent ``row`` whose stored value an empty one leaves alone: all but
    the key and the parent's id (``*_fk``), a number, never empty (``NULLIF(id, '')`` would
    not even type-check on PostgreSQL)."""
    return frozenset(c for c in row if c not in key and not c.endswith("_fk"))


def _written(
    pending: list[ParentEntry], table: str, key_values: tuple[Any, ...], upserted: tuple[Any, ...]
) -> int:
    """Note the row an upsert returned for the cache (after the commit); its id."""
    row_id, *stored = upserted
    pending.append(((table, key_values), (tuple(stored), int(row_id))))
    return int(row_id)


#: A patient is Patient ID *and* Issuer of Patient ID (PS3.3 C.7.1.1; schema migration 2).
_PATIENT_KEY = ("patient_id", "issuer_of_patient_id")


def _patient(
    cursor: Any,
    config: IndexConfig,
    cache: ParentRows | None,
    pending: list[ParentEntry],
    row: dict[str, Any],
    study_uid: str,
) -> int:
    """The id of the patient the study ``study_uid`` is to belong to, from the patient ``row``.

    An object may carry less of the patient's identity than the study's earlier ones: Issuer
    of Patient ID is Type 3 (Presentation States and SRs often lack it) and Patient ID Type 2
    (it may be empty). Upserted as is, its identity would be another patient row, ``(ID, "")``
    or ``("", "")``, and the study would move there: C-FIND for the patient's ID and issuer
    would no longer find it. So an object whose Patient ID is empty, or whose issuer is empty
    while its Patient ID is the one of the study's patient, leaves an existing study with its
    patient, and neither creates nor updates a patient row for that partial identity: an
    empty value never blanks a stored one, and this is the key's form of it. A new study
    still gets the object's patient, whatever it is; a different non-empty identity still
    wins (the latest object's correction).

    A full identity (both non-empty) costs what it did: the patient's upsert, or the cache.
    A partial one is upserted only if the study's stored patient does not hold more of it:
    one statement (:func:`_upsert`'s ``unless``), a second only when the study keeps its
    patient (read its id). The cache answers it only when it also holds the study row,
    linked to that very patient row: a study it does not know may belong to anyone.
    """
    patient_id, issuer = row["patient_id"], row["issuer_of_patient_id"]
    if patient_id and issuer:
        return _parent(cursor, config, cache, pending, "patient", _PATIENT_KEY, row)[0]
    if cache is not None:
        cached = cache.lookup("patient", (patient_id, issuer), tuple(row.values()))
        study = cache.entry("study", (study_uid,))
        if cached is not None and study is not None and study[0][0] == cached:
            return cached  # study[0][0]: the study row's patient_fk, its first column
    # The study's stored patient holds more of the identity than this object:
    if patient_id:  # the same Patient ID, with an issuer
        holds_more = "p.patient_id = ? AND p.issuer_of_patient_id <> ''"
    else:  # any other patient than ("", this issuer)
        holds_more = "(p.patient_id <> '' OR p.issuer_of_patient_id <> ?)"
    unless = (
        "SELECT 1 FROM study s JOIN patient p ON p.id = s.patient_fk"
        f" WHERE s.study_instance_uid = ? AND {holds_more}",
        (study_uid, patient_id or issuer),
    )
    upserted = _upsert(
        cursor, config, "patient", _PATIENT_KEY, row, _keep(row, _PATIENT_KEY), unless=unless
    )
    if upserted is None:
        # The study keeps its patient. PostgreSQL: that patient's row is locked (KEY SHARE)
        # against a repair deleting it (:func:`drop_empty_parents`, whose first lock is the
        # patient's): one holding it already finishes first, and the row is then not found
        # if it deleted it; else the study this store writes would name a deleted patient.
        lock = " FOR KEY SHARE OF p" if config.dsn else ""
        cursor.execute(
            config.sql(
                "SELECT s.patient_fk FROM study s JOIN patient p ON p.id = s.patient_fk"
                f" WHERE s.study_instance_uid = ?{lock}"
            ),
            (study_uid,),
        )
        kept = cursor.fetchone()
        if kept is not None:
            return int(kept[0])
        # PostgreSQL: the study is gone since the upsert looked (a repair deleted it, its
        # last instance's file lost): the object's study is a new one, which gets its patient.
        upserted = _upsert(cursor, config, "patient", _PATIENT_KEY, row, _keep(row, _PATIENT_KEY))
        assert upserted is not None  # no condition: always written
    return _written(pending, "patient", (patient_id, issuer), upserted)


def _child(
    cursor: Any,
    config: IndexConfig,
    cache: ParentRows | None,
    pending: list[ParentEntry],
    table: str,
    key: str,
    row: dict[str, Any],
    parent: str,
) -> tuple[int, bool, int | None]:
    """The id of the study or series ``row``, True when it was written, and the row it hung
    from before (the ``parent`` column's old value) when the object moves it to another
    patient or study, else None.

    The old parent is read only when there is one: the upsert leaves a row of another parent
    alone (:func:`_upsert`'s ``same``), so a new row or one of the same parent costs one
    statement, as before; a moved one, a read and the upsert again.
    """
    key_values = (row[key],)
    if cache is not None:
        cached = cache.lookup(table, key_values, tuple(row.values()))
        if cached is not None:
            return cached, False, None
    keep = _keep(row, (key,))
    upserted = _upsert(cursor, config, table, key, row, keep, same=parent)
    moved_from = None
    if upserted is None:
        cursor.execute(config.sql(f"SELECT {parent} FROM {table} WHERE {key} = ?"), key_values)
        stored = cursor.fetchone()
        # None if the row is gone since the upsert looked (a repair deleted it, its last
        # instance's file lost; PostgreSQL's upsert locks the row it leaves alone, so it
        # should not be): a new row then, of no other parent.
        moved_from = None if stored is None else int(stored[0])
        upserted = _upsert(cursor, config, table, key, row, keep)
        assert upserted is not None  # no condition: always written
    return _written(pending, table, key_values, upserted), True, moved_from


def _instance(cursor: Any, config: IndexConfig, row: dict[str, Any]) -> int | None:
    """Write the instance ``row``; the series it belonged to before when a new version of it
    (``duplicates = "overwrite"``) is of another series, else None. One statement unless it
    moved, as :func:`_child`."""
    if _upsert(cursor, config, "instance", "sop_instance_uid", row, same="series_fk"):
        return None
    cursor.execute(
        config.sql("SELECT series_fk FROM instance WHERE sop_instance_uid = ?"),
        (row["sop_instance_uid"],),
    )
    stored = cursor.fetchone()
    _upsert(cursor, config, "instance", "sop_instance_uid", row)
    return None if stored is None else int(stored[0])


def _modalities(cursor: Any, config: IndexConfig, study: int) -> None:
    """Compute Modalities in Study (0008,0061) of ``study`` again from its series."""
    cursor.execute(
        config.sql("SELECT DISTINCT modality FROM series WHERE study_fk = ? ORDER BY modality"),
        (study,),
    )
    modalities = "\\".join(str(m) for (m,) in cursor.fetchall() if m)
    cursor.execute(
        config.sql("UPDATE study SET modalities_in_study = ? WHERE id = ?"), (modalities, study)
    )


def record(
    cursor: Any,
    config: IndexConfig,
    attributes: IndexAttributes,
    *,
    path: str,
    size: int,
    received_at: str,
    calling_ae: str,
    cache: ParentRows | None = None,
    settle_later: list[Above] | None = None,
) -> list[ParentEntry]:
    """Insert or update the patient, study, series and instance rows of one stored object.

    An object that moves its study to another patient, its series to another study, or
    itself (a new version) to another series may leave the rows it moved from empty: they are
    deleted in the same transaction (:func:`drop_empty_parents`), or C-FIND would still answer
    a patient without studies, a study without series. Deleting them on SQLite bumps the
    index's generation, so that no cache keeps their ids (:meth:`ParentRows.follow_generation`;
    on PostgreSQL nothing reads it, and one row every moving store updated would serialise
    them all and could deadlock one with a repair).

    ``settle_later`` (a store on PostgreSQL): instead of waiting for the old rows' locks,
    which could deadlock with a store moving rows the other way, a row another transaction
    holds is skipped here and its rows put in the list, for :func:`settle_left_rows` after
    the commit (both stores and ``check --repair`` pass it). Without it the deletes wait for
    the locks.
    Returns the parent rows written, for ``cache.commit``.
    """
    a = attributes
    pending: list[ParentEntry] = []
    if cache is not None:
        cache.follow_generation(cursor, config)
    patient = _patient(cursor, config, cache, pending, {
        "patient_id": a["PatientID"],
        "issuer_of_patient_id": a["IssuerOfPatientID"],
        "patient_name": a["PatientName"],
        "patient_birth_date": a["PatientBirthDate"],
        "patient_sex": a["PatientSex"],
    }, a["StudyInstanceUID"])  # fmt: skip
    study, _, old_patient = _child(cursor, config, cache, pending, "study", "study_instance_uid", {
        "patient_fk": patient,
        "study_instance_uid": a["StudyInstanceUID"],
        "study_date": a["StudyDate"],
        "study_time": a["StudyTime"],
        "accession_number": a["AccessionNumber"],
        "study_id": a["StudyID"],
        "study_description": a["StudyDescription"],
        "referring_physician_name": a["ReferringPhysicianName"],
    }, "patient_fk")  # fmt: skip
    series, series_written, old_study = _child(cursor, config, cache, pending, "series",
                                               "series_instance_uid", {
        "study_fk": study,
        "series_instance_uid": a["SeriesInstanceUID"],
        "modality": a["Modality"],
        "series_number": a["SeriesNumber"],
        "series_description": a["SeriesDescription"],
    }, "study_fk")  # fmt: skip
    old_series = _instance(cursor, config, {
        "series_fk": series,
        "sop_instance_uid": a["SOPInstanceUID"],
        "sop_class_uid": a["SOPClassUID"],
        "instance_number": a["InstanceNumber"],
        "transfer_syntax_uid": a.transfer_syntax,
        "path": path,
        "size": size,
        "received_at": received_at,
        "calling_ae": calling_ae,
    })  # fmt: skip
    if series_written:
        # Modalities in Study (0008,0061) is derived from the study's series; an unchanged
        # (cached) series row cannot change it.
        _modalities(cursor, config, study)
    old = (old_series, old_study, old_patient)
    _drop_what_was_left(cursor, config, series, study, old, settle_later)
    return pending


def _drop_what_was_left(
    cursor: Any,
    config: IndexConfig,
    series: int,
    study: int,
    old: tuple[int | None, int | None, int | None],
    settle_later: list[Above] | None,
) -> None:
    """Delete the rows an object moved away from, if it left them empty (:func:`record`).

    ``old``: the series, study and patient the object, its series and its study were moved
    from (None: not moved). Each old row is given with the rows above it; a row the object is
    still under is never deleted (it holds the object), so the object's ``series`` and
    ``study`` fill the places below a moved study or patient. A study that stays has its
    Modalities in Study computed again. With ``settle_later`` (:func:`record`) nothing waits
    here.
    """
    old_series, old_study, old_patient = old
    left: list[Parents] = []
    if old_series is not None:
        cursor.execute(
            config.sql(
                "SELECT s.study_fk, t.patient_fk FROM series s JOIN study t ON t.id = s.study_fk"
                " WHERE s.id = ?"
            ),
            (old_series,),
        )
        above = cursor.fetchone()
        if above is not None:
            left.append((old_series, int(above[0]), int(above[1])))
    if old_study is not None:
        cursor.execute(config.sql("SELECT patient_fk FROM study WHERE id = ?"), (old_study,))
        above = cursor.fetchone()
        if above is not None:
            left.append((series, old_study, int(above[0])))
    if old_patient is not None:
        left.append((series, study, old_patient))
    skip = settle_later is not None
    kept: set[int] = set()
    for parents in left:
        drop_empty_parents(
            cursor, config, parents, skip_locked=skip, skipped=settle_later, kept=kept
        )
    # Once each, after the deletes: a second UPDATE of a row this transaction updated makes
    # PostgreSQL check its foreign key again, locking (KEY SHARE) the patient, which may be a
    # row skipped above: a wait out of the writers' order, and a deadlock with its holder.
    for kept_study in sorted(kept):
        _modalities(cursor, config, kept_study)
    if left and not config.dsn:
        bump_generation(cursor, config)


#: How long, at most, a store's second look waits in all for rows other transactions hold
#: (:func:`settle_left_rows`): a few pauses, doubling, between tries that never wait for a lock.
SETTLE_PAUSES_S = (0.01, 0.02, 0.04, 0.08, 0.16)


def settle_left_rows(
    connection: Any,
    config: IndexConfig,
    left: list[Above],
    pauses: tuple[float, ...] = SETTLE_PAUSES_S,
) -> list[Above]:
    """Delete what a store's :func:`record` skipped (``settle_later``), now that it committed;
    the entries still held by other transactions after the last try (logged by the caller;
    ``check --repair`` deletes what they leave empty).

    The rows are looked at with the holders' work committed: another store that was moving
    away from the same row left it empty too, and a study that keeps series gets its
    Modalities in Study from what its series are now, not from what a concurrent store saw.
    One transaction per entry, and none waits for a lock (``SKIP LOCKED`` again, then a try
    after each of ``pauses``): a transaction waiting here could close a cycle with stores,
    even on a single row (PostgreSQL locks a row's newer version, after another transaction
    updated it, without its wait queue, so a store's ``FOR KEY SHARE`` and a ``FOR UPDATE``
    here can deadlock). The holders are stores, which commit within milliseconds.
    PostgreSQL only: SQLite serialises the writers, so nothing is ever skipped there.
    """
    cursor = connection.cursor()
    for pause in (0.0, *pauses):
        if pause:
            time.sleep(pause)
        held: list[Above] = []
        try:
            for parents in left:
                drop_empty_parents(cursor, config, parents, skip_locked=True, skipped=held)
                connection.commit()
        except BaseException:
            connection.rollback()
            raise
        left = held
        if not left:
            break
    return left


def all_instances(cursor: Any) -> list[InstanceRow]:
    """Every indexed instance (for ``check``)."""
    cursor.execute("SELECT sop_instance_uid, path, size, received_at FROM instance")
    return [
        InstanceRow(str(uid), str(path), int(size), str(received_at))
        for uid, path, size, received_at in cursor.fetchall()
    ]


def instance_row(cursor: Any, config: IndexConfig, sop_instance_uid: str) -> InstanceRow | None:
    """The indexed instance as :func:`all_instances` gives it (``check`` looks again), or None."""
    cursor.execute(
        config.sql(
            "SELECT sop_instance_uid, path, size, received_at FROM instance"
            " WHERE sop_instance_uid = ?"
        ),
        (sop_instance_uid,),
    )
    row = cursor.fetchone()
    return None if row is None else InstanceRow(str(row[0]), str(row[1]), int(row[2]), str(row[3]))


#: The ids of an instance's series, study and patient rows.
Parents = tuple[int, int, int]
#: Rows to delete if empty, from a series up: series and study None when only the rows above
#: them are to be looked at (``check --repair`` of an empty study or patient).
Above = tuple[int | None, int | None, int]


def instance_parents(cursor: Any, config: IndexConfig, sop_instance_uid: str) -> Parents | None:
    """The series, study and patient ids of the indexed instance, or None."""
    cursor.execute(
        config.sql(
            "SELECT i.series_fk, s.study_fk, t.patient_fk FROM instance i"
            " JOIN series s ON s.id = i.series_fk JOIN study t ON t.id = s.study_fk"
            " WHERE i.sop_instance_uid = ?"
        ),
        (sop_instance_uid,),
    )
    row = cursor.fetchone()
    return None if row is None else (int(row[0]), int(row[1]), int(row[2]))


@dataclass(frozen=True)
class EmptyRow:
    """A patient, study or series row with nothing under it, which C-FIND would answer."""

    table: str
    row_id: int
    #: The row in words, for ``check``'s report.
    what: str


def empty_rows(cursor: Any) -> list[EmptyRow]:
    """Series without instances, studies without series, patients without studies.

    None is left by a store or a repair of this version, but an index written by an earlier
    one may hold some (a store moved a study, a series or an instance and left the rows it
    came from), and so may one whose store on PostgreSQL left a row another transaction held
    (:func:`_drop_what_was_left`).
    """
    cursor.execute(
        "SELECT r.id, r.series_instance_uid, s.study_instance_uid FROM series r"
        " JOIN study s ON s.id = r.study_fk"
        " WHERE NOT EXISTS (SELECT 1 FROM instance WHERE series_fk = r.id) ORDER BY r.id"
    )
    found = [
        EmptyRow("series", int(i), f"series {uid} of study {study}, without instances")
        for i, uid, study in cursor.fetchall()
    ]
    cursor.execute(
        "SELECT s.id, s.study_instance_uid, p.patient_id FROM study s"
        " JOIN patient p ON p.id = s.patient_fk"
        " WHERE NOT EXISTS (SELECT 1 FROM series WHERE study_fk = s.id) ORDER BY s.id"
    )
    found += [
        EmptyRow("study", int(i), f"study {uid} of patient {patient!r}, without series")
        for i, uid, patient in cursor.fetchall()
    ]
    cursor.execute(
        "SELECT p.id, p.patient_id, p.issuer_of_patient_id FROM patient p"
        " WHERE NOT EXISTS (SELECT 1 FROM study WHERE patient_fk = p.id) ORDER BY p.id"
    )
    found += [
        EmptyRow("patient", int(i), f"patient {pid!r} (issuer {issuer!r}), without studies")
        for i, pid, issuer in cursor.fetchall()
    ]
    return found


def drop_empty_row(cursor: Any, config: IndexConfig, row: EmptyRow) -> set[str]:
    """Delete ``row`` if it is still empty, and the rows above it it leaves empty, as
    :func:`drop_empty_parents` does (locked first on PostgreSQL, never waiting: a row another
    transaction holds is left, and stays reported; the caller bumps the index's generation);
    the tables whose row was deleted. A row deleted meanwhile is nothing to do."""
    if row.table == "patient":
        return drop_empty_parents(cursor, config, (None, None, row.row_id), skip_locked=True)
    if row.table == "study":
        query = "SELECT NULL, id, patient_fk FROM study WHERE id = ?"
    else:
        query = (
            "SELECT r.id, r.study_fk, s.patient_fk FROM series r"
            " JOIN study s ON s.id = r.study_fk WHERE r.id = ?"
        )
    cursor.execute(config.sql(query), (row.row_id,))
    above = cursor.fetchone()
    if above is None:
        return set()
    series = None if above[0] is None else int(above[0])
    parents = (series, int(above[1]), int(above[2]))
    return drop_empty_parents(cursor, config, parents, skip_locked=True)


def delete_instance(cursor: Any, config: IndexConfig, sop_instance_uid: str) -> None:
    """Remove one instance row (``check --repair`` for a row whose file is gone), and the
    parent rows it leaves empty (:func:`drop_empty_parents`).

    Bumps the index's generation: a running server may hold the ids of the rows deleted in
    its parent-row cache (:meth:`ParentRows.follow_generation`).
    """
    parents = instance_parents(cursor, config, sop_instance_uid)
    cursor.execute(
        config.sql("DELETE FROM instance WHERE sop_instance_uid = ?"), (sop_instance_uid,)
    )
    if parents is not None:
        drop_empty_parents(cursor, config, parents)
    bump_generation(cursor, config)


def drop_empty_parents(
    cursor: Any,
    config: IndexConfig,
    parents: Above,
    *,
    skip_locked: bool = False,
    skipped: list[Above] | None = None,
    kept: set[int] | None = None,
) -> set[str]:
    """Delete the series of ``parents`` if it has no instance left, then the study if it has
    no series, then the patient if it has no study; compute the study's Modalities in Study
    again if it stays.

    Each is a row C-FIND would otherwise still answer: a series without instances, a study
    whose Modalities in Study names a modality none of its series has (a query on it would
    match), a patient without studies. In the caller's transaction, which must bump the
    index's generation (:func:`bump_generation`): the deleted rows' ids may be cached.
    Each row is looked at whether or not the one below was deleted: a repair that re-indexes
    an object may have moved it to another series, study or patient.

    A series or study of None is not looked at (``check --repair`` of an empty study or
    patient: :func:`drop_empty_row`).

    PostgreSQL: the three rows are locked first (:func:`_lock_parents`), or a store adding an
    instance to the series meanwhile would have it deleted under its instance. With
    ``skip_locked`` (a store cleaning up after a move) a row another transaction holds is not
    waited for, which could deadlock with a store moving rows the other way; ``parents`` is
    then put in ``skipped``, to be looked at again once that transaction is over
    (:func:`settle_left_rows`): the holder may be moving away from the row too, or computing
    the study's Modalities in Study from series this transaction is moving.

    ``kept``: a study that stays is put there instead of having its Modalities in Study
    computed here (:func:`_drop_what_was_left` computes each once).

    Returns the tables whose row was deleted.
    """
    series, study, patient = parents
    locked = _lock_parents(cursor, config, parents, skip_locked)
    if skipped is not None and len(locked) < sum(row is not None for row in parents):
        skipped.append(parents)
    deleted = set()
    if "series" in locked:
        cursor.execute(
            config.sql(
                "DELETE FROM series WHERE id = ?"
                " AND NOT EXISTS (SELECT 1 FROM instance WHERE series_fk = ?)"
            ),
            (series, series),
        )
        if cursor.rowcount:
            deleted.add("series")
    if "study" in locked:
        cursor.execute(
            config.sql(
                "DELETE FROM study WHERE id = ?"
                " AND NOT EXISTS (SELECT 1 FROM series WHERE study_fk = ?)"
            ),
            (study, study),
        )
        if cursor.rowcount:
            deleted.add("study")
            if kept is not None:
                kept.discard(study)
        elif kept is not None:
            kept.add(study)  # the caller computes its Modalities in Study
        else:
            _modalities(cursor, config, study)
    if "patient" in locked:
        cursor.execute(
            config.sql(
                "DELETE FROM patient WHERE id = ?"
                " AND NOT EXISTS (SELECT 1 FROM study WHERE patient_fk = ?)"
            ),
            (patient, patient),
        )
        if cursor.rowcount:
            deleted.add("patient")
    return deleted


def _lock_parents(
    cursor: Any, config: IndexConfig, parents: Above, skip_locked: bool = False
) -> set[str]:
    """PostgreSQL: lock the patient, study and series rows of ``parents`` for their deletion,
    in the order a store upserts them (:func:`record`), until the transaction ends; the
    tables whose row is locked (every one but, with ``skip_locked``, one another
    transaction holds; a row that is gone counts as locked, its delete finding nothing).

    Under READ COMMITTED a ``DELETE ... WHERE NOT EXISTS (instance)`` that waits for a store
    holding the series row would check the row again, but not the instances: it would
    delete the series the store has just added an instance to (a foreign key violation that
    rolls the repair back), and deleting series, study, patient while a store upserts patient,
    study, series may deadlock. Locked first, a store in flight finishes before the deletes,
    whose statements then see its instance; a later one waits for the repair's commit, and
    then writes new rows for those it deleted. SQLite: nothing (``BEGIN IMMEDIATE`` already
    serialises the writers).
    """
    series, study, patient = parents
    given = [("patient", patient), ("study", study), ("series", series)]
    if not config.dsn:
        return {table for table, row_id in given if row_id is not None}
    skip = " SKIP LOCKED" if skip_locked else ""
    locked = set()
    for table, row_id in given:
        if row_id is None:
            continue
        cursor.execute(
            config.sql(f"SELECT id FROM {table} WHERE id = ? FOR UPDATE{skip}"), (row_id,)
        )
        if cursor.fetchone() is not None or not skip_locked:
            locked.add(table)
            continue
        # Skipped, or gone (deleted by this very clean-up's entry before, or by another
        # transaction): only a row still there is another's to wait for. One read more, on
        # this path only.
        cursor.execute(config.sql(f"SELECT 1 FROM {table} WHERE id = ?"), (row_id,))
        if cursor.fetchone() is None:
            locked.add(table)  # nothing to lock: its delete finds nothing
    return locked
