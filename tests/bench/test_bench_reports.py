"""The benchmark scripts' arithmetic: what they report is what the runs measured.

The benchmarks themselves run on demand (bench/README.md); these pin the parts that turn raw
runs into the figures quoted in closing notes, where a slip would go unnoticed.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _import_bench(*names: str) -> tuple[Any, ...]:
    """The named scripts of bench/ as modules (they import each other by plain name)."""
    sys.path.insert(0, str(BENCH))
    try:
        return tuple(importlib.import_module(name) for name in names)
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def bench_modules() -> Any:
    return _import_bench("store_bench", "store_timeline")


@pytest.fixture(scope="module")
def tools() -> Any:
    return _import_bench("fsync_floor", "receive_path")


def _run(
    server: str, seconds: float, round_: int, case: str = "a", cpu: float = 1.0
) -> dict[str, Any]:
    return {
        "case": case,
        "server": server,
        "parallel": 1,
        "seconds": seconds,
        "failed_clients": 0,
        "server_cpu_s": cpu,
        "idle_rss_mib": 80.0,
        "peak_rss_mib": 81.0,
        "round": round_,
    }


def test_summary_pairs_each_run_with_dcmtk_of_the_same_round(bench_modules: Any) -> None:
    """Median over median, and the within-round ratio range, from interleaved rounds."""
    store_bench, _ = bench_modules
    runs = [
        _run("dcmtk", 1.0, 1),
        _run("pacsref", 2.0, 1, cpu=0.9),
        _run("pacsref", 1.5, 2, cpu=0.7),
        _run("dcmtk", 0.5, 2),  # a fast moment for everyone: the pairing cancels it
        _run("dcmtk", 0.8, 3),
        _run("pacsref", 1.2, 3, cpu=0.8),
    ]
    table = store_bench.summary_table(runs, ["pacsref", "dcmtk"])
    [pacsref_row] = [line for line in table.splitlines() if "| pacsref |" in line]
    cells = [cell.strip() for cell in pacsref_row.split("|")[1:-1]]
    assert cells[:7] == [
        "a", "pacsref", "1.500", "1.88", "1.50-3.00", "2.000 1.500 1.200", "0.80"
    ]  # fmt: skip


def test_server_cpu_seconds_reads_this_process(bench_modules: Any) -> None:
    """User + system CPU from /proc: grows with work done; 0.0 for a process that is gone."""
    store_bench, _ = bench_modules
    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc on this platform: the bench reports CPU only on Linux")
    before = store_bench.server_cpu_seconds(os.getpid())
    deadline = before + 0.05
    while store_bench.server_cpu_seconds(os.getpid()) < deadline:
        sum(range(10_000))
    assert store_bench.server_cpu_seconds(os.getpid()) >= before + 0.05
    assert store_bench.server_cpu_seconds(2**22 + 12345) == 0.0  # above Linux's pid_max


def test_space_needed_counts_only_the_runs_kept_until_the_end(
    bench_modules: Any, tmp_path: Path
) -> None:
    """Many-file runs stay on disk until the bench ends; a one-file run is deleted at once."""
    store_bench, _ = bench_modules
    many = []
    for i in range(store_bench.DEFER_DELETE_FILES):
        path = tmp_path / f"small{i}.dcm"
        path.write_bytes(b"x" * 10)
        many.append(path)
    big = tmp_path / "big.dcm"
    big.write_bytes(b"x" * 5000)
    per_run = 10 * store_bench.DEFER_DELETE_FILES
    assert store_bench.space_needed([many, [big], many], servers=3, rounds=2) == 2 * per_run * 6
    assert store_bench.space_needed([many[:-1], [big]], servers=3, rounds=2) == 0


def test_timeline_splits_marks_into_objects_and_stages(bench_modules: Any) -> None:
    """Each object's cycle starts at the first read after the previous response was written."""
    _, store_timeline = bench_modules
    marks: list[tuple[str, float]] = []
    for i in range(5):
        t = i * 10.0
        marks += [
            ("recv", t),
            ("recv_end", t + 0.5),
            ("recv", t + 0.6),  # a second read of the same object
            ("dispatch", t + 1),
            ("dispatch_end", t + 1.5),
            ("store", t + 2),
            ("store_end", t + 5),
            ("respond", t + 6),
            ("respond_end", t + 6.5),
        ]
    objects = store_timeline.cycles(marks)
    assert len(objects) == 5 and [o["recv"] for o in objects] == [0, 10, 20, 30, 40]
    times = store_timeline.stage_times(objects)
    # objects 2 and 3 only: the first two and the last are left out
    assert times["receive"] == [1.0, 1.0]
    assert times["store"] == [3.0, 3.0]
    assert times["client"] == [3.5, 3.5]
    assert times["cycle"] == [10.0, 10.0]


