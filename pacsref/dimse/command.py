"""Fast codec for DIMSE command sets (PS3.7 section 6.3.1, 9.3, 10.3 and Annex E).

A command set is a list of group 0000 elements that is *always* encoded in
Implicit VR Little Endian (PS3.7 6.3.1), whatever transfer syntax the
presentation context negotiated for the data set. Because the group and its
VRs are fixed by PS3.7 Annex E, a command set can be decoded with a table and
``struct`` instead of a general data set parser: every C-ECHO, every C-STORE
and every C-FIND response goes through this code, so it avoids pydicom and
per-byte Python loops (one loop iteration per *element*, typically 5-9).

Values are plain Python objects keyed by the tag as an ``int`` (the group is
0000, so the tag int equals the element number):

* US / UL -> ``int``
* UI / AE / LO (and other strings) -> ``str`` without trailing NUL/space
  padding (AE and LO also lose leading spaces, which PS3.5 6.2 declares
  insignificant for them)
* AT -> ``list[int]`` of tags
* group 0000 elements not in Annex E (including the retired ones) -> the raw
  value ``bytes``, so they survive a decode/encode round trip untouched.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import cast

__all__ = [
    "ACTION_TYPE_ID",
    "AFFECTED_SOP_CLASS_UID",
    "AFFECTED_SOP_INSTANCE_UID",
    "ATTRIBUTE_IDENTIFIER_LIST",
    "COMMAND_DATA_SET_TYPE",
    "COMMAND_FIELD",
    "COMMAND_GROUP_LENGTH",
    "DATASET_ABSENT",
    "DATASET_PRESENT",
    "ERROR_COMMENT",
    "ERROR_ID",
    "EVENT_TYPE_ID",
    "KEYWORDS",
    "MESSAGE_ID",
    "MESSAGE_ID_BEING_RESPONDED_TO",
    "MOVE_DESTINATION",
    "MOVE_ORIGINATOR_AE_TITLE",
    "MOVE_ORIGINATOR_MESSAGE_ID",
    "NUMBER_OF_COMPLETED_SUBOPERATIONS",
    "NUMBER_OF_FAILED_SUBOPERATIONS",
    "NUMBER_OF_REMAINING_SUBOPERATIONS",
    "NUMBER_OF_WARNING_SUBOPERATIONS",
    "OFFENDING_ELEMENT",
    "PRIORITY",
    "REQUESTED_SOP_CLASS_UID",
    "REQUESTED_SOP_INSTANCE_UID",
    "STATUS",
    "TAGS",
    "VRS",
    "CommandSetError",
    "decode_command",
    "encode_command",
    "format_tag",
]

# Command elements of PS3.7 Annex E (Table E.1-1), by tag.
COMMAND_GROUP_LENGTH = 0x0000
AFFECTED_SOP_CLASS_UID = 0x0002
REQUESTED_SOP_CLASS_UID = 0x0003
COMMAND_FIELD = 0x0100
MESSAGE_ID = 0x0110
MESSAGE_ID_BEING_RESPONDED_TO = 0x0120
MOVE_DESTINATION = 0x0600
PRIORITY = 0x0700
COMMAND_DATA_SET_TYPE = 0x0800
STATUS = 0x0900
OFFENDING_ELEMENT = 0x0901
ERROR_COMMENT = 0x0902
ERROR_ID = 0x0903
AFFECTED_SOP_INSTANCE_UID = 0x1000
REQUESTED_SOP_INSTANCE_UID = 0x1001
EVENT_TYPE_ID = 0x1002
ATTRIBUTE_IDENTIFIER_LIST = 0x1005
ACTION_TYPE_ID = 0x1008
NUMBER_OF_REMAINING_SUBOPERATIONS = 0x1020
NUMBER_OF_COMPLETED_SUBOPERATIONS = 0x1021
NUMBER_OF_FAILED_SUBOPERATIONS = 0x1022
NUMBER_OF_WARNING_SUBOPERATIONS = 0x1023
MOVE_ORIGINATOR_AE_TITLE = 0x1030
MOVE_ORIGINATOR_MESSAGE_ID = 0x1031

#: Command Data Set Type value meaning "no data set follows" (PS3.7 E.1-1).
DATASET_ABSENT = 0x0101
#: The value we write when a data set follows. Any value other than 0x0101
#: means "present"; 0x0001 is what DCMTK and pynetdicom send.
DATASET_PRESENT = 0x0001

#: tag -> (keyword, VR) for every non-retired element of PS3.7 Table E.1-1.
_ELEMENTS: dict[int, tuple[str, str]] = {
    COMMAND_GROUP_LENGTH: ("CommandGroupLength", "UL"),
    AFFECTED_SOP_CLASS_UID: ("AffectedSOPClassUID", "UI"),
    REQUESTED_SOP_CLASS_UID: ("RequestedSOPClassUID", "UI"),
    COMMAND_FIELD: ("CommandField", "US"),
    MESSAGE_ID: ("MessageID", "US"),
    MESSAGE_ID_BEING_RESPONDED_TO: ("MessageIDBeingRespondedTo", "US"),
    MOVE_DESTINATION: ("MoveDestination", "AE"),
    PRIORITY: ("Priority", "US"),
    COMMAND_DATA_SET_TYPE: ("CommandDataSetType", "US"),
    STATUS: ("Status", "US"),
    OFFENDING_ELEMENT: ("OffendingElement", "AT"),
    ERROR_COMMENT: ("ErrorComment", "LO"),
    ERROR_ID: ("ErrorID", "US"),
    AFFECTED_SOP_INSTANCE_UID: ("AffectedSOPInstanceUID", "UI"),
    REQUESTED_SOP_INSTANCE_UID: ("RequestedSOPInstanceUID", "UI"),
    EVENT_TYPE_ID: ("EventTypeID", "US"),
    ATTRIBUTE_IDENTIFIER_LIST: ("AttributeIdentifierList", "AT"),
    ACTION_TYPE_ID: ("ActionTypeID", "US"),
    NUMBER_OF_REMAINING_SUBOPERATIONS: ("NumberOfRemainingSuboperations", "US"),
    NUMBER_OF_COMPLETED_SUBOPERATIONS: ("NumberOfCompletedSuboperations", "US"),
    NUMBER_OF_FAILED_SUBOPERATIONS: ("NumberOfFailedSuboperations", "US"),
    NUMBER_OF_WARNING_SUBOPERATIONS: ("NumberOfWarningSuboperations", "US"),
    MOVE_ORIGINATOR_AE_TITLE: ("MoveOriginatorApplicationEntityTitle", "AE"),
    MOVE_ORIGINATOR_MESSAGE_ID: ("MoveOriginatorMessageID", "US"),
}

#: tag -> keyword (e.g. 0x0110 -> "MessageID"), for logs and error comments.
KEYWORDS: dict[int, str] = {tag: kw for tag, (kw, _) in _ELEMENTS.items()}
#: keyword -> tag, so callers may name fields the way pydicom does.
TAGS: dict[str, int] = {kw: tag for tag, kw in KEYWORDS.items()}
#: tag -> VR.
VRS: dict[int, str] = {tag: vr for tag, (_, vr) in _ELEMENTS.items()}

# Value kinds, small ints so the decode loop compares cheaply.
_US, _UL, _UI, _AE, _LO, _AT = range(6)
_KIND_OF_VR = {"US": _US, "UL": _UL, "UI": _UI, "AE": _AE, "LO": _LO, "AT": _AT}
_KIND: dict[int, int] = {tag: _KIND_OF_VR[vr] for tag, vr in VRS.items()}
#: Maximum value lengths (PS3.5 Table 6.2-1) checked when encoding.
_MAX_CHARS = {_UI: 64, _AE: 16, _LO: 64}
#: An LO value holds neither a backslash (the delimiter of multiple values) nor control
#: characters (PS3.5 Table 6.2-1): each becomes a space, as in the text they came from.
_LO_SPACES = str.maketrans(dict.fromkeys([*range(0x20), 0x5C, 0x7F], " "))
#: The length field of an element of undefined length (PS3.5 7.1.1).
_UNDEFINED_LENGTH = 0xFFFFFFFF

_HEADER = struct.Struct("<HHI")
_ELEM_US = struct.Struct("<HHIH")
_US_VALUE = struct.Struct("<H")
_UL_VALUE = struct.Struct("<I")
_BYTES_TYPES = (bytes, bytearray, memoryview)
_AT_VALUE = struct.Struct("<HH")
#: Pre-built header of (0000,0000) UL with length 4; the value follows.
_GROUP_LENGTH_HEADER = _HEADER.pack(0, 0, 4)


class CommandSetError(ValueError):
    """A command set could not be decoded or encoded; ``detail`` says why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def format_tag(tag: int) -> str:
    """Render a tag int as ``(gggg,eeee)`` for messages."""
    return f"({tag >> 16 & 0xFFFF:04X},{tag & 0xFFFF:04X})"


