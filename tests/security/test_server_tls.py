"""A secure pacsref server end to end in memory: the real factory behind the real TLS layer.

The server is built exactly as ``twistd pacsref`` builds it (server directory,
shipped add-ins, ``addin-options/security.toml``), then its factory is put
behind ``TLSMemoryBIOFactory`` as ``reactor.listenSSL`` does, and peers
(good, bad, plain, silent) are pumped against it with a ``Clock``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from pacsref.addin import AeInfo, IDicomRequest
from pacsref.security import SecureTransport
from pacsref.server.protocol import DicomServerProtocol
from pacsref.server.requestor import TLSUnavailable, _EchoRequestor
from pacsref.testing.harness import ServerHarness
from pacsref.testing.tls import LeafFiles, RawClientTLS, TestPKI, connect_tls
from pacsref.testing.tls import write_security_options as write_options
from pacsref.ul import codec
from pacsref.ul.constants import PDUType
from pacsref.ul.events import AssociateRequest, PresentationContextProposal, UserInformation
from pacsref.ul.framing import PDUFramer

from ..server.helpers import associate_rq, echo_rq, responses
from .helpers import Recorder

ARTIM = 7.0


def _request(called: str) -> AssociateRequest:
    """An A-ASSOCIATE-RQ for the requestor role: Verification, Implicit VR LE."""
    return AssociateRequest(
        called_ae_title=called,
        calling_ae_title="REQUESTOR",
        presentation_contexts=(
            PresentationContextProposal(1, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",)),
        ),
        user_information=UserInformation(16384, "1.2.3.4"),
    )


@pytest.fixture
def pki(tmp_path: Path) -> TestPKI:
    return TestPKI(tmp_path / "pki")


def _harness(tmp_path: Path, pki: TestPKI, **options: Any) -> ServerHarness:
    """A secure server: options file first, then the directory is filled and loaded."""
    server_dir = tmp_path / "SECURE"
    write_options(server_dir, pki, **options)
    return ServerHarness(
        server_dir,
        settings={"ae_title": "SECURE", "server_secure": True, "artim_timeout": ARTIM},
    )


@pytest.fixture
def harness(tmp_path: Path, pki: TestPKI) -> ServerHarness:
    return _harness(tmp_path, pki, bindings=[("subject_cn", "CT_ROOM_1", ["CT_ROOM_1", "CT_QR"])])


@pytest.fixture
def tls_log() -> Iterator[list[str]]:
    """Formatted ``tls.*`` log lines of the server while the test runs."""
    lines: list[str] = []

    def observe(event: LogEvent) -> None:
        if str(event.get("kind", "")).startswith("tls."):
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


def _security(harness: ServerHarness) -> SecureTransport:
    security = harness.server.security
    assert security is not None
    return security


def _pdus(data: bytes) -> list[tuple[PDUType, bytes]]:
    framer = PDUFramer(0)
    framer.feed(data)
    out = []
    while (pdu := framer.next_pdu()) is not None:
        out.append(pdu)
    return out


class Peer:
    """One TLS client of the harness server, speaking raw PDUs."""

    def __init__(self, harness: ServerHarness, client_options: object | None) -> None:
        self.protocol = Recorder() if client_options is not None else _PlainRecorder()
        self.connection = connect_tls(
            harness.factory,
            self.protocol,
            _security(harness).listener,
            client_options,
            harness.clock,
        )
        self.server: DicomServerProtocol = self.connection.server.wrappedProtocol  # type: ignore[assignment]

    def send(self, data: bytes) -> list[tuple[PDUType, bytes]]:
        """Send bytes, pump, and return the PDUs received since the last call."""
        before = len(self.protocol.data)
        if self.protocol.lost is None:
            self.protocol.transport.write(data)
            self.connection.flush()
        return _pdus(self.protocol.data[before:])

    @property
    def closed(self) -> bool:
        return self.protocol.lost is not None


class _PlainRecorder(Recorder):
    """A client without TLS (the failure line helper does not apply to it)."""

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = reason


def _client(pki: TestPKI, leaf: LeafFiles, version: int = SSL.TLS1_3_VERSION) -> RawClientTLS:
    return RawClientTLS(leaf, SSL.TLS1_2_VERSION, version)


def test_echo_over_tls(harness: ServerHarness, pki: TestPKI, tls_log: list[str]) -> None:
    """Associate, C-ECHO and release over TLS; the association knows it is secure and who."""
    peer = Peer(harness, _client(pki, pki.issue("ct", common_name="CT_ROOM_1")))
    [(pdu_type, _)] = peer.send(associate_rq(called="SECURE", calling="CT_ROOM_1"))
    assert pdu_type is PDUType.A_ASSOCIATE_AC
    [rsp] = responses(peer.send(echo_rq(message_id=3)))
    assert rsp[0x0900] == 0x0000
    info = peer.server.session.info  # type: ignore[union-attr]
    assert info is not None and info.secure
    assert info.peer_certificate is not None
    assert info.peer_certificate.subject_cns == ("CT_ROOM_1",)
    assert [t for t, _ in peer.send(codec.RELEASE_RQ)] == [PDUType.A_RELEASE_RP]
    assert any("TLS established (TLSv1.3" in line and "CN=CT_ROOM_1" in line for line in tls_log)


@pytest.mark.parametrize("calling", ["CT_ROOM_1", "CT_QR"])
def test_bound_certificate_may_use_its_titles(
    harness: ServerHarness, pki: TestPKI, calling: str
) -> None:
    """A certificate bound to AE titles may call as any of them."""
    peer = Peer(harness, _client(pki, pki.issue("ct", common_name="CT_ROOM_1")))
    [(pdu_type, _)] = peer.send(associate_rq(called="SECURE", calling=calling))
    assert pdu_type is PDUType.A_ASSOCIATE_AC


@pytest.mark.parametrize(
    ("cn", "calling"),
    [
        ("CT_ROOM_1", "MR_1"),  # a bound certificate calling as another AE title
        ("MR_1", "CT_ROOM_1"),  # another certificate claiming the bound AE title
    ],
)
def test_binding_violations_rejected_1_1_3(
    harness: ServerHarness, pki: TestPKI, cn: str, calling: str
) -> None:
    """Breaking a binding, either way, gets A-ASSOCIATE-RJ (1, 1, 3), notified with the rule."""
    peer = Peer(harness, _client(pki, pki.issue("peer", common_name=cn)))
    [(pdu_type, body)] = peer.send(associate_rq(called="SECURE", calling=calling))
    assert pdu_type is PDUType.A_ASSOCIATE_RJ and body == bytes([0, 1, 1, 3])
    [refused] = [e for e in harness.events if e.name == "AssociationRefused"]
    assert refused.rule == "certificate-binding"
    assert f"CN={cn}" in refused.why


def test_unbound_certificate_is_free_unless_binding_required(tmp_path: Path, pki: TestPKI) -> None:
    """Without require_binding a certificate nobody bound is not restricted; with it, it is."""
    free = _harness(tmp_path / "a", pki, bindings=[("subject_cn", "CT", ["CT"])])
    peer = Peer(free, _client(pki, pki.issue("x", common_name="X")))
    assert peer.send(associate_rq(called="SECURE", calling="ANY"))[0][0] is PDUType.A_ASSOCIATE_AC
    strict = _harness(
        tmp_path / "b", pki, bindings=[("subject_cn", "CT", ["CT"])], require_binding=True
    )
    peer = Peer(strict, _client(pki, pki.issue("y", common_name="Y")))
    [(pdu_type, body)] = peer.send(associate_rq(called="SECURE", calling="ANY"))
    assert pdu_type is PDUType.A_ASSOCIATE_RJ and body == bytes([0, 1, 1, 3])


def test_plain_dicom_on_the_tls_port(harness: ServerHarness, tls_log: list[str]) -> None:
    """An A-ASSOCIATE-RQ in clear text is not TLS: refused at once, and the log says so."""
    peer = Peer(harness, None)
    peer.send(associate_rq(called="SECURE", calling="PLAIN"))
    assert peer.closed
    assert not harness.factory.connections
    [line] = tls_log
    assert "TLS handshake failed:" in line
    assert any(word in line for word in ("wrong version number", "packet length too long"))


@pytest.mark.parametrize("how", ["peer aborts", "release"])
def test_a_tls_association_end_closes_at_once(
    harness: ServerHarness, pki: TestPKI, how: str
) -> None:
    """The close after an A-ABORT or A-RELEASE is as prompt as over plain TCP: Twisted's TLS
    transport closes only with no producer registered, so the read throttle goes first."""
    peer = Peer(harness, _client(pki, pki.issue("ct", common_name="CT_ROOM_1")))
    [(pdu_type, _)] = peer.send(associate_rq(called="SECURE", calling="CT_ROOM_1"))
    assert pdu_type is PDUType.A_ASSOCIATE_AC
    if how == "peer aborts":
        peer.send(b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00")
    else:
        assert [t for t, _ in peer.send(codec.RELEASE_RQ)] == [PDUType.A_RELEASE_RP]
        harness.clock.advance(ARTIM)  # the peer does not close: ARTIM in Sta13 (AA-2)
    peer.connection.flush()
    assert peer.closed, "still open: the close waited for the ARTIM cut"
    assert not harness.factory.connections


def test_silent_peer_is_dropped_by_artim(harness: ServerHarness, tls_log: list[str]) -> None:
    """A peer that connects and never sends a ClientHello is closed when ARTIM expires."""
    peer = Peer(harness, None)
    harness.clock.advance(ARTIM - 0.1)
    peer.connection.flush()
    assert not peer.closed
    harness.clock.advance(0.2)
    peer.connection.flush()
    assert peer.closed
    assert not harness.factory.connections
    [line] = tls_log
    assert "TLS handshake failed: not completed within the ARTIM timeout (7 s)" in line


@pytest.mark.parametrize(
    ("make", "version", "reason"),
    [
        ("expired", SSL.TLS1_3_VERSION, "certificate has expired"),
        ("untrusted", SSL.TLS1_3_VERSION, "unable to get local issuer certificate"),
        (
            "purpose",
            SSL.TLS1_2_VERSION,
            "certificate purpose (no clientAuth/serverAuth Extended Key Usage)",
        ),
        ("none", SSL.TLS1_3_VERSION, "peer did not return a certificate"),
        ("tls10", SSL.TLS1_VERSION, "unsupported protocol"),
        ("tls11", SSL.TLS1_1_VERSION, "unsupported protocol"),
    ],
)
def test_bad_peers_refused_logged_and_others_still_served(
    harness: ServerHarness,
    pki: TestPKI,
    tls_log: list[str],
    make: str,
    version: int,
    reason: str,
) -> None:
    """Each bad peer is refused in the handshake with its reason in the log, then a good
    peer is served by the same server as if nothing happened."""
    leaf = {
        "expired": lambda: pki.issue_expired("e", "E"),
        "untrusted": lambda: pki.issue_untrusted("u", "U"),
        "purpose": lambda: pki.issue_server_only("p", "P"),
        "none": lambda: None,
        "tls10": lambda: pki.issue("o", common_name="O"),
        "tls11": lambda: pki.issue("o", common_name="O"),
    }[make]()
    bad = Peer(harness, RawClientTLS(leaf, min(version, SSL.TLS1_2_VERSION), version))
    assert bad.send(associate_rq(called="SECURE", calling="BAD")) == []
    assert bad.closed
    assert len(tls_log) == 1 and reason in tls_log[0], tls_log
    assert not harness.factory.connections
    good = Peer(harness, _client(pki, pki.issue("ct", common_name="CT_ROOM_1")))
    [(pdu_type, _)] = good.send(associate_rq(called="SECURE", calling="CT_ROOM_1"))
    assert pdu_type is PDUType.A_ASSOCIATE_AC


class _SocketTransport(StringTransport):
    """An in-memory transport that owns a real socket, to see socket options land on it."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.sock = sock

    def getHandle(self) -> socket.socket:
        return self.sock


