"""Steps about the server's timers: peers that say nothing, too little, or never read.

Each misbehaving peer is a raw socket (:class:`simulators.misbehaving.RawPeer`): pynetdicom will
not trickle a request or stop reading on purpose. A table of peers runs at the same time, one
thread each, against one server: the timers are per connection, so running them side by side
tests that too, and a scenario waits one timeout instead of one per peer. Every wait is a
socket wait with a deadline, so a server that never reacts fails the scenario instead of
hanging it.
"""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from behave import given, then, when
from parse import compile as parse_pattern
from scenario_support import on_cleanup, running_server

from pacsref.testing.net import LOOPBACK
from pacsref.testing.twistd import TwistdServer
from simulators.misbehaving import (
    A_ABORT,
    A_ASSOCIATE_RJ,
    A_RELEASE_RP,
    IMPLICIT_VR_LE,
    VERIFICATION,
    AssociateAC,
    RawPeer,
    Reaction,
    associate_rq,
)
from simulators.netutil import HELD_STATES, tcp_state

#: The longest any server reaction is awaited; far above every timeout the features set.
REACTION_BOUND_S = 10.0

#: The private SOP class of features/support/slow_echo_addin.py.
SLOW_SOP_CLASS = "2.25.171682155811274401271205248828269974100"
SLOW_CONTEXT, VERIFICATION_CONTEXT = 1, 3


@dataclass
class PeerRun:
    """What one peer of a table did and what the server did to it.

    ``reaction`` is timed from the moment the server's timer started: the connection for
    ARTIM before an A-ASSOCIATE-RQ, the RJ / A-RELEASE-RP / A-ABORT for ARTIM in Sta13, the
    AC (or the last echo) for the client timeout.
    """

    name: str
    behaviour: str
    reaction: Reaction | None = None
    #: For trickles: the request's length, to tell whether it was complete.
    request_length: int | None = None
    statuses: list[int] = field(default_factory=list)
    interruptions: list[str] = field(default_factory=list)
    #: True for a peer that only talks; the server must leave it alone.
    active: bool = False


Behaviour = Callable[[TwistdServer, PeerRun, dict[str, Any]], None]


def connect(server: TwistdServer) -> RawPeer:
    """A raw peer connected to ``server`` with the bound of these steps."""
    host, port = server.address
    peer = RawPeer(host, port, timeout=REACTION_BOUND_S)
    peer.connect()
    return peer


def associate(server: TwistdServer, run: PeerRun, **rq: Any) -> RawPeer:
    """A raw peer with an accepted association as ``run.name``."""
    peer = connect(server)
    reply = peer.associate(server.ae_title, run.name, **rq)
    if not isinstance(reply, AssociateAC):
        peer.close()
        raise AssertionError(f"{run.name}: association not accepted: {reply}")
    return peer


def wait_for_reaction(peer: RawPeer, run: PeerRun) -> None:
    """From now, wait (bounded) for the server to speak or close; keep the timed reaction."""
    run.reaction = peer.react(REACTION_BOUND_S)


# -- behaviours: ARTIM (PS3.8 9.1.5, Sta2 and Sta13) ----------------------------------------


def sends_nothing_unassociated(server: TwistdServer, run: PeerRun, _: dict[str, Any]) -> None:
    """A transport connection and no A-ASSOCIATE-RQ: ARTIM runs from the accept (AE-5)."""
    with closing(connect(server)) as peer:
        wait_for_reaction(peer, run)


def trickles(server: TwistdServer, run: PeerRun, values: dict[str, Any]) -> None:
    """Each byte arrives in time, the whole request never does: bytes must not restart ARTIM."""
    data = associate_rq(server.ae_title, run.name)
    run.request_length = len(data)
    with closing(connect(server)) as peer:
        run.reaction = peer.trickle(data, values["interval"], REACTION_BOUND_S)


def trickles_body(server: TwistdServer, run: PeerRun, values: dict[str, Any]) -> None:
    """The 6-byte header complete, the body trickled: not an event of Table 9-10 either."""
    data = associate_rq(server.ae_title, run.name)
    run.request_length = len(data) - 6
    with closing(connect(server)) as peer:
        started = time.monotonic()
        peer.send_bytes(data[:6])
        run.reaction = peer.trickle(data[6:], values["interval"], REACTION_BOUND_S)
        run.reaction.elapsed = time.monotonic() - started


def rejected_then_stays(server: TwistdServer, run: PeerRun, _: dict[str, Any]) -> None:
    """Refused (wrong called AE title), then silent: the server waits in Sta13 on ARTIM."""
    with closing(connect(server)) as peer:
        peer.send_bytes(associate_rq("NOT_THIS_SERVER", run.name))
        reply = peer.recv_pdu()
        assert reply is not None and reply[0] == A_ASSOCIATE_RJ, f"expected an RJ, got {reply}"
        wait_for_reaction(peer, run)


