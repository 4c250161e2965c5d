"""The default IDicomRequest, in memory against our own acceptor (iosim pump).

The interoperability test against DCMTK's storescp lives in tests/interop.
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet.address import IPv4Address
from twisted.test import iosim

from pacsref.addin import AeInfo, IDicomRequest
from pacsref.server.requestor import AssociationRejected, _EchoRequestor
from pacsref.testing.harness import ServerHarness
from pacsref.ul.events import (
    AssociateRequest,
    PresentationContextProposal,
    UserInformation,
)


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
