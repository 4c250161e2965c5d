"""The acceptance-policy peers (crowd, other host, slow reader, held association) against
pynetdicom's AE, an independent SCP whose own policy (maximum associations, required calling AE
titles, idle timeout) gives each simulator a known answer to find."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from simulators.__main__ import main
from simulators.crowd import open_associations, release_all, request_one, tally
from simulators.echo import HeldAssociation, run_echoes
from simulators.misbehaving import (
    A_ABORT,
    A_RELEASE_RP,
    ECHO_PDU_LENGTH,
    VERIFICATION,
    AssociateAC,
    RawPeer,
    c_echo_rq,
    decode_command,
)
from simulators.netutil import LOOPBACK, tcp_state
from simulators.testservers import Listener, pynetdicom_echo_scp

OTHER_HOST = "127.0.0.2"


@pytest.fixture
def limited_scp() -> Iterator[Listener]:
    """A Verification SCP that serves one association at a time.

    One, because pynetdicom 3.0 counts every acceptor thread still alive,
    including those still negotiating and those rejected but not yet closed;
    with a higher limit its count depends on thread timing.
    """
    with pynetdicom_echo_scp("ECHOSCP", acse_timeout=2.0, maximum_associations=1) as listener:
        yield listener


@pytest.fixture
def known_only_scp() -> Iterator[Listener]:
    """A Verification SCP that accepts only the calling AE title KNOWN."""
    with pynetdicom_echo_scp("ECHOSCP", acse_timeout=2.0, require_calling_aet=["KNOWN"]) as x:
        yield x


@pytest.fixture
def idle_scp() -> Iterator[Listener]:
    """A Verification SCP that drops an association idle for 1 s."""
    with pynetdicom_echo_scp("ECHOSCP", acse_timeout=2.0, network_timeout=1.0) as listener:
        yield listener


def test_raw_peer_connects_from_another_loopback_address() -> None:
    """Bound to 127.0.0.2, the peer reaches a 127.0.0.1 listener, which sees 127.0.0.2."""
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen()
        listener.settimeout(5)
        with RawPeer(*listener.getsockname(), timeout=5, bind_address=OTHER_HOST) as peer:
            accepted, (seen_ip, seen_port) = listener.accept()
            accepted.close()
            assert (seen_ip, seen_port) == peer.local_address
    assert seen_ip == OTHER_HOST


def test_pynetdicom_scu_connects_from_another_loopback_address(echo_scp: Listener) -> None:
    """run_echoes with a bind address associates and echoes from 127.0.0.2."""
    result = run_echoes(echo_scp.host, echo_scp.port, "ECHOSCP", timeout=5, bind_address=OTHER_HOST)
    assert result.ok, result.failures


def test_crowd_finds_the_association_limit(limited_scp: Listener) -> None:
    """One held, then two more at a 1-association SCP: 1 accepted, 2 rejected (2, 3, 2)."""
    host, port = limited_scp.host, limited_scp.port
    held = open_associations(host, port, "ECHOSCP", "CROWD", 1)
    more = open_associations(host, port, "ECHOSCP", "CROWD", 2)
    try:
        assert tally(held + more) == {"accepted": 1, "rejected (2, 3, 2)": 2}
        assert all(a.elapsed < 5 for a in held + more)
    finally:
        assert release_all(held + more) == 1


def test_crowd_reports_a_refused_connection() -> None:
    """No listener: every attempt says the connection failed, none pretends to be answered."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port = probe.getsockname()[1]
    attempts = open_associations(LOOPBACK, port, "NOBODY", ["A", "B"], 2, timeout=2)
    assert tally(attempts) == {"connection failed": 2}
    with pytest.raises(ValueError, match="3 calling AE titles"):
        open_associations(LOOPBACK, port, "NOBODY", ["A", "B"], 3)


def test_unknown_calling_ae_is_rejected_1_1_3(known_only_scp: Listener) -> None:
    """The calling AE title a server does not know gets (1, 1, 3); the known one an AC."""
    host, port = known_only_scp.host, known_only_scp.port
    assert request_one(host, port, "ECHOSCP", "STRANGER", timeout=5).rejection == (1, 1, 3)
    known = request_one(host, port, "ECHOSCP", "KNOWN", timeout=5)
    assert known.accepted
    release_all([known])


def test_held_association_echoes_and_releases(echo_scp: Listener) -> None:
    """A held association stays open between echoes and releases on request."""
    held = HeldAssociation(echo_scp.host, echo_scp.port, "ECHOSCP", "HOLDER", timeout=5)
    assert held.established and held.rejection is None
    assert held.echo(3).ok
    assert held.release()
    assert not held.established
    assert held.echo().association_error is not None


def test_held_association_reports_its_rejection(limited_scp: Listener) -> None:
    """The second held association of a 1-association SCP carries the RJ triple."""
    held = [
        HeldAssociation(limited_scp.host, limited_scp.port, "ECHOSCP", f"H{n}", timeout=5)
        for n in range(2)
    ]
    try:
        assert [h.established for h in held] == [True, False]
        assert held[1].rejection is not None and held[1].rejection.triple == (2, 3, 2)
        assert held[1].error is not None and "local-limit-exceeded" in held[1].error
    finally:
        for h in held:
            h.release()


def test_slow_reader_stalls_against_a_server_that_stops_reading() -> None:
    """Against a listener that never reads, the flood stops once the buffers are full:
    stalled, not closed, well under its byte budget, every byte counted."""
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen()
        with RawPeer(*listener.getsockname(), timeout=5, receive_buffer=4096) as peer:
            accepted, _ = listener.accept()
            try:
                flood = peer.flood_echoes(1, max_bytes=64 << 20, stall_after=0.3, deadline=20)
            finally:
                accepted.close()
    assert flood.stalled and not flood.closed, flood.describe()
    assert 0 < flood.bytes_sent < 64 << 20
    assert flood.messages_sent == flood.bytes_sent // ECHO_PDU_LENGTH
    assert "back-pressure" in flood.describe()