def decode_command(data: bytes | bytearray | memoryview) -> dict[int, object]:
    """Decode an Implicit VR Little Endian command set (PS3.7 6.3.1, Annex E).

    Raises :class:`CommandSetError` for anything that is not a well-formed
    group 0000 element list: truncated headers or values, undefined lengths,
    elements of another group, duplicates, or a length that does not fit the
    VR of a known command element (a US must be 2 bytes, a UL 4, an AT a
    multiple of 4). The Command Group Length value is kept but not checked
    against the actual length: a wrong one harms nothing, and DCMTK does not
    check it either.
    """
    if type(data) is not bytes:
        data = bytes(data)
    end = len(data)
    offset = 0
    result: dict[int, object] = {}
    unpack_header = _HEADER.unpack_from
    kinds = _KIND
    while offset < end:
        if end - offset < 8:
            raise CommandSetError(
                f"command set truncated: {end - offset} bytes left at offset {offset}, "
                "an element header needs 8"
            )
        group, elem, length = unpack_header(data, offset)
        if group != 0:
            raise CommandSetError(
                f"element ({group:04X},{elem:04X}) at offset {offset} is not in group 0000 "
                "(a command set holds only command elements, PS3.7 6.3.1)"
            )
        start = offset + 8
        offset = start + length
        if offset > end:
            if length == _UNDEFINED_LENGTH:
                raise CommandSetError(
                    f"command element (0000,{elem:04X}) has undefined length (0xFFFFFFFF), "
                    "not allowed in a command set (PS3.7 6.3.1)"
                )
            raise CommandSetError(
                f"command element (0000,{elem:04X}) has length {length} "
                f"but only {end - start} bytes remain (truncated element)"
            )
        if elem in result:
            raise CommandSetError(f"command element (0000,{elem:04X}) occurs twice")
        kind = kinds.get(elem)
        if kind is None:
            result[elem] = data[start:offset]
        elif kind == _US:
            if length != 2:
                raise CommandSetError(
                    f"command element (0000,{elem:04X}) has length {length}, expected 2 for US"
                )
            result[elem] = data[start] | data[start + 1] << 8
        elif kind == _UI:
            try:
                result[elem] = data[start:offset].decode("ascii").rstrip("\x00 ")
            except UnicodeDecodeError:
                raise CommandSetError(
                    f"command element (0000,{elem:04X}) UI value is not ASCII"
                ) from None
        elif kind in (_AE, _LO):
            # Default character repertoire; latin-1 maps every byte, so a
            # peer's odd ErrorComment never makes its response undecodable.
            result[elem] = data[start:offset].decode("latin-1").strip("\x00 ")
        elif kind == _UL:
            if length != 4:
                raise CommandSetError(
                    f"command element (0000,{elem:04X}) has length {length}, expected 4 for UL"
                )
            result[elem] = int.from_bytes(data[start:offset], "little")
        else:  # AT
            if length % 4:
                raise CommandSetError(
                    f"command element (0000,{elem:04X}) has length {length}, "
                    "expected a multiple of 4 for AT"
                )
            result[elem] = [
                group << 16 | element
                for group, element in _AT_VALUE.iter_unpack(data[start:offset])
            ]
    return result


