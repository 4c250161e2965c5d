"""Encoding and decoding of the seven PDU bodies (PS3.8 9.3, PS3.7 Annex D).

Hand-written rather than wrapped around ``pynetdicom.pdu``: the decoder has to
name the exact PDU, item and field that is wrong, must not raise anything but
:class:`~pacsref.ul.errors.MalformedPDU`, and sits on the P-DATA hot path.
The test-suite cross-checks every PDU type against pynetdicom's independent
encoder and decoder, so the two implementations keep each other honest.

Bodies exclude the 6-byte PDU header (see :mod:`pacsref.ul.framing`).
"""

from __future__ import annotations

from collections.abc import Iterator
from struct import Struct

from pacsref.ul.constants import (
    DICOM_APPLICATION_CONTEXT,
    AbortReason,
    AbortSource,
    ContextResult,
    PDUType,
    RejectResult,
    RejectSource,
)
from pacsref.ul.errors import MalformedPDU
from pacsref.ul.events import (
    Abort,
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    DataTransfer,
    PresentationContextProposal,
    PresentationContextResult,
    PresentationDataValue,
    RoleSelection,
    UserIdentity,
    UserInformation,
)
from pacsref.ul.framing import frame

_U16 = Struct(">H")
_U32 = Struct(">L")
_ITEM = Struct(">BxH")
_PDV = Struct(">LBB")
_FIXED = Struct(">H2x16s16s32x")
#: Bytes 11-74 of an A-ASSOCIATE-RQ/AC (offsets in the body, after the 6-byte header): the
#: called and calling AE titles and 32 reserved bytes, which the AC echoes (Table 9-17).
_ECHOED_FIELDS = slice(4, _FIXED.size)
_FOUR = Struct(">xBBB")

# Item types (PS3.8 9.3.2.x, PS3.7 D.3.3.x)
_APPLICATION_CONTEXT = 0x10
_CONTEXT_RQ = 0x20
_CONTEXT_AC = 0x21
_ABSTRACT_SYNTAX = 0x30
_TRANSFER_SYNTAX = 0x40
_USER_INFORMATION = 0x50
_MAX_LENGTH = 0x51
_IMPLEMENTATION_UID = 0x52
_ASYNC_OPERATIONS = 0x53
_ROLE_SELECTION = 0x54
_IMPLEMENTATION_VERSION = 0x55
_USER_IDENTITY = 0x58
_USER_IDENTITY_RESPONSE = 0x59

#: User information sub-items that occur at most once (PS3.7 D.3.3.1-D.3.3.3, D.3.3.7;
#: PS3.8 D.1): a second one would silently replace the first (a peer's maximum length of
#: 131072 turned into 7, say), so it makes the PDU malformed instead.
_SINGLE_SUB_ITEMS = {
    _MAX_LENGTH: "maximum length",
    _IMPLEMENTATION_UID: "implementation class UID",
    _ASYNC_OPERATIONS: "asynchronous operations window",
    _IMPLEMENTATION_VERSION: "implementation version name",
    _USER_IDENTITY: "user identity",
    _USER_IDENTITY_RESPONSE: "user identity server response",
}


# -- decoding ---------------------------------------------------------------------------


def _items(body: bytes, start: int, where: str) -> Iterator[tuple[int, bytes]]:
    """Walk the (type, reserved, 2-byte length) items of a variable field."""
    offset = start
    end = len(body)
    while offset < end:
        if end - offset < 4:
            raise MalformedPDU(f"{where}: truncated item header at offset {offset}")
        item_type, length = _ITEM.unpack_from(body, offset)
        offset += 4
        if offset + length > end:
            raise MalformedPDU(
                f"{where}: item 0x{item_type:02X} declares length {length} but only "
                f"{end - offset} bytes remain"
            )
        yield item_type, body[offset : offset + length]
        offset += length


def _text(value: bytes, where: str) -> str:
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedPDU(f"{where} is not ASCII: {value[:64]!r}") from None
    return text.rstrip("\0 ").lstrip()


