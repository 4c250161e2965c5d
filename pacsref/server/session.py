"""What the server does with each primitive the upper layer indicates.

One :class:`AssociationSession` per connection sits between the protocol
adapter (bytes, timers) and the add-ins: it answers the A-ASSOCIATE request
(acceptance policy, then negotiation), reassembles DIMSE messages, serves
them one at a time (we answer the asynchronous operations window 1/1), and
releases only when nothing is in flight. It never touches the transport;
it hands primitives back through ``send``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pacsref.addin import AssociationInfo
from pacsref.association import NegotiatedAssociation, negotiate
from pacsref.dimse import (
    DimseMessage,
    DimseProtocolError,
    MessageAssembler,
    can_respond,
    command_name,
    encode_command,
    fragment_message,
    invalid_request_response,
)
from pacsref.server.context import ServerContext
from pacsref.server.dispatch import Dispatcher, Response
from pacsref.ul.constants import AbortSource
from pacsref.ul.events import (
    REJECT_CALLED_AE,
    Abort,
    AssociateReject,
    AssociateRequest,
    DataTransfer,
    ProviderRejected,
    ReleaseRequest,
    ReleaseResponse,
    TransportClosed,
    describe_reject,
)

log = Logger(namespace="pacsref.association")


class AssociationSession:
    """Server-side behaviour of one association.

    Args:
        server: the shared server state.
        dispatcher: routes requests to add-ins.
        peer: the peer's (host, port).
        send: hands a primitive to the upper layer (the adapter performs
            the resulting effects).
    """

    def __init__(
        self,
        server: ServerContext,
        dispatcher: Dispatcher,
        peer: tuple[str, int],
        send: Callable[[object], None],
        secure: bool = False,
    ) -> None:
        self.server = server
        self.dispatcher = dispatcher
        self.peer = peer
        self.secure = secure
        self._send = send
        self.association_id = server.new_association_id()
        self.negotiated: NegotiatedAssociation | None = None
        self.info: AssociationInfo | None = None
        self._assembler: MessageAssembler | None = None
        self._queue: deque[DimseMessage] = deque()
        self._in_flight: Deferred[list[Response]] | None = None
        self._release_requested = False
        self.ended = False
        self.last_action: int | None = None

    # -- entry point --------------------------------------------------------------------

    def indicate(self, primitive: object) -> None:
        """Act on one indication or confirmation from the upper layer."""
        kind = type(primitive)
        if kind is DataTransfer:
            self._on_data(primitive)  # type: ignore[arg-type]
        elif kind is AssociateRequest:
            self._on_associate(primitive)  # type: ignore[arg-type]
        elif kind is ReleaseRequest:
            self._release_requested = True
            self._pump()
        elif kind is Abort:
            self._on_abort(primitive)  # type: ignore[arg-type]
        elif kind is TransportClosed:
            self._end("connection closed" if primitive.expected else "connection lost")  # type: ignore[attr-defined]
        elif kind is ProviderRejected:
            rejected: ProviderRejected = primitive  # type: ignore[assignment]
            self._log_reject(rejected.request, rejected.reject, "protocol version")

    # -- association establishment ------------------------------------------------------

    def _on_associate(self, rq: AssociateRequest) -> None:
        settings = self.server.settings
        if settings.check_called_ae_title and rq.called_ae_title != settings.ae_title:
            self._reject(rq, REJECT_CALLED_AE, f"called AE title {rq.called_ae_title!r}")
            return
        result = negotiate(rq, self.server.contexts, self.server.acceptor)
        if result.association is None:
            self._reject(rq, result.response, result.reason)  # type: ignore[arg-type]
            return
        self.negotiated = result.association
        self.info = AssociationInfo(
            calling_ae=rq.calling_ae_title,
            called_ae=rq.called_ae_title,
            peer_host=self.peer[0],
            peer_port=self.peer[1],
            secure=self.secure,
            association_id=self.association_id,
        )
        self._assembler = MessageAssembler(
            self.server.spool_dir, result.association.accepted_transfer_syntaxes()
        )
        log.info(
            "association {id} accepted: {calling} -> {called} from {host}:{port}, "
            "{accepted} of {proposed} contexts accepted, peer max PDU {peer_max}",
            id=self.association_id,
            calling=rq.calling_ae_title,
            called=rq.called_ae_title,
            host=self.peer[0],
            port=self.peer[1],
            accepted=len(result.association.contexts),
            proposed=len(rq.presentation_contexts),
            peer_max=result.association.peer_max_pdu_length,
            refused=[r.describe() for r in result.refused],
        )
        self._send(result.response)

    def _reject(self, rq: AssociateRequest, reject: AssociateReject, why: str) -> None:
        self._log_reject(rq, reject, why)
        self._send(reject)

    def _log_reject(self, rq: AssociateRequest, reject: AssociateReject, why: str) -> None:
        log.warn(
            "association {id} rejected: {calling} -> {called} from {host}:{port}: {why}; {reject}",
            id=self.association_id,
            calling=rq.calling_ae_title,
            called=rq.called_ae_title,
            host=self.peer[0],
            port=self.peer[1],
            why=why,
            reject=describe_reject(reject.result, reject.source, reject.reason),
            result=int(reject.result),
            source=int(reject.source),
            reason=reject.reason,
        )

    # -- data transfer --------------------------------------------------------------------

    def _on_data(self, transfer: DataTransfer) -> None:
        assembler = self._assembler
        if assembler is None:  # pragma: no cover - the UL only indicates data when associated
            return
        for pdv in transfer.values:
            try:
                message = assembler.feed(pdv)
            except DimseProtocolError as exc:
                self._abort(f"DIMSE protocol error: {exc.detail}")
                return
            if message is not None:
                self._queue.append(message)
        self._pump()

    def _pump(self) -> None:
        """Serve the next queued request, or release once nothing is left."""
        while self._in_flight is None and self._queue and not self.ended:
            self._serve(self._queue.popleft())
        if (
            self._release_requested
            and self._in_flight is None
            and not self._queue
            and not self.ended
        ):
            self._release_requested = False
            log.info("association {id} released", id=self.association_id)
            self._send(ReleaseResponse())

    def _serve(self, message: DimseMessage) -> None:
        self.last_action = message.command_field  # named lazily: this is the hot path
        if not can_respond(message.command):
            message.discard()
            self._abort(f"{message.name} without a usable Message ID or Command Field")
            return
        refusal = invalid_request_response(message)
        if refusal is not None:
            self._respond(message, [(refusal, None)])
            return
        negotiated = self.negotiated
        assert negotiated is not None and self.info is not None
        abstract_syntax = negotiated.contexts[message.context_id].abstract_syntax
        d = self.dispatcher.dispatch(message, self.info, abstract_syntax)
        if d.called:
            responses: list[Response] = []
            d.addCallback(responses.extend)
            self._respond(message, responses)
            return
        self._in_flight = d
        d.addCallback(self._respond_later, message)

    def _respond_later(self, responses: list[Response], message: DimseMessage) -> None:
        self._in_flight = None
        self._respond(message, responses)
        self._pump()

    def _respond(self, message: DimseMessage, responses: list[Response]) -> None:
        message.discard()
        if self.ended:
            return
        peer_max = self.negotiated.peer_max_pdu_length if self.negotiated else 0
        for command, dataset in responses:
            encoded = encode_command(command)
            for pdv in fragment_message(message.context_id, encoded, dataset, peer_max):
                self._send(DataTransfer((pdv,)))

    # -- ending ---------------------------------------------------------------------

    def _abort(self, why: str) -> None:
        log.warn("association {id} aborted by us: {why}", id=self.association_id, why=why)
        self._send(Abort(source=AbortSource.SERVICE_USER, detail=why))
        self._end(why)

    def _on_abort(self, abort: Abort) -> None:
        who = "by us" if abort.local else "by the peer"
        log.warn(
            "association {id} aborted {who}: source {source}, reason {reason} {detail}",
            id=self.association_id,
            who=who,
            source=abort.source.name,
            reason=abort.reason.name,
            detail=abort.detail,
        )
        self._end("aborted")

    def _end(self, why: str) -> None:
        """Drop everything in progress: no spool file outlives its association."""
        if self.ended:
            return
        self.ended = True
        if self._assembler is not None:
            self._assembler.abort()
        while self._queue:
            self._queue.popleft().discard()
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            in_flight.cancel()

    def stats(self) -> dict[str, Any]:
        """A snapshot for logs and the admin interface."""
        return {
            "id": self.association_id,
            "peer": self.peer,
            "last_action": command_name(self.last_action) if self.last_action else "",
        }
