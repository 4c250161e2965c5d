"""Route a complete DIMSE request to the add-in that serves it.

The add-in is chosen by the presentation context the request arrived on
(its abstract syntax) and by the handler interface the command needs. The
call runs on the server's thread pool under the add-in timeout; whatever the
add-in does — return a status, raise, hang — the association gets exactly one
final response and goes on (DESIGN.md, "Add-ins").

Because the context alone picks the add-in, a DIMSE-C request whose Affected
SOP Class UID is not that context's abstract syntax is refused before any
add-in sees it: otherwise a peer could have a SOP class served that was never
negotiated, past the accepted SOP class list and whatever an add-in decided at
negotiation (e.g. the storage add-in's "accept unknown storage classes").
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface

from pacsref.addin import (
    AddinTimeout,
    AssociationInfo,
    DimseRequest,
    IEchoHandler,
    IStoreHandler,
    StoreOutcome,
    call_with_timeout,
    is_nonblocking,
    status_for_exception,
)
from pacsref.dimse import CommandField, DimseMessage, response_command, status_name
from pacsref.dimse.command import STATUS
from pacsref.dimse.responses import MAX_ERROR_COMMENT
from pacsref.dimse.status import (
    PROCESSING_FAILURE,
    SOP_CLASS_NOT_SUPPORTED,
    UNRECOGNIZED_OPERATION,
)
from pacsref.server.context import ServerContext
from pacsref.server.message_notification import MessageNotifier

log = Logger(namespace="pacsref.dispatch")

#: Response command fields, plus an optional encoded data set.
Response = tuple[dict[int, object], bytes | None]


@dataclass(frozen=True)
class _Route:
    """How one request command is served: the interface and the method to call."""

    interface: type[Interface]
    method: str


#: Command fields this dispatcher serves with a single final status. C-FIND,
#: C-MOVE, C-GET and the N-services join when their add-ins do.
ROUTES: dict[int, _Route] = {
    CommandField.C_ECHO_RQ: _Route(IEchoHandler, "handle_echo"),
    CommandField.C_STORE_RQ: _Route(IStoreHandler, "handle_store"),
}


#: Requests whose Affected SOP Class UID (0000,0002) must be the context's abstract syntax:
#: every DIMSE-C request. Q/R and worklist "models" are SOP classes negotiated by their own UID
#: (C-FIND on Study Root FIND names Study Root FIND), C-ECHO names Verification
#: (1.2.840.10008.1.1, PS3.4 A), and even UPS requires it for C-FIND (PS3.4 CC.2.8.1.2: "the
#: UPS SOP Class negotiated for the Presentation Context"). DIMSE-N requests are left out on
#: purpose: under a Meta SOP Class (Print Management, PS3.4 H) an N-CREATE names Basic Film
#: Session on a context negotiated as the meta class, and UPS N-services name UPS Push on Watch,
#: Pull or Event contexts (PS3.4 CC.3.1.1; pynetdicom's ``meta_uid``). A DIMSE-N route must
#: bring its own rule of which SOP classes a context admits.
SOP_CLASS_IS_ABSTRACT_SYNTAX: frozenset[int] = frozenset(
    {
        CommandField.C_STORE_RQ,
        CommandField.C_FIND_RQ,
        CommandField.C_GET_RQ,
        CommandField.C_MOVE_RQ,
        CommandField.C_ECHO_RQ,
    }
)


@functools.cache
def _addin_logger(name: str) -> Logger:
    """One logger per add-in, namespaced so the service log says who wrote a line."""
    return Logger(namespace=f"pacsref.addin.{name}")


def answered_status(response: dict[int, object]) -> int | None:
    """The Status (0000,0900) of a response command, for the notification subscribers."""
    value = response.get(STATUS)
    return value if isinstance(value, int) else None


class Dispatcher:
    """Turns requests into responses by calling add-ins; one per server."""

    def __init__(self, server: ServerContext, reactor: Any) -> None:
        self.server = server
        self.reactor = reactor
        self.notifier = MessageNotifier(
            server.addins, reactor, server.threadpool, server.settings.copy_dataset_image
        )

    def dispatch(
        self,
        message: DimseMessage,
        association: AssociationInfo,
        abstract_syntax: str,
    ) -> Deferred[list[Response]]:
        """Serve ``message``; the Deferred never fails, errors become statuses."""
        route = ROUTES.get(message.command_field or 0)
        addins = (
            self.server.addins_for(abstract_syntax, route.interface) if route is not None else []
        )
        if route is None or not addins:
            comment = (
                f"{message.name} is not served on {abstract_syntax}"
                if route is not None
                else f"{message.name} is not supported by this server"
            )
            self.notify_unserved(message, association, abstract_syntax, UNRECOGNIZED_OPERATION)
            return succeed([(self._failure(message, UNRECOGNIZED_OPERATION, comment), None)])
        # After the 0x0211 test: a command nobody serves on this context keeps that answer
        # whatever SOP class it names. A missing UID (mandatory in every DIMSE-C request) was
        # answered 0x0212 by the session before dispatch; a caller that skipped that check
        # gets None here, which never equals a UID, so no add-in is reached either way.
        if (
            message.command_field in SOP_CLASS_IS_ABSTRACT_SYNTAX
            and message.affected_sop_class_uid != abstract_syntax
        ):
            refusal = self._sop_class_mismatch(message, association, abstract_syntax)
            self.notify_unserved(message, association, abstract_syntax, answered_status(refusal))
            return succeed([(refusal, None)])
        addin = addins[0]
        request = self._request(message, association, abstract_syntax, _addin_logger(addin.name))
        handler: Callable[[DimseRequest], int] = getattr(addin, route.method)
        name = f"{addin.name}.{message.name}"

        def late(result: object) -> None:
            self._late_outcome(message, request, name, result)

        if is_nonblocking(handler):
            d = maybeDeferred(handler, request)
            if not d.called:
                d = self._with_timeout(d, name, request, late)
        else:
            d = call_with_timeout(
                self.reactor,
                self.server.threadpool,
                self.server.settings.addin_timeout,
                handler,
                request,
                name=name,
                may_expire=request.deadline.expire,
                late=late,
            )
        d.addCallbacks(
            lambda status: self._final(message, addin.name, status, request),
            lambda failure: self._error(message, addin.name, failure, request),
        )
        return d

    def _request(
        self,
        message: DimseMessage,
        association: AssociationInfo,
        abstract_syntax: str,
        logger: Logger,
    ) -> DimseRequest:
        """What a handler (and, after the response, the notification subscribers) is given."""
        return DimseRequest(
            association=association,
            context_id=message.context_id,
            abstract_syntax=abstract_syntax,
            transfer_syntax=message.transfer_syntax,
            command=message.command,
            dataset_path=message.dataset_path,
            message_id=message.message_id or 0,
            affected_sop_class_uid=message.affected_sop_class_uid or "",
            affected_sop_instance_uid=message.affected_sop_instance_uid or "",
            log=logger,
            services=self.server.registry,
            dataset_offset=message.dataset_offset,
            keep_stored_open=self.notifier.wants_pinned(),
        )

    def notify_unserved(
        self,
        message: DimseMessage,
        association: AssociationInfo,
        abstract_syntax: str,
        status: int | None,
    ) -> None:
        """Schedule the notification of a request answered without calling a handler.

        ``IMessageNotification`` subscribers hear of every request after its final
        response (docs/storage.md), refusals included: 0x0211 and 0x0122 here, 0x0212 and
        0xA700 from the session. They get what they get after any failure: no ``dataset``.
        Call it when the refusal is decided, as :meth:`_final` does for a handler's status:
        the notifier starts only after the reactor has written the response (its
        ``callLater(0)``), on the thread pool, where a subscriber that raises is logged and
        dropped, so neither the response nor the association can suffer. Without
        subscribers nothing is built.
        """
        if not self.notifier.subscribers:
            return
        request = self._request(message, association, abstract_syntax, log)
        self.notifier.notify(request, None, status)

    def _sop_class_mismatch(
        self, message: DimseMessage, association: AssociationInfo, abstract_syntax: str
    ) -> dict[int, object]:
        """Refuse a request naming a SOP class its context was not negotiated for.

        Status 0x0122 "Refused: SOP Class not supported": it is in the status list of every
        DIMSE-C service (PS3.7 9.1.1-9.1.5, C-ECHO included, which has no Axxx/Cxxx range),
        and it is what pynetdicom answers a C-STORE (a C-GET sub-operation) whose Affected
        SOP Class UID is not the abstract syntax of the context it came on
        (``Association._c_store_scp``); DCMTK defines 0x0122 for C-STORE, C-FIND, C-GET,
        C-MOVE and DIMSE-N alike. Not 0xA900 "Data set does not match SOP class": that
        compares the data set with the command (DCMTK's ``checkRequestAgainstDataset``), while
        here the command contradicts the negotiation whatever the data set says. Not 0x0212:
        it stays the answer to a request lacking mandatory elements.

        Error Comment is LO, 64 characters: the shorter wording is used when the longer one
        does not fit (past that the tail is cut); the log line has everything.
        """
        sop_class = message.affected_sop_class_uid
        context_id = message.context_id
        named = sop_class or "(none)"
        comment = f"{named} is not context {context_id}'s SOP class {abstract_syntax}"
        if len(comment) > MAX_ERROR_COMMENT:
            comment = f"{named} != context {context_id} {abstract_syntax}"
        log.warn(
            "{command} (message {message_id}) from {calling} names SOP class {sop_class} on "
            "presentation context {context_id}, negotiated as {abstract_syntax}: answered "
            "0x0122 without calling an add-in",
            kind="dimse.sop_class_mismatch",
            command=message.name,
            message_id=message.message_id,
            calling=association.calling_ae,
            id=association.association_id,
            context_id=context_id,
            sop_class=sop_class,
            abstract_syntax=abstract_syntax,
        )
        return self._failure(message, SOP_CLASS_NOT_SUPPORTED, comment)

    def _with_timeout(
        self,
        d: Deferred[Any],
        name: str,
        request: DimseRequest,
        late: Callable[[object], None],
    ) -> Deferred[Any]:
        """``d`` bounded by the add-in timeout: a nonblocking handler's Deferred may hang too.

        On expiry the result fails with :class:`AddinTimeout` (so 0x0110, as for a
        thread-pool call) and ``d`` is cancelled; whatever it delivers later is ignored.
        Unless the handler already passed its point of no return (``request.deadline``):
        then its outcome is what the peer must hear, and it is awaited however late.
        """
        timeout = self.server.settings.addin_timeout

        def cancel(_: Deferred[Any]) -> None:
            # The association ended. A handler not yet past its point of no return is stopped
            # there; one past it runs on, and settle() hands its outcome to ``late``.
            if timer.active():
                timer.cancel()
            if request.deadline.expire():
                d.cancel()

        outer: Deferred[Any] = Deferred(cancel)

        def expire() -> None:
            if not request.deadline.expire():
                log.warn(
                    "add-in call {name} did not finish within {timeout} s but is past its "
                    "point of no return; waiting for its outcome",
                    name=name,
                    timeout=timeout,
                )
                return
            outer.errback(AddinTimeout(name, timeout))
            d.cancel()

        timer = self.reactor.callLater(timeout, expire)

        def settle(result: object) -> None:
            if not outer.called:
                if timer.active():
                    timer.cancel()
                if isinstance(result, Failure):
                    outer.errback(result)
                else:
                    outer.callback(result)
            elif request.deadline.committed:
                late(result)
            elif isinstance(result, Failure) and not result.check(CancelledError):
                log.failure(
                    "add-in call {name} failed after its timeout or its association's end",
                    result,
                    name=name,
                )

        d.addBoth(settle)
        return outer

    def _final(
        self, message: DimseMessage, addin: str, result: object, request: DimseRequest
    ) -> list[Response]:
        comment = ""
        status = result
        if isinstance(result, StoreOutcome):
            status, comment = result.status, result.comment
        if not isinstance(status, int) or not 0 <= status <= 0xFFFF:
            log.error(
                "add-in {addin} returned {value!r} for {message}, not a status",
                kind="addin.failure",
                addin=addin,
                value=status,
                message=message.name,
            )
            self.notifier.notify(
                request,
                None,
                PROCESSING_FAILURE,
                opened=result.opened if isinstance(result, StoreOutcome) else None,
            )
            return [
                (self._failure(message, PROCESSING_FAILURE, f"{addin} returned no status"), None)
            ]
        self._notify(request, result)
        if comment and status != 0:
            return [(response_command(message, status, ErrorComment=comment[:64]), None)]
        return [(response_command(message, status), None)]

    def _late_outcome(
        self, message: DimseMessage, request: DimseRequest, name: str, result: object
    ) -> None:
        """What a handler past its point of no return ended with, after its association.

        Its outcome goes to the notification subscribers, and the spool file, held for it
        (:meth:`_error`), is released: deleted if the handler did not move it.
        """
        try:
            if isinstance(result, Failure):
                log.failure(
                    "add-in call {name} failed after its association ended", result, name=name
                )
            else:
                self._notify(request, result)
        finally:
            message.release_spool()

    def _notify(self, request: DimseRequest, result: object) -> None:
        """Tell the notification subscribers what the handler's ``result`` stored, if anything."""
        stored = result.path if isinstance(result, StoreOutcome) else None
        opened = result.opened if isinstance(result, StoreOutcome) else None
        status = result.status if isinstance(result, StoreOutcome) else result
        if not isinstance(status, int) or (status != 0 and (status & 0xF000) != 0xB000):
            stored = None  # only a success or warning stored anything worth notifying
        self.notifier.notify(
            request, stored, status if isinstance(status, int) else None, opened=opened
        )

    def _error(
        self, message: DimseMessage, addin: str, failure: Failure, request: DimseRequest
    ) -> list[Response]:
        status = status_for_exception(failure)
        if failure.check(CancelledError):
            # The association ended (abort, connection lost, DisconnectClient): no response
            # can be sent any more, and the add-in did not fail. Past its point of no return
            # it runs on, and its outcome goes to the notification when it comes.
            committed = request.deadline.committed
            log.info(
                "association ended while add-in {addin} was serving {message}: {what}",
                addin=addin,
                message=message.name,
                what="its outcome is kept"
                if committed
                else "it was not past its point of no return",
            )
            if committed:
                message.hold_spool()  # the handler moves it yet; _late_outcome releases it
            else:
                self.notifier.notify(request, None, None)  # no response could be sent
            return [(self._failure(message, status, f"{addin}: association ended"), None)]
        self.notifier.notify(request, None, status)
        if failure.check(AddinTimeout):
            log.error(
                "add-in {addin} did not answer {message} within {timeout} s: status {status}",
                kind="addin.failure",
                addin=addin,
                message=message.name,
                timeout=self.server.settings.addin_timeout,
                status=status_name(status),
            )
        else:
            log.failure(
                "add-in {addin} failed on {message}: status {status}",
                failure,
                kind="addin.failure",
                addin=addin,
                message=message.name,
                status=status_name(status),
            )
        comment = f"{addin}: {failure.getErrorMessage()}"
        return [(self._failure(message, status, comment), None)]

    @staticmethod
    def _failure(message: DimseMessage, status: int, comment: str) -> dict[int, object]:
        return response_command(message, status, ErrorComment=comment)
