"""The file half of a store: read the index attributes, then make the spool file the stored file.

Nothing here loads pixel data: pydicom reads the spool file with ``stop_before_pixels`` and only
the tags the index needs, so a 600 MB multi-frame object costs a few kilobytes of memory. The
spool file is already a Part-10 file (the DIMSE layer wrote its header first), so keeping it is
``fsync(file)``, ``rename`` into place and ``fsync(directory)`` - the rename is atomic, so a crash
leaves either no stored file or a whole one, never a partial one.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.charset import convert_encodings, decode_bytes, default_encoding, python_encoding
from pydicom.tag import Tag
from pydicom.valuerep import TEXT_VR_DELIMS
from twisted.logger import Logger

from pacsref.dimse.writeback import start_writeback

from .rawread import read_raw_attributes

__all__ = [
    "INDEX_TAGS",
    "HeldSpool",
    "IndexAttributes",
    "PlacedNotDurableError",
    "durable_link",
    "durable_rename",
    "prepare_buckets",
    "read_attributes",
    "read_raw_index_attributes",
    "simulated_full_disk",
]

log = Logger(namespace="pacsref.addin.storage")

#: Keyword -> column, for every attribute the index keeps (PS3.4 C.6.1.1 keys and more).
INDEX_KEYWORDS = (
    "PatientID",
    "IssuerOfPatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "StudyDescription",
    "ReferringPhysicianName",
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "SOPInstanceUID",
    "SOPClassUID",
    "InstanceNumber",
)
INDEX_TAGS = [Tag(keyword) for keyword in INDEX_KEYWORDS] + [Tag(0x0008, 0x0005)]


@dataclass(frozen=True, slots=True)
class IndexAttributes:
    """What the index stores about one object, all as text ("" when absent).

    ``values`` maps each of :data:`INDEX_KEYWORDS` to its value as text: person names in
    their DICOM form, numbers as written (IS), multiple values joined by a backslash.
    """

    values: dict[str, str]
    transfer_syntax: str

    def __getitem__(self, keyword: str) -> str:
        return self.values[keyword]


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(_text(v) for v in value)  # type: ignore[union-attr]
    return str(value).strip()


#: Tag -> keyword for the index attributes (all of them are text VRs: UI DA TM SH LO PN CS IS).
_TAG_KEYWORDS = {int(Tag(keyword)): keyword for keyword in INDEX_KEYWORDS}
_CHARSET_TAG = 0x00080005
#: What :func:`read_raw_attributes` looks for: the index attributes and the character set.
_RAW_WANTED = {**_TAG_KEYWORDS, _CHARSET_TAG: "SpecificCharacterSet"}
#: The index attributes whose VR (SH, LO, PN) may hold more than the default repertoire; the
#: others (UI, DA, TM, CS, IS) are ASCII whatever the Specific Character Set says.
_CHARSET_TAGS = frozenset(
    int(Tag(keyword))
    for keyword in (
        "PatientID",
        "IssuerOfPatientID",
        "PatientName",
        "AccessionNumber",
        "StudyID",
        "StudyDescription",
        "ReferringPhysicianName",
        "SeriesDescription",
    )
)
#: Specific Character Set values (raw, padding stripped) that one Python codec decodes whole:
#: nearly every object, so they skip pydicom's character set machinery. No value or the
#: default repertoire is read as Latin-1, as pydicom does, which also keeps the accented
#: names of devices that send ISO_IR 100 text without saying so.
_SINGLE_CODEC = {
    b"": "latin-1",
    b"ISO_IR 6": "latin-1",
    b"ISO_IR 100": "latin-1",
    b"ISO_IR 192": "utf-8",
}


def _fallback_codec(charset: bytes) -> str:
    """The codec for a Specific Character Set pydicom does not know: UTF-8 or Latin-1.

    Unknown must not fail the store: Latin-1 decodes any bytes, so the value is still indexed,
    readable where it is ASCII (ISO 2022 escapes stay visible rather than failing).
    """
    return "utf-8" if b"ISO_IR 192" in charset else "latin-1"


def _known_term(term: str) -> bool:
    """Whether pydicom can decode the Specific Character Set defined term ``term``.

    Beyond its table of defined terms pydicom corrects common misspellings ("ISO IR 144")
    and accepts Python codec names, warning about both; any other term it decodes as the
    default repertoire, warning too, and we log what that means for the index (see
    :func:`_python_encodings`). A term with a NUL in it (garbage, not a misspelling) makes
    ``codecs.lookup`` raise ValueError, not LookupError: unknown too, never a failed store.
    """
    if term in python_encoding:
        return True
    try:
        return convert_encodings(term)[0] != default_encoding
    except (LookupError, ValueError):  # LookupError: pydicom's reading_validation_mode RAISE
        return False


@functools.lru_cache(maxsize=64)
def _python_encodings(charset: bytes) -> tuple[str, ...] | None:
    """pydicom's codecs for the raw Specific Character Set ``charset``; None if unknown.

    Cached: a server sees a handful of distinct values, and the conversion, its warnings and
    our log line about an unknown value then happen once per value, not once per object.
    """
    terms = [term.strip(" \0") for term in charset.decode("ascii", "replace").split("\\")]
    if all(_known_term(term) for term in terms):
        try:
            return tuple(convert_encodings(terms))
        except (LookupError, ValueError):  # as in _known_term
            pass
    log.warn(
        "Specific Character Set {charset!r} is not one pydicom knows: its objects' names and"
        " descriptions are indexed as {codec}, possibly garbled, and C-FIND on them may miss",
        charset=charset.decode("ascii", "replace"),
        codec=_fallback_codec(charset),
    )
    return None


def _decode_text(value: bytes, encodings: tuple[str, ...]) -> str:
    """``value`` (SH, LO or PN) in the character sets ``encodings``, as pydicom reads it.

    A PN is decoded whole, like pydicom's reader does, not component by component (as
    ``PersonName(bytes)`` does): a JIS X 0208 character may contain the byte of "=", so
    splitting the bytes first would break it. Escape sequences switch sets (ISO 2022); a
    value that fails to decode is kept as Latin-1 text rather than failing the store.
    """
    try:
        return decode_bytes(value, encodings, TEXT_VR_DELIMS)
    except (LookupError, UnicodeError, ValueError):  # pydicom's reading_validation_mode: RAISE
        return value.decode("latin-1")


def _decode_values(found: Mapping[int, bytes]) -> dict[str, str]:
    """The index attributes' text from their raw values, in the data set's character set.

    The common character sets take one ``bytes.decode`` per value; the others go through
    pydicom's machinery for the SH, LO and PN values only.
    """
    charset = found.get(_CHARSET_TAG, b"").strip(b"\0 ")
    codec = _SINGLE_CODEC.get(charset)
    encodings = None
    if codec is None:
        encodings = _python_encodings(charset)
        if encodings is None:
            codec = _fallback_codec(charset)
    if encodings is None:
        return {
            keyword: found[tag].decode(codec, "replace").strip("\0 ") if tag in found else ""
            for tag, keyword in _TAG_KEYWORDS.items()
        }
    return {
        keyword: (
            _decode_text(found[tag], encodings)
            if tag in _CHARSET_TAGS
            else found[tag].decode("latin-1")
        ).strip("\0 ")
        if tag in found
        else ""
        for tag, keyword in _TAG_KEYWORDS.items()
    }


def read_raw_index_attributes(
    path: Path, held: HeldSpool | None = None, start: tuple[str, int] | None = None
) -> IndexAttributes | None:
    """The index attributes by :mod:`.rawread`'s walk alone; None when it needs pydicom.

    Quick and bounded (the first kilobytes of the file), so the inline store may call it on
    the reactor thread; :func:`read_attributes` adds pydicom's way for the rest. ``held``:
    the file is open already, read it through that; ``start``: (transfer syntax, data set
    offset), known for a spool file (see :func:`.rawread.read_raw_attributes`).
    """
    raw = read_raw_attributes(path, _RAW_WANTED, held.head if held else None, start)
    if raw is None:
        return None
    found, transfer_syntax = raw
    return IndexAttributes(_decode_values(found), transfer_syntax)


def read_attributes(
    path: Path, held: HeldSpool | None = None, start: tuple[str, int] | None = None
) -> IndexAttributes:
    """The index attributes of the Part-10 file at ``path``, never reading its pixel data.

    The elements are taken raw and decoded here: first by :mod:`.rawread`'s walk over the
    first kilobytes, else (deflate, anything unusual) by pydicom with ``get_item``. pydicom's
    value conversion and validation cost more than the rest of a small store, and every
    index attribute is plain text.

    ``held`` and ``start`` as for :func:`read_raw_index_attributes`.

    Raises:
        Exception: whatever pydicom raises for a data set it cannot parse; the caller
            answers 0xC000 (Error: cannot understand).
    """
    attributes = read_raw_index_attributes(path, held, start)
    if attributes is not None:
        return attributes
    dataset = dcmread(path, stop_before_pixels=True, specific_tags=INDEX_TAGS)
    found: dict[int, bytes] = {}
    converted: dict[str, str] = {}
    for tag in _RAW_WANTED:
        value = getattr(dataset.get_item(tag), "value", None)
        if value is None:
            continue
        if isinstance(value, bytes):
            found[tag] = value
        elif tag == _CHARSET_TAG:  # pydicom converts it while reading, to decode the rest
            found[tag] = _text(value).encode("ascii", "replace")
        else:
            converted[_TAG_KEYWORDS[tag]] = _text(value)
    values = {**_decode_values(found), **converted}
    transfer_syntax = str(dataset.file_meta.get("TransferSyntaxUID", ""))
    return IndexAttributes(values, transfer_syntax)


#: Below this size a data set is a few pages that ``fdatasync`` sends in one request anyway;
#: starting their write early would only add a system call (measured: bench/README.md,
#: "Seventh round").
WRITE_BEHIND_MIN_BYTES = 64 * 1024


class HeldSpool:
    """The spool file, held open from the start of its store to its ``fdatasync``.

    With one association the client waits for each response, so the durable store's
    ``fdatasync`` is on every object's critical path. Opening the file first and, for a data
    set of more than a few pages, starting the device's write of its pages at once lets that
    write run while the attributes are read, checked and the file's place found, leaving
    ``fdatasync`` to wait only for the rest. Starting a write can wait for a free request
    slot of the device, so it is made where the store's flushes are: on the store's thread,
    or on the reactor's only for an inline durable store (``inline.py``), whose wait the
    slow-store check bounds. The start is a hint, its error ignored; ``fdatasync`` reports
    what matters.
    """

    def __init__(self, path: Path, durable: bool) -> None:
        self.durable = durable
        self._fd = os.open(path, os.O_RDONLY)
        try:
            self.size = os.fstat(self._fd).st_size
        except OSError:
            os.close(self._fd)
            raise
        if durable and self.size >= WRITE_BEHIND_MIN_BYTES:
            start_writeback(self._fd)

    def head(self, size: int) -> bytes:
        """The file's first ``size`` bytes (fewer if it is shorter): one ``pread``."""
        return os.pread(self._fd, size, 0)

    def make_durable(self) -> None:
        """Flush the data, and the metadata needed to read it back, to stable storage.

        ``fdatasync`` is enough: it also flushes the size (POSIX: metadata needed to
        retrieve the data) and skips timestamps; the directory entry is made durable
        separately by fsyncing the directory after the rename. Nothing without ``durable``.
        """
        if self.durable:
            os.fdatasync(self._fd)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> HeldSpool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_parents(final: Path, data_root: Path, durable: bool) -> None:
    """Create the hashed directories above ``final``; fsync each new entry's parent."""
    created = []
    directory = final.parent
    while directory != data_root and not directory.is_dir():
        created.append(directory)
        directory = directory.parent
    for new in reversed(created):
        try:
            new.mkdir()
        except FileExistsError:
            continue  # another association made it first
        if durable:
            _fsync_dir(new.parent)


