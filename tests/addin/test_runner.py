"""Running add-in calls on a thread pool with a timeout, and exception -> status mapping.

The thread pool is :class:`ManualThreadPool`: a call "runs" until the test
runs it, so an overrunning add-in is modelled without threads or sleeps, and
time moves only with ``Clock.advance``.
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from pacsref.addin import (
    EXCEPTION_STATUSES,
    PROCESSING_FAILURE,
    AddinDeadline,
    AddinStatusError,
    AddinTimeout,
    call_with_timeout,
    status_for_exception,
)
from tests.addin.helpers import ManualThreadPool, ThreadlessReactor


@pytest.fixture
def reactor() -> ThreadlessReactor:
    return ThreadlessReactor()


@pytest.fixture
def pool() -> ManualThreadPool:
    return ManualThreadPool()


def outcome(d: Deferred[object]) -> list[object]:
    """Collect what ``d`` fired with (value or Failure), consuming failures."""
    seen: list[object] = []
    d.addBoth(seen.append)
    return seen


def slow_handler(x: int) -> int:
    return x * 2


def failing_handler() -> None:
    raise ValueError("bad identifier")


def test_result_before_timeout_is_delivered(reactor, pool) -> None:
    """A call finishing in time fires with its result and leaves no timer behind."""
    seen = outcome(call_with_timeout(reactor, pool, 5.0, slow_handler, 21))
    reactor.advance(4.9)
    assert seen == []
    pool.run_next()
    assert seen == [42]
    assert reactor.getDelayedCalls() == []


def test_exception_is_delivered_as_failure(reactor, pool) -> None:
    """An add-in exception reaches the caller unchanged, for status_for_exception."""
    seen = outcome(call_with_timeout(reactor, pool, 5.0, failing_handler))
    pool.run_next()
    [failure] = seen
    assert isinstance(failure, Failure)
    assert failure.check(ValueError)
    assert reactor.getDelayedCalls() == []


def test_timeout_errbacks_with_addin_timeout(reactor, pool) -> None:
    """When the time is up the caller gets AddinTimeout(name, timeout) while the call runs on."""
    seen = outcome(call_with_timeout(reactor, pool, 5.0, slow_handler, 1, name="store:handle"))
    reactor.advance(5.0)
    [failure] = seen
    assert isinstance(failure, Failure)
    assert failure.check(AddinTimeout)
    assert (failure.value.name, failure.value.timeout) == ("store:handle", 5.0)
    assert "store:handle did not finish within 5 s" in str(failure.value)
    assert len(pool.queue) == 1  # the thread was not killed: the work is still there


def _taking(reactor: ThreadlessReactor, seconds: float, handler: object) -> object:
    """``handler`` as a call that, once started, runs ``seconds`` (the clock moves meanwhile)."""

    def run(*args: object) -> object:
        reactor.advance(seconds)
        return handler(*args)  # type: ignore[operator]

    return run


def test_late_result_is_discarded_and_logged(reactor, pool, log_lines) -> None:
    """A call that started in time and returns after the timeout changes nothing for the
    caller, but is logged."""
    handler = _taking(reactor, 1.0, slow_handler)
    seen = outcome(call_with_timeout(reactor, pool, 1.0, handler, 5, name="slow"))
    pool.run_next()
    assert len(seen) == 1
    assert isinstance(seen[0], Failure)
    assert any("slow finished after its timeout" in line and "10" in line for line in log_lines)


def test_late_failure_is_discarded_and_logged(reactor, pool, log_lines) -> None:
    """An exception arriving after the timeout is logged, not raised as unhandled."""
    handler = _taking(reactor, 1.0, failing_handler)
    seen = outcome(call_with_timeout(reactor, pool, 1.0, handler, name="failing"))
    pool.run_next()
    assert len(seen) == 1
    assert any("failing failed after its timeout" in line for line in log_lines)


def test_a_late_result_is_logged_by_its_type_not_its_value(reactor, pool, log_lines) -> None:
    """A late answer may be a credential (a verifier's server response): the log gives its
    type and length, never its bytes; plain statuses are still given as they are."""
    secret = _taking(reactor, 1.0, lambda: b"KRB-SESSION-KEY")
    outcome(call_with_timeout(reactor, pool, 1.0, secret, name="kerberos"))
    pool.run_next()
    [line] = [line for line in log_lines if "kerberos finished after" in line]
    assert "KRB" not in line and "a bytes, 15 long" in line


def test_a_call_that_timed_out_before_it_started_is_not_made(reactor, pool, log_lines) -> None:
    """Still queued for a thread when its time is up (or when cancelled): the add-in is never
    called, since nobody waits for its answer; only a debug line says so."""
    calls: list[int] = []
    seen = outcome(call_with_timeout(reactor, pool, 1.0, calls.append, 1))
    reactor.advance(1.0)
    assert len(seen) == 1 and seen[0].check(AddinTimeout)  # type: ignore[union-attr]
    pool.run_next()
    cancelled = call_with_timeout(reactor, pool, 5.0, calls.append, 2)
    outcome(cancelled)
    cancelled.cancel()
    pool.run_next()
    assert calls == []
    assert not any("result ignored" in line for line in log_lines)


def test_default_name_is_qualname(reactor, pool) -> None:
    """Without an explicit name, the timeout names the callable."""
    seen = outcome(call_with_timeout(reactor, pool, 0.5, slow_handler, 1))
    reactor.advance(0.5)
    assert seen[0].value.name == "slow_handler"  # type: ignore[union-attr]


def test_no_timeout_waits_for_ever(reactor, pool) -> None:
    """timeout=None schedules no timer at all."""
    seen = outcome(call_with_timeout(reactor, pool, None, slow_handler, 2))
    assert reactor.getDelayedCalls() == []
    reactor.advance(10**6)
    pool.run_next()
    assert seen == [4]


def test_call_past_its_point_of_no_return_is_awaited(reactor, pool, log_lines) -> None:
    """``may_expire`` saying no keeps the call's outcome, delivered however late."""
    deadline = AddinDeadline()
    seen = outcome(
        call_with_timeout(reactor, pool, 1.0, slow_handler, 5, may_expire=deadline.expire)
    )
    assert deadline.commit()  # the handler reached its point of no return in time
    reactor.advance(100.0)
    assert seen == []
    assert any("past its point of no return" in line for line in log_lines)
    pool.run_next()
    assert seen == [10]


def test_call_timing_out_before_its_point_of_no_return_fails(reactor, pool) -> None:
    """``may_expire`` saying yes: the usual AddinTimeout, and the handler may not commit."""
    deadline = AddinDeadline()
    seen = outcome(
        call_with_timeout(reactor, pool, 1.0, slow_handler, 5, may_expire=deadline.expire)
    )
    reactor.advance(1.0)
    assert isinstance(seen[0], Failure) and seen[0].check(AddinTimeout)
    assert not deadline.commit()
    pool.run_next()
    assert len(seen) == 1


def test_cancel_after_the_point_of_no_return_hands_the_late_result_over(reactor, pool) -> None:
    """The association ended after the handler committed: its result goes to ``late``."""
    deadline = AddinDeadline()
    late: list[object] = []
    d = call_with_timeout(
        reactor, pool, 1.0, slow_handler, 5, may_expire=deadline.expire, late=late.append
    )
    seen = outcome(d)
    assert deadline.commit()
    d.cancel()
    assert isinstance(seen[0], Failure) and seen[0].check(CancelledError)
    pool.run_next()
    assert late == [10]
    assert len(seen) == 1


def test_cancel_after_the_point_of_no_return_hands_a_late_failure_over(reactor, pool) -> None:
    """A handler failing after its association ended: ``late`` gets the Failure (to log it
    and clean up), nothing is raised."""
    deadline = AddinDeadline()
    late: list[object] = []
    d = call_with_timeout(
        reactor, pool, 1.0, failing_handler, may_expire=deadline.expire, late=late.append
    )
    outcome(d)
    assert deadline.commit()
    d.cancel()
    pool.run_next()
    [failure] = late
    assert isinstance(failure, Failure) and failure.check(ValueError)


def test_cancel_before_the_point_of_no_return_stops_the_handler_there(reactor, pool) -> None:
    """Cancelled first: the handler's commit is refused and nothing reaches ``late``."""
    deadline = AddinDeadline()
    late: list[object] = []
    d = call_with_timeout(
        reactor, pool, 1.0, slow_handler, 5, may_expire=deadline.expire, late=late.append
    )
    outcome(d)
    d.cancel()
    assert not deadline.commit()
    pool.run_next()
    assert late == []


def test_deadline_is_decided_once() -> None:
    """Whichever of commit and expire asks first wins, and asking again keeps the answer."""
    committed = AddinDeadline()
    assert committed.commit() and committed.commit()
    assert not committed.expire()
    assert committed.committed
    expired = AddinDeadline()
    assert expired.expire() and expired.expire()
    assert not expired.commit()
    assert not expired.committed


@pytest.mark.parametrize("timeout", [0, -1.0])
def test_non_positive_timeout_is_refused(reactor, pool, timeout: float) -> None:
    """A zero or negative timeout is a configuration error, not 'expire at once'."""
    with pytest.raises(ValueError, match="timeout"):
        call_with_timeout(reactor, pool, timeout, slow_handler, 1)


def test_cancel_stops_timer_and_discards_result(reactor, pool, log_lines) -> None:
    """Cancelling (association aborted) fires CancelledError and drops the eventual result."""

    def cancelling(x: int) -> int:  # the association is aborted while the call runs
        d.cancel()
        return slow_handler(x)

    d = call_with_timeout(reactor, pool, 5.0, cancelling, 3)
    seen = outcome(d)
    pool.run_next()
    assert seen[0].check(CancelledError)  # type: ignore[union-attr]
    assert reactor.getDelayedCalls() == []
    assert len(seen) == 1
    assert any("result ignored: 6" in line for line in log_lines)


def test_iterator_steps_each_get_their_own_timeout(reactor, pool) -> None:
    """Advancing a find iterator with next() on the pool times out per step."""
    results = iter([(0xFF00, "match")])
    first = outcome(call_with_timeout(reactor, pool, 1.0, next, results, None))
    pool.run_next()
    assert first == [(0xFF00, "match")]
    second = outcome(call_with_timeout(reactor, pool, 1.0, next, results, None))
    pool.run_next()
    assert second == [None]


# -- exception -> status ---------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (AddinTimeout("x", 1.0), 0x0110),
        (ValueError("anything"), 0x0110),
        (RuntimeError(), 0x0110),
        (AddinStatusError(0xA700, "disk full"), 0xA700),
        (AddinStatusError(0xB000), 0xB000),
        (Failure(AddinStatusError(0xC001)), 0xC001),
        (Failure(KeyError("k")), 0x0110),
    ],
)
def test_status_for_exception(exc: BaseException | Failure, status: int) -> None:
    """Timeouts and generic errors are Processing failure; AddinStatusError picks its own."""
    assert status_for_exception(exc) == status


