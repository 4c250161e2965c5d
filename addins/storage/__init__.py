"""Storage SCP add-in: keeps every C-STORE durably on disk, indexed in SQL (docs/storage.md).

A shipped add-in, copied into each new server's ``addins/`` folder, so a stock ``storescu``
stores into a fresh pacsref with no set-up. It finds its server from its own location
(``<server dir>/addins/storage/``); its options (``<server dir>/addin-options/storage.toml``,
declared in :mod:`.options`) are handed to it by the server (``IAddInOptions``).

The write path of one C-STORE-RQ, all on one thread of the index's adbapi pool (the handler is
``nonblocking``: it only hands the job over, so there is a single thread hop each way), or all
on the reactor thread ("Inline" below):

1. check the command's UIDs (a bad one: failure, nothing written);
2. read the index attributes from the spool file, which the DIMSE layer already wrote as a
   Part-10 file (preamble and file meta first), never reading pixel data (the file is held
   open from here to step 4, with the write of a large file's pages started at once:
   ``writer.HeldSpool``);
3. under a per-instance lock: look the SOP Instance UID up (duplicates policy; a duplicate
   kept out is discarded before anything is flushed);
4. fsync the spool file (durability "fsync"), rename it into
   ``<server dir>/data/<hh>/<uid>.dcm``, fsync that directory;
5. insert/update the patient, study, series and instance rows and commit (patient, study and
   series rows this process last committed with the same values are not written again:
   ``index.ParentRows``).

Success is answered only after 5, so an acknowledged object is both durable and indexed. The
rename is the store's point of no return (``DimseRequest.point_of_no_return``): an add-in
timeout expiring before it makes the store give up with nothing changed; after it, the server
waits for the commit, so the peer never hears 0x0110 for an object that ends up stored. A
crash between the rename and 5 leaves a file without a row, which ``pacsref server check --repair``
re-indexes; aborted transfers never get past the spool, which the DIMSE layer deletes.

Inline: with durability "relaxed", the SQLite index and a data set of at most
``INLINE_MAX_BYTES``, steps 2-5 run on the reactor thread instead (``_store_inline``). Nothing
there waits: the data set's attributes are taken only by the raw walk, the instance's lock, the
add-in's index writer lock and the index's write lock (``BEGIN IMMEDIATE`` on a connection that
waits 0 s) are only tried, the write locks before the rename, and if any of them is not to be
had at once the whole store goes to the pool as above, with nothing on disk changed. A relaxed
store does no fsync, so what is left is about as long as receiving the data set was, and
shorter than the two thread hand-offs it saves (case c relaxed, 1,000 x 3 KB: 0.87 -> 0.72 s,
bench/README.md "Seventh round"). A durable store of such a data set is inline too, its
flushes included, where they delay nobody: the data on a local disk, one association storing,
no slow store lately (``inline.InlineDurableGate``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import itertools
import os
import re
import secrets
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pacsref.addin import (
    PROCESSING_FAILURE,
    AddinStatusError,
    DimseRequest,
    IAbstractSyntaxFallback,
    IAddin,
    IAddInOptions,
    IStoreHandler,
    OptionValues,
    StoreOutcome,
    SupportedContext,
    nonblocking,
)
from pacsref.dimse import SPOOL_PREFIX, SPOOL_SUFFIX
from pacsref.dimse.writeback import WRITE_BEHIND
from pacsref.processes import process_alive, process_start

from . import index as sql
from .check import CheckReport, check_storage, check_without_index
from .inline import InlineDurableGate, file_system_type
from .options import OPTIONS, StorageOptions
from .sopclasses import STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES
from .uids import BUCKETS, stored_name, uid_problem
from .writer import (
    HeldSpool,
    IndexAttributes,
    PlacedNotDurableError,
    durable_link,
    durable_rename,
    prepare_buckets,
    read_attributes,
    read_raw_index_attributes,
    simulated_full_disk,
)

__all__ = ["StorageAddin", "addin"]

log = Logger(namespace="pacsref.addin.storage")

#: C-STORE statuses (PS3.4 B.2.3, PS3.7 Annex C); see docs/storage.md for each choice.
SUCCESS = 0x0000
DUPLICATE_SOP_INSTANCE = 0x0111  # PS3.7 C.5.8: refused duplicate
INVALID_SOP_INSTANCE = 0x0117  # PS3.7 C.5.11: UID violates the construction rules
OUT_OF_RESOURCES = 0xA700  # PS3.4 B.2.3 Refused: Out of Resources (full disk)
DATASET_MISMATCH = 0xA900  # PS3.4 B.2.3 Error: Data Set does not match SOP Class
CANNOT_UNDERSTAND = 0xC000  # PS3.4 B.2.3 Error: Cannot understand

#: Threads (and index connections) storing in parallel, one per busy association up to this.
MAX_STORE_THREADS = 8

_LOCK_STRIPES = 64

MIB = 1024 * 1024

#: Seconds a store waits for a new PostgreSQL connection to learn whether its failed COMMIT
#: happened (``_commit_outcome``); past it, the file stays for ``check --repair``.
COMMIT_LOOKUP_WAIT = 10.0

#: A relaxed store (SQLite index) of a data set up to this many bytes runs on the reactor
#: thread (module docstring, "Inline"). Its work there does not grow with the data set (the
#: first kilobytes read, a rename, the rows), except in one case: ext4 starts writing back a
#: file renamed over an existing one (``auto_da_alloc``), so overwriting a duplicate submits
#: the new file's whole write. The bound keeps that to one image's worth (CT 512 KiB: case a
#: relaxed 0.617 -> 0.517 s against a 64 KiB bound); multi-frame objects go to the pool.
INLINE_MAX_BYTES = 1024 * 1024


def _server_dir_of_package() -> Path | None:
    """``<server dir>`` when this package sits in ``<server dir>/addins/``, else None."""
    candidate = Path(__file__).resolve().parent.parent.parent
    return candidate if (candidate / "settings.toml").is_file() else None


def _opened_for_notification(
    request: DimseRequest, final: Path, overwrite: bool
) -> BinaryIO | None:
    """The stored file, opened for the message-notification subscribers if they will read it
    and another store could replace it before they do.

    Opened under the instance's lock, right after the commit, it stays the version this store
    placed even if another association overwrites the instance before the subscribers read
    it (``DimseRequest.keep_stored_open``). Only ``duplicates = "overwrite"`` replaces a
    stored file; under the other policies the path is as good, and a notification waiting
    for the pool holds no descriptor. Failing to open it costs only the pin: the server
    then reads it by path. Never the store, which is committed.
    """
    if not (request.keep_stored_open and overwrite):
        return None
    try:
        return final.open("rb")
    except OSError:
        return None


@implementer(IAddin, IAddInOptions, IStoreHandler, IAbstractSyntaxFallback)
class StorageAddin(Service):
    """C-STORE SCP for every storage SOP class, storing to disk with an SQL index.

    A Twisted ``Service``: the server starts it with its service tree (before it listens),
    which opens the index and removes spool files a crashed run left behind.

    Args:
        server_dir: the server directory; None when loaded outside one (e.g. the shipped
            add-ins folder itself), in which case every store fails with 0x0110.
        options: validated options; the server hands the file's values over at load
            (:meth:`options_changed`).
    """

    name = "storage"
    description = "Storage SCP: stores every C-STORE durably on disk, indexed in SQL"
    options_declaration = OPTIONS

    def __init__(self, server_dir: Path | None, options: StorageOptions) -> None:
        self.server_dir = server_dir
        self.options = options
        self.pool: Any = None
        self.config: sql.IndexConfig | None = None
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        #: Held from BEGIN IMMEDIATE to the commit by whichever of this process's threads
        #: writes the embedded index. SQLite's own lock makes a second writer sleep
        #: (1, 2, 5, 10 ms... by its busy handler) and poll; this one wakes it at the commit.
        self._index_writer = threading.Lock()
        self._parents: sql.ParentRows | None = None
        self._inline_connection: Any = None
        #: Whether a durable store may be inline (``inline.py``); made when the index opens.
        self._durable_gate = InlineDurableGate(None)
        #: The server's temporary directory (``start`` checks it); spool files come from there.
        self._spool_dir: Path | None = None
        if server_dir is not None:
            self.data_root = server_dir / "data"
        self._configure_index()

    def _configure_index(self) -> None:
        if self.server_dir is not None:
            self.config = sql.IndexConfig(
                self.options.index_dsn, self.data_root / sql.INDEX_FILE, self.options.durable
            )

    # -- IAddInOptions ----------------------------------------------------------------------

    def options_changed(self, new_options: OptionValues) -> None:
        """Take the new options; those declared ``live=False`` wait while the index is open.

        Stores read ``self.options`` once per decision, so swapping the reference is safe
        from the reactor thread while pool threads store.
        """
        options = StorageOptions.from_values(new_options)
        if self.pool is None:
            self.options = options
            self._configure_index()
            return
        self.options = dataclasses.replace(
            options, durability=self.options.durability, index_dsn=self.options.index_dsn
        )

    # -- IAddin / IAbstractSyntaxFallback --------------------------------------------------

    def presentation_contexts(self) -> tuple[SupportedContext, ...]:
        """Every storage SOP class pynetdicom knows, with every transfer syntax we keep."""
        return tuple(SupportedContext(uid, TRANSFER_SYNTAXES) for uid in STORAGE_SOP_CLASSES)

    def context_for_unknown(self, abstract_syntax: str) -> SupportedContext | None:
        """With ``accept_unknown_storage_classes``: any UID no add-in declared is storage.

        Negotiation cannot know that an unknown UID names a storage class; a storage SCP
        that promises "any storage class" (as DCMTK's ``storescp --promiscuous``) accepts
        them all and answers anything but C-STORE with 0x0211.
        """
        if not self.options.accept_unknown_storage_classes:
            return None
        return SupportedContext(abstract_syntax, TRANSFER_SYNTAXES)

    # -- life cycle -------------------------------------------------------------------------

    def startService(self) -> None:
        """Open (create, migrate) the index and clear stale spool files, then serve."""
        super().startService()
        self.start()

    def stopService(self) -> None:
        super().stopService()
        if self._inline_connection is not None:
            connection, self._inline_connection = self._inline_connection, None
            connection.close()
        if self.pool is not None:
            pool, self.pool = self.pool, None
            if pool.running:  # the reactor's shutdown may have closed it already
                pool.close()

    def start(self, reactor: Any = None, threadpool: Any = None) -> None:
        """Open the index; idempotent. Tests pass their own reactor and thread pool."""
        if self.pool is not None or self.config is None or self.server_dir is None:
            return
        if reactor is None:
            from twisted.internet import reactor
        self.data_root.mkdir(parents=True, exist_ok=True)
        self._spool_dir = self._checked_spool_dir()  # before anything is made in data/
        # Durable stores end with an fdatasync: have large data sets' pages written as they
        # arrive, so that it waits for the last stretch only (pacsref.dimse.writeback).
        WRITE_BEHIND.enabled = self.config.durable
        prepare_buckets(self.data_root, BUCKETS, self.config.durable)
        applied = sql.prepare(self.config)
        if applied:
            log.info("index {where}: {n} migration(s) applied", where=self._where(), n=applied)
        self._remove_stale_spool_files()
        # The embedded index has this process as its only writer (see ParentRows).
        self._parents = None if self.config.dsn else sql.ParentRows()
        pool = sql.make_pool(self.config, reactor, MAX_STORE_THREADS)
        if threadpool is not None:
            pool.threadpool = threadpool
            pool.start()
        self.pool = pool
        self._durable_gate = InlineDurableGate(file_system_type(self.data_root))
        if self.config.durable and not self.config.dsn and not self._durable_gate.local:
            log.info(
                "data directory on {kind} (not a local disk file system): durable stores "
                "always run on the index pool",
                kind=self._durable_gate.file_system or "an unknown file system",
            )
        log.info(
            "storage ready: data in {data}, index {where}, duplicates {dup}, durability {dur}",
            data=str(self.data_root),
            where=self._where(),
            dup=self.options.duplicates,
            dur=self.options.durability,
        )

    def _where(self) -> str:
        assert self.config is not None
        return "PostgreSQL" if self.config.dsn else str(self.config.sqlite_path)

    def _checked_spool_dir(self) -> Path:
        """The server's spool directory, refused unless it is on the data root's file system.

        A stored file is the spool file renamed into place, and a rename cannot cross file
        systems: with the two apart every C-STORE would fail with EXDEV, so the server says
        why at start instead.
        """
        from pacsref.settings import load_settings

        assert self.server_dir is not None
        settings = load_settings(self.server_dir / "settings.toml")
        spool_dir = settings.effective_temporary_directory(self.server_dir)
        spool_dir.mkdir(parents=True, exist_ok=True)
        if spool_dir.stat().st_dev != self.data_root.stat().st_dev:
            raise StorageStartError(
                f"storage: the spool directory {spool_dir} (temporary_directory) is not on the "
                f"file system of the data directory {self.data_root}; a stored file is moved "
                "into place by rename, which cannot cross file systems: set "
                "temporary_directory to a folder on the same file system"
            )
        return spool_dir

    def _remove_stale_spool_files(self) -> None:
        """Delete spool files older than this start: a killed run's partial transfers.

        A file named by a live process other than this one is left alone: servers may share
        a temporary directory, and that file is another server's transfer in progress. An
        overwritten object's second name (:meth:`_keep_previous`) is looked at first
        (:meth:`_previous_left`): a redundant one goes, one that may hold the only copy of a
        previous version stays for a person, with a warning at every start.
        """
        spool_dir = self._spool_dir
        assert spool_dir is not None
        started = time.time()
        removed = 0
        for path in spool_dir.glob(f"{SPOOL_PREFIX}*{SPOOL_SUFFIX}"):
            try:
                if _written_by_other_live_process(path) or path.stat().st_mtime > started:
                    continue
                if _PREVIOUS_MARK in path.name and self._previous_left(path):
                    continue
                path.unlink()
                removed += 1
            except OSError:
                continue
        if removed:
            log.warn("removed {n} stale spool file(s) from {dir}", n=removed, dir=str(spool_dir))

    def _previous_left(self, path: Path) -> bool:
        """Whether the overwritten object's second name ``path`` must stay (and say why).

        Its name holds the instance's UID (:func:`_previous_name`). Sharing its inode with the
        UID's file in place, it is a redundant second name (the run was killed after the link,
        before the rename): False, the caller removes it. Otherwise it is the previous version
        of the instance, left by a store that was killed after its rename or whose put-back or
        clean-up failed; the file in place, if any, is the newer version, and its index row may
        still describe this one, which ``pacsref server check --repair`` corrects. A name of an
        earlier version (no UID in it) cannot be matched to its instance, so it stays too.
        """
        token = _root_token(self.data_root)
        match = _PREVIOUS_NAME.fullmatch(path.name)
        if match is not None and match.group(1) != token:
            return True  # another server's (servers may share a temporary directory)
        uid = _previous_of(path.name, token)
        if uid is None:
            log.warn(
                "{path} is an overwritten object that a failed store could not put "
                "back: kept; `pacsref server check` shows whether its instance is in "
                "place, else move it back by hand",
                path=str(path),
            )
            return True
        in_place = self.data_root / stored_name(uid)
        left = path.stat()  # an error here: the caller leaves the file alone
        try:
            if os.path.samestat(left, in_place.stat()):
                return False
        except FileNotFoundError:
            log.warn(
                "{path} is the previous version of instance {uid}, left by an interrupted or "
                "failed overwrite, and no file is in place for the instance: kept, it may be "
                "its only copy; `pacsref server check --repair` puts it back in place "
                "({in_place}) when the index still has the instance",
                path=str(path),
                uid=uid,
                in_place=str(in_place),
            )
            return True
        except OSError:
            pass  # the file in place cannot be looked at: keep this one, as below
        log.warn(
            "{path} is the previous version of instance {uid}, left by an interrupted or "
            "failed overwrite: kept; the stored file in place ({in_place}) is the newer "
            "version, whose index row may still describe this one: `pacsref server check "
            "--repair` re-indexes it and then removes this file",
            path=str(path),
            uid=uid,
            in_place=str(in_place),
        )
        return True

    def check(self, repair: bool = False) -> CheckReport:
        """Compare index and files (``pacsref server check``); see :mod:`.check`.

        Only a repair creates or migrates the index: a plain check of a server that never
        started writes nothing (every version's ``instance`` table has what it reads).
        """
        if self.config is None:
            raise RuntimeError("the storage add-in is not inside a server directory")
        if repair:
            self.data_root.mkdir(parents=True, exist_ok=True)
            sql.prepare(self.config)
        elif not self.config.dsn and not self.config.sqlite_path.exists():
            return check_without_index(self.data_root)
        return check_storage(
            self.data_root, self.config, repair, previous_versions=self._previous_versions()
        )

    def _previous_versions(self) -> dict[str, list[Path]]:
        """Overwritten objects' previous versions in the spool directory, by instance UID:
        those left by an overwrite no running process is doing (see :mod:`.check`).

        Names of earlier versions (no UID in them), of another data root (servers may share
        a temporary directory) and of a live process (a server overwriting right now) are
        left out: the first cannot be matched to an instance, the second are not this
        server's, the third are not left over.
        """
        from pacsref.settings import load_settings

        if self.server_dir is None:
            return {}
        try:
            settings = load_settings(self.server_dir / "settings.toml")
            spool_dir = settings.effective_temporary_directory(self.server_dir)
            names = sorted(spool_dir.glob(f"{SPOOL_PREFIX}*{_PREVIOUS_MARK}*{SPOOL_SUFFIX}"))
        except (OSError, ValueError):
            return {}  # the check itself says what is wrong with the server's folders
        found: dict[str, list[Path]] = {}
        token = _root_token(self.data_root)
        for path in names:
            uid = _previous_of(path.name, token)
            if uid is None or _written_by_other_live_process(path):
                continue
            try:
                if os.path.samestat(path.stat(), (self.data_root / stored_name(uid)).stat()):
                    # A second name of the file in place (killed between the link and the
                    # rename): no other version, and the next start removes it.
                    continue
            except OSError:
                pass  # nothing in place, or it cannot be looked at: check says which
            found.setdefault(uid, []).append(path)
        return found

    # -- IStoreHandler ----------------------------------------------------------------------

    @nonblocking
    def handle_store(self, request: DimseRequest) -> Deferred[StoreOutcome] | StoreOutcome:
        """Check the UIDs here, then store on a thread of the index pool (module docstring)."""
        if self.config is None:
            return StoreOutcome(
                PROCESSING_FAILURE, None, "storage add-in is not inside a server directory"
            )
        problem = uid_problem(request.affected_sop_instance_uid)
        if problem is not None:
            return self._refuse(request, INVALID_SOP_INSTANCE, f"SOP Instance UID {problem}")
        problem = uid_problem(request.affected_sop_class_uid)
        if problem is not None:
            return self._refuse(request, DATASET_MISMATCH, f"SOP Class UID {problem}")
        if request.dataset_path is None or request.dataset_offset == 0:
            return self._refuse(request, CANNOT_UNDERSTAND, "no data set was received")
        if self.pool is None:
            self.start()
        if self._inline_allowed(request):
            started = self._durable_gate.timed()
            try:
                outcome = self._store_inline(request)
            finally:
                if self.config.durable:
                    self._durable_gate.took(started)
            if outcome is not None:
                return outcome
        outcome: list[StoreOutcome] = []
        d = self.pool.runWithConnection(self._store, request, outcome)
        d.addErrback(self._outcome_past_pool_commit, outcome, request)
        return d

    @staticmethod
    def _outcome_past_pool_commit(
        failure: Failure, outcome: list[StoreOutcome], request: DimseRequest
    ) -> StoreOutcome | Failure:
        """The store's outcome, when only the pool's own commit after it failed.

        ``runWithConnection`` commits once more after the store returns, and fails when the
        connection was lost by then (a closed PostgreSQL connection), although the store had
        committed, or rolled back, everything itself: its outcome is what the peer must hear.
        """
        if outcome:
            request.log.warn(
                "the index connection failed after the store of {uid} ended ({error}); its "
                "outcome stands",
                uid=request.affected_sop_instance_uid,
                error=failure.getErrorMessage(),
            )
            return outcome[0]
        return failure

    def _refuse(self, request: DimseRequest, status: int, why: str) -> StoreOutcome:
        request.log.warn(
            "C-STORE of {uid!r} from {ae} refused with 0x{status:04X}: {why}",
            uid=request.affected_sop_instance_uid,
            ae=request.calling_ae,
            status=status,
            why=why,
        )
        return StoreOutcome(status, None, why)

    def _store(
        self, connection: Any, request: DimseRequest, outcome: list[StoreOutcome]
    ) -> StoreOutcome:
        """Steps 2-5 of the module docstring; runs on an index pool thread.

        The instance is locked in this process and, on a shared PostgreSQL index, across the
        servers sharing it, from the duplicate check to the commit. The result is also put
        in ``outcome``, for :meth:`_outcome_past_pool_commit`.
        """
        outcome.append(self._store_locked(connection, request))
        return outcome[0]

    def _store_locked(self, connection: Any, request: DimseRequest) -> StoreOutcome:
        config = self.config
        assert config is not None
        held = self._hold(request)
        if not isinstance(held, HeldSpool):
            return held
        with held:
            prepared = self._prepare(request, held, read_attributes)
            if not isinstance(prepared, _Prepared):
                return prepared
            uid = request.affected_sop_instance_uid
            with self._locks[hash(uid) % _LOCK_STRIPES]:
                cursor = connection.cursor()
                sql.lock_instance(cursor, config, uid)
                try:
                    return self._publish(connection, request, prepared, held, began=False)
                finally:
                    sql.unlock_instance(cursor, config, uid)  # rolls a failed transaction back

    def _hold(self, request: DimseRequest) -> HeldSpool | StoreOutcome:
        """The spool file held open for its store (its write started), or the failure."""
        assert self.config is not None and request.dataset_path is not None
        try:
            return HeldSpool(request.dataset_path, self.config.durable)
        except OSError as exc:
            return self._io_failure(request, exc)

    def _inline_allowed(self, request: DimseRequest) -> bool:
        """Whether this store may run on the reactor thread (module docstring, "Inline")."""
        config = self.config
        if config is None or config.dsn or request.dataset_path is None:
            return False
        if config.durable and not self._durable_gate.allows(request.association):
            return False
        try:
            size = request.dataset_path.stat().st_size
        except OSError:
            return False  # the pool's store reports it
        return size <= INLINE_MAX_BYTES

    def _store_inline(self, request: DimseRequest) -> StoreOutcome | None:
        """Steps 2-5 on the reactor thread, or None if any of them would wait there.

        It waits for nothing: the instance's lock and the index's write lock are only tried
        (the write lock before anything is renamed, so that giving up changes nothing), and
        a data set the raw attribute walk cannot read goes to the pool, where pydicom may
        take its time. None hands the store to the pool.
        """
        config = self.config
        assert config is not None
        lock = self._locks[hash(request.affected_sop_instance_uid) % _LOCK_STRIPES]
        if not lock.acquire(blocking=False):
            return None
        try:
            if self._inline_connection is None:
                self._inline_connection = sql.open_connection(config, wait=0.0)
            connection = self._inline_connection
            held = self._hold(request)
            if not isinstance(held, HeldSpool):
                return held
            with held:
                prepared = self._prepare(request, held, read_raw_index_attributes)
                if prepared is None:
                    return None
                if not isinstance(prepared, _Prepared):
                    return prepared
                if not self._index_writer.acquire(blocking=False):  # a pool thread writes
                    return None
                try:
                    try:
                        sql.begin_write(connection.cursor(), config)
                    except sqlite3.OperationalError:  # another process writes the index
                        return None
                    return self._publish(connection, request, prepared, held, began=True)
                finally:
                    if connection.in_transaction:
                        connection.rollback()
                    self._index_writer.release()
        finally:
            lock.release()

    def _prepare(
        self,
        request: DimseRequest,
        held: HeldSpool,
        read: Callable[[Path, HeldSpool, tuple[str, int]], IndexAttributes | None],
    ) -> _Prepared | StoreOutcome | None:
        """Step 2: the attributes, the checks, the place; a refusal; or None.

        None: ``read`` found nothing it can read (the inline store's raw-only reader).
        """
        spool = request.dataset_path
        assert spool is not None
        try:
            # The DIMSE layer wrote the spool file: where its data set starts and how it is
            # encoded are known, and the file is open.
            attributes = read(spool, held, (request.transfer_syntax, request.dataset_offset))
        except Exception as exc:
            return self._refuse(request, CANNOT_UNDERSTAND, f"data set not readable: {exc}")
        if attributes is None:
            return None
        why = self._dataset_problem(request, attributes.values)
        if why is not None:
            return self._refuse(request, DATASET_MISMATCH, why)
        if self.options.simulate_full_disk:
            return self._io_failure(request, simulated_full_disk())
        relative = stored_name(request.affected_sop_instance_uid)
        return _Prepared(attributes, relative, self.data_root / relative, held.size)

    def _free_space_problem(self) -> str | None:
        """Why the data directory's file system is too full to store in, or None.

        A disk filled to the last block also stops the index's commits, the server's logs and
        whatever else shares it; the reserve (``minimum_free_space_mib``) keeps the archive
        answering 0xA700 with room to spare. The data set itself is already spooled on that
        file system (``_checked_spool_dir``), so the rename needs no more.
        """
        reserve = self.options.minimum_free_space_mib
        if reserve == 0:
            return None
        try:
            stats = os.statvfs(self.data_root)
        except OSError:
            return None  # the store's own I/O reports what is wrong
        free_mib = stats.f_bavail * stats.f_frsize // MIB
        if free_mib >= reserve:
            return None
        return f"only {free_mib} MiB free (minimum_free_space_mib = {reserve}) in {self.data_root}"

    def _publish(
        self,
        connection: Any,
        request: DimseRequest,
        prepared: _Prepared,
        held: HeldSpool,
        began: bool,
    ) -> StoreOutcome:
        """Steps 3-5, under the instance's lock: duplicates, fsync, rename, index rows, commit.

        The duplicate lookup comes before the spool file's fsync: a duplicate that is kept
        out (``keep-first``, ``refuse``) is discarded, so the device is not made to write it.

        ``began``: the index's write transaction is already open (the inline store takes it
        first); otherwise it is begun after the rename, so the rename and the directory's
        fsync do not hold the index's one write lock, and with SQLite under
        ``_index_writer``.

        Overwriting keeps the previous file under a second name in the spool directory
        until the commit: a failed index write puts it back, so the index row and the file
        still describe the same object; a crash leaves it to the next start's clean-up.
        """
        config = self.config
        assert config is not None and request.dataset_path is not None
        uid = request.affected_sop_instance_uid
        final = prepared.final
        cursor = connection.cursor()
        existing = sql.find_path(cursor, config, uid)
        if existing is not None and self.options.duplicates != "overwrite":
            if (self.data_root / existing).exists():
                return self._duplicate(request, existing)
            # Indexed, but its file is gone (deleted by hand, a lost disk): the copy offered
            # now is kept in its place instead of being turned away as a duplicate.
            request.log.warn(
                "SOP Instance UID {uid} is indexed but its file {path} is missing: this copy "
                "is stored in its place",
                uid=uid,
                path=existing,
            )
        # Only what will be written meets the reserve: a duplicate kept out writes nothing.
        short = self._free_space_problem()
        if short is not None:
            return self._refuse(request, OUT_OF_RESOURCES, short)
        if not request.point_of_no_return():
            # The add-in timeout expired first and the peer is told 0x0110: store nothing.
            return self._refuse(request, PROCESSING_FAILURE, "add-in timeout expired first")
        try:
            held.make_durable()
            # Nothing renamed yet: a failed link (ENOSPC for the directory entry, EIO) is
            # answered as the other I/O steps are.
            previous = None if existing is None else self._keep_previous(uid, existing)
        except OSError as exc:
            return self._io_failure(request, exc)
        try:
            durable_rename(request.dataset_path, final, self.data_root, config.durable)
        except PlacedNotDurableError as exc:
            # In place, but its name may not survive a power loss: the peer is told the store
            # failed, so the data root goes back to what it held before.
            self._undo_place(previous, existing, final)
            return self._io_failure(request, exc)
        except OSError as exc:
            self._drop_previous(previous, uid)
            return self._io_failure(request, exc)
        if self.options.simulate_crash_after_rename:
            os.kill(os.getpid(), signal.SIGKILL)  # testing aid (options.py)
        writer = None if began or config.dsn else self._index_writer
        if writer is not None:
            writer.acquire()
        received_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        committing = False
        left: list[sql.Above] | None = [] if config.dsn else None
        try:
            if not began:
                sql.begin_write(cursor, config)
            written = sql.record(
                cursor,
                config,
                prepared.attributes,
                path=prepared.relative,
                size=prepared.size,
                received_at=received_at,
                calling_ae=request.calling_ae,
                cache=self._parents,
                settle_later=left,
            )
            committing = True
            if self._parents is None:
                connection.commit()
            else:
                self._parents.commit(connection, written)
        except Exception as exc:
            if committing and config.dsn:
                committed = self._commit_outcome(uid, received_at, prepared.size, exc)
                if committed:
                    if left:
                        self._settle(connection, left, uid)  # on a broken connection: logged
                    return self._stored(request, previous, final)
                if committed is None:  # nobody can tell: the file stays (_commit_outcome)
                    self._drop_previous(previous, uid)
                    raise
            # Keep index and files in agreement: no file without a row, and the row of an
            # overwritten object describes the file in place again. First, so that a
            # rollback failing as well (the same broken disk) cannot skip it.
            self._undo_place(previous, existing, final)
            if self._parents is not None:
                self._parents.clear()
            if writer is not None:
                try:
                    connection.rollback()  # before the next writer may begin
                except Exception as rollback_error:
                    log.error("index rollback failed: {error}", error=rollback_error)
            if _index_full(exc):
                return self._refuse(request, OUT_OF_RESOURCES, f"index full: {exc}")
            raise
        finally:
            if writer is not None:
                writer.release()
        if left:
            self._settle(connection, left, uid)
        return self._stored(request, previous, final)

    def _settle(self, connection: Any, left: list[sql.Above], uid: str) -> None:
        """Delete the rows a committed store moved away from and had to skip (PostgreSQL:
        another transaction held them; :func:`.index.settle_left_rows`).

        The object is stored and indexed: a failure here only leaves rows with nothing under
        them, which ``check`` reports and ``--repair`` deletes, so it is logged, not raised.
        """
        assert self.config is not None
        try:
            held = sql.settle_left_rows(connection, self.config, left)
        except Exception as exc:
            log.warn(
                "the rows instance {uid} was moved away from could not be looked at again "
                "({error}); `pacsref server check --repair` deletes any left empty",
                uid=uid,
                error=exc,
            )
            return
        if held:
            log.warn(
                "the rows instance {uid} was moved away from were still held by other "
                "transactions ({held}); `pacsref server check --repair` deletes any left empty",
                uid=uid,
                held=", ".join(f"patient {p}, study {t}, series {r}" for r, t, p in held),
            )

    def _stored(self, request: DimseRequest, previous: Path | None, final: Path) -> StoreOutcome:
        """The store is committed: drop the overwritten file's second name, and say so.

        Nothing here may fail the store any more: the object is in place and indexed. Only a
        store that replaced a file has a ``previous``; one that took the place of an indexed
        instance whose file had gone overwrote nothing (its warning said so already).
        """
        self._drop_previous(previous, request.affected_sop_instance_uid)
        if previous is not None:
            request.log.warn(
                "duplicate SOP Instance UID {uid} from {ae}: overwritten (duplicates=overwrite)",
                uid=request.affected_sop_instance_uid,
                ae=request.calling_ae,
            )
        overwrite = self.options.duplicates == "overwrite"
        return StoreOutcome(
            SUCCESS, final, opened=_opened_for_notification(request, final, overwrite)
        )

    def _commit_outcome(
        self, uid: str, received_at: str, size: int, error: Exception
    ) -> bool | None:
        """Whether a PostgreSQL COMMIT that raised happened after all; None: cannot tell.

        A connection lost during COMMIT leaves its outcome unknown: the server may have
        committed before the connection went. Removing the file then would leave a row
        without its file, and the modality's resend would find the row and be told the
        object is stored (keep-first). So a new connection looks for this store's row (its
        receive time and size); if there is no answer either, the file stays in place for
        ``pacsref server check --repair``, which indexes a file without a row.
        """
        assert self.config is not None
        check = None
        try:
            check = sql.open_connection(self.config, wait=COMMIT_LOOKUP_WAIT)
            committed = sql.instance_written(check.cursor(), self.config, uid) == (
                received_at,
                size,
            )
        except Exception as lookup_error:
            log.error(
                "the index commit of {uid} failed ({error}) and whether it happened cannot be "
                "known ({lookup_error}): its file stays in place for `pacsref server check "
                "--repair`",
                uid=uid,
                error=error,
                lookup_error=lookup_error,
            )
            return None
        finally:
            if check is not None:
                with contextlib.suppress(Exception):
                    check.close()
        if committed:
            log.warn(
                "the index commit of {uid} raised ({error}) but happened: stored",
                uid=uid,
                error=error,
            )
        return committed

    def _undo_place(self, previous: Path | None, existing: str | None, final: Path) -> None:
        """Put the data root back as it was before this store's rename.

        The overwritten file (kept under a second name) goes back in place; without one,
        the new file is removed: either nothing was stored under this UID, or the stored
        file had gone before this store (removed by hand), and its row is left as it was.
        The store's own failure is what the peer hears: a failure here is only logged.
        """
        assert self.config is not None
        if previous is None or existing is None:
            try:
                final.unlink(missing_ok=True)
            except OSError as exc:
                log.error(
                    "could not remove {path} after its store failed ({error}): `pacsref "
                    "server check --repair` indexes it",
                    path=str(final),
                    error=exc,
                )
            return
        try:
            durable_rename(previous, self.data_root / existing, self.data_root, self.config.durable)
        except PlacedNotDurableError as exc:  # renamed: the previous version is in place
            log.warn(
                "put the overwritten {path} back, but its directory's fsync failed ({error}): "
                "its directory entry may not be durable",
                path=existing,
                error=exc,
            )
        except OSError as exc:
            log.error(
                "could not put the overwritten {path} back ({error}); it is kept as {kept}",
                path=existing,
                error=exc,
                kept=str(previous),
            )

    def _keep_previous(self, uid: str, existing: str) -> Path | None:
        """A second name for ``uid``'s stored file about to be overwritten, or None if it is gone.

        The name is unique (:func:`_previous_name`): a leftover of an earlier run, even one
        with this process ID, never stands in its way. Durable, it survives a power failure
        once the new file's rename does (:func:`.writer.durable_link`).
        """
        assert self._spool_dir is not None and self.config is not None
        for _ in range(_PREVIOUS_ATTEMPTS):
            keep = self._spool_dir / _previous_name(_root_token(self.data_root), uid)
            try:
                durable_link(self.data_root / existing, keep, self.config.durable)
            except FileNotFoundError:
                return None
            except FileExistsError:
                continue
            return keep
        raise FileExistsError(errno.EEXIST, f"no unused second name in {self._spool_dir}")

    @staticmethod
    def _drop_previous(previous: Path | None, uid: str) -> None:
        """Remove the overwritten file's second name; a failure is only logged.

        It comes once the store's outcome is settled, a success after the commit or the
        store's own failure, and the peer must hear that one. The next start looks at a name
        left behind (:meth:`StorageAddin._previous_left`).
        """
        if previous is None:
            return
        try:
            previous.unlink(missing_ok=True)
        except OSError as exc:
            log.warn(
                "could not remove {path}, the second name of the overwritten version of {uid} "
                "({error}); the next start looks at it again",
                path=str(previous),
                uid=uid,
                error=exc,
            )

    @staticmethod
    def _dataset_problem(request: DimseRequest, values: dict[str, str]) -> str | None:
        """Why the data set cannot be stored under the command's identity, or None."""
        if values["SOPInstanceUID"] != request.affected_sop_instance_uid:
            return (
                f"data set SOP Instance UID {values['SOPInstanceUID']!r} differs from the "
                f"command's {request.affected_sop_instance_uid!r}"
            )
        if values["SOPClassUID"] != request.affected_sop_class_uid:
            return (
                f"data set SOP Class UID {values['SOPClassUID']!r} differs from the "
                f"command's {request.affected_sop_class_uid!r}"
            )
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
            problem = uid_problem(values[keyword])
            if problem is not None:
                return f"{keyword} {values[keyword]!r} {problem}"
        return None

    def _duplicate(self, request: DimseRequest, existing: str) -> StoreOutcome:
        if self.options.duplicates == "refuse":
            return self._refuse(
                request,
                DUPLICATE_SOP_INSTANCE,
                f"SOP Instance UID already stored (duplicates=refuse): {existing}",
            )
        request.log.warn(
            "duplicate SOP Instance UID {uid} from {ae}: first copy kept, this one discarded "
            "(duplicates=keep-first)",
            uid=request.affected_sop_instance_uid,
            ae=request.calling_ae,
        )
        return StoreOutcome(SUCCESS, None)

    def _io_failure(self, request: DimseRequest, exc: OSError) -> StoreOutcome:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return self._refuse(request, OUT_OF_RESOURCES, f"storage full: {exc}")
        raise AddinStatusError(0x0110, f"cannot store: {exc}") from exc


