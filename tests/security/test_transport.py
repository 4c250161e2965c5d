"""Transport helpers: the socket under TLS, TLS detection, failure lines."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from OpenSSL import SSL
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from pacsref.security import handshake_failure, is_tls, peer_certificate, underlying_socket


class _Layer:
    """A transport whose handle is ``handle`` and which sits on ``transport``."""

    def __init__(self, handle: object, transport: object = None) -> None:
        self._handle = handle
        self.transport = transport

    def getHandle(self) -> object:
        return self._handle


@pytest.fixture
def sock() -> Iterator[socket.socket]:
    with socket.socket() as s:
        yield s


def test_socket_found_below_a_tls_layer(sock: socket.socket) -> None:
    """Under TLS the top handle is an SSL.Connection; the socket is one layer down."""
    tls = _Layer(SSL.Connection(SSL.Context(SSL.TLS_METHOD)), _Layer(sock))
    assert underlying_socket(tls) is sock


def test_plain_transport_socket(sock: socket.socket) -> None:
    """Without TLS the transport's own handle is the socket."""
    assert underlying_socket(_Layer(sock)) is sock


def test_in_memory_transport_has_no_socket() -> None:
    """StringTransport (tests) has no socket: None, so socket options are simply skipped."""
    assert underlying_socket(StringTransport()) is None


def test_plain_transport_is_not_tls() -> None:
    """A plain transport is not TLS and has no peer certificate."""
    assert not is_tls(StringTransport())
    assert peer_certificate(StringTransport()) is None


def test_failure_lines() -> None:
    """Without a recorded verification failure the line comes from the reason itself."""
    transport = StringTransport()
    assert handshake_failure(transport, None) == (
        "connection closed before the handshake completed"
    )
    error = SSL.Error([("SSL routines", "", "wrong version number")])
    assert handshake_failure(transport, Failure(error)) == "wrong version number"
    closed = "the peer closed the connection during the handshake"
    assert handshake_failure(transport, Failure(ConnectionDone())) == closed
    assert handshake_failure(transport, Failure(ValueError("odd"))) == "odd"
