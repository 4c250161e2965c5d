"""Index attributes are decoded in the data set's Specific Character Set (0008,0005).

Names in Cyrillic, Greek, Hebrew, Chinese, Japanese or Korean must reach the index as the
Unicode text pydicom's own reader gives, or C-FIND name matching fails. The values are encoded
by pydicom (or given as the raw bytes a peer sends), then read by both of ``read_attributes``'s
ways (the raw walk and its pydicom fall-back) and stored end to end.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from twisted.logger import Logger

from tests.storage import helpers
from tests.storage.dicomgen import ROOT, _dataset, _file_meta
from tests.storage.helpers import associate, dataset_bytes, send_store, storage_harness
from tests.storage.test_parts import _module
from tests.storage.test_rawread import TEST_FILES, WANTED, _pydicom_attributes
from tests.storage.test_store import _rows

writer = _module("writer")
rawread = _module("rawread")

STATUS = 0x0900
CHARSET_FILES = TEST_FILES.parent / "charset_files"
#: The index attributes whose text depends on the character set (SH, LO, PN).
TEXT_KEYWORDS = [writer._TAG_KEYWORDS[tag] for tag in sorted(writer._CHARSET_TAGS)]

#: "山田^太郎" in ISO 2022 IR 87 (JIS X 0208 behind escape sequences), as a peer sends it.
YAMADA_JIS = b"\x1b$B\x3b\x33\x45\x44\x1b(B^\x1b$B\x42\x40\x4f\x3a\x1b(B"
#: "宗" is JIS X 0208 0x3D21: its first byte is "=", the PN component delimiter.
SOU_JIS = b"Sou^Taro=\x1b$B\x3d\x21\x1b(B^\x1b$B\x42\x40\x4f\x3a\x1b(B"

#: (id, Specific Character Set, Patient's Name, Study Description): text pydicom encodes, or
#: bytes written as they are.
CASES: list[tuple[str, str | list[str], str | bytes, str]] = [
    ("cyrillic", "ISO_IR 144", "Иванов^Пётр", "Грудная клетка"),
    ("greek", "ISO_IR 126", "Διονυσιος^Παπαδόπουλος", "Θώρακας"),
    ("hebrew", "ISO_IR 138", "שרון^דבורה", "חזה"),
    ("gb18030", "GB18030", "Wang^XiaoDong=王^小东", "胸部 CT"),
    ("gbk", "GBK", "Wang^XiaoDong=王^小东", "胸部 CT"),
    ("ir87-peer", ["", "ISO 2022 IR 87"], YAMADA_JIS, "CT"),
    ("ir87-equals-byte", ["", "ISO 2022 IR 87"], SOU_JIS, "CT"),
    ("ir87", ["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう", "胸部"),
    ("ir149", ["", "ISO 2022 IR 149"], "Hong^Gildong=洪^吉洞=홍^길동", "흉부"),
]
EXPECTED_NAMES = {
    "ir87-peer": "山田^太郎",
    "ir87-equals-byte": "Sou^Taro=宗^太郎",
}


def _write(path: Path, ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> Path:
    """``ds`` as a Part-10 file, its raw elements written as they are.

    A fresh data set, not one read from a file: pydicom re-encodes a read data set's text
    when its Specific Character Set changes, which would replace the bytes under test.
    """
    ds.PixelData = bytes(ds.Rows * ds.Columns * 2)
    ds.file_meta = _file_meta(ds, transfer_syntax)
    implicit = transfer_syntax == ImplicitVRLittleEndian
    little = transfer_syntax != ExplicitVRBigEndian
    ds.save_as(path, enforce_file_format=True, implicit_vr=implicit, little_endian=little)
    return path


def _ct() -> Dataset:
    return _dataset(generate_uid(ROOT), generate_uid(ROOT), generate_uid(ROOT), 1, 4, 4)


def _raw(ds: Dataset, tag: int, vr: str, value: bytes) -> None:
    ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def _encoded(
    path: Path, case: tuple[str, str | list[str], str | bytes, str], transfer_syntax: str
) -> Path:
    """A CT image whose names and description are in ``case``'s character set."""
    _, charset, name, description = case
    ds = _ct()
    ds.SpecificCharacterSet = charset
    for tag in (Tag("PatientName"), Tag("ReferringPhysicianName")):
        if isinstance(name, bytes):
            _raw(ds, tag, "PN", name)
        else:
            ds[tag].value = name
    ds.StudyDescription = description
    return _write(path, ds, transfer_syntax)


def _expected(case: tuple[str, str | list[str], str | bytes, str]) -> tuple[str, str]:
    name_id, _, name, description = case
    return EXPECTED_NAMES.get(name_id, name if isinstance(name, str) else ""), description


def _as_pydicom_reads(path: Path) -> dict[str, str]:
    """The character-set-dependent attributes as pydicom's full reader decodes them."""
    ds = dcmread(path, stop_before_pixels=True)
    return {keyword: writer._text(ds.get(keyword)) for keyword in TEXT_KEYWORDS}


