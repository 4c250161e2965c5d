"""The association policy suite: who may associate, how many, how often, and when.

PS3.8 9.3.4 gives every refusal its A-ASSOCIATE-RJ (result, source, reason, Table 9-21), but
*whether* to refuse depends on the server's configuration, so each check reads the operator's
:class:`~conformance.expectations.Expectations` and is skipped, with the reason, when the
expectation it needs is not stated. Each check leaves the server as it found it: every
association it opens is released and its close awaited, so a policy that counts open
associations (Max Clients, Multiple Connections) starts each check from zero.

"Another host" is played on loopback by binding to 127.0.0.2 (Linux routes all of 127/8 to
``lo``); known AE titles are called from the address they are registered at.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from conformance.probes import Reply, describe_reply, expect_reject
from conformance.registry import CheckFailed, CheckSkipped, Phase, Target, check
from simulators.echo import run_echoes
from simulators.misbehaving import AssociateAC, AssociateRJ, PDUDecodeError, RawPeer

#: Clause cited by every refusal check.
RJ_CLAUSE = "PS3.8 9.3.4, Table 9-21"

#: "Promptly" for a transient refusal: a modality told to retry must not wait on a hang.
PROMPT_S = 1.0

#: An AE title no server is configured with.
STRANGER = "POLICY_STRANGER"


@dataclass(frozen=True)
class Caller:
    """A calling AE title and the local address it calls from (None: the kernel's choice)."""

    ae_title: str
    bind: str | None = None

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.bind or 'default address'}"


# -- who may call -------------------------------------------------------------------------