def _uid(value: bytes, where: str) -> str:
    text = _text(value, where)
    if not text or len(text) > 64 or text.strip("0123456789."):
        raise MalformedPDU(f"{where} {text[:70]!r} is not a UID")
    return text


def _proposed_name(value: bytes) -> str:
    """An abstract syntax, transfer syntax, role selection SOP class or application context
    name as a requestor proposed it, whatever its bytes: never an error.

    A name that is not a UID (a letter, a space inside, more than 64 characters, even
    non-ASCII bytes, kept as ``\\x..`` escapes) is still a well-formed item: it names
    something we do not support. Negotiation then refuses that one presentation context
    (result 3 or 4, PS3.8 9.3.3.2) or rejects an unknown application context (1, 1, 2),
    as DCMTK and pynetdicom do, instead of aborting the whole association as a malformed
    PDU over one bad entry among a modality's twenty proposals.
    """
    return value.decode("ascii", "backslashreplace").rstrip("\0 ").lstrip()


def _ae(value: bytes, where: str) -> str:
    text = _text(value, where).strip(" ")
    if "\\" in text or any(c < " " or c > "~" for c in text):
        raise MalformedPDU(f"{where} {text!r} contains characters not allowed in an AE title")
    return text


def _user_information(value: bytes, pdu: str) -> UserInformation:
    where = f"{pdu} user information"
    max_length: int | None = None
    implementation_uid = ""
    version = ""
    async_ops: tuple[int, int] | None = None
    roles: list[RoleSelection] = []
    others: list[tuple[int, bytes]] = []
    identity: UserIdentity | None = None
    identity_response: bytes | None = None
    seen: set[int] = set()
    for sub_type, sub in _items(value, 0, where):
        if sub_type in _SINGLE_SUB_ITEMS:
            if sub_type in seen:
                raise MalformedPDU(
                    f"{where}: more than one {_SINGLE_SUB_ITEMS[sub_type]} sub-item "
                    f"(0x{sub_type:02X}); PS3.7 Annex D allows one"
                )
            seen.add(sub_type)
        if sub_type == _MAX_LENGTH:
            if len(sub) != 4:
                raise MalformedPDU(f"{where}: maximum length sub-item has length {len(sub)}, not 4")
            (max_length,) = _U32.unpack(sub)
        elif sub_type == _IMPLEMENTATION_UID:
            implementation_uid = _uid(sub, f"{where}: implementation class UID")
        elif sub_type == _IMPLEMENTATION_VERSION:
            version = _text(sub, f"{where}: implementation version name")
            if len(version) > 16:
                raise MalformedPDU(f"{where}: implementation version name longer than 16 bytes")
        elif sub_type == _ASYNC_OPERATIONS:
            if len(sub) != 4:
                raise MalformedPDU(f"{where}: asynchronous operations window length {len(sub)}")
            async_ops = (_U16.unpack_from(sub)[0], _U16.unpack_from(sub, 2)[0])
        elif sub_type == _ROLE_SELECTION:
            roles.append(_role_selection(sub, where))
        elif sub_type == _USER_IDENTITY and pdu == "A-ASSOCIATE-RQ":
            identity = _user_identity(sub, where)
        elif sub_type == _USER_IDENTITY_RESPONSE and pdu == "A-ASSOCIATE-AC":
            identity_response = _user_identity_response(sub, where)
        else:
            others.append((sub_type, sub))
    if max_length is None:
        raise MalformedPDU(f"{where}: the mandatory maximum length sub-item (0x51) is missing")
    if not implementation_uid:
        raise MalformedPDU(
            f"{where}: the mandatory implementation class UID sub-item (0x52) is missing"
        )
    return UserInformation(
        max_pdu_length=max_length,
        implementation_class_uid=implementation_uid,
        implementation_version_name=version,
        async_operations=async_ops,
        role_selections=tuple(roles),
        other_items=tuple(others),
        user_identity=identity,
        user_identity_response=identity_response,
    )


