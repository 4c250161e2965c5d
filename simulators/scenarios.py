"""Named misbehaviours for ``python -m simulators raw --scenario NAME``.

Each scenario provokes the server once and prints, in PS3.8 words, what the
server did and when. They are for a person at a terminal (or a behave step)
watching a server's error paths; the judged versions with PASS/FAIL live in
:mod:`conformance`.

Exit status: 0 when the server reacted the way PS3.8 asks (closed, aborted or
rejected within ``--timeout``, with the A-ABORT or A-ASSOCIATE-RJ numbers PS3.8
prescribes where it prescribes them), 1 otherwise.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any

from simulators.crowd import open_associations, release_all, tally
from simulators.misbehaving import (
    A_ABORT,
    A_ASSOCIATE_RJ,
    Abort,
    AssociateAC,
    AssociateRJ,
    RawPeer,
    associate_rq,
)
from simulators.options import ae_title

Scenario = Callable[[argparse.Namespace], int]

#: After an A-ABORT or A-ASSOCIATE-RJ it is our side that closes (PS3.8 AA-3, AE-4).
_ENDING = frozenset({A_ABORT, A_ASSOCIATE_RJ})


def describe_reply(reply: AssociateAC | AssociateRJ | Abort | None) -> str:
    """The server's answer to an A-ASSOCIATE-RQ in PS3.8 words."""
    if isinstance(reply, AssociateAC):
        return "A-ASSOCIATE-AC"
    if isinstance(reply, AssociateRJ):
        return f"A-ASSOCIATE-RJ {reply}"
    if isinstance(reply, Abort):
        return str(reply)
    return "closed without a reply"


def _peer(args: argparse.Namespace, **options: Any) -> RawPeer:
    """A connected raw peer from ``--bind-address`` (if given) to the server."""
    peer = RawPeer(args.host, args.port, timeout=args.timeout, bind_address=args.bind_address)
    for name, value in options.items():
        setattr(peer, name, value)
    peer.connect()
    return peer


def _accepted_context(reply: object) -> int | None:
    """The first accepted presentation context of an AC, or None."""
    if not isinstance(reply, AssociateAC):
        return None
    return next((c.context_id for c in reply.contexts if c.result == 0), None)


def silent(args: argparse.Namespace) -> int:
    """Connect and send nothing: the server's ARTIM timer (Sta2) should close us (PS3.8 9.1.5)."""
    with _peer(args) as peer:
        print(f"connected to {args.host}:{args.port}; sending nothing")
        reaction = peer.react(args.timeout)
    print(f"server: {reaction.describe()}")
    return 0 if reaction.closed else 1


def trickle(args: argparse.Namespace) -> int:
    """Send a valid A-ASSOCIATE-RQ one byte per ``--interval``: ARTIM should still expire."""
    data = associate_rq(args.called_ae, args.calling_ae)
    with _peer(args) as peer:
        print(f"trickling a {len(data)}-byte A-ASSOCIATE-RQ, one byte every {args.interval} s")
        reaction = peer.trickle(data, args.interval, args.timeout)
    print(f"server after {reaction.bytes_sent} bytes: {reaction.describe()}")
    return 0 if reaction.closed and reaction.bytes_sent < len(data) else 1


def garbage(args: argparse.Namespace) -> int:
    """Send random bytes in place of a PDU: expect an A-ABORT or a close (PS3.8 9.1.5, Evt19)."""
    rng = random.Random(args.seed)
    data = bytes(rng.randrange(256) for _ in range(args.size or 256))
    with _peer(args) as peer:
        print(f"sending {len(data)} random bytes (seed {args.seed}) starting {data[:8].hex()}")
        try:
            peer.send_bytes(data)
        except OSError as exc:
            print(f"server closed while we were sending: {exc}")
            return 0
        reaction = peer.react(args.timeout, until=_ENDING)
    print(f"server: {reaction.describe()}")
    return 0 if reaction.closed or reaction.stopped else 1


#: What PS3.8 Table 9-10 Sta6+Evt19 (unrecognized PDU) -> AA-8 sends: A-ABORT
#: source 2 (service provider), reason 1 (unrecognized-PDU). The conformance
#: check UL-BAD-PDU-TYPE demands the same pair, so the two never disagree.
_UNRECOGNIZED_PDU_ABORT = Abort(2, 1)


