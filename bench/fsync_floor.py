"""What durable storage costs on this disk, before any DICOM: the floor under a durable C-STORE.

    python bench/fsync_floor.py [--dir DIR] [--count 500] [--size 3000]

A durable pacsref store publishes each object with the sequence below (docs/storage.md): create
a spool file, write it, ``fdatasync`` it, rename it into its bucket directory and ``fsync`` that
directory. This script times exactly that, with the storage add-in's own ``HeldSpool`` and
``durable_rename`` (``addins/storage/writer.py``), on plain files in ``--dir`` (default: a
temporary directory under the current one, which should be on the disk the server's ``data/`` is
on), once with the two syncs and once without, and prints the median and mean per object. The
difference is what durability alone adds to every object; DCMTK's storescp does not sync at all,
so for small objects it is a floor that no durable server can go under on that disk, whatever
its code does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fsinfo import describe

from addins.storage.uids import BUCKETS
from addins.storage.writer import HeldSpool, durable_rename, prepare_buckets

DURABLE = "create, write, fdatasync, rename, fsync dir"
RELAXED = "create, write, rename"


def publish(spool_dir: Path, data_root: Path, bucket: str, name: str, data: bytes,
            durable: bool) -> None:  # fmt: skip
    """One object, as the storage add-in publishes it (``StorageAddin._store``)."""
    spool = spool_dir / f"{name}.spool"
    fd = os.open(spool, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    with HeldSpool(spool, durable) as held:
        held.make_durable()
    durable_rename(spool, data_root / bucket / f"{name}.dcm", data_root, durable)


def measure(root: Path, count: int, size: int, durable: bool) -> list[float]:
    """Seconds per object for ``count`` objects of ``size`` bytes over 256 buckets."""
    spool_dir = root / "tmp"
    spool_dir.mkdir(parents=True, exist_ok=True)
    data_root = root / "data"
    prepare_buckets(data_root, BUCKETS, durable)
    data = os.urandom(size)
    times = []
    for i in range(count):
        started = time.perf_counter()
        name = f"{'d' if durable else 'r'}{i}"
        publish(spool_dir, data_root, BUCKETS[i % len(BUCKETS)], name, data, durable)
        times.append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path.cwd(), help="where to make the files")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--size", type=int, default=3000, help="bytes per object (case c: ~3 KB)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pacsref-fsync-floor-", dir=args.dir))
    try:
        os.sync()
        rows = []
        for durable in (False, True, False, True):
            times = measure(root / str(len(rows)), args.count, args.size, durable)
            rows.append((durable, times))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.count} objects of {args.size} bytes in {args.dir}")
    print(f"{describe(args.dir)}\n")
    print("| sequence | median us | mean us |")
    print("| --- | --- | --- |")
    for durable, times in rows:
        label = DURABLE if durable else RELAXED
        print(f"| {label} | {statistics.median(times) * 1e6:.0f} "
              f"| {statistics.mean(times) * 1e6:.0f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
