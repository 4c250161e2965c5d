"""A recording protocol for in-memory TLS tests, and a one-call handshake runner."""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from pacsref.security import handshake_failure, tls_session
from pacsref.testing.tls import TLSConnection, connect_tls


@implementer(IHandshakeListener)
class Recorder(Protocol):
    """Remembers what happened to it; reads TLS facts while the connection still exists.

    ``handshake_failure`` and ``tls_session`` need the live ``SSL.Connection``,
    which Twisted drops right after ``connectionLost``, so they are read inside
    the callbacks, as the server's protocol does.
    """

    def __init__(self) -> None:
        self.data = b""
        self.lost: Failure | None = None
        self.failure_text: str | None = None
        self.session: dict[str, object] = {}

    def handshakeCompleted(self) -> None:
        self.session = tls_session(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self.lost = reason
        self.failure_text = handshake_failure(self.transport, reason)


class RecorderFactory(Factory):
    """Builds :class:`Recorder` s and keeps them, so a test can look at the server side."""

    def __init__(self) -> None:
        self.built: list[Recorder] = []

    def buildProtocol(self, addr: object) -> Recorder:
        protocol = Recorder()
        protocol.factory = self
        self.built.append(protocol)
        return protocol


@dataclass
class Outcome:
    """Both sides of one attempted TLS connection after a message from the client."""

    server: Recorder
    client: Recorder
    connection: TLSConnection
    sent: bytes = field(default=b"ping")

    @property
    def accepted(self) -> bool:
        """The server got the client's application data and neither side failed."""
        return self.server.data == self.sent and self.server.lost is None

    @property
    def server_reason(self) -> str:
        """Why the server ended the connection (empty when it did not)."""
        return self.server.failure_text or ""


def attempt(server_options: object, client_options: object) -> Outcome:
    """Handshake, then send ``ping`` from the client (TLS 1.3 verifies client certificates
    after the client considers the handshake done, so only data shows the verdict)."""
    factory = RecorderFactory()
    client = Recorder()
    connection = connect_tls(factory, client, server_options, client_options)
    outcome = Outcome(factory.built[0], client, connection)
    if client.lost is None:
        client.transport.write(outcome.sent)
        connection.flush()
    return outcome