def bad_pdu_type(args: argparse.Namespace) -> int:
    """After the AC, send a PDU of unknown type 0x0A: expect A-ABORT (2, 1) (PS3.8 Table 9-10)."""
    with _peer(args) as peer:
        reply = peer.associate(args.called_ae, args.calling_ae)
        if not isinstance(reply, AssociateAC):
            print(f"association not accepted: {describe_reply(reply)}")
            return 1
        print("association accepted; sending a PDU of type 0x0A")
        peer.send_pdu(0x0A, bytes(4))
        reaction = peer.react(args.timeout, until=_ENDING)
    print(f"server: {reaction.describe()}")
    aborts = reaction.aborts
    if aborts and aborts[0] == _UNRECOGNIZED_PDU_ABORT:
        return 0
    came = str(aborts[0]) if aborts else "no A-ABORT"
    print(f"expected {_UNRECOGNIZED_PDU_ABORT} (PS3.8 Table 9-10, AA-8), came {came}")
    return 1


#: PS3.8 Table 9-21: rejected-permanent, DICOM UL service-user, called-AE-title-not-recognized.
_CALLED_AE_NOT_RECOGNIZED = AssociateRJ(1, 1, 7)


def wrong_called_ae(args: argparse.Namespace) -> int:
    """Call an AE title the server is not: expect A-ASSOCIATE-RJ (1, 1, 7) (PS3.8 9.3.4).

    Any other rejection is a failure too: a server that refuses for another
    reason (e.g. an unknown calling AE title) has not shown that it checks the
    called AE title at all.
    """
    wrong = "NO-SUCH-AE" if args.called_ae.strip() != "NO-SUCH-AE" else "NO-SUCH-AE-2"
    with _peer(args) as peer:
        reply = peer.associate(wrong, args.calling_ae)
        if isinstance(reply, AssociateAC):
            peer.release()
    said = "accepted (A-ASSOCIATE-AC)" if isinstance(reply, AssociateAC) else describe_reply(reply)
    print(f"called {wrong!r}: {said}")
    if isinstance(reply, AssociateRJ) and reply.triple == _CALLED_AE_NOT_RECOGNIZED.triple:
        return 0
    print(f"expected A-ASSOCIATE-RJ {_CALLED_AE_NOT_RECOGNIZED}")
    return 1


def associate(args: argparse.Namespace) -> int:
    """Request one association as ``--calling-ae`` (from ``--bind-address``) and report.

    The acceptance-policy probe: who may associate, from where. Exit 0 if the
    server answered at all (AC or RJ, PS3.8 9.3.3-4); a bare close or silence is 1.
    """
    with _peer(args) as peer:
        ip, _ = peer.local_address
        reply = peer.read_association_reply() if _send_rq(peer, args) else None
        said = describe_reply(reply)
        if isinstance(reply, AssociateAC):
            context = _accepted_context(reply)
            if context is not None:
                said += f"; C-ECHO status 0x{peer.echo(context):04X}"
            peer.release()
    print(f"{args.calling_ae} from {ip}: {said}")
    return 0 if isinstance(reply, AssociateAC | AssociateRJ) else 1


def _send_rq(peer: RawPeer, args: argparse.Namespace) -> bool:
    """Send the A-ASSOCIATE-RQ of ``args``; False if the server is already gone."""
    try:
        peer.send_bytes(associate_rq(args.called_ae, args.calling_ae))
    except OSError:
        return False
    return True


def idle_association(args: argparse.Namespace) -> int:
    """Associate, then send nothing: the server's client timeout should abort and close us."""
    with _peer(args) as peer:
        reply = peer.associate(args.called_ae, args.calling_ae)
        if not isinstance(reply, AssociateAC):
            print(f"association not accepted: {describe_reply(reply)}")
            return 1
        print("association accepted; sending nothing")
        reaction = peer.react(args.timeout)
    print(f"server: {reaction.describe()}")
    return 0 if reaction.closed or reaction.aborts else 1


def slow_reader(args: argparse.Namespace) -> int:
    """Flood C-ECHO-RQs and never read the answers; meanwhile another modality must be served.

    Exit 0 if a second, well-behaved association echoes successfully while the
    slow reader is still connected with its answers unread.
    """
    with _peer(args, receive_buffer=4096) as peer:
        context = _accepted_context(peer.associate(args.called_ae, args.calling_ae))
        if context is None:
            print("association not accepted")
            return 1
        flood = peer.flood_echoes(context, max_bytes=args.size or 4 << 20, stall_after=1.0)
        print(f"slow reader: {flood.describe()}")
        with RawPeer(args.host, args.port, timeout=args.timeout) as other:
            other_context = _accepted_context(other.associate(args.called_ae, "SIMOTHER"))
            status = None if other_context is None else other.echo(other_context)
            if status is not None:
                other.release()
    print(f"another modality meanwhile: {'not accepted' if status is None else hex(status)}")
    return 0 if status == 0 else 1


