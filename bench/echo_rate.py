"""C-ECHO round trips per second over one association: pacsref against DCMTK and pynetdicom.

C-ECHO is the smallest complete DIMSE exchange, so its rate measures the per-message cost of the
whole receive path (framing, upper-layer state machine, DIMSE decoding, dispatch to an add-in,
response encoding) with no storage in the way. Absolute numbers depend on the machine; the ratios
to two reference servers measured in the same run on the same machine do not, much. That is why
all three servers are measured here, one after the other, with the same client:

- pacsref: ``twistd -n pacsref`` (:class:`pacsref.testing.twistd.TwistdServer`), embedded
  defaults in a temporary directory;
- pynetdicom: ``python -m pynetdicom storescp`` (it is also a Verification SCP);
- DCMTK: ``/usr/bin/storescp``.

The client is DCMTK's ``echoscu --repeat N`` (one association, N C-ECHOs), started with
``TCP_NODELAY=1`` like the DCMTK server: DCMTK reads it from the environment, and without it
Nagle's algorithm meets the peer's delayed ACK and every echo costs about 40 ms. The rate is N
divided by the wall time of the whole echoscu run, which includes its start, association set-up
and release (a few milliseconds, under 2 % at N = 2000). Each server gets one warm-up run, then
``--runs`` measured runs; the median is reported.

Run from the repository root: ``python bench/echo_rate.py [--json FILE]`` (see bench/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

try:
    import pacsref  # noqa: F401  (installed)
except ImportError:  # run as a script from a source tree that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pacsref.testing.dcmtk import dcmtk_tool, missing_reason, run_echoscu
from pacsref.testing.net import LOOPBACK, free_loopback_port, wait_for_port
from pacsref.testing.twistd import ServerStartError, TwistdServer

#: Targets from DESIGN.md's performance principles, as ratios of echoes per second.
TARGETS = {"pacsref/DCMTK": 0.5, "pacsref/pynetdicom": 5.0}

#: Environment for every DCMTK process (client and server), see the module docstring.
NODELAY = {"TCP_NODELAY": "1"}

START_TIMEOUT_S = 30.0


class BenchError(RuntimeError):
    """A server did not start or a run did not complete; the message says which and why."""


@dataclass
class Result:
    """One server's measurements: echoes per second of each run, their median, or an error."""

    server: str
    runs: list[float] = field(default_factory=list)
    median: float | None = None
    error: str | None = None


Endpoint = tuple[str, int, str]
ServerFactory = Callable[[Path], contextlib.AbstractContextManager[Endpoint]]


@contextlib.contextmanager
def subprocess_server(
    name: str, argv: list[str], port: int, workdir: Path, env: dict[str, str] | None = None
) -> Iterator[None]:
    """Run ``argv`` until the block ends; wait (bounded) for ``port``; always stop it."""
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def exited_within(seconds: float) -> bool:
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    try:
        if not wait_for_port(LOOPBACK, port, START_TIMEOUT_S, pause=exited_within):
            state = (
                f"exited with code {process.returncode}"
                if process.poll() is not None
                else f"did not open port {port} within {START_TIMEOUT_S} s"
            )
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
            raise BenchError(f"{name} {state}: {' '.join(argv)}\n{tail}")
        yield
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@contextlib.contextmanager
def pacsref_server(workdir: Path) -> Iterator[Endpoint]:
    """pacsref as an administrator runs it: ``twistd -n pacsref`` on quick-start defaults."""
    server = TwistdServer("PACSREF", root=workdir / "pacsref", start_timeout_s=START_TIMEOUT_S)
    try:
        server.start()
    except ServerStartError as error:
        raise BenchError(str(error)) from error
    try:
        host, port = server.address
        yield host, port, server.ae_title
    finally:
        server.stop()


@contextlib.contextmanager
def pynetdicom_server(workdir: Path) -> Iterator[Endpoint]:
    """pynetdicom's storescp app, which is also a Verification SCP; quiet, storing nothing."""
    port = free_loopback_port()
    argv = [sys.executable, "-m", "pynetdicom", "storescp", str(port)]
    argv += ["-aet", "STORESCP", "-ba", LOOPBACK, "--ignore", "-q"]
    with subprocess_server("pynetdicom", argv, port, workdir):
        yield LOOPBACK, port, "STORESCP"


@contextlib.contextmanager
def dcmtk_server(workdir: Path) -> Iterator[Endpoint]:
    """DCMTK's storescp (it listens on all interfaces; DCMTK 3.6.7 has no bind option)."""
    storescp = dcmtk_tool("storescp")
    if storescp is None:
        raise BenchError(missing_reason("storescp"))
    port = free_loopback_port()
    argv = [storescp, "--aetitle", "STORESCP", "--ignore", str(port)]
    with subprocess_server("dcmtk", argv, port, workdir, env=NODELAY):
        yield LOOPBACK, port, "STORESCP"


SERVERS: dict[str, ServerFactory] = {
    "pacsref": pacsref_server,
    "pynetdicom": pynetdicom_server,
    "DCMTK": dcmtk_server,
}


