"""DIMSE message types and the received-message value (PS3.7 sections 9.3, 10.3).

A DIMSE message is a command set plus, optionally, one data set (PS3.7 6.3).
:class:`DimseMessage` is what the assembler hands upwards: the decoded
command fields and the *path* of the spooled data set, never the data set's
bytes, so a 2 GB C-STORE costs no memory. The data set stays encoded exactly
as received in the presentation context's transfer syntax; whoever consumes
it decides whether to parse, store verbatim, or discard it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from pacsref.dimse.command import (
    ACTION_TYPE_ID,
    AFFECTED_SOP_CLASS_UID,
    AFFECTED_SOP_INSTANCE_UID,
    COMMAND_DATA_SET_TYPE,
    COMMAND_FIELD,
    DATASET_ABSENT,
    EVENT_TYPE_ID,
    KEYWORDS,
    MESSAGE_ID,
    MESSAGE_ID_BEING_RESPONDED_TO,
    MOVE_DESTINATION,
    PRIORITY,
    REQUESTED_SOP_CLASS_UID,
    REQUESTED_SOP_INSTANCE_UID,
    STATUS,
)

__all__ = [
    "REQUIRED_ELEMENTS",
    "CommandField",
    "DimseMessage",
    "SpoolFailure",
    "command_name",
    "dataset_expected",
    "missing_required",
    "spool_failure_status",
]


class CommandField(IntEnum):
    """Command Field (0000,0100) values (PS3.7 Annex E, Table E.1-1).

    A response's value is its request's value with bit 15 set.
    """

    C_STORE_RQ = 0x0001
    C_STORE_RSP = 0x8001
    C_GET_RQ = 0x0010
    C_GET_RSP = 0x8010
    C_FIND_RQ = 0x0020
    C_FIND_RSP = 0x8020
    C_MOVE_RQ = 0x0021
    C_MOVE_RSP = 0x8021
    C_ECHO_RQ = 0x0030
    C_ECHO_RSP = 0x8030
    N_EVENT_REPORT_RQ = 0x0100
    N_EVENT_REPORT_RSP = 0x8100
    N_GET_RQ = 0x0110
    N_GET_RSP = 0x8110
    N_SET_RQ = 0x0120
    N_SET_RSP = 0x8120
    N_ACTION_RQ = 0x0130
    N_ACTION_RSP = 0x8130
    N_CREATE_RQ = 0x0140
    N_CREATE_RSP = 0x8140
    N_DELETE_RQ = 0x0150
    N_DELETE_RSP = 0x8150
    C_CANCEL_RQ = 0x0FFF

    @property
    def label(self) -> str:
        """The standard's spelling, e.g. ``C-ECHO-RQ``."""
        return self.name.replace("_", "-")

    @property
    def is_response(self) -> bool:
        """True for the ``-RSP`` values (bit 15 set)."""
        return bool(self.value & 0x8000)


_RESPONSE_BASE = (COMMAND_FIELD, MESSAGE_ID_BEING_RESPONDED_TO, COMMAND_DATA_SET_TYPE, STATUS)
_C_QUERY = (AFFECTED_SOP_CLASS_UID, COMMAND_FIELD, MESSAGE_ID, PRIORITY, COMMAND_DATA_SET_TYPE)
_N_REQUESTED = (
    REQUESTED_SOP_CLASS_UID,
    COMMAND_FIELD,
    MESSAGE_ID,
    COMMAND_DATA_SET_TYPE,
    REQUESTED_SOP_INSTANCE_UID,
)

#: Command elements with usage M per message type (PS3.7 Tables 9.3-1 to
#: 9.3-13 and 10.3-1 to 10.3-12). CommandGroupLength is deliberately left
#: out: its value is derivable, decoding does not rely on it, and refusing a
#: request only for lacking it would punish a harmless peer quirk. For
#: responses only the elements every response carries are listed; their
#: other elements are conditional on the status.
REQUIRED_ELEMENTS: dict[CommandField, tuple[int, ...]] = {
    CommandField.C_STORE_RQ: (*_C_QUERY, AFFECTED_SOP_INSTANCE_UID),
    CommandField.C_FIND_RQ: _C_QUERY,
    CommandField.C_GET_RQ: _C_QUERY,
    CommandField.C_MOVE_RQ: (*_C_QUERY, MOVE_DESTINATION),
    CommandField.C_ECHO_RQ: (
        AFFECTED_SOP_CLASS_UID,
        COMMAND_FIELD,
        MESSAGE_ID,
        COMMAND_DATA_SET_TYPE,
    ),
    CommandField.C_CANCEL_RQ: (
        COMMAND_FIELD,
        MESSAGE_ID_BEING_RESPONDED_TO,
        COMMAND_DATA_SET_TYPE,
    ),
    CommandField.N_EVENT_REPORT_RQ: (
        AFFECTED_SOP_CLASS_UID,
        COMMAND_FIELD,
        MESSAGE_ID,
        COMMAND_DATA_SET_TYPE,
        AFFECTED_SOP_INSTANCE_UID,
        EVENT_TYPE_ID,
    ),
    CommandField.N_GET_RQ: _N_REQUESTED,
    CommandField.N_SET_RQ: _N_REQUESTED,
    CommandField.N_ACTION_RQ: (*_N_REQUESTED, ACTION_TYPE_ID),
    CommandField.N_CREATE_RQ: (
        AFFECTED_SOP_CLASS_UID,
        COMMAND_FIELD,
        MESSAGE_ID,
        COMMAND_DATA_SET_TYPE,
    ),
    CommandField.N_DELETE_RQ: _N_REQUESTED,
    **{cf: _RESPONSE_BASE for cf in CommandField if cf.is_response},
}

