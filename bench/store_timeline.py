"""Where one C-STORE's time goes: the per-object cycle of pacsref, stage by stage.

    python bench/store_timeline.py --data /tmp/pacsref-bench-data --case c
    python bench/store_timeline.py --case a --durability relaxed [--json out.json]
                                   [--set max_pdu_length=16384 ...] [--detail] [--pool]

``store_bench.py`` says how long a whole client run takes; this says where the time of each
object goes, which is what to look at before optimising. The server runs in this process (the
same service twistd builds, in a temporary server directory, on a free loopback port), DCMTK's
``storescu`` sends the case's files over one association, and timestamps are taken on entry to
and exit from four methods of the store path. With one synchronous client the objects follow
each other strictly (``storescu`` waits for each response), so every object's cycle splits into:

====================  ====================================================================
stage                 from -> to
====================  ====================================================================
receive               first bytes of the request read -> message spooled, dispatch called
dispatch              dispatch called -> returned (UID checks, the store queued)
to store thread       dispatch called -> the store starts on the index pool's thread
store                 read attributes, (fsync), rename into place, index commit: on the
                      index pool's thread, or on the reactor's for an inline store (with
                      one association, every store of a small data set; ``--pool`` sends
                      durable ones to the pool as a server storing on NFS would)
back to reactor       store done -> the response is being built on the reactor thread
respond               response encoded and written to the socket
client                response written -> the next request's first bytes read: ``storescu``
                      reading its next file and sending it, and the reactor waking up
cycle                 one object, first bytes to the next object's first bytes
====================  ====================================================================

The first two and the last object are left out (association set-up and release). Medians
and means are in microseconds, totals in seconds. The wrapped methods are internal names
(``DicomServerProtocol.dataReceived``, ``Dispatcher.dispatch``, ``StorageAddin._store``
and ``_store_inline``,
``AssociationSession._respond``); the tool stops with an error naming the one that moved.
``--detail`` splits the store stage further at the storage add-in's own steps (rows starting
with "->" are the Python between two steps).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fsinfo import describe
from make_data import make

from pacsref.server.create import parse_assignment
from pacsref.testing.dcmtk import require_dcmtk
from pacsref.testing.net import free_loopback_port

HOST = "127.0.0.1"
#: (stage, start mark, end mark, end mark taken from the next object's cycle)
STAGES = (
    ("receive", "recv", "dispatch", False),
    ("dispatch", "dispatch", "dispatch_end", False),
    ("to store thread", "dispatch", "store", False),
    ("store", "store", "store_end", False),
    ("back to reactor", "store_end", "respond", False),
    ("respond", "respond", "respond_end", False),
    ("client", "respond_end", "recv", True),
    ("cycle", "recv", "recv", True),
)
#: With ``--detail``: the store stage split at the storage add-in's internal steps (all on the
#: store thread; "->" rows are the Python between two steps).
DETAIL_STAGES = (
    ("  open spool, start write-back", "store", "read", False),
    ("  read attributes", "read", "read_end", False),
    ("  -> duplicate lookup", "read_end", "find", False),
    ("  duplicate lookup", "find", "find_end", False),
    ("  -> fdatasync", "find_end", "fdatasync", False),
    ("  fdatasync", "fdatasync", "fdatasync_end", False),
    ("  -> rename", "fdatasync_end", "rename", False),
    ("  rename, fsync directory", "rename", "rename_end", False),
    ("  -> rows (BEGIN IMMEDIATE)", "rename_end", "record", False),
    ("  rows", "record", "record_end", False),
    ("  commit", "commit", "commit_end", False),
    ("  -> store end", "commit_end", "store_end", False),
)

Mark = tuple[str, float]


def _wrap(owner: Any, name: str, before: str, after: str, marks: list[Mark]) -> None:
    """Record ``(before, t)`` on entry to ``owner.name`` and ``(after, t)`` on exit."""
    original: Callable[..., Any] | None = getattr(owner, name, None)
    if original is None:
        raise SystemExit(f"store_timeline: {owner.__name__}.{name} is gone; update the tool")
    clock = time.perf_counter

    def timed(*args: Any, **kwargs: Any) -> Any:
        marks.append((before, clock()))
        try:
            return original(*args, **kwargs)
        finally:
            marks.append((after, clock()))

    setattr(owner, name, timed)


def _storage_addin_class() -> Any:
    """The storage add-in's class, from the module the server loaded it as."""
    for module in list(sys.modules.values()):
        cls = getattr(module, "StorageAddin", None)
        if cls is not None and getattr(module, "__name__", "").endswith(".storage"):
            return cls
    raise SystemExit("store_timeline: the server loaded no storage add-in")


def cycles(marks: list[Mark]) -> list[dict[str, float]]:
    """Split the marks into one dict per object: the first time each mark was reached.

    An object's cycle starts with the first ``recv`` after the previous response was
    written (``respond_end``).
    """
    out: list[dict[str, float]] = []
    current: dict[str, float] | None = None
    for name, at in marks:
        if name == "recv" and (current is None or "respond_end" in current):
            current = {"recv": at}
            out.append(current)
        elif current is not None and name not in current:
            current[name] = at
    return [c for c in out if "respond_end" in c]


def _wrap_store_steps(marks: list[Mark]) -> None:
    """``--detail``: marks at the storage add-in's steps of a store (DETAIL_STAGES)."""
    cls = _storage_addin_class()
    module = sys.modules[cls.__module__]
    _wrap(module, "read_attributes", "read", "read_end", marks)
    _wrap(module, "read_raw_index_attributes", "read", "read_end", marks)  # inline stores
    _wrap(module.HeldSpool, "make_durable", "fdatasync", "fdatasync_end", marks)
    _wrap(module.sql, "find_path", "find", "find_end", marks)
    _wrap(module, "durable_rename", "rename", "rename_end", marks)
    _wrap(module.sql, "record", "record", "record_end", marks)
    _wrap(module.sql.ParentRows, "commit", "commit", "commit_end", marks)