def _encode_text(elem: int, kind: int, value: str) -> bytes:
    if kind == _LO:
        # Error comments are often built from exception texts: never fail on them, and never
        # let a path's backslash or a line break make the peer read several values.
        raw = value.translate(_LO_SPACES).encode("ascii", "replace")
    else:
        try:
            raw = value.encode("ascii")
        except UnicodeEncodeError:
            raise CommandSetError(
                f"command element (0000,{elem:04X}) value {value!r} is not ASCII"
            ) from None
    if len(raw) > _MAX_CHARS[kind]:
        raise CommandSetError(
            f"command element (0000,{elem:04X}) value {value!r} is longer than "
            f"{_MAX_CHARS[kind]} characters"
        )
    if len(raw) & 1:
        # PS3.5 6.2: UI is padded with NUL, the other string VRs with space.
        raw += b"\x00" if kind == _UI else b" "
    return raw


def _encode_at(elem: int, value: object) -> bytes:
    tags = cast("Iterable[int]", [value] if isinstance(value, int) else value)
    try:
        return b"".join(_AT_VALUE.pack(tag >> 16, tag & 0xFFFF) for tag in tags)
    except (TypeError, struct.error) as exc:
        raise CommandSetError(
            f"command element (0000,{elem:04X}) value {value!r} is not a tag or list of tags"
        ) from exc