#: Whether a message type must carry a data set (True), must not (False), or
#: may (absent): PS3.7 9.3 / 10.3 "Data Set" / "Identifier" rows.
_DATASET_EXPECTED: dict[CommandField, bool] = {
    CommandField.C_STORE_RQ: True,
    CommandField.C_FIND_RQ: True,
    CommandField.C_GET_RQ: True,
    CommandField.C_MOVE_RQ: True,
    CommandField.C_ECHO_RQ: False,
    CommandField.C_ECHO_RSP: False,
    CommandField.C_STORE_RSP: False,
    CommandField.C_CANCEL_RQ: False,
    CommandField.N_SET_RQ: True,
    CommandField.N_GET_RQ: False,
    CommandField.N_DELETE_RQ: False,
    CommandField.N_DELETE_RSP: False,
}

_VALUES = frozenset(int(cf) for cf in CommandField)


def _undeletable(path: Path, exc: OSError) -> None:
    """Log one warning for a spool file :meth:`DimseMessage.discard` could not delete.

    ``twisted.logger`` is imported here, on this failure path only, so that importing the
    sans-IO DIMSE layer still imports no twisted (:mod:`pacsref.dimse`); the event goes
    where every ``pacsref.*`` event goes, the server log and the service log
    (:mod:`pacsref.log`), which a stdlib ``logging`` call would not reach.
    """
    from twisted.logger import Logger

    code = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno else "no errno"
    Logger(namespace="pacsref.dimse").warn(
        "cannot delete spool file {file}: {error} ({errno_name}); it is left behind",
        kind="spool.undeletable",
        file=str(path),
        error=exc.strerror or str(exc),
        errno_name=code,
        errno=exc.errno,
    )


def command_name(command_field: object) -> str:
    """``C-ECHO-RQ`` for 0x0030; ``command field 0x1234`` for unknown values."""
    if isinstance(command_field, int) and command_field in _VALUES:
        return CommandField(command_field).label
    if isinstance(command_field, int):
        return f"command field 0x{command_field:04X}"
    return "command without a command field"


def dataset_expected(command_field: int) -> bool | None:
    """True if a data set is mandatory, False if forbidden, None if optional/unknown."""
    if command_field not in _VALUES:
        return None
    return _DATASET_EXPECTED.get(CommandField(command_field))


def missing_required(command: Mapping[int, object]) -> list[str]:
    """Keywords of the mandatory command elements ``command`` lacks.

    An unknown (or absent) command field is not reported here: the caller
    answers that with "Unrecognized operation" (or aborts if it cannot
    answer at all), see :mod:`pacsref.dimse.responses`. For an absent
    command field the list is ``["CommandField"]``.
    """
    command_field = command.get(COMMAND_FIELD)
    if command_field is None:
        return [KEYWORDS[COMMAND_FIELD]]
    if not isinstance(command_field, int) or command_field not in _VALUES:
        return []
    required = REQUIRED_ELEMENTS[CommandField(command_field)]
    return [KEYWORDS[tag] for tag in required if command.get(tag) is None]


#: The status answering a request whose data set could not be spooled (see SpoolFailure):
#: Refused: Out of Resources where the service defines it (PS3.4 B.2.3 C-STORE, C.4.1.1.4
#: C-FIND; C-GET and C-MOVE only have the "unable to calculate number of matches" variant,
#: C.4.2.1.5 / C.4.3.1.4), else Resource limitation (PS3.7 C.5.21, in every DIMSE-N list).
_SPOOL_FAILURE_STATUS = {
    CommandField.C_STORE_RQ: 0xA700,
    CommandField.C_FIND_RQ: 0xA700,
    CommandField.C_GET_RQ: 0xA701,
    CommandField.C_MOVE_RQ: 0xA701,
}
_RESOURCE_LIMITATION = 0x0213


