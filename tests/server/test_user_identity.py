"""User Identity negotiation (PS3.7 D.3.3.7) on the wire, in memory.

The real factory and protocol through StringTransport and a Clock
(:mod:`pacsref.testing.harness`): the exact A-ASSOCIATE-AC or -RJ a requestor gets for
its User Identity sub-item, with and without IUserIdentityNegotiation add-ins, and what
association hooks then see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import DeferredSemaphore
from twisted.logger import formatEvent

from pacsref.server.notifications import AssociationRefused
from pacsref.testing.harness import ServerHarness
from pacsref.ul.constants import PDUType
from pacsref.ul.events import (
    UserIdentity,
)

from .helpers import associate_rq, association_answer

SYNTAX = "1.2.826.0.1.3680043.9.7.10"

VERIFIERS = f'''
from zope.interface import implementer
from pacsref.addin import (
    IAddin, IAssociationHook, IEchoHandler, IUserIdentityNegotiation, SupportedContext,
    nonblocking,
)

seen = []

@implementer(IAddin, IUserIdentityNegotiation, IEchoHandler)
class Users:
    """alice/secret, bob (no passcode); a JWT "good.token"; raises for "mallory"."""
    name = "test-users"
    description = "a user table"
    def presentation_contexts(self):
        return (SupportedContext("{SYNTAX}", ("1.2.840.10008.1.2",)),)
    def handle_echo(self, request):
        return 0
    def verify_user_identity(self, info, identity):
        seen.append(("users", identity.identity_type, identity.username, identity.passcode))
        if identity.username == "mallory":
            raise KeyError("no entry for passcode " + identity.passcode)
        if identity.username == "weird":
            return "yes"
        if identity.username == "abstain":
            return None
        if identity.identity_type == 5:
            return b"server-token" if identity.primary_field == b"good.token" else None
        if identity.identity_type == 4:
            return b"x" * 70000
        return {{("alice", "secret"), ("bob", None)}}.__contains__(
            (identity.username, identity.passcode)
        )

@implementer(IAddin, IUserIdentityNegotiation)
class Fallback:
    """A second source: accepts carol whatever her passcode, inline."""
    name = "fallback"
    description = "a second user source"
    def presentation_contexts(self):
        return ()
    @nonblocking
    def verify_user_identity(self, info, identity):
        seen.append(("fallback", identity.identity_type, identity.username, identity.passcode))
        if identity.username == "abstain":
            return None
        return identity.username == "carol"

@implementer(IAddin, IAssociationHook)
class Hook:
    name = "hook"
    description = "records what association hooks see"
    def presentation_contexts(self):
        return ()
    @nonblocking
    def association_requested(self, info):
        seen.append(("hook", info.user_identity, info.user_verified))
        return None
    def association_established(self, info):
        pass
    def association_released(self, info):
        pass
    def association_aborted(self, info):
        pass

users = Users()
fallback = Fallback()
hook = Hook()
'''

HOOK_ONLY = VERIFIERS.replace("users = Users()\nfallback = Fallback()\n", "")


def _harness(tmp_path: Path, source: str = VERIFIERS) -> tuple[ServerHarness, list[object]]:
    """A server with the test add-ins and without the shipped "users" one (an unconfigured
    verifier that abstains), so each test sees only the verifiers it means."""
    harness = ServerHarness(
        tmp_path / "PACSREF",
        settings={"addin_timeout": 5.0},
        extra_addins={"test_users.py": source},
        without_addins=("users",),
    )
    [hook] = [a for a in harness.server.addins if a.name == "hook"]
    seen: list[object] = type(hook).association_requested.__globals__["seen"]
    return harness, seen


def _refusal(harness: ServerHarness) -> AssociationRefused:
    [refused] = [e for e in harness.events if isinstance(e, AssociationRefused)]
    return refused


@pytest.mark.parametrize(
    ("identity", "response"),
    [
        (UserIdentity(2, b"alice", b"secret", positive_response_requested=True), b""),
        (UserIdentity(2, b"alice", b"secret"), None),
        (UserIdentity(1, b"bob", positive_response_requested=True), b""),
        (UserIdentity(5, b"good.token", positive_response_requested=True), b"server-token"),
        (UserIdentity(5, b"good.token"), None),
    ],
    ids=["passcode-positive", "passcode-silent", "username", "jwt-positive", "jwt-silent"],
)
def test_an_accepted_identity_gets_the_response_it_asked_for(
    tmp_path: Path,
    identity: UserIdentity,
    response: bytes | None,
    log_events: list[dict[str, Any]],
) -> None:
    """Accepted: the A-ASSOCIATE-AC carries a User Identity response (0x59) only when the
    requestor asked for one; empty for types 1 and 2 (PS3.7 D.3.3.7.2), the verifier's
    bytes for a token. Hooks then see the identity, verified, without its passcode."""
    harness, seen = _harness(tmp_path)
    conn = harness.connect()
    ac = association_answer(harness, conn=conn, identity=identity)
    assert not isinstance(ac, tuple), ac
    assert ac.user_information.user_identity_response == response  # type: ignore[attr-defined]
    shown = conn.client.to_dict()["association"]["user_identity"]  # the admin interface's view
    assert shown == {
        "type": identity.identity_type,
        "user": identity.without_credentials().describe(),
        "username": identity.username,
        "verified": True,
        "positive_response_requested": identity.positive_response_requested,
    }
    hook_saw = [s for s in seen if s[0] == "hook"]  # type: ignore[index]
    assert hook_saw == [("hook", identity.without_credentials(), True)]
    assert hook_saw[0][1].secondary_field == b""  # type: ignore[index]
    [line] = [e for e in log_events if e.get("kind") == "association.accepted"]
    assert line["user_identity"]["verified"] is True
    assert "secret" not in repr(line) and "secret" not in (formatEvent(line) or "")
    assert f"user {identity.without_credentials().describe()} verified" in (formatEvent(line) or "")
    if identity.identity_type == 5:  # a bearer token reaches the verifier only
        assert b"good.token" not in repr(seen).encode()
        assert "good.token" not in repr(conn.client.to_dict())


@pytest.mark.parametrize(
    ("identity", "why"),
    [
        (UserIdentity(2, b"alice", b"wrong"), "username and passcode 'alice' not accepted"),
        (UserIdentity(1, b"eve", positive_response_requested=True), "username 'eve'"),
        (UserIdentity(5, b"bad.token"), "JSON Web Token (9 bytes) not accepted"),
        (UserIdentity(2, b"mallory", b"pa55"), "add-in test-users failed (KeyError)"),
        (UserIdentity(1, b"weird"), "add-in test-users gave no valid answer"),
        (UserIdentity(4, b"<saml/>", positive_response_requested=True), "no valid answer"),
        (UserIdentity(9, b"?"), "user identity of undefined type 9 not accepted"),
    ],
    ids=["wrong-passcode", "unknown-user", "bad-token", "raises", "nonsense", "too-long", "type-9"],
)
def test_an_identity_nobody_accepts_is_rejected_1_2_1(
    tmp_path: Path, identity: UserIdentity, why: str
) -> None:
    """Refused by every verifier (or a verifier that fails): A-ASSOCIATE-RJ rejected-permanent,
    ACSE service provider, no reason (PS3.7 D.3.3.7), notified with rule user-identity and
    the reason, never the passcode; association hooks are not asked."""
    harness, seen = _harness(tmp_path)
    assert association_answer(harness, identity) == (1, 2, 1)
    refused = _refusal(harness)
    assert refused.rule == "user-identity" and why in refused.why, refused.why
    assert "wrong" not in refused.why
    assert not [s for s in seen if s[0] == "hook"]  # type: ignore[index]


def test_verifiers_are_asked_in_turn_until_one_accepts(tmp_path: Path) -> None:
    """The first source refuses carol, the second (inline) accepts her: associated."""
    harness, seen = _harness(tmp_path)
    ac = association_answer(harness, UserIdentity(2, b"carol", b"any"))
    assert not isinstance(ac, tuple)
    assert [s[0] for s in seen] == ["users", "fallback", "hook"]  # type: ignore[index]
    assert seen[0] == ("users", 2, "carol", "any")


def test_without_a_verifier_the_identity_is_carried_unverified(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """No IUserIdentityNegotiation add-in: accepted with no User Identity response even if
    one was asked for (PS3.7 D.3.3.7 lets an acceptor that does not support it do so);
    hooks see the claimed identity, not verified, and the log says why."""
    harness, seen = _harness(tmp_path, HOOK_ONLY)
    identity = UserIdentity(2, b"alice", b"secret", positive_response_requested=True)
    ac = association_answer(harness, identity)
    assert not isinstance(ac, tuple)
    assert ac.user_information.user_identity_response is None
    assert seen == [("hook", identity.without_credentials(), False)]
    [line] = [e for e in log_events if e.get("kind") == "association.accepted"]
    text = formatEvent(line) or ""
    assert "user username and passcode 'alice' not verified (no add-in verifies" in text


def test_every_verifier_abstaining_is_as_if_none_were_loaded(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """Both verifiers answer None (not theirs to judge): accepted unverified, no response,
    as without a verifier; a None is no refusal."""
    harness, seen = _harness(tmp_path)
    identity = UserIdentity(1, b"abstain", positive_response_requested=True)
    conn = harness.connect()
    ac = association_answer(harness, conn=conn, identity=identity)
    assert not isinstance(ac, tuple), ac
    assert ac.user_information.user_identity_response is None
    assert [s[0] for s in seen] == ["users", "fallback", "hook"]  # type: ignore[index]
    assert seen[-1] == ("hook", identity, False)
    assert conn.client.to_dict()["association"]["user_identity"]["verified"] is False
    [line] = [e for e in log_events if e.get("kind") == "association.accepted"]
    assert "not verified (every add-in that verifies user identities abstained)" in (
        formatEvent(line) or ""
    )


def test_no_identity_means_no_verifier_call(tmp_path: Path) -> None:
    """A request without the sub-item is not a verifier's business: hooks see None."""
    harness, seen = _harness(tmp_path)
    conn = harness.connect()
    ac = association_answer(harness, conn=conn, identity=None)
    assert not isinstance(ac, tuple)
    assert seen == [("hook", None, False)]
    assert conn.client.to_dict()["association"]["user_identity"] is None


