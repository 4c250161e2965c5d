"""flush_now sends a reply at once on plain TCP, and never touches closing or TLS transports.

Replies are flushed when a read ends and, for answers from a worker thread, when they are sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from pacsref.server.protocol import flush_now
from pacsref.testing.harness import Connection, ServerHarness
from pacsref.ul.constants import PDUType
from pacsref.ul.events import PresentationContextProposal

from .helpers import IMPLICIT, VERIFICATION, associate_rq, echo_rq, responses


class FakeTCP:
    """Just the attributes of twisted.internet.tcp.Connection that flush_now reads."""

    def __init__(self, pending: int, disconnecting: bool = False, tls: bool = False) -> None:
        self._tempDataLen = pending
        self.dataBuffer = b""
        self.disconnecting = disconnecting
        self.TLS = tls
        self.writes = 0

    def doWrite(self) -> None:
        self.writes += 1


@pytest.mark.parametrize(
    ("transport", "expected"),
    [
        (FakeTCP(pending=10), 1),
        (FakeTCP(pending=0), 0),
        (FakeTCP(pending=10, disconnecting=True), 0),
        (FakeTCP(pending=10, tls=True), 0),
    ],
    ids=["pending", "nothing-pending", "closing", "tls"],
)
def test_flush_only_open_plain_tcp_with_data(transport: FakeTCP, expected: int) -> None:
    """Only an open, plain TCP transport with buffered data is written immediately."""
    flush_now(transport)
    assert transport.writes == expected


def test_transports_without_the_attributes_are_left_alone() -> None:
    """In-memory transports (StringTransport) lack the attributes and are not flushed."""
    flush_now(object())


BLOCKING_SYNTAX = "1.2.826.0.1.3680043.9.7.3"
BLOCKING_ADDIN = f'''
from zope.interface import implementer
from pacsref.addin import IAddin, IEchoHandler, SupportedContext

@implementer(IAddin, IEchoHandler)
class Blocking:
    name = "blocking"
    description = "answers on a worker thread, as the storage add-in does"
    def presentation_contexts(self):
        return (SupportedContext("{BLOCKING_SYNTAX}", ("1.2.840.10008.1.2",)),)
    def handle_echo(self, request):
        return 0

blocking = Blocking()
'''


class FlushCountingTransport(StringTransport):
    """A StringTransport that looks like an open plain TCP connection to flush_now."""

    TLS = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flushes = 0

    @property
    def dataBuffer(self) -> bytes:
        return self.value()

    def doWrite(self) -> None:
        self.flushes += 1


@pytest.fixture
def connection(tmp_path: Path) -> tuple[ServerHarness, Connection, FlushCountingTransport]:
    harness = ServerHarness(
        tmp_path / "PACSREF", extra_addins={"testing_blocking.py": BLOCKING_ADDIN}
    )
    address = IPv4Address("TCP", "127.0.0.1", 40000)
    protocol = harness.factory.buildProtocol(address)
    transport = FlushCountingTransport(peerAddress=address)
    protocol.makeConnection(transport)
    conn = Connection(protocol, transport)
    conn.send(
        associate_rq(
            contexts=(
                PresentationContextProposal(1, VERIFICATION, (IMPLICIT,)),
                PresentationContextProposal(3, BLOCKING_SYNTAX, (IMPLICIT,)),
            )
        )
    )
    [(pdu_type, _)] = conn.received()
    assert pdu_type is PDUType.A_ASSOCIATE_AC
    return harness, conn, transport


def test_answer_from_worker_thread_is_sent_at_once(
    connection: tuple[ServerHarness, Connection, FlushCountingTransport],
) -> None:
    """A response that arrives from a worker thread, outside any read, is flushed by itself."""
    harness, conn, transport = connection
    conn.send(echo_rq(message_id=1, context_id=3, e0002=BLOCKING_SYNTAX))
    before = transport.flushes
    harness.threadpool.run_all()  # the worker answers; callFromThread runs the response
    assert transport.flushes == before + 1
    assert responses(conn.received())[0][0x0900] == 0


def test_answer_within_a_read_is_flushed_once(
    connection: tuple[ServerHarness, Connection, FlushCountingTransport],
) -> None:
    """A response produced inside dataReceived is flushed once, when the read ends."""
    _, conn, transport = connection
    before = transport.flushes
    conn.send(echo_rq(message_id=1))
    assert transport.flushes == before + 1
    assert responses(conn.received())[0][0x0900] == 0
