"""Read the index attributes of a Part-10 file by walking its first elements directly.

Why not pydicom: ``dcmread`` with ``specific_tags`` still builds a file-meta data set, a
``FileDataset`` and a raw element per top-level tag, which cost about 0.25 ms per object
(0.5 ms with the reactor thread competing for the GIL) - the largest single cost of storing a
small object. Every index attribute sits in groups 0008-0020, ahead of anything large, and is
plain text, so a walk over the first few kilobytes that only looks at tags and lengths does the
same job in a few microseconds.

The walk covers what a C-STORE can carry uncompressed at the top level: explicit VR little
endian (every compressed transfer syntax too: their encapsulated pixel data comes after the
attributes we stop at), implicit VR little endian and explicit VR big endian, with sequences
and items of defined or undefined length skipped. Anything else - deflate, a file meta this
does not recognise, an element that runs past the end of the file, a nesting deeper than real
data sets go - returns None, and the caller falls back to pydicom, which either reads it or
raises the error that the SCP reports. Tests check that both readers agree on pydicom's own
test files.

Two guards keep a walk that went wrong from being trusted, since its lengths then come from
whatever bytes it landed on. An implicit VR transfer syntax whose data set is encoded explicit
VR (a known writer bug) is read explicit, as pydicom does after looking at the first element:
walked implicit, VR and length would make one bogus 32-bit length, which in a large object
lands inside the pixel data, so the walk would end early without the UIDs. And an index
attribute longer than any legal value (:data:`_MAX_VALUE`) means the walk is lost: pydicom
decides. The reverse mismatch, explicit syntax with implicit data, needs no guard: its first
element's length bytes are no VR, and the walk defers. The check costs one look at the first
element of an implicit VR data set, nothing for the others: the common path is as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from struct import Struct

__all__ = ["read_raw_attributes"]

_DEFLATED = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.1.99.1"})
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"

#: VRs whose explicit encoding has 2 reserved bytes and a 32-bit length (PS3.5 7.1.2).
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
#: Every VR of PS3.5 6.2: two capital letters that are none of these are not a VR.
_VRS = _LONG_VRS | frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"PN"}
    | {b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
)
#: Longest value an index attribute may have. They are all short text VRs (UI DA TM SH LO PN
#: CS IS: at most 64 characters a value, a few values), and explicit VR gives those a 16-bit
#: length, so no legal value is longer in any encoding; real ones are under 1 KiB. Longer
#: means the walk is reading garbage as a length, and must not trust it.
_MAX_VALUE = 0xFFFF
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_MAX_DEPTH = 16
#: First read; enough for the attributes of nearly every object. Grown when not.
_CHUNK = 16 * 1024
#: Never read more than this looking for the attributes (a pathological file goes to pydicom).
_LIMIT = 4 * 1024 * 1024

_LE_TAG = Struct("<HH")
_BE_TAG = Struct(">HH")
_LE_U16 = Struct("<H")
_BE_U16 = Struct(">H")
_LE_U32 = Struct("<L")
_BE_U32 = Struct(">L")


class _NeedMore(Exception):
    """The walk ran past the bytes read so far."""


class _Unreadable(Exception):
    """Not something this walk handles; use pydicom."""


class _Walker:
    """One encoding's element walk over a buffer (explicit/implicit VR, byte order)."""

    def __init__(self, buffer: bytes, explicit: bool, little: bool) -> None:
        self.buffer = buffer
        self.explicit = explicit
        self.tag = _LE_TAG if little else _BE_TAG
        self.u16 = _LE_U16 if little else _BE_U16
        self.u32 = _LE_U32 if little else _BE_U32

    def header(self, offset: int) -> tuple[int, bytes, int, int]:
        """(tag, VR or b"", value length, value offset) of the element at ``offset``."""
        buffer = self.buffer
        if offset + 8 > len(buffer):
            raise _NeedMore
        group, element = self.tag.unpack_from(buffer, offset)
        tag = group << 16 | element
        if group == 0xFFFE:  # item and delimiters: tag + 32-bit length in every encoding
            return tag, b"", self.u32.unpack_from(buffer, offset + 4)[0], offset + 8
        if not self.explicit:
            return tag, b"", self.u32.unpack_from(buffer, offset + 4)[0], offset + 8
        vr = buffer[offset + 4 : offset + 6]
        if vr in _LONG_VRS:
            if offset + 12 > len(buffer):
                raise _NeedMore
            return tag, vr, self.u32.unpack_from(buffer, offset + 8)[0], offset + 12
        if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
            raise _Unreadable(f"not a VR: {vr!r}")
        return tag, vr, self.u16.unpack_from(buffer, offset + 6)[0], offset + 8

    def skip_undefined(self, offset: int, depth: int) -> int:
        """Offset after an undefined-length value starting at ``offset`` (items or elements)."""
        if depth > _MAX_DEPTH:
            raise _Unreadable("nesting too deep")
        while True:
            tag, vr, length, start = self.header(offset)
            if tag in (_SEQUENCE_END, _ITEM_END):
                return start
            if length == _UNDEFINED:
                if tag != _ITEM and vr not in (b"SQ", b"UN", b""):
                    raise _Unreadable("undefined length on a VR that cannot have one")
                offset = self.skip_undefined(start, depth + 1)
            else:
                offset = start + length
            if offset > len(self.buffer):
                raise _NeedMore


