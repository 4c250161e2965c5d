"""Wire codes of the DICOM Upper Layer protocol (PS3.8 section 9.3).

Every number that travels in a PDU header or in a reject/abort PDU is named
here as an ``IntEnum`` so that logs, tests and error messages say what a code
means instead of printing a bare integer.
"""

from __future__ import annotations

from enum import IntEnum

#: Application Context Name for DICOM (PS3.7 Annex A.2.1).
DICOM_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"

#: Implicit VR Little Endian, the default transfer syntax every SCP must support.
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"

#: The PDU header is type (1), reserved (1), length (4) (PS3.8 9.3.1).
PDU_HEADER_LENGTH = 6

#: The smallest Max PDU Length we accept from a peer: one PDV item header
#: (4 length + 1 context ID + 1 control header) plus at least one byte of data.
MINIMUM_PEER_MAX_PDU = 7

#: The largest A-ASSOCIATE-RQ/AC we are willing to buffer. PS3.8 sets no
#: bound; real ones are a few KiB even with hundreds of contexts.
MAXIMUM_ASSOCIATION_PDU = 1 << 20


class PDUType(IntEnum):
    """PDU types (PS3.8 Table 9-1)."""

    #: A-ASSOCIATE-RQ PDU (PS3.8 9.3.2).
    A_ASSOCIATE_RQ = 0x01
    #: A-ASSOCIATE-AC PDU (PS3.8 9.3.3).
    A_ASSOCIATE_AC = 0x02
    #: A-ASSOCIATE-RJ PDU (PS3.8 9.3.4).
    A_ASSOCIATE_RJ = 0x03
    #: P-DATA-TF PDU (PS3.8 9.3.5).
    P_DATA_TF = 0x04
    #: A-RELEASE-RQ PDU (PS3.8 9.3.6).
    A_RELEASE_RQ = 0x05
    #: A-RELEASE-RP PDU (PS3.8 9.3.7).
    A_RELEASE_RP = 0x06
    #: A-ABORT PDU (PS3.8 9.3.8).
    A_ABORT = 0x07

    @property
    def label(self) -> str:
        """The PDU's name as PS3.8 spells it (``A-RELEASE-RQ``), for messages."""
        return self.name.replace("_", "-")


class RejectResult(IntEnum):
    """A-ASSOCIATE-RJ Result field (PS3.8 Table 9-21)."""

    #: rejected-permanent
    PERMANENT = 1
    #: rejected-transient
    TRANSIENT = 2


class RejectSource(IntEnum):
    """A-ASSOCIATE-RJ Source field (PS3.8 Table 9-21)."""

    #: DICOM UL service-user
    SERVICE_USER = 1
    #: DICOM UL service-provider (ACSE related function)
    SERVICE_PROVIDER_ACSE = 2
    #: DICOM UL service-provider (Presentation related function)
    SERVICE_PROVIDER_PRESENTATION = 3


class RejectReason:
    """A-ASSOCIATE-RJ Reason/Diag. field (PS3.8 Table 9-21).

    The meaning of a value depends on the source, hence the source prefix;
    plain ints rather than an ``IntEnum`` because equal values for different
    sources would otherwise collapse into aliases of one member.
    """

    #: source 1: no-reason-given
    USER_NO_REASON = 1
    #: source 1: application-context-name-not-supported
    USER_APPLICATION_CONTEXT_NOT_SUPPORTED = 2
    #: source 1: calling-AE-title-not-recognized
    USER_CALLING_AE_NOT_RECOGNIZED = 3
    #: source 1: called-AE-title-not-recognized
    USER_CALLED_AE_NOT_RECOGNIZED = 7
    #: source 2: no-reason-given
    ACSE_NO_REASON = 1
    #: source 2: protocol-version-not-supported
    ACSE_PROTOCOL_VERSION_NOT_SUPPORTED = 2
    #: source 3: temporary-congestion
    PRESENTATION_TEMPORARY_CONGESTION = 1
    #: source 3: local-limit-exceeded
    PRESENTATION_LOCAL_LIMIT_EXCEEDED = 2


class AbortSource(IntEnum):
    """A-ABORT Source field (PS3.8 Table 9-26)."""

    #: DICOM UL service-user (initiated abort)
    SERVICE_USER = 0
    #: reserved
    RESERVED = 1
    #: DICOM UL service-provider (initiated abort)
    SERVICE_PROVIDER = 2


class AbortReason(IntEnum):
    """A-ABORT Reason/Diag. field when the source is the provider (PS3.8 Table 9-26)."""

    #: reason-not-specified
    NOT_SPECIFIED = 0
    #: unrecognized-PDU
    UNRECOGNIZED_PDU = 1
    #: unexpected-PDU
    UNEXPECTED_PDU = 2
    #: unrecognized-PDU parameter
    UNRECOGNIZED_PDU_PARAMETER = 4
    #: unexpected-PDU parameter
    UNEXPECTED_PDU_PARAMETER = 5
    #: invalid-PDU-parameter value
    INVALID_PDU_PARAMETER_VALUE = 6


class ContextResult(IntEnum):
    """Presentation context Result/Reason (PS3.8 Table 9-18)."""

    #: acceptance
    ACCEPTANCE = 0
    #: user-rejection
    USER_REJECTION = 1
    #: no-reason (provider rejection)
    NO_REASON = 2
    #: abstract-syntax-not-supported (provider rejection)
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
    #: transfer-syntaxes-not-supported (provider rejection)
    TRANSFER_SYNTAXES_NOT_SUPPORTED = 4


class Role(IntEnum):
    """Which side of the association this upper layer plays (PS3.8 9.2)."""

    #: association-requestor: issued the TRANSPORT CONNECT (Evt1)
    REQUESTOR = 1
    #: association-acceptor: received the TRANSPORT CONNECT indication (Evt5)
    ACCEPTOR = 2
