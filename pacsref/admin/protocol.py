"""The administrative socket's protocol: newline-delimited JSON :class:`ServiceMessage` lines.

Each request line gets exactly one response line, in request order (a request
whose handler waits on a worker thread holds back the responses to the lines
after it). Notifications may arrive between responses; clients tell them
apart by the message name (:data:`~pacsref.admin.messages.NOTIFICATIONS`).
Bad input never ends the connection or touches the DICOM service: it gets
``success: false`` and an ``error`` saying what was wrong, except a line over
:data:`~pacsref.admin.messages.MAX_LINE_LENGTH`, which is answered and then
closes that one admin connection (the rest of the line cannot be framed).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from pacsref.addin.errors import AeTitleError
from pacsref.admin.handlers import AdminCommands
from pacsref.admin.messages import (
    MAX_LINE_LENGTH,
    MessageError,
    ServiceMessage,
    decode_request,
    notification_for,
)

log = Logger(namespace="pacsref.admin")

__all__ = ["AdminFactory", "AdminProtocol"]


class AdminProtocol(LineReceiver):
    """One admin client's connection."""

    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE_LENGTH
    factory: AdminFactory

    def connectionMade(self) -> None:
        self._tail: Deferred[Any] = succeed(None)
        self.factory.connections.add(self)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.factory.connections.discard(self)

    def send(self, message: ServiceMessage) -> None:
        """Write one message line."""
        if self.transport is not None:
            self.transport.write(message.to_json().encode("utf-8") + self.delimiter)

    def lineReceived(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        if not line.strip():
            return
        self._tail.addCallback(lambda _: self._serve(line))

    def _serve(self, line: bytes) -> Deferred[None]:
        name = ""
        try:
            request = ServiceMessage.from_json(line)
            name = request.message
            command, args = decode_request(request)
        except MessageError as exc:
            self.send(self.factory.failure(name or "Error", str(exc)))
            return succeed(None)
        handler = getattr(self.factory.commands, command.handler)
        d = maybeDeferred(handler, *args)
        d.addCallbacks(
            lambda data: self.send(self.factory.response(command.name, data)),
            lambda failure: self.send(self.factory.failure(command.name, _describe(failure))),
        )
        return d

    def lineLengthExceeded(self, line: bytes) -> None:
        self.send(
            self.factory.failure(
                "Error",
                f"line longer than {self.MAX_LENGTH} bytes refused; closing this admin connection",
            )
        )
        if self.transport is not None:
            self.transport.loseConnection()


def _describe(failure: Failure) -> str:
    if failure.check(MessageError, AeTitleError):
        return str(failure.value)
    log.failure("admin request failed", failure)
    return f"internal error: {failure.getErrorMessage() or failure.type.__name__}"


class AdminFactory(Factory):
    """Builds :class:`AdminProtocol` connections and pushes notifications to all of them.

    Args:
        commands: the request handlers.
        service: the server's AE title, put in every message's ``service`` field.
    """

    protocol = AdminProtocol

    def __init__(self, commands: AdminCommands, service: str = "") -> None:
        self.commands = commands
        self.service = service
        self.connections: set[AdminProtocol] = set()
        self._unsubscribe = commands.control.notifier.subscribe(self.notify)

    def close(self) -> None:
        """Stop pushing notifications (the server is stopping)."""
        self._unsubscribe()

    def response(self, name: str, data: list[Any]) -> ServiceMessage:
        return ServiceMessage(name, self.service, True, "", list(data))

    def failure(self, name: str, error: str) -> ServiceMessage:
        return ServiceMessage(name, self.service, False, error, [])

    def notify(self, event: Any) -> None:
        """Push ``event`` to every connected admin client (skipped when nobody listens)."""
        if not self.connections:
            return
        message = notification_for(event, self.service)
        if message is None:
            return
        for connection in list(self.connections):
            connection.send(message)
