"""Calling :class:`~pacsref.addin.IUserIdentityNegotiation` add-ins (PS3.7 D.3.3.7).

The verifiers are asked in load order until one accepts; each call runs like an
association hook's (thread pool under the add-in timeout, inline when marked
``nonblocking``). The answer is a :class:`IdentityVerdict`: accepted, with the
Server-response to send when the requestor asked for one; refused, with the
reason in words for the log; or unjudged, when every verifier answered None
(this kind of identity is none of theirs, or they are not configured), which
the server treats as if no verifier were loaded. A verifier that raises, times
out or answers with something else counts as a refusal and is logged, as a
failing association hook is: an add-in that cannot answer must not let an
unverified user in.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore
from twisted.logger import Logger
from twisted.python.failure import Failure

from pacsref.addin import AddinTimeout, AssociationInfo
from pacsref.server.hooks import addin_name, call_addin
from pacsref.ul.events import UserIdentity, UserIdentityType

log = Logger(namespace="pacsref.identity")

__all__ = ["IdentityVerdict", "identity_startup_problem", "verify_identity"]

#: Types whose Server-response must be empty (PS3.7 D.3.3.7.2).
_EMPTY_RESPONSE_TYPES = (UserIdentityType.USERNAME, UserIdentityType.USERNAME_AND_PASSCODE)


@dataclass(frozen=True, slots=True)
class IdentityVerdict:
    """What the verifiers decided about one User Identity.

    ``response`` is the Server-response for the A-ASSOCIATE-AC (None: send no User
    Identity sub-item, because the requestor did not ask for a positive response);
    ``why`` says why nobody accepted.
    ``judged`` is False when every verifier abstained (answered None): the identity is
    then carried unverified, as with no verifier at all.
    """

    accepted: bool
    response: bytes | None = None
    why: str = ""
    judged: bool = True


def _response(identity: UserIdentity, answer: bool | bytes) -> bytes | None:
    if not identity.positive_response_requested:
        return None
    if identity.identity_type in _EMPTY_RESPONSE_TYPES or answer is True:
        return b""
    assert isinstance(answer, bytes)
    return answer


def verify_identity(
    verifiers: Sequence[object],
    info: AssociationInfo,
    identity: UserIdentity,
    reactor: Any,
    threadpool: Any,
    timeout: float,
    limiter: DeferredSemaphore | None = None,
) -> Deferred[IdentityVerdict]:
    """Ask each verifier in turn; fires with the first acceptance, or a refusal.

    The returned Deferred never fails. Cancelling it (the peer went away) cancels the
    call in progress, quietly, and asks no further verifier. ``limiter`` bounds how many
    verifications run at once across the server: a passcode check costs tens of
    milliseconds of CPU by design, and a peer needs no credentials to ask for one, so a
    flood of requests waits in its queue (where a peer that hangs up leaves it) instead of
    taking the CPU the stores need. Each verifier call holds one place.
    """
    current: list[Deferred[Any]] = []
    refusals: list[str] = []
    cancelled = False

    def cancel(_: Deferred[IdentityVerdict]) -> None:
        nonlocal cancelled
        cancelled = True
        for d in current:
            d.cancel()

    result: Deferred[IdentityVerdict] = Deferred(cancel)

    def call(verifier: object, name: str) -> Deferred[Any]:
        return call_addin(
            verifier.verify_user_identity,  # type: ignore[attr-defined]
            (info, identity),
            reactor,
            threadpool,
            timeout,
            f"{name}.verify_user_identity",
        )

    def ask(index: int) -> None:
        if result.called or cancelled:
            return
        if index == len(verifiers):
            if not refusals:
                result.callback(IdentityVerdict(False, judged=False))
                return
            result.callback(
                IdentityVerdict(
                    False,
                    why=f"{identity.describe()} not accepted: " + "; ".join(refusals),
                )
            )
            return
        verifier = verifiers[index]
        name = addin_name(verifier)
        if limiter is None:
            d = call(verifier, name)
        else:
            d = limiter.acquire()
            d.addCallback(lambda _: call(verifier, name).addBoth(_released, limiter))
        current[:] = [d]

        def answered(value: object) -> None:
            current.clear()
            if result.called or cancelled:
                return
            if value is True or (isinstance(value, bytes) and len(value) <= 0xFFFF):
                result.callback(IdentityVerdict(True, _response(identity, value)))
            elif value is None:  # abstains: not its kind of identity, or not configured
                ask(index + 1)
            elif value is False:
                refusals.append(f"add-in {name} refused it")
                ask(index + 1)
            else:
                log.error(
                    "add-in {addin} verify_user_identity returned {value}, not True, bytes of "
                    "at most 65535, False or None; counted as a refusal in association {id}",
                    addin=name,
                    value=(
                        f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__
                    ),
                    id=info.association_id,
                    kind="addin.failure",
                )
                refusals.append(f"add-in {name} gave no valid answer")
                ask(index + 1)

        def failed(failure: Failure) -> None:
            current.clear()
            if result.called or cancelled or failure.check(CancelledError):
                return  # the peer went away: nothing to decide, nothing went wrong
            if failure.check(AddinTimeout):
                log.error(
                    "add-in {addin} did not answer verify_user_identity within {timeout} s; "
                    "counted as a refusal in association {id}",
                    addin=name,
                    timeout=timeout,
                    id=info.association_id,
                    kind="addin.failure",
                )
                refusals.append(f"add-in {name} did not answer within {timeout} s")
            else:
                # The exception's message may quote what it failed on (a passcode, a token):
                # its type and the frames say where, without it.
                log.error(
                    "add-in {addin} failed in verify_user_identity with {error}; counted as a "
                    "refusal in association {id} (message left out: it may hold the "
                    "credential)\n{frames}",
                    addin=name,
                    error=failure.type.__name__,
                    frames=_frames(failure),
                    id=info.association_id,
                    kind="addin.failure",
                )
                refusals.append(f"add-in {name} failed ({failure.type.__name__})")
            ask(index + 1)

        d.addCallbacks(answered, failed)

    ask(0)
    return result


def _released(outcome: object, limiter: DeferredSemaphore) -> object:
    limiter.release()
    return outcome


def _frames(failure: Failure) -> str:
    """The traceback's frames without the exception's message."""
    tb = failure.getTracebackObject()
    if tb is None:
        return "(no traceback)"
    return "".join(traceback.format_tb(tb)).rstrip()


def identity_startup_problem(failures: Sequence[object]) -> str | None:
    """Why the server cannot start because a user identity verifier failed to load; None
    if none did.

    Started without it, every User Identity it would have refused (and, through its own
    hook, every request it would have turned away) would get in unverified: a typo in its
    options file must not open the server. As for a secure server without its TLS add-in,
    the start is refused with the add-in's error, for the operator to fix or to remove it.
    """
    failed = [f for f in failures if getattr(f, "verifies_identity", False)]
    if not failed:
        return None
    details = " | ".join(
        f"add-in {getattr(f, 'name', '?')} failed to load: "
        + "; ".join(str(getattr(f, "error", f)).splitlines())
        for f in failed
    )
    return (
        f"an add-in that verifies user identities did not load, and without it users it "
        f"would refuse would get in unverified ({details}); fix it, or take it out of addins/"
    )
