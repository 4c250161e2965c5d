"""Build response command sets for received requests (PS3.7 9.3, 10.3, Annex C).

A response echoes the request's identity (Message ID Being Responded To,
the affected SOP class/instance) and adds a Status. This module builds the
command *fields*; :func:`pacsref.dimse.command.encode_command` turns them into
bytes.

Decision: what to answer a request that cannot be served as sent
-----------------------------------------------------------------
PS3.7 gives no single rule, so we chose, from Annex C and what others do:

* **No usable Message ID, or no Command Field** - nothing can address a
  response (PS3.7 9.1: a response is matched to its request only by Message
  ID Being Responded To), so :func:`can_respond` is False and the caller must
  abort the association (A-ABORT). DCMTK behaves the same way in effect: its
  command parser fails with DIMSE_PARSEFAILED and its SCPs drop the
  association. (pynetdicom logs and ignores the request, which leaves the
  peer waiting for a response until its DIMSE timeout: we prefer a prompt,
  explicit abort.)
* **Unknown Command Field** with a Message ID - Status 0x0211 "Unrecognized
  operation" (PS3.7 C.5.22), Command Field echoed with bit 15 set, see
  :func:`unrecognized_operation_response`.
* **Known request lacking mandatory elements** (PS3.7 Tables 9.3-x/10.3-x),
  with a Message ID - Status 0x0212 "Mistyped argument" (PS3.7 C.5.14) and an
  Error Comment naming the missing elements, see
  :func:`missing_elements_response`. 0x0212 was chosen over a Cxxx "Cannot
  understand" because it is in the status list of *every* DIMSE-C and
  DIMSE-N service (C-ECHO has no Cxxx range), so the peer is never sent a
  status its service does not define. Offending Element is not used: it is
  not a C-ECHO-RSP element and it names data set attributes, not command
  elements.
* **Known request whose CommandDataSetType contradicts its service** (a C-ECHO-RQ
  announcing a data set, a C-STORE-RQ announcing none; PS3.7 Tables 9.3-x/10.3-x) - Status
  0x0212 with an Error Comment naming CommandDataSetType, see
  :func:`dataset_type_response`.
* **C-CANCEL-RQ** has no response (PS3.7 9.3.2.3); :func:`can_respond` is
  False for it and a broken one is simply ignored by the caller.
* A request UID too long (or not ASCII) to be a UI value cannot be echoed: the response
  leaves it out (every Affected SOP Class/Instance UID of a response is optional, "U(=)"),
  and :func:`unechoable_uids` names it for the caller's log.
"""

from __future__ import annotations

from collections.abc import Mapping

from pacsref.dimse.command import (
    ACTION_TYPE_ID,
    AFFECTED_SOP_CLASS_UID,
    AFFECTED_SOP_INSTANCE_UID,
    COMMAND_DATA_SET_TYPE,
    COMMAND_FIELD,
    DATASET_ABSENT,
    DATASET_PRESENT,
    ERROR_COMMENT,
    EVENT_TYPE_ID,
    KEYWORDS,
    MESSAGE_ID,
    MESSAGE_ID_BEING_RESPONDED_TO,
    OFFENDING_ELEMENT,
    REQUESTED_SOP_CLASS_UID,
    REQUESTED_SOP_INSTANCE_UID,
    STATUS,
    TAGS,
)
from pacsref.dimse.messages import (
    CommandField,
    DimseMessage,
    command_name,
    dataset_expected,
    missing_required,
)
from pacsref.dimse.status import MISTYPED_ARGUMENT, UNRECOGNIZED_OPERATION

__all__ = [
    "MAX_ERROR_COMMENT",
    "can_respond",
    "dataset_type_response",
    "invalid_request_response",
    "missing_elements_response",
    "response_command",
    "unechoable_uids",
    "unrecognized_operation_response",
]

#: Error Comment is LO: at most 64 characters (PS3.5 Table 6.2-1).
MAX_ERROR_COMMENT = 64

_KNOWN = frozenset(int(cf) for cf in CommandField)

#: A UI value holds at most 64 characters (PS3.5 Table 6.2-1).
_MAX_UID = 64
_ECHOED_UIDS = (
    (AFFECTED_SOP_CLASS_UID, REQUESTED_SOP_CLASS_UID),
    (AFFECTED_SOP_INSTANCE_UID, REQUESTED_SOP_INSTANCE_UID),
)


def _echoable(value: object) -> bool:
    return isinstance(value, str) and value.isascii() and len(value) <= _MAX_UID


def unechoable_uids(command: Mapping[int, object]) -> list[str]:
    """The request's UIDs a response cannot carry back, e.g. ``AffectedSOPInstanceUID
    (0000,1000): 80 characters, a UI holds 64``; empty when all fit."""
    found = []
    for tag in (tag for pair in _ECHOED_UIDS for tag in pair):
        value = command.get(tag)
        if value is None or _echoable(value):
            continue
        if not isinstance(value, str):
            why = f"not a string ({type(value).__name__})"
        elif len(value) > _MAX_UID:
            why = f"{len(value)} characters, a UI holds {_MAX_UID}"
        else:
            why = "not ASCII"
        found.append(f"{KEYWORDS[tag]} (0000,{tag:04X}): {why}")
    return found


def can_respond(command: Mapping[int, object] | DimseMessage) -> bool:
    """True if a response can be addressed to this request.

    That needs an integer Command Field that is a request (bit 15 clear) other
    than C-CANCEL-RQ, and an integer Message ID. When False for a request the
    caller must abort the association (see the module docstring); responses
    and C-CANCEL-RQ are never answered.
    """
    fields = command.command if isinstance(command, DimseMessage) else command
    command_field = fields.get(COMMAND_FIELD)
    return (
        isinstance(command_field, int)
        and not command_field & 0x8000
        and command_field != CommandField.C_CANCEL_RQ
        and isinstance(fields.get(MESSAGE_ID), int)
    )