def prepare_buckets(data_root: Path, buckets: tuple[str, ...], durable: bool) -> None:
    """Create every bucket directory once, at start, so that no store has to (see uids)."""
    data_root.mkdir(parents=True, exist_ok=True)
    missing = [name for name in buckets if not (data_root / name).is_dir()]
    for name in missing:
        (data_root / name).mkdir(exist_ok=True)
    if missing and durable:
        _fsync_dir(data_root)


def durable_rename(spool: Path, final: Path, data_root: Path, durable: bool) -> None:
    """Move the (already fsynced, when durable) spool file to ``final`` atomically.

    With ``durable`` the directory holding ``final`` is fsynced after the rename, so the
    new name survives a power loss; the file's content was fsynced before (see
    :meth:`HeldSpool.make_durable`) because a rename does not order data writes on every
    file system.
    """
    try:
        os.replace(spool, final)
    except FileNotFoundError:
        # Its bucket is gone (removed by hand since the start made them all): make it and
        # try once more. A spool file that vanished fails again, as it should. Renaming
        # first spares every store a look at a directory that is there.
        _make_parents(final, data_root, durable)
        os.replace(spool, final)
    if durable:
        try:
            _fsync_dir(final.parent)
        except OSError as exc:
            raise PlacedNotDurableError(exc.errno, exc.strerror, str(final.parent)) from exc


def durable_link(source: Path, link: Path, durable: bool) -> None:
    """Give ``source`` the second name ``link``; with ``durable``, fsync ``link``'s directory.

    An overwrite names the stored file a second time before the new one is renamed over it
    (``StorageAddin._keep_previous``). Once that rename is durable, the second name is the
    previous version's only one until the commit: it must not be lost to a power failure in
    between, or the version acknowledged earlier is gone while the new one is not stored yet.
    A failed fsync takes the name away again (best effort) and raises.
    """
    os.link(source, link)
    if not durable:
        return
    try:
        _fsync_dir(link.parent)
    except OSError:
        with contextlib.suppress(OSError):
            link.unlink()
        raise


class PlacedNotDurableError(OSError):
    """The file was renamed into place, but its directory's fsync failed.

    Unlike a failed rename, this one leaves the file where it was meant to go, so the
    caller, which answers the store with a failure, has to take it out again.
    """


def simulated_full_disk() -> OSError:
    """The error a full disk gives (the ``simulate_full_disk`` option raises it)."""
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + " (simulated: simulate_full_disk)")
