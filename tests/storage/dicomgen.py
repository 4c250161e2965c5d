"""Synthetic DICOM Part-10 files for the storage tests, behave steps and benchmarks.

Made with pydicom (an implementation nobody here wrote), so the bytes a peer sends are not
shaped by our own encoder. Pixel data is deterministic noise of the requested size; a large
multi-frame object is written by streaming its pixel data, never held in memory.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

__all__ = ["Study", "make_instance", "make_multiframe", "make_study"]

#: UID root for generated objects (pydicom's, so they never clash with real ones).
ROOT = "1.2.826.0.1.3680043.8.498."


@dataclass(frozen=True)
class Study:
    """Where a generated study's files are, and its UIDs."""

    study_uid: str
    files: list[Path]


def _dataset(
    sop_uid: str, study_uid: str, series_uid: str, number: int, rows: int, cols: int,
    frames: int = 1, patient: str = "Test^Patient", patient_id: str = "PID-1",
    modality: str = "CT", series_number: int = 1, issuer: str | None = None,
) -> Dataset:  # fmt: skip
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = "20240102"
    ds.StudyTime = "101010"
    ds.AccessionNumber = "ACC1"
    ds.Modality = modality
    ds.ReferringPhysicianName = "Ref^Doc"
    ds.StudyDescription = "Synthetic study"
    ds.SeriesDescription = f"Series {series_number}"
    ds.PatientName = patient
    ds.PatientID = patient_id
    if issuer is not None:
        ds.IssuerOfPatientID = issuer
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    return ds


def _file_meta(ds: Dataset, transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    return meta


def make_instance(
    path: Path, *, study_uid: str, series_uid: str, number: int = 1, rows: int = 16,
    cols: int = 16, transfer_syntax: str = ExplicitVRLittleEndian, sop_uid: str | None = None,
    series_number: int = 1, patient_id: str = "PID-1", issuer: str | None = None,
) -> Path:  # fmt: skip
    """Write one single-frame CT image (16-bit pixels) to ``path``; ``issuer``: the Issuer of
    Patient ID (0010,0021), absent when None."""
    ds = _dataset(sop_uid or generate_uid(ROOT), study_uid, series_uid, number, rows, cols,
                  series_number=series_number, patient_id=patient_id, issuer=issuer)  # fmt: skip
    ds.PixelData = os.urandom(rows * cols * 2)
    ds.file_meta = _file_meta(ds, transfer_syntax)
    path.parent.mkdir(parents=True, exist_ok=True)
    implicit = transfer_syntax == ImplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True, implicit_vr=implicit)
    return path


def make_study(
    folder: Path, series: int = 2, per_series: int = 3, rows: int = 16, cols: int = 16,
    transfer_syntaxes: tuple[str, ...] = (ExplicitVRLittleEndian,),
) -> Study:  # fmt: skip
    """A study of ``series`` x ``per_series`` images; syntaxes cycle over the files."""
    study_uid = generate_uid(ROOT)
    files = []
    n = 0
    for s in range(series):
        series_uid = generate_uid(ROOT)
        for i in range(per_series):
            ts = transfer_syntaxes[n % len(transfer_syntaxes)]
            files.append(make_instance(
                folder / f"s{s + 1}" / f"img{i + 1:04d}.dcm", study_uid=study_uid,
                series_uid=series_uid, number=i + 1, rows=rows, cols=cols,
                transfer_syntax=ts, series_number=s + 1,
            ))  # fmt: skip
            n += 1
    return Study(study_uid, files)


def _chunks(total: int, size: int = 8 << 20) -> Iterator[bytes]:
    block = os.urandom(min(size, total))
    left = total
    while left > 0:
        yield block[: min(left, len(block))]
        left -= len(block)


def make_multiframe(path: Path, frames: int, rows: int = 512, cols: int = 512) -> Path:
    """A multi-frame CT object of ``frames`` 16-bit frames, pixel data streamed to disk."""
    ds = _dataset(generate_uid(ROOT), generate_uid(ROOT), generate_uid(ROOT), 1, rows, cols,
                  frames=frames)  # fmt: skip
    ds.file_meta = _file_meta(ds, ExplicitVRLittleEndian)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    length = rows * cols * 2 * frames
    with path.open("ab") as out:
        out.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length))
        for chunk in _chunks(length):
            out.write(chunk)
    return path
