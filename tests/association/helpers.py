"""Shared UIDs and request builders for the association negotiation tests."""

from __future__ import annotations

from collections.abc import Iterable

from pacsref.association import AcceptorConfig, ContextTable, NegotiationResult, SupportedContext
from pacsref.ul.constants import DICOM_APPLICATION_CONTEXT, ContextResult
from pacsref.ul.events import (
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    PresentationContextProposal,
    RoleSelection,
    UserInformation,
)

VERIFICATION = "1.2.840.10008.1.1"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
UNKNOWN_SOP = "1.2.3.4.5.6"

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"

PEER_IMPL_UID = "1.2.826.0.1.3680043.9.3811.2.0.2"
CONFIG = AcceptorConfig(
    ae_title="PACSREF",
    implementation_class_uid="1.2.3.999",
    implementation_version_name="TEST_1",
    max_pdu_length=32768,
)


def table(*contexts: SupportedContext) -> ContextTable:
    """A table with verification (SCP) plus whatever else a test needs."""
    return ContextTable((SupportedContext(VERIFICATION, (EXPLICIT, IMPLICIT)), *contexts))


def request(
    *contexts: tuple[int, str, Iterable[str]],
    roles: Iterable[RoleSelection] = (),
    max_pdu: int = 16384,
    async_operations: tuple[int, int] | None = None,
    application_context: str = DICOM_APPLICATION_CONTEXT,
    protocol_version: int = 1,
    other_items: tuple[tuple[int, bytes], ...] = (),
) -> AssociateRequest:
    """An A-ASSOCIATE-RQ from STORESCU to PACSREF with the given contexts."""
    return AssociateRequest(
        called_ae_title="PACSREF",
        calling_ae_title="STORESCU",
        presentation_contexts=tuple(
            PresentationContextProposal(cid, syntax, tuple(ts)) for cid, syntax, ts in contexts
        ),
        user_information=UserInformation(
            max_pdu_length=max_pdu,
            implementation_class_uid=PEER_IMPL_UID,
            implementation_version_name="PEER_9",
            async_operations=async_operations,
            role_selections=tuple(roles),
            other_items=other_items,
        ),
        application_context=application_context,
        protocol_version=protocol_version,
    )


def accept_of(result: NegotiationResult) -> AssociateAccept:
    """The A-ASSOCIATE-AC, failing the test with the log lines if it was a reject."""
    assert isinstance(result.response, AssociateAccept), result.log_lines()
    return result.response


def reject_of(result: NegotiationResult) -> AssociateReject:
    """The A-ASSOCIATE-RJ, failing the test if the association was accepted."""
    assert isinstance(result.response, AssociateReject), result.response
    return result.response


def results_by_id(accept: AssociateAccept) -> dict[int, tuple[ContextResult, str]]:
    """Context ID -> (result, transfer syntax) of an AC."""
    return {r.context_id: (r.result, r.transfer_syntax) for r in accept.presentation_contexts}
