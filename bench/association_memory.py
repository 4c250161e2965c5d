"""Server memory per open association: RSS idle, then with 100, 300 and 500 associations open.

Max Clients is a promise that the server can *hold* that many associations; what each one costs
in memory decides how far the promise can go on a given machine (issue 3, item 9: under 100 KiB
each). The server's resident set size (``VmRSS`` of ``/proc/PID/status``) is read:

1. idle, after one warm-up association (associate, C-ECHO, release), so that code and caches
   every association needs once are not charged to the first hundred;
2. after opening associations up to each count (cumulatively: 100, then 200 more, ...), each
   with one C-ECHO answered (``--no-echo`` to skip), all still open.

KiB per association = (RSS with N open - idle RSS) / N. The associations are raw sockets from
this process (:mod:`simulators.crowd`), so the client's own memory is not in the figure.

For scale, the same run measures pynetdicom's AE (a Verification SCP in its own process) and,
when installed, Orthanc; both hold associations in one process like pacsref. DCMTK is left
out: its servers fork a process per association, so there is no single RSS to compare.

Run from the repository root: ``python bench/association_memory.py [--json FILE]``
(see bench/README.md). Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

try:
    import pacsref  # noqa: F401  (installed)
except ImportError:  # run as a script from a source tree that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pacsref.testing.twistd import TwistdServer
from simulators.crowd import Attempt, open_associations, release_all, tally
from simulators.misbehaving import AssociateAC
from simulators.netutil import LOOPBACK, free_loopback_port, wait_for_port
from simulators.testservers import find_orthanc, orthanc_config

#: Issue 3, item 9.
TARGET_KIB = 100.0
COUNTS = (100, 300, 500)

#: A pynetdicom Verification SCP in a process of its own (argv: port, max associations).
PYNETDICOM_SCP = """
import sys
from pynetdicom import AE
from pynetdicom.sop_class import Verification
ae = AE(ae_title="ECHOSCP")
ae.add_supported_context(Verification)
ae.maximum_associations = int(sys.argv[2])
ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 600
ae.start_server(("127.0.0.1", int(sys.argv[1])), block=True)
"""

Server = tuple[str, int, str, int]  # host, port, called AE title, pid


@dataclass
class Measurement:
    """RSS of one server with ``open`` associations open."""

    open: int
    rss_kib: int
    kib_per_association: float | None = None


@dataclass
class Result:
    """One server's measurements, or why there are none."""

    server: str
    idle_kib: int | None = None
    #: Whether each association answered one C-ECHO before the RSS was read.
    echo: bool = True
    points: list[Measurement] = field(default_factory=list)
    error: str | None = None


