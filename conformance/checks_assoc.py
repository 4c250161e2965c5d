"""Checks of association establishment, release and abort on the happy and sad paths.

Each check sends one exactly specified request and compares the reply with
the clause of PS3.8 it cites.
"""

from __future__ import annotations

import time

from conformance.probes import (
    accepted,
    connected,
    describe_reply,
    expect_reject,
    release_quietly,
    request,
)
from conformance.registry import CheckFailed, Phase, Target, check
from simulators.echo import run_echoes
from simulators.misbehaving import (
    A_RELEASE_RP,
    IMPLICIT_VR_LE,
    VERIFICATION,
    AssociateAC,
    PDUDecodeError,
    abort,
    describe_pdu,
)

#: An abstract syntax and a transfer syntax no server can know (the UID root
#: 1.2.3 is not assigned to any real SOP class or transfer syntax).
UNKNOWN_ABSTRACT = "1.2.3.4.5.6.7"
UNKNOWN_TS = "1.2.3.4.5.6.7.8"


@check(
    "UL-ACCEPT",
    "Verification/Implicit VR LE is accepted",
    "PS3.8 9.3.3, Table 9-18",
)
def ul_accept(target: Target) -> str:
    """A plain Verification context must come back with result 0 (acceptance)."""
    with connected(target) as peer:
        ac = accepted(peer, target)
        release_quietly(peer)
    ctx = ac.context(1)
    if ctx is None or ctx.result != 0:
        raise CheckFailed(f"context 1 not accepted: {describe_reply(ac)}")
    if ctx.transfer_syntax != IMPLICIT_VR_LE:
        raise CheckFailed(f"context 1 accepted with a TS we did not propose: {ctx.transfer_syntax}")
    return (
        f"context 1 result 0 (acceptance), TS {ctx.transfer_syntax}, "
        f"max PDU {ac.max_pdu}, implementation {ac.impl_uid}"
    )


@check(
    "UL-CTX-ABSTRACT",
    "unknown abstract syntax gets result 3 beside an accepted one",
    "PS3.8 9.3.3.2, Table 9-18",
)
def ul_ctx_abstract(target: Target) -> str:
    """Presentation contexts are negotiated one by one: the unknown one is refused alone."""
    contexts = [(1, VERIFICATION, [IMPLICIT_VR_LE]), (3, UNKNOWN_ABSTRACT, [IMPLICIT_VR_LE])]
    with connected(target) as peer:
        ac = accepted(peer, target, contexts=contexts)
        release_quietly(peer)
    known, unknown = ac.context(1), ac.context(3)
    if known is None or unknown is None:
        raise CheckFailed(f"AC does not answer both contexts: {describe_reply(ac)}")
    if known.result != 0 or unknown.result != 3:
        raise CheckFailed(f"{describe_reply(ac)}; expected 1: 0 and 3: 3")
    return f"context 1 result 0, context 3 ({UNKNOWN_ABSTRACT}) result 3 ({unknown.result_words})"


@check(
    "UL-CTX-TS",
    "a context with only an unknown transfer syntax gets result 4 beside an accepted one",
    "PS3.8 9.3.3.2, Table 9-18",
)
def ul_ctx_ts(target: Target) -> str:
    """No acceptable transfer syntax means result 4 for that context, not a rejection.

    A second, acceptable context is proposed so that the check does not depend
    on what a server does when *no* context is acceptable (pacsref rejects the
    association then with (1, 1, 1); DCMTK's storescp 3.6.7 and pynetdicom accept
    it with every context refused).
    """
    return f"context 3 result 4 ({_refused_transfer_syntax(target, UNKNOWN_TS)})"


def _refused_transfer_syntax(target: Target, transfer_syntax: str) -> str:
    """Propose Verification as context 1 (Implicit VR LE) and as context 3 with only
    ``transfer_syntax``; the words of context 3's result 4, or CheckFailed."""
    with connected(target) as peer:
        ac = accepted(
            peer,
            target,
            contexts=[(1, VERIFICATION, [IMPLICIT_VR_LE]), (3, VERIFICATION, [transfer_syntax])],
        )
        release_quietly(peer)
    ctx = ac.context(3)
    if ctx is None or ctx.result != 4:
        raise CheckFailed(f"{describe_reply(ac)}; expected context 3 result 4")
    return ctx.result_words


#: A transfer syntax name that is no UID (a space and letters after implicit VR LE's UID),
#: as a misconfigured modality might send one.
NOT_A_UID_TS = IMPLICIT_VR_LE + " LE"


@check(
    "UL-CTX-TS-NOT-UID",
    "a transfer syntax name that is not a UID refuses its context (result 4), not everything",
    "PS3.8 9.3.3.2, Table 9-18",
)
def ul_ctx_ts_not_uid(target: Target) -> str:
    """A name with letters in it still names a transfer syntax, one nobody supports.

    Aborting the association over it as a malformed PDU would take the modality's other
    contexts down with it; the name is well-formed as an item, so the context is refused.
    """
    words = _refused_transfer_syntax(target, NOT_A_UID_TS)
    return f"context 3 ({NOT_A_UID_TS!r}) result 4 ({words})"


