"""A peer certificate OpenSSL verifies but ``cryptography`` cannot parse, at the real server.

The handshake succeeds, then reading the peer's identity (for the binding table)
fails. That used to escape ``handshakeCompleted`` into the reactor: an "Unhandled
Error" traceback and a close with no reason. It must be one ``tls.refused`` line
like any other refused certificate, the connection cut before its A-ASSOCIATE-RQ is
read, and the next peer served as usual.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from OpenSSL import SSL
from twisted.logger import LogEvent, formatEvent, globalLogPublisher

from pacsref.testing.harness import ServerHarness
from pacsref.testing.tls import LeafFiles, RawClientTLS, TestPKI, connect_tls
from pacsref.testing.tls import write_security_options as write_options
from pacsref.ul.constants import PDUType
from pacsref.ul.framing import PDUFramer

from ..server.helpers import associate_rq
from .helpers import Recorder, issue_unparseable_san


@pytest.fixture
def pki(tmp_path: Path) -> TestPKI:
    return TestPKI(tmp_path / "pki")


@pytest.fixture
def harness(tmp_path: Path, pki: TestPKI) -> ServerHarness:
    server_dir = tmp_path / "SECURE"
    write_options(server_dir, pki, bindings=[("san_dns", "ct-room1.example", ["CT_ROOM_1"])])
    return ServerHarness(
        server_dir, settings={"ae_title": "SECURE", "server_secure": True, "artim_timeout": 7.0}
    )


@pytest.fixture
def server_log() -> Iterator[list[LogEvent]]:
    """Every log event while the test runs (tracebacks included)."""
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def _associate(harness: ServerHarness, leaf: LeafFiles, version: int) -> tuple[Recorder, list]:
    """Handshake with ``leaf``, send an A-ASSOCIATE-RQ, return the client and its PDUs."""
    client = Recorder()
    connection = connect_tls(
        harness.factory,
        client,
        harness.server.security.listener,  # type: ignore[union-attr]
        RawClientTLS(leaf, SSL.TLS1_2_VERSION, version),
        harness.clock,
    )
    if client.lost is None:
        client.transport.write(associate_rq(called="SECURE", calling="CT_ROOM_1"))
        connection.flush()
    framer = PDUFramer(0)
    framer.feed(client.data)
    pdus = []
    while (pdu := framer.next_pdu()) is not None:
        pdus.append(pdu)
    return client, pdus


@pytest.mark.parametrize("version", [SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION], ids=["1.2", "1.3"])
def test_unparseable_peer_certificate_is_refused_in_one_line(
    harness: ServerHarness, pki: TestPKI, server_log: list[LogEvent], version: int
) -> None:
    """One tls.refused line naming the certificate problem, no traceback, the connection cut
    without an answer; the reason is the connection's close reason too."""
    bad = issue_unparseable_san(pki, "badsan", "BADSAN")
    client, pdus = _associate(harness, bad, version)
    assert pdus == [] and client.lost is not None
    assert not harness.factory.connections
    assert not [e for e in server_log if "log_failure" in e], "a traceback was logged"
    refused = [formatEvent(e) for e in server_log if e.get("kind") == "tls.refused"]
    assert len(refused) == 1, refused
    assert refused[0].startswith("connection 1 from 127.0.0.1:")
    assert (
        ": TLS handshake failed: peer certificate refused: certificate CN=BADSAN (sha256 "
        in refused[0]
    )
    assert "cannot be read: its extensions are malformed" in refused[0]
    assert "subject_alternative_name" in refused[0]
    assert not [e for e in server_log if e.get("kind") == "tls.established"]
    [closed] = [e for e in server_log if e.get("kind") == "connection.closed"]
    assert "peer certificate refused: certificate CN=BADSAN" in formatEvent(closed)
    good = pki.issue("ct", "ct-room1.example", common_name="CT_ROOM_1")
    _, pdus = _associate(harness, good, version)
    assert [pdu_type for pdu_type, _ in pdus] == [PDUType.A_ASSOCIATE_AC]
