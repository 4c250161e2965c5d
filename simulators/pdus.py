"""Hand-built DICOM Upper Layer PDUs and their decoders (PS3.8 section 9.3).

Misbehaving peers must be able to say things a correct codec refuses to say
(a protocol version of 0, an item length that lies, a PDU type that does not
exist), so every byte here is laid out with ``struct`` rather than produced by
pynetdicom. The tests check the well-formed ones against ``pynetdicom.pdu`` so
the two independent encoders keep each other honest.

Nothing here imports pacsref: these tools judge our server from the outside.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: PDU types (PS3.8 Table 9-1).
A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
A_ABORT = 0x07

PDU_NAMES = {
    A_ASSOCIATE_RQ: "A-ASSOCIATE-RQ",
    A_ASSOCIATE_AC: "A-ASSOCIATE-AC",
    A_ASSOCIATE_RJ: "A-ASSOCIATE-RJ",
    P_DATA_TF: "P-DATA-TF",
    A_RELEASE_RQ: "A-RELEASE-RQ",
    A_RELEASE_RP: "A-RELEASE-RP",
    A_ABORT: "A-ABORT",
}

#: DICOM Application Context Name (PS3.7 A.2.1).
DICOM_APP_CONTEXT = "1.2.840.10008.3.1.1.1"
#: Verification SOP Class (PS3.4 A.4).
VERIFICATION = "1.2.840.10008.1.1"
#: Implicit VR Little Endian, the default transfer syntax (PS3.5 10.1).
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
#: An Implementation Class UID of our own (a UUID-derived 2.25 UID), so a
#: server log names the simulator rather than some other product.
SIM_IMPL_UID = "2.25.113590496339187546357406633125373830651"
SIM_IMPL_VERSION = "PACSREF_SIM"

#: Presentation context results (PS3.8 Table 9-18).
CONTEXT_RESULTS = {
    0: "acceptance",
    1: "user-rejection",
    2: "no-reason (provider rejection)",
    3: "abstract-syntax-not-supported (provider rejection)",
    4: "transfer-syntaxes-not-supported (provider rejection)",
}

#: A-ASSOCIATE-RJ words (PS3.8 Table 9-21); reasons depend on the source.
REJECT_RESULTS = {1: "rejected-permanent", 2: "rejected-transient"}
REJECT_SOURCES = {
    1: "DICOM UL service-user",
    2: "DICOM UL service-provider (ACSE related function)",
    3: "DICOM UL service-provider (Presentation related function)",
}
REJECT_REASONS = {
    1: {
        1: "no-reason-given",
        2: "application-context-name-not-supported",
        3: "calling-AE-title-not-recognized",
        7: "called-AE-title-not-recognized",
    },
    2: {1: "no-reason-given", 2: "protocol-version-not-supported"},
    3: {0: "reserved", 1: "temporary-congestion", 2: "local-limit-exceeded"},
}

#: A-ABORT words (PS3.8 Table 9-26).
ABORT_SOURCES = {
    0: "DICOM UL service-user (initiated abort)",
    1: "reserved",
    2: "DICOM UL service-provider (initiated abort)",
}
ABORT_REASONS = {
    0: "reason-not-specified",
    1: "unrecognized-PDU",
    2: "unexpected-PDU",
    3: "reserved",
    4: "unrecognized-PDU parameter",
    5: "unexpected-PDU parameter",
    6: "invalid-PDU-parameter value",
}


class PDUDecodeError(ValueError):
    """A reply from the peer does not have the layout PS3.8 9.3 prescribes."""


def _ae(title: str) -> bytes:
    """Encode an AE title as PS3.8 9.3.2 wants: 16 bytes, space padded."""
    raw = title.encode("ascii")
    if len(raw) > 16:
        raise ValueError(f"AE title longer than 16 bytes: {title!r}")
    return raw.ljust(16, b" ")


def _uid(uid: str) -> bytes:
    """Encode a UID for a UL item: ASCII, no padding (PS3.8 Annex F)."""
    return uid.encode("ascii")


def item(item_type: int, value: bytes) -> bytes:
    """Return a UL item: type (1), reserved (1), length (2), value (PS3.8 9.3.2.x)."""
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def pdu(pdu_type: int, payload: bytes) -> bytes:
    """Return a PDU: type (1), reserved (1), length (4), payload (PS3.8 9.3.1)."""
    return struct.pack(">BBI", pdu_type, 0, len(payload)) + payload


def presentation_context_rq(
    context_id: int, abstract: str, transfer_syntaxes: Sequence[str]
) -> bytes:
    """Presentation Context Item for an RQ (PS3.8 9.3.2.2, item type 0x20)."""
    value = struct.pack(">BBBB", context_id, 0, 0, 0) + item(0x30, _uid(abstract))
    for ts in transfer_syntaxes:
        value += item(0x40, _uid(ts))
    return item(0x20, value)


def user_information(max_pdu: int, impl_uid: str, impl_version: str | None, extra: bytes) -> bytes:
    """User Information Item (PS3.8 9.3.2.3, PS3.7 D.3.3.1-2): max length, class UID, name."""
    value = item(0x51, struct.pack(">I", max_pdu)) + item(0x52, _uid(impl_uid))
    if impl_version:
        value += item(0x55, impl_version.encode("ascii"))
    return item(0x50, value + extra)


def associate_rq(
    called: str,
    calling: str,
    contexts: Iterable[tuple[int, str, Sequence[str]]] = ((1, VERIFICATION, (IMPLICIT_VR_LE,)),),
    max_pdu: int = 16384,
    protocol_version: int = 1,
    app_context: str = DICOM_APP_CONTEXT,
    impl_uid: str = SIM_IMPL_UID,
    impl_version: str | None = SIM_IMPL_VERSION,
    extra_user_items: bytes = b"",
) -> bytes:
    """Return a complete A-ASSOCIATE-RQ PDU (PS3.8 9.3.2, Table 9-11).

    ``contexts`` is ``[(context_id, abstract_syntax, [transfer_syntax, ...])]``.
    Every field a conformance check wants to falsify is a parameter.
    """
    header = struct.pack(">HH", protocol_version, 0) + _ae(called) + _ae(calling) + bytes(32)
    body = item(0x10, _uid(app_context))
    for context_id, abstract, syntaxes in contexts:
        body += presentation_context_rq(context_id, abstract, syntaxes)
    body += user_information(max_pdu, impl_uid, impl_version, extra_user_items)
    return pdu(A_ASSOCIATE_RQ, header + body)


def p_data(pdvs: Iterable[tuple[int, int, bytes]]) -> bytes:
    """Return a P-DATA-TF PDU (PS3.8 9.3.5) from ``[(context_id, control_header, data)]``.

    The control header is the raw byte of PS3.8 E.2: bit 0 set = command,
    bit 1 set = last fragment.
    """
    body = b""
    for context_id, control, data in pdvs:
        body += struct.pack(">IBB", len(data) + 2, context_id, control) + data
    return pdu(P_DATA_TF, body)


def release_rq() -> bytes:
    """Return an A-RELEASE-RQ PDU (PS3.8 9.3.6): four reserved bytes."""
    return pdu(A_RELEASE_RQ, bytes(4))


def release_rp() -> bytes:
    """Return an A-RELEASE-RP PDU (PS3.8 9.3.7): four reserved bytes."""
    return pdu(A_RELEASE_RP, bytes(4))


def abort(source: int = 0, reason: int = 0) -> bytes:
    """Return an A-ABORT PDU (PS3.8 9.3.8): reserved (2), source (1), reason (1)."""
    return pdu(A_ABORT, struct.pack(">BBBB", 0, 0, source, reason))


@dataclass(frozen=True)
class ContextResult:
    """One Presentation Context Item of an A-ASSOCIATE-AC (PS3.8 9.3.3.2)."""

    context_id: int
    result: int
    transfer_syntax: str | None

    @property
    def result_words(self) -> str:
        """The PS3.8 Table 9-18 name of the result."""
        return CONTEXT_RESULTS.get(self.result, f"unknown result {self.result}")


@dataclass(frozen=True)
class AssociateAC:
    """The parts of an A-ASSOCIATE-AC the checks look at (PS3.8 9.3.3)."""

    protocol_version: int
    called_ae: str
    calling_ae: str
    app_context: str | None
    contexts: tuple[ContextResult, ...]
    #: The acceptor's Maximum Length Received (PS3.8 D.1); 0 = unlimited, None = absent.
    max_pdu: int | None
    impl_uid: str | None

    def context(self, context_id: int) -> ContextResult | None:
        """The result for ``context_id``, or None if the AC does not mention it."""
        return next((c for c in self.contexts if c.context_id == context_id), None)


@dataclass(frozen=True)
class AssociateRJ:
    """The A-ASSOCIATE-RJ triple (PS3.8 9.3.4, Table 9-21)."""

    result: int
    source: int
    reason: int

    @property
    def triple(self) -> tuple[int, int, int]:
        """``(result, source, reason)`` for comparing with the expected value."""
        return (self.result, self.source, self.reason)

    def __str__(self) -> str:
        """PS3.8 words first, numbers after, so logs need no table at hand."""
        reason = REJECT_REASONS.get(self.source, {}).get(self.reason, "reserved/unknown")
        return (
            f"result {self.result} ({REJECT_RESULTS.get(self.result, 'unknown')}), "
            f"source {self.source} ({REJECT_SOURCES.get(self.source, 'unknown')}), "
            f"reason {self.reason} ({reason})"
        )


@dataclass(frozen=True)
class Abort:
    """The A-ABORT source and reason (PS3.8 9.3.8, Table 9-26)."""

    source: int
    reason: int

    def __str__(self) -> str:
        """PS3.8 words and numbers."""
        return (
            f"A-ABORT source {self.source} ({ABORT_SOURCES.get(self.source, 'unknown')}), "
            f"reason {self.reason} ({ABORT_REASONS.get(self.reason, 'unknown')})"
        )


def iter_items(data: bytes) -> Iterable[tuple[int, bytes]]:
    """Split a run of UL items into ``(type, value)``; raise on a length that overruns."""
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise PDUDecodeError("truncated item header")
        item_type, _, length = struct.unpack_from(">BBH", data, offset)
        end = offset + 4 + length
        if end > len(data):
            raise PDUDecodeError(f"item 0x{item_type:02X} length {length} overruns its parent")
        yield item_type, data[offset + 4 : end]
        offset = end


def _text(value: bytes) -> str:
    """Decode a UID/AE field, dropping the NUL/space padding some peers add."""
    return value.decode("ascii", "replace").strip("\x00 ")


def decode_associate_ac(payload: bytes) -> AssociateAC:
    """Decode the payload (after the 6-byte header) of an A-ASSOCIATE-AC (PS3.8 Table 9-17)."""
    if len(payload) < 68:
        raise PDUDecodeError(f"A-ASSOCIATE-AC payload too short ({len(payload)} bytes)")
    (version,) = struct.unpack_from(">H", payload, 0)
    app_context = None
    contexts: list[ContextResult] = []
    max_pdu = impl_uid = None
    for item_type, value in iter_items(payload[68:]):
        if item_type == 0x10:
            app_context = _text(value)
        elif item_type == 0x21:
            if len(value) < 4:
                raise PDUDecodeError("presentation context item too short")
            syntax = [_text(v) for t, v in iter_items(value[4:]) if t == 0x40]
            contexts.append(ContextResult(value[0], value[2], syntax[0] if syntax else None))
        elif item_type == 0x50:
            for sub_type, sub in iter_items(value):
                if sub_type == 0x51 and len(sub) == 4:
                    (max_pdu,) = struct.unpack(">I", sub)
                elif sub_type == 0x52:
                    impl_uid = _text(sub)
    return AssociateAC(
        protocol_version=version,
        called_ae=_text(payload[4:20]),
        calling_ae=_text(payload[20:36]),
        app_context=app_context,
        contexts=tuple(contexts),
        max_pdu=max_pdu,
        impl_uid=impl_uid,
    )


def decode_associate_rj(payload: bytes) -> AssociateRJ:
    """Decode an A-ASSOCIATE-RJ payload: reserved, result, source, reason (PS3.8 Table 9-21)."""
    if len(payload) != 4:
        raise PDUDecodeError(f"A-ASSOCIATE-RJ payload must be 4 bytes, got {len(payload)}")
    return AssociateRJ(payload[1], payload[2], payload[3])


def decode_abort(payload: bytes) -> Abort:
    """Decode an A-ABORT payload: reserved (2), source, reason (PS3.8 Table 9-26)."""
    if len(payload) != 4:
        raise PDUDecodeError(f"A-ABORT payload must be 4 bytes, got {len(payload)}")
    return Abort(payload[2], payload[3])


def decode_p_data(payload: bytes) -> list[tuple[int, int, bytes]]:
    """Split a P-DATA-TF payload into ``[(context_id, control_header, data)]`` (PS3.8 9.3.5.1)."""
    pdvs = []
    offset = 0
    while offset < len(payload):
        if offset + 6 > len(payload):
            raise PDUDecodeError("truncated PDV item header")
        (length,) = struct.unpack_from(">I", payload, offset)
        if length < 2 or offset + 4 + length > len(payload):
            raise PDUDecodeError(f"PDV item length {length} inconsistent with the PDU")
        pdvs.append(
            (payload[offset + 4], payload[offset + 5], payload[offset + 6 : offset + 4 + length])
        )
        offset += 4 + length
    return pdvs
