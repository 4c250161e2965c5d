"""Steps about C-ECHO (Verification): a modality checks it can reach the server.

Two independent DICOM implementations play the modality, never pacsref's own code:
``pynetdicom`` (through :mod:`simulators.echo`) and DCMTK's ``echoscu``. Both outcomes are reduced
to one :class:`EchoOutcome` (and to the scenario's latest :class:`Answer`), so the Then steps read
the same for either client.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from behave import then, when
from scenario_support import (
    Answer,
    expected_rejection,
    judge,
    latest_answer,
    parse_outcome,
    running_server,
)

from pacsref.testing.dcmtk import run_echoscu
from pacsref.testing.net import LOOPBACK
from pacsref.testing.twistd import TwistdServer

CLIENTS = ("pynetdicom", "DCMTK echoscu")


@dataclass(frozen=True)
class EchoOutcome:
    """What a client saw: how many echoes succeeded, and the rejection if there was one."""

    client: str
    requested: int
    succeeded: int
    rejection: tuple[int, int, int] | None
    detail: str
    #: Seconds the whole run took (association, echoes, release or rejection).
    elapsed: float


def echo_with_pynetdicom(
    server: TwistdServer, calling_ae: str, called_ae: str, count: int, address: str
) -> EchoOutcome:
    """Echo through the pynetdicom-based simulator (imported here: only these steps need it)."""
    from simulators.echo import run_echoes

    host, port = server.address
    started = time.monotonic()
    result = run_echoes(host, port, called_ae, calling_ae, count, timeout=10, bind_address=address)
    elapsed = time.monotonic() - started
    rejection = result.rejection
    triple = None if rejection is None else (rejection.result, rejection.source, rejection.reason)
    detail = "; ".join(result.failures[:5]) or f"{result.succeeded} of {count} succeeded"
    return EchoOutcome("pynetdicom", count, result.succeeded, triple, detail, elapsed)


def echo_with_dcmtk(
    context: Any, server: TwistdServer, calling_ae: str, called_ae: str, count: int
) -> EchoOutcome:
    """Echo with DCMTK's echoscu; it exits 0 only if every echo succeeded."""
    if context.dcmtk is None:
        raise AssertionError("DCMTK is not installed: tag the scenario (or its examples) @dcmtk")
    host, port = server.address
    started = time.monotonic()
    result = run_echoscu(
        host, port, called_ae, calling_ae, repeat=count, echoscu=context.dcmtk, timeout_s=60
    )
    elapsed = time.monotonic() - started
    succeeded = count if result.ok else 0
    detail = f"echoscu exit code {result.returncode}\n{result.output}"
    return EchoOutcome("DCMTK echoscu", count, succeeded, result.rejection, detail, elapsed)


def send_echoes(
    context: Any,
    client: str,
    calling_ae: str,
    called_ae: str,
    count: int,
    address: str = LOOPBACK,
) -> None:
    """Run ``count`` echoes on one association with ``client``; keep the outcome for Then."""
    server = running_server(context)
    if client == "pynetdicom":
        outcome = echo_with_pynetdicom(server, calling_ae, called_ae, count, address)
    elif client == "DCMTK echoscu":
        if address != LOOPBACK:
            raise AssertionError(f"echoscu cannot choose its address; {address} needs pynetdicom")
        outcome = echo_with_dcmtk(context, server, calling_ae, called_ae, count)
    else:
        raise AssertionError(f"unknown client {client!r}; known: {', '.join(CLIENTS)}")
    context.echo_outcome = outcome
    context.answer = Answer(
        outcome.client,
        outcome.rejection is None and outcome.succeeded > 0,
        outcome.rejection,
        outcome.elapsed,
        outcome.detail,
    )


@when('the modality "{calling_ae}" sends a C-ECHO to "{called_ae}" with {client}')
def step_send_one_echo(context: Any, calling_ae: str, called_ae: str, client: str) -> None:
    """One C-ECHO on one association: the everyday connectivity check."""
    send_echoes(context, client, calling_ae, called_ae, 1)


@when('the modality "{calling_ae}" sends a C-ECHO to "{called_ae}" from {address} with {client}')
def step_send_one_echo_from(
    context: Any, calling_ae: str, called_ae: str, address: str, client: str
) -> None:
    """One C-ECHO from a given local address: 127.0.0.2 plays another host on loopback."""
    send_echoes(context, client, calling_ae, called_ae, 1, address)


@when('these modalities each send a C-ECHO to "{called_ae}" with {client}')
def step_table_of_echoes(context: Any, called_ae: str, client: str) -> None:
    """One C-ECHO per row (modality, from, outcome), one after another; judged by a Then."""
    answers = []
    for row in context.table:
        send_echoes(context, client, row["modality"], called_ae, 1, row["from"])
        label = f"{row['modality']} from {row['from']}"
        answers.append((label, row["outcome"], context.answer))
    context.table_answers = answers