def test_a_pause_while_the_verifier_runs_refuses_2_3_1(tmp_path: Path) -> None:
    """The verifier runs on the thread pool; a pause meanwhile: (2, 3, 1), as for hooks."""
    harness, _ = _harness(tmp_path)
    conn = harness.connect()
    conn.send(associate_rq(identity=UserIdentity(2, b"alice", b"secret")))
    assert conn.received() == []
    harness.control.pause()
    harness.threadpool.run_all()
    [(pdu_type, body)] = conn.received()
    assert pdu_type is PDUType.A_ASSOCIATE_RJ and tuple(body[1:4]) == (2, 3, 1)
    assert _refusal(harness).rule == "paused"


def test_verifier_timeout_refuses(tmp_path: Path) -> None:
    """A verifier that does not answer within the add-in timeout counts as a refusal and
    the next is asked (here the inline one, which refuses alice too)."""
    harness, _ = _harness(tmp_path)
    conn = harness.connect()
    conn.send(associate_rq(identity=UserIdentity(2, b"alice", b"secret")))
    harness.clock.advance(5)
    [(pdu_type, body)] = conn.received()
    assert pdu_type is PDUType.A_ASSOCIATE_RJ and tuple(body[1:4]) == (1, 2, 1)
    assert "did not answer within 5.0 s" in _refusal(harness).why
    harness.threadpool.run_all()
    assert conn.received() == []


