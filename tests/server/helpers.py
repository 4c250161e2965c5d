"""PDU and command builders for server tests (our codec; interop tests use real peers)."""

from __future__ import annotations

from pacsref.dimse import decode_command, encode_command
from pacsref.testing.harness import Connection, ServerHarness
from pacsref.ul import codec
from pacsref.ul.constants import PDUType
from pacsref.ul.events import (
    AssociateAccept,
    AssociateRequest,
    DataTransfer,
    PresentationContextProposal,
    PresentationDataValue,
    UserIdentity,
    UserInformation,
)

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
#: The storage class of the tests' own store add-ins (not a standard one).
TEST_STORE_SYNTAX = "1.2.826.0.1.3680043.9.7.20"


def associate_rq(
    called: str = "PACSREF",
    calling: str = "MODALITY",
    contexts: tuple[PresentationContextProposal, ...] = (
        PresentationContextProposal(1, VERIFICATION, (IMPLICIT,)),
    ),
    max_pdu: int = 16384,
    identity: UserIdentity | None = None,
) -> bytes:
    """An encoded A-ASSOCIATE-RQ, with ``identity`` as its User Identity sub-item."""
    return codec.encode_associate_rq(
        AssociateRequest(
            called_ae_title=called,
            calling_ae_title=calling,
            presentation_contexts=contexts,
            user_information=UserInformation(
                max_pdu, "1.2.826.0.1.3680043.9.1", user_identity=identity
            ),
        )
    )


def association_answer(
    harness: ServerHarness, identity: UserIdentity | None, conn: Connection | None = None
) -> AssociateAccept | tuple[int, ...]:
    """Send an A-ASSOCIATE-RQ carrying ``identity`` and let the add-ins decide: the decoded
    A-ASSOCIATE-AC, or the (result, source, reason) of the A-ASSOCIATE-RJ."""
    conn = harness.connect() if conn is None else conn
    conn.send(associate_rq(identity=identity))
    harness.threadpool.run_all()
    [(pdu_type, body)] = conn.received()
    if pdu_type is PDUType.A_ASSOCIATE_RJ:
        return tuple(body[1:4])
    assert pdu_type is PDUType.A_ASSOCIATE_AC
    return codec.decode_associate_ac(body)


def echo_rq(message_id: int = 1, context_id: int = 1, **extra: object) -> bytes:
    """A P-DATA-TF carrying a C-ECHO-RQ command (Implicit VR LE)."""
    fields: dict[int, object] = {
        0x0002: VERIFICATION,
        0x0100: 0x0030,
        0x0110: message_id,
        0x0800: 0x0101,
    }
    fields.update({int(k[1:], 16): v for k, v in extra.items()})
    fields = {k: v for k, v in fields.items() if v is not None}
    return command_pdu(fields, context_id)


def command_pdu(fields: dict[int, object], context_id: int = 1) -> bytes:
    """One P-DATA-TF with the whole command set in one last fragment."""
    pdv = PresentationDataValue(context_id, True, True, encode_command(fields))
    return codec.encode_p_data(DataTransfer((pdv,)))


def responses(pdus: list[tuple[PDUType, bytes]]) -> list[dict[int, object]]:
    """Decode the command sets of the P-DATA-TF PDUs among ``pdus`` (reassembling fragments)."""
    out: list[dict[int, object]] = []
    buffer = b""
    for pdu_type, body in pdus:
        if pdu_type is not PDUType.P_DATA_TF:
            continue
        for pdv in codec.decode_p_data(body).values:
            if pdv.is_command:
                buffer += pdv.data
                if pdv.is_last:
                    out.append(decode_command(buffer))
                    buffer = b""
    return out


def associate_store_and_echo(
    harness: ServerHarness, store_syntax: str, conn: Connection | None = None
) -> Connection:
    """An accepted association: context 1 ``store_syntax``, context 3 Verification.

    On ``conn`` when given (a connection a test built on its own transport).
    """
    conn = conn or harness.connect()
    conn.send(
        associate_rq(
            contexts=(
                PresentationContextProposal(1, store_syntax, (IMPLICIT,)),
                PresentationContextProposal(3, VERIFICATION, (IMPLICIT,)),
            )
        )
    )
    [(pdu_type, body)] = conn.received()
    assert pdu_type is PDUType.A_ASSOCIATE_AC, body
    return conn
