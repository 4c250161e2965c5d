"""DIMSE status codes (PS3.7 Annex C) with their category and a name for logs.

The Status (0000,0900) of a response is a 16-bit code whose *category*
(success, warning, failure, cancel, pending) decides what the requestor
does next, while its exact meaning depends on the service (PS3.4 lists the
service-specific codes). Logs should never show a bare number, so
:func:`describe_status` renders e.g. ``0xA700 Refused: Out of resources
(failure)``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ATTRIBUTE_LIST_ERROR",
    "ATTRIBUTE_VALUE_OUT_OF_RANGE",
    "CANCEL",
    "CANNOT_UNDERSTAND",
    "CLASS_INSTANCE_CONFLICT",
    "COERCION_OF_DATA_ELEMENTS",
    "DATASET_DOES_NOT_MATCH_SOP_CLASS",
    "DATASET_DOES_NOT_MATCH_SOP_CLASS_WARNING",
    "DUPLICATE_INVOCATION",
    "DUPLICATE_SOP_INSTANCE",
    "ELEMENTS_DISCARDED",
    "IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS",
    "INVALID_ARGUMENT_VALUE",
    "INVALID_ATTRIBUTE_VALUE",
    "INVALID_OBJECT_INSTANCE",
    "MISSING_ATTRIBUTE",
    "MISSING_ATTRIBUTE_VALUE",
    "MISTYPED_ARGUMENT",
    "MOVE_DESTINATION_UNKNOWN",
    "NOT_AUTHORIZED",
    "NO_SUCH_ACTION_TYPE",
    "NO_SUCH_ARGUMENT",
    "NO_SUCH_ATTRIBUTE",
    "NO_SUCH_EVENT_TYPE",
    "NO_SUCH_OBJECT_INSTANCE",
    "NO_SUCH_SOP_CLASS",
    "OUT_OF_RESOURCES",
    "OUT_OF_RESOURCES_MATCHES",
    "OUT_OF_RESOURCES_SUBOPERATIONS",
    "PENDING",
    "PENDING_WARNING",
    "PROCESSING_FAILURE",
    "RESOURCE_LIMITATION",
    "SOP_CLASS_NOT_SUPPORTED",
    "SUBOPERATIONS_COMPLETE_WITH_FAILURES",
    "SUCCESS",
    "UNRECOGNIZED_OPERATION",
    "WARNING",
    "StatusCategory",
    "describe_status",
    "status_category",
    "status_name",
]

# General status codes, PS3.7 C.1-C.5 (section numbers in comments).
SUCCESS = 0x0000  # C.1.1 / C.5.1
WARNING = 0x0001  # C.2: generic warning
PENDING = 0xFF00  # C.5.2
PENDING_WARNING = 0xFF01  # PS3.4 C.4.1.1.4: pending, optional keys not supported
CANCEL = 0xFE00  # C.5.3
ATTRIBUTE_LIST_ERROR = 0x0107  # C.5.4 (warning)
ATTRIBUTE_VALUE_OUT_OF_RANGE = 0x0116  # C.5.5 (warning)
NO_SUCH_ATTRIBUTE = 0x0105  # C.5.16
INVALID_ATTRIBUTE_VALUE = 0x0106  # C.5.10
PROCESSING_FAILURE = 0x0110  # C.5.20
DUPLICATE_SOP_INSTANCE = 0x0111  # C.5.8
NO_SUCH_OBJECT_INSTANCE = 0x0112  # C.5.18
NO_SUCH_EVENT_TYPE = 0x0113  # C.5.17
NO_SUCH_ARGUMENT = 0x0114  # C.5.15
INVALID_ARGUMENT_VALUE = 0x0115  # C.5.9
INVALID_OBJECT_INSTANCE = 0x0117  # C.5.11
NO_SUCH_SOP_CLASS = 0x0118  # C.5.19
CLASS_INSTANCE_CONFLICT = 0x0119  # C.5.6
MISSING_ATTRIBUTE = 0x0120  # C.5.12
MISSING_ATTRIBUTE_VALUE = 0x0121  # C.5.13
SOP_CLASS_NOT_SUPPORTED = 0x0122  # C.4.x "Refused: SOP Class not supported"
NO_SUCH_ACTION_TYPE = 0x0123  # C.5.23
NOT_AUTHORIZED = 0x0124  # C.5.24
DUPLICATE_INVOCATION = 0x0210  # C.5.7
UNRECOGNIZED_OPERATION = 0x0211  # C.5.22
MISTYPED_ARGUMENT = 0x0212  # C.5.14
RESOURCE_LIMITATION = 0x0213  # C.5.21
# Service class specific ranges (C.4) with the PS3.4 codes we use by name.
OUT_OF_RESOURCES = 0xA700  # C.4.1 Refused: Out of Resources (A7xx)
OUT_OF_RESOURCES_MATCHES = 0xA701  # PS3.4 C.4.2.1.5: cannot calculate number of matches
OUT_OF_RESOURCES_SUBOPERATIONS = 0xA702  # PS3.4 C.4.2.1.5: cannot perform sub-operations
MOVE_DESTINATION_UNKNOWN = 0xA801  # PS3.4 C.4.2.1.5
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900  # C.4.2 Error (A9xx)
IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900  # same code in Q/R (PS3.4 C.4.1.1.4)
CANNOT_UNDERSTAND = 0xC000  # C.4.3 Error: Cannot understand (Cxxx)
COERCION_OF_DATA_ELEMENTS = 0xB000  # PS3.4 B.2.3 (warning)
SUBOPERATIONS_COMPLETE_WITH_FAILURES = 0xB000  # PS3.4 C.4.2.1.5 (warning), same code
ELEMENTS_DISCARDED = 0xB006  # PS3.4 B.2.3 (warning)
DATASET_DOES_NOT_MATCH_SOP_CLASS_WARNING = 0xB007  # PS3.4 B.2.3 (warning)


class StatusCategory(StrEnum):
    """The five status types of PS3.7 Annex C."""

    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"
    CANCEL = "cancel"
    PENDING = "pending"


_NAMES: dict[int, str] = {
    SUCCESS: "Success",
    WARNING: "Warning",
    PENDING: "Pending",
    PENDING_WARNING: "Pending (optional keys not supported)",
    CANCEL: "Cancel",
    NO_SUCH_ATTRIBUTE: "No such attribute",
    INVALID_ATTRIBUTE_VALUE: "Invalid attribute value",
    ATTRIBUTE_LIST_ERROR: "Attribute list error",
    PROCESSING_FAILURE: "Processing failure",
    DUPLICATE_SOP_INSTANCE: "Duplicate SOP instance",
    NO_SUCH_OBJECT_INSTANCE: "No such object instance",
    NO_SUCH_EVENT_TYPE: "No such event type",
    NO_SUCH_ARGUMENT: "No such argument",
    INVALID_ARGUMENT_VALUE: "Invalid argument value",
    ATTRIBUTE_VALUE_OUT_OF_RANGE: "Attribute value out of range",
    INVALID_OBJECT_INSTANCE: "Invalid object instance",
    NO_SUCH_SOP_CLASS: "No such SOP class",
    CLASS_INSTANCE_CONFLICT: "Class-instance conflict",
    MISSING_ATTRIBUTE: "Missing attribute",
    MISSING_ATTRIBUTE_VALUE: "Missing attribute value",
    SOP_CLASS_NOT_SUPPORTED: "Refused: SOP class not supported",
    NO_SUCH_ACTION_TYPE: "No such action type",
    NOT_AUTHORIZED: "Refused: Not authorized",
    DUPLICATE_INVOCATION: "Duplicate invocation",
    UNRECOGNIZED_OPERATION: "Unrecognized operation",
    MISTYPED_ARGUMENT: "Mistyped argument",
    RESOURCE_LIMITATION: "Resource limitation",
    OUT_OF_RESOURCES_MATCHES: "Refused: Out of resources (unable to calculate number of matches)",
    OUT_OF_RESOURCES_SUBOPERATIONS: "Refused: Out of resources (unable to perform sub-operations)",
    MOVE_DESTINATION_UNKNOWN: "Refused: Move destination unknown",
    COERCION_OF_DATA_ELEMENTS: "Warning: Coercion of data elements / sub-operations complete "
    "with failures",
    ELEMENTS_DISCARDED: "Warning: Elements discarded",
    DATASET_DOES_NOT_MATCH_SOP_CLASS_WARNING: "Warning: Data set does not match SOP class",
}

#: Warnings outside the 0001/Bxxx ranges (PS3.7 C.5.4, C.5.5).
_WARNING_CODES = frozenset({WARNING, ATTRIBUTE_LIST_ERROR, ATTRIBUTE_VALUE_OUT_OF_RANGE})


def status_category(status: int) -> StatusCategory:
    """Classify a status code by PS3.7 Annex C.

    Success is 0000; Pending FF00/FF01; Cancel FE00; Warning 0001, Bxxx,
    0107 and 0116; everything else (Axxx, Cxxx, 01xx, 02xx and any code the
    standard does not define) is a failure, so that an unknown code is never
    mistaken for success.
    """
    if status == SUCCESS:
        return StatusCategory.SUCCESS
    if status in (PENDING, PENDING_WARNING):
        return StatusCategory.PENDING
    if status == CANCEL:
        return StatusCategory.CANCEL
    if status in _WARNING_CODES or status & 0xF000 == 0xB000:
        return StatusCategory.WARNING
    return StatusCategory.FAILURE


def status_name(status: int) -> str:
    """A human name for ``status``; ranges get their Annex C class name."""
    name = _NAMES.get(status)
    if name is not None:
        return name
    high = status & 0xF000
    if status & 0xFF00 == 0xA700:
        return "Refused: Out of resources"
    if status & 0xFF00 == 0xA900:
        return "Error: Data set does not match SOP class"
    if high == 0xA000:
        return "Failure"
    if high == 0xC000:
        return "Error: Cannot understand"
    if high == 0xB000:
        return "Warning"
    return "Unknown status"


def describe_status(status: int) -> str:
    """``0x0212 Mistyped argument (failure)``: the form used in logs."""
    return f"0x{status:04X} {status_name(status)} ({status_category(status)})"