class StorageStartError(RuntimeError):
    """The add-in cannot store in this server directory as configured; the message says why."""


#: Serial numbers of the second names kept for overwritten files (``_keep_previous``).
_PREVIOUS = itertools.count()
#: Unique per start (as the DIMSE spool's names): with the process ID, a second name never
#: meets a leftover of an earlier run, even one whose process had the same ID (containers).
_PREVIOUS_TOKEN = secrets.token_hex(4)
#: Names tried before giving up, should a name exist after all.
_PREVIOUS_ATTEMPTS = 100
#: In the second name of an object being overwritten (``_keep_previous``): the start-up clean-up
#: keeps such a file, which a failed store may have left as the only copy of the object.
_PREVIOUS_MARK = "-previous-"
#: A second name as :func:`_previous_name` makes it; group 1 is the data root's token, group
#: 2 the SOP Instance UID. Names of earlier versions, ``<prefix><pid>-previous-<n><suffix>``,
#: do not match.
_PREVIOUS_NAME = re.compile(
    rf"{re.escape(SPOOL_PREFIX)}\d+-[0-9a-f]+-\d+{re.escape(_PREVIOUS_MARK)}"
    rf"([0-9a-f]{{8}})-([0-9.]+){re.escape(SPOOL_SUFFIX)}"
)