def _text_of(attributes: Any) -> dict[str, str]:
    return {keyword: attributes[keyword] for keyword in TEXT_KEYWORDS}


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
@pytest.mark.parametrize(
    "transfer_syntax",
    [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
     DeflatedExplicitVRLittleEndian],
    ids=["explicit", "implicit", "big-endian", "deflated"],
)  # fmt: skip
def test_decoded_as_pydicom_reads_them(
    tmp_path: Path, case: tuple[str, str | list[str], str | bytes, str], transfer_syntax: str
) -> None:
    """Both ways of reading give the expected Unicode, which is what pydicom reads."""
    path = _encoded(tmp_path / "a.dcm", case, transfer_syntax)
    name, description = _expected(case)
    attributes = writer.read_attributes(path)
    assert (attributes["PatientName"], attributes["StudyDescription"]) == (name, description)
    assert attributes["ReferringPhysicianName"] == name
    assert _text_of(attributes) == _as_pydicom_reads(path)
    assert attributes == _pydicom_attributes(path)
    walked = rawread.read_raw_attributes(path, WANTED) is not None
    assert walked == (transfer_syntax != DeflatedExplicitVRLittleEndian)


def _charset_files() -> list[Path]:
    return sorted(CHARSET_FILES.glob("*.dcm"))


@pytest.mark.parametrize("path", _charset_files(), ids=lambda p: p.name)
def test_pydicoms_charset_files(path: Path) -> None:
    """pydicom's own character set test files (Arabic, Japanese, Korean, Chinese, ...).

    The index keeps a person name as written; pydicom drops empty trailing component groups
    ("Wang^XiaoDong=王^小東=" in chrX1.dcm), an equivalent form (PS3.5 6.2.1.1).
    """
    attributes = writer.read_attributes(path)
    ours = _text_of(attributes)
    for keyword in ("PatientName", "ReferringPhysicianName"):
        ours[keyword] = ours[keyword].rstrip("=")
    assert ours == _as_pydicom_reads(path)
    assert attributes == _pydicom_attributes(path)


def test_common_character_sets_skip_pydicoms_machinery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No value, ISO_IR 100 and ISO_IR 192 stay one ``bytes.decode`` per value."""

    def not_here(charset: bytes) -> None:
        raise AssertionError(f"pydicom's character sets asked for {charset!r}")

    monkeypatch.setattr(writer, "_python_encodings", not_here)
    for n, (charset, name) in enumerate(
        [(None, "Doe^John"), ("ISO_IR 100", "Müller^Zoë"), ("ISO_IR 192", "Müller^Zoë")]
    ):
        ds = _ct()
        if charset is not None:
            ds.SpecificCharacterSet = charset
        ds.PatientName = name
        path = _write(tmp_path / f"{n}.dcm", ds)
        assert writer.read_attributes(path)["PatientName"] == name


def _with_charset(path: Path, charset: bytes, name: bytes) -> Path:
    """A CT image whose Specific Character Set and Patient's Name are these raw bytes."""
    ds = _ct()
    _raw(ds, 0x00080005, "CS", charset)
    _raw(ds, 0x00100010, "PN", name)
    with warnings.catch_warnings():  # pydicom's, about writing it: only reading is tested
        warnings.simplefilter("ignore")
        return _write(path, ds)


def test_unknown_character_set_is_read_as_before_and_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a store failure: Latin-1 as before, and one log line per unknown value."""
    events: list[dict[str, Any]] = []
    monkeypatch.setattr(writer, "log", Logger(observer=events.append))
    writer._python_encodings.cache_clear()
    paths = [_with_charset(tmp_path / f"{n}.dcm", b"ISO_IR 999", b"M\xfcller^Zo\xeb")
             for n in range(2)]  # fmt: skip
    with pytest.warns(UserWarning, match="ISO_IR 999"):  # pydicom's own warning
        for path in paths:
            assert writer.read_attributes(path)["PatientName"] == "Müller^Zoë"
    assert [event["charset"] for event in events] == ["ISO_IR 999"]
    assert events[0]["log_level"].name == "warn"


def test_misspelt_character_set_is_corrected_like_pydicom_does(tmp_path: Path) -> None:
    path = _with_charset(tmp_path / "a.dcm", b"ISO IR 144", "Люк".encode("iso8859_5"))
    with pytest.warns(UserWarning, match="assuming 'ISO_IR 144'"):
        assert writer.read_attributes(path)["PatientName"] == "Люк"


@pytest.mark.parametrize("durability", ["fsync", "relaxed"])
@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_stored_names_are_indexed_as_unicode(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[str, str | list[str], str | bytes, str],
    durability: str,
) -> None:
    """End to end: the index holds the Unicode text (relaxed: the inline store's raw walk)."""
    monkeypatch.setattr(helpers, "DURABILITY_OPTION", f'durability = "{durability}"\n')
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir)
    path = _encoded(tmp_path / "a.dcm", case, ExplicitVRLittleEndian)
    uid = str(dcmread(path).SOPInstanceUID)
    assert send_store(associate(harness), uid, dataset_bytes(path))[0][STATUS] == 0x0000
    name, description = _expected(case)
    assert _rows(server_dir, "SELECT patient_name FROM patient") == [(name,)]
    assert _rows(server_dir, "SELECT study_description, referring_physician_name FROM study") == [
        (description, name)
    ]


def test_store_with_an_unknown_character_set_succeeds(tmp_path: Path) -> None:
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir)
    path = _with_charset(tmp_path / "a.dcm", b"X-UNKNOWN", b"Doe^John")
    with pytest.warns(UserWarning, match="X-UNKNOWN"):  # pydicom's; reading it here too
        uid = str(dcmread(path).SOPInstanceUID)
        assert send_store(associate(harness), uid, dataset_bytes(path))[0][STATUS] == 0x0000
    assert _rows(server_dir, "SELECT patient_name FROM patient") == [("Doe^John",)]