@then("each is answered as the table says")
def step_table_answered(context: Any) -> None:
    """Every row got the outcome in its last column."""
    check_table_answers(context, None)


@then("each is answered as the table says, within {seconds:g} second")
@then("each is answered as the table says, within {seconds:g} seconds")
def step_table_answered_within(context: Any, seconds: float) -> None:
    """Every row got its outcome, and promptly (a refusal must never be a hang)."""
    check_table_answers(context, seconds)


def check_table_answers(context: Any, bound: float | None) -> None:
    """All rows judged; one failure lists every wrong row, so one run shows the whole table."""
    answers: list[tuple[str, str, Answer]] | None = getattr(context, "table_answers", None)
    assert answers, "no table of requests was sent in this scenario"
    wrong = [
        f"{label}: {problem}"
        for label, expected, answer in answers
        if (problem := judge(expected, answer, bound)) is not None
    ]
    assert not wrong, "\n".join(wrong)


@when(
    'the modality "{calling_ae}" sends {count:d} C-ECHOs to "{called_ae}"'
    " on one association with {client}"
)
def step_send_many_echoes(
    context: Any, calling_ae: str, count: int, called_ae: str, client: str
) -> None:
    """Many C-ECHOs on one association: the association must survive message after message."""
    send_echoes(context, client, calling_ae, called_ae, count)


@then("the echo succeeds")
def step_echo_succeeds(context: Any) -> None:
    """The single echo returned Success (0x0000)."""
    outcome: EchoOutcome = context.echo_outcome
    assert outcome.rejection is None, f"rejected {outcome.rejection}: {outcome.detail}"
    assert outcome.succeeded == outcome.requested == 1, outcome.detail


@then("all {count:d} echoes succeed")
def step_all_echoes_succeed(context: Any, count: int) -> None:
    """Every echo of the association returned Success (0x0000)."""
    outcome: EchoOutcome = context.echo_outcome
    assert outcome.requested == count, f"{outcome.requested} echoes were sent, not {count}"
    assert outcome.rejection is None, f"rejected {outcome.rejection}: {outcome.detail}"
    assert outcome.succeeded == count, outcome.detail


def assert_rejected(context: Any, expected: tuple[int, int, int]) -> Answer:
    """The latest answer is an A-ASSOCIATE-RJ with exactly ``expected``; returns it."""
    answer = latest_answer(context)
    assert not answer.accepted, f"{answer.client}: the association was accepted: {answer.detail}"
    assert answer.rejection == expected, (
        f"{answer.client} saw rejection {answer.rejection}, expected {expected}: {answer.detail}"
    )
    return answer


@then('the association is rejected as "{name}" ({result:d}, {source:d}, {reason:d})')
def step_rejected_as(context: Any, name: str, result: int, source: int, reason: int) -> None:
    """A-ASSOCIATE-RJ with this (result, source, reason); the name must match the numbers."""
    assert_rejected(context, expected_rejection(name, result, source, reason))


@then(
    'the association is rejected as "{name}" ({result:d}, {source:d}, {reason:d})'
    " within {seconds:g} second"
)
@then(
    'the association is rejected as "{name}" ({result:d}, {source:d}, {reason:d})'
    " within {seconds:g} seconds"
)
def step_rejected_as_within(
    context: Any, name: str, result: int, source: int, reason: int, seconds: float
) -> None:
    """The rejection came promptly: a refused modality can retry, never waits on a hang."""
    answer = assert_rejected(context, expected_rejection(name, result, source, reason))
    assert answer.elapsed is not None, f"{answer.client} cannot time its answer"
    assert answer.elapsed <= seconds, (
        f"{answer.client} was rejected after {answer.elapsed:.2f} s, not within {seconds:g} s"
    )


@then("the association is accepted")
def step_association_accepted(context: Any) -> None:
    """The latest request got an A-ASSOCIATE-AC."""
    answer = latest_answer(context)
    assert answer.accepted, f"{answer.client}: not accepted: {answer.detail}"


@then('the outcome is "{outcome}"')
def step_outcome_is(context: Any, outcome: str) -> None:
    """An Examples cell decides: ``success`` (the echo succeeded) or a named rejection."""
    expected = parse_outcome(outcome)
    if expected == "success":
        answer = latest_answer(context)
        assert answer.accepted and answer.rejection is None, (
            f"{answer.client}: expected success: {answer.detail}"
        )
        step_echo_succeeds(context)
    else:
        assert isinstance(expected, tuple)
        assert_rejected(context, expected)