def _root_token(data_root: Path) -> str:
    """Eight hex digits naming the data root, for the second names in a temporary directory
    that servers may share: one server's check or start never takes another's previous
    version for one of its own instances."""
    return hashlib.sha256(os.fsencode(data_root.resolve())).hexdigest()[:8]


def _previous_name(root_token: str, uid: str) -> str:
    """A new second name for ``uid``'s overwritten file: process ID first, as every spool
    file's (:func:`_written_by_other_live_process`), then the data root's token and the UID
    (digits and dots, checked before), so that a leftover says whose previous version it is."""
    return (
        f"{SPOOL_PREFIX}{os.getpid()}-{_PREVIOUS_TOKEN}-{next(_PREVIOUS)}{_PREVIOUS_MARK}"
        f"{root_token}-{uid}{SPOOL_SUFFIX}"
    )


def _previous_of(name: str, root_token: str) -> str | None:
    """The instance UID a second name of this data root holds; None for another's, or for a
    name of an earlier version."""
    match = _PREVIOUS_NAME.fullmatch(name)
    if match is None or match.group(1) != root_token or uid_problem(match.group(2)):
        return None
    return match.group(2)


#: SQLite's SQLITE_FULL and PostgreSQL's disk_full: the index, not the file, ran out of room.
_SQLITE_FULL = 13
_PG_DISK_FULL = "53100"


