"""ARTIM checks: a server must not let a peer hold a connection without associating.

PS3.8 9.1.5 and Table 9-10: on a new transport connection the acceptor starts
ARTIM (Sta2, AE-5) and closes the connection when it expires (Evt18 -> AA-2).
Receiving *part* of a PDU is not an event of the state machine, so a peer that
trickles bytes must not keep restarting the timer. These checks wait in real
time, so the suite runs them in threads beside the others.
"""

from __future__ import annotations

from conformance.probes import connected
from conformance.registry import CheckFailed, Phase, Target, check
from simulators.misbehaving import associate_rq


@check(
    "UL-ARTIM",
    "an idle connection is closed by ARTIM",
    "PS3.8 9.1.5, Table 9-10 Sta2 AE-5, Evt18 AA-2",
    Phase.TIMER,
)
def ul_artim(target: Target) -> str:
    """Connect, send nothing, and time the server's close."""
    with connected(target, timeout=target.artim_wait) as peer:
        reaction = peer.react(target.artim_wait)
    if not reaction.closed:
        raise CheckFailed(f"{reaction.describe()} (bound {target.artim_wait:g} s)")
    return f"{reaction.describe()} (bound {target.artim_wait:g} s)"


@check(
    "UL-ARTIM-TRICKLE",
    "a trickled A-ASSOCIATE-RQ does not restart ARTIM",
    "PS3.8 9.1.5, Table 9-10 Sta2 Evt18 AA-2",
    Phase.TIMER,
)
def ul_artim_trickle(target: Target) -> str:
    """Send a valid RQ one byte per interval; the server must drop us before it completes."""
    data = associate_rq(target.called_ae, target.calling_ae)
    with connected(target, timeout=target.artim_wait) as peer:
        reaction = peer.trickle(data, target.trickle_interval, target.artim_wait)
    sent = f"{reaction.bytes_sent}/{len(data)} bytes at {target.trickle_interval:g} s/byte"
    if not reaction.closed:
        raise CheckFailed(f"{sent}: {reaction.describe()} (bound {target.artim_wait:g} s)")
    if reaction.bytes_sent >= len(data):
        raise CheckFailed(f"the whole RQ went out before ARTIM ({sent}); lower the interval")
    return f"{sent}: {reaction.describe()} (bound {target.artim_wait:g} s)"


@check(
    "UL-ARTIM-TRICKLE-BODY",
    "an RQ whose header arrives at once and body trickles does not restart ARTIM",
    "PS3.8 9.1.5, Table 9-10 Sta2 Evt18 AA-2",
    Phase.TIMER,
)
def ul_artim_trickle_body(target: Target) -> str:
    """Like UL-ARTIM-TRICKLE, but the 6-byte PDU header goes out in one write.

    Completing the header is not an event of Table 9-10 either. A server that
    times only the header read (and then waits on per-read socket timeouts)
    passes UL-ARTIM-TRICKLE when its ARTIM is shorter than six intervals, but
    can be held open indefinitely this way.
    """
    data = associate_rq(target.called_ae, target.calling_ae)
    with connected(target, timeout=target.artim_wait) as peer:
        peer.send_bytes(data[:6])
        reaction = peer.trickle(data[6:], target.trickle_interval, target.artim_wait)
    sent = f"header + {reaction.bytes_sent}/{len(data) - 6} body bytes"
    if not reaction.closed:
        raise CheckFailed(f"{sent}: {reaction.describe()} (bound {target.artim_wait:g} s)")
    if reaction.bytes_sent >= len(data) - 6:
        raise CheckFailed(f"the whole RQ went out before ARTIM ({sent}); lower the interval")
    return f"{sent}: {reaction.describe()} (bound {target.artim_wait:g} s)"
