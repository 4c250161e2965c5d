"""A spool file the disk will not take (ENOSPC, EDQUOT, EIO) while a C-STORE arrives.

The failure is the server's, not the peer's: the C-STORE gets 0xA700 Refused: Out of Resources
with an Error Comment, the add-in is not called, the partial spool file is gone, and the
association goes on, so the next store succeeds once space returns. The failing disk is
simulated by replacing the spool file object the DIMSE layer writes through.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from twisted.logger import globalLogPublisher

from pacsref.server.dispatch import Dispatcher
from pacsref.ul import codec
from pacsref.ul.events import DataTransfer, PresentationDataValue
from tests.storage.dicomgen import ROOT, make_instance
from tests.storage.helpers import associate, dataset_bytes, send_store, storage_harness

STATUS = 0x0900
ERROR_COMMENT = 0x0902


class Disk:
    """Spool writes (``os.writev``, see pacsref.dimse.spool) fail while ``error`` is set."""

    def __init__(self) -> None:
        self.error: int | None = None
        self.fail_after = 0  # bytes accepted (per file descriptor) before the writes fail
        self.written: dict[int, int] = {}
        self.real_writev = os.writev

    def writev(self, fd: int, buffers: Any) -> int:
        total = sum(len(b) for b in buffers)
        if self.error is not None and self.written.get(fd, 0) + total > self.fail_after:
            raise OSError(self.error, os.strerror(self.error))
        written = self.real_writev(fd, buffers)
        self.written[fd] = self.written.get(fd, 0) + written
        return written


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    """The spool files' disk, healthy until a test sets ``disk.error``."""
    disk = Disk()
    monkeypatch.setattr("pacsref.dimse.spool.os.writev", disk.writev)
    return disk


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    """Every log event emitted during the test."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def _instance(tmp_path: Path, name: str) -> tuple[str, bytes]:
    path = make_instance(
        tmp_path / "in" / name, study_uid=generate_uid(ROOT), series_uid=generate_uid(ROOT),
        transfer_syntax=ExplicitVRLittleEndian, rows=64, cols=64,
    )  # fmt: skip
    return dcmread(path).SOPInstanceUID, dataset_bytes(path)


def _stored(server_dir: Path) -> list[Path]:
    return sorted((server_dir / "data").glob("*/*.dcm"))


@pytest.mark.parametrize(
    ("error", "comment"),
    [
        (errno.ENOSPC, "spool disk full: No space left on device"),
        (errno.EDQUOT, "spool disk full: Disk quota exceeded"),
        (errno.EIO, "spool write failed: Input/output error"),
    ],
)
@pytest.mark.parametrize("fail_after", [0, 5000], ids=["at-header", "mid-dataset"])
def test_spool_write_error_gets_out_of_resources_and_the_association_goes_on(
    tmp_path: Path,
    disk: Disk,
    logged: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    error: int,
    comment: str,
    fail_after: int,
) -> None:
    """0xA700 with an Error Comment; no file, row or spool file; the next store succeeds."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir)
    calls: list[object] = []
    real_dispatch = Dispatcher.dispatch
    monkeypatch.setattr(
        Dispatcher, "dispatch", lambda *a, **kw: calls.append(a) or real_dispatch(*a, **kw)
    )
    lost_uid, lost = _instance(tmp_path, "lost.dcm")
    kept_uid, kept = _instance(tmp_path, "kept.dcm")
    conn = associate(harness)

    disk.error, disk.fail_after = error, fail_after
    [response] = send_store(conn, lost_uid, lost, chunk=4000)
    assert response[STATUS] == 0xA700
    assert response[ERROR_COMMENT] == comment
    assert response[0x1000] == lost_uid
    assert calls == []  # no add-in saw it
    assert list(harness.server.spool_dir.iterdir()) == []
    [line] = [e for e in logged if e.get("kind") == "spool.failed"]
    assert line["file"].startswith(str(harness.server.spool_dir))
    assert line["errno"] == error and line["error"] == os.strerror(error)
    assert line["message_id"] == 1 and line["calling"] == "MODALITY"

    disk.error = None  # space is back
    [response] = send_store(conn, kept_uid, kept, message_id=2)
    assert response[STATUS] == 0x0000
    assert len(calls) == 1
    [path] = _stored(server_dir)
    assert path.name == f"{kept_uid}.dcm" and dataset_bytes(path) == kept
    with sqlite3.connect(server_dir / "data" / "index.sqlite") as db:
        rows = db.execute("SELECT sop_instance_uid FROM instance").fetchall()
    assert rows == [(kept_uid,)]
    assert list(harness.server.spool_dir.iterdir()) == []


def test_vanished_spool_directory_gets_out_of_resources(tmp_path: Path) -> None:
    """No spool file can even be created: the same answer, and the same recovery."""
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir)
    uid, data = _instance(tmp_path, "a.dcm")
    conn = associate(harness)
    spool_dir = harness.server.spool_dir
    spool_dir.rename(spool_dir.with_name("moved-away"))

    [response] = send_store(conn, uid, data)
    assert response[STATUS] == 0xA700
    assert response[ERROR_COMMENT] == "spool write failed: No such file or directory"

    spool_dir.with_name("moved-away").rename(spool_dir)
    assert send_store(conn, uid, data, message_id=2)[0][STATUS] == 0x0000
    assert len(_stored(server_dir)) == 1


def test_spool_failure_then_release_is_a_normal_release(tmp_path: Path, disk: Disk) -> None:
    """After a refused store the association is released normally (not aborted)."""
    harness = storage_harness(tmp_path / "PACSREF")
    uid, data = _instance(tmp_path, "a.dcm")
    conn = associate(harness)
    disk.error = errno.ENOSPC
    assert send_store(conn, uid, data)[0][STATUS] == 0xA700
    conn.send(codec.RELEASE_RQ)
    [(pdu_type, _body)] = conn.received()
    assert pdu_type.name == "A_RELEASE_RP"


def test_c_find_with_unspoolable_identifier_gets_out_of_resources(
    tmp_path: Path, disk: Disk
) -> None:
    """The rule is the DIMSE layer's, not the storage add-in's: a C-FIND gets 0xA700 too."""
    from pacsref.dimse import encode_command
    from tests.server.helpers import responses

    harness = storage_harness(tmp_path / "PACSREF")
    conn = associate(harness)
    disk.error = errno.ENOSPC
    command = encode_command({
        0x0002: "1.2.840.10008.5.1.4.1.2.2.1", 0x0100: 0x0020, 0x0110: 7, 0x0700: 0,
        0x0800: 0x0000,
    })  # fmt: skip
    for pdv in (
        PresentationDataValue(1, True, True, command),
        PresentationDataValue(1, False, True, b"\x08\x00\x52\x00\x06\x00STUDY "),
    ):
        conn.send(codec.encode_p_data(DataTransfer((pdv,))))
    [response] = responses(conn.received())
    assert response[STATUS] == 0xA700
    assert response[0x0120] == 7
