"""flush_now sends a reply at once on plain TCP, and never touches closing or TLS transports."""

from __future__ import annotations

import pytest

from pacsref.server.protocol import flush_now


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
