"""Does a stored Part-10 file hold a whole data set? (``pacsref server check --repair``)

A repair indexes a file from its own content, and reading the index attributes looks at the
first kilobytes only: a file cut short by a failing disk or a copy that stopped half-way
would be vouched for as stored. So before a file is indexed its elements are walked to the
end, their lengths against the file's size, without reading any value: a 600 MB multi-frame
object costs a few hundred small reads. Deflated data sets (PS3.5 A.5) cannot be walked
without inflating them; their compressed stream is inflated to its end instead, in chunks,
the output dropped.

What this does not catch: a value overwritten in place with other bytes of the same length.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from struct import Struct
from typing import BinaryIO

from .rawread import (
    _DEFLATED,
    _EXPLICIT_BE,
    _IMPLICIT_LE,
    _ITEM,
    _ITEM_END,
    _LONG_VRS,
    _SEQUENCE_END,
    _UNDEFINED,
)

__all__ = ["data_set_problem"]

#: Deeper nesting than real data sets have is taken for garbage, not walked for ever.
_MAX_DEPTH = 64
_WINDOW = 64 * 1024
_INFLATE_CHUNK = 1024 * 1024


class _Incomplete(Exception):
    """The file is not a whole data set; the message says where and why."""


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


class _Reader:
    """Element headers of one encoding, read through a small window of the file."""

    def __init__(self, handle: BinaryIO, size: int, explicit: bool, little: bool) -> None:
        self.handle = handle
        self.size = size
        self.explicit = explicit
        order = "<" if little else ">"
        self.tag = Struct(order + "HH")
        self.u16 = Struct(order + "H")
        self.u32 = Struct(order + "L")
        self._window = b""
        self._window_at = 0

    def bytes_at(self, offset: int, count: int) -> bytes:
        if offset + count > self.size:
            raise _Incomplete(
                f"the file ends at byte {self.size}, inside the element header at offset {offset}"
            )
        start = offset - self._window_at
        if start < 0 or start + count > len(self._window):
            self.handle.seek(offset)
            self._window = self.handle.read(max(_WINDOW, count))
            self._window_at = offset
            start = 0
        return self._window[start : start + count]

    def header(self, offset: int) -> tuple[int, bytes, int, int]:
        """(tag, VR or b"", value length, value offset) of the element at ``offset``."""
        head = self.bytes_at(offset, 8)
        group, element = self.tag.unpack_from(head)
        tag = group << 16 | element
        if group == 0xFFFE or not self.explicit:
            return tag, b"", self.u32.unpack_from(head, 4)[0], offset + 8
        vr = head[4:6]
        if vr in _LONG_VRS:
            (length,) = self.u32.unpack(self.bytes_at(offset + 8, 4))
            return tag, vr, length, offset + 12
        if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
            raise _Incomplete(f"no element at offset {offset}: {vr!r} is not a VR")
        return tag, vr, self.u16.unpack_from(head, 6)[0], offset + 8

    def _implicit(self) -> _Reader:
        return _Reader(self.handle, self.size, explicit=False, little=True)

    def walk(self, offset: int, depth: int, delimited: bool) -> int:
        """Offset after the elements from ``offset``: to the end of the file at the top
        level, else to the delimiter that ends the undefined-length value being walked."""
        if depth > _MAX_DEPTH:
            raise _Incomplete(f"sequences nested deeper than {_MAX_DEPTH} at offset {offset}")
        while offset < self.size or delimited:
            tag, vr, length, start = self.header(offset)
            if tag in (_SEQUENCE_END, _ITEM_END):
                if not delimited:
                    raise _Incomplete(f"a stray delimiter {_tag_text(tag)} at offset {offset}")
                return start
            if length == _UNDEFINED:
                if tag != _ITEM and vr not in (b"SQ", b"UN", b"OB", b"OW", b""):
                    raise _Incomplete(
                        f"element {_tag_text(tag)} at offset {offset} has an undefined length, "
                        f"which its VR {vr.decode('ascii', 'replace')} cannot have"
                    )
                # UN of undefined length holds implicit VR little endian (PS3.5 6.2.2).
                inner = self._implicit() if vr == b"UN" else self
                offset = inner.walk(start, depth + 1, delimited=True)
                continue
            end = start + length
            if end > self.size:
                raise _Incomplete(
                    f"element {_tag_text(tag)} at offset {offset} declares {length} bytes, "
                    f"but the file ends {self.size - start} bytes after its header"
                )
            offset = end
        return offset


def _file_meta(reader: _Reader) -> tuple[str, int]:
    """(transfer syntax UID, data set offset) of a Part-10 file."""
    if reader.size < 132 or reader.bytes_at(128, 4) != b"DICM":
        raise _Incomplete("no DICM prefix after the 128-byte preamble: not a Part-10 file")
    offset = 132
    transfer_syntax = ""
    while offset < reader.size:
        if reader.u16.unpack(reader.bytes_at(offset, 2))[0] != 0x0002:
            break
        tag, _vr, length, start = reader.header(offset)
        if length == _UNDEFINED or start + length > reader.size:
            raise _Incomplete(f"file meta element {_tag_text(tag)} at offset {offset} is cut")
        if tag == 0x00020010:
            value = reader.bytes_at(start, length)
            transfer_syntax = value.decode("ascii", "replace").strip("\0 ")
        offset = start + length
    if not transfer_syntax:
        raise _Incomplete("the file meta names no transfer syntax (0002,0010)")
    return transfer_syntax, offset


def _inflate_to_end(handle: BinaryIO, offset: int) -> None:
    """Inflate the deflated data set from ``offset`` to its end, or say it is cut."""
    handle.seek(offset)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        while not inflater.eof:
            chunk = handle.read(_INFLATE_CHUNK)
            if not chunk:
                raise _Incomplete("the deflated data set ends before its compressed stream")
            inflater.decompress(chunk, _INFLATE_CHUNK)
            while inflater.unconsumed_tail and not inflater.eof:
                inflater.decompress(inflater.unconsumed_tail, _INFLATE_CHUNK)
    except zlib.error as exc:
        raise _Incomplete(f"the deflated data set does not inflate: {exc}") from None


def data_set_problem(path: Path) -> str | None:
    """Why the Part-10 file at ``path`` does not hold one whole data set, or None.

    Raises:
        OSError: the file cannot be opened or read.
    """
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        meta = _Reader(handle, size, explicit=True, little=True)
        try:
            transfer_syntax, offset = _file_meta(meta)
            if transfer_syntax in _DEFLATED:
                _inflate_to_end(handle, offset)
                return None
        except _Incomplete as exc:
            return str(exc)
        explicit = transfer_syntax != _IMPLICIT_LE
        little = transfer_syntax != _EXPLICIT_BE
        try:
            _Reader(handle, size, explicit, little).walk(offset, 0, delimited=False)
        except _Incomplete as exc:
            # Some writers encode the data set with the other VR explicitness than the file
            # meta says; pydicom reads those by looking, and so does this.
            try:
                _Reader(handle, size, not explicit, little).walk(offset, 0, delimited=False)
            except _Incomplete:
                return str(exc)
    return None
