"""An empty value never replaces a stored one in the patient, study and series rows.

A study's later objects (a Presentation State, a Key Object Selection) often leave Accession
Number, Study Description or Patient's Birth Date empty; they must not blank what the images
stored, or C-FIND by accession number stops finding the study. A non-empty value still
replaces the stored one (the latest object wins). The same scenario runs on PostgreSQL in
``test_postgres.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.storage.dicomgen import ROOT, make_instance
from tests.storage.helpers import (
    associate,
    dataset_bytes,
    send_store,
    storage,
    storage_harness,
)
from tests.storage.test_parent_rows import Index
from tests.storage.test_parts import _module
from tests.storage.test_store import _rows

index = _module("index")

GSPS = "1.2.840.10008.5.1.4.1.1.11.1"
STATUS = 0x0900

#: The image's values for the columns a Presentation State leaves empty.
IMAGE = {"AccessionNumber": "ACC1", "StudyDescription": "Synthetic study",
         "PatientBirthDate": "19700101"}  # fmt: skip
STUDY_SQL = "SELECT accession_number, study_description, study_id FROM study"
PATIENT_SQL = "SELECT patient_name, patient_birth_date, patient_sex FROM patient"


def study_objects(tmp_path: Path) -> list[tuple[str, str, bytes]]:
    """(SOP class, SOP Instance UID, data set) of a CT image and, in a new series of the same
    study, a Grayscale Softcopy Presentation State with Accession Number, Study Description,
    Study ID and Patient's Birth Date present but empty."""
    image = make_instance(tmp_path / "ct.dcm", study_uid=generate_uid(ROOT),
                          series_uid=generate_uid(ROOT))  # fmt: skip
    ds = dcmread(image)
    image_object = (str(ds.SOPClassUID), str(ds.SOPInstanceUID), dataset_bytes(image))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = GSPS
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(ROOT)
    ds.SeriesInstanceUID = generate_uid(ROOT)
    ds.Modality = "PR"
    for keyword in (*IMAGE, "StudyID"):
        setattr(ds, keyword, "")
    del ds.PixelData
    state = tmp_path / "pr.dcm"
    ds.save_as(state, enforce_file_format=True)
    return [image_object, (GSPS, str(ds.SOPInstanceUID), dataset_bytes(state))]


def store_all(harness: object, objects: list[tuple[str, str, bytes]]) -> None:
    """C-STORE each object on an association of its own (one context per association)."""
    for n, (sop_class, uid, data) in enumerate(objects, start=1):
        conn = associate(harness, abstract_syntax=sop_class)  # type: ignore[arg-type]
        response = send_store(conn, uid, data, sop_class_uid=sop_class, message_id=n)
        assert response[0][STATUS] == 0x0000


@pytest.mark.parametrize("restart", [False, True], ids=["one-run", "restarted"])
def test_presentation_state_keeps_the_accession_number(tmp_path: Path, restart: bool) -> None:
    """Restarted between the two (the parent-row cache emptied, all a restart changes here):
    the study row is written again, and its upsert itself keeps the values."""
    server_dir = tmp_path / "PACSREF"
    image, state = study_objects(tmp_path)
    harness = storage_harness(server_dir)
    store_all(harness, [image])
    if restart:
        storage(harness)._parents.clear()
    store_all(harness, [state])
    assert _rows(server_dir, STUDY_SQL) == [("ACC1", "Synthetic study", "1")]
    assert _rows(server_dir, PATIENT_SQL) == [("Test^Patient", "19700101", "O")]
    assert _rows(server_dir, "SELECT modalities_in_study FROM study") == [("CT\\PR",)]


@pytest.mark.parametrize("cached", [True, False], ids=["cache", "no-cache"])
def test_empty_keeps_and_non_empty_replaces(tmp_path: Path, cached: bool) -> None:
    """Whatever the parent-row cache skips, the rows end as the upserts alone leave them."""
    db = Index(tmp_path, index.ParentRows(limit=4096 if cached else 0))
    db.store("9.1", **IMAGE, StudyID="7", PatientSex="F")
    db.store("9.2", **dict.fromkeys(IMAGE, ""), StudyID="", PatientSex="")
    assert db.rows(STUDY_SQL) == [("ACC1", "Synthetic study", "7")]
    assert db.rows(PATIENT_SQL) == [("DOE^JANE", "19700101", "F")]
    db.store("9.3", AccessionNumber="ACC2", PatientBirthDate="19700102")  # a correction
    assert db.rows(STUDY_SQL) == [("ACC2", "Synthetic study", "7")]
    assert db.rows(PATIENT_SQL) == [("DOE^JANE", "19700102", "F")]


def test_cache_skips_what_empty_values_cannot_change(tmp_path: Path) -> None:
    """The cache holds the rows as stored: an object with empty values after the image needs
    no parent row written, nor does the next image bringing the stored values again."""
    db = Index(tmp_path, index.ParentRows())
    db.store("9.1", **IMAGE)
    assert db.store("9.2", **dict.fromkeys(IMAGE, "")) == ["INSERT instance"]
    assert db.store("9.3", **IMAGE) == ["INSERT instance"]
    assert db.rows(STUDY_SQL) == [("ACC1", "Synthetic study", "")]


def test_cache_does_not_skip_filling_an_empty_column(tmp_path: Path) -> None:
    """A row stored with an empty accession number, then an object bringing one: written."""
    db = Index(tmp_path, index.ParentRows())
    db.store("9.1")
    assert db.store("9.2", AccessionNumber="ACC1") == ["INSERT study", "INSERT instance"]
    assert db.rows(STUDY_SQL) == [("ACC1", "", "")]
    assert db.store("9.3") == ["INSERT instance"]
    assert db.store("9.4", AccessionNumber="ACC2") == ["INSERT study", "INSERT instance"]
    assert db.rows(STUDY_SQL) == [("ACC2", "", "")]
