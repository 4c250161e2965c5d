"""After answering a C-STORE the session creates the next spool file ahead of need.

The spare is made in the reactor iteration after the response (a ``callLater(0)``), is the
file the next data set is written to, and is gone once the association is released.
"""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pacsref.ul import codec
from tests.storage.dicomgen import ROOT, make_instance
from tests.storage.helpers import associate, dataset_bytes, send_store, storage_harness

STATUS = 0x0900


def _instance(tmp_path: Path, name: str) -> tuple[str, bytes]:
    path = make_instance(
        tmp_path / "in" / name, study_uid=generate_uid(ROOT), series_uid=generate_uid(ROOT),
        transfer_syntax=ExplicitVRLittleEndian, rows=8, cols=8,
    )  # fmt: skip
    return dcmread(path).SOPInstanceUID, dataset_bytes(path)


def test_spare_spool_file_is_made_after_a_store_used_by_the_next_and_dropped_at_release(
    tmp_path: Path,
) -> None:
    harness = storage_harness(tmp_path / "PACSREF")
    spool_dir = harness.server.spool_dir
    first_uid, first = _instance(tmp_path, "1.dcm")
    second_uid, second = _instance(tmp_path, "2.dcm")
    conn = associate(harness)
    assert send_store(conn, first_uid, first)[0][STATUS] == 0x0000
    assert list(spool_dir.iterdir()) == [], "not before the response has gone out"
    harness.clock.advance(0)
    (spare,) = list(spool_dir.iterdir())
    assert spare.stat().st_size == 0
    assert send_store(conn, second_uid, second, message_id=2)[0][STATUS] == 0x0000
    assert not spare.exists(), "the second data set went into the spare and was stored"
    harness.clock.advance(0)
    assert len(list(spool_dir.iterdir())) == 1
    conn.send(codec.RELEASE_RQ)
    [(pdu_type, _body)] = conn.received()
    assert pdu_type.name == "A_RELEASE_RP"
    assert list(spool_dir.iterdir()) == [], "the spare is deleted before the release answer"
    harness.clock.advance(0)
    assert list(spool_dir.iterdir()) == [], "and no new one is made after the release"
