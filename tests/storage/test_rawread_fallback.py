"""The raw attribute walk never trusts a walk that went wrong; it reads as pydicom or defers.

A walk follows lengths, so reading a data set in the wrong encoding, or a garbage length, puts
it on arbitrary bytes. In a small file that runs past the end and pydicom takes over; in a large
one it lands inside the pixel data and the walk ends early, without the UIDs, so the same data
set was stored when small and refused (0xA900, or 0xC000 when the garbage was taken for a
Specific Character Set) when large. These tests build that case, an implicit VR transfer syntax
whose data set is encoded explicit VR (a known writer bug pydicom reads), with more than 1 MB
of pixel data, and crafted lengths that must not be believed.
"""

from __future__ import annotations

import sqlite3
import struct
import warnings
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from tests.storage.dicomgen import ROOT, _dataset
from tests.storage.helpers import IMPLICIT, associate, send_store, storage_harness
from tests.storage.test_parts import _module
from tests.storage.test_rawread import WANTED, _pydicom_attributes

writer = _module("writer")
rawread = _module("rawread")

STATUS = 0x0900
#: 1024 x 1024 16-bit pixels: 2 MiB, far past the walk's first reads (16 KiB, then x 4).
LARGE = 1024
SMALL = 16


def _instance(size: int, charset: str | None) -> Dataset:
    """A CT image of ``size`` x ``size`` pixels; ``charset``: its Specific Character Set.

    The pixel data is all 0xFF, not noise: a walk that lands in it reads the tag (FFFF,FFFF),
    past every index attribute, and stops there every time, not by chance.
    """
    ds = _dataset(generate_uid(ROOT), generate_uid(ROOT), generate_uid(ROOT), 7, size, size)
    if charset is not None:
        ds.SpecificCharacterSet = charset
    ds.PatientName = "Müller^Zoë" if charset else "Doe^John"
    ds.PixelData = b"\xff" * (size * size * 2)
    return ds


def _data_set_bytes(ds: Dataset, implicit: bool) -> bytes:
    """``ds`` encoded little endian, implicit or explicit VR, whatever a file meta says."""
    out = DicomBytesIO()
    out.is_little_endian = True
    out.is_implicit_VR = implicit
    write_dataset(out, ds)
    return out.getvalue()


def _part10(path: Path, ds: Dataset, transfer_syntax: str, data: bytes) -> Path:
    """A Part-10 file whose file meta names ``transfer_syntax`` and whose data set is ``data``.

    Written by hand because pydicom's ``save_as`` refuses an encoding that contradicts the
    transfer syntax, and that contradiction is the point.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = ROOT + "1"
    out = DicomBytesIO()
    out.is_little_endian = True
    out.is_implicit_VR = False
    write_file_meta_info(out, meta)
    path.write_bytes(b"\0" * 128 + b"DICM" + out.getvalue() + data)
    return path


def _pydicom(path: Path):  # type: ignore[no-untyped-def]
    """pydicom's reading, without its warning about the encoding it switched to."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _pydicom_attributes(path)


@pytest.mark.parametrize("charset", [None, "ISO_IR 100"])
@pytest.mark.parametrize("size", [SMALL, LARGE])
def test_implicit_syntax_explicit_data_reads_as_pydicom(
    tmp_path: Path, size: int, charset: str | None
) -> None:
    """Read explicit, as pydicom does, small or large: the walk itself serves it (no pydicom).

    Before: small went to pydicom, large lost its UIDs (or raised "embedded null character"
    from the Specific Character Set the walk made of pixel bytes).
    """
    ds = _instance(size, charset)
    path = tmp_path / "mismatch.dcm"
    _part10(path, ds, ImplicitVRLittleEndian, _data_set_bytes(ds, implicit=False))
    assert rawread.read_raw_attributes(path, WANTED) is not None
    attributes = writer.read_attributes(path)
    assert attributes == _pydicom(path)
    assert attributes["SOPInstanceUID"] == ds.SOPInstanceUID
    assert attributes["PatientName"] == str(ds.PatientName)
    assert attributes.transfer_syntax == ImplicitVRLittleEndian  # what the file meta says


@pytest.mark.parametrize("durability", ["fsync", "relaxed"])
@pytest.mark.parametrize("charset", [None, "ISO_IR 100"])
def test_large_explicit_data_stored_over_an_implicit_context(
    tmp_path: Path, charset: str | None, durability: str
) -> None:
    """The store answers success and indexes the object, as it did for the same data set small.

    Before: 0xA900 "data set SOP Instance UID '' differs", or 0xC000 with a character set.
    """
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir, f'durability = "{durability}"\n')
    ds = _instance(LARGE, charset)
    conn = associate(harness, ts=IMPLICIT)
    [response] = send_store(conn, ds.SOPInstanceUID, _data_set_bytes(ds, False), chunk=16000)
    assert response[STATUS] == 0x0000, response
    with sqlite3.connect(server_dir / "data" / "index.sqlite") as db:
        rows = db.execute(
            "SELECT i.sop_instance_uid, p.patient_name FROM instance i"
            " JOIN series s ON i.series_fk = s.id JOIN study t ON s.study_fk = t.id"
            " JOIN patient p ON t.patient_fk = p.id"
        ).fetchall()
    assert rows == [(ds.SOPInstanceUID, str(ds.PatientName))]


