"""Named misbehaviours for ``python -m simulators raw --scenario NAME``.

Each scenario provokes the server once and prints, in PS3.8 words, what the
server did and when. They are for a person at a terminal (or a behave step)
watching a server's error paths; the judged versions with PASS/FAIL live in
:mod:`conformance`.

Exit status: 0 when the server reacted the way PS3.8 asks (closed, aborted or
rejected within ``--timeout``), 1 otherwise.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from simulators.misbehaving import (
    A_ABORT,
    A_ASSOCIATE_RJ,
    AssociateAC,
    AssociateRJ,
    PDUDecodeError,
    RawPeer,
    associate_rq,
)

Scenario = Callable[[argparse.Namespace], int]

#: After an A-ABORT or A-ASSOCIATE-RJ it is our side that closes (PS3.8 AA-3, AE-4).
_ENDING = frozenset({A_ABORT, A_ASSOCIATE_RJ})


def _peer(args: argparse.Namespace) -> RawPeer:
    peer = RawPeer(args.host, args.port, timeout=args.timeout)
    peer.connect()
    return peer


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
    data = bytes(rng.randrange(256) for _ in range(args.size))
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


def bad_pdu_type(args: argparse.Namespace) -> int:
    """After the AC, send a PDU of unknown type 0x0A: expect A-ABORT (2, 1) (PS3.8 Table 9-10)."""
    with _peer(args) as peer:
        reply = peer.associate(args.called_ae, args.calling_ae)
        if not isinstance(reply, AssociateAC):
            print(f"association not accepted: {reply}")
            return 1
        print("association accepted; sending a PDU of type 0x0A")
        peer.send_pdu(0x0A, bytes(4))
        reaction = peer.react(args.timeout, until=_ENDING)
    print(f"server: {reaction.describe()}")
    return 0 if reaction.aborts else 1


def wrong_called_ae(args: argparse.Namespace) -> int:
    """Call an AE title the server is not: expect A-ASSOCIATE-RJ (1, 1, 7) (PS3.8 9.3.4)."""
    wrong = "NO-SUCH-AE" if args.called_ae.strip() != "NO-SUCH-AE" else "NO-SUCH-AE-2"
    with _peer(args) as peer:
        reply = peer.associate(wrong, args.calling_ae)
        if isinstance(reply, AssociateAC):
            peer.release()
    if isinstance(reply, AssociateRJ):
        print(f"called {wrong!r}: A-ASSOCIATE-RJ {reply}")
        return 0
    said = "accepted (A-ASSOCIATE-AC)" if isinstance(reply, AssociateAC) else str(reply)
    print(f"called {wrong!r}: {said}")
    return 1


SCENARIOS: dict[str, Scenario] = {
    "silent": silent,
    "trickle": trickle,
    "garbage": garbage,
    "bad-pdu-type": bad_pdu_type,
    "wrong-called-ae": wrong_called_ae,
}

SCENARIO_HELP = {
    "silent": "connect and send nothing, report when the server closes (ARTIM, Sta2)",
    "trickle": "send a valid A-ASSOCIATE-RQ one byte per --interval until closed",
    "garbage": "send --size random bytes, report the reaction",
    "bad-pdu-type": "associate, then send a PDU of unknown type 0x0A (expect A-ABORT)",
    "wrong-called-ae": "call an AE title other than --called-ae (expect A-ASSOCIATE-RJ 1/1/7)",
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
    parser.add_argument("--called-ae", required=True, help="the server's AE title (called AE)")
    parser.add_argument(
        "--calling-ae", default="SIMRAW", help="our AE title (default: %(default)s)"
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
    parser.add_argument("--size", type=int, default=256, help="garbage: bytes to send")
    parser.add_argument("--seed", type=int, default=None, help="garbage: random seed")


def main(args: argparse.Namespace) -> int:
    """Run one scenario, timing it; return its exit status."""
    if args.seed is None:
        args.seed = random.randrange(1 << 32)
    start = time.monotonic()
    try:
        status = SCENARIOS[args.scenario](args)
    except (OSError, PDUDecodeError) as exc:
        print(f"{type(exc).__name__}: {exc}")
        return 1
    print(f"scenario {args.scenario} finished in {time.monotonic() - start:.2f} s")
    return status
