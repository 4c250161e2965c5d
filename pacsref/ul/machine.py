"""The sans-IO DICOM upper layer protocol machine (PS3.8 section 9.2).

:class:`UpperLayer` owns the state (Sta1..Sta13) of one transport connection
for either role. Its inputs are the events of PS3.8 Table 9-6:

- ``send(primitive)``: primitives from the local user (Evt1, 7, 8, 9, 11, 14, 15);
- ``connection_made()``: the transport is up (Evt2 for a requestor, Evt5 for
  an acceptor);
- ``receive_data(bytes)``: PDUs from the peer (Evt3, 4, 6, 10, 12, 13, 16, 19);
  or ``feed(bytes)`` and then ``next_pdu_effects()`` for one PDU at a time;
- ``connection_lost()``: Evt17; ``artim_expired()``: Evt18.

Each input returns the list of :mod:`~pacsref.ul.effects` the action of
Table 9-10 calls for; the caller performs them in order. The machine imports
no networking, timer or threading code, so every cell of the table can be
tested as data in, data out.
"""

from __future__ import annotations

from collections.abc import Callable

from pacsref.ul import codec
from pacsref.ul.constants import (
    AbortReason,
    AbortSource,
    ContextResult,
    PDUType,
    RejectResult,
    Role,
)
from pacsref.ul.effects import (
    CloseTransport,
    Effect,
    Indicate,
    OpenTransport,
    SendPDU,
    StartARTIM,
    StopARTIM,
)
from pacsref.ul.errors import LocalProtocolError, MalformedPDU, RemoteProtocolError
from pacsref.ul.events import (
    REJECT_PROTOCOL_VERSION,
    Abort,
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    DataTransfer,
    ProviderRejected,
    ReleaseRequest,
    ReleaseResponse,
    TransportClosed,
)
from pacsref.ul.framing import PDUFramer
from pacsref.ul.states import Action, Event, State
from pacsref.ul.table import NEXT_STATE, TRANSITIONS, BlankCell, blank_cell

#: Which event a received PDU type raises (PS3.8 Table 9-6).
_PDU_EVENTS: dict[PDUType, Event] = {
    PDUType.A_ASSOCIATE_RQ: Event.Evt6,
    PDUType.A_ASSOCIATE_AC: Event.Evt3,
    PDUType.A_ASSOCIATE_RJ: Event.Evt4,
    PDUType.P_DATA_TF: Event.Evt10,
    PDUType.A_RELEASE_RQ: Event.Evt12,
    PDUType.A_RELEASE_RP: Event.Evt13,
    PDUType.A_ABORT: Event.Evt16,
}

_DECODERS: dict[PDUType, Callable[[bytes], object]] = {
    PDUType.A_ASSOCIATE_RQ: codec.decode_associate_rq,
    PDUType.A_ASSOCIATE_AC: codec.decode_associate_ac,
    PDUType.A_ASSOCIATE_RJ: codec.decode_associate_rj,
    PDUType.P_DATA_TF: codec.decode_p_data,
    PDUType.A_RELEASE_RQ: lambda body: ReleaseRequest(),
    PDUType.A_RELEASE_RP: lambda body: ReleaseResponse(),
    PDUType.A_ABORT: codec.decode_abort,
}

#: Which event a primitive from the local user raises (PS3.8 Table 9-6).
_PRIMITIVE_EVENTS: dict[type, Event] = {
    AssociateRequest: Event.Evt1,
    AssociateAccept: Event.Evt7,
    AssociateReject: Event.Evt8,
    DataTransfer: Event.Evt9,
    ReleaseRequest: Event.Evt11,
    ReleaseResponse: Event.Evt14,
    Abort: Event.Evt15,
}

#: Max PDU length the framer applies before an association has announced one.
_PRE_ASSOCIATION_PDATA_LIMIT = 16384


