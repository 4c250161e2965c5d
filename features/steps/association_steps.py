"""Steps about associations held open, requested by hand, or arriving in a crowd.

The acceptance policy is about what is *open* when a request arrives: how many associations
(Max Clients), which AE title from which address (Multiple Connections), whether the server is
paused. So these steps keep associations open across steps:

- well-behaved modalities hold theirs on pynetdicom's AE (:class:`simulators.echo.HeldAssociation`);
- requests with a field PS3.8 forbids (protocol version, application context) are hand-built by
  a raw peer (:class:`simulators.misbehaving.RawPeer`);
- a crowd is raw peers too (:mod:`simulators.crowd`): pynetdicom spends two threads on each.

Everything opened here is released (or dropped) when the scenario ends.
"""

from __future__ import annotations

import time
from typing import Any

from behave import given, then, when
from scenario_support import Answer, expected_rejection, on_cleanup, running_server

from pacsref.testing.net import LOOPBACK
from simulators.crowd import Attempt, open_associations, release_all, tally
from simulators.echo import HeldAssociation
from simulators.misbehaving import AssociateAC, AssociateRJ, RawPeer, associate_rq

#: Bound for every answer these steps wait for.
ANSWER_TIMEOUT_S = 10.0


def held_associations(context: Any) -> dict[str, HeldAssociation]:
    """The scenario's held associations by calling AE title; released when it ends."""
    held: dict[str, HeldAssociation] | None = getattr(context, "held", None)
    if held is None:
        held = context.held = {}

        def release_all_held() -> None:
            for association in held.values():
                association.abort()

        on_cleanup(context, release_all_held)
    return held


def hold(context: Any, calling_ae: str, address: str = LOOPBACK) -> HeldAssociation:
    """Associate as ``calling_ae`` from ``address`` and keep it open; it must be accepted."""
    server = running_server(context)
    host, port = server.address
    association = HeldAssociation(
        host,
        port,
        server.ae_title,
        calling_ae,
        timeout=ANSWER_TIMEOUT_S,
        bind_address=None if address == LOOPBACK else address,
    )
    held_associations(context)[calling_ae] = association
    assert association.established, f"{calling_ae} from {address}: {association.error}"
    return association


@given('the modality "{calling_ae}" holds an association with the server')
@when('the modality "{calling_ae}" holds an association with the server')
def step_hold(context: Any, calling_ae: str) -> None:
    """A modality associates and stays associated, doing nothing for now."""
    hold(context, calling_ae)


@given('the modality "{calling_ae}" holds an association with the server from {address}')
def step_hold_from(context: Any, calling_ae: str, address: str) -> None:
    """As above, from a given local address (127.0.0.2 plays another host on loopback)."""
    hold(context, calling_ae, address)


@given("{count:d} modalities hold associations with the server")
def step_hold_many(context: Any, count: int) -> None:
    """``count`` modalities, each with its own AE title (MODALITY_01, ...), stay associated."""
    for number in range(1, count + 1):
        hold(context, f"MODALITY_{number:02d}")


@when('the modality "{calling_ae}" releases its association')
def step_release(context: Any, calling_ae: str) -> None:
    """An orderly A-RELEASE of a held association; the server must confirm it."""
    association = held_associations(context).pop(calling_ae, None)
    assert association is not None, f"{calling_ae} holds no association in this scenario"
    assert association.release(), f"{calling_ae}: the release was not confirmed"


@then("every held association still answers a C-ECHO")
def step_held_still_echo(context: Any) -> None:
    """Associations open before a refusal, pause or flood are served as if nothing happened."""
    held = held_associations(context)
    assert held, "no association is held in this scenario"
    for calling_ae, association in held.items():
        result = association.echo()
        assert result.ok, f"{calling_ae}: {result.failures}"


@then('the held association of "{calling_ae}" still answers {count:d} C-ECHOs')
def step_held_still_echo_many(context: Any, calling_ae: str, count: int) -> None:
    """One held association goes on serving request after request."""
    association = held_associations(context).get(calling_ae)
    assert association is not None, f"{calling_ae} holds no association in this scenario"
    result = association.echo(count)
    assert result.ok, f"{calling_ae}: {result.succeeded} of {count}: {result.failures[:3]}"


# -- hand-built requests -------------------------------------------------------------------


