"""What DICOM TLS costs: C-ECHO rate, association rate and C-STORE throughput, TLS next to TCP.

    python bench/tls_bench.py [--servers pacsref,dcmtk] [--repeat 2000] [--associations 100]
        [--files 200] [--size 512] [--runs 3] [--json FILE]

Each server runs twice, once plain and once with TLS (the same certificate, RSA 2048 from a
trustme CA, client certificates required), each fresh in its own temporary directory on a
loopback port. The client is always DCMTK (``echoscu``/``storescu``, ``TCP_NODELAY=1``, with
``+tls KEY CERT +cf CA`` for TLS, DCMTK's default Non-downgrading BCP 195 profile, which
negotiates TLS 1.3). Measured per server and transport, median of ``--runs`` after one warm-up:

- ``echo``: ``echoscu --repeat N`` on one association: N / wall seconds; the per-message cost
  of TLS records (encrypt, MAC) with the handshake amortised away;
- ``assoc``: ``--associations`` echoscu runs of one C-ECHO each, in sequence: runs per second;
  each pays a process start, a TCP connect and, with TLS, a full handshake;
- ``store``: ``storescu`` of ``--files`` generated CT images (``--size`` KiB of pixel data each)
  on one association: MB/s and images/s. pacsref stores with ``durability = "relaxed"`` (no
  fsync, as DCMTK's storescp), so the transport, not the disk, is what differs.

Servers: ``pacsref`` (``twistd -n pacsref``) and ``dcmtk`` (``/usr/bin/storescp``, ``+tls`` for
TLS), so pacsref's TLS overhead sits next to a C++ implementation's. Every process started here
is stopped by its PID; only loopback is used. See bench/README.md, "TLS".
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
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pacsref.testing.dcmtk import require_dcmtk
from pacsref.testing.net import LOOPBACK, free_loopback_port, wait_for_port
from pacsref.testing.tls import LeafFiles, TestPKI, write_security_options
from pacsref.testing.twistd import TwistdServer
from tests.storage.dicomgen import make_study

AE = "BENCH"
NODELAY = {**os.environ, "TCP_NODELAY": "1"}


class Server:
    """One server under test, plain or TLS: ``start()``, ``address``, ``stop()``."""

    def __init__(self, kind: str, tls: bool, pki: TestPKI, work: Path) -> None:
        self.kind, self.tls, self.pki = kind, tls, pki
        self.root = Path(tempfile.mkdtemp(prefix=f"{kind}-{'tls' if tls else 'tcp'}-", dir=work))
        self.port = free_loopback_port(LOOPBACK)
        self.twistd: TwistdServer | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.kind == "pacsref":
            settings = {"server_secure": "true"} if self.tls else {}
            self.twistd = TwistdServer(AE, root=self.root, port=self.port, settings=settings)
            self.twistd.create()
            options = self.twistd.server_dir / "addin-options"
            options.mkdir(exist_ok=True)
            (options / "storage.toml").write_text('durability = "relaxed"\n')
            if self.tls:
                write_security_options(self.twistd.server_dir, self.pki)
            self.twistd.start()
            return
        argv = [require_dcmtk("storescp"), "-aet", AE, "-od", str(self.root)]
        if self.tls:
            server = self.pki.server
            argv += ["+tls", str(server.private_key), str(server.certificate)]
            argv += ["+cf", str(self.pki.ca_file), "--require-peer-cert"]
        log = (self.root / "storescp.log").open("wb")
        self.process = subprocess.Popen(
            [*argv, str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=NODELAY,
            cwd=self.root,
            start_new_session=True,
        )
        if not wait_for_port(LOOPBACK, self.port, 30.0):
            raise RuntimeError(f"storescp did not listen on {self.port}")

    def stop(self) -> None:
        if self.twistd is not None:
            self.twistd.stop()
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)
        shutil.rmtree(self.root, ignore_errors=True)


def _tls_args(tls: bool, pki: TestPKI, client: LeafFiles) -> list[str]:
    if not tls:
        return []
    return ["+tls", str(client.private_key), str(client.certificate), "+cf", str(pki.ca_file)]


def _run(argv: list[str]) -> float:
    """Wall seconds of one client run; raises if it failed."""
    started = time.perf_counter()
    done = subprocess.run(argv, env=NODELAY, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])}... failed:\n{done.stdout}{done.stderr}")
    return seconds


def measure(
    server: Server, client: LeafFiles, files: list[Path], args: argparse.Namespace
) -> dict[str, object]:
    """The three measurements against one running server."""
    tls = _tls_args(server.tls, server.pki, client)
    target = ["-aec", AE, LOOPBACK, str(server.port)]
    echoscu, storescu = require_dcmtk("echoscu"), require_dcmtk("storescu")

    def echo() -> float:
        return args.repeat / _run([echoscu, *tls, "--repeat", str(args.repeat), *target])

    def assoc() -> float:
        started = time.perf_counter()
        for _ in range(args.associations):
            _run([echoscu, *tls, *target])
        return args.associations / (time.perf_counter() - started)

    total_mb = sum(f.stat().st_size for f in files) / 1e6

    def store() -> float:
        return total_mb / _run([storescu, *tls, *target, *map(str, files)])

    result: dict[str, object] = {"server": server.kind, "transport": "TLS" if server.tls else "TCP"}
    for name, run in (("echo_per_s", echo), ("assoc_per_s", assoc), ("store_mb_per_s", store)):
        run()  # warm-up
        values = [run() for _ in range(args.runs)]
        result[name] = round(statistics.median(values), 1)
        result[f"{name}_runs"] = [round(v, 1) for v in values]
    result["store_images_per_s"] = round(
        float(result["store_mb_per_s"]) * len(files) / total_mb,  # type: ignore[arg-type]
        1,
    )
    return result


def table(results: list[dict[str, object]]) -> str:
    """Markdown: one row per server and transport, and TLS/TCP ratios per server."""
    rows = [
        "| server | transport | C-ECHO/s | associations/s | C-STORE MB/s | images/s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        rows.append(
            f"| {r['server']} | {r['transport']} | {r['echo_per_s']} | {r['assoc_per_s']} |"
            f" {r['store_mb_per_s']} | {r['store_images_per_s']} |"
        )
    by: dict[tuple[object, object], dict[str, object]] = {
        (r["server"], r["transport"]): r for r in results
    }
    ratio: Callable[[object, str], str] = lambda s, k: (  # noqa: E731
        f"{float(by[(s, 'TLS')][k]) / float(by[(s, 'TCP')][k]):.2f}"  # type: ignore[arg-type]
        if (s, "TLS") in by and (s, "TCP") in by
        else "-"
    )
    for server in dict.fromkeys(r["server"] for r in results):
        rows.append(
            f"| {server} | TLS / TCP | {ratio(server, 'echo_per_s')} |"
            f" {ratio(server, 'assoc_per_s')} | {ratio(server, 'store_mb_per_s')} |"
            f" {ratio(server, 'store_images_per_s')} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", default="pacsref,dcmtk")
    parser.add_argument("--repeat", type=int, default=2000, help="C-ECHOs per association")
    parser.add_argument("--associations", type=int, default=100, help="for the assoc rate")
    parser.add_argument("--files", type=int, default=200, help="images stored per run")
    parser.add_argument("--size", type=int, default=512, help="KiB of pixel data per image")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pacsref-tls-bench-"))
    results: list[dict[str, object]] = []
    try:
        pki = TestPKI(work / "pki", server_identities=(LOOPBACK,), rsa=True)
        client = pki.issue("client", common_name="BENCH_SCU")
        side = max(1, int((args.size * 1024 / 2) ** 0.5))
        files = make_study(work / "data", series=1, per_series=args.files, rows=side, cols=side)
        for kind in args.servers.split(","):
            for tls in (False, True):
                server = Server(kind, tls, pki, work)
                try:
                    server.start()
                    result = measure(server, client, files.files, args)
                finally:
                    server.stop()
                results.append(result)
                print(json.dumps(result), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
