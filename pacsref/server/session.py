"""What the server does with each primitive the upper layer indicates.

One :class:`AssociationSession` per connection sits between the protocol
adapter (bytes, timers) and the add-ins: it answers the A-ASSOCIATE request
(acceptance policy, negotiation and association hooks, see
:mod:`pacsref.server.acceptance`), reassembles DIMSE messages, serves them
one at a time (we answer the asynchronous operations window 1/1, and abort a peer that
invokes a second operation before the first is answered: PS3.7 D.3.3.3), and
releases only when nothing is in flight. It never touches the transport; it
hands primitives back through ``send``. It reports the association's life to
the client registry (which publishes the notifications) and to the service
log.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from time import perf_counter
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pacsref.addin import AssociationInfo
from pacsref.association import NegotiatedAssociation, NegotiationResult
from pacsref.association.policy import Refusal, Rule
from pacsref.dimse import (
    DimseMessage,
    DimseProtocolError,
    FileMetaIdentity,
    MessageAssembler,
    can_respond,
    encode_command,
    fragment_message,
    invalid_request_response,
    response_command,
)
from pacsref.dimse.messages import CommandField, spool_failure_status
from pacsref.dimse.responses import unechoable_uids
from pacsref.security import CertificateIdentity
from pacsref.server.acceptance import Acceptance
from pacsref.server.clients import ClientInfo
from pacsref.server.context import ServerContext
from pacsref.server.control import ServerControl
from pacsref.server.dispatch import Dispatcher, Response, answered_status
from pacsref.server.hooks import notify_hooks
from pacsref.ul.constants import AbortSource
from pacsref.ul.events import (
    Abort,
    AssociateRequest,
    DataTransfer,
    ProviderRejected,
    ReleaseRequest,
    ReleaseResponse,
    TransportClosed,
)

log = Logger(namespace="pacsref.association")


class AssociationSession:
    """Server-side behaviour of one association.

    Args:
        server: the shared server state.
        dispatcher: routes requests to add-ins.
        peer: the peer's (host, port).
        send: hands a primitive to the upper layer (the adapter performs
            the resulting effects); returns False when the upper layer refused it
            (the association ended meanwhile), anything else when it was sent.
        secure: the connection is TLS.
        control: pause state and the client registry.
        client: this connection's entry in the registry.
        flush: sends what ``send`` wrote so far at once (see :meth:`_respond`); by default
            the transport sends it when it will.
    """

    def __init__(
        self,
        server: ServerContext,
        dispatcher: Dispatcher,
        peer: tuple[str, int],
        send: Callable[[object], object],
        secure: bool = False,
        *,
        control: ServerControl,
        client: ClientInfo,
        flush: Callable[[], None] = lambda: None,
    ) -> None:
        self.server = server
        self.dispatcher = dispatcher
        self.peer = peer
        self.secure = secure
        self.control = control
        self.client = client
        self._send = send
        self._flush = flush
        self.association_id = server.new_association_id()
        self.negotiated: NegotiatedAssociation | None = None
        self.info: AssociationInfo | None = None
        self._acceptance: Acceptance | None = None
        self._assembler: MessageAssembler | None = None
        self._queue: deque[DimseMessage] = deque()
        self._in_flight: Deferred[list[Response]] | None = None
        #: the request ``_in_flight`` serves
        self._in_flight_message: DimseMessage | None = None
        self._release_requested = False
        self._started = 0.0  # perf_counter() of the request in service, when it is logged
        self.ended = False
        #: How the association ended ("released", "aborted by the peer", ...); "" while open.
        self.end_reason = ""
        #: The verified TLS peer certificate, set by the protocol once the handshake is done.
        self.peer_certificate: CertificateIdentity | None = None

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
            self._drop_partial_message()
            self._pump()
        elif kind is Abort:
            self._on_abort(primitive)  # type: ignore[arg-type]
        elif kind is TransportClosed:
            self.end("connection closed" if primitive.expected else "connection lost")  # type: ignore[attr-defined]
        elif kind is ProviderRejected:
            rejected: ProviderRejected = primitive  # type: ignore[assignment]
            version = rejected.request.protocol_version
            refusal = Refusal(
                rejected.reject,
                Rule.PROTOCOL_VERSION,
                f"protocol version 0x{version:04x} lacks version 1 (bit 0)",
            )
            self._refused(rejected.request, refusal, send=False)

    # -- association establishment ------------------------------------------------------

    def _on_associate(self, rq: AssociateRequest) -> None:
        identity = rq.user_information.user_identity
        self.info = AssociationInfo(
            calling_ae=rq.calling_ae_title,
            called_ae=rq.called_ae_title,
            peer_host=self.client.ip,
            peer_port=self.peer[1],
            secure=self.secure,
            association_id=self.association_id,
            peer_certificate=self.peer_certificate,
            user_identity=None if identity is None else identity.without_credentials(),
        )
        self._acceptance = Acceptance(
            self.server,
            self.control,
            self.client,
            self.dispatcher.reactor,
            self.info,
            accept=lambda result: self._accept(rq, result),
            refuse=lambda refusal: self._refused(rq, refusal),
        )
        self._acceptance.start(rq)

    def _accept(self, rq: AssociateRequest, result: NegotiationResult) -> None:
        if self._acceptance is not None:  # it may have verified the user identity
            self.info = self._acceptance.info
        self._acceptance = None
        association = result.association
        assert association is not None
        self.negotiated = association
        settings = self.server.settings
        # C-STORE spool files start as Part-10 files, so storing one is a rename.
        self._assembler = MessageAssembler(
            self.server.spool_dir,
            association.accepted_transfer_syntaxes(),
            part10=FileMetaIdentity(
                settings.implementation_class_uid,
                settings.implementation_version_name,
                rq.calling_ae_title,
            ),
        )
        if self._send(result.response) is False:
            self._not_sent("its A-ASSOCIATE-AC")
            return
        log.info(
            "association {id} accepted: {calling} -> {called} from {host}:{port}, "
            "{accepted} of {proposed} contexts accepted, peer max PDU {peer_max}{user_text}",
            kind="association.accepted",
            **self._who(rq),
            user_text=self._user_identity_text(),
            accepted=len(association.contexts),
            proposed=len(rq.presentation_contexts),
            peer_max=association.peer_max_pdu_length,
            our_max=association.our_max_pdu_length,
            peer_implementation_class_uid=association.peer_implementation_class_uid,
            peer_implementation_version_name=association.peer_implementation_version_name,
            user_identity=self._user_identity_field(),
            contexts=[
                {
                    "id": cid,
                    "abstract_syntax": ctx.abstract_syntax,
                    "transfer_syntax": ctx.transfer_syntax,
                    "peer_scu": ctx.peer_scu_role,
                    "peer_scp": ctx.peer_scp_role,
                }
                for cid, ctx in association.contexts.items()
            ],
            refused=[r.describe() for r in result.refused],
        )
        self.control.clients.associated(
            self.client, association, self.association_id, self._user_identity_field()
        )
        self._notify_hooks("association_established")

    def _user_identity_field(self) -> dict[str, object] | None:
        """The user identity for the accepted line's fields: kind and username, no secret."""
        info = self.info
        if info is None or info.user_identity is None:
            return None
        identity = info.user_identity
        return {
            "type": identity.identity_type,
            "user": identity.describe(),
            "username": identity.username,
            "verified": info.user_verified,
            "positive_response_requested": identity.positive_response_requested,
        }

    def _user_identity_text(self) -> str:
        info = self.info
        if info is None or info.user_identity is None:
            return ""
        if info.user_verified:
            return f", user {info.user_identity.describe()} verified"
        why = (
            "every add-in that verifies user identities abstained"
            if self.server.identity_verifiers
            else "no add-in verifies user identities"
        )
        return f", user {info.user_identity.describe()} not verified ({why})"

    def _ids(self) -> dict[str, object]:
        """The log fields naming this association, its client and the calling AE title."""
        return {
            "id": self.association_id,
            "client": self.client.id,
            "calling": self.client.ae_title,
        }

    def _who(self, rq: AssociateRequest) -> dict[str, object]:
        """The log fields that say which association and peer a line is about."""
        return {
            "id": self.association_id,
            "client": self.client.id,
            "calling": rq.calling_ae_title,
            "called": rq.called_ae_title,
            "host": self.client.ip,
            "port": self.peer[1],
        }

    def _refused(self, rq: AssociateRequest, refusal: Refusal, send: bool = True) -> None:
        """Log, answer (unless the upper layer already did) and notify one refusal."""
        self._acceptance = None
        reject = refusal.reject
        log.warn(
            "association {id} refused: {calling} -> {called} from {host}:{port}: {why}; {reject}",
            kind="association.refused",
            **self._who(rq),
            rule=refusal.rule.value,
            why=refusal.why,
            reject=reject.describe(),
            result=int(reject.result),
            source=int(reject.source),
            reason=int(reject.reason),
        )
        self.end_reason = f"refused: {refusal.why}"
        if send:
            self._send(reject)
        self.control.clients.refused(
            self.client,
            reject,
            refusal.rule.value,
            refusal.why,
            rq.calling_ae_title,
            rq.called_ae_title,
        )

    # -- data transfer --------------------------------------------------------------------

    def _on_data(self, transfer: DataTransfer) -> None:
        assembler = self._assembler
        if assembler is None:  # pragma: no cover - the UL only indicates data when associated
            return
        if self.ended:
            # Aborted by us while more PDUs of the same read were still being indicated:
            # they arrived after the end and are ignored (PS3.8 Sta13, AA-6).
            return
        for pdv in transfer.values:
            try:
                message = assembler.feed(pdv)
            except DimseProtocolError as exc:
                self._abort(f"DIMSE protocol error: {exc.detail}")
                return
            if message is not None and not self._accept_message(message):
                return
        self._pump()

    def _accept_message(self, message: DimseMessage) -> bool:
        """Queue a complete request; act on anything else. False: the association ended.

        A C-CANCEL-RQ is acted on at once (never queued behind the request it cancels, never
        answered). A response is a protocol error: this server invokes no operations on an
        association it accepted. A request arriving while another is still being served
        exceeds the asynchronous operations window (1 invoked, 1 performed, our answer to
        every proposal and the default, PS3.7 D.3.3.3): the association is aborted rather
        than the peer's requests queued, and their data sets spooled, without end.
        """
        command_field = message.command_field
        if command_field == CommandField.C_CANCEL_RQ:
            self._cancel(message)
            return True
        if isinstance(command_field, int) and command_field & 0x8000:
            message.discard()
            responding_to = message.message_id_being_responded_to
            self._abort(
                f"unexpected {message.name} (responding to message {responding_to}): "
                "this server invokes no operations on associations it accepted"
            )
            return False
        if self._in_flight is not None or self._queue:
            serving = self._in_flight_message or (self._queue[0] if self._queue else None)
            serving_id = serving.message_id if serving is not None else None
            message.discard()
            self._abort(
                f"{message.name} (message {message.message_id}) arrived while message "
                f"{serving_id} is still being served: more operations invoked than the "
                "asynchronous operations window of 1 allows (PS3.7 D.3.3.3)"
            )
            return False
        self._queue.append(message)
        return True

    def _cancel(self, message: DimseMessage) -> None:
        """C-CANCEL-RQ (PS3.7 9.1.2.1.3, 9.3.2.3): never answered.

        Only C-FIND, C-GET and C-MOVE can be cancelled, and this server's add-ins serve none
        of them yet, so there is nothing to stop: the request is logged and dropped.
        """
        message.discard()
        serving = self._in_flight_message
        log.info(
            "association {id}: C-CANCEL-RQ for message {target} ignored: {why}",
            kind="dimse.cancel",
            **self._ids(),
            target=message.message_id_being_responded_to,
            why=(
                f"{serving.name} (message {serving.message_id}) cannot be cancelled"
                if serving is not None
                else "no operation is in progress"
            ),
        )

    def _drop_partial_message(self) -> None:
        """A-RELEASE-RQ in the middle of a message: the message is lost; say so.

        PS3.8 7.2: the release is orderly only for what was sent whole. What has arrived of
        the message (and its spool file) is dropped and the association released as asked.
        """
        assembler = self._assembler
        if assembler is None or not assembler.in_progress:
            return
        log.warn(
            "association {id}: A-RELEASE-RQ while a message was still arriving on "
            "presentation context {context}: the incomplete message is dropped",
            kind="dimse.incomplete",
            **self._ids(),
            context=assembler.context_id,
        )
        assembler.abort()

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
            if self._send(ReleaseResponse()) is False:
                self._not_sent("its A-RELEASE-RP")
                return
            log.info(
                "association {id} released",
                kind="association.released",
                **self._ids(),
            )
            self.end_reason = "released"
            self.control.clients.ended(self.client)
            self._notify_hooks("association_released")

    def _serve(self, message: DimseMessage) -> None:
        service_log = self.server.service_log
        if service_log is not None and service_log.actions is not None:
            self._started = perf_counter()
        if not can_respond(message.command):
            message.discard()
            self._abort(
                f"{message.name} cannot be answered: it has no usable Message ID or Command Field"
            )
            return
        for problem in unechoable_uids(message.command):
            log.warn(
                "{command} (message {message_id}) from {calling}: {problem}; the response "
                "leaves it out",
                kind="dimse.bad_uid",
                command=message.name,
                message_id=message.message_id,
                problem=problem,
                **self._ids(),
            )
        negotiated = self.negotiated
        assert negotiated is not None and self.info is not None
        abstract_syntax = negotiated.contexts[message.context_id].abstract_syntax
        refusal = invalid_request_response(message)
        if refusal is None and message.spool_failure is not None:
            refusal = self._spool_failed(message)
        if refusal is not None:
            # Scheduled now, delivered once the response below is written (as for a
            # handler's status): notification subscribers hear of refusals too.
            self.dispatcher.notify_unserved(
                message, self.info, abstract_syntax, answered_status(refusal)
            )
            self._respond(message, [(refusal, None)])
            return
        d = self.dispatcher.dispatch(message, self.info, abstract_syntax)
        if d.called:
            responses: list[Response] = []
            d.addCallback(responses.extend)
            self._respond(message, responses)
            return
        self._in_flight = d
        self._in_flight_message = message
        d.addCallback(self._respond_later, message)

    def _spool_failed(self, message: DimseMessage) -> dict[int, object]:
        """Log why a request's data set could not be spooled; answer it without serving it.

        The disk failed, not the peer, so the association goes on. C-STORE and C-FIND:
        0xA700 Refused: Out of Resources (PS3.4 B.2.3, C.4.1.1.4); C-GET and C-MOVE:
        0xA701, their out-of-resources status when the identifier cannot be read (PS3.4
        C.4.2.1.5, C.4.3.1.4); DIMSE-N requests: 0x0213 Resource limitation (PS3.7 C.5.21,
        in the status list of each of them).
        """
        failure = message.spool_failure
        assert failure is not None
        log.error(
            "{command} (message {message_id}) from {calling}: {failure}; answered {status_hex}",
            kind="spool.failed",
            command=message.name,
            message_id=message.message_id,
            file=failure.path,
            errno=failure.errno,
            error=failure.strerror,
            failure=str(failure),
            **self._ids(),
            status_hex=f"0x{spool_failure_status(message.command_field):04X}",
        )
        return response_command(
            message,
            spool_failure_status(message.command_field),
            ErrorComment=failure.error_comment,
        )

    def _respond_later(self, responses: list[Response], message: DimseMessage) -> None:
        self._in_flight = None
        self._in_flight_message = None
        self._respond(message, responses)
        self._pump()

    def _respond(self, message: DimseMessage, responses: list[Response]) -> None:
        """Send the final response(s) to ``message``, then delete its spool file.

        In that order: the peer's answer must not depend on the clean-up (a spool file
        system gone read-only, where :meth:`DimseMessage.discard` can only warn); and the
        clean-up happens whatever sending did.

        The response is flushed to the socket before the clean-up and the bookkeeping, not
        when the read that brought the request ends, nor on the reactor's next iteration
        when the request was served on a thread: a peer sending one object at a time waits
        for it, so whatever the server does after it overlaps with the peer's next request
        instead of delaying it.
        """
        try:
            if self.ended:
                return
            peer_max = self.negotiated.peer_max_pdu_length if self.negotiated else 0
            for command, dataset in responses:
                encoded = encode_command(command)
                for pdv in fragment_message(message.context_id, encoded, dataset, peer_max):
                    if self._send(DataTransfer((pdv,))) is False:
                        self._not_sent(f"the response to {message.name} (message "
                                       f"{message.message_id})")  # fmt: skip
                        return
            self._flush()
            self.control.clients.action(self.client, message.command_field or 0)
            if self._started:
                self._log_action(message, responses)
        finally:
            message.discard()

    def _log_action(self, message: DimseMessage, responses: list[Response]) -> None:
        """One service-log line per request (only while the service log runs)."""
        elapsed_ms = (perf_counter() - self._started) * 1000.0
        self._started = 0.0
        service_log = self.server.service_log
        actions = service_log.actions if service_log is not None else None
        if actions is None:
            return
        status = responses[-1][0].get(0x0900) if responses else None
        actions.info(
            "{command} (message {message_id}) from {calling}: status {status_hex} in {ms} ms",
            kind="dimse",
            command=message.name,
            message_id=message.message_id,
            status=status,
            status_hex=f"0x{status:04X}" if isinstance(status, int) else "none",
            calling=self.client.ae_title,
            id=self.association_id,
            client=self.client.id,
            ms=round(elapsed_ms, 3),
        )

    def _not_sent(self, what: str) -> None:
        """The upper layer refused to send ``what``: the association ended under us (the
        peer's A-ABORT, or a PDU that made us abort, came in first). Nothing that depends on
        the peer having it (an "accepted" or "released" line, the hooks, the action count)
        may then happen; the end itself is reported where it happened."""
        log.warn(
            "association {id}: {what} was not sent: the association had already ended",
            kind="association.not_sent",
            **self._ids(),
            what=what,
        )

    # -- ending ---------------------------------------------------------------------

    def _abort(self, why: str) -> None:
        log.warn(
            "association {id} aborted by us: {why}",
            kind="association.aborted",
            **self._ids(),
            by="us",
            why=why,
        )
        self._send(Abort(source=AbortSource.SERVICE_USER, detail=why))
        self.end(why, logged=True)

    def _on_abort(self, abort: Abort) -> None:
        who = "us" if abort.local else "the peer"
        if self.ended:
            # A PDU after our own A-ABORT (PS3.8 Sta13): the upper layer answers a malformed
            # one with another A-ABORT (AA-7), which must not read as a second end.
            log.info(
                "association {id}: a further A-ABORT by {by} after the association ended: {detail}",
                kind="association.abort_after_end",
                **self._ids(),
                by=who,
                detail=abort.detail,
            )
            return
        log.warn(
            "association {id} aborted by {by}: source {source}, reason {reason} {detail}",
            kind="association.aborted",
            **self._ids(),
            by=who,
            source=abort.source.name,
            reason=abort.reason.name,
            detail=abort.detail,
        )
        self.end(f"aborted by {who}", logged=True)

    def end(self, why: str, logged: bool = False) -> None:
        """Drop everything in progress: no spool file outlives its association.

        Called on abort, connection loss, client timeout and disconnection by
        the administrator. An association that was still open counts as
        aborted (logged here unless the caller already did, and told to the
        association hooks).
        """
        if self.ended:
            return
        self.ended = True
        if self._acceptance is not None:
            acceptance, self._acceptance = self._acceptance, None
            acceptance.cancel()
        if self._assembler is not None:
            self._assembler.abort()
        while self._queue:
            self._queue.popleft().discard()
        self._in_flight_message = None
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            in_flight.cancel()
        if self.client.state == "associated":
            if not logged:
                log.warn(
                    "association {id} aborted: {why}",
                    kind="association.aborted",
                    **self._ids(),
                    why=why,
                )
            self._notify_hooks("association_aborted")
        if not self.end_reason:
            self.end_reason = why
        self.control.clients.ended(self.client)

    def _notify_hooks(self, method: str) -> None:
        hooks = self.server.association_hooks
        if hooks and self.info is not None:
            notify_hooks(
                hooks,
                method,
                self.info,
                self.dispatcher.reactor,
                self.server.threadpool,
                self.server.settings.addin_timeout,
            )

    def stats(self) -> dict[str, Any]:
        """A snapshot for logs and the admin interface."""
        return {"id": self.association_id, "peer": self.peer, **self.client.to_dict()}
