"""The simulators' verdicts on servers that abort, hang up or go silent instead of answering.

A scripted loopback SCP (:mod:`tests.simulators.scripted_scp`) misbehaves on
release or after some echoes; a blocked loopback listener never completes a
TCP connect. The verdicts must say what happened and never wait longer than
the timeout they were given.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from simulators.__main__ import main
from simulators.crowd import open_associations, release_all, tally
from simulators.echo import HeldAssociation, run_echoes
from simulators.netutil import LOOPBACK
from simulators.pdus import Abort
from tests.simulators.scripted_scp import Misdeed, ReleaseAnswer, Script, scripted_scp

# -- release_all (crowd) --------------------------------------------------------------------


@pytest.mark.parametrize(("on_release", "released"), [("rp", 2), ("abort", 0), ("close", 0)])
def test_release_all_counts_only_a_release_rp(on_release: ReleaseAnswer, released: int) -> None:
    """An A-ABORT or a close in answer to A-RELEASE-RQ is not a release."""
    with scripted_scp(Script(on_release=on_release)) as scp:
        attempts = open_associations(LOOPBACK, scp.port, "SCRIPTED", "CROWD", 2, timeout=5)
        assert tally(attempts) == {"accepted": 2}
        assert release_all(attempts) == released
    assert all(attempt.peer.sock is None for attempt in attempts)


def test_release_all_waits_at_most_its_timeout() -> None:
    """A silent server costs release_all its own timeout per association, not the peers'."""
    with scripted_scp(Script(on_release="silent")) as scp:
        attempts = open_associations(LOOPBACK, scp.port, "SCRIPTED", "CROWD", 2, timeout=10)
        assert tally(attempts) == {"accepted": 2}
        started = time.monotonic()
        assert release_all(attempts, timeout=0.2) == 0
        elapsed = time.monotonic() - started
    assert elapsed < 5, f"release_all took {elapsed:.1f} s with timeout=0.2"


# -- run_echoes: the release ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("on_release", "said"),
    [
        ("abort", "the server answered A-RELEASE-RQ with A-ABORT source 2"),
        ("close", "the server closed the connection without A-RELEASE-RP"),
        pytest.param(
            "silent",
            "no A-RELEASE-RP within the ACSE timeout (1 s)",
            # pynetdicom's reactor, resumed after its release timed out, also finds its idle
            # timer expired and aborts a second time: InvalidEventError (Evt15 in Sta13) in its
            # DUL thread, after the association is over. Its noise, not a simulator fault.
            marks=pytest.mark.filterwarnings(
                "ignore::pytest.PytestUnhandledThreadExceptionWarning"
            ),
        ),
    ],
)
def test_run_echoes_fails_unless_the_association_is_released(
    on_release: ReleaseAnswer, said: str
) -> None:
    """Every echo succeeded, but the release did not end in A-RELEASE-RP: not ok."""
    with scripted_scp(Script(on_release=on_release)) as scp:
        result = run_echoes(LOOPBACK, scp.port, "SCRIPTED", count=2, timeout=1)
    assert result.succeeded == 2
    assert not result.ok
    assert result.release_error is not None and said in result.release_error
    assert result.failures == [f"release: {result.release_error}"]


def test_run_echoes_is_ok_after_a_release_rp() -> None:
    """The scripted SCP's well-behaved run: echoes answered, A-RELEASE-RP."""
    with scripted_scp(Script()) as scp:
        result = run_echoes(LOOPBACK, scp.port, "SCRIPTED", count=2, timeout=5)
    assert result.ok, result.failures
    assert result.release_error is None


