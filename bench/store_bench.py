"""C-STORE benchmark: pacsref against DCMTK storescp, pynetdicom's storescp and Orthanc.

    python bench/make_data.py --out /tmp/pacsref-bench-data
    python bench/store_bench.py --data /tmp/pacsref-bench-data [--cases a,b,c,d]
        [--servers pacsref,pacsref-relaxed,dcmtk,dcmtk-durable,pynetdicom,orthanc] [--rounds 3]

Every case runs against every server in one run, each server fresh in its own temporary
directory on a loopback port, and is reported in wall seconds of the whole client run
(DCMTK ``storescu``, ``TCP_NODELAY=1``) and as a ratio to DCMTK's storescp.

A shared machine's speed drifts by 30-50 % within minutes, more than the differences being
measured, so each case is run in ``--rounds`` rounds, every server once per round, the order
rotated from round to round (no server always runs right after another's clean-up); the table
gives each server's median and the range of its ratio to DCMTK *within* a round. Before every
run the file systems are synced (``os.sync``), so that data another server left in the page
cache, and the discards of the previous run's deleted files, are not written out during it.
A run of many files leaves its directory until the whole bench ends (``DEFER_DELETE_FILES``):
on ext4 without a journal, creating a file scans the inodes its block group freed in the last
minute, so deleting one run's thousand files made every create of the next run cost 0.3-0.7 ms,
whichever server it was (bench/README.md, "Seventh round").

Cases (issue 6): (a) 400 CT images of 512 KiB over one association; (b) the same split over 8
and over 16 parallel ``storescu`` processes; (c) 1,000 ~3 KB objects over one association; (d)
one 629 MB multi-frame object, with the server's peak RSS (VmHWM) over its idle RSS. DCMTK's
storescp runs single-process (its default) except in (b), where it runs with ``--fork`` (one
process per association; its RSS is the parent's, its CPU seconds include the children it has
reaped). The table also gives each server's CPU seconds (user + system) during the client run:
far steadier than wall time on a shared machine. Every process started here is stopped by its
PID.

``dcmtk-durable`` is DCMTK's storescp made durable the way pacsref's default store is: run with
``LD_PRELOAD`` of ``durable_fclose.c`` (built here with ``cc``), which at each written file's
``fclose`` calls ``fdatasync`` on it and ``fsync`` on its directory, before storescp sends the
response. It is the floor of the durable targets on the machine at hand: what the two device
flushes per object cost a server that spends almost nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fsinfo import describe
from make_data import make

from pacsref.testing.dcmtk import require_dcmtk
from pacsref.testing.net import free_loopback_port, wait_for_port
from pacsref.testing.twistd import TwistdServer

HOST = "127.0.0.1"


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its reaped children (0.0 if unreadable).

    From ``/proc/<pid>/stat`` (utime, stime, cutime, cstime): the children's share is what
    DCMTK's ``--fork`` storescp spends in the processes it forked and has waited for.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": fields 3 onwards
    ticks = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _rss_kib(pid: int, field: str) -> int:
    """VmRSS / VmHWM of ``pid`` in KiB (0 if unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Peer:
    """One server under test: start(), pid, stop()."""

    def __init__(self, name: str, root: Path, parallel: bool) -> None:
        self.name, self.root, self.parallel = name, root, parallel
        self.port = free_loopback_port(HOST)
        self.process: subprocess.Popen[bytes] | None = None
        self.twistd: TwistdServer | None = None

    @property
    def pid(self) -> int:
        if self.twistd is not None:
            return self.twistd._process.pid  # type: ignore[union-attr]
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        out = self.root / "store"
        out.mkdir(parents=True)
        log = (self.root / "server.log").open("wb")
        if self.name.startswith("pacsref"):
            self.twistd = TwistdServer("PACSREF", root=self.root, port=self.port)
            self.twistd.create()
            if self.name == "pacsref-relaxed":
                options = self.twistd.server_dir / "addin-options" / "storage.toml"
                options.parent.mkdir()
                options.write_text('durability = "relaxed"\n')
            self.twistd.start()
            return
        env = {**os.environ, "TCP_NODELAY": "1"}  # DCMTK: disable Nagle on its sockets
        if self.name in ("dcmtk", "dcmtk-durable"):
            if self.name == "dcmtk-durable":
                env["LD_PRELOAD"] = str(durable_shim(self.root.parent))
            argv = [require_dcmtk("storescp"), "-aet", "PACSREF", "-od", str(out)]
            argv += ["--fork"] if self.parallel else []
            argv += [str(self.port)]
        elif self.name == "pynetdicom":
            argv = [sys.executable, "-m", "pynetdicom", "storescp", str(self.port),
                    "-aet", "PACSREF", "-od", str(out), "-ba", HOST, "-q"]  # fmt: skip
        elif self.name == "orthanc":
            config = {
                "Name": "bench", "StorageDirectory": str(out), "IndexDirectory": str(out),
                "DicomAet": "PACSREF", "DicomPort": self.port, "DicomCheckCalledAet": False,
                "HttpPort": free_loopback_port(HOST), "RemoteAccessAllowed": False,
                "HttpServerEnabled": False, "DicomServerEnabled": True, "Plugins": [],
                "DicomThreadsCount": 16, "StorageCompression": False,
            }  # fmt: skip
            path = self.root / "orthanc.json"
            path.write_text(json.dumps(config))
            argv = ["Orthanc", str(path)]
        else:
            raise ValueError(self.name)
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        cwd=self.root, start_new_session=True)  # fmt: skip
        if not wait_for_port(HOST, self.port, 30.0):
            raise RuntimeError(f"{self.name} did not listen on {self.port}")

    def stop(self) -> None:
        if self.twistd is not None:
            self.twistd.stop()
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # its --fork children too
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)