def echo_rate(endpoint: Endpoint, repeat: int, echoscu: str) -> float:
    """Echoes per second of one ``echoscu --repeat`` run (one association)."""
    host, port, called_ae = endpoint
    started = time.perf_counter()
    outcome = run_echoscu(
        host, port, called_ae, "BENCH", repeat=repeat, echoscu=echoscu, timeout_s=600, env=NODELAY
    )
    elapsed = time.perf_counter() - started
    if not outcome.ok:
        raise BenchError(f"echoscu exited with {outcome.returncode}:\n{outcome.output[-2000:]}")
    return repeat / elapsed


def measure(
    name: str, factory: ServerFactory, args: argparse.Namespace, echoscu: str, log: TextIO
) -> Result:
    """Start one server, warm it up, measure ``args.runs`` runs; errors become the result."""
    result = Result(server=name)
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        try:
            with factory(Path(tmp)) as endpoint:
                if args.warmup:
                    echo_rate(endpoint, args.warmup, echoscu)
                for run in range(1, args.runs + 1):
                    rate = echo_rate(endpoint, args.repeat, echoscu)
                    result.runs.append(round(rate, 1))
                    print(f"  {name} run {run}/{args.runs}: {rate:,.0f} echoes/s", file=log)
        except BenchError as error:
            result.error = str(error)
            print(f"  {name}: ERROR {error}", file=log)
    if result.runs and result.error is None:
        result.median = round(statistics.median(result.runs), 1)
    return result


def ratios(results: dict[str, Result]) -> dict[str, float | None]:
    """pacsref's median over each reference's median (None when either is missing)."""
    out: dict[str, float | None] = {}
    ours = results.get("pacsref")
    for reference in ("DCMTK", "pynetdicom"):
        theirs = results.get(reference)
        key = f"pacsref/{reference}"
        if ours and theirs and ours.median and theirs.median:
            out[key] = round(ours.median / theirs.median, 3)
        else:
            out[key] = None
    return out


def format_table(results: dict[str, Result], args: argparse.Namespace) -> str:
    """The human-readable report: one row per server, then the ratios against the targets."""
    lines = [
        f"C-ECHO round trips over one association (DCMTK echoscu --repeat {args.repeat}, "
        f"median of {args.runs} runs)",
        "",
        f"{'server':<12} {'echoes/s':>10}   runs",
    ]
    for result in results.values():
        if result.median is None:
            first = (result.error or "not measured").splitlines()[0]
            lines.append(f"{result.server:<12} {'-':>10}   error: {first}")
        else:
            runs = "  ".join(f"{rate:,.0f}" for rate in result.runs)
            lines.append(f"{result.server:<12} {result.median:>10,.0f}   {runs}")
    lines.append("")
    for key, value in ratios(results).items():
        target = TARGETS[key]
        if value is None:
            lines.append(f"{key:<20} {'-':>6}   (target >= {target})")
        else:
            verdict = "meets" if value >= target else "BELOW"
            lines.append(f"{key:<20} {value:>6.2f}   {verdict} target >= {target}")
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    """What the numbers depend on, recorded next to them in the JSON output."""
    import pynetdicom

    echoscu = dcmtk_tool("echoscu")
    banner = ""
    if echoscu:
        banner = subprocess.run(
            [echoscu, "--version"], capture_output=True, text=True, check=False
        ).stdout.splitlines()[0]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "pynetdicom": pynetdicom.__version__,
        "dcmtk": banner,
    }


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2000, help="C-ECHOs per run (default 2000)")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per server (default 3)")
    parser.add_argument(
        "--warmup", type=int, default=200, help="C-ECHOs in the unmeasured first run (0: none)"
    )
    parser.add_argument(
        "--only",
        default=",".join(SERVERS),
        help=f"comma-separated servers to measure (default: {','.join(SERVERS)})",
    )
    parser.add_argument(
        "--json", metavar="FILE", help="also write the results as JSON ('-': stdout)"
    )
    parser.add_argument(
        "--check-targets", action="store_true", help="exit 3 if a ratio is below its target"
    )
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.only) - set(SERVERS)
    if unknown:
        parser.error(f"unknown server(s) {sorted(unknown)}; known: {', '.join(SERVERS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the table (and JSON); 1 if a server failed, 3 if targets are checked and
    missed, 0 otherwise."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    echoscu = dcmtk_tool("echoscu")
    if echoscu is None:
        print(missing_reason("echoscu"), file=sys.stderr)
        return 1
    progress = sys.stderr if args.json == "-" else sys.stdout
    results = {name: measure(name, SERVERS[name], args, echoscu, progress) for name in args.only}
    print("\n" + format_table(results, args), file=progress)
    if args.json:
        report = {
            "benchmark": "echo_rate",
            "repeat": args.repeat,
            "runs": args.runs,
            "results": {name: asdict(result) for name, result in results.items()},
            "ratios": ratios(results),
            "targets": TARGETS,
            "environment": environment(),
        }
        text = json.dumps(report, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    if any(result.error for result in results.values()):
        return 1
    if args.check_targets:
        missed = [key for key, value in ratios(results).items() if (value or 0) < TARGETS[key]]
        return 3 if missed else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