def _bindable(ip: str) -> bool:
    """True if this machine has ``ip``, so a socket can connect from it."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET) as probe:
            probe.bind((ip, 0))
    except OSError:
        return False
    return True


def _on_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def other_ip(target: Target) -> str | None:
    """A local address to play another host from, or None if there is none to use."""
    ip = target.expect.other_ip or ("127.0.0.2" if _on_loopback(target.host) else None)
    return ip if ip is not None and _bindable(ip) else None


def acceptable_callers(target: Target) -> list[Caller]:
    """Callers the server should accept, best first: known AE titles, then anonymous ones.

    Anonymous titles are offered when anonymous access is expected, or when nothing is said
    about it and no AE title is known (the suite's own calling AE title first).
    """
    expect = target.expect
    known = [Caller(k.ae_title, k.ip) for k in expect.known_aes if _bindable(k.ip)]
    if expect.allow_anonymous or (expect.allow_anonymous is None and not expect.known_aes):
        anonymous = [Caller(target.calling_ae)]
        anonymous += [Caller(f"POLICY{number:02d}") for number in range(1, 1000)]
        return known + anonymous
    return known


def callers(target: Target, count: int, *, distinct: bool) -> list[Caller]:
    """``count`` acceptable callers from one address, with distinct AE titles if asked.

    Raises CheckSkipped when the expectations do not name enough of them.
    """
    pool = acceptable_callers(target)
    if not pool:
        raise CheckSkipped("no acceptable calling AE title: give known-ae=NAME@IP")
    if not distinct:
        return [pool[0]] * count
    same_address = [c for c in pool if c.bind == pool[0].bind]
    if len(same_address) < count:
        raise CheckSkipped(
            f"needs {count} acceptable calling AE titles from one address; the expectations "
            f"give {len(same_address)} (add known-ae entries or allow-anonymous=true)"
        )
    return same_address[:count]


def default_caller(target: Target) -> Caller:
    """The caller for checks about the request itself, not about who sends it."""
    pool = acceptable_callers(target)
    return pool[0] if pool else Caller(target.calling_ae)


def not_paused(target: Target) -> None:
    """Skip: a paused server refuses every new association, so only POL-PAUSED applies."""
    if target.expect.paused:
        raise CheckSkipped("the server is expected to be paused: only POL-PAUSED applies")


# -- one association ----------------------------------------------------------------------


@dataclass
class Attempt:
    """One request: the peer (open while accepted), the answer and how long it took."""

    caller: Caller
    peer: RawPeer
    reply: Reply
    elapsed: float

    def end(self, target: Target) -> None:
        """Release if accepted (waiting for the server's close), then close our end."""
        if isinstance(self.reply, AssociateAC):
            self.peer.finish(target.timeout)
        self.peer.close()


def request(target: Target, caller: Caller, **rq: Any) -> Attempt:
    """Connect from ``caller.bind``, send an A-ASSOCIATE-RQ as ``caller``, time the answer."""
    peer = RawPeer(target.host, target.port, timeout=target.timeout, bind_address=caller.bind)
    try:
        peer.connect()
    except OSError as exc:
        raise CheckFailed(
            f"{caller}: cannot connect to {target.host}:{target.port}: {exc}"
        ) from exc
    called = rq.pop("called", target.called_ae)
    started = time.monotonic()
    try:
        reply = peer.associate(called, caller.ae_title, **rq)
    except TimeoutError:
        peer.close()
        raise CheckFailed(f"{caller}: no answer within {target.timeout:g} s (a hang)") from None
    except (OSError, PDUDecodeError) as exc:
        peer.close()
        raise CheckFailed(f"{caller}: {type(exc).__name__}: {exc}") from exc
    return Attempt(caller, peer, reply, time.monotonic() - started)


@contextlib.contextmanager
def held(target: Target, caller: Caller) -> Iterator[Attempt]:
    """An association that must be accepted, held for the block, then released."""
    attempt = request(target, caller)
    try:
        if not isinstance(attempt.reply, AssociateAC):
            raise CheckFailed(f"{caller}: not accepted: {describe_reply(attempt.reply)}")
        yield attempt
    finally:
        attempt.end(target)


def answer_of(target: Target, caller: Caller, **rq: Any) -> Attempt:
    """Request, end at once (release if accepted), return the attempt for judging."""
    attempt = request(target, caller, **rq)
    attempt.end(target)
    return attempt


def must_accept(attempt: Attempt, what: str) -> str:
    """PASS detail if accepted, else CheckFailed saying what came back."""
    if not isinstance(attempt.reply, AssociateAC):
        raise CheckFailed(f"{what}: {describe_reply(attempt.reply)}; expected A-ASSOCIATE-AC")
    return f"{what}: A-ASSOCIATE-AC"


# -- checks about the request itself --------------------------------------------------------


@check("POL-CALLED-AE", "a wrong called AE title is refused (1, 1, 7)", RJ_CLAUSE, suite="policy")
def pol_called_ae(target: Target) -> str:
    """Unless the server is expected to answer any called AE title (check-called-ae=false)."""
    not_paused(target)
    wrong = "NOT-" + target.called_ae.strip()[:12]
    attempt = answer_of(target, default_caller(target), called=wrong)
    if not target.expect.check_called_ae or target.accepts_any_called_ae:
        return must_accept(attempt, f"called {wrong!r} (check-called-ae=false)")
    accepted_words = f"accepted the wrong called AE title {wrong!r}"
    return f"called {wrong!r}: " + expect_reject(attempt.reply, (1, 1, 7), accepted_words)


@check(
    "POL-PROTOCOL-VERSION",
    "protocol version 0x0002 (bit 0 clear) is refused (1, 2, 2)",
    "PS3.8 9.3.2 Table 9-11, 9.3.4 Table 9-21",
    suite="policy",
)
def pol_protocol_version(target: Target) -> str:
    """Another bit set does not make up for bit 0 (version 1) missing."""
    not_paused(target)
    attempt = answer_of(target, default_caller(target), protocol_version=2)
    return expect_reject(attempt.reply, (1, 2, 2), "accepted protocol version 0x0002")


@check(
    "POL-PROTOCOL-VERSION-BITS",
    "protocol version 0x0003 (bit 0 and a future bit) is accepted",
    "PS3.8 9.3.2 Table 9-11",
    suite="policy",
)
def pol_protocol_version_bits(target: Target) -> str:
    """PS3.8: a receiver implementing only version 1 "shall only test that bit 0 is set"."""
    not_paused(target)
    return must_accept(answer_of(target, default_caller(target), protocol_version=3), "0x0003")


@check(
    "POL-APP-CONTEXT",
    "a non-DICOM application context is refused (1, 1, 2)",
    "PS3.8 9.3.2.1, 9.3.4 Table 9-21; PS3.7 A.2.1",
    suite="policy",
)
def pol_app_context(target: Target) -> str:
    """Only 1.2.840.10008.3.1.1.1 is the DICOM application context."""
    not_paused(target)
    attempt = answer_of(target, default_caller(target), app_context="1.2.3.4.5.6.7.8.9")
    return expect_reject(attempt.reply, (1, 1, 2), "accepted application context 1.2.3.4.5.6.7.8.9")


# -- who may associate ----------------------------------------------------------------------


@check(
    "POL-KNOWN-AE",
    "each known AE title is accepted from its registered address",
    RJ_CLAUSE,
    suite="policy",
)
def pol_known_ae(target: Target) -> str:
    """The table's peers must get in, whatever else is configured."""
    not_paused(target)
    known = [k for k in target.expect.known_aes if _bindable(k.ip)]
    if not known:
        raise CheckSkipped("no known-ae=NAME@IP with a local IP given")
    return "; ".join(
        must_accept(answer_of(target, Caller(k.ae_title, k.ip)), str(k)) for k in known
    )


@check(
    "POL-UNKNOWN-AE",
    "an unregistered calling AE title: accepted iff anonymous access is allowed, else (1, 1, 3)",
    RJ_CLAUSE,
    suite="policy",
)
def pol_unknown_ae(target: Target) -> str:
    """Allow Anonymous decides; a refusal is calling-AE-title-not-recognized."""
    not_paused(target)
    anonymous = target.expect.allow_anonymous
    if anonymous is None:
        raise CheckSkipped("allow-anonymous not given in --expect")
    attempt = answer_of(target, Caller(STRANGER))
    if anonymous:
        return must_accept(attempt, f"{STRANGER} (allow-anonymous=true)")
    accepted_words = f"accepted unregistered {STRANGER} although allow-anonymous=false"
    return f"{STRANGER}: " + expect_reject(attempt.reply, (1, 1, 3), accepted_words)


@check(
    "POL-KNOWN-AE-OTHER-HOST",
    "a known AE title calling from another address is refused (1, 1, 3)",
    RJ_CLAUSE,
    suite="policy",
)
def pol_known_ae_other_host(target: Target) -> str:
    """An AE title proves nothing by itself: it must come from where it is registered."""
    not_paused(target)
    if not target.expect.known_aes:
        raise CheckSkipped("no known-ae=NAME@IP given")
    known = target.expect.known_aes[0]
    other = other_ip(target)
    if other is None or other == known.ip:
        raise CheckSkipped(f"no local address other than {known.ip} (give other-ip=IP)")
    attempt = answer_of(target, Caller(known.ae_title, other))
    accepted_words = f"accepted {known.ae_title} from {other}, registered at {known.ip}"
    return f"{known.ae_title} from {other}: " + expect_reject(
        attempt.reply, (1, 1, 3), accepted_words
    )


# -- how many, how often --------------------------------------------------------------------


def _judge_second(attempt: Attempt, expected: tuple[int, int, int] | None) -> str:
    """A second association of the same peer: transient RJ (or exactly ``expected``)."""
    reply = attempt.reply
    if isinstance(reply, AssociateRJ):
        if expected is not None and reply.triple != expected:
            raise CheckFailed(f"A-ASSOCIATE-RJ {reply}; expected {expected}")
        if reply.result != 2:
            raise CheckFailed(f"A-ASSOCIATE-RJ {reply}; expected a transient one (result 2)")
        return f"second association: A-ASSOCIATE-RJ {reply} after {attempt.elapsed:.3f} s"
    raise CheckFailed(f"second association: {describe_reply(reply)}; expected a transient RJ")


@check(
    "POL-MULTIPLE-CONNECTIONS",
    "one AE title twice from one address: refused transiently iff multiple connections are off",
    RJ_CLAUSE,
    suite="policy",
)
def pol_multiple_connections(target: Target) -> str:
    """While a peer is associated, the same AE title from the same IP asks again."""
    not_paused(target)
    allowed = target.expect.multiple_connections
    if allowed is None:
        raise CheckSkipped("multiple-connections not given in --expect")
    (caller,) = callers(target, 1, distinct=False)
    with held(target, caller):
        second = answer_of(target, caller)
    if allowed:
        return must_accept(second, f"{caller} twice (multiple-connections=true)")
    return f"{caller}: " + _judge_second(second, target.expect.multiple_connections_reject)


@check(
    "POL-MULTIPLE-CONNECTIONS-OTHER-AE",
    "with multiple connections off, another AE title from the same address is accepted",
    RJ_CLAUSE,
    suite="policy",
)
def pol_multiple_connections_other_ae(target: Target) -> str:
    """The limit is per AE title and address, not per address."""
    not_paused(target)
    if target.expect.multiple_connections is not False:
        raise CheckSkipped("only meaningful with multiple-connections=false")
    first, second = callers(target, 2, distinct=True)
    with held(target, first):
        return must_accept(answer_of(target, second), f"{second} while {first} is associated")


def _eventually_accepted(target: Target, caller: Caller) -> Attempt:
    """Ask until accepted or the timeout passes (a forking server reaps its children late)."""
    deadline = time.monotonic() + target.timeout
    pause = 0.05
    while True:
        attempt = answer_of(target, caller)
        if isinstance(attempt.reply, AssociateAC) or time.monotonic() + pause > deadline:
            return attempt
        time.sleep(pause)  # harness back-off between real requests, not a test waiting
        pause = min(pause * 2, 0.5)


@check(
    "POL-MAX-CLIENTS",
    "with max clients N held, one more is refused (2, 3, 2) within 1 s; a release frees a place",
    RJ_CLAUSE,
    suite="policy",
)
def pol_max_clients(target: Target) -> str:
    """N accepted and held; N+1 refused promptly, never hung or closed bare; then one leaves."""
    not_paused(target)
    limit = target.expect.max_clients
    if limit is None:
        raise CheckSkipped("max-clients not given in --expect")
    distinct = target.expect.multiple_connections is not True
    if distinct:
        try:
            group = callers(target, limit + 1, distinct=True)
        except CheckSkipped:
            if target.expect.multiple_connections is False:
                raise
            group = callers(target, limit + 1, distinct=False)
    else:
        group = callers(target, limit + 1, distinct=False)
    holders: list[Attempt] = []
    try:
        for caller in group[:limit]:
            attempt = request(target, caller)
            holders.append(attempt)
            if not isinstance(attempt.reply, AssociateAC):
                raise CheckFailed(
                    f"association {len(holders)} of {limit} ({caller}) not accepted: "
                    f"{describe_reply(attempt.reply)}"
                )
        extra = answer_of(target, group[limit])
        verdict = expect_reject(extra.reply, (2, 3, 2), f"accepted association {limit + 1}")
        if extra.elapsed > PROMPT_S:
            raise CheckFailed(f"{verdict}, but after {extra.elapsed:.2f} s (> {PROMPT_S:g} s)")
        released = holders.pop()
        released.end(target)
        again = _eventually_accepted(target, released.caller)
        if not isinstance(again.reply, AssociateAC):
            raise CheckFailed(f"after a release, still {describe_reply(again.reply)}")
    finally:
        for attempt in holders:
            attempt.end(target)
    return (
        f"{limit} accepted; association {limit + 1}: {verdict} after {extra.elapsed:.3f} s; "
        "after one release a new one was accepted"
    )


@check(
    "POL-PAUSED",
    "a paused server refuses a new association (2, 3, 1)",
    RJ_CLAUSE,
    suite="policy",
)
def pol_paused(target: Target) -> str:
    """Only when the operator says the server is paused now (paused=true)."""
    if not target.expect.paused:
        raise CheckSkipped("the server is not expected to be paused (give paused=true)")
    attempt = answer_of(target, default_caller(target))
    return expect_reject(attempt.reply, (2, 3, 1), "a paused server accepted an association")


@check(
    "POL-STILL-SERVING",
    "an acceptable modality still associates and echoes (pynetdicom SCU)",
    "PS3.8 9.3.3, PS3.7 9.3.5",
    Phase.FINAL,
    suite="policy",
)
def pol_still_serving(target: Target) -> str:
    """After all the refusals, the server still serves the peers it should."""
    not_paused(target)
    caller = default_caller(target)
    result = run_echoes(
        target.host,
        target.port,
        target.called_ae,
        caller.ae_title,
        timeout=target.timeout,
        bind_address=caller.bind,
    )
    if not result.ok:
        raise CheckFailed(f"{caller}: " + ("; ".join(result.failures) or "echo failed"))
    return f"{caller}: association accepted, C-ECHO status 0x0000, released"
