"""The raw-socket peer and its scenarios against pynetdicom's AE as an in-process SCP."""

from __future__ import annotations

import pytest

from simulators.__main__ import main
from simulators.misbehaving import (
    A_ABORT,
    A_RELEASE_RP,
    AssociateAC,
    AssociateRJ,
    RawPeer,
    abort,
    associate_rq,
)
from simulators.testservers import Listener


def test_raw_associate_echo_release(echo_scp: Listener) -> None:
    """A hand-built RQ is accepted, a hand-built C-ECHO-RQ gets Success, release gets RP."""
    with RawPeer(echo_scp.host, echo_scp.port, timeout=5) as peer:
        reply = peer.associate("ECHOSCP", "RAW")
        assert isinstance(reply, AssociateAC)
        context = reply.context(1)
        assert context is not None and context.result == 0
        assert reply.max_pdu == 16382
        assert peer.echo(1, message_id=3) == 0x0000
        released = peer.release()
        assert released is not None and released[0] == A_RELEASE_RP


def test_small_max_pdu_makes_the_server_fragment(echo_scp: Listener) -> None:
    """With our max PDU at 64 bytes, each P-DATA-TF from the server stays within it."""
    with RawPeer(echo_scp.host, echo_scp.port, timeout=5) as peer:
        assert isinstance(peer.associate("ECHOSCP", "RAW", max_pdu=64), AssociateAC)
        start = len(peer.received)
        assert peer.echo(1) == 0
        lengths = [len(p) for _, p in peer.received[start:]]
        assert len(lengths) >= 2
        assert max(lengths) <= 64


def test_server_closes_after_our_abort(echo_scp: Listener) -> None:
    """After an A-ABORT the server closes the transport and says nothing (PS3.8 AA-3)."""
    with RawPeer(echo_scp.host, echo_scp.port, timeout=5) as peer:
        assert isinstance(peer.associate("ECHOSCP", "RAW"), AssociateAC)
        peer.send_bytes(abort(0, 0))
        reaction = peer.react(5)
    assert reaction.closed
    assert reaction.pdus == []
    assert reaction.describe().startswith("bare close after ")


def test_second_rq_is_aborted(echo_scp: Listener) -> None:
    """An A-ASSOCIATE-RQ in Sta6 gets an A-ABORT from the service provider."""
    with RawPeer(echo_scp.host, echo_scp.port, timeout=5) as peer:
        assert isinstance(peer.associate("ECHOSCP", "RAW"), AssociateAC)
        peer.send_bytes(associate_rq("ECHOSCP", "RAW"))
        reaction = peer.react(5, until=frozenset({A_ABORT}))
    assert reaction.stopped
    assert [a.source for a in reaction.aborts] == [2]


def test_wrong_called_ae_is_rejected(strict_echo_scp: Listener) -> None:
    """The RJ decoder reports (1, 1, 7) from a server that checks its AE title."""
    with RawPeer(strict_echo_scp.host, strict_echo_scp.port, timeout=5) as peer:
        reply = peer.associate("SOMEONEELSE", "RAW")
    assert isinstance(reply, AssociateRJ)
    assert reply.triple == (1, 1, 7)


def test_silent_peer_is_closed_by_artim(echo_scp: Listener) -> None:
    """Connecting and sending nothing ends with the server's close (its ARTIM is 2 s here)."""
    with RawPeer(echo_scp.host, echo_scp.port, timeout=10) as peer:
        assert peer.wait_closed(10)


def _raw(listener: Listener, scenario: str, *extra: str) -> list[str]:
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


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("garbage", "server"),
        ("silent", "bare close after"),
    ],
)
def test_raw_scenarios_report_the_reaction(
    echo_scp: Listener, capsys: pytest.CaptureFixture[str], scenario: str, expected: str
) -> None:
    """Each scenario prints what the server did and exits 0 when it reacted in time."""
    assert main(_raw(echo_scp, scenario, "--seed", "7")) == 0
    out = capsys.readouterr().out
    assert expected in out
    assert f"scenario {scenario} finished in" in out


def test_wrong_called_ae_scenario(
    strict_echo_scp: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    """The wrong-called-ae scenario prints the RJ in PS3.8 words."""
    assert main(_raw(strict_echo_scp, "wrong-called-ae")) == 0
    assert "called-AE-title-not-recognized" in capsys.readouterr().out
