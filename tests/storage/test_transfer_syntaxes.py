"""Compressed and deflated objects are stored exactly as received, never transcoded.

Each case sends one of pydicom's bundled test files (read from the installed package, never
downloaded) on a presentation context proposing only its own transfer syntax, then checks the
stored file: its data set bytes equal the bytes sent, its file meta names the negotiated transfer
syntax, and the index row holds the object's attributes. A deflated data set is not walked by
the raw reader (``addins/storage/rawread.py``); it goes through pydicom's fallback, which must
inflate it inside our Part-10 file.
"""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

import pydicom
import pytest
from pydicom import dcmread

from tests.storage.helpers import associate, send_store, storage_harness
from tests.storage.test_parts import _module

STATUS = 0x0900
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"

CASES = {
    "jpeg-baseline": ("SC_rgb_jpeg_dcmtk.dcm", "1.2.840.10008.1.2.4.50"),
    "jpeg-extended": ("JPEG-lossy.dcm", "1.2.840.10008.1.2.4.51"),
    "jpeg-ls-lossless": ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),
    "jpeg2000-lossless": ("examples_jpeg2k.dcm", "1.2.840.10008.1.2.4.90"),
    "jpeg2000": ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91"),
    "rle": ("SC_rgb_rle.dcm", "1.2.840.10008.1.2.5"),
    "deflated": ("image_dfl.dcm", "1.2.840.10008.1.2.1.99"),
}


def _split_part10(path: Path) -> bytes:
    """The data set of a Part-10 file, exactly as encoded (after its file meta group)."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM", path
    assert data[132:136] == b"\x02\x00\x00\x00" and data[136:138] == b"UL", path
    (group_length,) = struct.unpack("<I", data[140:144])
    return data[144 + group_length :]


@pytest.mark.parametrize("case", list(CASES))
def test_stored_exactly_as_received(tmp_path: Path, case: str) -> None:
    """Same data set bytes, negotiated transfer syntax in the file meta, index row right."""
    name, transfer_syntax = CASES[case]
    source = TEST_FILES / name
    if not source.is_file():  # pragma: no cover - pydicom ~= 3.0 bundles all of them
        pytest.fail(f"pydicom's bundled test file {source} is missing")
    original = dcmread(source, stop_before_pixels=True)
    assert original.file_meta.TransferSyntaxUID == transfer_syntax
    sent = _split_part10(source)
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir)

    conn = associate(harness, original.SOPClassUID, transfer_syntax)
    [response] = send_store(
        conn, original.SOPInstanceUID, sent, sop_class_uid=original.SOPClassUID, chunk=1000
    )

    assert response[STATUS] == 0x0000, hex(response[STATUS])  # type: ignore[arg-type]
    [stored] = sorted((server_dir / "data").glob("*/*.dcm"))
    assert _split_part10(stored) == sent  # byte for byte: not transcoded, not re-encoded
    meta = dcmread(stored, stop_before_pixels=True).file_meta
    assert meta.TransferSyntaxUID == transfer_syntax
    assert meta.MediaStorageSOPClassUID == original.SOPClassUID
    assert meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID
    # The whole stored file reads back, pixel data included, to the same data set.
    assert dcmread(stored) == dcmread(source)
    # Which reader indexed it: the raw walk, or (deflate) pydicom's fallback.
    raw = _module("rawread").read_raw_attributes(stored, _module("writer")._RAW_WANTED)
    assert (raw is None) == (case == "deflated")

    with sqlite3.connect(server_dir / "data" / "index.sqlite") as db:
        [row] = db.execute(
            "SELECT i.sop_instance_uid, i.sop_class_uid, i.transfer_syntax_uid, i.path, i.size,"
            " s.series_instance_uid, s.modality, t.study_instance_uid, p.patient_id"
            " FROM instance i JOIN series s ON i.series_fk = s.id"
            " JOIN study t ON s.study_fk = t.id JOIN patient p ON t.patient_fk = p.id"
        ).fetchall()
    assert row == (
        original.SOPInstanceUID,
        original.SOPClassUID,
        transfer_syntax,
        str(stored.relative_to(server_dir / "data")),
        stored.stat().st_size,
        original.SeriesInstanceUID,
        original.Modality,
        original.StudyInstanceUID,
        original.get("PatientID", ""),
    )