def released_then_stays(server: TwistdServer, run: PeerRun, _: dict[str, Any]) -> None:
    """After the A-RELEASE-RP it is the requestor that closes (AR-3); this one does not."""
    with closing(associate(server, run)) as peer:
        released = peer.release()
        assert released is not None and released[0] == A_RELEASE_RP, f"no RP: {released}"
        wait_for_reaction(peer, run)


def aborted_then_stays(server: TwistdServer, run: PeerRun, _: dict[str, Any]) -> None:
    """An unknown PDU type earns an A-ABORT (AA-8); the peer then does not close (AA-3)."""
    with closing(associate(server, run)) as peer:
        peer.send_pdu(0x0A, bytes(4))
        got = peer.recv_pdu()
        assert got is not None and got[0] == A_ABORT, f"expected an A-ABORT, got {got}"
        wait_for_reaction(peer, run)


# -- behaviours: the client timeout -----------------------------------------------------------


def sends_nothing_associated(server: TwistdServer, run: PeerRun, _: dict[str, Any]) -> None:
    """Associated, then silent: the client timeout's case (ARTIM stopped at AE-6)."""
    with closing(associate(server, run)) as peer:
        wait_for_reaction(peer, run)


def keeps_talking(server: TwistdServer, run: PeerRun, values: dict[str, Any]) -> None:
    """A C-ECHO every ``interval`` s for ``total`` s; each pause is a read that must stay quiet.

    The pauses are bounded reads: the server must say nothing and keep the connection open
    during them, which is the very thing checked.
    """
    run.active = True
    with closing(associate(server, run)) as peer:
        started = time.monotonic()
        message = 0
        while time.monotonic() - started < values["total"]:
            message += 1
            run.statuses.append(peer.echo(1, message_id=message))
            quiet = peer.react(values["interval"])
            if quiet.pdus or quiet.closed:
                run.interruptions.append(quiet.describe())
                return


#: Table phrases -> behaviours. ``parse`` patterns, so a phrase may carry numbers.
BEHAVIOUR_PHRASES: dict[str, Behaviour] = {
    "connects and sends nothing": sends_nothing_unassociated,
    "trickles its A-ASSOCIATE-RQ one byte every {interval:g} s": trickles,
    "sends the A-ASSOCIATE-RQ header at once, then trickles the rest"
    " one byte every {interval:g} s": trickles_body,
    "is rejected and then keeps the connection open": rejected_then_stays,
    "releases its association and then keeps the connection open": released_then_stays,
    "is aborted by the server and then keeps the connection open": aborted_then_stays,
    "associates and then sends nothing": sends_nothing_associated,
    "associates and sends a C-ECHO every {interval:g} s for {total:g} s": keeps_talking,
}
_COMPILED = [(parse_pattern(text), function) for text, function in BEHAVIOUR_PHRASES.items()]


def behaviour_for(text: str) -> tuple[Behaviour, dict[str, Any]]:
    """The behaviour a table cell names, with its numbers."""
    for pattern, function in _COMPILED:
        found = pattern.parse(text)
        if found is not None:
            return function, dict(found.named)
    raise AssertionError(f"unknown behaviour {text!r}; known: {'; '.join(BEHAVIOUR_PHRASES)}")


def run_peer(server: TwistdServer, run: PeerRun) -> PeerRun:
    """Run one row's behaviour; an error becomes an interruption, never a lost thread."""
    function, values = behaviour_for(run.behaviour)
    try:
        function(server, run, values)
    except (AssertionError, OSError, TimeoutError, ValueError) as exc:
        run.interruptions.append(f"{type(exc).__name__}: {exc}")
    return run


@when("these raw peers act at the same time")
def step_peers_at_once(context: Any) -> None:
    """Every row (peer, behaviour) at once, one thread each, on the scenario's server."""
    server = running_server(context)
    runs = [PeerRun(row["peer"], row["behaviour"]) for row in context.table]
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        futures = [pool.submit(run_peer, server, run) for run in runs]
        context.peer_runs = [f.result(timeout=REACTION_BOUND_S * 3) for f in futures]


def peer_runs(context: Any) -> list[PeerRun]:
    """The runs of the latest table of peers."""
    runs: list[PeerRun] | None = getattr(context, "peer_runs", None)
    assert runs is not None, "no table of peers has acted yet in this scenario"
    return runs