@pytest.mark.filterwarnings("ignore:Expected explicit VR:UserWarning")
def test_explicit_syntax_implicit_data_goes_to_pydicom(tmp_path: Path) -> None:
    """The reverse mismatch: the first length's bytes are no VR, so the walk defers."""
    ds = _instance(SMALL, None)
    path = tmp_path / "reverse.dcm"
    _part10(path, ds, ExplicitVRLittleEndian, _data_set_bytes(ds, implicit=True))
    assert rawread.read_raw_attributes(path, WANTED) is None
    assert writer.read_attributes(path)["SOPInstanceUID"] == ds.SOPInstanceUID


@pytest.mark.filterwarnings("ignore:The value length:UserWarning")
def test_letters_that_are_no_vr_are_read_implicit(tmp_path: Path) -> None:
    """An implicit first element whose length's low bytes read "ZZ": no VR, so no explicit
    reading fits, and the walk reads it as the transfer syntax says (pydicom, switching on any
    two capital letters, finds no attribute at all and the store would be refused)."""
    ds = _instance(SMALL, None)
    ds.add_new(0x00080008, "CS", "A" * 0x5A5A)  # Image Type of 23130 bytes: b"ZZ\0\0"
    path = tmp_path / "zz.dcm"
    _part10(path, ds, ImplicitVRLittleEndian, _data_set_bytes(ds, implicit=True))
    assert path.read_bytes().count(b"\x08\x00\x08\x00ZZ\0\0") == 1
    attributes = writer.read_raw_index_attributes(path)
    assert attributes is not None
    assert attributes["SOPInstanceUID"] == ds.SOPInstanceUID
    assert attributes["PatientName"] == "Doe^John"


def _with_length(data: bytes, tag: int, length: int) -> bytes:
    """Implicit VR ``data`` with the 32-bit length of its element ``tag`` replaced."""
    at = data.index(struct.pack("<HH", tag >> 16, tag & 0xFFFF))
    return data[: at + 4] + struct.pack("<L", length) + data[at + 8 :]


def test_bogus_length_inside_the_file_is_not_trusted(tmp_path: Path) -> None:
    """A Patient Name of 1 MiB lands in the pixel data, where the walk stops "successfully".

    Before: the walk returned it, and 1 MiB of pixel bytes as the name; no legal value is
    longer than 64 KiB, so now pydicom decides.
    """
    ds = _instance(LARGE, None)
    data = _with_length(_data_set_bytes(ds, implicit=True), 0x00100010, 1 << 20)
    path = _part10(tmp_path / "bogus.dcm", ds, ImplicitVRLittleEndian, data)
    assert rawread.read_raw_attributes(path, WANTED) is None


def test_bogus_length_past_the_end_is_not_read_for(tmp_path: Path) -> None:
    """A Patient Name running past the end of the file: deferred after the first read.

    Before: the walk took it for a long value and read the file again, four times larger
    each time, up to 4 MiB, before giving up.
    """
    ds = _instance(SMALL, None)
    data = _with_length(_data_set_bytes(ds, implicit=True), 0x00100010, 0x7FFFFFF0)
    path = _part10(tmp_path / "past.dcm", ds, ImplicitVRLittleEndian, data)
    content = path.read_bytes() + b"\0" * (8 << 20)  # a large file: the end is not near
    reads: list[int] = []

    def head(size: int) -> bytes:
        reads.append(size)
        return content[:size]

    assert rawread.read_raw_attributes(path, WANTED, head) is None
    assert reads == [rawread._CHUNK]


def test_garbage_character_set_is_unknown_not_an_error(tmp_path: Path) -> None:
    """A NUL inside a Specific Character Set term: indexed as Latin-1 with a warning, like any
    unknown term. Before: codecs.lookup's ValueError escaped, and the store answered 0xC000."""
    ds = _instance(SMALL, "ISO_IR 100")
    data = _data_set_bytes(ds, implicit=False)  # pydicom will not write the NUL: patched in
    data = data.replace(b"ISO_IR 100", b"ISO_IR\x00100", 1)
    path = _part10(tmp_path / "nul.dcm", ds, ExplicitVRLittleEndian, data)
    attributes = writer.read_raw_index_attributes(path)
    assert attributes is not None
    assert attributes["PatientName"] == "Müller^Zoë"
    assert attributes["SOPInstanceUID"] == ds.SOPInstanceUID
