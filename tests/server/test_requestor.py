"""The default IDicomRequest, in memory against our own acceptor (iosim pump) or a scripted peer.

The interoperability test against DCMTK's storescp lives in tests/interop.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim

from pacsref.addin import AeInfo, IDicomRequest
from pacsref.dimse import encode_command
from pacsref.server.requestor import (
    AssociationFailed,
    AssociationRejected,
    UnexpectedResponse,
    _EchoRequestor,
)
from pacsref.testing.harness import ServerHarness
from pacsref.ul import codec
from pacsref.ul.constants import ContextResult, PDUType
from pacsref.ul.events import (
    AssociateAccept,
    AssociateRequest,
    DataTransfer,
    PresentationContextProposal,
    PresentationContextResult,
    PresentationDataValue,
    UserInformation,
)
from pacsref.ul.framing import PDUFramer


def _request(called: str) -> AssociateRequest:
    return AssociateRequest(
        called_ae_title=called,
        calling_ae_title="REQUESTOR",
        presentation_contexts=(
            PresentationContextProposal(1, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",)),
        ),
        user_information=UserInformation(16384, "1.2.3.4"),
    )


def _pump(harness: ServerHarness, called: str) -> _EchoRequestor:
    client = _EchoRequestor(_request(called), harness.clock, 5.0)
    server_address = IPv4Address("TCP", "127.0.0.1", 11112)
    client_address = IPv4Address("TCP", "127.0.0.1", 40001)
    _, _, pump = iosim.connectedServerAndClient(
        lambda: harness.factory.buildProtocol(client_address),
        lambda: client,
        clientTransportFactory=lambda p: iosim.FakeTransport(
            p, False, client_address, server_address
        ),
        serverTransportFactory=lambda p: iosim.FakeTransport(
            p, True, server_address, client_address
        ),
        clock=harness.clock,
    )
    pump.flush()
    return client


def test_requestor_echoes_our_acceptor(tmp_path: Path) -> None:
    """A C-ECHO from the requestor role to the acceptor role succeeds and releases."""
    harness = ServerHarness(tmp_path / "PACSREF")
    client = _pump(harness, "PACSREF")
    assert client.done.called
    assert client.status == 0
    results: list[int] = []
    client.done.addCallback(results.append)
    assert results == [0]


def test_requestor_reports_rejection(tmp_path: Path) -> None:
    """A rejected association fails the Deferred with the PS3.8 words of the RJ."""
    harness = ServerHarness(tmp_path / "PACSREF")
    client = _pump(harness, "SOMEONE-ELSE")
    errors: list[str] = []
    client.done.addErrback(lambda f: errors.append(str(f.trap(AssociationRejected) and f.value)))
    assert errors and "called-AE-title-not-recognized (1, 1, 7)" in errors[0]


def test_default_requestor_is_registered(tmp_path: Path) -> None:
    """The server registers a default IDicomRequest that resolves AE titles via IAeTitles."""
    harness = ServerHarness(tmp_path / "PACSREF")
    requestor = harness.server.registry.get(IDicomRequest)
    failures: list[object] = []
    requestor.echo("UNKNOWN").addErrback(failures.append)  # type: ignore[attr-defined]
    assert failures and "not in the AE title table" in str(failures[0])
    assert isinstance(AeInfo("X", "127.0.0.1", 104), AeInfo)


def test_requestor_spools_into_the_server_spool_directory(tmp_path: Path) -> None:
    """Whatever a peer sends it is spooled where the server's own data sets are (the
    Temporary Directory setting), not in the system's temporary directory."""
    harness = ServerHarness(tmp_path / "PACSREF")
    requestor = harness.server.registry.get(IDicomRequest)
    assert requestor.spool_dir == harness.server.spool_dir  # type: ignore[attr-defined]
    client, _, _ = _accepted_echo(requestor.spool_dir)  # type: ignore[attr-defined]
    assert client._assembler is not None
    assert client._assembler._spool_dir == harness.server.spool_dir


def _echo_unreachable(reconnect: float, timeout: float | None = None):  # type: ignore[no-untyped-def]
    from twisted.internet.testing import MemoryReactorClock

    from pacsref.server.requestor import DicomRequestor
    from pacsref.settings import ServerSettings

    reactor = MemoryReactorClock()
    requestor = DicomRequestor(
        reactor, ServerSettings(ae_title="PACSREF", reconnect_timeout=reconnect)
    )
    failures: list[object] = []
    d = requestor.echo(AeInfo("FAR", "192.0.2.1", 104), timeout=timeout)
    d.addErrback(failures.append)
    return reactor, failures