def _user_identity(sub: bytes, where: str) -> UserIdentity:
    """PS3.7 Table D.3-14: type, positive-response-requested, then two length-prefixed fields."""
    item = f"{where}: user identity sub-item (0x58)"
    if len(sub) < 6:
        raise MalformedPDU(f"{item} has {len(sub)} bytes, fewer than its 6 fixed ones")
    identity_type, positive = sub[0], sub[1]
    (primary_length,) = _U16.unpack_from(sub, 2)
    secondary_at = 4 + primary_length
    if secondary_at + 2 > len(sub):
        raise MalformedPDU(
            f"{item}: primary field length {primary_length} runs past the sub-item's "
            f"{len(sub)} bytes"
        )
    (secondary_length,) = _U16.unpack_from(sub, secondary_at)
    if secondary_at + 2 + secondary_length != len(sub):
        raise MalformedPDU(
            f"{item}: primary field length {primary_length} and secondary field length "
            f"{secondary_length} do not add up to the sub-item's {len(sub)} bytes"
        )
    return UserIdentity(
        identity_type=identity_type,
        primary_field=sub[4:secondary_at],
        secondary_field=sub[secondary_at + 2 :],
        positive_response_requested=positive == 1,
    )


def _user_identity_response(sub: bytes, where: str) -> bytes:
    """PS3.7 Table D.3-15: one length-prefixed Server-response."""
    if len(sub) < 2:
        raise MalformedPDU(f"{where}: user identity server response sub-item (0x59) too short")
    (length,) = _U16.unpack_from(sub)
    if 2 + length != len(sub):
        raise MalformedPDU(
            f"{where}: user identity server response length {length} does not match the "
            f"sub-item's {len(sub)} bytes"
        )
    return sub[2:]


def _role_selection(sub: bytes, where: str) -> RoleSelection:
    if len(sub) < 4:
        raise MalformedPDU(f"{where}: SCP/SCU role selection sub-item too short")
    (uid_length,) = _U16.unpack_from(sub)
    if len(sub) != uid_length + 4:
        raise MalformedPDU(f"{where}: SCP/SCU role selection UID length {uid_length} inconsistent")
    uid = _proposed_name(sub[2 : 2 + uid_length])
    return RoleSelection(uid, scu_role=sub[2 + uid_length] == 1, scp_role=sub[3 + uid_length] == 1)


def _fixed_part(body: bytes, pdu: str) -> tuple[int, str, str]:
    if len(body) < _FIXED.size:
        raise MalformedPDU(f"{pdu}: {len(body)} bytes is shorter than the 68-byte fixed part")
    version, called, calling = _FIXED.unpack_from(body)
    return version, _ae(called, f"{pdu} called AE title"), _ae(calling, f"{pdu} calling AE title")


def _proposal(value: bytes) -> PresentationContextProposal:
    where = "A-ASSOCIATE-RQ presentation context"
    if len(value) < 4:
        raise MalformedPDU(f"{where}: item shorter than 4 bytes")
    context_id = value[0]
    if context_id % 2 == 0:
        raise MalformedPDU(f"{where}: ID {context_id} is not odd (PS3.8 9.3.2.2)")
    abstract: str | None = None
    syntaxes: list[str] = []
    for sub_type, sub in _items(value, 4, f"{where} {context_id}"):
        if sub_type == _ABSTRACT_SYNTAX:
            if abstract is not None:
                raise MalformedPDU(f"{where} {context_id}: more than one abstract syntax")
            abstract = _proposed_name(sub)
        elif sub_type == _TRANSFER_SYNTAX:
            syntaxes.append(_proposed_name(sub))
    if abstract is None or not syntaxes:
        raise MalformedPDU(f"{where} {context_id}: needs one abstract and 1+ transfer syntaxes")
    return PresentationContextProposal(context_id, abstract, tuple(syntaxes))


