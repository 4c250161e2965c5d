"""The storage add-in's parts on their own: options, UIDs and layout, file header, schema, check."""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from pacsref.dimse import FileMetaIdentity, part10_header
from tests.storage.dicomgen import ROOT, make_instance
from tests.storage.helpers import associate, dataset_bytes, send_store, storage, storage_harness

ADDIN_DIR = Path(__file__).resolve().parents[2] / "addins" / "storage"


def _module(name: str):  # type: ignore[no-untyped-def]
    """Import ``addins/storage/<name>.py`` (the add-in folder is not an installed package)."""
    package = "storage_under_test"
    if package not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            package, ADDIN_DIR / "__init__.py", submodule_search_locations=[str(ADDIN_DIR)]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{package}.{name}")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", None),
        ("1.02.3", None),
        ("", "is empty"),
        ("1..2", "has an empty component"),
        ("1.2.", "has an empty component"),
        ("1.2/3", "holds characters other than digits and dots"),
        ("../../etc/passwd", "holds characters other than digits and dots"),
        ("1." + "2" * 63, "is 65 characters long (at most 64)"),
    ],
)
def test_uid_problem(value: str, problem: str | None) -> None:
    """UIDs are digits and dots, 1-64 characters, no empty component (PS3.5 9.1)."""
    assert _module("uids").uid_problem(value) == problem


def test_stored_path_is_under_root_and_depends_on_uid_only(tmp_path: Path) -> None:
    """The layout is <root>/<hh>/<uid>.dcm: same UID, same path, always under the root."""
    uids = _module("uids")
    first = uids.stored_path(tmp_path, "1.2.3")
    assert first == uids.stored_path(tmp_path, "1.2.3")
    assert first.parent.parent == tmp_path and first.name == "1.2.3.dcm"
    assert first.parent.name in uids.BUCKETS


def test_options_defaults_and_errors(tmp_path: Path) -> None:
    """No file means defaults; bad values are all reported, each with file, key and rule."""
    options = _module("options")
    assert options.load_options(tmp_path) == options.StorageOptions()
    path = tmp_path / "addin-options" / "storage.toml"
    path.parent.mkdir()
    path.write_text(
        'duplicates = "twice"\ndurability = 1\ncolour = "red"\nindex_dsn = "mysql://"\n'
    )
    with pytest.raises(options.StorageOptionsError) as caught:
        options.load_options(tmp_path)
    text = str(caught.value)
    assert f"{path}: duplicates = 'twice': must be one of" in text
    assert "durability = 1: must be a str" in text
    assert "colour: unknown option" in text
    assert "index_dsn = 'mysql://'" in text
    written = options.StorageOptions(duplicates="refuse", durability="relaxed")
    options.write_options(tmp_path, written)
    assert options.load_options(tmp_path) == written


def test_part10_header_reads_back_with_pydicom(tmp_path: Path) -> None:
    """The header the DIMSE layer writes first is a valid file meta group (PS3.10 7.1)."""
    path = make_instance(tmp_path / "x.dcm", study_uid=generate_uid(ROOT),
                         series_uid=generate_uid(ROOT))  # fmt: skip
    ds = dcmread(path)
    who = FileMetaIdentity("1.2.3.4", "PACSREF_010", "CALLER")
    header = part10_header(ds.SOPClassUID, ds.SOPInstanceUID, "1.2.840.10008.1.2.1", who)
    out = tmp_path / "y.dcm"
    out.write_bytes(header + dataset_bytes(path))
    read = dcmread(out)
    assert read.file_meta.SourceApplicationEntityTitle == "CALLER"
    assert read.file_meta.ImplementationClassUID == "1.2.3.4"
    assert read.PatientID == ds.PatientID


def test_schema_is_versioned_and_newer_refused(tmp_path: Path) -> None:
    """Migrations run once and record the version; an index from a newer pacsref is refused."""
    schema = _module("schema")
    db = sqlite3.connect(tmp_path / "i.sqlite", isolation_level=None)
    assert schema.migrate(db, "sqlite") == schema.SCHEMA_VERSION
    assert schema.migrate(db, "sqlite") == 0
    db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(schema.SchemaError, match="newer"):
        schema.migrate(db, "sqlite")


def test_check_and_repair(tmp_path: Path) -> None:
    """check finds rows without files and files without rows; --repair fixes both."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir)
    conn = associate(harness)
    uids = []
    for n in range(3):
        path = make_instance(tmp_path / f"{n}.dcm", study_uid=generate_uid(ROOT),
                             series_uid=generate_uid(ROOT))  # fmt: skip
        uids.append(dcmread(path).SOPInstanceUID)
        assert send_store(conn, uids[-1], dataset_bytes(path), message_id=n + 1)[0][0x0900] == 0
    addin = storage(harness)
    assert addin.check().clean
    stored = sorted((server_dir / "data").glob("*/*.dcm"))
    lost = next(p for p in stored if p.name == f"{uids[0]}.dcm")
    lost.unlink()
    with sqlite3.connect(server_dir / "data" / "index.sqlite") as db:
        db.execute("DELETE FROM instance WHERE sop_instance_uid = ?", (uids[1],))
    report = addin.check()
    assert report.rows_without_file == [uids[0]]
    assert [Path(p).name for p in report.files_without_row] == [f"{uids[1]}.dcm"]
    assert not report.clean
    assert addin.check(repair=True).clean
    assert addin.check().clean
    with sqlite3.connect(server_dir / "data" / "index.sqlite") as db:
        rows = db.execute("SELECT sop_instance_uid, calling_ae FROM instance").fetchall()
        # one removed row and one re-indexed file, each told to a running server's cache
        assert db.execute("SELECT value FROM index_generation").fetchall() == [(2,)]
    assert sorted(rows) == sorted([(uids[1], "MODALITY"), (uids[2], "MODALITY")])


def test_check_finds_and_repairs_a_file_unlike_its_row(tmp_path: Path) -> None:
    """A file replaced behind the index's back (a kill while overwriting a duplicate, between
    the rename and the commit) is reported by its size, and --repair indexes what is there."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir)
    conn = associate(harness)
    study, series = generate_uid(ROOT), generate_uid(ROOT)
    first = make_instance(tmp_path / "a.dcm", study_uid=study, series_uid=series)
    uid = dcmread(first).SOPInstanceUID
    assert send_store(conn, uid, dataset_bytes(first))[0][0x0900] == 0
    second = make_instance(tmp_path / "b.dcm", study_uid=study, series_uid=series, sop_uid=uid,
                           rows=8, cols=8)  # fmt: skip
    [stored] = (server_dir / "data").glob("*/*.dcm")
    stored.write_bytes(second.read_bytes())
    addin = storage(harness)
    report = addin.check()
    assert report.files_unlike_row == [str(stored)]
    assert not report.clean
    assert f"file not the size its index row records: {stored}" in report.lines()
    repaired = addin.check(repair=True)
    assert repaired.clean and repaired.repaired == [f"re-indexed {stored}"]
    assert addin.check().clean
    with sqlite3.connect(server_dir / "data" / "index.sqlite") as db:
        assert db.execute("SELECT size FROM instance").fetchall() == [(stored.stat().st_size,)]