def _encode_value(elem: int, kind: int | None, value: object) -> bytes:
    """Encode one value (the general, checking path of :func:`encode_command`)."""
    if not 0 <= elem <= 0xFFFF:
        raise CommandSetError(
            f"element {format_tag(elem)} is not in group 0000 "
            "(a command set holds only command elements, PS3.7 6.3.1)"
        )
    if isinstance(value, _BYTES_TYPES):
        raw = bytes(value)
        return raw + b"\x00" if len(raw) & 1 else raw
    if kind is None:
        raise CommandSetError(
            f"command element (0000,{elem:04X}) is not in PS3.7 Annex E; give its value as bytes"
        )
    if kind in (_US, _UL):
        packer = _US_VALUE if kind == _US else _UL_VALUE
        try:
            return packer.pack(value)
        except struct.error as exc:
            raise CommandSetError(
                f"command element (0000,{elem:04X}) value {value!r} does not fit {VRS[elem]}"
            ) from exc
    if kind == _AT:
        return _encode_at(elem, value)
    if isinstance(value, str):
        return _encode_text(elem, kind, value)
    raise CommandSetError(
        f"command element (0000,{elem:04X}) value {value!r} is not a str for {VRS[elem]}"
    )


def encode_command(fields: Mapping[int, object]) -> bytes:
    """Encode command fields as Implicit VR Little Endian with a group length.

    Elements are written in ascending tag order (PS3.5 7.1) with even value
    lengths, and (0000,0000) CommandGroupLength is computed and prepended
    (any value given for it is ignored). Fields whose value is ``None`` are
    left out, which lets callers build optional elements conditionally.
    ``bytes`` values are written verbatim (NUL padded to even length), which
    is how unknown or retired group 0000 elements round-trip.
    """
    parts: list[bytes] = []
    kinds = _KIND
    pack_us = _ELEM_US.pack
    for elem in sorted(fields):
        value = fields[elem]
        if value is None or elem == COMMAND_GROUP_LENGTH:
            continue
        kind = kinds.get(elem)
        # Fast paths for the common cases: a US int and a str UID.
        if kind == _US and type(value) is int and 0 <= value <= 0xFFFF:
            parts.append(pack_us(0, elem, 2, value))
            continue
        if kind == _UI and type(value) is str and value.isascii() and len(value) <= 64:
            raw = value.encode("ascii")
            if len(raw) & 1:
                raw += b"\x00"
        else:
            raw = _encode_value(elem, kind, value)
        parts.append(_HEADER.pack(0, elem, len(raw)))
        parts.append(raw)
    body = b"".join(parts)
    return _GROUP_LENGTH_HEADER + len(body).to_bytes(4, "little") + body
