"""Run the declared checks against a target and collect one result per check.

The ARTIM checks each hold a connection open for up to ``artim_wait`` seconds,
so they start first in their own threads; the quick checks run one after
another in the caller's thread meanwhile, and UL-STILL-SERVING runs once all
of them are done. The whole suite therefore takes about ``artim_wait``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

# Importing the check modules registers their checks, in report order.
from conformance import checks_assoc, checks_errors, checks_policy, checks_timers  # noqa: F401
from conformance.registry import (
    CHECKS,
    SUITES,
    Check,
    CheckFailed,
    CheckResult,
    CheckSkipped,
    Phase,
    Target,
    Verdict,
)

Reporter = Callable[[CheckResult], None]


def run_check(item: Check, target: Target) -> CheckResult:
    """Run one check; a crash or a network error is a FAIL that names the exception."""
    start = time.monotonic()
    try:
        verdict, detail = Verdict.PASS, item.run(target)
    except CheckFailed as exc:
        verdict, detail = Verdict.FAIL, str(exc)
    except CheckSkipped as exc:
        verdict, detail = Verdict.SKIP, str(exc)
    except Exception as exc:  # A check that crashes must not take the suite with it.
        verdict, detail = Verdict.FAIL, f"{type(exc).__name__}: {exc}"
    return CheckResult(item.id, item.title, item.clause, verdict, detail, time.monotonic() - start)


def select(
    checks: Iterable[str] | None = None, skip: Iterable[str] = (), suite: str = "ul"
) -> list[Check]:
    """The checks of ``suite`` named in ``checks`` (all if None) minus ``skip``, in report order.

    Raises ValueError naming any id that is not declared in that suite, so a
    typo in ``--only`` cannot silently run nothing.
    """
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; known: {', '.join(SUITES)}")
    known = {c.id for c in CHECKS if c.suite == suite}
    wanted = set(known if checks is None else checks)
    skipped = set(skip)
    unknown = sorted((wanted | skipped) - known)
    if unknown:
        raise ValueError(f"unknown check id(s): {', '.join(unknown)}")
    chosen = [c for c in CHECKS if c.id in wanted and c.id not in skipped]
    return sorted(chosen, key=lambda c: c.phase.value)


def run_suite(
    target: Target,
    checks: Iterable[str] | None = None,
    *,
    skip: Iterable[str] = (),
    report: Reporter | None = None,
    suite: str = "ul",
) -> list[CheckResult]:
    """Run the selected checks of ``suite`` against ``target``; results in report order.

    ``report`` is called with each result as soon as it can be printed in
    order, so a command line shows progress while the ARTIM checks still wait.
    """
    chosen = select(checks, skip, suite)
    emit = report or (lambda _: None)
    results: dict[str, CheckResult] = {}
    timers = [c for c in chosen if c.phase is Phase.TIMER]
    inline = [c for c in chosen if c.phase is Phase.MAIN]
    threads = []
    if target.concurrent:
        for item in timers:
            thread = threading.Thread(
                target=lambda c=item: results.__setitem__(c.id, run_check(c, target)),
                name=f"conformance-{item.id}",
                daemon=True,
            )
            thread.start()
            threads.append(thread)
    else:
        inline += timers

    for item in inline:
        results[item.id] = run_check(item, target)
        emit(results[item.id])
    deadline = time.monotonic() + _hung_bound(target)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    for item in timers if threads else []:
        emit(_result_or_hung(results, item, target))
    for item in chosen:
        if item.phase is Phase.FINAL:
            results[item.id] = run_check(item, target)
            emit(results[item.id])
    return [_result_or_hung(results, c, target) for c in chosen]


def _hung_bound(target: Target) -> float:
    """How long a timer check may take at most: its own bound plus slack for the reads."""
    return target.artim_wait + target.timeout + 5


def _result_or_hung(results: dict[str, CheckResult], item: Check, target: Target) -> CheckResult:
    """The result of ``item``, or a FAIL if its thread is still stuck past every bound."""
    if item.id not in results:
        bound = _hung_bound(target)
        detail = f"did not finish within {bound:g} s"
        results[item.id] = CheckResult(
            item.id, item.title, item.clause, Verdict.FAIL, detail, bound
        )
    return results[item.id]


def summary(results: Iterable[CheckResult]) -> str:
    """``N passed, N failed, N skipped``."""
    counted = list(results)
    count = {v: sum(r.verdict is v for r in counted) for v in Verdict}
    return (
        f"{count[Verdict.PASS]} passed, {count[Verdict.FAIL]} failed, {count[Verdict.SKIP]} skipped"
    )
