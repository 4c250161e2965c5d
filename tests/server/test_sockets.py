"""Socket options on real accepted sockets, and the listener's bind address.

The options are checked with ``getsockopt`` on a real loopback TCP connection
(blocking sockets with a timeout, no reactor, no sleep). Linux doubles
SO_RCVBUF/SO_SNDBUF for its bookkeeping (``man 7 socket``), so the check is
"at least what was asked".
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactor, StringTransport

from pacsref.server.protocol import apply_socket_options
from pacsref.server.service import DicomListenerService, server_service
from pacsref.settings import ServerSettings
from pacsref.testing.harness import ServerHarness


@pytest.fixture
def accepted() -> Iterator[socket.socket]:
    """The server side of a real loopback TCP connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    client = socket.create_connection(listener.getsockname(), timeout=5)
    server, _ = listener.accept()
    try:
        yield server
    finally:
        for s in (server, client, listener):
            s.close()


class SocketTransport(StringTransport):
    """A StringTransport that exposes a real socket through getHandle(), as TCP transports do."""

    def __init__(self, handle: socket.socket, peer: IPv4Address) -> None:
        super().__init__(peerAddress=peer)
        self.handle = handle

    def getHandle(self) -> socket.socket:
        return self.handle


def _options(sock: socket.socket) -> tuple[int, int, int]:
    return (
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
    )


@pytest.mark.parametrize(("no_delay", "buffer"), [(True, 65536), (False, 8192)])
def test_apply_socket_options_sets_them(
    accepted: socket.socket, no_delay: bool, buffer: int
) -> None:
    """No Delay, Receive Buffer and Send Buffer from settings end up on the socket."""
    settings = ServerSettings(
        ae_title="PACSREF", no_delay=no_delay, receive_buffer=buffer, send_buffer=buffer
    )
    apply_socket_options(SocketTransport(accepted, IPv4Address("TCP", "127.0.0.1", 1)), settings)
    nodelay, rcvbuf, sndbuf = _options(accepted)
    assert bool(nodelay) is no_delay
    assert rcvbuf >= buffer and sndbuf >= buffer
    assert rcvbuf <= 2 * buffer + 4096  # set, not just the system default


def test_zero_buffers_are_left_to_the_kernel(accepted: socket.socket) -> None:
    """0 (the default) sets neither buffer, so Linux keeps tuning them (tcp(7), tcp_rmem)."""
    before = _options(accepted)
    settings = ServerSettings(ae_title="PACSREF", receive_buffer=0, send_buffer=0)
    assert (settings.receive_buffer, settings.send_buffer) == (0, 0)
    apply_socket_options(SocketTransport(accepted, IPv4Address("TCP", "127.0.0.1", 1)), settings)
    after = _options(accepted)
    assert after[1:] == before[1:]
    assert ServerSettings(ae_title="PACSREF").receive_buffer == 0  # the default


def test_every_accepted_connection_gets_the_options(
    tmp_path: Path, accepted: socket.socket
) -> None:
    """The protocol applies the settings' options to its socket when the connection is made."""
    harness = ServerHarness(
        tmp_path / "PACSREF",
        settings={"no_delay": True, "receive_buffer": 50000, "send_buffer": 40000},
    )
    peer = IPv4Address("TCP", "127.0.0.1", 40000)
    protocol = harness.factory.buildProtocol(peer)
    protocol.makeConnection(SocketTransport(accepted, peer))
    nodelay, rcvbuf, sndbuf = _options(accepted)
    assert nodelay and rcvbuf >= 50000 and sndbuf >= 40000


def test_in_memory_transport_without_a_socket_is_left_alone() -> None:
    """A transport without getHandle (tests, iosim) is not an error."""
    apply_socket_options(StringTransport(), ServerSettings(ae_title="PACSREF"))


@pytest.mark.parametrize("ip", ["127.0.0.1", "0.0.0.0", "::1"])
def test_listener_binds_to_the_ip_address_setting(tmp_path: Path, ip: str) -> None:
    """The DICOM listener listens on the IP Address and Port settings, and no other address."""
    harness = ServerHarness(tmp_path / "PACSREF", settings={"ip_address": ip, "port": 11113})
    reactor = MemoryReactor()
    service = DicomListenerService(harness.factory, reactor)
    service.startService()
    [(port, factory, _backlog, interface)] = reactor.tcpServers
    assert (port, interface) == (11113, ip)
    assert factory is harness.factory
    service.stopService()


def test_service_tree_has_a_service_log_only_when_enabled(tmp_path: Path) -> None:
    """server_service adds the service log service first when Enable Service Log is on."""
    off = ServerHarness(tmp_path / "OFF")
    names = [s.name for s in server_service(off.server, MemoryReactor())]
    assert "service-log" not in names
    on = ServerHarness(tmp_path / "ON", settings={"enable_service_log": True})
    root = server_service(on.server, MemoryReactor())
    assert next(s.name for s in root) == "service-log"
    assert root.control is root.factory.control  # type: ignore[attr-defined]