def test_reconnect_timeout_bounds_the_connection_attempt() -> None:
    """A peer that never answers the TCP handshake: the echo fails with ReconnectTimeout
    after exactly the Reconnect timeout, naming the peer, and no attempt is left running."""
    from pacsref.server.requestor import ReconnectTimeout

    reactor, failures = _echo_unreachable(reconnect=5.0, timeout=60.0)
    [(_, port, _, connect_timeout, _)] = reactor.tcpClients
    assert (port, connect_timeout) == (104, 5.0)
    reactor.advance(4.9)
    assert failures == []
    reactor.advance(0.2)
    [failure] = failures
    assert failure.check(ReconnectTimeout)  # type: ignore[attr-defined]
    message = failure.getErrorMessage()  # type: ignore[attr-defined]
    assert "FAR at 192.0.2.1:104" in message and "within 5 s" in message
    assert reactor.getDelayedCalls() == []
    assert all(connector.stoppedConnecting for connector in reactor.connectors)  # type: ignore[attr-defined]


def test_exchange_timeout_when_shorter_than_reconnect() -> None:
    """A per-call timeout shorter than the Reconnect timeout ends the attempt first, as an
    ExchangeTimeout, and cancels the connection attempt too."""
    from pacsref.server.requestor import ExchangeTimeout

    reactor, failures = _echo_unreachable(reconnect=30.0, timeout=2.0)
    reactor.advance(2.0)
    [failure] = failures
    assert failure.check(ExchangeTimeout)  # type: ignore[attr-defined]
    assert "within 2 s" in failure.getErrorMessage()  # type: ignore[attr-defined]
    assert reactor.getDelayedCalls() == []


def _accepted_echo(
    spool_dir: Path | None = None,
) -> tuple[_EchoRequestor, StringTransport, list[object]]:
    """A requestor whose association was accepted and whose C-ECHO-RQ (message 1) is out."""
    client = _EchoRequestor(_request("PEER"), Clock(), 5.0, spool_dir)
    transport = StringTransport()
    client.makeConnection(transport)
    accept = AssociateAccept(
        "PEER",
        "REQUESTOR",
        (PresentationContextResult(1, ContextResult.ACCEPTANCE, "1.2.840.10008.1.2"),),
        UserInformation(16384, "1.2.3.5"),
    )
    client.dataReceived(codec.encode_associate_ac(accept))
    results: list[object] = []
    client.done.addBoth(results.append)
    transport.clear()
    return client, transport, results


def _answer(client: _EchoRequestor, fields: dict[int, object]) -> None:
    """The peer sends one command set on context 1."""
    pdv = PresentationDataValue(1, True, True, encode_command(fields))
    client.dataReceived(codec.encode_p_data(DataTransfer((pdv,))))


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (
            {0x0100: 0x8001, 0x0120: 99, 0x0800: 0x0101, 0x0900: 0},
            ("C-STORE-RSP", "Command Field 0x8001", "responding to message 99"),
        ),
        (
            {0x0100: 0x8030, 0x0120: 2, 0x0800: 0x0101, 0x0900: 0},
            ("C-ECHO-RSP", "Command Field 0x8030", "responding to message 2"),
        ),
        (
            {0x0002: "1.2.840.10008.1.1", 0x0100: 0x0030, 0x0110: 1, 0x0800: 0x0101},
            ("C-ECHO-RQ", "Command Field 0x0030", "Message ID 1"),
        ),
        (
            {0x0100: 0x8030, 0x0120: 1, 0x0800: 0x0101},
            ("C-ECHO-RSP", "responding to message 1", "without a Status"),
        ),
    ],
    ids=["store-rsp-other-id", "echo-rsp-other-id", "a-request", "no-status"],
)
def test_requestor_refuses_anything_but_the_echo_response(
    fields: dict[int, object], named: tuple[str, ...]
) -> None:
    """Only a C-ECHO-RSP to message 1 with a Status completes the echo; anything else fails
    it with UnexpectedResponse naming what arrived, and the association is aborted."""
    client, transport, results = _accepted_echo()

    _answer(client, fields)

    [failure] = results
    assert isinstance(failure, Failure) and failure.check(UnexpectedResponse)
    assert failure.check(AssociationFailed)  # callers catching the base class still do
    message = failure.getErrorMessage()
    assert all(part in message for part in named), message
    assert client.status is None
    [(pdu_type, _)] = _pdus(transport)
    assert pdu_type is PDUType.A_ABORT
    assert transport.disconnecting


def test_requestor_takes_the_echo_response_to_its_message() -> None:
    """The C-ECHO-RSP to message 1: its status, after the release."""
    client, transport, results = _accepted_echo()

    _answer(client, {0x0100: 0x8030, 0x0120: 1, 0x0800: 0x0101, 0x0900: 0x0110})

    assert client.status == 0x0110 and results == []
    [(pdu_type, _)] = _pdus(transport)
    assert pdu_type is PDUType.A_RELEASE_RQ
    client.dataReceived(codec.RELEASE_RP)
    assert results == [0x0110]


def _pdus(transport: StringTransport) -> list[tuple[PDUType, bytes]]:
    framer = PDUFramer(0)
    framer.feed(transport.value())
    out = []
    while (pdu := framer.next_pdu()) is not None:
        out.append(pdu)
    return out