def response_command(
    request: DimseMessage | Mapping[int, object],
    status: int,
    *,
    dataset: bool = False,
    **extra: object,
) -> dict[int, object]:
    """Fields of the response to ``request`` with ``status``.

    Sets Command Field (request | 0x8000), Message ID Being Responded To,
    Command Data Set Type (0x0101, or 0x0001 when ``dataset`` is True) and
    Status. Affected SOP Class/Instance UID are echoed when the request has
    them; for N-GET/N-SET/N-ACTION/N-DELETE the Requested SOP Class/Instance
    UIDs are echoed as the Affected ones (PS3.7 10.3: the response's Affected
    UIDs equal the request's Requested UIDs). Event Type ID and Action Type
    ID are echoed too (N-EVENT-REPORT-RSP, N-ACTION-RSP).

    ``extra`` sets further elements by keyword, e.g. ``ErrorComment="..."``
    (truncated to 64 characters), ``OffendingElement=0x00100010`` or a list,
    ``NumberOfCompletedSuboperations=3``; a value of None leaves the element
    out. A UID that is not a valid UI value (:func:`unechoable_uids`) is left out too.
    Raises ValueError if :func:`can_respond` is False and TypeError for an unknown keyword.
    """
    fields = request.command if isinstance(request, DimseMessage) else request
    if not can_respond(fields):
        raise ValueError(
            f"cannot respond to {command_name(fields.get(COMMAND_FIELD))} "
            f"(message ID {fields.get(MESSAGE_ID)!r})"
        )
    command_field: int = fields[COMMAND_FIELD]  # type: ignore[assignment]
    response: dict[int, object] = {
        COMMAND_FIELD: command_field | 0x8000,
        MESSAGE_ID_BEING_RESPONDED_TO: fields[MESSAGE_ID],
        COMMAND_DATA_SET_TYPE: DATASET_PRESENT if dataset else DATASET_ABSENT,
        STATUS: status,
    }
    for affected, requested in _ECHOED_UIDS:
        uid = fields.get(affected) or fields.get(requested)
        if uid is not None and _echoable(uid):  # see unechoable_uids
            response[affected] = uid
    for echoed in (EVENT_TYPE_ID, ACTION_TYPE_ID):
        value = fields.get(echoed)
        if value is not None:
            response[echoed] = value
    for keyword, value in extra.items():
        tag = TAGS.get(keyword)
        if tag is None:
            raise TypeError(f"response_command() got an unknown command element {keyword!r}")
        if value is None:
            response.pop(tag, None)
            continue
        if tag == ERROR_COMMENT and isinstance(value, str):
            value = value[:MAX_ERROR_COMMENT]
        elif tag == OFFENDING_ELEMENT and isinstance(value, int):
            value = [value]
        response[tag] = value
    return response


def unrecognized_operation_response(command: Mapping[int, object]) -> dict[int, object]:
    """Status 0x0211 for a request whose Command Field we do not know (PS3.7 C.5.22)."""
    command_field = command.get(COMMAND_FIELD)
    return response_command(
        command,
        UNRECOGNIZED_OPERATION,
        ErrorComment=f"unrecognized command field 0x{command_field:04X}",
    )


def missing_elements_response(
    command: Mapping[int, object], missing: list[str] | None = None
) -> dict[int, object]:
    """Status 0x0212 naming the mandatory command elements the request lacks.

    ``missing`` defaults to :func:`~pacsref.dimse.messages.missing_required`.
    The Error Comment reads e.g. ``missing AffectedSOPClassUID (0000,0002)``
    and is cut to 64 characters.
    """
    if missing is None:
        missing = missing_required(command)
    names = ", ".join(f"{kw} (0000,{TAGS[kw]:04X})" if kw in TAGS else kw for kw in missing)
    return response_command(command, MISTYPED_ARGUMENT, ErrorComment=f"missing {names}")


def dataset_type_response(command: Mapping[int, object]) -> dict[int, object] | None:
    """Status 0x0212 when CommandDataSetType contradicts the request's service, else None.

    E.g. a C-ECHO-RQ announcing a data set (PS3.7 Table 9.3-12: 0x0101, none) or a
    C-STORE-RQ announcing none; services where a data set is optional are not checked.
    """
    command_field = command.get(COMMAND_FIELD)
    if not isinstance(command_field, int):
        return None
    expected = dataset_expected(command_field)
    if expected is None:
        return None
    value = command.get(COMMAND_DATA_SET_TYPE)
    announced = value is not None and value != DATASET_ABSENT
    if announced == expected:
        return None
    name = command_name(command_field)
    comment = f"{name} must carry a data set" if expected else f"{name} carries no data set"
    return response_command(
        command,
        MISTYPED_ARGUMENT,
        ErrorComment=f"{KEYWORDS[COMMAND_DATA_SET_TYPE]} (0000,0800): {comment}",
    )


def invalid_request_response(
    command: Mapping[int, object] | DimseMessage,
) -> dict[int, object] | None:
    """The refusal to send for an unservable request, or None if it is fine.

    Checks, in order: unknown Command Field -> 0x0211; missing mandatory
    elements -> 0x0212; a CommandDataSetType its service forbids -> 0x0212. Call only
    when :func:`can_respond` is True.
    """
    fields = command.command if isinstance(command, DimseMessage) else command
    if fields.get(COMMAND_FIELD) not in _KNOWN:
        return unrecognized_operation_response(fields)
    missing = missing_required(fields)
    if missing:
        return missing_elements_response(fields, missing)
    return dataset_type_response(fields)
