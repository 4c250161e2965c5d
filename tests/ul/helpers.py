"""Shared fixtures for upper-layer tests: sample primitives and encoded PDUs."""

from __future__ import annotations

from pacsref.ul import codec
from pacsref.ul.constants import (
    AbortReason,
    AbortSource,
    ContextResult,
    RejectResult,
    RejectSource,
)
from pacsref.ul.events import (
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    DataTransfer,
    PresentationContextProposal,
    PresentationContextResult,
    PresentationDataValue,
    UserInformation,
)

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"

USER_INFO = UserInformation(
    max_pdu_length=16384,
    implementation_class_uid="1.2.826.0.1.3680043.9.9999",
    implementation_version_name="TEST_01",
)

REQUEST = AssociateRequest(
    called_ae_title="PACSREF",
    calling_ae_title="MODALITY",
    presentation_contexts=(PresentationContextProposal(1, VERIFICATION, (EXPLICIT, IMPLICIT)),),
    user_information=USER_INFO,
)

ACCEPT = AssociateAccept(
    called_ae_title="PACSREF",
    calling_ae_title="MODALITY",
    presentation_contexts=(PresentationContextResult(1, ContextResult.ACCEPTANCE, EXPLICIT),),
    user_information=USER_INFO,
)

REJECT = AssociateReject(RejectResult.PERMANENT, RejectSource.SERVICE_USER, 7)

DATA = DataTransfer((PresentationDataValue(1, True, True, b"\x00" * 10),))

RQ_PDU = codec.encode_associate_rq(REQUEST)
AC_PDU = codec.encode_associate_ac(ACCEPT)
RJ_PDU = codec.encode_associate_rj(REJECT)
P_DATA_PDU = codec.encode_p_data(DATA)
ABORT_PDU = codec.encode_abort(AbortSource.SERVICE_USER, AbortReason.NOT_SPECIFIED)
#: A PDU whose type (0x0A) PS3.8 does not define: Evt19.
UNRECOGNIZED_PDU = b"\x0a\x00\x00\x00\x00\x04\x00\x00\x00\x00"
