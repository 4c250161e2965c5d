"""Shared moves of the checks: open a raw association, read a verdict from a reply.

Every check speaks through :class:`simulators.misbehaving.RawPeer`, so what is
on the wire is exactly what the check says it sends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from conformance.registry import CheckFailed, Target
from simulators.misbehaving import (
    A_ABORT,
    A_ASSOCIATE_RJ,
    Abort,
    AssociateAC,
    AssociateRJ,
    RawPeer,
    Reaction,
)

#: The PDUs after which the requestor, not the server, closes the transport.
ENDING_PDUS = frozenset({A_ABORT, A_ASSOCIATE_RJ})

Reply = AssociateAC | AssociateRJ | Abort | None


@contextlib.contextmanager
def connected(target: Target, timeout: float | None = None) -> Iterator[RawPeer]:
    """A connected RawPeer that is closed on exit, whatever the check did."""
    peer = RawPeer(target.host, target.port, timeout=target.timeout if timeout is None else timeout)
    try:
        peer.connect()
    except OSError as exc:
        raise CheckFailed(f"cannot connect to {target.host}:{target.port}: {exc}") from exc
    try:
        yield peer
    finally:
        peer.close()


def describe_reply(reply: Reply) -> str:
    """The server's answer to an A-ASSOCIATE-RQ in PS3.8 words."""
    if isinstance(reply, AssociateAC):
        contexts = ", ".join(
            f"{c.context_id}: {c.result} ({c.result_words})" for c in reply.contexts
        )
        return f"A-ASSOCIATE-AC (contexts {contexts})"
    if isinstance(reply, AssociateRJ):
        return f"A-ASSOCIATE-RJ {reply}"
    if isinstance(reply, Abort):
        return str(reply)
    return "connection closed without a reply"


def request(peer: RawPeer, target: Target, **rq: Any) -> Reply:
    """Send an A-ASSOCIATE-RQ from the target's calling AE and return the decoded reply.

    ``rq`` overrides any field of :func:`simulators.pdus.associate_rq`,
    including ``called`` (default: the target's called AE).
    """
    called = rq.pop("called", target.called_ae)
    try:
        return peer.associate(called, target.calling_ae, **rq)
    except TimeoutError as exc:
        raise CheckFailed(f"no reply to the A-ASSOCIATE-RQ within {target.timeout:g} s") from exc


def accepted(peer: RawPeer, target: Target, **rq: Any) -> AssociateAC:
    """Associate and insist on an AC; anything else fails the check with what came back."""
    reply = request(peer, target, **rq)
    if not isinstance(reply, AssociateAC):
        raise CheckFailed(f"association not accepted: {describe_reply(reply)}")
    return reply


def expect_reject(reply: Reply, expected: tuple[int, int, int], accepted_words: str) -> str:
    """PASS detail if ``reply`` is an RJ with the ``expected`` triple, else CheckFailed."""
    if isinstance(reply, AssociateRJ):
        if reply.triple == expected:
            return f"A-ASSOCIATE-RJ {reply}"
        raise CheckFailed(f"A-ASSOCIATE-RJ {reply}; expected {expected}")
    if isinstance(reply, AssociateAC):
        raise CheckFailed(accepted_words)
    raise CheckFailed(f"{describe_reply(reply)}; expected A-ASSOCIATE-RJ {expected}")


def release_quietly(peer: RawPeer) -> None:
    """End an association we no longer need, ignoring whatever the server does about it."""
    with contextlib.suppress(OSError, ValueError):
        peer.release()


def expect_abort(reaction: Reaction, reason: int | None, provocation: str) -> str:
    """Judge a reaction against PS3.8 AA-8: an A-ABORT with source 2 (and ``reason``).

    AA-8 sends an A-ABORT PDU with the service-provider source. The reason
    is checked only where the brief's clause names one (unrecognized-PDU,
    unexpected-PDU); a bare close or a different A-ABORT fails with a
    description of what the server did.
    """
    what = reaction.describe()
    aborts = reaction.aborts
    if not aborts:
        if reaction.closed:
            raise CheckFailed(f"{provocation}: {what} (no A-ABORT PDU)")
        raise CheckFailed(f"{provocation}: {what}")
    first = aborts[0]
    if first.source != 2 or (reason is not None and first.reason != reason):
        want = "source 2" + (f", reason {reason}" if reason is not None else "")
        raise CheckFailed(f"{provocation}: {what}; expected A-ABORT {want}")
    return f"{provocation}: {what}"