def flood(args: argparse.Namespace) -> int:
    """Open ``--count`` associations at once; every one must get an answer, none a bare close.

    Prints the tally (accepted, each rejection triple, bare closes, silences)
    and the slowest answer; accepted associations are released at the end.
    """
    attempts = open_associations(
        args.host,
        args.port,
        args.called_ae,
        [f"{args.calling_ae[:11]}{n:05d}" for n in range(args.count)]
        if args.distinct_ae
        else args.calling_ae,
        args.count,
        timeout=args.timeout,
        bind_address=args.bind_address,
    )
    counts = tally(attempts)
    slowest = max((a.elapsed for a in attempts), default=0.0)
    release_all(attempts)
    print(", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())))
    print(f"slowest answer after {slowest:.3f} s")
    answered = counts["accepted"] + sum(n for k, n in counts.items() if k.startswith("rejected"))
    return 0 if answered == args.count else 1


def same_ae_twice(args: argparse.Namespace) -> int:
    """Associate as ``--calling-ae``, and while that is open, again with the same title.

    Reports both answers; exit 0 if both were answered (AC or RJ): whether the
    second is accepted depends on the server's multiple-connections policy.
    """
    with _peer(args) as first, _peer(args) as second:
        first_reply = first.associate(args.called_ae, args.calling_ae)
        second_reply = second.associate(args.called_ae, args.calling_ae)
        print(f"first: {describe_reply(first_reply)}")
        print(f"second, while the first is open: {describe_reply(second_reply)}")
        for peer, reply in ((second, second_reply), (first, first_reply)):
            if isinstance(reply, AssociateAC):
                peer.release()
    answers = (AssociateAC, AssociateRJ)
    return 0 if isinstance(first_reply, answers) and isinstance(second_reply, answers) else 1


SCENARIOS: dict[str, Scenario] = {
    "silent": silent,
    "trickle": trickle,
    "garbage": garbage,
    "bad-pdu-type": bad_pdu_type,
    "wrong-called-ae": wrong_called_ae,
    "associate": associate,
    "idle-association": idle_association,
    "slow-reader": slow_reader,
    "flood": flood,
    "same-ae-twice": same_ae_twice,
}

SCENARIO_HELP = {
    "silent": "connect and send nothing, report when the server closes (ARTIM, Sta2)",
    "trickle": "send a valid A-ASSOCIATE-RQ one byte per --interval until closed",
    "garbage": "send --size random bytes, report the reaction",
    "bad-pdu-type": "associate, then send a PDU of unknown type 0x0A (expect A-ABORT 2/1)",
    "wrong-called-ae": "call an AE title other than --called-ae (expect A-ASSOCIATE-RJ 1/1/7)",
    "associate": "request one association as --calling-ae, echo if accepted, report the answer",
    "idle-association": "associate, then send nothing, report the client timeout's abort",
    "slow-reader": "flood --size bytes of C-ECHO-RQs, never read; check another AE is served",
    "flood": "open --count associations at once; each must be answered (AC or RJ)",
    "same-ae-twice": "associate twice at once with the same calling AE title, report both",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m simulators raw``."""
    parser.add_argument(
        "--scenario",
        required=True,
        choices=list(SCENARIOS),
        help="; ".join(f"{name}: {text}" for name, text in SCENARIO_HELP.items()),
    )
    parser.add_argument("--host", required=True, help="server host name or IP address")
    parser.add_argument("--port", required=True, type=int, help="server TCP port")
    parser.add_argument(
        "--called-ae", required=True, type=ae_title, help="the server's AE title (called AE)"
    )
    parser.add_argument(
        "--calling-ae", default="SIMRAW", type=ae_title, help="our AE title (default: %(default)s)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="how long to wait for the server to react, in seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, help="trickle: seconds per byte (default: 1)"
    )
    parser.add_argument(
        "--bind-address",
        default=None,
        metavar="IP",
        help="local IP address to connect from, e.g. 127.0.0.2 to play another host on loopback",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="bytes to send: garbage (default 256), slow-reader (at most; default 4 MiB)",
    )
    parser.add_argument("--count", type=int, default=10, help="flood: connections to open")
    parser.add_argument(
        "--distinct-ae",
        action="store_true",
        help="flood: give each connection its own calling AE title (CALLING00000, ...)",
    )
    parser.add_argument("--seed", type=int, default=None, help="garbage: random seed")


def main(args: argparse.Namespace) -> int:
    """Run one scenario, timing it; return its exit status.

    A network error, an undecodable reply (PDUDecodeError is a ValueError) or
    any other ValueError (e.g. an AE title given in code that cannot be encoded)
    is one printed line and exit 1, not a traceback.
    """
    if args.seed is None:
        args.seed = random.randrange(1 << 32)
    start = time.monotonic()
    try:
        status = SCENARIOS[args.scenario](args)
    except (OSError, ValueError) as exc:
        print(f"{type(exc).__name__}: {exc}")
        return 1
    print(f"scenario {args.scenario} finished in {time.monotonic() - start:.2f} s")
    return status
