"""bench/fsinfo.py: the file-system line printed with the storage benchmarks' results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.bench.test_bench_reports import _import_bench

MOUNTS = """\
/dev/vda / ext4 rw,relatime,discard 0 0
tmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0
/dev/vdb /srv/pacs ext4 rw,relatime 0 0
/dev/vdc /srv/pacs\\040archive xfs rw 0 0
"""


@pytest.fixture(scope="module")
def fsinfo() -> Any:
    (module,) = _import_bench("fsinfo")
    return module


def test_the_longest_mount_point_holding_the_path_wins(fsinfo: Any) -> None:
    assert fsinfo.mount_of(Path("/srv/pacs/data/ab"), MOUNTS) == ("/dev/vdb", "/srv/pacs", "ext4")
    assert fsinfo.mount_of(Path("/srv/pacs"), MOUNTS) == ("/dev/vdb", "/srv/pacs", "ext4")
    assert fsinfo.mount_of(Path("/srv/pacsroot"), MOUNTS) == ("/dev/vda", "/", "ext4")
    assert fsinfo.mount_of(Path("/dev/shm/x"), MOUNTS) == ("tmpfs", "/dev/shm", "tmpfs")


def test_escaped_mount_points_are_read_as_written(fsinfo: Any) -> None:
    found = fsinfo.mount_of(Path("/srv/pacs archive/x"), MOUNTS)
    assert found == ("/dev/vdc", "/srv/pacs archive", "xfs")


def test_a_journal_is_known_by_its_jbd2_entry(fsinfo: Any, tmp_path: Path) -> None:
    (tmp_path / "vdb-8").mkdir()
    assert fsinfo.has_journal("/dev/vdb", tmp_path)
    assert not fsinfo.has_journal("/dev/vda", tmp_path)
    assert not fsinfo.has_journal("/dev/vd", tmp_path)  # a prefix of another device's name
    assert not fsinfo.has_journal("/dev/vdb", tmp_path / "missing")


def test_the_line_warns_of_ext4_without_a_journal_only(fsinfo: Any, tmp_path: Path) -> None:
    (tmp_path / "vdb-8").mkdir()
    root = fsinfo.describe(Path("/var/x"), MOUNTS, tmp_path)
    assert root == f"/var/x: ext4 on /dev/vda (mounted on /), {fsinfo.NO_JOURNAL_NOTE}"
    journaled = fsinfo.describe(Path("/srv/pacs/x"), MOUNTS, tmp_path)
    assert journaled == "/srv/pacs/x: ext4 on /dev/vdb (mounted on /srv/pacs)"
    assert "journal" not in fsinfo.describe(Path("/srv/pacs archive"), MOUNTS, tmp_path)
    assert fsinfo.describe(Path("/x"), "", tmp_path) == "/x: file system unknown"