def raw_request(context: Any, calling_ae: str, **fields: Any) -> Answer:
    """Send one hand-built A-ASSOCIATE-RQ and record the answer; the peer is closed after."""
    server = running_server(context)
    host, port = server.address
    fields.setdefault("called", server.ae_title)
    called = fields.pop("called")
    with RawPeer(host, port, timeout=ANSWER_TIMEOUT_S) as peer:
        started = time.monotonic()
        peer.send_bytes(associate_rq(called, calling_ae, **fields))
        reply = peer.read_association_reply()
        elapsed = time.monotonic() - started
        if isinstance(reply, AssociateAC):
            peer.finish(ANSWER_TIMEOUT_S)
    rejection = reply.triple if isinstance(reply, AssociateRJ) else None
    detail = "A-ASSOCIATE-AC" if isinstance(reply, AssociateAC) else str(reply)
    context.answer = Answer(
        "raw peer", isinstance(reply, AssociateAC), rejection, elapsed, f"answered {detail}"
    )
    return context.answer


@when(
    'the modality "{calling_ae}" requests an association with called AE "{called}",'
    ' protocol version {version:d} and application context "{app_context}"'
)
def step_raw_request(
    context: Any, calling_ae: str, called: str, version: int, app_context: str
) -> None:
    """A request with exactly these header fields (PS3.8 Table 9-11), built by hand."""
    raw_request(
        context, calling_ae, called=called, protocol_version=version, app_context=app_context
    )


@when('the modality "{calling_ae}" sends these association requests')
def step_raw_request_table(context: Any, calling_ae: str) -> None:
    """One hand-built request per row (case, called, version, context, answer); judged later."""
    answers = []
    for row in context.table:
        answer = raw_request(
            context,
            calling_ae,
            called=row["called"],
            protocol_version=int(row["version"]),
            app_context=row["context"],
        )
        answers.append((row["case"], row["answer"], answer))
    context.table_answers = answers


# -- crowds -----------------------------------------------------------------------------------


@when("{count:d} modalities request associations at the same moment")
def step_crowd(context: Any, count: int) -> None:
    """``count`` connections, then ``count`` requests, then the answers: a burst.

    Each has its own calling AE title (BURST_001, ...), so only Max Clients limits them.
    """
    server = running_server(context)
    host, port = server.address
    titles = [f"BURST_{number:03d}" for number in range(1, count + 1)]
    crowd = open_associations(host, port, server.ae_title, titles, count, timeout=ANSWER_TIMEOUT_S)
    context.crowd = crowd
    on_cleanup(context, lambda: release_all(crowd))


def crowd_of(context: Any) -> list[Attempt]:
    """The scenario's latest crowd."""
    crowd: list[Attempt] | None = getattr(context, "crowd", None)
    assert crowd is not None, "no crowd has requested associations in this scenario"
    return crowd


@then("{count:d} of them are accepted")
def step_crowd_accepted(context: Any, count: int) -> None:
    """Exactly ``count`` of the burst got an A-ASSOCIATE-AC."""
    crowd = crowd_of(context)
    accepted = sum(attempt.accepted for attempt in crowd)
    assert accepted == count, f"{accepted} accepted, not {count}: {dict(tally(crowd))}"


@then('the other {count:d} are rejected as "{name}" ({result:d}, {source:d}, {reason:d})')
def step_crowd_rejected(
    context: Any, count: int, name: str, result: int, source: int, reason: int
) -> None:
    """Every one of the burst not accepted got exactly this A-ASSOCIATE-RJ, none a bare close."""
    expected = expected_rejection(name, result, source, reason)
    crowd = crowd_of(context)
    others = [attempt for attempt in crowd if not attempt.accepted]
    assert len(others) == count, f"{len(others)} not accepted, not {count}: {dict(tally(crowd))}"
    wrong = [attempt.outcome() for attempt in others if attempt.rejection != expected]
    assert not wrong, f"expected {count} x rejected {expected}, got {dict(tally(crowd))}"


@then("every one of them is answered within {seconds:g} second")
@then("every one of them is answered within {seconds:g} seconds")
def step_crowd_prompt(context: Any, seconds: float) -> None:
    """No connection of the burst waited longer than ``seconds`` for its answer."""
    crowd = crowd_of(context)
    unanswered = [attempt.outcome() for attempt in crowd if attempt.error is not None]
    assert not unanswered, f"not answered: {unanswered}"
    slowest = max(attempt.elapsed for attempt in crowd)
    assert slowest <= seconds, f"the slowest answer took {slowest:.2f} s, not within {seconds:g} s"