def _result(value: bytes) -> PresentationContextResult:
    where = "A-ASSOCIATE-AC presentation context"
    if len(value) < 4:
        raise MalformedPDU(f"{where}: item shorter than 4 bytes")
    context_id, result = value[0], value[2]
    try:
        result_code = ContextResult(result)
    except ValueError:
        raise MalformedPDU(f"{where} {context_id}: result {result} is not 0-4") from None
    syntax = ""
    for sub_type, sub in _items(value, 4, f"{where} {context_id}"):
        if sub_type == _TRANSFER_SYNTAX and result_code is ContextResult.ACCEPTANCE:
            syntax = _uid(sub, f"{where} {context_id} transfer syntax")
    if result_code is ContextResult.ACCEPTANCE and not syntax:
        raise MalformedPDU(f"{where} {context_id}: accepted without a transfer syntax")
    try:
        return PresentationContextResult(context_id, result_code, syntax)
    except ValueError as exc:
        raise MalformedPDU(f"{where}: {exc}") from None


def _association_items(
    body: bytes, pdu: str, context_type: int
) -> tuple[str, list[bytes], UserInformation]:
    application_context: str | None = None
    contexts: list[bytes] = []
    user_info: UserInformation | None = None
    for item_type, value in _items(body, _FIXED.size, pdu):
        if item_type == _APPLICATION_CONTEXT:
            if application_context is not None:
                raise MalformedPDU(
                    f"{pdu}: more than one application context item (0x10); PS3.8 Table 9-11 "
                    "allows one"
                )
            # A requestor's odd name is answered by negotiation's reject (1, 1, 2); the
            # acceptor's answer must be the DICOM one we proposed, so it is checked here.
            application_context = (
                _proposed_name(value)
                if context_type == _CONTEXT_RQ
                else _uid(value, f"{pdu} application context name")
            )
        elif item_type == context_type:
            contexts.append(value)
        elif item_type == _USER_INFORMATION:
            if user_info is not None:
                raise MalformedPDU(
                    f"{pdu}: more than one user information item (0x50); PS3.8 Table 9-11 "
                    "allows one"
                )
            user_info = _user_information(value, pdu)
        # PS3.8 9.3.1: items of unrecognised types are ignored.
    if application_context is None:
        raise MalformedPDU(f"{pdu}: the application context item (0x10) is missing")
    if user_info is None:
        raise MalformedPDU(f"{pdu}: the user information item (0x50) is missing")
    return application_context, contexts, user_info


def decode_associate_rq(body: bytes) -> AssociateRequest:
    """Decode an A-ASSOCIATE-RQ body (PS3.8 Table 9-11)."""
    pdu = "A-ASSOCIATE-RQ"
    version, called, calling = _fixed_part(body, pdu)
    app, raw_contexts, user_info = _association_items(body, pdu, _CONTEXT_RQ)
    if not raw_contexts:
        raise MalformedPDU(f"{pdu}: no presentation context item (0x20)")
    return AssociateRequest(
        called_ae_title=called,
        calling_ae_title=calling,
        presentation_contexts=tuple(_proposal(v) for v in raw_contexts),
        user_information=user_info,
        application_context=app,
        protocol_version=version,
        fixed_fields=bytes(body[_ECHOED_FIELDS]),
    )


def decode_associate_ac(body: bytes) -> AssociateAccept:
    """Decode an A-ASSOCIATE-AC body (PS3.8 Table 9-17)."""
    pdu = "A-ASSOCIATE-AC"
    version, called, calling = _fixed_part(body, pdu)
    app, raw_contexts, user_info = _association_items(body, pdu, _CONTEXT_AC)
    return AssociateAccept(
        called_ae_title=called,
        calling_ae_title=calling,
        presentation_contexts=tuple(_result(v) for v in raw_contexts),
        user_information=user_info,
        application_context=app,
        protocol_version=version,
    )


def decode_associate_rj(body: bytes) -> AssociateReject:
    """Decode an A-ASSOCIATE-RJ body (PS3.8 Table 9-21)."""
    result, source, reason = _FOUR.unpack(body)
    try:
        return AssociateReject(RejectResult(result), RejectSource(source), reason)
    except ValueError as exc:
        raise MalformedPDU(f"A-ASSOCIATE-RJ ({result}, {source}, {reason}): {exc}") from None