def test_processing_failure_constant() -> None:
    """The generic failure is DICOM's 0x0110 Processing failure."""
    assert PROCESSING_FAILURE == 0x0110


def test_table_lookup_follows_mro(monkeypatch: pytest.MonkeyPatch) -> None:
    """The most specific entry in EXCEPTION_STATUSES wins, so subclasses inherit a mapping."""
    monkeypatch.setitem(EXCEPTION_STATUSES, LookupError, 0xC000)  # type: ignore[index]
    assert status_for_exception(KeyError("k")) == 0xC000
    assert status_for_exception(ValueError()) == 0x0110


def test_base_exception_falls_back_to_processing_failure() -> None:
    """Even an exception outside the table (not an Exception) gets a failure status."""
    assert status_for_exception(KeyboardInterrupt()) == 0x0110


@pytest.mark.parametrize("status", [0x0000, 0xFF00, 0xFF01, -1, 0x10000, True, "A700"])
def test_addin_status_error_refuses_non_errors(status: object) -> None:
    """Success, pending and out-of-range values cannot be raised as an error status."""
    with pytest.raises(ValueError):
        AddinStatusError(status)  # type: ignore[arg-type]


def test_addin_status_error_carries_comment() -> None:
    """The comment travels with the status for the response's Error Comment."""
    error = AddinStatusError(0xA700, "disk full")
    assert (error.status, error.comment) == (0xA700, "disk full")
    assert str(error) == "status 0xA700: disk full"