def stage_times(objects: list[dict[str, float]]) -> dict[str, list[float]]:
    """Seconds per stage for every object but the first two and the last.

    Stages whose marks were not taken (DETAIL_STAGES without ``--detail``) stay empty.
    """
    stages = STAGES + DETAIL_STAGES
    times: dict[str, list[float]] = {stage: [] for stage, *_ in stages}
    for i in range(2, len(objects) - 1):
        this, following = objects[i], objects[i + 1]
        for stage, start, end, from_next in stages:
            stop = (following if from_next else this).get(end)
            if start in this and stop is not None:
                times[stage].append(stop - this[start])
    return times


def run(
    files: list[Path],
    durability: str,
    settings: Mapping[str, object] | None = None,
    detail: bool = False,
    pool: bool = False,
) -> tuple[float, dict[str, list[float]]]:
    """Serve ``files`` from one ``storescu`` run; (client wall seconds, stage times).

    ``settings`` are server settings on top of the bench's AE title, port and address;
    ``detail`` also times the store's steps (``DETAIL_STAGES``; the fdatasync rows only for
    durable stores); ``pool``: durable stores run on the index pool even when they could be
    inline (``addins/storage/inline.py``).
    """
    from twisted.internet import reactor, threads

    from pacsref.server import dispatch, protocol, session
    from pacsref.server.create import create_server
    from pacsref.server.tap import Options, makeService

    work = Path(tempfile.mkdtemp(prefix="pacsref-timeline-"))
    server_dir = work / "PACSREF"
    port = free_loopback_port(HOST)
    create_server(
        server_dir, {**(settings or {}), "ae_title": "PACSREF", "port": port, "ip_address": HOST}
    )
    options_file = server_dir / "addin-options" / "storage.toml"
    options_file.parent.mkdir(exist_ok=True)
    options_file.write_text(f'durability = "{durability}"\n')
    options = Options()
    options.parseOptions(["--server-dir", str(server_dir)])
    service = makeService(options, reactor)
    marks: list[Mark] = []
    _wrap(protocol.DicomServerProtocol, "dataReceived", "recv", "recv_end", marks)
    _wrap(dispatch.Dispatcher, "dispatch", "dispatch", "dispatch_end", marks)
    addin_class = _storage_addin_class()
    _wrap(addin_class, "_store", "store", "store_end", marks)
    _wrap(addin_class, "_store_inline", "store", "store_end", marks)
    if pool:  # as on a file system that is not a local disk's
        sys.modules[addin_class.__module__].file_system_type = lambda path: None
    _wrap(session.AssociationSession, "_respond", "respond", "respond_end", marks)
    if detail:
        _wrap_store_steps(marks)
    service.startService()
    storescu = require_dcmtk("storescu")
    outcome: dict[str, Any] = {}

    def client() -> None:
        argv = [storescu, "-aec", "PACSREF", HOST, str(port), *map(str, files)]
        started = time.perf_counter()
        done = subprocess.run(argv, env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True)
        outcome["wall"] = time.perf_counter() - started
        outcome["returncode"] = done.returncode
        outcome["stderr"] = done.stderr.decode(errors="replace")[-2000:]

    finished = threads.deferToThread(client)
    finished.addErrback(lambda failure: outcome.setdefault("error", failure.getTraceback()))
    finished.addBoth(lambda _: service.stopService())
    finished.addBoth(lambda _: reactor.stop())
    os.sync()
    reactor.run()
    if "error" in outcome or outcome.get("returncode"):
        raise SystemExit(f"store_timeline: storescu failed\n{outcome}")
    shutil.rmtree(work, ignore_errors=True)
    return outcome["wall"], stage_times(cycles(marks))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/pacsref-bench-data"))
    parser.add_argument("--case", choices=("a", "c"), default="c",
                        help="a: 400 x 512 KiB; c: 1,000 x ~3 KB (default)")  # fmt: skip
    parser.add_argument("--durability", choices=("fsync", "relaxed"), default="fsync")
    parser.add_argument("--json", type=Path, help="also write every stage time here")
    parser.add_argument("--set", dest="settings", metavar="KEY=VALUE", action="append",
                        type=parse_assignment, default=[],
                        help="a server setting, as for pacsref create "
                        "(e.g. max_pdu_length=16384)")  # fmt: skip
    parser.add_argument(
        "--detail", action="store_true",
        help="also split the store stage at the add-in's steps",
    )  # fmt: skip
    parser.add_argument(
        "--pool", action="store_true",
        help="durable stores on the index pool, not inline on the reactor thread",
    )  # fmt: skip
    args = parser.parse_args()
    folders = make(args.data, args.case)
    files = sorted(folders[args.case].rglob("*.dcm"))
    wall, times = run(files, args.durability, dict(args.settings), args.detail, args.pool)
    where = ", durable stores on the pool" if args.pool else ""
    print(f"case {args.case}, durability {args.durability}{where}: {len(files)} objects, "
          f"storescu wall {wall:.3f} s\n")  # fmt: skip
    print(f"{describe(Path(tempfile.gettempdir()))}\n")
    print("| stage | median us | mean us | total s |")
    print("| --- | --- | --- | --- |")
    for stage, values in times.items():
        if values:
            print(f"| {stage} | {statistics.median(values) * 1e6:.0f} "
                  f"| {statistics.mean(values) * 1e6:.0f} | {sum(values):.3f} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"wall": wall, "stages": times}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