def _index_full(exc: BaseException) -> bool:
    return (
        getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL
        or getattr(exc, "sqlstate", None) == _PG_DISK_FULL
        or (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT))
    )


def _written_by_other_live_process(path: Path) -> bool:
    """Whether the spool file's name says it belongs to another process that still runs.

    A process ID is reused: after a ``kill -9`` and a restart in a container, another
    process (or the new server itself, one number on) may hold the killed server's ID, and
    its files would then be kept for as long as that process runs. So a process that started
    after the file last changed (its ctime: written, linked or renamed) is not its writer.
    """
    pid_text = path.name[len(SPOOL_PREFIX) :].split("-", 1)[0]
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    pid = int(pid_text)
    if not process_alive(pid):
        return False
    try:
        changed = path.stat().st_ctime
    except OSError:
        return True  # gone or unreadable: nothing to decide on, leave it
    started = process_start(pid)
    return started is None or started <= changed + _START_SLACK_SECONDS


#: How much later than a file's last change its writer's start may seem: /proc counts in
#: ticks of 10 ms, and the wall clock may have been slewed since the file changed.
_START_SLACK_SECONDS = 0.5


@dataclasses.dataclass(frozen=True, slots=True)
class _Prepared:
    """What steps 2-3 found: the index attributes, the stored file's place, its size.

    ``relative`` is the place as the index row keeps it (:func:`.uids.stored_name`), ``final``
    the same under the data root.
    """

    attributes: IndexAttributes
    relative: str
    final: Path
    size: int


def _make_addin() -> StorageAddin:
    return StorageAddin(_server_dir_of_package(), StorageOptions())


#: The instance the loader picks up.
addin = _make_addin()
