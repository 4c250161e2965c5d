"""The storage add-in end to end in memory: what a peer gets back, and what is on disk after.

Each test drives a real server (the harness: real factory, protocol, DIMSE layer, dispatcher and
the shipped storage add-in) with C-STORE-RQs built by hand, so every status and every failure
path is reachable without sockets or threads.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from addins.storage.uids import stored_name
from pacsref.ul import codec
from tests.storage import helpers
from tests.storage.dicomgen import ROOT, make_instance
from tests.storage.helpers import (
    associate,
    dataset_bytes,
    send_store,
    storage,
    storage_harness,
)

STATUS = 0x0900


@pytest.fixture(autouse=True, params=["fsync", "fsync-inline", "relaxed"])
def durability(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test with each durability, and durable stores both on the index pool and on the
    reactor thread (the add-in's inline store, which relaxed stores of small data sets always
    use): all must answer and leave the disk alike."""
    durability, _, inline = str(request.param).partition("-")
    monkeypatch.setattr(helpers, "DURABILITY_OPTION", f'durability = "{durability}"\n')
    monkeypatch.setattr(helpers, "DURABLE_INLINE", bool(inline))
    return durability


def _instance(tmp_path: Path, name: str = "a.dcm", **kw: object) -> tuple[str, bytes]:
    path = make_instance(
        tmp_path / "in" / name, study_uid=str(kw.pop("study_uid", generate_uid(ROOT))),
        series_uid=generate_uid(ROOT), transfer_syntax=ExplicitVRLittleEndian, **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    return dcmread(path).SOPInstanceUID, dataset_bytes(path)


def _rows(server_dir: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(server_dir / "data" / "index.sqlite") as db:
        return db.execute(sql).fetchall()


def _stored(server_dir: Path) -> list[Path]:
    return sorted((server_dir / "data").glob("*/*.dcm"))


def test_store_writes_part10_file_and_index_rows(tmp_path: Path) -> None:
    """Success: one Part-10 file with our file meta and the data set byte for byte, indexed."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir)
    uid, data = _instance(tmp_path)
    conn = associate(harness)
    [response] = send_store(conn, uid, data)
    assert response[STATUS] == 0x0000
    [path] = _stored(server_dir)
    assert path.name == f"{uid}.dcm"
    assert dataset_bytes(path) == data
    meta = dcmread(path, stop_before_pixels=True).file_meta
    assert meta.MediaStorageSOPInstanceUID == uid
    assert meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert meta.SourceApplicationEntityTitle.strip() == "MODALITY"
    assert meta.ImplementationVersionName == "PACSREF_010"
    [(rel, size, ae, ts)] = _rows(
        server_dir, "SELECT path, size, calling_ae, transfer_syntax_uid FROM instance"
    )
    assert (server_dir / "data" / str(rel)) == path and size == path.stat().st_size
    assert (ae, ts) == ("MODALITY", ExplicitVRLittleEndian)
    assert _rows(server_dir, "SELECT modalities_in_study, accession_number FROM study") == [
        ("CT", "ACC1")
    ]
    assert _rows(server_dir, "SELECT patient_id, patient_name FROM patient") == [
        ("PID-1", "Test^Patient")
    ]
    assert list(harness.server.spool_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("policy", "status", "second_kept"),
    [("keep-first", 0x0000, False), ("overwrite", 0x0000, True), ("refuse", 0x0111, False)],
)
def test_duplicate_policies(tmp_path: Path, policy: str, status: int, second_kept: bool) -> None:
    """A second object with the same SOP Instance UID: kept, replaced or refused (0x0111)."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir, options=f'duplicates = "{policy}"\n')
    uid, first = _instance(tmp_path, "a.dcm")
    _, second = _instance(tmp_path, "b.dcm", sop_uid=uid, rows=8, cols=8)
    conn = associate(harness)
    assert send_store(conn, uid, first)[0][STATUS] == 0x0000
    assert send_store(conn, uid, second, message_id=2)[0][STATUS] == status
    [path] = _stored(server_dir)
    assert dataset_bytes(path) == (second if second_kept else first)
    assert len(_rows(server_dir, "SELECT id FROM instance")) == 1
    assert list(harness.server.spool_dir.iterdir()) == []


@pytest.mark.parametrize("bad_uid", ["1.2.abc", "../../../etc/passwd", "1..2", "1.2.3 4"])
def test_bad_sop_instance_uid_refused_and_nothing_written(tmp_path: Path, bad_uid: str) -> None:
    """A SOP Instance UID that is not a UID gets 0x0117 and leaves no file anywhere."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir)
    _, data = _instance(tmp_path)
    [response] = send_store(associate(harness), bad_uid, data)
    assert response[STATUS] == 0x0117
    assert _stored(server_dir) == []
    assert not (tmp_path / "etc").exists()
    assert list(harness.server.spool_dir.iterdir()) == []


def test_store_recreates_a_bucket_removed_after_start(tmp_path: Path) -> None:
    """The start makes every bucket; a store renames first and only makes a missing one then.

    An administrator (or a cleanup job) may remove an empty bucket while the server runs:
    that store must still succeed, with the bucket made again and the file in it.
    """
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir)
    uid, data = _instance(tmp_path)
    bucket = (server_dir / "data" / stored_name(uid)).parent
    bucket.rmdir()
    conn = associate(harness)
    [response] = send_store(conn, uid, data)
    assert response[STATUS] == 0x0000
    assert _stored(server_dir) == [bucket / f"{uid}.dcm"]
    assert dataset_bytes(bucket / f"{uid}.dcm") == data
    assert _rows(server_dir, "SELECT path FROM instance") == [(stored_name(uid),)]


def test_dataset_not_matching_command_refused(tmp_path: Path) -> None:
    """A data set whose SOP Instance UID differs from the command's gets 0xA900."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir)
    _, data = _instance(tmp_path)
    [response] = send_store(associate(harness), generate_uid(ROOT), data)
    assert response[STATUS] == 0xA900
    assert _stored(server_dir) == []


def test_bad_study_uid_in_dataset_refused(tmp_path: Path) -> None:
    """A Study Instance UID that is not a UID gets 0xA900: the layout and index need it."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir)
    uid, data = _instance(tmp_path, study_uid="1.2.x")
    [response] = send_store(associate(harness), uid, data)
    assert response[STATUS] == 0xA900
    assert _stored(server_dir) == []


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_unparsable_dataset_is_refused(tmp_path: Path) -> None:
    """Bytes that are no data set get a failure (0xC000, or 0xA900 when pydicom reads
    something without the command's SOP Instance UID) and nothing is stored."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir)
    [response] = send_store(associate(harness), generate_uid(ROOT), b"\xff" * 100)
    assert response[STATUS] in (0xC000, 0xA900)
    assert _stored(server_dir) == []


def test_full_disk_gets_out_of_resources(tmp_path: Path) -> None:
    """ENOSPC (simulated) gets 0xA700, nothing is stored, and the association goes on."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir, options="simulate_full_disk = true\n")
    uid, data = _instance(tmp_path)
    conn = associate(harness)
    assert send_store(conn, uid, data)[0][STATUS] == 0xA700
    assert send_store(conn, uid, data, message_id=2)[0][STATUS] == 0xA700
    assert _stored(server_dir) == []
    assert _rows(server_dir, "SELECT id FROM instance") == []
    assert list(harness.server.spool_dir.iterdir()) == []


def test_free_space_under_the_reserve_gets_out_of_resources(tmp_path: Path) -> None:
    """Less free space than ``minimum_free_space_mib``: 0xA700 naming the option, nothing
    stored, the association goes on; lowering the reserve (live) lets the same store in."""
    server_dir = tmp_path / "PACSREF"
    stats = os.statvfs(tmp_path)
    free_mib = stats.f_bavail * stats.f_frsize // 2**20
    reserve = free_mib + 10**6  # a terabyte more than there is, whatever else writes meanwhile
    harness = storage_harness(server_dir, options=f"minimum_free_space_mib = {reserve}\n")
    uid, data = _instance(tmp_path)
    conn = associate(harness)
    [rsp] = send_store(conn, uid, data)
    assert rsp[STATUS] == 0xA700
    assert f"(minimum_free_space_mib = {reserve})" in str(rsp[0x0902])
    assert _stored(server_dir) == []
    assert _rows(server_dir, "SELECT id FROM instance") == []
    assert list(harness.server.spool_dir.iterdir()) == []
    addin = storage(harness)
    addin.options_changed({**addin.options.as_mapping(), "minimum_free_space_mib": 0})
    assert send_store(conn, uid, data, message_id=2)[0][STATUS] == 0x0000
    assert len(_stored(server_dir)) == 1


def test_abort_mid_transfer_leaves_no_file_and_no_row(tmp_path: Path) -> None:
    """Half a data set, then A-ABORT: no stored file, no index row, no spool file."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir)
    uid, data = _instance(tmp_path, rows=64, cols=64)
    conn = associate(harness)
    assert send_store(conn, uid, data, complete=False) == []
    assert list(harness.server.spool_dir.iterdir()) != []
    conn.send(codec.encode_abort(0, 0))
    assert list(harness.server.spool_dir.iterdir()) == []
    assert _stored(server_dir) == []
    assert _rows(server_dir, "SELECT id FROM instance") == []


def test_unknown_storage_class_refused_by_default(tmp_path: Path) -> None:
    """Without the option, an abstract syntax no add-in declares is refused (result 3)."""
    from pacsref.ul.constants import PDUType
    from pacsref.ul.events import PresentationContextProposal
    from tests.server.helpers import associate_rq

    harness = storage_harness(tmp_path / "PACSREF")
    conn = harness.connect()
    proposal = PresentationContextProposal(1, "1.2.826.0.1.3680043.9.9.1", ("1.2.840.10008.1.2",))
    conn.send(associate_rq(contexts=(proposal,)))
    [(pdu_type, _)] = conn.received()
    assert pdu_type is PDUType.A_ASSOCIATE_RJ


def test_unknown_storage_class_accepted_with_option(tmp_path: Path) -> None:
    """With accept_unknown_storage_classes, any UID is storage: C-STORE 0x0000, C-ECHO 0x0211."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir, options="accept_unknown_storage_classes = true\n")
    private_class = "1.2.826.0.1.3680043.9.9.1"
    conn = associate(harness, abstract_syntax=private_class)
    path = make_instance(tmp_path / "p.dcm", study_uid=generate_uid(ROOT),
                         series_uid=generate_uid(ROOT))  # fmt: skip
    ds = dcmread(path)
    ds.SOPClassUID = private_class
    ds.file_meta.MediaStorageSOPClassUID = private_class
    ds.save_as(path)
    [response] = send_store(conn, ds.SOPInstanceUID, dataset_bytes(path),
                            sop_class_uid=private_class)  # fmt: skip
    assert response[STATUS] == 0x0000
    from tests.server.helpers import echo_rq, responses

    conn.send(echo_rq(message_id=9))
    assert responses(conn.received())[0][STATUS] == 0x0211


def test_stale_spool_files_removed_at_start(tmp_path: Path) -> None:
    """Spool files a killed run left behind are deleted when storage starts."""
    server_dir = tmp_path / "PACSREF"
    (server_dir / "tmp").mkdir(parents=True)
    stale = server_dir / "tmp" / "pacsref-dimse-dead.dataset"
    stale.write_bytes(b"partial")
    harness = storage_harness(server_dir)
    assert not stale.exists()
    assert storage(harness).pool is not None


def _failing_index_write(harness: object, monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    """The harness's next index writes raise ``exc`` (after the file was renamed into place)."""
    import sys

    addin_module = sys.modules[type(storage(harness)).__module__]  # loaded from the server dir

    def record(*args: object, **kwargs: object) -> int:
        raise exc

    monkeypatch.setattr(addin_module.sql, "record", record)


def test_overwrite_whose_index_write_fails_keeps_the_stored_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """duplicates=overwrite, and the index cannot be written: the first object stays in place.

    The new file had already replaced the old one when the index write failed; the row still
    describes the old object, so the old file is put back and the peer gets a failure.
    """
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir, options='duplicates = "overwrite"\n')
    uid, first = _instance(tmp_path, "a.dcm")
    _, second = _instance(tmp_path, "b.dcm", sop_uid=uid, rows=8, cols=8)
    conn = associate(harness)
    assert send_store(conn, uid, first)[0][STATUS] == 0x0000
    _failing_index_write(harness, monkeypatch, sqlite3.OperationalError("disk I/O error"))
    assert send_store(conn, uid, second, message_id=2)[0][STATUS] == 0x0110
    [path] = _stored(server_dir)
    assert dataset_bytes(path) == first
    assert _rows(server_dir, "SELECT size FROM instance") == [(path.stat().st_size,)]
    assert list(harness.server.spool_dir.iterdir()) == []


@pytest.mark.parametrize("policy", ["keep-first", "overwrite"])
def test_full_index_gets_out_of_resources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    """SQLITE_FULL from the index write is a full disk too: 0xA700, and files as before."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir, options=f'duplicates = "{policy}"\n')
    uid, first = _instance(tmp_path, "a.dcm")
    other, data = _instance(tmp_path, "b.dcm")
    conn = associate(harness)
    assert send_store(conn, uid, first)[0][STATUS] == 0x0000
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13  # SQLITE_FULL
    _failing_index_write(harness, monkeypatch, full)
    assert send_store(conn, other, data, message_id=2)[0][STATUS] == 0xA700
    assert send_store(conn, uid, first, message_id=3)[0][STATUS] == (
        0xA700 if policy == "overwrite" else 0x0000
    )
    [path] = _stored(server_dir)
    assert dataset_bytes(path) == first
    assert _rows(server_dir, "SELECT sop_instance_uid FROM instance") == [(uid,)]
    assert list(harness.server.spool_dir.iterdir()) == []


def test_spool_files_of_another_running_server_are_left_at_start(tmp_path: Path) -> None:
    """Servers may share a temporary directory: a start removes only dead processes' files."""
    import os
    import subprocess
    import sys

    server_dir = tmp_path / "PACSREF"
    (server_dir / "tmp").mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)  # fmt: skip
    try:
        live = server_dir / "tmp" / f"pacsref-dimse-{other.pid}-0a1b2c3d-7.dataset"
        live.write_bytes(b"a transfer in progress")
        dead = server_dir / "tmp" / f"pacsref-dimse-{os.getpid()}-0a1b2c3d-8.dataset"
        dead.write_bytes(b"partial")
        storage_harness(server_dir)
        assert live.exists()
        assert not dead.exists()
    finally:
        other.communicate(b"")


def test_spool_directory_on_another_file_system_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stored file is the spool file renamed: with the two apart, start says why and stops."""
    import os

    server_dir = tmp_path / "PACSREF"
    spool = server_dir / "tmp"
    real_stat = Path.stat

    def stat(self: Path, **kwargs: object) -> os.stat_result:
        result = real_stat(self, **kwargs)  # type: ignore[arg-type]
        if self == spool:
            fields = list(result)
            fields[2] += 1  # st_dev
            return os.stat_result(fields)
        return result

    monkeypatch.setattr(Path, "stat", stat)
    with pytest.raises(RuntimeError, match="not on the file system of the data directory") as e:
        storage_harness(server_dir)
    assert type(e.value).__name__ == "StorageStartError"  # the add-in's, loaded from server_dir


def test_write_behind_is_on_only_for_durable_stores(
    tmp_path: Path, durability: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Durable stores end with an fdatasync, so large data sets are written as they arrive;
    relaxed ones are not (pacsref.dimse.writeback: it slowed them)."""
    from pacsref.dimse.writeback import WRITE_BEHIND

    monkeypatch.setattr(WRITE_BEHIND, "enabled", durability != "fsync")  # the opposite first
    storage_harness(tmp_path / "PACSREF")
    assert WRITE_BEHIND.enabled is (durability == "fsync")


def test_an_overwritten_object_not_put_back_survives_the_next_start(
    tmp_path: Path, log_lines: list[str]
) -> None:
    """A failed overwrite whose put-back failed too leaves the previous object under its
    second name in the spool directory (logged): the next start keeps it, and says so."""
    server_dir = tmp_path / "PACSREF"
    (server_dir / "tmp").mkdir(parents=True)
    kept = server_dir / "tmp" / "pacsref-dimse-4242-previous-0.dataset"
    kept.write_bytes(b"the only copy")
    stale = server_dir / "tmp" / "pacsref-dimse-dead.dataset"
    stale.write_bytes(b"partial")
    storage_harness(server_dir)
    assert kept.read_bytes() == b"the only copy" and not stale.exists()
    assert any(
        f"{kept} is an overwritten object that a failed store could not put back: kept" in line
        for line in log_lines
    ), log_lines
