"""``pacsref server check``: do the index and the stored files agree? Repair if asked.

After a ``kill -9`` (or a power loss with durability "relaxed") the two can disagree in four
ways only, because a store renames the file into place *before* it commits the index rows:

* a file without an index row (killed between rename and commit): ``--repair`` re-indexes it
  from the file itself, which holds everything the index needs;
* a file unlike its row (killed while overwriting a duplicate, between rename and commit; or
  a file truncated by a crash with relaxed durability, or changed by hand): its size is not
  the one its row records, or it was modified after its row's receive time
  (``received_at``): ``--repair`` re-indexes it from the file, or reports it unreadable.
  The time tells a new version of the same size: a store writes its spool file *before* it
  takes the receive time, and the rename keeps the file's modification time, so the file
  of a row is never newer than it. The two are compared as UTC times, with
  :data:`MTIME_SLACK` to spare: the receive time is cut to milliseconds, and the file
  system's clock may be coarser than the one the time is read from. An overwrite that
  follows the previous store by less than that is not told by its time;
* an overwritten object's previous version left in the spool directory (the overwrite was
  killed after its rename, or its put-back failed; the storage add-in passes them by their
  names, which hold the instance's UID): a sure sign, where times cannot tell, that the row
  may describe that version. ``--repair`` finishes the overwrite (:func:`_finish_overwrites`);
* an index row without its file (the file was deleted by hand, or lost with relaxed
  durability): ``--repair`` deletes the row, since nothing can be served from it, and the
  series, study and patient rows it leaves empty (a series query would still answer the
  series, a study query on Modalities in Study would still match the study); the study's
  Modalities in Study is computed again.

Not left by a crash, but by earlier versions, whose stores left the rows an object moved away
from: a series without instances, a study without series, a patient without studies, which
C-FIND would still answer. ``--repair`` deletes them (:func:`_drop_empty_rows`).

A repair does only what it can be sure of. These are reported, never indexed or have their
row deleted:

* a file holding another instance than its name says, or whose Study, Series or SOP Instance
  UID is not a UID;
* a file that is not one whole data set: its elements are walked to the end of the file
  (:mod:`.complete`), so a file cut short is not vouched for as stored (one cut exactly
  between two elements cannot be told from a shorter object; a file that has a row is also
  compared with the size the row records);
* a file that cannot be looked at (not a missing one), and anything at a stored file's place
  that is not a regular file (a directory, a symbolic link, which could lead out of the data
  root, a FIFO, which would make the check wait for ever);
* files whose name does not match their place in the layout.

A row is deleted only if its file is still missing under the index's write lock, and a file is
re-indexed under that lock after its row was looked up again, so a check beside a running
server does not undo what the server stored meanwhile. What the check reports is looked at
twice for the same reason: a file seen without a row is reported only if the row is still
missing once every file has been listed. Spool files are the server's own: it removes stale
ones when it starts.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import index as sql
from .complete import data_set_problem
from .uids import STORED_SUFFIX, stored_path, uid_problem
from .writer import read_attributes

__all__ = ["CheckReport", "check_storage", "check_without_index"]

#: How a file is opened to be re-indexed: not through a symbolic link, and without waiting
#: for a writer if it is a FIFO (it is then reported, not read).
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)

#: How much later than its row's receive time a stored file may have been modified and still be
#: the file the row describes. The store writes the file before it reads the time, so only the
#: cut of that time to milliseconds makes a consistent file look newer (by less than 1 ms; a
#: file the repair re-indexes gets its own modification time, cut so); the rest is margin for
#: a file system whose clock is not quite the server's (a file server's). The other way round
#: costs nothing here: a file system stamps times from a coarse clock, a tick (a few ms) behind
#: the one the store reads, so a file written within a tick after its row may look older and
#: is not told by its time.
MTIME_SLACK = timedelta(milliseconds=10)


@dataclass
class CheckReport:
    """What :func:`check_storage` found (and repaired)."""

    indexed: int = 0
    files: int = 0
    rows_without_file: list[str] = field(default_factory=list)
    files_without_row: list[str] = field(default_factory=list)
    #: A file whose size is not the one its row records.
    files_unlike_row: list[str] = field(default_factory=list)
    #: A file of the size its row records, modified after the row's receive time: unlike its
    #: row too (a new version of the same size), re-indexed by a repair like the others.
    files_newer_than_row: list[str] = field(default_factory=list)
    #: "path (instance UID)": an overwritten object's previous version, kept in the spool
    #: directory by an overwrite that was killed or failed (a store renames the new version
    #: in place before it commits its row, and removes the previous one after).
    previous_versions: list[str] = field(default_factory=list)
    misplaced_files: list[str] = field(default_factory=list)
    unreadable_files: list[str] = field(default_factory=list)
    #: "path (UID inside)": a file whose data set is another instance than its name says.
    files_of_another_instance: list[str] = field(default_factory=list)
    #: A patient, study or series row with nothing under it (:func:`.index.empty_rows`).
    empty_rows: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when index and files agree (after repair, if repairing)."""
        return not (
            self.rows_without_file
            or self.files_without_row
            or self.files_unlike_row
            or self.files_newer_than_row
            or self.previous_versions
            or self.misplaced_files
            or self.unreadable_files
            or self.files_of_another_instance
            or self.empty_rows
        )

    def lines(self) -> list[str]:
        """The report as lines for a person."""
        out = [f"{self.indexed} indexed instance(s), {self.files} stored file(s)"]
        out += [f"index row without file: {uid}" for uid in self.rows_without_file]
        out += [f"file without index row: {p}" for p in self.files_without_row]
        out += [f"file not the size its index row records: {p}" for p in self.files_unlike_row]
        out += [
            f"file modified after its index row was written: {p}" for p in self.files_newer_than_row
        ]
        out += [
            f"previous version left by an interrupted overwrite: {p}"
            for p in self.previous_versions
        ]
        out += [f"file not where its UID puts it: {p}" for p in self.misplaced_files]
        out += [f"file not readable: {p}" for p in self.unreadable_files]
        out += [
            f"file holding another instance than its name says: {p}"
            for p in self.files_of_another_instance
        ]
        out += [f"index row with nothing under it: {what}" for what in self.empty_rows]
        out += [f"repaired: {what}" for what in self.repaired]
        out.append("index and files agree" if self.clean else "index and files DISAGREE")
        return out


