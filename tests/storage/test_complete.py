"""The whole-data-set walk of ``check --repair`` (addins/storage/complete.py)."""

from __future__ import annotations

import random
from pathlib import Path

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
from tests.storage.test_rawread import _part10_files

complete = _module("complete")

#: pydicom's own test files that are cut short on purpose, and one with no transfer syntax.
KNOWN_BAD = {
    "MR_truncated.dcm": "element (7FE0,0010) at offset 1488 declares 8192 bytes",
    "rtplan_truncated.dcm": "element (300A,00B0) at offset 1410 declares 976 bytes",
    "meta_missing_tsyntax.dcm": "the file meta names no transfer syntax (0002,0010)",
}


def _readable(path: Path) -> bool:
    try:
        dataset = dcmread(path)
        _ = dataset.get("PixelData")
    except Exception:
        return False
    return True


@pytest.mark.parametrize("path", _part10_files(), ids=lambda p: p.name)
def test_pydicoms_test_files_are_whole_unless_cut(path: Path) -> None:
    """Every file pydicom reads to its end is whole; the cut ones are named with the element
    that runs past the end."""
    problem = complete.data_set_problem(path)
    if path.name in KNOWN_BAD:
        assert problem is not None and KNOWN_BAD[path.name] in problem, problem
    elif _readable(path):
        assert problem is None, problem


def _write(path: Path, transfer_syntax: str, with_sequence: bool = True) -> Path:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = "Cut^Short"
    if with_sequence:
        inner = Dataset()
        inner.CodeValue = "121"
        inner.CodingSchemeDesignator = "DCM"
        ds.ReferencedImageSequence = Sequence([inner, Dataset()])
        # Undefined lengths, with delimitation items, as many modalities write them.
        ds["ReferencedImageSequence"].is_undefined_length = True
        for item in ds.ReferencedImageSequence:
            item.is_undefined_length_sequence_item = True
    ds.BitsAllocated = 8
    ds.PixelData = random.Random(7).randbytes(20_000)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(
        path,
        enforce_file_format=True,
        implicit_vr=transfer_syntax == ImplicitVRLittleEndian,
        little_endian=transfer_syntax != ExplicitVRBigEndian,
    )
    return path


@pytest.mark.parametrize(
    "transfer_syntax",
    [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian],
)
def test_every_cut_inside_the_last_element_is_found(tmp_path: Path, transfer_syntax: str) -> None:
    """Cut anywhere inside the pixel data (or its header), the file is not whole; whole, it
    is (sequences of defined and undefined length on the way)."""
    path = _write(tmp_path / "whole.dcm", transfer_syntax)
    assert complete.data_set_problem(path) is None
    data = path.read_bytes()
    pixel_header = data.rindex(b"\xe0\x7f\x10\x00" if transfer_syntax != ExplicitVRBigEndian
                               else b"\x7f\xe0\x00\x10")  # fmt: skip
    cut = tmp_path / "cut.dcm"
    for end in [pixel_header + 1, pixel_header + 7, pixel_header + 13, len(data) - 1]:
        cut.write_bytes(data[:end])
        assert complete.data_set_problem(cut) is not None, end


def test_an_undefined_length_sequence_cut_before_its_delimiter(tmp_path: Path) -> None:
    """A sequence of undefined length (as pydicom writes them in implicit VR) must reach its
    sequence delimitation item."""
    path = _write(tmp_path / "whole.dcm", ImplicitVRLittleEndian)
    data = path.read_bytes()
    delimiter = data.index(b"\xfe\xff\xdd\xe0")
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: delimiter + 4])
    problem = complete.data_set_problem(cut)
    assert problem is not None and "inside the element header at offset" in problem


def test_a_deflated_data_set_must_inflate_to_its_end(tmp_path: Path) -> None:
    path = _write(tmp_path / "whole.dcm", DeflatedExplicitVRLittleEndian)
    assert complete.data_set_problem(path) is None
    data = path.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:-50])
    assert complete.data_set_problem(cut) == (
        "the deflated data set ends before its compressed stream"
    )
    with open(path, "rb") as handle:
        _, offset = complete._file_meta(complete._Reader(handle, len(data), True, True))
    cut.write_bytes(data[:offset] + b"\xff" + data[offset + 1 :])  # block type 3: invalid
    problem = complete.data_set_problem(cut)
    assert problem == (
        "the deflated data set does not inflate: Error -3 while decompressing data: "
        "invalid block type"
    ), problem


def test_not_a_part10_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.dcm"
    path.write_bytes(b"\0" * 128 + b"JUNK" + b"\0" * 100)
    assert complete.data_set_problem(path) == (
        "no DICM prefix after the 128-byte preamble: not a Part-10 file"
    )


def test_garbage_after_the_header_is_not_a_data_set(tmp_path: Path) -> None:
    """A DICM header followed by junk: the walk names the offset where no element is."""
    path = _write(tmp_path / "whole.dcm", ExplicitVRLittleEndian, with_sequence=False)
    data = path.read_bytes()
    meta_end = data.index(b"\x08\x00\x16\x00")  # (0008,0016), the data set's first element
    path.write_bytes(data[:meta_end] + b"\x08\x00\x16\x00\x01\x02" + b"\x99" * 64)
    problem = complete.data_set_problem(path)
    assert problem is not None and f"offset {meta_end}" in problem, problem
