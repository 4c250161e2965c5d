"""Calling :class:`~pacsref.addin.IAssociationHook` add-ins.

``association_requested`` is the last word on an association the server would
accept (policy and negotiation passed). Like every add-in call it runs on the
thread pool under the add-in timeout, unless the method is marked
:func:`~pacsref.addin.nonblocking`, in which case it is called inline. The
A-ASSOCIATE response waits for it (PS3.8 Sta3 puts no bound on the local
user's answer; the add-in timeout does). A hook that raises, times out or
returns something that is neither None nor an ``AssociateReject`` refuses the
association with (1, 1, 1) no-reason-given, and the failure is logged: an
add-in that cannot answer must not let peers in by default.

The observer methods (established, released, aborted) are called the same
way but nothing waits for them; their failures are logged and ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from pacsref.addin import AddinTimeout, AssociationInfo, call_with_timeout, is_nonblocking
from pacsref.association.policy import Refusal, Rule
from pacsref.ul.events import REJECT_NO_REASON, AssociateReject

log = Logger(namespace="pacsref.hooks")

__all__ = ["addin_name", "call_addin", "consult_hooks", "notify_hooks"]


def addin_name(addin: object) -> str:
    """The add-in's ``name``, or its class name when it has none, for log lines."""
    name = getattr(addin, "name", None)
    return name if isinstance(name, str) else type(addin).__qualname__


def call_addin(
    method: Any, args: tuple[Any, ...], reactor: Any, threadpool: Any, timeout: float, label: str
) -> Deferred[Any]:
    """Call an add-in method at association time: inline if ``nonblocking``, else on the
    thread pool under the add-in timeout."""
    if is_nonblocking(method):
        return maybeDeferred(method, *args)
    return call_with_timeout(reactor, threadpool, timeout, method, *args, name=label)


def consult_hooks(
    hooks: Sequence[object],
    info: AssociationInfo,
    reactor: Any,
    threadpool: Any,
    timeout: float,
) -> Deferred[Refusal | None]:
    """Ask each hook in turn; fires with the first refusal, or None when all accept.

    The returned Deferred never fails. Cancelling it (the peer went away)
    cancels the hook call in progress and asks no further hooks.
    """
    current: list[Deferred[Any]] = []

    def cancel(_: Deferred[Refusal | None]) -> None:
        for d in current:
            d.cancel()

    result: Deferred[Refusal | None] = Deferred(cancel)

    def ask(index: int) -> None:
        if result.called:
            return
        if index == len(hooks):
            result.callback(None)
            return
        hook = hooks[index]
        name = addin_name(hook)
        d = call_addin(
            hook.association_requested,  # type: ignore[attr-defined]
            (info,),
            reactor,
            threadpool,
            timeout,
            f"{name}.association_requested",
        )
        current[:] = [d]

        def answered(value: object) -> None:
            current.clear()
            if result.called:
                return
            if value is None:
                ask(index + 1)
            elif isinstance(value, AssociateReject):
                result.callback(
                    Refusal(value, Rule.ADDIN, f"add-in {name} refused: {value.describe()}")
                )
            else:
                log.error(
                    "add-in {addin} association_requested returned {value!r}, not None or an "
                    "AssociateReject; refusing association {id}",
                    addin=name,
                    value=value,
                    id=info.association_id,
                    kind="addin.failure",
                )
                result.callback(
                    Refusal(REJECT_NO_REASON, Rule.ADDIN, f"add-in {name} gave no valid answer")
                )

        def failed(failure: Failure) -> None:
            current.clear()
            if result.called or failure.check(CancelledError):
                return  # the peer went away: nothing to decide, nothing went wrong
            if failure.check(AddinTimeout):
                log.error(
                    "add-in {addin} did not answer association_requested within {timeout} s; "
                    "refusing association {id}",
                    addin=name,
                    timeout=timeout,
                    id=info.association_id,
                    kind="addin.failure",
                )
            else:
                log.failure(
                    "add-in {addin} failed in association_requested; refusing association {id}",
                    failure,
                    addin=name,
                    id=info.association_id,
                    kind="addin.failure",
                )
            result.callback(
                Refusal(
                    REJECT_NO_REASON,
                    Rule.ADDIN,
                    f"add-in {name} failed: {failure.getErrorMessage()}",
                )
            )

        d.addCallbacks(answered, failed)

    ask(0)
    return result


def notify_hooks(
    hooks: Sequence[object],
    method: str,
    info: AssociationInfo,
    reactor: Any,
    threadpool: Any,
    timeout: float,
) -> None:
    """Call ``method`` (e.g. ``association_released``) on every hook; nothing waits for it."""
    for hook in hooks:
        name = addin_name(hook)

        def failed(failure: Failure, name: str = name) -> None:
            log.failure(
                "add-in {addin} failed in {method} (ignored)",
                failure,
                addin=name,
                method=method,
                kind="addin.failure",
            )

        bound = getattr(hook, method)
        call_addin(bound, (info,), reactor, threadpool, timeout, f"{name}.{method}").addErrback(
            failed
        )