def timing_problems(runs: list[PeerRun], earliest: float, bound: float) -> list[str]:
    """Why each run was not closed between ``earliest`` and ``bound`` seconds, if it was not."""
    problems = []
    for run in runs:
        reaction = run.reaction
        if run.interruptions or reaction is None:
            problems.append(f"{run.name}: {run.interruptions or 'no reaction recorded'}")
        elif not reaction.closed:
            problems.append(f"{run.name}: not closed: {reaction.describe()}")
        elif not earliest <= reaction.elapsed <= bound:
            problems.append(f"{run.name}: {reaction.describe()}, not in [{earliest}, {bound}] s")
    return problems


@then("the server closes every one of them between {earliest:g} and {bound:g} seconds")
def step_all_closed(context: Any, earliest: float, bound: float) -> None:
    """Each connection closed, neither early (the timer ran its course) nor late."""
    problems = timing_problems(peer_runs(context), earliest, bound)
    assert not problems, "; ".join(problems)


@then("no trickled A-ASSOCIATE-RQ was complete when it did")
def step_trickles_incomplete(context: Any) -> None:
    """The trickles were cut short: the server did not wait for the whole request."""
    for run in peer_runs(context):
        if run.request_length is not None and run.reaction is not None:
            assert run.reaction.bytes_sent < run.request_length, (
                f"{run.name}: all {run.request_length} bytes went out before the server reacted"
            )


@then(
    "the silent ones get an A-ABORT and are disconnected between {earliest:g} and {bound:g} seconds"
)
def step_silent_aborted(context: Any, earliest: float, bound: float) -> None:
    """A-ABORT first (so the peer learns why), then the close, timed from the association."""
    silent = [run for run in peer_runs(context) if not run.active]
    assert silent, "no silent peer in the table"
    problems = timing_problems(silent, earliest, bound)
    for run in silent:
        reaction = run.reaction
        if reaction is None or not reaction.closed:
            continue  # already a timing problem
        if not reaction.aborts:
            problems.append(f"{run.name}: no A-ABORT before the close: {reaction.describe()}")
        elif reaction.arrivals[0] < earliest:
            problems.append(f"{run.name}: A-ABORT before {earliest:g} s: {reaction.describe()}")
    assert not problems, "; ".join(problems)


@then("the talking ones are served throughout")
def step_active_served(context: Any) -> None:
    """Activity restarts the client timeout: every echo answered, no A-ABORT, no close."""
    active = [run for run in peer_runs(context) if run.active]
    assert active, "no talking peer in the table"
    for run in active:
        assert not run.interruptions, f"{run.name}: {run.interruptions}"
        assert run.statuses and set(run.statuses) == {0}, [hex(s) for s in run.statuses]


# -- a peer that never reads ------------------------------------------------------------------


@when('a slow reader "{calling_ae}" floods the server with C-ECHO requests, never reading')
def step_slow_reader(context: Any, calling_ae: str) -> None:
    """Write C-ECHO-RQs until the server stops taking them (or 4 MiB), read nothing.

    A small receive buffer makes the answers back up into the server quickly. The flood ends
    by itself: when a write has waited 1 s in vain, or after 10 s.
    """
    server = running_server(context)
    host, port = server.address
    peer = RawPeer(host, port, timeout=REACTION_BOUND_S, receive_buffer=4096)
    peer.connect()
    on_cleanup(context, peer.close)
    reply = peer.associate(server.ae_title, calling_ae)
    assert isinstance(reply, AssociateAC), f"{calling_ae}: association not accepted: {reply}"
    context.flood = peer.flood_echoes(
        reply.contexts[0].context_id, max_bytes=4 << 20, stall_after=1.0, deadline=10.0
    )
    context.flood_ended = time.monotonic()
    context.slow_reader = peer


@then("the server stopped reading the slow reader before its flood ended")
def step_slow_reader_throttled(context: Any) -> None:
    """Back-pressure: the flood ended because its sends waited in vain, not by its budget."""
    assert context.flood.stalled, f"the server read on: {context.flood.describe()}"


@then("the server lets go of the slow reader's connection within {bound:g} seconds")
def step_slow_reader_dropped(context: Any, bound: float) -> None:
    """The server closes (or resets) its end although it cannot write to the peer.

    Reading would unblock the server and spoil the test, so two observations that need no
    read: a reset or hang-up reported by ``poll`` on our socket, then the kernel's view of the
    server's socket (``/proc/net/tcp``): gone, or in a closing state, means it let go.
    """
    peer: RawPeer = context.slow_reader
    server = running_server(context)
    assert peer.sock is not None
    poller = select.poll()
    poller.register(peer.sock, select.POLLERR | select.POLLHUP | select.POLLRDHUP)
    remaining = context.flood_ended + bound - time.monotonic()
    poller.poll(max(0.0, remaining) * 1000)
    state = tcp_state(server.address, peer.local_address)
    waited = time.monotonic() - context.flood_ended
    assert state not in HELD_STATES, (
        f"after {context.flood.describe()}, the server still holds the connection "
        f"({state}) {waited:.1f} s later"
    )


