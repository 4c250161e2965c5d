"""Steps about C-ECHO (Verification): a modality checks it can reach the server.

Two independent DICOM implementations play the modality, never pacsref's own code:
``pynetdicom`` (through :mod:`simulators.echo`) and DCMTK's ``echoscu``. Both outcomes are reduced
to one :class:`EchoOutcome`, so the Then steps read the same for either client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from behave import then, when

from pacsref.testing.dcmtk import run_echoscu
from pacsref.testing.twistd import TwistdServer

#: A-ASSOCIATE-RJ names an administrator reads -> (result, source, reason), PS3.8 Table 9-21.
REJECTIONS = {
    "no reason given": (1, 1, 1),
    "application context name not supported": (1, 1, 2),
    "calling AE title not recognized": (1, 1, 3),
    "called AE title not recognized": (1, 1, 7),
    "protocol version not supported": (1, 2, 2),
    "temporary congestion": (2, 3, 1),
    "local limit exceeded": (2, 3, 2),
}

CLIENTS = ("pynetdicom", "DCMTK echoscu")


@dataclass(frozen=True)
class EchoOutcome:
    """What a client saw: how many echoes succeeded, and the rejection if there was one."""

    client: str
    requested: int
    succeeded: int
    rejection: tuple[int, int, int] | None
    detail: str


def running_server(context: Any) -> TwistdServer:
    """The scenario's server, started now if it is not yet running."""
    server: TwistdServer | None = getattr(context, "pacsref_server", None)
    if server is None:
        raise AssertionError("this scenario has no server: tag it @fixture.pacsref.server")
    return server.start()


def echo_with_pynetdicom(
    server: TwistdServer, calling_ae: str, called_ae: str, count: int
) -> EchoOutcome:
    """Echo through the pynetdicom-based simulator (imported here: only these steps need it)."""
    from simulators.echo import run_echoes

    host, port = server.address
    result = run_echoes(host, port, called_ae, calling_ae, count)
    rejection = result.rejection
    triple = None if rejection is None else (rejection.result, rejection.source, rejection.reason)
    detail = "; ".join(result.failures[:5]) or f"{result.succeeded} of {count} succeeded"
    return EchoOutcome("pynetdicom", count, result.succeeded, triple, detail)


def echo_with_dcmtk(
    context: Any, server: TwistdServer, calling_ae: str, called_ae: str, count: int
) -> EchoOutcome:
    """Echo with DCMTK's echoscu; it exits 0 only if every echo succeeded."""
    if context.dcmtk is None:
        raise AssertionError("DCMTK is not installed: tag the scenario (or its examples) @dcmtk")
    host, port = server.address
    result = run_echoscu(
        host, port, called_ae, calling_ae, repeat=count, echoscu=context.dcmtk, timeout_s=60
    )
    succeeded = count if result.ok else 0
    detail = f"echoscu exit code {result.returncode}\n{result.output}"
    return EchoOutcome("DCMTK echoscu", count, succeeded, result.rejection, detail)


def send_echoes(context: Any, client: str, calling_ae: str, called_ae: str, count: int) -> None:
    """Run ``count`` echoes on one association with ``client``; keep the outcome for Then."""
    server = running_server(context)
    if client == "pynetdicom":
        context.echo_outcome = echo_with_pynetdicom(server, calling_ae, called_ae, count)
    elif client == "DCMTK echoscu":
        context.echo_outcome = echo_with_dcmtk(context, server, calling_ae, called_ae, count)
    else:
        raise AssertionError(f"unknown client {client!r}; known: {', '.join(CLIENTS)}")


@when('the modality "{calling_ae}" sends a C-ECHO to "{called_ae}" with {client}')
def step_send_one_echo(context: Any, calling_ae: str, called_ae: str, client: str) -> None:
    """One C-ECHO on one association: the everyday connectivity check."""
    send_echoes(context, client, calling_ae, called_ae, 1)


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


@then('the association is rejected as "{name}" ({result:d}, {source:d}, {reason:d})')
def step_rejected_as(context: Any, name: str, result: int, source: int, reason: int) -> None:
    """A-ASSOCIATE-RJ with this (result, source, reason); the name must match the numbers."""
    expected = (result, source, reason)
    assert REJECTIONS.get(name) == expected, (
        f"the feature says {name!r} is {expected}, PS3.8 Table 9-21 says {REJECTIONS.get(name)}"
    )
    outcome: EchoOutcome = context.echo_outcome
    assert outcome.succeeded == 0, f"{outcome.succeeded} echoes succeeded: {outcome.detail}"
    assert outcome.rejection == expected, (
        f"{outcome.client} saw rejection {outcome.rejection}, expected {expected}: {outcome.detail}"
    )