def test_socket_options_reach_the_socket_under_tls(harness: ServerHarness) -> None:
    """Under TLS the protocol's transport is the TLS layer; No Delay still reaches the socket."""
    tls = TLSMemoryBIOFactory(_security(harness).listener, False, harness.factory, harness.clock)
    protocol = tls.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    with socket.socket() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        protocol.makeConnection(_SocketTransport(sock))
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    assert isinstance(protocol.wrappedProtocol, DicomServerProtocol)
    protocol.wrappedProtocol.connectionLost(Failure(ConnectionDone()))


def _outbound(harness: ServerHarness, hostname: str) -> _EchoRequestor:
    client = _EchoRequestor(_request("SECURE"), harness.clock, 5.0)
    connect_tls(
        harness.factory,
        client,
        _security(harness).listener,
        _security(harness).client_options(hostname),
        harness.clock,
    ).flush()
    return client


def test_requestor_echoes_over_tls(tmp_path: Path, pki: TestPKI) -> None:
    """Outbound TLS: our requestor, with our certificate, verifies the peer as 127.0.0.1."""
    harness = _harness(tmp_path, pki)
    client = _outbound(harness, "127.0.0.1")
    results: list[int] = []
    client.done.addCallback(results.append)
    assert results == [0]


def test_requestor_refuses_peer_with_other_identity(tmp_path: Path, pki: TestPKI) -> None:
    """Outbound TLS to a host the peer's certificate does not name fails, saying why."""
    harness = _harness(tmp_path, pki)
    client = _outbound(harness, "pacs.example.org")
    errors: list[str] = []
    client.done.addErrback(lambda failure: errors.append(failure.getErrorMessage()))
    assert errors and errors[0].startswith(
        "TLS handshake failed: peer certificate refused: not issued for pacs.example.org "
        "(no subjectAltName dNSName matches it)"
    )


def test_secure_peer_without_security_addin(tmp_path: Path) -> None:
    """An AE marked secure cannot be reached by a server without a security add-in."""
    harness = ServerHarness(tmp_path / "PLAIN")
    requestor = harness.server.registry.get(IDicomRequest)
    errors: list[Any] = []
    requestor.echo(AeInfo("PEER", "127.0.0.1", 2762, secure=True)).addErrback(errors.append)  # type: ignore[attr-defined]
    assert errors and errors[0].check(TLSUnavailable)
    assert "marked secure" in errors[0].getErrorMessage()