def _kind(mode: int) -> str:
    """What a directory entry that is not a regular file is, in words."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _stored_files(data_root: Path, report: CheckReport) -> list[tuple[str, Path]]:
    """(SOP Instance UID from the file name, path) for every stored file, sorted.

    A list, not a mapping: the same name in two bucket directories is two files, and the
    one not where its UID puts it must be reported, not hidden behind the other. Nothing is
    followed: a bucket directory that is a symbolic link, and an entry named like a stored
    file that is not a regular file, are put in ``report.unreadable_files``. A stored file's
    name anywhere else under the data root (directly in it, or in a directory inside a
    bucket) is put in ``report.misplaced_files``: the server never puts one there.
    """
    found: list[tuple[str, Path]] = []
    for directory, subdirectories, names in os.walk(data_root):
        depth = len(Path(directory).relative_to(data_root).parts)
        here = Path(directory)
        for name in list(subdirectories):
            path = here / name
            if depth == 0 and len(name) == 2 and path.is_symlink():
                report.unreadable_files.append(
                    f"{path} (a bucket directory that is a symbolic link)"
                )
            elif depth == 1 and name.endswith(STORED_SUFFIX):
                # A directory (or a link to one) at a stored file's place; not walked into.
                subdirectories.remove(name)
                report.unreadable_files.append(f"{path} ({_kind(os.lstat(path).st_mode)})")
        for name in sorted(names):
            if not name.endswith(STORED_SUFFIX):
                continue
            path = here / name
            if depth != 1:
                report.misplaced_files.append(str(path))
                continue
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                continue  # removed since the directory was read
            except OSError:
                mode = stat.S_IFREG  # listed as a file: the look at it says what is wrong
            if stat.S_ISREG(mode):
                found.append((name[: -len(STORED_SUFFIX)], path))
            else:
                report.unreadable_files.append(f"{path} ({_kind(mode)})")
    return sorted(found)


def check_storage(
    data_root: Path,
    config: sql.IndexConfig,
    repair: bool = False,
    calling_ae: str = "",
    previous_versions: Mapping[str, Sequence[Path]] | None = None,
) -> CheckReport:
    """Compare the index with the files under ``data_root``; fix what ``repair`` allows.

    ``previous_versions``: instance UID -> the overwritten object's previous versions left in
    the spool directory by overwrites that no process runs any more (the storage add-in
    finds them by their names). Each is a sure sign that the instance's row may describe
    that version rather than the file in place, whatever their sizes and times. A repair
    settles an instance with one; with several, which one the row describes is not sure,
    and they stay reported for a person.
    """
    report = CheckReport()
    versions = previous_versions or {}
    report.previous_versions = [
        f"{path} ({uid})" for uid in sorted(versions) for path in sorted(versions[uid])
    ]
    previous = {uid: paths[0] for uid, paths in versions.items() if len(paths) == 1}
    connection = sql.open_connection(config)
    try:
        cursor = connection.cursor()
        rows = {row.sop_instance_uid: row for row in sql.all_instances(cursor)}
        connection.commit()
        files = _stored_files(data_root, report)
        report.indexed, report.files = len(rows), len(files)
        for uid, row in sorted(rows.items()):
            path = data_root / row.path
            try:
                found = path.lstat()
            except (FileNotFoundError, NotADirectoryError):
                report.rows_without_file.append(uid)
                continue
            except OSError as exc:  # there, but not to be looked at: never a missing file
                report.unreadable_files.append(f"{path} ({exc.strerror or exc})")
                continue
            if not stat.S_ISREG(found.st_mode):
                if not path.name.endswith(STORED_SUFFIX) or path.parent.parent != data_root:
                    report.unreadable_files.append(f"{path} ({_kind(found.st_mode)})")
                # else: listed by _stored_files already
            elif found.st_size != row.size:
                report.files_unlike_row.append(str(path))
            elif _modified_after(found.st_mtime, row.received_at):
                report.files_newer_than_row.append(str(path))
        for uid, path in files:
            if uid_problem(uid) is not None or stored_path(data_root, uid) != path:
                report.misplaced_files.append(str(path))
            elif uid not in rows and sql.find_path(cursor, config, uid) is None:
                # Looked up again: a running server may have committed it since the rows
                # were read (it renames first, then commits).
                report.files_without_row.append(str(path))
        report.empty_rows = [row.what for row in sql.empty_rows(cursor)]
        connection.commit()
        if repair:
            _finish_overwrites(report, previous, rows, cursor, connection, data_root, config)
            _repair(report, rows, cursor, connection, data_root, config)
            _drop_empty_rows(report, cursor, connection, config)
    finally:
        connection.close()
    return report


def _put_back(kept: Path, place: Path, durable: bool) -> None:
    """Move ``kept`` to ``place``, never over a file (a running server may just have stored
    the instance): a link, which fails if the name exists, then the old name removed. With
    ``durable``, the new name is on disk before anything is said about it."""
    place.parent.mkdir(parents=True, exist_ok=True)
    os.link(kept, place)
    kept.unlink()
    if durable:
        fd = os.open(place.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _finish_overwrites(
    report: CheckReport,
    previous: dict[str, Path],
    rows: dict[str, Any],
    cursor: Any,
    connection: Any,
    data_root: Path,
    config: sql.IndexConfig,
) -> None:
    """Settle each interrupted overwrite, as sure of the outcome as the store would have been.

    The new version in place, a whole data set of the instance: re-indexed from the file,
    then the previous version removed, which is what the overwrite's commit would have done.
    No file in place: the previous version is the instance's only copy, and the row describes
    it, so it goes back in place (and is re-indexed from itself) instead of the row being
    deleted as one without a file. Anything else (unreadable, another instance) keeps the
    previous version and is reported.
    """
    for uid, kept in sorted(previous.items()):
        place = stored_path(data_root, uid)
        line = f"{kept} ({uid})"
        if not os.path.lexists(place):
            if uid not in rows:
                continue  # neither row nor file: a person decides what it is
            if uid in report.rows_without_file:
                # Its row describes the previous version: never deleted as one without a
                # file, even if the version cannot be put back (it stays reported).
                report.rows_without_file.remove(uid)
            try:
                _put_back(kept, place, config.durable)
            except OSError as exc:
                report.repaired.append(f"could not put {kept} back in place: {exc}")
                continue
            report.previous_versions.remove(line)
            report.repaired.append(f"put {kept}, the only copy of {uid}, back in place")
            _reindex(report, place, rows, cursor, connection, data_root, config)
            continue
        for found in (
            report.files_without_row,
            report.files_unlike_row,
            report.files_newer_than_row,
        ):
            if str(place) in found:
                found.remove(str(place))  # re-indexed here, not a second time below
        if _reindex(report, place, rows, cursor, connection, data_root, config):
            kept.unlink(missing_ok=True)
            report.previous_versions.remove(line)
            report.repaired.append(f"removed {kept}, the previous version of {uid}")


def _modified_after(mtime: float, received_at: str) -> bool:
    """Whether a file modified at ``mtime`` (seconds since the epoch) is newer than a row
    received at ``received_at`` (what :func:`.index.record` was given), beyond
    :data:`MTIME_SLACK`.

    A receive time that is not an ISO time (none this server writes) tells nothing: False. One
    without a time zone is taken as UTC, the zone every store and repair writes.
    """
    try:
        received = datetime.fromisoformat(received_at)
    except ValueError:
        return False
    if received.tzinfo is None:
        received = received.replace(tzinfo=UTC)
    return datetime.fromtimestamp(mtime, UTC) > received + MTIME_SLACK


def check_without_index(data_root: Path) -> CheckReport:
    """What :func:`check_storage` reports when there is no index (yet) to compare with.

    A check without ``--repair`` writes nothing: it neither creates the embedded index nor
    the data directory, so every stored file is one without an index row.
    """
    report = CheckReport()
    files = _stored_files(data_root, report) if data_root.is_dir() else []
    report.files = len(files)
    for uid, path in files:
        if uid_problem(uid) is not None or stored_path(data_root, uid) != path:
            report.misplaced_files.append(str(path))
        else:
            report.files_without_row.append(str(path))
    return report


def _repair(
    report: CheckReport,
    rows: dict[str, Any],
    cursor: Any,
    connection: Any,
    data_root: Path,
    config: sql.IndexConfig,
) -> None:
    for uid in list(report.rows_without_file):
        report.rows_without_file.remove(uid)
        sql.lock_instance(cursor, config, uid)  # a server sharing the index may store it now
        try:
            sql.begin_write(cursor, config)
            # Looked at again under the index's write lock: a running server may have stored
            # the instance since the look above (it renames before it takes that lock).
            if os.path.lexists(data_root / rows[uid].path):
                connection.rollback()
                report.repaired.append(f"kept the index row of {uid} (its file is back)")
                continue
            sql.delete_instance(cursor, config, uid)  # and its empty parents; bumps
            connection.commit()
        finally:
            sql.unlock_instance(cursor, config, uid)
        report.repaired.append(f"removed index row of {uid} (its file is missing)")
    for found in (report.files_without_row, report.files_unlike_row, report.files_newer_than_row):
        for name in list(found):
            found.remove(name)
            _reindex(report, Path(name), rows, cursor, connection, data_root, config)


def _drop_empty_rows(
    report: CheckReport, cursor: Any, connection: Any, config: sql.IndexConfig
) -> None:
    """Delete the patient, study and series rows with nothing under them.

    Looked for again: the repairs before may have left some (none that they know of: each
    deletes what it empties), and a running server may have stored under one since the look
    above. Each row is locked and found empty once more, under the index's write lock,
    before it is deleted (:func:`.index.drop_empty_row`), without waiting: on PostgreSQL a
    row a store holds is left. What is still empty afterwards stays reported.
    """
    found = sql.empty_rows(cursor)
    connection.commit()
    for row in found:
        # One transaction each, which never waits for a lock: a row a store holds is left,
        # and stays reported (a waiting lock could deadlock with the store).
        sql.begin_write(cursor, config)
        try:
            deleted = sql.drop_empty_row(cursor, config, row)
            if deleted:
                sql.bump_generation(cursor, config)  # a running server may have their ids
            connection.commit()
        finally:
            if getattr(connection, "in_transaction", False) or config.dsn:
                connection.rollback()
        if row.table in deleted:
            above = sorted(deleted - {row.table}, key=("series", "study", "patient").index)
            also = f", and its {' and '.join(above)} left empty" if above else ""
            report.repaired.append(f"removed the index row of {row.what}{also}")
    report.empty_rows = [row.what for row in sql.empty_rows(cursor)]
    connection.commit()


def _reindex(
    report: CheckReport,
    path: Path,
    rows: dict[str, Any],
    cursor: Any,
    connection: Any,
    data_root: Path,
    config: sql.IndexConfig,
) -> bool:
    """Index the file at ``path`` from its own content (its row replaced, if it has one);
    True when it was.

    Under the instance's lock and the index's write lock, so that a running server storing
    the same instance meanwhile is either seen (its row is there now: left alone) or waits.
    The rows the object moves away from are cleaned up as a store does (PostgreSQL: without
    waiting for rows a store holds, which could deadlock with it; those are looked at again
    after the commit, :func:`.index.settle_left_rows`, and any still empty at the end of the
    repair by :func:`_drop_empty_rows`).
    """
    uid = path.name[: -len(STORED_SUFFIX)]
    relative = path.relative_to(data_root).as_posix()
    done = False
    left: list[sql.Above] = []
    sql.lock_instance(cursor, config, uid)
    try:
        sql.begin_write(cursor, config)
        try:
            done = _reindex_locked(report, path, uid, relative, rows.get(uid), cursor, config, left)
            if done:
                sql.bump_generation(cursor, config)  # a running server's parent rows are stale
                connection.commit()
        finally:
            if getattr(connection, "in_transaction", False) or config.dsn:
                connection.rollback()
    finally:
        sql.unlock_instance(cursor, config, uid)
    if done and left:
        # What it leaves empty, _drop_empty_rows deletes at the end of the repair.
        try:
            held = sql.settle_left_rows(connection, config, left)
        except Exception as exc:  # e.g. a lost connection
            report.repaired.append(
                f"could not look again at the rows {path} was moved away from ({exc})"
            )
        else:
            if held:
                report.repaired.append(
                    f"the rows {path} was moved away from were still held by other "
                    "transactions; any left empty is looked for again at the end"
                )
    return done


def _reindex_locked(
    report: CheckReport,
    path: Path,
    uid: str,
    relative: str,
    row_seen: Any,
    cursor: Any,
    config: sql.IndexConfig,
    left: list[sql.Above],
) -> bool:
    """The re-index of :func:`_reindex` once locked: True if rows were written; what the
    clean-up of the rows it moved away from skipped goes to ``left``."""
    name = str(path)
    if sql.instance_row(cursor, config, uid) != row_seen:
        report.repaired.append(f"left {name} alone (the server indexed it meanwhile)")
        return False
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        report.repaired.append(f"left {name} alone (it was removed meanwhile)")
        return False
    except OSError as exc:
        report.unreadable_files.append(f"{name} ({exc.strerror or exc})")
        return False
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            report.unreadable_files.append(f"{name} ({_kind(found.st_mode)})")
            return False
        opened = Path(f"/proc/self/fd/{fd}")
        source = opened if opened.exists() else path
        problem = data_set_problem(source)
        if problem is not None:
            report.unreadable_files.append(f"{name} (not a whole data set: {problem})")
            return False
        attributes = read_attributes(source)
        calling_ae = _source_ae(source)
    except Exception as exc:
        report.unreadable_files.append(f"{name} ({exc})")
        return False
    finally:
        os.close(fd)
    inside = attributes["SOPInstanceUID"]
    if inside != uid:
        # Indexing it would give another instance's row this file: reported, for a person
        # to look at, and nothing written.
        report.files_of_another_instance.append(f"{name} ({inside or 'no SOP Instance UID'})")
        return False
    for key in ("StudyInstanceUID", "SeriesInstanceUID"):
        problem = uid_problem(attributes[key])
        if problem is not None:
            report.unreadable_files.append(f"{name} (its {key} {attributes[key]!r} {problem})")
            return False
    received_at = datetime.fromtimestamp(found.st_mtime, UTC)
    # The rows the old row hung from may be left empty (the new version may be of another
    # series, study or patient): record deletes them, as for a store.
    sql.record(
        cursor,
        config,
        attributes,
        path=relative,
        size=found.st_size,
        received_at=received_at.isoformat(timespec="milliseconds"),
        calling_ae=calling_ae,
        settle_later=left,
    )
    report.repaired.append(f"re-indexed {name}")
    return True


def _source_ae(path: Path) -> str:
    """The Source AE Title (0002,0016) the file meta recorded: the calling AE of the store."""
    from pydicom import dcmread

    meta = dcmread(path, stop_before_pixels=True, specific_tags=[]).file_meta
    return str(meta.get("SourceApplicationEntityTitle", "")).strip()