def spool_failure_status(command_field: int | None) -> int:
    """The failure status for a request of ``command_field`` whose data set was not spooled."""
    return _SPOOL_FAILURE_STATUS.get(command_field, _RESOURCE_LIMITATION)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class SpoolFailure:
    """Why a message's data set could not be spooled (the disk, not the peer, failed).

    The assembler deletes the partial spool file, discards the rest of the data set and still
    delivers the message, carrying this, so the request is answered with a failure status
    (``0xA700`` Out of Resources for a C-STORE) and the association goes on.

    Attributes:
        path: the spool file (or, when it could not be created, the spool directory).
        errno: the ``OSError``'s errno, None if it had none.
        strerror: its text, e.g. ``No space left on device``.
    """

    path: str
    errno: int | None
    strerror: str

    @classmethod
    def from_error(cls, path: object, exc: OSError) -> SpoolFailure:
        """From the ``OSError`` raised while creating or writing ``path``."""
        text = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc)) or repr(exc)
        return cls(str(path), exc.errno, text)

    @property
    def disk_full(self) -> bool:
        """True for a full file system or an exhausted quota (ENOSPC, EDQUOT)."""
        return self.errno in (errno.ENOSPC, errno.EDQUOT)

    @property
    def error_comment(self) -> str:
        """For the response's Error Comment (LO: the caller cuts it to 64 characters)."""
        if self.disk_full:
            return f"spool disk full: {self.strerror}"
        return f"spool write failed: {self.strerror}"

    def __str__(self) -> str:
        code = errno.errorcode.get(self.errno, str(self.errno)) if self.errno else "no errno"
        return f"cannot spool data set to {self.path}: {self.strerror} ({code})"


@dataclass(slots=True)
class DimseMessage:
    """One complete received DIMSE message (PS3.7 6.3).

    ``dataset_path`` is the spool file holding the data set exactly as
    received (transfer syntax ``transfer_syntax``), or None when the command
    said none follows (CommandDataSetType 0x0101). The consumer owns the file:
    move it into storage, or call :meth:`discard`. ``dataset_offset`` is where the
    data set starts in that file: 0, or the length of the Part-10 header the
    assembler wrote first for a C-STORE-RQ (:mod:`pacsref.dimse.part10`).

    ``spool_failure`` is set when a data set was announced but could not be spooled (full
    disk, I/O error): then ``dataset_path`` is None, the data set's bytes were read and
    dropped, and the request must be answered with a failure status without serving it.
    """

    context_id: int
    command: dict[int, object]
    dataset_path: Path | None
    transfer_syntax: str
    dataset_offset: int = 0
    spool_failure: SpoolFailure | None = None
    #: While True, :meth:`discard` leaves the spool file (:meth:`hold_spool`).
    spool_held: bool = False

    @property
    def command_field(self) -> int | None:
        """The Command Field value, None if the command set lacks it."""
        value = self.command.get(COMMAND_FIELD)
        return value if isinstance(value, int) else None

    @property
    def message_id(self) -> int | None:
        """Message ID (0000,0110), None if absent (responses carry none)."""
        value = self.command.get(MESSAGE_ID)
        return value if isinstance(value, int) else None

    @property
    def message_id_being_responded_to(self) -> int | None:
        """Message ID Being Responded To (0000,0120), None if absent."""
        value = self.command.get(MESSAGE_ID_BEING_RESPONDED_TO)
        return value if isinstance(value, int) else None

    @property
    def affected_sop_class_uid(self) -> str | None:
        """Affected SOP Class UID (0000,0002), None if absent."""
        value = self.command.get(AFFECTED_SOP_CLASS_UID)
        return value if isinstance(value, str) else None

    @property
    def affected_sop_instance_uid(self) -> str | None:
        """Affected SOP Instance UID (0000,1000), None if absent."""
        value = self.command.get(AFFECTED_SOP_INSTANCE_UID)
        return value if isinstance(value, str) else None

    @property
    def status(self) -> int | None:
        """Status (0000,0900) of a response, None if absent."""
        value = self.command.get(STATUS)
        return value if isinstance(value, int) else None

    @property
    def has_dataset(self) -> bool:
        """True when a data set was received (and spooled)."""
        return self.dataset_path is not None

    @property
    def name(self) -> str:
        """``C-STORE-RQ`` etc., for logs."""
        return command_name(self.command.get(COMMAND_FIELD))

    def announced_dataset(self) -> bool:
        """What CommandDataSetType says (absent counts as "no data set")."""
        value = self.command.get(COMMAND_DATA_SET_TYPE)
        return value is not None and value != DATASET_ABSENT

    def discard(self) -> None:
        """Delete the spooled data set, if any (idempotent); not while it is held.

        Never raises: it runs on the way to (or after) a response, and a spool file system
        gone read-only or failing must not cost the peer its answer nor the association.
        A file that cannot be deleted is left behind with one warning naming it and the
        error (no traceback: the cause is the disk, not the code); the message forgets it,
        so a second call neither retries nor warns again.
        """
        path = self.dataset_path
        if path is None or self.spool_held:
            return
        self.dataset_path = None
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            _undeletable(path, exc)

    def hold_spool(self) -> None:
        """Keep the spool file through :meth:`discard` until :meth:`release_spool`.

        For a handler past its point of no return when its association ended: it still
        moves the file into place, so the session's clean-up must not delete it first.
        """
        self.spool_held = True

    def release_spool(self) -> None:
        """End :meth:`hold_spool` and delete whatever the handler left."""
        self.spool_held = False
        self.discard()
