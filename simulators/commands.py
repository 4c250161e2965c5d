"""The C-ECHO and C-STORE command sets, built and parsed by hand (PS3.7 9.3, Annex E).

A raw-socket peer that has just misbehaved on the Upper Layer still needs one
DIMSE exchange to prove the association works. Command sets are always
Implicit VR Little Endian (PS3.7 6.3.1), so a tiny fixed encoder is enough and
keeps the raw peer free of any DIMSE library.
"""

from __future__ import annotations

import struct

from simulators.pdus import VERIFICATION

#: Command Field values (PS3.7 Table E.1-1 and 9.3.5).
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
C_STORE_RQ = 0x0001
#: Command Data Set Type "no data set present" (PS3.7 Table E.1-1).
NO_DATA_SET = 0x0101

TAG_GROUP_LENGTH = 0x0000_0000
TAG_AFFECTED_SOP_CLASS = 0x0000_0002
TAG_COMMAND_FIELD = 0x0000_0100
TAG_MESSAGE_ID = 0x0000_0110
TAG_MESSAGE_ID_RESPONDED = 0x0000_0120
TAG_PRIORITY = 0x0000_0700
TAG_DATA_SET_TYPE = 0x0000_0800
TAG_AFFECTED_SOP_INSTANCE = 0x0000_1000
#: Command Data Set Type "a data set follows" (any value but 0x0101).
DATA_SET_PRESENT = 0x0000
TAG_STATUS = 0x0000_0900

#: PDV message control header bits (PS3.8 Annex E.2).
CONTROL_COMMAND = 0x01
CONTROL_LAST = 0x02


def _element(tag: int, value: bytes) -> bytes:
    """One Implicit VR LE element: group, element, 32-bit length, value (PS3.5 7.1.3)."""
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def _ui(uid: str) -> bytes:
    """A UI value padded to even length with NUL (PS3.5 6.2)."""
    raw = uid.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def _us(value: int) -> bytes:
    return struct.pack("<H", value)


def c_echo_rq(message_id: int = 1, sop_class: str = VERIFICATION) -> bytes:
    """Return the encoded C-ECHO-RQ command set (PS3.7 Table 9.3-12).

    CommandGroupLength counts every byte after its own element, as PS3.7 E.1
    requires; getting it wrong is a classic interoperability bug. ``sop_class``
    is the Affected SOP Class UID: Verification, unless a check echoes on a
    private SOP class (a server routes C-ECHO by presentation context, so a
    private class reaches a private add-in).
    """
    body = (
        _element(TAG_AFFECTED_SOP_CLASS, _ui(sop_class))
        + _element(TAG_COMMAND_FIELD, _us(C_ECHO_RQ))
        + _element(TAG_MESSAGE_ID, _us(message_id))
        + _element(TAG_DATA_SET_TYPE, _us(NO_DATA_SET))
    )
    return _element(TAG_GROUP_LENGTH, struct.pack("<I", len(body))) + body


def c_store_rq(sop_class: str, sop_instance: str, message_id: int = 1) -> bytes:
    """Return a C-STORE-RQ command set (PS3.7 Table 9.3-1) announcing a data set.

    The UIDs are written as given, whatever their length or characters: a misbehaving peer
    must be able to send a SOP Instance UID a conformant encoder would refuse.
    """
    body = (
        _element(TAG_AFFECTED_SOP_CLASS, _ui(sop_class))
        + _element(TAG_COMMAND_FIELD, _us(C_STORE_RQ))
        + _element(TAG_MESSAGE_ID, _us(message_id))
        + _element(TAG_PRIORITY, _us(0))
        + _element(TAG_DATA_SET_TYPE, _us(DATA_SET_PRESENT))
        + _element(TAG_AFFECTED_SOP_INSTANCE, _ui(sop_instance))
    )
    return _element(TAG_GROUP_LENGTH, struct.pack("<I", len(body))) + body


def decode_command(data: bytes) -> dict[int, bytes]:
    """Parse an Implicit VR LE command set into ``{tag: raw value}``.

    Raises ValueError on an element whose length overruns the data, so a
    garbled response is reported as such rather than as a wrong status.
    """
    elements: dict[int, bytes] = {}
    offset = 0
    while offset < len(data):
        if offset + 8 > len(data):
            raise ValueError("truncated command element header")
        group, elem, length = struct.unpack_from("<HHI", data, offset)
        end = offset + 8 + length
        if end > len(data):
            raise ValueError(f"element ({group:04X},{elem:04X}) overruns the command set")
        elements[(group << 16) | elem] = data[offset + 8 : end]
        offset = end
    return elements


def echo_response_status(data: bytes, message_id: int | None = None) -> int:
    """Return the Status of a C-ECHO-RSP command set (PS3.7 Table 9.3-13).

    Raises ValueError if ``data`` is not a C-ECHO-RSP, or answers a different
    message ID than ``message_id`` (when given).
    """
    elements = decode_command(data)
    field = elements.get(TAG_COMMAND_FIELD)
    if field is None or struct.unpack("<H", field)[0] != C_ECHO_RSP:
        raise ValueError(f"not a C-ECHO-RSP (command field {field!r})")
    if message_id is not None:
        responded = elements.get(TAG_MESSAGE_ID_RESPONDED)
        if responded is None or struct.unpack("<H", responded)[0] != message_id:
            raise ValueError(f"response to another message ID ({responded!r})")
    status = elements.get(TAG_STATUS)
    if status is None or len(status) != 2:
        raise ValueError("C-ECHO-RSP without a Status element")
    value: int = struct.unpack("<H", status)[0]
    return value
