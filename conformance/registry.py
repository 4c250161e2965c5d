"""The vocabulary of the conformance suite: target, check declarations, verdicts.

A check is a plain function ``(Target) -> str`` that returns the PASS detail,
or raises :class:`CheckFailed` / :class:`CheckSkipped` with the detail. Each is
declared once with :func:`check`, carrying its id, title and the PS3.8 clause
it tests, so the report, ``--only``/``--skip`` and the docs all read the same
table (the AMP habit of declaring every command once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from conformance.expectations import Expectations

#: The suites: PS3.8 upper layer behaviour, and the association acceptance policy.
SUITES = ("ul", "policy")


class Phase(Enum):
    """When a check runs, which is also the order of the report."""

    #: Quick checks, run one after another so a server with few association
    #: slots is never flooded.
    MAIN = 1
    #: ARTIM checks: slow by nature, started first in threads alongside MAIN.
    TIMER = 2
    #: Runs after everything else has finished (UL-STILL-SERVING).
    FINAL = 3


@dataclass(frozen=True)
class Target:
    """The server under test and the bounds every wait uses.

    Attributes:
        artim_wait: how long the ARTIM checks wait for the server to drop an
            idle or trickling connection; set it above the server's ARTIM.
        timeout: bound for every other wait (a reply, a close).
        trickle_interval: seconds between bytes in UL-ARTIM-TRICKLE.
        accepts_any_called_ae: the server is configured to accept any called
            AE title, so UL-CALLED-AE expects an AC rather than an RJ.
        concurrent: run the ARTIM checks alongside the others; turn it off for
            a server that serves one connection at a time.
        expect: the server's configuration as the operator states it, for the
            association policy suite (:mod:`conformance.expectations`).
    """

    host: str
    port: int
    called_ae: str
    calling_ae: str = "CONFORMANCE"
    artim_wait: float = 40.0
    timeout: float = 10.0
    trickle_interval: float = 1.0
    accepts_any_called_ae: bool = False
    concurrent: bool = True
    expect: Expectations = field(default_factory=Expectations)


class Verdict(Enum):
    """The three outcomes of a check."""

    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


class CheckFailed(Exception):
    """The server did not do what the cited clause requires; the message says what it did."""


class CheckSkipped(Exception):
    """The check does not apply to this server (e.g. it announced an unlimited max PDU)."""


CheckFunction = Callable[[Target], str]


@dataclass(frozen=True)
class Check:
    """A declared check: identity, the clause it tests, and the function that runs it."""

    id: str
    title: str
    clause: str
    phase: Phase
    run: CheckFunction
    #: Which suite the check belongs to (one of :data:`SUITES`).
    suite: str = "ul"


@dataclass(frozen=True)
class CheckResult:
    """One line of the report."""

    id: str
    title: str
    clause: str
    verdict: Verdict
    detail: str
    elapsed: float

    def line(self) -> str:
        """``PASS|FAIL|SKIP <id> <title> [<clause>] — <detail>``."""
        return f"{self.verdict.value} {self.id} {self.title} [{self.clause}] — {self.detail}"


#: Every declared check, in report order within each phase.
CHECKS: list[Check] = []


def check(
    check_id: str, title: str, clause: str, phase: Phase = Phase.MAIN, suite: str = "ul"
) -> Callable[[CheckFunction], CheckFunction]:
    """Declare a check; the decorated function is registered and returned unchanged."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}")

    def register(function: CheckFunction) -> CheckFunction:
        if any(c.id == check_id for c in CHECKS):
            raise ValueError(f"duplicate check id {check_id}")
        CHECKS.append(Check(check_id, title, clause, phase, function, suite))
        return function

    return register
