"""A duplicate the policy keeps out is discarded before anything is flushed.

A modality resending a study (after a failure on its side, or a second routing rule) sends
objects the archive holds. With ``keep-first`` (the default) and ``refuse`` the resent copy is
thrown away, so the store looks the UID up before it fsyncs the spool file: the device does
not write what nobody keeps, which for a large multi-frame object is seconds. And a
"duplicate" of an instance whose file has gone is no duplicate: it is stored in its place.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.storage.dicomgen import ROOT, make_instance
from tests.storage.helpers import associate, dataset_bytes, send_store, storage, storage_harness

STATUS = 0x0900


def _instance(tmp_path: Path) -> tuple[str, bytes]:
    """A CT image's SOP Instance UID and data set."""
    path = make_instance(
        tmp_path / "in" / "a.dcm", study_uid=generate_uid(ROOT), series_uid=generate_uid(ROOT),
        transfer_syntax=ExplicitVRLittleEndian,
    )  # fmt: skip
    return dcmread(path).SOPInstanceUID, dataset_bytes(path)


def _count_flushes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The descriptors ``os.fdatasync`` is called with from now on (it still flushes)."""
    flushed: list[int] = []
    real_fdatasync = os.fdatasync

    def counting_fdatasync(fd: int) -> None:
        flushed.append(fd)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", counting_fdatasync)
    return flushed


@pytest.mark.parametrize(("policy", "status"), [("keep-first", 0x0000), ("refuse", 0x0111)])
def test_kept_out_duplicate_is_not_flushed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str, status: int
) -> None:
    """The first copy is flushed once; the resent one gets its status without a flush."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir, f'durability = "fsync"\nduplicates = "{policy}"\n')
    uid, data = _instance(tmp_path)
    flushed = _count_flushes(monkeypatch)
    conn = associate(harness)
    assert send_store(conn, uid, data)[0][STATUS] == 0x0000
    assert len(flushed) == 1
    assert send_store(conn, uid, data, message_id=2)[0][STATUS] == status
    assert len(flushed) == 1
    assert list(harness.server.spool_dir.iterdir()) == []


def test_overwriting_duplicate_is_flushed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``overwrite`` keeps the resent copy, so it is flushed like a new object."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir, 'durability = "fsync"\nduplicates = "overwrite"\n')
    uid, data = _instance(tmp_path)
    flushed = _count_flushes(monkeypatch)
    conn = associate(harness)
    assert send_store(conn, uid, data)[0][STATUS] == 0x0000
    assert send_store(conn, uid, data, message_id=2)[0][STATUS] == 0x0000
    assert len(flushed) == 2


@pytest.mark.parametrize("policy", ["keep-first", "refuse"])
def test_duplicate_of_a_row_whose_file_is_gone_is_stored(tmp_path: Path, policy: str) -> None:
    """The stored file was deleted by hand: the resent copy is stored in its place (0x0000),
    not turned away as a duplicate of an object the archive no longer has."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir, f'durability = "fsync"\nduplicates = "{policy}"\n')
    uid, data = _instance(tmp_path)
    conn = associate(harness)
    assert send_store(conn, uid, data)[0][STATUS] == 0x0000
    [stored] = (server_dir / "data").glob("*/*.dcm")
    stored.unlink()
    assert send_store(conn, uid, data, message_id=2)[0][STATUS] == 0x0000
    assert dataset_bytes(stored) == data
    assert storage(harness).check().clean