def test_receive_path_completes_every_message(tools: Any, tmp_path: Path) -> None:
    """The generated stream is valid P-DATA: every object completes, in any read size."""
    _, receive_path = tools
    data, pdus = receive_path.stream(3, 40_000)
    assert pdus == 3 * (1 + 3)  # a command PDU and three data PDUs of at most 16,372 bytes
    for read in (1000, 65536):
        reads = [data[i : i + read] for i in range(0, len(data), read)]
        _, messages = receive_path.run_once(reads, tmp_path)
        assert messages == 3
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("durable", [False, True])
def test_fsync_floor_publishes_like_the_store(tools: Any, tmp_path: Path, durable: bool) -> None:
    """Each object ends in its bucket under its final name; no spool file is left."""
    fsync_floor, _ = tools
    times = fsync_floor.measure(tmp_path, 5, 100, durable)
    assert len(times) == 5
    stored = sorted(p.name for p in (tmp_path / "data").glob("*/*.dcm"))
    assert len(stored) == 5 and list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize("durability", ["relaxed", "fsync"])
def test_store_path_stores_every_object(tmp_path: Path, durability: str) -> None:
    """Every object is stored (run() stops otherwise) and indexed; no spool file is left."""
    from pydicom.uid import generate_uid

    from tests.storage.dicomgen import ROOT, make_instance

    (store_path,) = _import_bench("store_path")
    study, series = generate_uid(ROOT), generate_uid(ROOT)
    files = [
        make_instance(tmp_path / "in" / f"{n}.dcm", study_uid=study, series_uid=series, number=n)
        for n in range(3)
    ]
    identities = {path: store_path.identity(path) for path in files}
    user, system, wall = store_path.run(tmp_path / "run", files, identities, durability)
    assert user >= 0 and system >= 0 and wall > 0
    server_dir = tmp_path / "run" / "PACSREF"
    stored = sorted(p.name for p in (server_dir / "data").glob("*/*.dcm"))
    assert stored == sorted(f"{known[1]}.dcm" for known in identities.values())
    assert list((server_dir / "tmp").glob("*")) == []
    with sqlite3.connect(server_dir / "data" / "index.sqlite") as index:
        rows = index.execute("SELECT sop_instance_uid FROM instance").fetchall()
    assert sorted(uid for (uid,) in rows) == sorted(known[1] for known in identities.values())


_FCLOSE_PROGRAM = """
import ctypes, os, sys
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.fwrite.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
path, remove_dir = sys.argv[1], sys.argv[2] == "remove-dir"
stream = libc.fopen(path.encode(), b"wb")
libc.fwrite(b"x" * 70000, 1, 70000, stream)
if remove_dir:
    os.unlink(path)
    os.rmdir(os.path.dirname(path))
print(libc.fclose(stream))
"""


def _durable_shim(tmp_path: Path) -> Path:
    import shutil

    from pacsref.testing.dcmtk import in_ci

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        if in_ci():
            pytest.fail("no C compiler (cc or gcc) under CI=true: .ci/run installs gcc")
        pytest.skip("no C compiler (cc or gcc) to build bench/durable_fclose.c")
    (store_bench,) = _import_bench("store_bench")
    library = store_bench.durable_shim(tmp_path)
    assert store_bench.durable_shim(tmp_path) == library  # built once
    return library


@pytest.mark.parametrize("remove_dir", [False, True])
def test_durable_shim_syncs_each_written_file_at_fclose(tmp_path: Path, remove_dir: bool) -> None:
    """dcmtk-durable's shim: a written file is synced at fclose, and a failed sync fails fclose.

    With its directory gone before fclose, the directory's fsync cannot happen: fclose must say
    so (EOF and a message), which it can only do if the shim ran its sync path.
    """
    import subprocess

    library = _durable_shim(tmp_path / "build")
    target = tmp_path / "out" / "object.dcm"
    target.parent.mkdir()
    mode = "remove-dir" if remove_dir else "keep"
    argv = [sys.executable, "-c", _FCLOSE_PROGRAM, str(target), mode]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          env={"LD_PRELOAD": str(library), "PATH": "/usr/bin:/bin"})  # fmt: skip
    if remove_dir:
        assert done.stdout.strip() == "-1"
        assert f"durable_fclose: syncing a file in {target.parent} failed" in done.stderr
    else:
        assert (done.stdout.strip(), done.stderr) == ("0", "")
        assert target.read_bytes() == b"x" * 70000
