"""The fast attribute walk (addins/storage/rawread.py) agrees with pydicom, or defers to it."""

from __future__ import annotations

from pathlib import Path

import pydicom.data
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from tests.storage.test_parts import _module

writer = _module("writer")
rawread = _module("rawread")

WANTED = writer._RAW_WANTED


def _pydicom_attributes(path: Path):  # type: ignore[no-untyped-def]
    """What the pydicom path of read_attributes gives (the raw walk switched off)."""
    original = writer.read_raw_attributes
    writer.read_raw_attributes = lambda *_: None
    try:
        return writer.read_attributes(path)
    finally:
        writer.read_raw_attributes = original


#: pydicom's bundled test files (not ``get_testdata_files``, which tries to download more).
TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"


def _part10_files() -> list[Path]:
    found = []
    for path in TEST_FILES.rglob("*.dcm"):
        with path.open("rb") as handle:
            handle.seek(128)
            if handle.read(4) == b"DICM":
                found.append(path)
    return sorted(found)


@pytest.mark.parametrize("path", _part10_files(), ids=lambda p: p.name)
def test_walk_agrees_with_pydicom_or_defers(path: Path) -> None:
    try:
        expected = _pydicom_attributes(path)
    except Exception:
        pytest.skip(f"pydicom itself cannot read {path.name}")
    raw = rawread.read_raw_attributes(path, WANTED)
    if raw is None:
        return  # deferred: read_attributes uses pydicom, checked above
    assert writer.read_attributes(path) == expected


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "rtplan.dcm",
        "JPEG2000.dcm",
    ],
)
def test_walk_reads_the_common_encodings_itself(name: str) -> None:
    """The walk must actually serve these (else it saves nothing): explicit/implicit/BE, SQ."""
    path = TEST_FILES / name
    assert rawread.read_raw_attributes(path, WANTED) is not None
    assert writer.read_attributes(path) == _pydicom_attributes(path)


def _write(tmp_path: Path, transfer_syntax: str, dataset: Dataset, name: str) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    dataset.file_meta = meta
    path = tmp_path / name
    dataset.save_as(path, enforce_file_format=True)
    return path


def _dataset() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    # A sequence of undefined length with nested items before the index attributes.
    inner = Dataset()
    inner.CodeValue = "X" * 3
    inner.ConceptNameCodeSequence = Sequence([Dataset()])
    ds.ReferencedStudySequence = Sequence([inner, Dataset()])
    ds["ReferencedStudySequence"].is_undefined_length = True
    inner["ConceptNameCodeSequence"].is_undefined_length = True
    for item in (*ds.ReferencedStudySequence, *inner.ConceptNameCodeSequence):
        item.is_undefined_length_sequence_item = True
    ds.StudyDate = "20260101"
    ds.AccessionNumber = "A1"
    ds.PatientName = "Müller^Zoë"
    ds.PatientID = "P-1"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.SeriesNumber = 3
    ds.InstanceNumber = 7
    ds.add_new(0x7FE00010, "OB", b"\0" * 64)
    return ds


@pytest.mark.parametrize(
    "transfer_syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
)
def test_undefined_length_sequences_and_utf8(tmp_path: Path, transfer_syntax: str) -> None:
    ds = _dataset()
    ds.is_little_endian = transfer_syntax != ExplicitVRBigEndian
    ds.is_implicit_VR = transfer_syntax == ImplicitVRLittleEndian
    path = _write(tmp_path, transfer_syntax, ds, "seq.dcm")
    # pydicom writes sequences with undefined length unless told otherwise
    assert b"\xff\xff\xff\xff" in path.read_bytes()
    attributes = writer.read_attributes(path)
    assert rawread.read_raw_attributes(path, WANTED) is not None
    assert attributes == _pydicom_attributes(path)
    assert attributes["PatientName"] == "Müller^Zoë"
    assert attributes["InstanceNumber"] == "7"
    assert attributes.transfer_syntax == transfer_syntax


def test_deflated_goes_to_pydicom(tmp_path: Path) -> None:
    path = _write(tmp_path, DeflatedExplicitVRLittleEndian, _dataset(), "deflated.dcm")
    assert rawread.read_raw_attributes(path, WANTED) is None
    attributes = writer.read_attributes(path)
    assert attributes["PatientID"] == "P-1"
    assert attributes.transfer_syntax == DeflatedExplicitVRLittleEndian


def test_attributes_beyond_the_first_chunk(tmp_path: Path) -> None:
    """A long element before the index attributes makes the walk read further, not give up."""
    ds = _dataset()
    ds.add_new(0x00080081, "ST", "x" * 1000)  # Institution Address, before 0008,0090
    ds.add_new(0x00081030, "LO", "s")
    ds.add_new(0x00081084, "SQ", Sequence([Dataset() for _ in range(3)]))
    ds[0x00080081].value = "y" * 10_000  # ST is limited, but the walk must not care
    ds.add_new(0x00082111, "ST", "z" * 60_000)  # Derivation Description: 60 kB
    path = _write(tmp_path, ExplicitVRLittleEndian, ds, "long.dcm")
    assert rawread.read_raw_attributes(path, WANTED) is not None
    assert writer.read_attributes(path) == _pydicom_attributes(path)


def test_truncated_file_goes_to_pydicom(tmp_path: Path) -> None:
    path = _write(tmp_path, ExplicitVRLittleEndian, _dataset(), "whole.dcm")
    data = path.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: data.index(b"P-1") - 2])
    assert rawread.read_raw_attributes(cut, WANTED) is None


def test_garbage_after_the_meta_goes_to_pydicom(tmp_path: Path) -> None:
    path = _write(tmp_path, ExplicitVRLittleEndian, _dataset(), "whole.dcm")
    data = bytearray(path.read_bytes())
    meta_end = 132 + 12 + int.from_bytes(data[140:144], "little")
    data[meta_end + 4 : meta_end + 6] = b"\x01\x02"  # not a VR
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(bytes(data))
    assert rawread.read_raw_attributes(bad, WANTED) is None
    with pytest.raises(Exception):  # noqa: B017 - whatever pydicom says is what the SCP reports
        dcmread(bad, stop_before_pixels=True)