def _file_meta(buffer: bytes) -> tuple[str, int]:
    """(transfer syntax UID, data set offset) from a Part-10 header."""
    if len(buffer) < 132 or buffer[128:132] != b"DICM":
        raise _Unreadable("no DICM prefix")
    walker = _Walker(buffer, explicit=True, little=True)
    offset = 132
    transfer_syntax = ""
    while True:
        if offset + 8 > len(buffer):
            raise _NeedMore
        if _LE_U16.unpack_from(buffer, offset)[0] != 0x0002:
            return transfer_syntax, offset  # the data set may be implicit VR: look no further
        tag, _vr, length, start = walker.header(offset)
        if length == _UNDEFINED:
            raise _Unreadable("undefined length in the file meta")
        end = start + length
        if end > len(buffer):
            raise _NeedMore
        if tag == 0x00020010:
            transfer_syntax = buffer[start:end].decode("ascii", "replace").strip("\0 ")
        offset = end


def _explicit_after_all(buffer: bytes, offset: int) -> bool:
    """Whether the implicit VR data set at ``offset`` is in fact encoded explicit VR.

    pydicom's test (``filereader._is_implicit_vr``) is whether the first element's bytes 4-6
    are two capital letters, and the index must see what pydicom sees. Here they must also be
    a VR, and a long VR's 2 reserved bytes zero: an implicit length whose low bytes are letters
    (at least 16705 bytes, rare for a first element) fits no explicit reading then, and is read
    as the transfer syntax says, rightly, where pydicom would find nothing. The rest of the
    explicit reading is checked by the walk (:data:`_MAX_VALUE`, lengths within the file).
    """
    if offset + 8 > len(buffer):
        return False  # the walk asks for more, or (the file ends) stops
    vr = buffer[offset + 4 : offset + 6]
    return vr in _VRS and (vr not in _LONG_VRS or buffer[offset + 6 : offset + 8] == b"\0\0")


def _walk(
    buffer: bytes,
    offset: int,
    transfer_syntax: str,
    wanted: Mapping[int, str],
    last: int,
    at_end: bool,
) -> dict[int, bytes]:
    explicit = transfer_syntax != _IMPLICIT_LE or _explicit_after_all(buffer, offset)
    walker = _Walker(buffer, explicit=explicit, little=transfer_syntax != _EXPLICIT_BE)
    found: dict[int, bytes] = {}
    end_of_data = len(buffer)
    while offset < end_of_data:
        tag, _vr, length, start = walker.header(offset)
        if tag > last:
            break
        if length == _UNDEFINED:
            if tag in wanted:
                raise _Unreadable(f"index attribute {tag:08X} has undefined length")
            offset = walker.skip_undefined(start, 1)
            continue
        end = start + length
        if tag in wanted:
            if length > _MAX_VALUE:  # checked first: never read megabytes for a bogus length
                raise _Unreadable(f"index attribute {tag:08X} of {length} bytes")
            if end > end_of_data:
                raise _NeedMore
            found[tag] = buffer[start:end]
        elif end > end_of_data:
            raise _NeedMore
        offset = end
    else:
        if not at_end:
            raise _NeedMore  # the buffer ended before an element past ``last``
    return found


def read_raw_attributes(
    path: Path,
    wanted: Mapping[int, str],
    head: Callable[[int], bytes] | None = None,
    start: tuple[str, int] | None = None,
) -> tuple[dict[int, bytes], str] | None:
    """The raw values of the ``wanted`` top-level tags and the transfer syntax, or None.

    None means "ask pydicom" (see the module docstring); a missing tag is simply absent
    from the result.

    Args:
        path: the Part-10 file.
        wanted: the tags to find.
        head: returns the file's first ``n`` bytes, when the caller has the file open
            already (the storage add-in's held spool file); else ``path`` is opened here.
        start: (transfer syntax UID, data set offset), when the caller knows them (the spool
            file the DIMSE layer wrote for the request); else they are read from the file
            meta.
    """
    if head is not None:
        return _read(head, wanted, start)
    with open(path, "rb") as handle:

        def read_head(size: int) -> bytes:
            handle.seek(0)
            return handle.read(size)

        return _read(read_head, wanted, start)


def _read(
    head: Callable[[int], bytes], wanted: Mapping[int, str], start: tuple[str, int] | None
) -> tuple[dict[int, bytes], str] | None:
    last = max(wanted)
    size = _CHUNK
    while True:
        buffer = head(size)
        at_end = len(buffer) < size
        try:
            transfer_syntax, offset = _file_meta(buffer) if start is None else start
            if transfer_syntax in _DEFLATED or not transfer_syntax:
                return None
            found = _walk(buffer, offset, transfer_syntax, wanted, last, at_end)
            return found, transfer_syntax
        except _NeedMore:
            if at_end or size >= _LIMIT:
                return None  # truncated or huge: pydicom decides
            size *= 4
        except (_Unreadable, UnicodeError, IndexError):
            return None