def decode_abort(body: bytes) -> Abort:
    """Decode an A-ABORT body (PS3.8 Table 9-26); unknown codes are kept lenient."""
    _, source, reason = _FOUR.unpack(body)
    try:
        src = AbortSource(source)
    except ValueError:
        src = AbortSource.RESERVED
    try:
        why = AbortReason(reason)
    except ValueError:
        why = AbortReason.NOT_SPECIFIED
    return Abort(source=src, reason=why)


def decode_p_data(body: bytes | memoryview) -> DataTransfer:
    """Split a P-DATA-TF body into its PDV items (PS3.8 Table 9-22, Annex E).

    Each PDV's data is a ``memoryview`` of ``body``, not a copy: a data set
    fragment goes from the received bytes straight to its spool file.

    An empty fragment (item length 2: the context ID and the control header) is legal, as
    PS3.8 9.3.5.1 asks only for those two bytes, and is decoded like any other, except an
    empty data set fragment, not the last, that follows a data set fragment, not the last, on
    the same presentation context: it is left out. It carries nothing, and after its
    predecessor it can break no rule that its predecessor did not (the message assembler and
    the upper layer's context check find the same errors, and write the same bytes, without
    it); while a 1 MiB P-DATA-TF of them would otherwise be 174,762 objects at once. Empty
    command fragments all stay: each counts towards the assembler's limit on fragments.
    """
    values: list[PresentationDataValue] = []
    offset = 0
    end = len(body)
    view = memoryview(body)
    # the context ID of the last PDV kept if that is a data set fragment but not the last
    # (else -1): an empty one of the same kind and context after it is left out (see above)
    skippable = -1
    while offset < end:
        if end - offset < 6:
            raise MalformedPDU(f"P-DATA-TF: truncated PDV item header at offset {offset}")
        length, context_id, control = _PDV.unpack_from(body, offset)
        if length < 2 or offset + 4 + length > end:
            raise MalformedPDU(
                f"P-DATA-TF: PDV item length {length} at offset {offset} does not fit the PDU"
            )
        if context_id % 2 == 0:
            raise MalformedPDU(f"P-DATA-TF: PDV presentation context ID {context_id} is not odd")
        if length == 2 and context_id == skippable and not control & 3:
            offset += 6
            continue
        data = view[offset + 6 : offset + 4 + length]  # no copy: see PresentationDataValue
        values.append(PresentationDataValue(context_id, bool(control & 1), bool(control & 2), data))
        skippable = -1 if control & 3 else context_id
        offset += 4 + length
    if not values:
        raise MalformedPDU("P-DATA-TF: contains no PDV item (PS3.8 9.3.5 requires one or more)")
    return DataTransfer(tuple(values))


# -- encoding ---------------------------------------------------------------------------


def _item(item_type: int, value: bytes) -> bytes:
    return _ITEM.pack(item_type, len(value)) + value


def _ae_field(title: str) -> bytes:
    return title.encode("ascii").ljust(16, b" ")


def _encode_user_information(info: UserInformation) -> bytes:
    parts = [
        _item(_MAX_LENGTH, _U32.pack(info.max_pdu_length)),
        _item(_IMPLEMENTATION_UID, info.implementation_class_uid.encode("ascii")),
    ]
    if info.async_operations is not None:
        invoked, performed = info.async_operations
        parts.append(_item(_ASYNC_OPERATIONS, _U16.pack(invoked) + _U16.pack(performed)))
    for role in info.role_selections:
        uid = role.sop_class_uid.encode("ascii")
        parts.append(
            _item(
                _ROLE_SELECTION, _U16.pack(len(uid)) + uid + bytes([role.scu_role, role.scp_role])
            )
        )
    if info.implementation_version_name:
        parts.append(
            _item(_IMPLEMENTATION_VERSION, info.implementation_version_name.encode("ascii"))
        )
    identity = info.user_identity
    if identity is not None:
        parts.append(
            _item(
                _USER_IDENTITY,
                bytes([identity.identity_type, identity.positive_response_requested])
                + _U16.pack(len(identity.primary_field))
                + identity.primary_field
                + _U16.pack(len(identity.secondary_field))
                + identity.secondary_field,
            )
        )
    if info.user_identity_response is not None:
        response = info.user_identity_response
        parts.append(_item(_USER_IDENTITY_RESPONSE, _U16.pack(len(response)) + response))
    parts.extend(_item(t, v) for t, v in info.other_items)
    return _item(_USER_INFORMATION, b"".join(parts))


