"""Storing with peers nobody here wrote: DCMTK storescu and pynetdicom, into a real server.

A multi-series study (2 series x 3 CT images) plus one Explicit and one Implicit VR Little
Endian object is generated with pydicom, stored by each peer into its own fresh ``twistd``
server, and every stored file must hold the data set byte for byte as it was sent (compared
after each file's meta group), be indexed, and carry the peer's AE title as Source AE.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from pacsref.testing.dcmtk import require_dcmtk
from pacsref.testing.twistd import TwistdServer
from tests.storage.dicomgen import ROOT, make_instance, make_study
from tests.storage.helpers import dataset_bytes

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """SOP Instance UID -> generated file: the study plus one file of each uncompressed VR."""
    folder = tmp_path_factory.mktemp("sent")
    study = make_study(folder / "study", series=2, per_series=3, rows=64, cols=64)
    extra = [
        make_instance(folder / "extra" / "explicit.dcm", study_uid=generate_uid(ROOT),
                      series_uid=generate_uid(ROOT), transfer_syntax=ExplicitVRLittleEndian),
        make_instance(folder / "extra" / "implicit.dcm", study_uid=generate_uid(ROOT),
                      series_uid=generate_uid(ROOT), transfer_syntax=ImplicitVRLittleEndian),
    ]  # fmt: skip
    return {dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in study.files + extra}


def _assert_stored(server: TwistdServer, sent: dict[str, Path], calling_ae: str) -> None:
    data = server.server_dir / "data"
    stored = {p.name[: -len(".dcm")]: p for p in data.glob("*/*.dcm")}
    assert sorted(stored) == sorted(sent)
    for uid, path in stored.items():
        assert dataset_bytes(path) == dataset_bytes(sent[uid]), uid
        meta = dcmread(path, stop_before_pixels=True).file_meta
        assert meta.TransferSyntaxUID == dcmread(sent[uid], stop_before_pixels=True
                                                 ).file_meta.TransferSyntaxUID  # fmt: skip
        assert meta.SourceApplicationEntityTitle.strip() == calling_ae
    with sqlite3.connect(data / "index.sqlite") as db:
        indexed = {uid for (uid,) in db.execute("SELECT sop_instance_uid FROM instance")}
        [(series,)] = db.execute("SELECT count(*) FROM series").fetchall()
    assert indexed == set(sent)
    assert series == 4


def test_dcmtk_storescu_stores_byte_identical(sent: dict[str, Path], tmp_path: Path) -> None:
    """DCMTK storescu (each file proposed in its own transfer syntax) stores every object."""
    storescu = require_dcmtk("storescu")
    with TwistdServer("PACSREF", root=tmp_path / "dcmtk") as server:
        host, port = server.address
        files = [str(p) for p in sent.values()]
        done = subprocess.run(
            [storescu, "-aet", "STORESCU", "-aec", "PACSREF", host, str(port), *files],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        _assert_stored(server, sent, "STORESCU")


def test_pynetdicom_stores_byte_identical(sent: dict[str, Path], tmp_path: Path) -> None:
    """pynetdicom, proposing each object's own transfer syntax, stores every object."""
    from pynetdicom import AE

    with TwistdServer("PACSREF", root=tmp_path / "pynetdicom") as server:
        ae = AE(ae_title="PYNETDICOM")
        ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", ExplicitVRLittleEndian)
        ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", ImplicitVRLittleEndian)
        host, port = server.address
        assoc = ae.associate(host, port, ae_title="PACSREF")
        assert assoc.is_established
        try:
            for path in sent.values():
                status = assoc.send_c_store(path)
                assert status.Status == 0x0000, (path, status)
        finally:
            assoc.release()
        _assert_stored(server, sent, "PYNETDICOM")