def test_a_verifier_s_exception_message_is_kept_out_of_logs_and_notifications(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """An exception may quote what it failed on (here the passcode): the refusal and the
    log give its type and frames, never its message."""
    harness, _ = _harness(tmp_path)
    assert association_answer(harness, UserIdentity(2, b"mallory", b"pa55")) == (1, 2, 1)
    assert "pa55" not in _refusal(harness).why
    text = "\n".join(formatEvent(e) or "" for e in log_events)
    assert "failed in verify_user_identity with KeyError" in text
    assert "pa55" not in text


def test_a_peer_leaving_during_verification_is_quiet_and_asks_nobody_else(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """The peer hangs up while its identity waits for a pool thread: the verifier is never
    called (nobody waits for its answer), the next verifier is not asked, and nothing is
    logged as an add-in failure."""
    harness, seen = _harness(tmp_path)
    conn = harness.connect()
    conn.send(associate_rq(identity=UserIdentity(2, b"carol", b"any")))
    conn.lose()
    harness.threadpool.run_all()
    assert seen == []
    assert not [e for e in log_events if e.get("kind") == "addin.failure"]


def test_verifications_wait_for_their_turn(tmp_path: Path) -> None:
    """At most ``identity_limiter``'s count run at once (one per CPU by default): the second
    request's check is not handed to the pool before the first's is done, and a peer that
    leaves while waiting gives its turn up."""
    harness, seen = _harness(tmp_path)
    harness.server.identity_limiter = DeferredSemaphore(1)
    first, second, third = harness.connect(port=1), harness.connect(port=2), harness.connect(port=3)
    for conn in (first, second, third):
        conn.send(associate_rq(identity=UserIdentity(2, b"alice", b"secret")))
    assert len(harness.threadpool.pending) == 1
    third.lose()
    harness.threadpool.run_all()
    assert [t for t, _ in first.received()] == [PDUType.A_ASSOCIATE_AC]
    assert [t for t, _ in second.received()] == [PDUType.A_ASSOCIATE_AC]
    assert [s[0] for s in seen].count("users") == 2  # type: ignore[index]