def _fixed(version: int, called: str, calling: str) -> bytes:
    return _FIXED.pack(version, _ae_field(called), _ae_field(calling))


def encode_associate_rq(rq: AssociateRequest) -> bytes:
    """Encode a complete A-ASSOCIATE-RQ PDU, header included."""
    contexts = b"".join(
        _item(
            _CONTEXT_RQ,
            bytes([pc.context_id, 0, 0, 0])
            + _item(_ABSTRACT_SYNTAX, pc.abstract_syntax.encode("ascii"))
            + b"".join(_item(_TRANSFER_SYNTAX, ts.encode("ascii")) for ts in pc.transfer_syntaxes),
        )
        for pc in rq.presentation_contexts
    )
    body = (
        _fixed(rq.protocol_version, rq.called_ae_title, rq.calling_ae_title)
        + _item(_APPLICATION_CONTEXT, rq.application_context.encode("ascii"))
        + contexts
        + _encode_user_information(rq.user_information)
    )
    return frame(PDUType.A_ASSOCIATE_RQ, body)


def encode_associate_ac(ac: AssociateAccept) -> bytes:
    """Encode a complete A-ASSOCIATE-AC PDU, header included.

    A rejected context still carries a transfer syntax sub-item, as PS3.8
    9.3.3.2 requires the field; receivers do not test it.
    """
    contexts = b"".join(
        _item(
            _CONTEXT_AC,
            bytes([pc.context_id, 0, int(pc.result), 0])
            + _item(
                _TRANSFER_SYNTAX,
                (pc.transfer_syntax or "1.2.840.10008.1.2").encode("ascii"),
            ),
        )
        for pc in ac.presentation_contexts
    )
    fixed = _fixed(ac.protocol_version, ac.called_ae_title, ac.calling_ae_title)
    if len(ac.echoed_fields) == len(fixed) - _ECHOED_FIELDS.start:
        fixed = fixed[: _ECHOED_FIELDS.start] + ac.echoed_fields
    body = (
        fixed
        + _item(_APPLICATION_CONTEXT, ac.application_context.encode("ascii"))
        + contexts
        + _encode_user_information(ac.user_information)
    )
    return frame(PDUType.A_ASSOCIATE_AC, body)


def encode_associate_rj(rj: AssociateReject) -> bytes:
    """Encode a complete A-ASSOCIATE-RJ PDU."""
    return frame(PDUType.A_ASSOCIATE_RJ, bytes([0, rj.result, rj.source, rj.reason]))


def encode_abort(source: AbortSource, reason: AbortReason) -> bytes:
    """Encode a complete A-ABORT PDU; the reason is 0 unless the provider aborts."""
    if source != AbortSource.SERVICE_PROVIDER:
        reason = AbortReason.NOT_SPECIFIED
    return frame(PDUType.A_ABORT, bytes([0, 0, source, reason]))


RELEASE_RQ = frame(PDUType.A_RELEASE_RQ, bytes(4))
RELEASE_RP = frame(PDUType.A_RELEASE_RP, bytes(4))


def encode_p_data(transfer: DataTransfer) -> bytes:
    """Encode a complete P-DATA-TF PDU from its PDVs."""
    parts: list[bytes] = []
    for pdv in transfer.values:
        parts.append(
            _PDV.pack(len(pdv.data) + 2, pdv.context_id, pdv.is_command | (pdv.is_last << 1))
        )
        parts.append(pdv.data)
    return frame(PDUType.P_DATA_TF, b"".join(parts))


def is_dicom_application_context(name: str) -> bool:
    """True for the one application context name DICOM defines (PS3.7 A.2.1)."""
    return name == DICOM_APPLICATION_CONTEXT
