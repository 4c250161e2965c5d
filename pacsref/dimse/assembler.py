"""Reassemble DIMSE messages from presentation data values (PS3.7 6.3, PS3.8 E.2).

The upper layer delivers a message as a series of PDVs: command fragments
(control header bit 0 set) up to the one marked last, then, if the command's
CommandDataSetType is not 0x0101, data set fragments up to the one marked
last. PS3.8 9.3.5.1 / PS3.7 6.3.1 forbid interleaving the fragments of two
messages, so the assembler holds at most one message in progress.

The command set is small and collected in memory (capped, so a hostile peer
cannot grow it without bound). The data set may be gigabytes: it is streamed
fragment by fragment into one spool file and never held in memory (at most one
64 KiB batch of fragments waits to be written, keeping at most 192 KiB of received buffers
alive: :mod:`pacsref.dimse.spool`).

A spool file that cannot be created or written (full disk, quota, I/O error) is
not the peer's fault and does not end the association: the assembler closes
and deletes the partial file, reads and drops the rest of that data set, and
delivers the message with :attr:`DimseMessage.spool_failure` set, so the
request is answered with a failure status (0xA700 Out of Resources for a
C-STORE) and the next message is spooled afresh.

Anything that breaks the fragment rules is a :class:`DimseProtocolError`;
the association cannot continue after one (there is no DIMSE-level way to
resynchronise), so the caller aborts it. Before raising, the assembler
deletes any half-written spool file itself, so nothing is left behind even
if the caller forgets :meth:`MessageAssembler.abort`. Semantic problems of a
*complete* command (missing elements, unknown command field) are not
assembler errors: the message is returned and the caller answers with a
status (see :mod:`pacsref.dimse.responses`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from pacsref.dimse.command import (
    AFFECTED_SOP_CLASS_UID,
    AFFECTED_SOP_INSTANCE_UID,
    COMMAND_DATA_SET_TYPE,
    COMMAND_FIELD,
    DATASET_ABSENT,
    CommandSetError,
)
from pacsref.dimse.command import decode_command as _decode_command
from pacsref.dimse.messages import CommandField, DimseMessage, SpoolFailure, command_name
from pacsref.dimse.part10 import FileMetaIdentity, part10_header
from pacsref.dimse.spool import SpoolWriter, create_spool_file
from pacsref.ul.events import PresentationDataValue

__all__ = [
    "MAX_COMMAND_FRAGMENTS",
    "MAX_COMMAND_SET_LENGTH",
    "SPOOL_PREFIX",
    "SPOOL_SUFFIX",
    "DimseProtocolError",
    "MessageAssembler",
]

#: Largest command set we buffer. Real ones are 60-300 bytes; 64 KiB leaves
#: room for long AttributeIdentifierLists while bounding memory per peer.
MAX_COMMAND_SET_LENGTH = 64 * 1024
#: Most fragments one command set may come in. A peer with the smallest PDU size in use
#: sends a real command set in a handful; the limit keeps empty or one-byte fragments, which
#: add (almost) nothing to the length above, from piling up without end.
MAX_COMMAND_FRAGMENTS = 4096

#: Spool files are named ``pacsref-dimse-<pid>-<token>-<n>.dataset`` so that stray
#: ones (after a crash) are recognisable in the Temporary Directory.
SPOOL_PREFIX = "pacsref-dimse-"
SPOOL_SUFFIX = ".dataset"


class DimseProtocolError(Exception):
    """A PDV sequence that violates PS3.7 6.3 / PS3.8 E.2; abort the association."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class MessageAssembler:
    """Turn a stream of PDVs into :class:`DimseMessage` objects (sans-IO).

    ``accepted_contexts`` maps each accepted presentation context ID to its
    accepted transfer syntax; PDVs on any other context are refused (PS3.8
    9.3.5.1: a PDV's context ID must be one the association accepted).

    With ``part10`` set, the spool file of every C-STORE-RQ that names its SOP Class
    and Instance UIDs starts with a Part-10 header (preamble, ``DICM``, file meta built
    from the command, the context's transfer syntax and ``part10``) written before the
    first data byte, so a storage SCP keeps the file by renaming it; the message's
    ``dataset_offset`` says where the data set begins (see :mod:`pacsref.dimse.part10`).
    """

    __slots__ = (
        "_accepted",
        "_command",
        "_command_length",
        "_context_id",
        "_dataset_offset",
        "_fragments",
        "_part10",
        "_spool",
        "_spool_dir",
        "_spool_failure",
        "_spool_path",
    )

    def __init__(
        self,
        spool_dir: Path,
        accepted_contexts: Mapping[int, str],
        part10: FileMetaIdentity | None = None,
    ) -> None:
        self._spool_dir = Path(spool_dir)
        self._accepted = dict(accepted_contexts)
        self._part10 = part10
        #: bytes of Part-10 header before the data set in the current spool file
        self._dataset_offset = 0
        #: context of the message in progress, None when idle
        self._context_id: int | None = None
        #: command fragments received so far
        self._fragments: list[bytes] = []
        self._command_length = 0
        #: decoded command whose data set is being received
        self._command: dict[int, object] | None = None
        self._spool: SpoolWriter | None = None
        self._spool_path: Path | None = None
        #: why the data set in progress could not be spooled (its PDVs are then dropped)
        self._spool_failure: SpoolFailure | None = None

    @property
    def in_progress(self) -> bool:
        """True while part of a message has arrived but not its last fragment."""
        return self._context_id is not None

    @property
    def context_id(self) -> int | None:
        """The presentation context of the message in progress, None when idle."""
        return self._context_id

    @property
    def spool_path(self) -> Path | None:
        """The spool file being written, if a data set is in progress."""
        return self._spool_path

    def feed(self, pdv: PresentationDataValue) -> DimseMessage | None:
        """Take one PDV; return the message it completes, else None.

        Raises :class:`DimseProtocolError` (after cleaning up) when the PDV
        breaks a fragment rule.
        """
        context_id = pdv.context_id
        current = self._context_id
        if current is None:
            transfer_syntax = self._accepted.get(context_id)
            if transfer_syntax is None:
                self._fail(
                    f"PDV for presentation context {context_id}, which was not accepted "
                    f"on this association (accepted: {sorted(self._accepted) or 'none'})"
                )
        elif context_id != current:
            self._fail(
                f"PDV for presentation context {context_id} while the message on "
                f"presentation context {current} is incomplete (PS3.7 6.3.1: fragments "
                "of different messages shall not be interleaved)"
            )
        if pdv.is_command:
            return self._feed_command(pdv)
        return self._feed_dataset(pdv)

    def _feed_command(self, pdv: PresentationDataValue) -> DimseMessage | None:
        if self._command is not None:
            self._fail(
                f"command PDV on presentation context {pdv.context_id} while the data set of "
                f"a {command_name(self._command.get(COMMAND_FIELD))} is in progress (PS3.8 E.2)"
            )
        data = pdv.data
        self._command_length += len(data)
        if self._command_length > MAX_COMMAND_SET_LENGTH:
            self._fail(
                f"command set too large: more than {MAX_COMMAND_SET_LENGTH} bytes "
                f"({self._command_length} so far)"
            )
        if not pdv.is_last:
            if len(self._fragments) >= MAX_COMMAND_FRAGMENTS:
                self._fail(
                    f"command set in too many fragments: more than {MAX_COMMAND_FRAGMENTS} "
                    f"({self._command_length} bytes so far)"
                )
            self._context_id = pdv.context_id
            self._fragments.append(bytes(data))  # a copy: a view would pin its whole read
            return None
        if self._fragments:
            self._fragments.append(data)
            data = b"".join(self._fragments)
            self._fragments = []
        self._command_length = 0
        try:
            command = _decode_command(data)
        except CommandSetError as exc:
            self._fail(f"undecodable command set: {exc.detail}")
        context_id = pdv.context_id
        dataset_type = command.get(COMMAND_DATA_SET_TYPE)
        if dataset_type is None or dataset_type == DATASET_ABSENT:
            # An absent CommandDataSetType is reported by missing_required();
            # treating it as "no data set" means a data PDV that follows is
            # caught as unannounced instead of being silently swallowed.
            self._context_id = None
            return DimseMessage(context_id, command, None, self._accepted[context_id])
        self._context_id = context_id
        self._command = command
        if self._open_spool():
            self._write_part10_header(command, self._accepted[context_id])
        return None

    def _write_part10_header(self, command: dict[int, object], transfer_syntax: str) -> None:
        """Start a C-STORE-RQ's spool file with its Part-10 header (see the class docstring)."""
        self._dataset_offset = 0
        if self._part10 is None or command.get(COMMAND_FIELD) != CommandField.C_STORE_RQ:
            return
        sop_class = command.get(AFFECTED_SOP_CLASS_UID)
        sop_instance = command.get(AFFECTED_SOP_INSTANCE_UID)
        if not (isinstance(sop_class, str) and isinstance(sop_instance, str)):
            return  # answered 0x0212 (missing elements) once complete; no header needed
        header = part10_header(sop_class, sop_instance, transfer_syntax, self._part10)
        try:
            self._spool.write(header)  # type: ignore[union-attr]  # opened just before
        except OSError as exc:
            self._spool_failed(exc)
            return
        self._dataset_offset = len(header)

    def _feed_dataset(self, pdv: PresentationDataValue) -> DimseMessage | None:
        spool = self._spool
        command = self._command
        if spool is None:
            if command is None:
                if self._fragments:
                    self._fail(
                        f"data set PDV on presentation context {pdv.context_id} before the "
                        "last command fragment (PS3.8 E.2: the command set comes first)"
                    )
                self._fail(
                    f"data set PDV on presentation context {pdv.context_id} but no command "
                    "announced a data set (CommandDataSetType 0x0101 or no command)"
                )
            # The spool file failed (see _spool_failed): drop the data up to the last PDV.
            return self._complete(pdv.context_id, command) if pdv.is_last else None
        try:
            spool.write(pdv.data)
            if not pdv.is_last:
                return None
            spool.close()  # writes the last batch: the file is complete before delivery
        except OSError as exc:
            self._spool_failed(exc)
            return self._complete(pdv.context_id, command) if pdv.is_last else None
        return self._complete(pdv.context_id, command)

    def _complete(self, context_id: int, command: dict[int, object]) -> DimseMessage:
        """The message whose last data set PDV just arrived; the assembler is idle again."""
        message = DimseMessage(
            context_id,
            command,
            self._spool_path,
            self._accepted[context_id],
            self._dataset_offset,
            self._spool_failure,
        )
        self._dataset_offset = 0
        self._spool = None
        self._spool_path = None
        self._spool_failure = None
        self._command = None
        self._context_id = None
        return message

    def _open_spool(self) -> bool:
        """Create the data set's spool file; False (spool failure recorded) if that fails."""
        try:
            fd, self._spool_path = create_spool_file(self._spool_dir, SPOOL_PREFIX, SPOOL_SUFFIX)
        except OSError as exc:
            self._spool_failure = SpoolFailure.from_error(self._spool_dir, exc)
            return False
        self._spool = SpoolWriter(fd)
        return True

    def _spool_failed(self, exc: OSError) -> None:
        """Give up spooling this data set: record why, close and delete the partial file.

        The rest of the data set's PDVs are then dropped and the message delivered with
        its ``spool_failure`` (deleting at once frees the space for other associations).
        """
        spool, path = self._spool, self._spool_path
        self._spool_failure = SpoolFailure.from_error(path or self._spool_dir, exc)
        self._spool = None
        self._spool_path = None
        self._dataset_offset = 0
        if spool is not None:
            with contextlib.suppress(OSError):
                spool.abandon()
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)

    def _fail(self, detail: str) -> NoReturn:
        self.abort()
        raise DimseProtocolError(detail)

    def abort(self) -> None:
        """Drop the message in progress and delete its partial spool file.

        Called when the association aborts or the connection drops; safe to
        call at any time, any number of times.
        """
        spool, path = self._spool, self._spool_path
        self._spool = None
        self._spool_path = None
        self._spool_failure = None
        self._command = None
        self._context_id = None
        self._fragments = []
        self._command_length = 0
        if spool is not None:
            with contextlib.suppress(OSError):
                spool.abandon()
        if path is not None:
            with contextlib.suppress(OSError):  # e.g. the spool directory vanished
                path.unlink(missing_ok=True)
