"""PS3.8 Table 9-10, cell by cell, with no sockets.

Every one of the 13 x 19 (state, event) cells is a test. Cells the standard
fills in are checked against an independent transcription of what each
action must do (effects and next state); blank cells must either refuse a
local primitive or ignore the event. A cell missing from either side fails.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pynetdicom.fsm import TRANSITION_TABLE as PYNETDICOM_TABLE

from pacsref.ul import codec
from pacsref.ul.constants import AbortReason, AbortSource, PDUType, Role
from pacsref.ul.effects import (
    CloseTransport,
    Indicate,
    OpenTransport,
    SendPDU,
    StartARTIM,
    StopARTIM,
)
from pacsref.ul.errors import LocalProtocolError
from pacsref.ul.events import (
    Abort,
    DataTransfer,
    PresentationDataValue,
    ReleaseRequest,
    ReleaseResponse,
)
from pacsref.ul.machine import UpperLayer
from pacsref.ul.states import LOCAL_USER_EVENTS, Action, Event, State
from pacsref.ul.table import NEXT_STATE, TRANSITIONS, BlankCell, blank_cell

from .helpers import (
    ABORT_PDU,
    AC_PDU,
    ACCEPT,
    DATA,
    P_DATA_PDU,
    REJECT,
    REQUEST,
    RJ_PDU,
    RQ_PDU,
    UNRECOGNIZED_PDU,
)

Fire = Callable[[UpperLayer], list]

#: How to raise each event on a machine.
FIRE: dict[Event, Fire] = {
    Event.Evt1: lambda ul: ul.send(REQUEST),
    Event.Evt2: lambda ul: ul.connection_made(),
    Event.Evt3: lambda ul: ul.receive_data(AC_PDU),
    Event.Evt4: lambda ul: ul.receive_data(RJ_PDU),
    Event.Evt5: lambda ul: ul.connection_made(),
    Event.Evt6: lambda ul: ul.receive_data(RQ_PDU),
    Event.Evt7: lambda ul: ul.send(ACCEPT),
    Event.Evt8: lambda ul: ul.send(REJECT),
    Event.Evt9: lambda ul: ul.send(DATA),
    Event.Evt10: lambda ul: ul.receive_data(P_DATA_PDU),
    Event.Evt11: lambda ul: ul.send(ReleaseRequest()),
    Event.Evt12: lambda ul: ul.receive_data(codec.RELEASE_RQ),
    Event.Evt13: lambda ul: ul.receive_data(codec.RELEASE_RP),
    Event.Evt14: lambda ul: ul.send(ReleaseResponse()),
    Event.Evt15: lambda ul: ul.send(Abort()),
    Event.Evt16: lambda ul: ul.receive_data(ABORT_PDU),
    Event.Evt17: lambda ul: ul.connection_lost(),
    Event.Evt18: lambda ul: ul.artim_expired(),
    Event.Evt19: lambda ul: ul.receive_data(UNRECOGNIZED_PDU),
}


def _shape(effects: list) -> list[str]:
    """Effects as short strings, e.g. 'Send:A_ABORT', 'Indicate:Abort'."""
    out = []
    for effect in effects:
        if isinstance(effect, SendPDU):
            out.append(f"Send:{effect.pdu_type.name}")
        elif isinstance(effect, Indicate):
            out.append(f"Indicate:{type(effect.primitive).__name__}")
        else:
            out.append(type(effect).__name__)
    return out


#: What each action does, transcribed independently from PS3.8 Tables 9-7..9-9.
#: Values are (effects, next state). AA-1/AA-7/AA-8 depend on the event.
EXPECTED: dict[Action, tuple[list[str], State]] = {
    Action.AE_1: (["OpenTransport"], State.Sta4),
    Action.AE_2: (["Send:A_ASSOCIATE_RQ"], State.Sta5),
    Action.AE_3: (["Indicate:AssociateAccept"], State.Sta6),
    Action.AE_4: (["Indicate:AssociateReject", "CloseTransport"], State.Sta1),
    Action.AE_5: (["StartARTIM"], State.Sta2),
    Action.AE_6: (["StopARTIM", "Indicate:AssociateRequest"], State.Sta3),
    Action.AE_7: (["Send:A_ASSOCIATE_AC"], State.Sta6),
    Action.AE_8: (["Send:A_ASSOCIATE_RJ", "StartARTIM"], State.Sta13),
    Action.DT_1: (["Send:P_DATA_TF"], State.Sta6),
    Action.DT_2: (["Indicate:DataTransfer"], State.Sta6),
    Action.AR_1: (["Send:A_RELEASE_RQ"], State.Sta7),
    Action.AR_2: (["Indicate:ReleaseRequest"], State.Sta8),
    Action.AR_3: (["Indicate:ReleaseResponse", "CloseTransport"], State.Sta1),
    Action.AR_4: (["Send:A_RELEASE_RP", "StartARTIM"], State.Sta13),
    Action.AR_5: (["StopARTIM", "Indicate:TransportClosed"], State.Sta1),
    Action.AR_6: (["Indicate:DataTransfer"], State.Sta7),
    Action.AR_7: (["Send:P_DATA_TF"], State.Sta8),
    Action.AR_8: (["Indicate:ReleaseRequest"], State.Sta10),  # acceptor; requestor: Sta9
    Action.AR_9: (["Send:A_RELEASE_RP"], State.Sta11),
    Action.AR_10: (["Indicate:ReleaseResponse"], State.Sta12),
    Action.AA_1: (["Indicate:Abort", "Send:A_ABORT", "StartARTIM"], State.Sta13),
    Action.AA_2: (["StopARTIM", "CloseTransport"], State.Sta1),
    Action.AA_3: (["Indicate:Abort", "CloseTransport"], State.Sta1),
    Action.AA_4: (["Indicate:TransportClosed"], State.Sta1),
    Action.AA_5: (["StopARTIM", "Indicate:TransportClosed"], State.Sta1),
    Action.AA_6: ([], State.Sta13),
    Action.AA_7: (["Indicate:Abort", "Send:A_ABORT"], State.Sta13),
    Action.AA_8: (["Send:A_ABORT", "Indicate:Abort", "StartARTIM"], State.Sta13),
}

ALL_CELLS = [(s, e) for s in State for e in Event]


def _machine(state: State, event: Event) -> UpperLayer:
    role = Role.REQUESTOR if event in (Event.Evt1, Event.Evt2) else Role.ACCEPTOR
    ul = UpperLayer(role)
    if state is State.Sta4:
        ul.send(REQUEST)  # AE-1 leaves the request pending, as it really is in Sta4
    ul.state = state
    ul._accepted_ids = frozenset({1})  # as if context 1 had been accepted (AE-3/AE-7)
    return ul


def test_table_is_pynetdicom_transcription() -> None:
    """Our table has exactly the 123 cells of PS3.8 Table 9-10 as pynetdicom reads them."""
    ours = {(e.name, s.name): a.value for (s, e), a in TRANSITIONS.items()}
    assert ours == PYNETDICOM_TABLE


def test_every_action_has_expectations_and_is_used() -> None:
    """Each action in the standard is used by the table and has a transcribed expectation."""
    assert set(EXPECTED) == set(Action)
    assert set(TRANSITIONS.values()) == set(Action)
    assert set(NEXT_STATE) | {Action.AE_6, Action.AR_8} == set(Action)


@pytest.mark.parametrize(
    ("state", "event"), ALL_CELLS, ids=[f"{s.name}+{e.name}" for s, e in ALL_CELLS]
)
def test_cell(state: State, event: Event) -> None:
    """Each (state, event) cell does what PS3.8 Table 9-10 prescribes, or is refused/ignored."""
    ul = _machine(state, event)
    action = TRANSITIONS.get((state, event))
    if action is None:
        if blank_cell(state, event) is BlankCell.REFUSE_LOCAL:
            assert event in LOCAL_USER_EVENTS
            with pytest.raises(LocalProtocolError):
                FIRE[event](ul)
        else:
            assert FIRE[event](ul) == []
        assert ul.state is state
        return
    effects = FIRE[event](ul)
    expected_effects, expected_state = EXPECTED[action]
    if action is Action.AA_1 and event is Event.Evt15:
        expected_effects = expected_effects[1:]  # our own abort is not indicated back to us
    if (state, event) == (State.Sta2, Event.Evt16):
        expected_effects = ["Indicate:Abort", *expected_effects]  # so the server logs it
    assert (_shape(effects), ul.state) == (expected_effects, expected_state)


def test_ar8_requestor_goes_to_sta9() -> None:
    """Sta7 + Evt12 -> AR-8 -> Sta9 for the association-requestor (release collision)."""
    ul = UpperLayer(Role.REQUESTOR)
    ul.state = State.Sta7
    assert _shape(ul.receive_data(codec.RELEASE_RQ)) == ["Indicate:ReleaseRequest"]
    assert ul.state is State.Sta9


def test_ae6_unsupported_protocol_version_is_rejected_by_provider() -> None:
    """Sta2 + Evt6 -> AE-6: protocol version without bit 0 -> A-ASSOCIATE-RJ (1, 2, 2), Sta13."""
    ul = UpperLayer(Role.ACCEPTOR)
    ul.connection_made()
    rq = bytearray(RQ_PDU)
    rq[6:8] = b"\x00\x02"
    effects = ul.receive_data(bytes(rq))
    assert _shape(effects) == [
        "StopARTIM",
        "Indicate:ProviderRejected",
        "Send:A_ASSOCIATE_RJ",
        "StartARTIM",
    ]
    assert effects[2].data == bytes([3, 0, 0, 0, 0, 4, 0, 1, 2, 2])
    assert ul.state is State.Sta13


@pytest.mark.parametrize(
    ("pdu", "reason"),
    [
        (UNRECOGNIZED_PDU, AbortReason.UNRECOGNIZED_PDU),
        (RQ_PDU, AbortReason.UNEXPECTED_PDU),
        (b"\x05\x00\x00\x00\x00\x05\x00\x00\x00\x00\x00", AbortReason.INVALID_PDU_PARAMETER_VALUE),
    ],
    ids=["unrecognized", "unexpected", "invalid"],
)
def test_aa8_reason(pdu: bytes, reason: AbortReason) -> None:
    """Sta6: an unrecognised, unexpected or invalid PDU is answered by A-ABORT (2, reason)."""
    ul = UpperLayer(Role.ACCEPTOR)
    ul.state = State.Sta6
    effects = ul.receive_data(pdu)
    assert effects[0] == SendPDU(
        PDUType.A_ABORT, codec.encode_abort(AbortSource.SERVICE_PROVIDER, reason)
    )
    assert isinstance(effects[1], Indicate) and effects[1].primitive.reason is reason
    assert ul.state is State.Sta13


def test_input_after_invalid_pdu_is_discarded() -> None:
    """After Evt19 the byte stream cannot be resynchronised: later bytes are ignored."""
    ul = UpperLayer(Role.ACCEPTOR)
    ul.state = State.Sta6
    ul.receive_data(UNRECOGNIZED_PDU + P_DATA_PDU)
    assert ul.receive_data(P_DATA_PDU) == []
    assert ul.state is State.Sta13


def test_effect_types_are_the_documented_set() -> None:
    """Only the six effect types of pacsref.ul.effects ever appear."""
    kinds = {SendPDU, StartARTIM, StopARTIM, OpenTransport, CloseTransport, Indicate}
    for state, event in ALL_CELLS:
        ul = _machine(state, event)
        try:
            effects = FIRE[event](ul)
        except LocalProtocolError:
            continue
        assert {type(e) for e in effects} <= kinds


def test_pdv_for_unaccepted_context_is_invalid_pdu() -> None:
    """PS3.8 9.3.5.1: a PDV on a context that was not accepted -> A-ABORT (2, 6), Sta13."""
    ul = UpperLayer(Role.ACCEPTOR)
    ul.connection_made()
    ul.receive_data(RQ_PDU)
    ul.send(ACCEPT)
    effects = ul.receive_data(
        codec.encode_p_data(DataTransfer((PresentationDataValue(3, True, True, b"x"),)))
    )
    assert effects[0] == SendPDU(
        PDUType.A_ABORT,
        codec.encode_abort(AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER_VALUE),
    )
    assert "not accepted" in effects[1].primitive.detail


def test_p_data_before_the_association_is_accepted_is_unexpected() -> None:
    """Sta3 + Evt10 is AA-8 with reason unexpected-PDU (2), whatever contexts the PDU names:
    none is accepted yet, but its arrival, not its context, is what is wrong."""
    ul = UpperLayer(Role.ACCEPTOR)
    ul.connection_made()
    ul.receive_data(RQ_PDU)
    assert ul.state is State.Sta3
    effects = ul.receive_data(P_DATA_PDU)
    assert effects[0] == SendPDU(
        PDUType.A_ABORT,
        codec.encode_abort(AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU),
    )
    assert effects[1].primitive.reason is AbortReason.UNEXPECTED_PDU
    assert ul.state is State.Sta13


def test_one_pdu_at_a_time_lets_the_user_answer_before_the_next() -> None:
    """``feed`` + ``next_pdu_effects``: an A-ASSOCIATE-RQ and a P-DATA-TF in one read are
    acted on one after the other, so an acceptance sent in between takes effect first and
    the P-DATA-TF is indicated, as it would be had they arrived in two reads."""
    ul = UpperLayer(Role.ACCEPTOR)
    ul.connection_made()
    ul.feed(RQ_PDU + P_DATA_PDU)
    first = ul.next_pdu_effects()
    assert first is not None and isinstance(first[-1], Indicate)
    assert ul.state is State.Sta3
    ul.send(ACCEPT)
    second = ul.next_pdu_effects()
    assert second is not None and [type(e) for e in second] == [Indicate]
    assert isinstance(second[0].primitive, DataTransfer)
    assert ul.next_pdu_effects() is None
    assert ul.state is State.Sta6


def test_fixed_length_pdu_error_names_the_pdu_as_ps38_does() -> None:
    """The abort's detail names the PDU as PS3.8 spells it, not as the code does."""
    ul = UpperLayer(Role.ACCEPTOR)
    ul.state = State.Sta6
    effects = ul.receive_data(b"\x05\x00\x00\x00\x00\x05\x00\x00\x00\x00\x00")
    assert effects[1].primitive.detail.startswith("A-RELEASE-RQ PDU length is 5,")