@check("UL-ECHO", "C-ECHO on the accepted context returns Success", "PS3.8 9.3.5, PS3.7 9.3.5")
def ul_echo(target: Target) -> str:
    """A hand-built C-ECHO-RQ in one P-DATA-TF gets a C-ECHO-RSP with status 0x0000."""
    with connected(target) as peer:
        accepted(peer, target)
        try:
            status = peer.echo(1, message_id=7)
        except (ConnectionError, PDUDecodeError, ValueError) as exc:
            raise CheckFailed(f"no valid C-ECHO-RSP: {exc}") from exc
        release_quietly(peer)
    if status != 0:
        raise CheckFailed(f"C-ECHO-RSP status 0x{status:04X}")
    return "C-ECHO-RSP status 0x0000 for message ID 7"


@check("UL-RELEASE", "A-RELEASE-RQ gets A-RELEASE-RP", "PS3.8 9.3.6-7, Table 9-10 AR-2/AR-4")
def ul_release(target: Target) -> str:
    """An orderly release is answered, not ignored or aborted."""
    with connected(target) as peer:
        accepted(peer, target)
        start = time.monotonic()
        try:
            reply = peer.release()
        except TimeoutError as exc:
            raise CheckFailed(f"no reply to A-RELEASE-RQ within {target.timeout:g} s") from exc
    took = time.monotonic() - start
    if reply is None:
        raise CheckFailed(f"connection closed after {took:.2f} s without A-RELEASE-RP")
    if reply[0] != A_RELEASE_RP:
        raise CheckFailed(f"{describe_pdu(*reply)} instead of A-RELEASE-RP")
    return f"A-RELEASE-RP after {took:.3f} s"


@check("UL-ABORT", "server closes after our A-ABORT", "PS3.8 9.3.8, Table 9-10 AA-3")
def ul_abort(target: Target) -> str:
    """Sta6 + Evt16: the server closes the transport and sends nothing back."""
    with connected(target) as peer:
        accepted(peer, target)
        peer.send_bytes(abort(0, 0))
        reaction = peer.react(target.timeout)
    if not reaction.closed:
        raise CheckFailed(f"after A-ABORT: {reaction.describe()}")
    if reaction.pdus:
        raise CheckFailed(f"after A-ABORT the server answered: {reaction.describe()}")
    return f"after A-ABORT: {reaction.describe()}"


@check(
    "UL-CALLED-AE",
    "wrong called AE title is rejected (1, 1, 7)",
    "PS3.8 9.3.4, Table 9-21",
)
def ul_called_ae(target: Target) -> str:
    """A server that checks its AE title says so with called-AE-title-not-recognized."""
    wrong = "NOT-" + target.called_ae.strip()[:12]
    with connected(target) as peer:
        reply = request(peer, target, called=wrong)
        if isinstance(reply, AssociateAC):
            release_quietly(peer)
    accepted_words = f"accepted any called AE title ({wrong!r} was accepted)"
    if target.accepts_any_called_ae:
        if isinstance(reply, AssociateAC):
            return f"{accepted_words}, as --accepts-any-called-ae expects"
        return f"called {wrong!r}: {describe_reply(reply)} (expected an AC, but RJ is stricter)"
    return f"called {wrong!r}: " + expect_reject(reply, (1, 1, 7), accepted_words)


@check(
    "UL-PROTOCOL-VERSION",
    "protocol version 0x0000 is rejected (1, 2, 2)",
    "PS3.8 9.3.2 Table 9-11, 9.3.4 Table 9-21",
)
def ul_protocol_version(target: Target) -> str:
    """Bit 0 of the protocol version is version 1; without it nothing is supported."""
    with connected(target) as peer:
        reply = request(peer, target, protocol_version=0)
        if isinstance(reply, AssociateAC):
            release_quietly(peer)
    return expect_reject(reply, (1, 2, 2), "accepted protocol version 0x0000")


@check(
    "UL-APP-CONTEXT",
    "non-DICOM application context is rejected (1, 1, 2)",
    "PS3.8 9.3.2.1, 9.3.4 Table 9-21; PS3.7 A.2.1",
)
def ul_app_context(target: Target) -> str:
    """Only the DICOM application context name 1.2.840.10008.3.1.1.1 is acceptable."""
    with connected(target) as peer:
        reply = request(peer, target, app_context="1.2.3.4.5.6.7.8.9")
        if isinstance(reply, AssociateAC):
            release_quietly(peer)
    return expect_reject(reply, (1, 1, 2), "accepted application context 1.2.3.4.5.6.7.8.9")


@check(
    "UL-STILL-SERVING",
    "a fresh association and C-ECHO still succeed (pynetdicom SCU)",
    "PS3.8 9.1, PS3.7 9.3.5",
    Phase.FINAL,
)
def ul_still_serving(target: Target) -> str:
    """After every provocation the server must still serve a well-behaved peer."""
    result = run_echoes(
        target.host, target.port, target.called_ae, target.calling_ae, timeout=target.timeout
    )
    if not result.ok:
        raise CheckFailed("; ".join(result.failures) or "echo failed")
    return "association accepted, C-ECHO status 0x0000, released"
