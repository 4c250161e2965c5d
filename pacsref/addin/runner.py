"""Running add-in code off the reactor thread, with a time limit, and mapping its errors.

Add-in code may block (DESIGN.md, "Add-ins"), so it runs on a thread pool;
processing for the association waits until it finishes or the add-in timeout
expires. :func:`call_with_timeout` is that wait. :func:`status_for_exception`
turns whatever an add-in raised into the DIMSE status the peer receives, from
one declarative table (as Twisted AMP's ``Command.errors`` does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sized
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from pacsref.addin.errors import AddinStatusError, AddinTimeout
from pacsref.addin.status import PROCESSING_FAILURE

_T = TypeVar("_T")

__all__ = [
    "EXCEPTION_STATUSES",
    "call_with_timeout",
    "is_nonblocking",
    "nonblocking",
    "status_for_exception",
]

#: Attribute set by :func:`nonblocking` on a handler function.
NONBLOCKING_MARK = "pacsref_nonblocking"


def nonblocking(handler: Callable[..., _T]) -> Callable[..., _T]:
    """Declare that a handler neither blocks nor takes long, so it may run on the reactor.

    Add-in code normally runs on the thread pool under the add-in timeout
    (DESIGN.md, "Add-ins"). For a handler that only computes a status from
    the request (C-ECHO), the two thread hand-offs cost more than the work;
    marking it lets the server call it inline. An exception it raises is
    still turned into a failure status. Never mark a handler that can wait:
    on the network, a device flush, a lock or a database others may hold.
    A marked handler that does short local I/O inline (the storage add-in's
    relaxed store of a small data set) must only *try* whatever could make
    it wait, and hand the work to a thread when that is busy.
    """
    setattr(handler, NONBLOCKING_MARK, True)
    return handler


def is_nonblocking(handler: object) -> bool:
    """True when ``handler`` (a function or bound method) was marked :func:`nonblocking`."""
    return bool(getattr(handler, NONBLOCKING_MARK, False))


_log = Logger()


class _Reactor(Protocol):
    # IReactorTime + IReactorFromThreads: what deferToThreadPool and the timer need.
    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any) -> IDelayedCall: ...

    def callFromThread(self, callable: Callable[..., Any], *args: Any) -> None: ...


class _ThreadPool(Protocol):
    # The one method of twisted.python.threadpool.ThreadPool deferToThreadPool uses.
    def callInThreadWithCallback(
        self, onResult: Callable[[bool, Any], object], func: Callable[..., Any], *args: Any
    ) -> None: ...


#: Exception type -> DIMSE status, most specific type wins (looked up along the
#: exception's MRO). :class:`AddinStatusError` is not listed: it carries its own.
#:
#: AddinTimeout maps to 0x0110 *Processing failure* rather than 0xA700 *Out of
#: resources*: DICOM has no timeout status, 0x0110 is valid for every DIMSE
#: service (0xA7xx means different things per service), and it does not make
#: a peer believe that retrying later with the same request will help.
EXCEPTION_STATUSES: Mapping[type[BaseException], int] = {
    AddinTimeout: PROCESSING_FAILURE,
    Exception: PROCESSING_FAILURE,
}


def status_for_exception(exc: BaseException | Failure) -> int:
    """The DIMSE status to answer with when an add-in call failed with ``exc``.

    :class:`AddinStatusError` yields the status the add-in chose; anything else
    is looked up in :data:`EXCEPTION_STATUSES` along its MRO, falling back to
    *Processing failure* (0x0110). Accepts a ``Failure`` so it can sit in an
    errback directly.
    """
    if isinstance(exc, Failure):
        exc = exc.value
    if isinstance(exc, AddinStatusError):
        return exc.status
    for cls in type(exc).__mro__:
        status = EXCEPTION_STATUSES.get(cls)
        if status is not None:
            return status
    return PROCESSING_FAILURE


def call_with_timeout(
    reactor: _Reactor,
    threadpool: _ThreadPool,
    timeout: float | None,
    fn: Callable[..., _T],
    *args: object,
    name: str | None = None,
    may_expire: Callable[[], bool] | None = None,
    late: Callable[[object], object] | None = None,
) -> Deferred[_T]:
    """Run ``fn(*args)`` on ``threadpool``; fail with :class:`AddinTimeout` after ``timeout`` s.

    The returned Deferred fires on the reactor thread with ``fn``'s result or
    exception, or errbacks with ``AddinTimeout(name, timeout)`` when the time
    is up. Python cannot stop a thread, so an overrunning call keeps its worker
    thread until it returns; its late result (or exception) is then discarded
    and logged, never delivered. Size the pool so that a few stuck add-ins do
    not starve the others.

    An iterator-returning handler (``handle_find``) only *creates* its iterator
    here; advance it with ``call_with_timeout(reactor, pool, t, next, it, None)``
    so each step runs on the pool with its own limit.

    Cancelling the returned Deferred (e.g. the association was aborted) stops
    the timer; the eventual result is discarded. A call cancelled or timed out while it still
    waits for a worker thread is not made at all: its result would be discarded, and a peer
    that sends a request and hangs up at once (a flood of them) must not keep the pool busy
    with work nobody waits for.

    Args:
        reactor: provides ``callLater`` (IReactorTime) and ``callFromThread``
            (IReactorFromThreads); tests pass a ``Clock`` with ``callFromThread``.
        threadpool: anything with ``ThreadPool.callInThreadWithCallback``.
        timeout: seconds, > 0; None waits for ever.
        fn: the add-in callable.
        args: its positional arguments.
        name: names the call in ``AddinTimeout`` and logs; default
            ``fn.__qualname__``.
        may_expire: asked when the time is up; False means the call is past its point
            of no return (:mod:`pacsref.addin.deadline`), so its outcome is awaited and
            delivered however late. None: the timeout always wins. Also asked when the
            returned Deferred is cancelled, so that the call stops at its point of no return
            if it has not reached it yet.
        late: called on the reactor thread with the outcome (a value or a ``Failure``) of
            a call that was past its point of no return when the returned Deferred was
            cancelled (the association ended): what it did stands, and whoever must hear
            of it, or clean up after it, still can.
    """
    if timeout is not None and not timeout > 0:
        raise ValueError(f"add-in timeout must be > 0 seconds or None, not {timeout!r}")
    label = name if name is not None else getattr(fn, "__qualname__", repr(fn))
    timer: IDelayedCall | None = None
    settled = False
    committed_when_cancelled = False

    def cancel(_: Deferred[_T]) -> None:
        nonlocal settled, committed_when_cancelled
        settled = True
        if timer is not None and timer.active():
            timer.cancel()
        committed_when_cancelled = may_expire is not None and not may_expire()

    outer: Deferred[_T] = Deferred(cancel)

    def expire() -> None:
        nonlocal settled
        if may_expire is not None and not may_expire():
            _log.warn(
                "add-in call {name} did not finish within {timeout} s but is past its point "
                "of no return; waiting for its outcome",
                name=label,
                timeout=timeout,
            )
            return
        settled = True
        _log.warn(
            "add-in call {name} did not finish within {timeout} s; its result will be ignored",
            name=label,
            timeout=timeout,
        )
        outer.errback(AddinTimeout(label, timeout if timeout is not None else 0.0))

    def finished(result: object) -> None:
        nonlocal settled
        if settled:
            if committed_when_cancelled and late is not None:
                late(result)
                return
            _discard(label, result)
            return
        settled = True
        if timer is not None and timer.active():
            timer.cancel()
        if isinstance(result, Failure):
            outer.errback(result)
        else:
            outer.callback(result)  # type: ignore[arg-type]

    def run(*call_args: object) -> object:
        # Read on the worker thread: a plain flag set on the reactor thread, so at worst one
        # call that was cancelled a moment ago still runs, as it did before this check.
        if settled and not committed_when_cancelled:
            return _NOT_RUN
        return fn(*call_args)

    if timeout is not None:
        timer = reactor.callLater(timeout, expire)
    inner: Deferred[_T] = deferToThreadPool(reactor, threadpool, run, *args)  # type: ignore[arg-type]
    inner.addBoth(finished)
    return outer


#: What a call cancelled before it started returns instead of running.
_NOT_RUN = object()


def _describe(result: object) -> str:
    """A late result in words for the log: its value only when it is a plain status or None.

    Anything else may be a credential (a verifier's server response, a token) or large: its
    type and size say enough to tell which call it was.
    """
    if result is None or isinstance(result, bool | int):
        return repr(result)
    size = f", {len(result)} long" if isinstance(result, Sized) else ""
    return f"a {type(result).__name__}{size}"


def _discard(label: str, result: object) -> None:
    if result is _NOT_RUN:
        _log.debug("add-in call {name} was cancelled before it started; not made", name=label)
        return
    if isinstance(result, Failure):
        _log.failure(
            "add-in call {name} failed after its timeout or cancellation; ignored",
            failure=result,
            name=label,
        )
    else:
        _log.info(
            "add-in call {name} finished after its timeout or cancellation; result ignored: "
            "{result}",
            name=label,
            result=_describe(result),
        )