def durable_shim(work: Path) -> Path:
    """``durable_fclose.so`` in ``work``, compiled on first use; a clear stop without ``cc``."""
    library = work / "durable_fclose.so"
    work.mkdir(parents=True, exist_ok=True)
    if library.exists():
        return library
    source = Path(__file__).with_name("durable_fclose.c")
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SystemExit("store_bench: the dcmtk-durable server needs a C compiler (cc or gcc) "
                         f"to build {source.name}: apt-get install gcc libc6-dev")  # fmt: skip
    built = subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-Wall", "-o", str(library),
                            str(source), "-ldl"], capture_output=True, text=True)  # fmt: skip
    if built.returncode != 0:
        raise SystemExit(f"store_bench: building {source} failed:\n{built.stderr}")
    return library


def _storescu(port: int, files: list[Path]) -> subprocess.Popen[bytes]:
    argv = [require_dcmtk("storescu"), "-aec", "PACSREF", HOST, str(port), *map(str, files)]
    env = {**os.environ, "TCP_NODELAY": "1"}
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _run_clients(port: int, files: list[Path], parallel: int) -> tuple[float, int]:
    """Wall seconds for ``parallel`` storescu processes sharing ``files``; failed clients."""
    shares = [files[i::parallel] for i in range(parallel)]
    start = time.perf_counter()
    clients = [_storescu(port, share) for share in shares]
    failed = sum(1 for c in clients if c.wait(timeout=600) != 0)
    return time.perf_counter() - start, failed


#: A run stores this many files or more: its directory is deleted with ``work`` at the end, not
#: right after the run (module docstring).
DEFER_DELETE_FILES = 100
#: Free space left over when every kept run is on the disk (logs, the servers' indexes).
SPACE_MARGIN = 2**30


def space_needed(runs: list[list[Path]], servers: int, rounds: int) -> int:
    """Bytes taken by the runs kept until the end: each such run stores its inputs once."""
    kept = [files for files in runs if len(files) >= DEFER_DELETE_FILES]
    return sum(path.stat().st_size for files in kept for path in files) * servers * rounds


