"""Generate the storage benchmark's inputs (bench/README.md, "Storage").

    python bench/make_data.py --out /tmp/pacsref-bench-data [--cases a,c,d]

Writes ``ct512k/`` (400 CT images of 512 KiB pixel data, 512x512x16 bit, two series),
``tiny/`` (1,000 objects of about 3 KB, 32x32x16 bit) and ``multiframe/`` (one object of
1,200 512x512x16-bit frames, 629 MB, its pixel data streamed to disk). Existing folders are
kept, so a second run reuses them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.storage.dicomgen import make_multiframe, make_study

CASES = {
    "a": ("ct512k", lambda d: make_study(d, series=2, per_series=200, rows=512, cols=512)),
    "c": ("tiny", lambda d: make_study(d, series=1, per_series=1000, rows=32, cols=32)),
    "d": ("multiframe", lambda d: make_multiframe(d / "mf.dcm", frames=1200)),
}


def make(out: Path, cases: str = "a,c,d") -> dict[str, Path]:
    """Create (or reuse) each case's folder under ``out``; returns case -> folder."""
    folders = {}
    for case in cases.split(","):
        if case == "b":
            case = "a"  # b sends a's images over parallel associations
        name, build = CASES[case]
        folder = out / name
        if not folder.exists():
            build(folder)
        folders[case] = folder
    return folders


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/pacsref-bench-data"))
    parser.add_argument("--cases", default="a,c,d")
    args = parser.parse_args()
    for case, folder in make(args.out, args.cases).items():
        files = list(folder.rglob("*.dcm"))
        size = sum(f.stat().st_size for f in files)
        print(f"case {case}: {len(files)} file(s), {size / 2**20:.1f} MiB in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
