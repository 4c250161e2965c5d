"""CPU per C-STORE in the storage add-in alone: no sockets, no receive path, no thread hand-off.

    python bench/store_path.py [--data /tmp/pacsref-bench-data] [--case tiny] [--objects 1000]
                               [--runs 5] [--durability relaxed,fsync] [--dir DIR]

Every object of ``--case`` (a folder of ``bench/make_data.py``'s output: ``tiny``, ``ct512k``)
is first copied into the server's spool directory, as the DIMSE layer would have written it (a
Part-10 file), untimed; then the add-in's ``handle_store`` is called for each in turn on this
thread, with the index pool's jobs run at once on this thread too, and that loop is timed: user
and system CPU time and wall time per object. User CPU is the add-in's Python; system CPU the
kernel's share (a read, a rename, the index's writes and, with durability ``fsync``, issuing
the two syncs, whose waiting is in the wall time only).

The end-to-end benchmark (``store_bench.py``) spreads by 30-50 % on a shared machine; this
one moves only when the add-in's own code does (or the file system's cost per create, rename
and sync), which makes it the measure to compare two versions of the store path by. Each run
stores into a new server directory; nothing is deleted until the end, because on ext4 without
a journal a create is slow for a minute after many deletions (``fsinfo.py``).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fsinfo import describe

from addins.storage import StorageAddin
from addins.storage.options import StorageOptions
from pacsref.addin import AssociationInfo, DimseRequest, StoreOutcome
from pacsref.dimse import SPOOL_PREFIX, SPOOL_SUFFIX
from pacsref.server.create import create_server
from pacsref.testing.harness import SyncPool, SyncReactor

_SOP_CLASS = 0x00080016
_SOP_INSTANCE = 0x00080018

#: (SOP Class UID, SOP Instance UID, transfer syntax, data set offset) of a Part-10 file.
Identity = tuple[str, str, str, int]


class _Log:
    """A logger that drops everything (a refused store would log; none is expected)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kw: None


def identity(path: Path) -> Identity:
    """(SOP Class UID, SOP Instance UID, transfer syntax, data set offset) of a Part-10 file."""
    from pydicom import dcmread

    dataset = dcmread(path, stop_before_pixels=True, specific_tags=[_SOP_CLASS, _SOP_INSTANCE])
    head = path.read_bytes()[:1024]
    (group_length,) = struct.unpack("<I", head[140:144])
    return (
        str(dataset.SOPClassUID),
        str(dataset.SOPInstanceUID),
        str(dataset.file_meta.TransferSyntaxUID),
        144 + group_length,
    )


def _request(path: Path, known: Identity) -> DimseRequest:
    sop_class, sop_instance, transfer_syntax, offset = known
    return DimseRequest(
        association=AssociationInfo("STORESCU", "PACSREF", "127.0.0.1", 40000),
        context_id=1,
        abstract_syntax=sop_class,
        transfer_syntax=transfer_syntax,
        command={0x0100: 0x0001},
        dataset_path=path,
        message_id=1,
        affected_sop_class_uid=sop_class,
        affected_sop_instance_uid=sop_instance,
        log=_Log(),  # type: ignore[arg-type]
        services=None,  # type: ignore[arg-type]
        dataset_offset=offset,
    )


def _cpu() -> tuple[float, float]:
    """(user, system) CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def run(
    root: Path, files: list[Path], identities: dict[Path, Identity], durability: str
) -> tuple[float, float, float]:
    """(user CPU, system CPU, wall) seconds per object for one run storing ``files``."""
    server_dir = root / "PACSREF"
    create_server(server_dir, {"ae_title": "PACSREF", "port": 11112})
    addin = StorageAddin(server_dir, StorageOptions(durability=durability))
    addin.start(reactor=SyncReactor(), threadpool=SyncPool())
    spool_dir = server_dir / "tmp"
    spool_dir.mkdir(exist_ok=True)
    requests = []
    for n, source in enumerate(files):
        spool = spool_dir / f"{SPOOL_PREFIX}{n}{SPOOL_SUFFIX}"
        shutil.copyfile(source, spool)
        requests.append(_request(spool, identities[source]))
    outcomes: list[object] = []
    try:
        wall_start, (user_start, system_start) = time.perf_counter(), _cpu()
        for request in requests:
            result = addin.handle_store(request)
            if isinstance(result, StoreOutcome):
                outcomes.append(result)
            else:
                result.addBoth(outcomes.append)
        wall = time.perf_counter() - wall_start
        user_end, system_end = _cpu()
        user, system = user_end - user_start, system_end - system_start
    finally:
        addin.stopService()
    for request, outcome in zip(requests, outcomes, strict=True):
        if not isinstance(outcome, StoreOutcome) or outcome.status != 0:
            raise SystemExit(f"{request.dataset_path}: not stored: {outcome}")
    count = len(files)
    return user / count, system / count, wall / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/pacsref-bench-data"))
    parser.add_argument("--case", default="tiny", help="folder under --data (tiny, ct512k)")
    parser.add_argument("--objects", type=int, default=1000, help="at most this many objects")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--durability", default="relaxed,fsync")
    parser.add_argument("--dir", type=Path, default=Path.cwd(), help="where the servers go")
    args = parser.parse_args()
    files = sorted(p for p in (args.data / args.case).rglob("*") if p.is_file())[: args.objects]
    if not files:
        parser.error(f"no files under {args.data / args.case}: run bench/make_data.py first")
    identities = {path: identity(path) for path in files}
    durabilities = args.durability.split(",")
    root = Path(tempfile.mkdtemp(prefix="pacsref-store-path-", dir=args.dir))
    print(describe(root), file=sys.stderr)
    results: dict[str, list[tuple[float, float, float]]] = {d: [] for d in durabilities}
    try:
        for n in range(args.runs):
            for durability in durabilities:
                results[durability].append(
                    run(root / f"{durability}{n}", files, identities, durability)
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for durability, figures in results.items():
        user, system, wall = ([figure[i] * 1e6 for figure in figures] for i in range(3))
        print(
            f"{durability}: per store, user CPU best {min(user):.0f} us, median "
            f"{statistics.median(user):.0f} us; system CPU median {statistics.median(system):.0f}"
            f" us; wall median {statistics.median(wall):.0f} us ({len(files)} objects of "
            f"{args.case}, {args.runs} runs)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