def run_case(
    case: str, server: str, files: list[Path], parallel: int, work: Path
) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix=f"bench-{server}-", dir=work))
    peer = Peer(server, root, parallel > 1)
    os.sync()  # the previous run's dirty pages and deletions are not this run's I/O
    try:
        peer.start()
        idle = _rss_kib(peer.pid, "VmRSS")
        cpu_before = server_cpu_seconds(peer.pid)
        seconds, failed = _run_clients(peer.port, files, parallel)
        cpu = server_cpu_seconds(peer.pid) - cpu_before
        peak = _rss_kib(peer.pid, "VmHWM")
    finally:
        peer.stop()
        if len(files) < DEFER_DELETE_FILES:
            shutil.rmtree(root, ignore_errors=True)
    return {"case": case, "server": server, "parallel": parallel, "seconds": round(seconds, 3),
            "failed_clients": failed, "server_cpu_s": round(cpu, 2),
            "idle_rss_mib": round(idle / 1024, 1),
            "peak_rss_mib": round(peak / 1024, 1)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/pacsref-bench-data"))
    parser.add_argument("--cases", default="a,b,c,d")
    parser.add_argument("--servers", default="dcmtk,pacsref,pacsref-relaxed,pynetdicom,orthanc")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of each case per server, interleaved (default 3)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write every run here")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    folders = make(args.data, args.cases)
    plan: list[tuple[str, str, int]] = []
    for case in args.cases.split(","):
        for parallel in (8, 16) if case == "b" else (1,):
            plan.append((case, "a" if case == "b" else case, parallel))
    servers = args.servers.split(",")
    inputs = {name: sorted(folders[name].rglob("*.dcm")) for _, name, _ in plan}
    results = []
    work = Path(tempfile.mkdtemp(prefix="pacsref-bench-"))
    disk = describe(work)
    needed = space_needed([inputs[name] for _, name, _ in plan], len(servers), args.rounds)
    free = shutil.disk_usage(work).free
    if needed + SPACE_MARGIN > free:
        shutil.rmtree(work, ignore_errors=True)
        raise SystemExit(
            f"store_bench: the runs kept until the end need about {needed / 2**30:.1f} GiB "
            f"(+{SPACE_MARGIN / 2**30:.0f} GiB margin) in {work.parent}, which has "
            f"{free / 2**30:.1f} GiB free: use fewer --cases, --servers or --rounds, or set "
            "TMPDIR to a larger disk"
        )
    try:
        for case, data_case, parallel in plan:
            files = inputs[data_case]
            for round_ in range(args.rounds):
                shift = round_ % len(servers)
                for server in servers[shift:] + servers[:shift]:
                    result = run_case(case, server, files, parallel, work)
                    result["round"] = round_ + 1
                    results.append(result)
                    print(json.dumps(result), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{disk}")
    print(summary_table(results, servers))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def summary_table(results: list[dict[str, Any]], servers: list[str]) -> str:
    """Markdown: per case and server, the median, every run, and the in-round ratio to DCMTK.

    Also the median of the server's CPU seconds (user + system) over each run: a
    machine's drift moves wall time far more than CPU time, so a change to the server's own
    work shows there first.

    The ratio range comes from pairing each run with DCMTK's run *of the same round*, which
    is what cancels the machine's drift; the median ratio is median over median.
    """
    lines = [
        "| case | server | median s | x DCMTK (median) | x DCMTK within a round | runs s "
        "| server CPU s | failed clients | idle RSS MiB | peak RSS MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    groups: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] = {}
    for r in results:
        groups.setdefault((r["case"], r["parallel"]), {}).setdefault(r["server"], []).append(r)
    for (case, parallel), by_server in groups.items():
        base = by_server.get("dcmtk", [])
        base_median = statistics.median(b["seconds"] for b in base) if base else None
        base_by_round = {b.get("round"): b["seconds"] for b in base}
        label = case + (f" x{parallel}" if parallel != 1 else "")
        for server in [s for s in servers if s in by_server]:
            runs = by_server[server]
            seconds = [r["seconds"] for r in runs]
            median = statistics.median(seconds)
            ratio = f"{median / base_median:.2f}" if base_median else "-"
            paired = [
                r["seconds"] / base_by_round[r.get("round")]
                for r in runs
                if base_by_round.get(r.get("round"))
            ]
            spread = f"{min(paired):.2f}-{max(paired):.2f}" if paired else "-"
            cpus = [r["server_cpu_s"] for r in runs if "server_cpu_s" in r]  # older --json files
            cpu = f"{statistics.median(cpus):.2f}" if cpus else "-"
            lines.append(
                f"| {label} | {server} | {median:.3f} | {ratio} | {spread} "
                f"| {' '.join(f'{s:.3f}' for s in seconds)} "
                f"| {cpu} "
                f"| {sum(r['failed_clients'] for r in runs)} "
                f"| {max(r['idle_rss_mib'] for r in runs)} "
                f"| {max(r['peak_rss_mib'] for r in runs)} |"
            )
    return "\n" + "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
