"""``pacsref server check``: do the index and the stored files agree? Repair if asked.

After a ``kill -9`` (or a power loss with durability "relaxed") the two can disagree in three
ways only, because a store renames the file into place *before* it commits the index rows:

* a file without an index row (killed between rename and commit): ``--repair`` re-indexes it
  from the file itself, which holds everything the index needs;
* a file whose size is not the one its row records (killed while overwriting a duplicate,
  between rename and commit; or a file truncated by a crash with relaxed durability, or
  changed by hand): ``--repair`` re-indexes it from the file, or reports it unreadable;
* an index row without its file (the file was deleted by hand, or lost with relaxed
  durability): ``--repair`` deletes the row, since nothing can be served from it.

A repair does only what it can be sure of: a file holding another instance than its name
says, and a file that cannot be looked at (not a missing one), are reported, never indexed or
have their row deleted; a row is deleted only if its file is still missing under the index's
write lock. Files whose name does not match their place in the layout, and leftover spool
files, are reported; the latter are removed by ``--repair`` only when the server is not running (a
running server's spool files may be transfers in progress; the server removes stale ones
itself when it starts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISREG
from typing import Any

from . import index as sql
from .uids import STORED_SUFFIX, stored_path, uid_problem
from .writer import read_attributes

__all__ = ["CheckReport", "check_storage"]


@dataclass
class CheckReport:
    """What :func:`check_storage` found (and repaired)."""

    indexed: int = 0
    files: int = 0
    rows_without_file: list[str] = field(default_factory=list)
    files_without_row: list[str] = field(default_factory=list)
    files_unlike_row: list[str] = field(default_factory=list)
    misplaced_files: list[str] = field(default_factory=list)
    unreadable_files: list[str] = field(default_factory=list)
    #: "path (UID inside)": a file whose data set is another instance than its name says.
    files_of_another_instance: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when index and files agree (after repair, if repairing)."""
        return not (
            self.rows_without_file
            or self.files_without_row
            or self.files_unlike_row
            or self.misplaced_files
            or self.unreadable_files
            or self.files_of_another_instance
        )

    def lines(self) -> list[str]:
        """The report as lines for a person."""
        out = [f"{self.indexed} indexed instance(s), {self.files} stored file(s)"]
        out += [f"index row without file: {uid}" for uid in self.rows_without_file]
        out += [f"file without index row: {p}" for p in self.files_without_row]
        out += [f"file not the size its index row records: {p}" for p in self.files_unlike_row]
        out += [f"file not where its UID puts it: {p}" for p in self.misplaced_files]
        out += [f"file not readable: {p}" for p in self.unreadable_files]
        out += [
            f"file holding another instance than its name says: {p}"
            for p in self.files_of_another_instance
        ]
        out += [f"repaired: {what}" for what in self.repaired]
        out.append("index and files agree" if self.clean else "index and files DISAGREE")
        return out


def _stored_files(data_root: Path) -> list[tuple[str, Path]]:
    """(SOP Instance UID from the file name, path) for every stored file, sorted.

    A list, not a mapping: the same name in two bucket directories is two files, and the
    one not where its UID puts it must be reported, not hidden behind the other.
    """
    return sorted(
        (path.name[: -len(STORED_SUFFIX)], path) for path in data_root.glob(f"*/*{STORED_SUFFIX}")
    )


def check_storage(
    data_root: Path, config: sql.IndexConfig, repair: bool = False, calling_ae: str = ""
) -> CheckReport:
    """Compare the index with the files under ``data_root``; fix what ``repair`` allows."""
    report = CheckReport()
    connection = sql.open_connection(config)
    try:
        cursor = connection.cursor()
        rows = {row.sop_instance_uid: row for row in sql.all_instances(cursor)}
        connection.commit()
        files = _stored_files(data_root)
        report.indexed, report.files = len(rows), len(files)
        for uid, row in sorted(rows.items()):
            path = data_root / row.path
            try:
                found = path.stat()
            except (FileNotFoundError, NotADirectoryError):
                report.rows_without_file.append(uid)
                continue
            except OSError as exc:  # there, but not to be looked at: never a missing file
                report.unreadable_files.append(f"{path} ({exc.strerror or exc})")
                continue
            if not S_ISREG(found.st_mode):
                report.rows_without_file.append(uid)
            elif found.st_size != row.size:
                report.files_unlike_row.append(str(path))
        for uid, path in files:
            if uid_problem(uid) is not None or stored_path(data_root, uid) != path:
                report.misplaced_files.append(str(path))
            elif uid not in rows:
                report.files_without_row.append(str(path))
        if repair:
            _repair(report, rows, cursor, connection, data_root, config)
    finally:
        connection.close()
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
            if (data_root / rows[uid].path).exists():
                connection.rollback()
                report.repaired.append(f"kept the index row of {uid} (its file is back)")
                continue
            sql.delete_instance(cursor, config, uid)
            sql.bump_generation(cursor, config)
            connection.commit()
        finally:
            sql.unlock_instance(cursor, config, uid)
        report.repaired.append(f"removed index row of {uid} (its file is missing)")
    for found in (report.files_without_row, report.files_unlike_row):
        for name in list(found):
            _reindex(report, found, name, cursor, connection, data_root, config)


def _reindex(
    report: CheckReport,
    found: list[str],
    name: str,
    cursor: Any,
    connection: Any,
    data_root: Path,
    config: sql.IndexConfig,
) -> None:
    """Index the file ``name`` from its own content (its row replaced, if it has one)."""
    path = Path(name)
    found.remove(name)
    try:
        attributes = read_attributes(path)
    except Exception as exc:
        report.unreadable_files.append(f"{name} ({exc})")
        return
    named = path.name[: -len(STORED_SUFFIX)]
    inside = attributes["SOPInstanceUID"]
    if inside != named or any(
        uid_problem(attributes[key]) is not None
        for key in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
    ):
        # Indexing it would give another instance's row this file (or a row no UID
        # rule allows): reported, for a person to look at, and nothing written.
        report.files_of_another_instance.append(f"{name} ({inside or 'no SOP Instance UID'})")
        return
    sql.begin_write(cursor, config)
    sql.record(
        cursor,
        config,
        attributes,
        path=path.relative_to(data_root).as_posix(),
        size=path.stat().st_size,
        received_at=datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(),
        calling_ae=_source_ae(path),
    )
    sql.bump_generation(cursor, config)  # a running server's cached parent rows may be stale
    connection.commit()
    report.repaired.append(f"re-indexed {name}")


def _source_ae(path: Path) -> str:
    """The Source AE Title (0002,0016) the file meta recorded: the calling AE of the store."""
    from pydicom import dcmread

    meta = dcmread(path, stop_before_pixels=True, specific_tags=[]).file_meta
    return str(meta.get("SourceApplicationEntityTitle", "")).strip()