def test_echo_cli_exits_1_when_the_release_is_aborted(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m simulators echo``: all echoes answered, release aborted: exit 1, said why."""
    with scripted_scp(Script(on_release="abort")) as scp:
        argv = ["echo", "--host", LOOPBACK, "--port", str(scp.port), "--called-ae", "SCRIPTED"]
        assert main([*argv, "--count", "2", "--timeout", "5"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("release: the server answered A-RELEASE-RQ with A-ABORT source 2")
    assert lines[-1].startswith("2 echoes, 2 succeeded")


# -- run_echoes and HeldAssociation: the echo loop --------------------------------------------


@pytest.mark.parametrize(
    ("misdeed", "said"),
    [
        ("abort", "the server aborted the association: A-ABORT source 2"),
        ("close", "the connection closed without an A-ABORT from the server"),
        ("silent", "nothing within the DIMSE timeout (2 s)"),
    ],
)
def test_echoes_stop_at_the_first_unanswered_one(misdeed: Misdeed, said: str) -> None:
    """After echo 2 goes unanswered, echoes 3-6 are failed unsent, without a wait each."""
    with scripted_scp(Script(echoes_answered=1, after_echoes=misdeed)) as scp:
        result = run_echoes(LOOPBACK, scp.port, "SCRIPTED", count=6, timeout=2)
        received = scp.echoes_received
    assert result.succeeded == 1
    assert result.failures[0].startswith("echo 2/6: no response: "), result.failures
    assert said in result.failures[0]
    assert result.failures[1] == "echoes 3-6/6: not sent: an echo went unanswered"
    assert result.failures[2].startswith("release: not attempted: ")
    assert len(result.failures) == 3
    assert received == 2
    assert result.elapsed < 4, f"the echo loop took {result.elapsed:.1f} s (DIMSE timeout 2 s)"


def test_held_association_stops_echoing_once_aborted() -> None:
    """The held association's echoes stop at the server's A-ABORT too."""
    with scripted_scp(Script(echoes_answered=1, after_echoes="abort")) as scp:
        held = HeldAssociation(LOOPBACK, scp.port, "SCRIPTED", "HOLDER", timeout=2)
        try:
            result = held.echo(4)
        finally:
            held.abort()
    assert result.succeeded == 1
    assert result.failures == [
        f"echo 2/4: no response: the server aborted the association: {Abort(2, 0)}",
        "echoes 3-4/4: not sent: an echo went unanswered",
    ]
    assert result.elapsed < 2


# -- the TCP connect ------------------------------------------------------------------------


@contextlib.contextmanager
def unanswered_listener() -> Iterator[tuple[str, int]]:
    """A loopback listener whose accept queue is full: Linux drops the next SYN, so a
    connect to it neither succeeds nor fails until the connecting side gives up."""
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(0)
        address = listener.getsockname()
        with socket.create_connection(address, timeout=5):  # fills the queue of one
            with socket.socket() as probe:
                probe.settimeout(0.3)
                try:
                    probe.connect(address)
                except TimeoutError:
                    pass
                else:
                    pytest.skip("this kernel completes connects beyond the accept queue")
            yield address


def _connect_run_echoes(host: str, port: int) -> Any:
    return run_echoes(host, port, "NOBODY", timeout=1)


def _connect_held(host: str, port: int) -> Any:
    return HeldAssociation(host, port, "NOBODY", "HOLDER", timeout=1)


@pytest.mark.parametrize("attempt", [_connect_run_echoes, _connect_held])
def test_connect_gives_up_after_the_timeout(attempt: Callable[[str, int], Any]) -> None:
    """--timeout bounds the TCP connect too: a 1 s timeout ends the attempt within seconds."""
    outcome: list[Any] = []
    with unanswered_listener() as (host, port):
        worker = threading.Thread(target=lambda: outcome.append(attempt(host, port)), daemon=True)
        worker.start()
        worker.join(timeout=8)
        gave_up = not worker.is_alive()
    # Without a connect timeout, the closed listener answers the next SYN retry with RST.
    worker.join(timeout=60)
    assert gave_up, "the connect ignored the 1 s timeout"
    (result,) = outcome
    error = result.association_error if hasattr(result, "association_error") else result.error
    assert error == "association failed: TCP connect refused or timed out"