def rss_kib(pid: int) -> int:
    """The process's resident set size in KiB (``VmRSS`` of ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def raise_file_limit(needed: int) -> None:
    """One descriptor per association here and in the server (which inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise SystemExit(f"need {needed} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _echo_each(attempts: Sequence[Attempt]) -> None:
    """One C-ECHO on each accepted association (a modality that does something)."""
    for attempt in attempts:
        if isinstance(attempt.reply, AssociateAC):
            status = attempt.peer.echo(attempt.reply.contexts[0].context_id)
            if status != 0:
                raise RuntimeError(f"{attempt.calling_ae}: C-ECHO status 0x{status:04X}")


def open_in_batches(server: Server, titles: Sequence[str], batch: int) -> list[Attempt]:
    """Open one association per title, ``batch`` at a time (connect all, then request all).

    Batches, because a burst longer than a server's listen backlog is a different test (the
    max_clients feature and tests/load do that one): Orthanc, with DCMTK's backlog of 50, drops
    the SYNs of a burst of 60 and serves the rest over half a minute.
    """
    host, port, called, _ = server
    attempts: list[Attempt] = []
    for start in range(0, len(titles), batch):
        chunk = titles[start : start + batch]
        attempts += open_associations(host, port, called, chunk, len(chunk), timeout=30)
    return attempts


def measure(name: str, server: Server, counts: Sequence[int], echo: bool, batch: int) -> Result:
    """Idle RSS after a warm-up association, then RSS with each count of associations open."""
    host, port, called, pid = server
    result = Result(name)
    held: list[Attempt] = []
    try:
        warm = open_associations(host, port, called, "WARMUP", 1, timeout=30)
        _echo_each(warm)
        release_all(warm)
        result.idle_kib = rss_kib(pid)
        for count in counts:
            more = count - len(held)
            titles = [f"MEM_{len(held) + n:04d}" for n in range(more)]
            opened = open_in_batches(server, titles, batch)
            held += opened
            outcomes = tally(opened)
            if outcomes.get("accepted", 0) != more:
                raise RuntimeError(f"at {count}: {dict(outcomes)}")
            if echo:
                _echo_each(opened)
            rss = rss_kib(pid)
            per = (rss - result.idle_kib) / count
            result.points.append(Measurement(count, rss, round(per, 1)))
            print(
                f"{name}: {count} open, RSS {rss / 1024:.1f} MiB, {per:.1f} KiB each",
                file=sys.stderr,
            )
    except Exception as exc:  # a server that breaks is reported, the others still measured
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        release_all(held, timeout=10)
    return result


@contextlib.contextmanager
def pacsref_server(most: int) -> Iterator[Server]:
    """pacsref on embedded defaults, Max Clients above the largest count, long timers."""
    settings = {
        "max_clients": str(most + 10),
        "client_timeout": "600",
        "artim_timeout": "120",
    }
    with TwistdServer(settings=settings, start_timeout_s=60) as server:
        host, port = server.address
        pid = getattr(server, "pid", None) or server._process.pid  # type: ignore[union-attr]
        yield host, port, server.ae_title, int(pid)


@contextlib.contextmanager
def process_server(argv: list[str], port: int, called: str, log: Path) -> Iterator[Server]:
    """A reference server in a subprocess, stopped (by its pid) at the end."""
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        if not wait_for_port(LOOPBACK, port, 30):
            raise RuntimeError(f"{argv[0]} did not listen on {port}; see {log}")
        yield LOOPBACK, port, called, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def pynetdicom_server(most: int, workdir: Path) -> Iterator[Server]:
    """pynetdicom's AE (3.0) as a Verification SCP, maximum_associations above the counts."""
    port = free_loopback_port()
    argv = [sys.executable, "-c", PYNETDICOM_SCP, str(port), str(most + 10)]
    with process_server(argv, port, "ECHOSCP", workdir / "pynetdicom.log") as server:
        yield server


@contextlib.contextmanager
def orthanc_server(most: int, workdir: Path) -> Iterator[Server]:
    """Orthanc (no limit on associations to set); anonymous echo allowed."""
    path = find_orthanc()
    if path is None:
        raise RuntimeError("Orthanc not installed (apt-get install orthanc)")
    port = free_loopback_port()
    config = orthanc_config(port, "ORTHANC", workdir / "orthanc-db", [])
    config["DicomAlwaysAllowEcho"] = True
    config["DicomScpTimeout"] = 600
    (workdir / "orthanc-db").mkdir(exist_ok=True)
    (workdir / "orthanc.json").write_text(json.dumps(config))
    argv = [path, str(workdir / "orthanc.json")]
    with process_server(argv, port, "ORTHANC", workdir / "orthanc.log") as server:
        yield server


#: Servers measured without the C-ECHO on each association, and why.
NO_ECHO = {
    "orthanc": "Orthanc 1.10 serves open associations in turn on its DicomThreadsCount (4) "
    "threads: an echo waited 6 s more per 25 more open associations, over 30 s past 125",
}

SERVERS: dict[str, Callable[[int, Path], contextlib.AbstractContextManager[Server]]] = {
    "pacsref": lambda most, _: pacsref_server(most),
    "pynetdicom": pynetdicom_server,
    "orthanc": orthanc_server,
}


def table(results: Sequence[Result], counts: Sequence[int]) -> str:
    """Markdown: idle RSS and KiB per association at each count, per server."""
    head = "| server | idle RSS (MiB) | " + " | ".join(
        f"{n} open: RSS (MiB), KiB each" for n in counts
    )
    lines = [head + " |", "| --- " * (2 + len(counts)) + "|"]
    for result in results:
        if result.error and not result.points:
            lines.append(f"| {result.server} | {result.error} |" + " |" * len(counts))
            continue
        idle = f"{(result.idle_kib or 0) / 1024:.1f}"
        name = result.server if result.echo else f"{result.server} (no C-ECHO)"
        cells = [f"{p.rss_kib / 1024:.1f}, {p.kib_per_association}" for p in result.points]
        cells += [result.error or "-"] * (len(counts) - len(cells))
        lines.append(f"| {name} | {idle} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure each server; print the table; exit 3 with --check-target if pacsref misses it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default=",".join(map(str, COUNTS)), help="e.g. 100,300,500")
    parser.add_argument("--only", default=",".join(SERVERS), help="servers, comma separated")
    parser.add_argument("--no-echo", action="store_true", help="do not C-ECHO on each one")
    parser.add_argument(
        "--batch", type=int, default=25, help="associations opened at once (default: 25)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--check-target", action="store_true", help=f"exit 3 if pacsref > {TARGET_KIB:g} KiB"
    )
    args = parser.parse_args(argv)
    counts = sorted(int(n) for n in args.counts.split(","))
    raise_file_limit(2 * max(counts) + 256)
    results = []
    with tempfile.TemporaryDirectory(prefix="pacsref-memory-") as tmp:
        for name in args.only.split(","):
            try:
                with SERVERS[name](max(counts), Path(tmp)) as server:
                    echo = not args.no_echo and name not in NO_ECHO
                    results.append(measure(name, server, counts, echo, args.batch))
                    results[-1].echo = echo
            except Exception as exc:
                results.append(Result(name, error=f"{type(exc).__name__}: {exc}"))
    print(table(results, counts))
    if args.json:
        info: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d"),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "echo": not args.no_echo,
            "batch": args.batch,
            "results": [asdict(r) for r in results],
        }
        Path(args.json).write_text(json.dumps(info, indent=2))
    pacsref_result = next((r for r in results if r.server == "pacsref"), None)
    if pacsref_result is None or pacsref_result.error:
        return 1
    worst = max(p.kib_per_association or 0.0 for p in pacsref_result.points)
    return 3 if args.check_target and worst > TARGET_KIB else 0


if __name__ == "__main__":
    sys.exit(main())