class UpperLayer:
    """One DICOM UL protocol machine for one transport connection.

    Args:
        role: association-requestor or association-acceptor; only AR-8 and
            the transport events depend on it.
    """

    __slots__ = (
        "_accepted_ids",
        "_dead_input",
        "_framer",
        "_pending_request",
        "peer_max_pdu",
        "role",
        "state",
    )

    def __init__(self, role: Role) -> None:
        self.role = role
        self.state = State.Sta1
        #: The peer's Maximum Length Received (0 = unlimited), once known.
        self.peer_max_pdu = 0
        self._framer = PDUFramer(_PRE_ASSOCIATION_PDATA_LIMIT)
        self._pending_request: AssociateRequest | None = None
        self._dead_input = False
        #: IDs of the accepted presentation contexts, once the AC is sent/received.
        self._accepted_ids: frozenset[int] = frozenset()

    # -- inputs ---------------------------------------------------------------------

    def send(self, primitive: object) -> list[Effect]:
        """Handle a request or response primitive from the local user.

        Raises:
            LocalProtocolError: the primitive is not allowed in this state
                (a blank cell of Table 9-10), or a P-DATA exceeds the peer's
                maximum length.
        """
        event = _PRIMITIVE_EVENTS.get(type(primitive))
        if event is None:
            raise LocalProtocolError(f"{type(primitive).__name__} is not a UL service primitive")
        if event is Event.Evt9:
            self._check_outgoing_size(primitive)  # type: ignore[arg-type]
        return self._handle(event, primitive)

    def connection_made(self) -> list[Effect]:
        """The transport connection is open: Evt2 (requestor) or Evt5 (acceptor)."""
        event = Event.Evt2 if self.role is Role.REQUESTOR else Event.Evt5
        return self._handle(event, None)

    def receive_data(self, data: bytes) -> list[Effect]:
        """Feed bytes from the transport; returns the effects of every whole PDU.

        Never raises for anything the peer sends: a malformed or unrecognised
        PDU becomes Evt19 and further input on this connection is discarded,
        since the byte stream cannot be resynchronised.

        Every PDU of ``data`` is acted on before the caller sees any effect, so a
        user that answers an indication at once (a server accepting an
        association) should use :meth:`feed` and :meth:`next_pdu_effects`
        instead: its answer then comes before the next PDU, as it would have had
        the PDUs arrived in separate reads.
        """
        self.feed(data)
        effects: list[Effect] = []
        while (more := self.next_pdu_effects()) is not None:
            effects += more
        return effects

    def feed(self, data: bytes) -> None:
        """Take bytes from the transport, for :meth:`next_pdu_effects` to act on."""
        if self._dead_input or self.state is State.Sta1:
            return
        self._framer.feed(data)

    def next_pdu_effects(self) -> list[Effect] | None:
        """The effects of the next whole PDU fed; None when no whole PDU is left.

        Never raises for anything the peer sends (see :meth:`receive_data`).
        """
        if self._dead_input or self.state is State.Sta1:
            return None
        try:
            frame = self._framer.next_pdu()
            if frame is None:
                return None
            pdu_type, body = frame
            primitive = _DECODERS[pdu_type](body)
            if pdu_type is PDUType.P_DATA_TF and self._data_is_delivered():
                self._check_context_ids(primitive)  # type: ignore[arg-type]
        except RemoteProtocolError as exc:
            self._dead_input = True
            return self._handle(Event.Evt19, exc)
        effects = self._handle(_PDU_EVENTS[pdu_type], primitive)
        if self.state is State.Sta1:
            self._dead_input = True
        return effects

    def _data_is_delivered(self) -> bool:
        """Whether a P-DATA-TF now would be indicated to the user (DT-2, AR-6).

        Only then are its presentation context IDs checked: in any other state the PDU is
        unexpected (AA-8, reason unexpected-PDU) or ignored (Sta13), whatever it holds.
        """
        return self.state is State.Sta6 or self.state is State.Sta7

    def connection_lost(self) -> list[Effect]:
        """The transport connection closed: Evt17."""
        self._dead_input = True
        return self._handle(Event.Evt17, None)

    def artim_expired(self) -> list[Effect]:
        """The ARTIM timer fired: Evt18."""
        return self._handle(Event.Evt18, None)

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet form a whole PDU."""
        return self._framer.buffered

    # -- dispatch -------------------------------------------------------------------

    def _handle(self, event: Event, payload: object) -> list[Effect]:
        action = TRANSITIONS.get((self.state, event))
        if action is None:
            if blank_cell(self.state, event) is BlankCell.REFUSE_LOCAL:
                raise LocalProtocolError(
                    f"{event.value} is not allowed in {self.state.name} ({self.state.value})"
                )
            return []
        perform = _ACTIONS[action]
        effects, next_state = perform(self, event, payload)
        self.state = next_state if next_state is not None else NEXT_STATE[action]
        return effects

    def _check_context_ids(self, transfer: DataTransfer) -> None:
        """PS3.8 9.3.5.1: a PDV must use a presentation context that was accepted."""
        for pdv in transfer.values:
            if pdv.context_id not in self._accepted_ids:
                raise MalformedPDU(
                    f"P-DATA-TF: PDV for presentation context {pdv.context_id}, "
                    "which was not accepted on this association"
                )

    def _check_outgoing_size(self, transfer: DataTransfer) -> None:
        if not self.peer_max_pdu:
            return
        size = sum(len(pdv.data) + 6 for pdv in transfer.values)
        if size > self.peer_max_pdu:
            raise LocalProtocolError(
                f"P-DATA-TF of {size} bytes exceeds the peer's maximum length {self.peer_max_pdu}"
            )

    # -- association establishment (PS3.8 Table 9-7) -------------------------------------

    def _ae_1(self, event: Event, rq: AssociateRequest) -> _Result:
        self._pending_request = rq
        return [OpenTransport()], None

    def _ae_2(self, event: Event, payload: object) -> _Result:
        rq = self._pending_request
        if rq is None:  # pragma: no cover - Sta4 is only reachable through AE-1
            raise LocalProtocolError("no A-ASSOCIATE request is pending")
        self._framer.max_pdata_length = rq.user_information.max_pdu_length
        return [SendPDU(PDUType.A_ASSOCIATE_RQ, codec.encode_associate_rq(rq))], None

    def _ae_3(self, event: Event, ac: AssociateAccept) -> _Result:
        self.peer_max_pdu = ac.user_information.max_pdu_length
        self._accepted_ids = _accepted(ac)
        return [Indicate(ac)], None

    def _ae_4(self, event: Event, rj: AssociateReject) -> _Result:
        return [Indicate(rj), CloseTransport()], None

    def _ae_5(self, event: Event, payload: object) -> _Result:
        return [StartARTIM()], None

    def _ae_6(self, event: Event, rq: AssociateRequest) -> _Result:
        # PS3.8 9.3.2: a receiver implementing only version 1 tests only bit 0.
        if not rq.protocol_version & 1:
            reject = REJECT_PROTOCOL_VERSION
            return [
                StopARTIM(),
                Indicate(ProviderRejected(rq, reject)),
                SendPDU(PDUType.A_ASSOCIATE_RJ, codec.encode_associate_rj(reject)),
                StartARTIM(),
            ], State.Sta13
        self.peer_max_pdu = rq.user_information.max_pdu_length
        return [StopARTIM(), Indicate(rq)], State.Sta3

    def _ae_7(self, event: Event, ac: AssociateAccept) -> _Result:
        self._framer.max_pdata_length = ac.user_information.max_pdu_length
        self._accepted_ids = _accepted(ac)
        return [SendPDU(PDUType.A_ASSOCIATE_AC, codec.encode_associate_ac(ac))], None

    def _ae_8(self, event: Event, rj: AssociateReject) -> _Result:
        if rj.result not in (RejectResult.PERMANENT, RejectResult.TRANSIENT):
            raise LocalProtocolError(f"invalid reject result {rj.result}")
        return [SendPDU(PDUType.A_ASSOCIATE_RJ, codec.encode_associate_rj(rj)), StartARTIM()], None

    # -- data transfer (PS3.8 Table 9-8) ---------------------------------------------

    def _send_data(self, event: Event, transfer: DataTransfer) -> _Result:
        return [SendPDU(PDUType.P_DATA_TF, codec.encode_p_data(transfer))], None

    def _indicate(self, event: Event, primitive: object) -> _Result:
        return [Indicate(primitive)], None  # type: ignore[arg-type]

    # -- release (PS3.8 Table 9-9) ---------------------------------------------------

    def _ar_1(self, event: Event, payload: object) -> _Result:
        return [SendPDU(PDUType.A_RELEASE_RQ, codec.RELEASE_RQ)], None

    def _ar_3(self, event: Event, rp: ReleaseResponse) -> _Result:
        return [Indicate(rp), CloseTransport()], None

    def _ar_4(self, event: Event, payload: object) -> _Result:
        return [SendPDU(PDUType.A_RELEASE_RP, codec.RELEASE_RP), StartARTIM()], None

    def _ar_5(self, event: Event, payload: object) -> _Result:
        return [StopARTIM(), Indicate(TransportClosed(expected=True))], None

    def _ar_8(self, event: Event, rq: ReleaseRequest) -> _Result:
        collision = State.Sta9 if self.role is Role.REQUESTOR else State.Sta10
        return [Indicate(rq)], collision

    def _ar_9(self, event: Event, payload: object) -> _Result:
        return [SendPDU(PDUType.A_RELEASE_RP, codec.RELEASE_RP)], None

    # -- abort (PS3.8 Table 9-9) -----------------------------------------------------

    def _aa_1(self, event: Event, payload: object) -> _Result:
        effects: list[Effect] = []
        if event is not Event.Evt15:
            effects.append(Indicate(_local_abort(AbortSource.SERVICE_USER, event, payload)))
        pdu = codec.encode_abort(AbortSource.SERVICE_USER, AbortReason.NOT_SPECIFIED)
        return [*effects, SendPDU(PDUType.A_ABORT, pdu), StartARTIM()], None

    def _aa_2(self, event: Event, payload: object) -> _Result:
        effects: list[Effect] = [StopARTIM(), CloseTransport()]
        if event is Event.Evt16 and self.state is State.Sta2:
            effects.insert(0, Indicate(payload))  # type: ignore[arg-type]
        return effects, None

    def _aa_3(self, event: Event, abort: Abort) -> _Result:
        return [Indicate(abort), CloseTransport()], None

    def _aa_4(self, event: Event, payload: object) -> _Result:
        return [Indicate(TransportClosed(expected=False))], None

    def _aa_5(self, event: Event, payload: object) -> _Result:
        return [StopARTIM(), Indicate(TransportClosed(expected=True))], None

    def _aa_6(self, event: Event, payload: object) -> _Result:
        return [], None

    def _aa_7(self, event: Event, payload: object) -> _Result:
        abort = _local_abort(AbortSource.SERVICE_PROVIDER, event, payload)
        return [
            Indicate(abort),
            SendPDU(PDUType.A_ABORT, codec.encode_abort(abort.source, abort.reason)),
        ], None

    def _aa_8(self, event: Event, payload: object) -> _Result:
        abort = _local_abort(AbortSource.SERVICE_PROVIDER, event, payload)
        return [
            SendPDU(PDUType.A_ABORT, codec.encode_abort(abort.source, abort.reason)),
            Indicate(abort),
            StartARTIM(),
        ], None


_Result = tuple[list[Effect], State | None]


def _accepted(ac: AssociateAccept) -> frozenset[int]:
    return frozenset(
        pc.context_id for pc in ac.presentation_contexts if pc.result is ContextResult.ACCEPTANCE
    )


def _local_abort(source: AbortSource, event: Event, payload: object) -> Abort:
    """The abort we issue because of ``event``: the reason PS3.8 9.3.8 prescribes."""
    if isinstance(payload, MalformedPDU | RemoteProtocolError):
        reason = payload.abort_hint[1]
        detail = payload.detail
    else:
        reason = AbortReason.UNEXPECTED_PDU
        detail = f"unexpected {event.value}"
    if source is AbortSource.SERVICE_USER:
        reason = AbortReason.NOT_SPECIFIED
    return Abort(source=source, reason=reason, local=True, detail=detail)


_ACTIONS: dict[Action, Callable[[UpperLayer, Event, object], _Result]] = {
    Action.AE_1: UpperLayer._ae_1,
    Action.AE_2: UpperLayer._ae_2,
    Action.AE_3: UpperLayer._ae_3,
    Action.AE_4: UpperLayer._ae_4,
    Action.AE_5: UpperLayer._ae_5,
    Action.AE_6: UpperLayer._ae_6,
    Action.AE_7: UpperLayer._ae_7,
    Action.AE_8: UpperLayer._ae_8,
    Action.DT_1: UpperLayer._send_data,
    Action.DT_2: UpperLayer._indicate,
    Action.AR_1: UpperLayer._ar_1,
    Action.AR_2: UpperLayer._indicate,
    Action.AR_3: UpperLayer._ar_3,
    Action.AR_4: UpperLayer._ar_4,
    Action.AR_5: UpperLayer._ar_5,
    Action.AR_6: UpperLayer._indicate,
    Action.AR_7: UpperLayer._send_data,
    Action.AR_8: UpperLayer._ar_8,
    Action.AR_9: UpperLayer._ar_9,
    Action.AR_10: UpperLayer._indicate,
    Action.AA_1: UpperLayer._aa_1,
    Action.AA_2: UpperLayer._aa_2,
    Action.AA_3: UpperLayer._aa_3,
    Action.AA_4: UpperLayer._aa_4,
    Action.AA_5: UpperLayer._aa_5,
    Action.AA_6: UpperLayer._aa_6,
    Action.AA_7: UpperLayer._aa_7,
    Action.AA_8: UpperLayer._aa_8,
}
