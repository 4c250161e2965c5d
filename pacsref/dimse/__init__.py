"""The sans-IO DIMSE message layer (PS3.7) above the upper layer (PS3.8).

Incoming: :class:`MessageAssembler` turns the ``PresentationDataValue``
objects of P-DATA indications into :class:`DimseMessage` values (command
fields decoded, data set spooled to a file). Outgoing:
:func:`encode_command` and :func:`fragment_message` turn command fields and
an encoded data set into PDVs sized for the peer's maximum PDU length.
:mod:`~pacsref.dimse.responses` builds response command sets and
:mod:`~pacsref.dimse.status` names status codes. No I/O besides the spool
file; no twisted, sockets, threads or clocks.
"""

from pacsref.dimse.assembler import (
    MAX_COMMAND_FRAGMENTS,
    MAX_COMMAND_SET_LENGTH,
    SPOOL_PREFIX,
    SPOOL_SUFFIX,
    DimseProtocolError,
    MessageAssembler,
)
from pacsref.dimse.command import (
    DATASET_ABSENT,
    DATASET_PRESENT,
    KEYWORDS,
    TAGS,
    VRS,
    CommandSetError,
    decode_command,
    encode_command,
    format_tag,
)
from pacsref.dimse.fragmenter import (
    PDV_OVERHEAD,
    UNLIMITED_CHUNK,
    fragment_message,
    max_fragment_length,
)
from pacsref.dimse.messages import (
    REQUIRED_ELEMENTS,
    CommandField,
    DimseMessage,
    command_name,
    dataset_expected,
    missing_required,
)
from pacsref.dimse.part10 import FileMetaIdentity, encode_file_meta, part10_header
from pacsref.dimse.responses import (
    MAX_ERROR_COMMENT,
    can_respond,
    invalid_request_response,
    missing_elements_response,
    response_command,
    unrecognized_operation_response,
)
from pacsref.dimse.status import (
    StatusCategory,
    describe_status,
    status_category,
    status_name,
)

__all__ = [
    "DATASET_ABSENT",
    "DATASET_PRESENT",
    "KEYWORDS",
    "MAX_COMMAND_FRAGMENTS",
    "MAX_COMMAND_SET_LENGTH",
    "MAX_ERROR_COMMENT",
    "PDV_OVERHEAD",
    "REQUIRED_ELEMENTS",
    "SPOOL_PREFIX",
    "SPOOL_SUFFIX",
    "TAGS",
    "UNLIMITED_CHUNK",
    "VRS",
    "CommandField",
    "CommandSetError",
    "DimseMessage",
    "DimseProtocolError",
    "FileMetaIdentity",
    "MessageAssembler",
    "StatusCategory",
    "can_respond",
    "command_name",
    "dataset_expected",
    "decode_command",
    "describe_status",
    "encode_command",
    "encode_file_meta",
    "format_tag",
    "fragment_message",
    "invalid_request_response",
    "max_fragment_length",
    "missing_elements_response",
    "missing_required",
    "part10_header",
    "response_command",
    "status_category",
    "status_name",
    "unrecognized_operation_response",
]