def test_slow_reader_stops_at_its_budget_when_the_server_reads_on(echo_scp: Listener) -> None:
    """pynetdicom reads on into memory while its writes block: the flood ends at its budget
    (1 MiB), not stalled, and pynetdicom still serves another association meanwhile."""
    with RawPeer(echo_scp.host, echo_scp.port, timeout=5, receive_buffer=4096) as peer:
        assert isinstance(peer.associate("ECHOSCP", "SLOW"), AssociateAC)
        flood = peer.flood_echoes(1, max_bytes=1 << 20, stall_after=2, deadline=20)
        assert not flood.closed, flood.describe()
        assert flood.bytes_sent >= 1 << 20 or flood.stalled, flood.describe()
        assert run_echoes(echo_scp.host, echo_scp.port, "ECHOSCP", timeout=5).ok


def test_tcp_state_follows_a_connection_until_it_is_gone() -> None:
    """tcp_state sees both ends of a loopback connection and the closing end leave."""
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        server_end, _ = listener.accept()
        here, there = listener.getsockname(), client.getsockname()
        assert tcp_state(here, there) == "ESTABLISHED"
        server_end.close()
        assert tcp_state(here, there) in {"FIN_WAIT1", "FIN_WAIT2"}
        client.close()
    assert tcp_state((LOOPBACK, 1), (LOOPBACK, 1)) is None


def _raw(listener: Listener, scenario: str, *extra: str) -> list[str]:
    """argv of ``python -m simulators raw --scenario ...`` against ``listener``."""
    return [
        "raw",
        "--scenario",
        scenario,
        "--host",
        listener.host,
        "--port",
        str(listener.port),
        "--called-ae",
        listener.ae_title,
        "--timeout",
        "5",
        *extra,
    ]


def test_associate_scenario_reports_who_from_where(
    known_only_scp: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    """The associate scenario names the calling AE, its address and the answer."""
    assert main(_raw(known_only_scp, "associate", "--calling-ae", "KNOWN")) == 0
    assert "KNOWN from 127.0.0.1: A-ASSOCIATE-AC; C-ECHO status 0x0000" in capsys.readouterr().out
    argv = _raw(known_only_scp, "associate", "--calling-ae", "X", "--bind-address", OTHER_HOST)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "X from 127.0.0.2: A-ASSOCIATE-RJ" in out
    assert "calling-AE-title-not-recognized" in out


def test_flood_scenario_tallies_every_answer(
    limited_scp: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    """Four connections at a 1-association SCP: all answered, so exit 0, with the tally.

    How many of the burst pynetdicom accepts (0 or 1) depends on its thread
    timing, so only the rejections and the exit status are pinned.
    """
    assert main(_raw(limited_scp, "flood", "--count", "4", "--distinct-ae")) == 0
    out = capsys.readouterr().out
    assert "rejected (2, 3, 2)" in out
    assert "slowest answer after" in out


def test_same_ae_twice_scenario_reports_both(
    echo_scp: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    """pynetdicom allows one AE title twice: both answers are ACs."""
    assert main(_raw(echo_scp, "same-ae-twice")) == 0
    out = capsys.readouterr().out
    assert "first: A-ASSOCIATE-AC" in out
    assert "second, while the first is open: A-ASSOCIATE-AC" in out


def test_idle_association_scenario_sees_the_idle_timeout(
    idle_scp: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    """pynetdicom's 1 s network timeout aborts the silent association."""
    assert main(_raw(idle_scp, "idle-association")) == 0
    out = capsys.readouterr().out
    assert "sending nothing" in out
    assert "A-ABORT" in out or "close after" in out


def test_slow_reader_scenario_checks_the_others_are_served(
    echo_scp: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    """The slow-reader scenario floods, then proves another AE is served: exit 0."""
    assert main(_raw(echo_scp, "slow-reader", "--size", str(1 << 20))) == 0
    out = capsys.readouterr().out
    assert "never reading" in out
    assert "another modality meanwhile: 0x0" in out


def test_finish_releases_and_waits_for_the_servers_close(echo_scp: Listener) -> None:
    """finish(): A-RELEASE-RQ, A-RELEASE-RP, half-close, and the server's close seen."""
    with RawPeer(echo_scp.host, echo_scp.port, timeout=5) as peer:
        assert isinstance(peer.associate("ECHOSCP", "RAW"), AssociateAC)
        assert peer.finish(5)
        assert [t for t, _ in peer.received][-1:] == [A_RELEASE_RP]


def test_entering_a_connected_peer_keeps_its_connection(echo_scp: Listener) -> None:
    """``with peer:`` on a peer a helper already connected and associated does not reconnect."""
    peer = RawPeer(echo_scp.host, echo_scp.port, timeout=5)
    peer.connect()
    assert isinstance(peer.associate("ECHOSCP", "RAW"), AssociateAC)
    address = peer.local_address
    with peer:
        assert peer.local_address == address
        assert peer.echo(1) == 0


def test_echo_on_a_private_sop_class_names_it_in_the_command() -> None:
    """c_echo_rq's Affected SOP Class UID is the one given (Verification by default)."""
    private = "2.25.171682155811274401271205248828269974100"
    assert decode_command(c_echo_rq(1))[0x0000_0002].rstrip(b"\0") == VERIFICATION.encode()
    assert decode_command(c_echo_rq(1, private))[0x0000_0002].rstrip(b"\0") == private.encode()
    assert A_ABORT == 0x07
