"""Route a complete DIMSE request to the add-in that serves it.

The add-in is chosen by the presentation context the request arrived on
(its abstract syntax) and by the handler interface the command needs. The
call runs on the server's thread pool under the add-in timeout; whatever the
add-in does — return a status, raise, hang — the association gets exactly one
final response and goes on (DESIGN.md, "Add-ins").
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface

from pacsref.addin import (
    AddinTimeout,
    AssociationInfo,
    DimseRequest,
    IEchoHandler,
    IStoreHandler,
    call_with_timeout,
    is_nonblocking,
    status_for_exception,
)
from pacsref.dimse import CommandField, DimseMessage, response_command, status_name
from pacsref.dimse.status import PROCESSING_FAILURE, UNRECOGNIZED_OPERATION
from pacsref.server.context import ServerContext

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


@functools.cache
def _addin_logger(name: str) -> Logger:
    """One logger per add-in, namespaced so the service log says who wrote a line."""
    return Logger(namespace=f"pacsref.addin.{name}")


class Dispatcher:
    """Turns requests into responses by calling add-ins; one per server."""

    def __init__(self, server: ServerContext, reactor: Any) -> None:
        self.server = server
        self.reactor = reactor

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
            return succeed([(self._failure(message, UNRECOGNIZED_OPERATION, comment), None)])
        addin = addins[0]
        request = DimseRequest(
            association=association,
            context_id=message.context_id,
            abstract_syntax=abstract_syntax,
            transfer_syntax=message.transfer_syntax,
            command=message.command,
            dataset_path=message.dataset_path,
            message_id=message.message_id or 0,
            affected_sop_class_uid=message.affected_sop_class_uid or "",
            affected_sop_instance_uid=message.affected_sop_instance_uid or "",
            log=_addin_logger(addin.name),
            services=self.server.registry,
        )
        handler: Callable[[DimseRequest], int] = getattr(addin, route.method)
        if is_nonblocking(handler):
            d = maybeDeferred(handler, request)
        else:
            d = call_with_timeout(
                self.reactor,
                self.server.threadpool,
                self.server.settings.addin_timeout,
                handler,
                request,
                name=f"{addin.name}.{message.name}",
            )
        d.addCallbacks(
            lambda status: self._final(message, addin.name, status),
            lambda failure: self._error(message, addin.name, failure),
        )
        return d

    def _final(self, message: DimseMessage, addin: str, status: object) -> list[Response]:
        if not isinstance(status, int) or not 0 <= status <= 0xFFFF:
            log.error(
                "add-in {addin} returned {value!r} for {message}, not a status",
                addin=addin,
                value=status,
                message=message.name,
            )
            return [
                (self._failure(message, PROCESSING_FAILURE, f"{addin} returned no status"), None)
            ]
        return [(response_command(message, status), None)]

    def _error(self, message: DimseMessage, addin: str, failure: Failure) -> list[Response]:
        status = status_for_exception(failure)
        if failure.check(AddinTimeout):
            log.error(
                "add-in {addin} did not answer {message} within {timeout} s: status {status}",
                addin=addin,
                message=message.name,
                timeout=self.server.settings.addin_timeout,
                status=status_name(status),
            )
        else:
            log.failure(
                "add-in {addin} failed on {message}: status {status}",
                failure,
                addin=addin,
                message=message.name,
                status=status_name(status),
            )
        comment = f"{addin}: {failure.getErrorMessage()}"
        return [(self._failure(message, status, comment), None)]

    @staticmethod
    def _failure(message: DimseMessage, status: int, comment: str) -> dict[int, object]:
        return response_command(message, status, ErrorComment=comment)