# -- add-in timeout ---------------------------------------------------------------------------


@when('a raw peer "{calling_ae}" associates for the slow add-in\'s SOP class and Verification')
def step_associate_slow(context: Any, calling_ae: str) -> None:
    """Two contexts: the slow add-in's private SOP class (1) and Verification (3)."""
    server = running_server(context)
    contexts = [
        (SLOW_CONTEXT, SLOW_SOP_CLASS, [IMPLICIT_VR_LE]),
        (VERIFICATION_CONTEXT, VERIFICATION, [IMPLICIT_VR_LE]),
    ]
    peer = connect(server)
    on_cleanup(context, peer.close)
    reply = peer.associate(server.ae_title, calling_ae, contexts=contexts)
    assert isinstance(reply, AssociateAC), f"{calling_ae}: association not accepted: {reply}"
    results = {c.context_id: c.result for c in reply.contexts}
    assert results == {SLOW_CONTEXT: 0, VERIFICATION_CONTEXT: 0}, f"context results {results}"
    context.raw_peer = peer


@when("it sends a C-ECHO for the slow add-in's SOP class")
def step_echo_slow(context: Any) -> None:
    """One C-ECHO that only the slow add-in can answer; timed."""
    peer: RawPeer = context.raw_peer
    started = time.monotonic()
    context.echo_status = peer.echo(SLOW_CONTEXT, message_id=1, sop_class=SLOW_SOP_CLASS)
    context.echo_elapsed = time.monotonic() - started


@then("the C-ECHO status is {status} within {bound:g} seconds")
def step_echo_status(context: Any, status: str, bound: float) -> None:
    """The status (e.g. 0x0110 Processing failure) and how long it took."""
    got, took = context.echo_status, context.echo_elapsed
    assert got == int(status, 16), f"status 0x{got:04X}, expected {status} (after {took:.2f} s)"
    assert took <= bound, f"status {status} came after {took:.2f} s, not within {bound:g} s"


@then("a C-ECHO for Verification on the same association succeeds")
def step_echo_after(context: Any) -> None:
    """The association carries on after the timeout, and no late answer gets in the way."""
    peer: RawPeer = context.raw_peer
    status = peer.echo(VERIFICATION_CONTEXT, message_id=2)
    assert status == 0, f"status 0x{status:04X}"


# -- reconnect timeout (the outbound requestor) ---------------------------------------------


@given("a port on 127.0.0.1 that never completes a TCP handshake")
def step_black_hole(context: Any) -> None:
    """A listener with a backlog of 0 and one connection it never accepts.

    Linux drops further SYNs while the accept queue is full, so a connect to this port
    neither succeeds nor is refused: it waits, as for a host that has gone away.
    """
    listener = socket.socket()
    listener.bind((LOOPBACK, 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname(), timeout=REACTION_BOUND_S)
    on_cleanup(context, listener.close)
    on_cleanup(context, filler.close)
    probe = socket.socket()
    probe.settimeout(0.2)
    try:
        probe.connect(listener.getsockname())
        raise AssertionError("the black-hole port completed a handshake; cannot test here")
    except TimeoutError:
        pass
    finally:
        probe.close()
    context.black_hole = listener.getsockname()


@when('"pacsref echo" calls it with a timeout of {seconds:g} second')
@when('"pacsref echo" calls it with a timeout of {seconds:g} seconds')
def step_pacsref_echo_black_hole(context: Any, seconds: float) -> None:
    """Run ``pacsref echo`` (the server framework's own requestor) against that port."""
    host, port = context.black_hole
    argv = [sys.executable, "-m", "pacsref.manager.cli", "echo", "--host", host]
    argv += ["--port", str(port), "--called-ae", "NOBODY", "--timeout", f"{seconds:g}"]
    started = time.monotonic()
    context.command = subprocess.run(
        argv, capture_output=True, text=True, timeout=REACTION_BOUND_S + 20, check=False
    )
    context.command_elapsed = time.monotonic() - started


@then("it gives up within {bound:g} seconds with a failure exit status")
def step_gives_up(context: Any, bound: float) -> None:
    """Bounded by the timeout (plus the interpreter's start-up), and a non-zero exit status."""
    done: subprocess.CompletedProcess[str] = context.command
    output = (done.stdout + done.stderr).strip()
    assert done.returncode != 0, f"exit status 0: {output}"
    assert context.command_elapsed <= bound, (
        f"gave up after {context.command_elapsed:.2f} s, not within {bound:g} s: {output}"
    )
