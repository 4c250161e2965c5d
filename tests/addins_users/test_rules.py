"""The users add-in's verification rules, on the wire through the in-memory harness.

Each rule is checked by what a requestor gets (A-ASSOCIATE-AC, or -RJ (1, 2, 1) when a
verifier refused and none accepted), by what the verifier itself answers (True, False, or
None to abstain, which the core treats as if it were not loaded), and by the one info line
a refusal leaves.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import formatEvent
from zope.interface import providedBy
from zope.interface.verify import verifyObject

from addins.users.accounts import DEFAULT_DUMMY, dummy_hash
from addins.users.passcodes import DEFAULT_N, DEFAULT_P, DEFAULT_R, PasscodeHash, hash_passcode
from pacsref.addin import IAssociationHook, IUserIdentityNegotiation
from pacsref.ul.events import AssociateAccept, UserIdentity

from .helpers import (
    ACCOUNTS,
    RECORDER,
    addin_module,
    answer,
    info,
    of_kind,
    rewrite,
    users_addin,
    users_server,
)


def _refusals(log_events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return of_kind(log_events, "users.refused")


def test_the_addin_is_the_shipped_package_and_verifies(tmp_path: Path) -> None:
    """The copy the server loaded provides the verifier (and, by default, no hook)."""
    harness = users_server(tmp_path)
    users = users_addin(harness)
    assert type(users).__module__.endswith(".users")
    assert IUserIdentityNegotiation.providedBy(users)
    assert not IAssociationHook.providedBy(users)
    assert harness.server.identity_verifiers == [users]
    for interface in providedBy(users):
        verifyObject(interface, users)


@pytest.mark.parametrize("positive", [True, False])
def test_a_username_alone_enters_an_account_without_passcode(
    tmp_path: Path, positive: bool
) -> None:
    """Type 1 for an account with no passcode: accepted; the response is empty when asked
    for (PS3.7 D.3.3.7.2) and absent otherwise."""
    harness = users_server(tmp_path)
    ac = answer(harness, UserIdentity(1, b"ct-room-1", positive_response_requested=positive))
    assert isinstance(ac, AssociateAccept)
    assert ac.user_information.user_identity_response == (b"" if positive else None)


def test_a_username_alone_never_enters_an_account_with_a_passcode(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """Type 1 naming an account that has a passcode: refused, whatever else is true."""
    harness = users_server(tmp_path)
    assert answer(harness, UserIdentity(1, b"alice")) == (1, 2, 1)
    assert users_addin(harness).verify_user_identity(info(), UserIdentity(1, b"alice")) is False
    first = _refusals(log_events)[0]
    assert first["username"] == "alice" and "has a passcode" in first["reason"]


@pytest.mark.parametrize(
    ("username", "passcode"), [(b"alice", b"secret"), (b"dr smith", "päss".encode())]
)
def test_the_right_passcode_is_accepted(tmp_path: Path, username: bytes, passcode: bytes) -> None:
    """Type 2 with the account's passcode (UTF-8, any characters): accepted, empty response."""
    harness = users_server(tmp_path)
    ac = answer(harness, UserIdentity(2, username, passcode, positive_response_requested=True))
    assert isinstance(ac, AssociateAccept)
    assert ac.user_information.user_identity_response == b""


@pytest.mark.parametrize("passcode", [b"wrong", b"Secret", b"secret ", b""])
def test_a_wrong_passcode_is_refused(
    tmp_path: Path, passcode: bytes, log_events: list[dict[str, Any]]
) -> None:
    """Type 2 with anything but the exact passcode: (1, 2, 1), logged once with the reason."""
    harness = users_server(tmp_path)
    assert answer(harness, UserIdentity(2, b"alice", passcode)) == (1, 2, 1)
    [line] = _refusals(log_events)
    assert (line["username"], line["reason"]) == ("alice", "wrong passcode")


def test_a_passcode_for_an_account_without_one_is_refused(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """Type 2 for a username-only account: refused, and the log says why."""
    harness = users_server(tmp_path)
    assert answer(harness, UserIdentity(2, b"ct-room-1", b"anything")) == (1, 2, 1)
    [line] = _refusals(log_events)
    assert line["username"] == "ct-room-1"
    assert line["reason"] == "a passcode was sent for an account without one"
    direct = users_addin(harness).verify_user_identity(info(), UserIdentity(2, b"ct-room-1", b"x"))
    assert direct is False


@pytest.mark.parametrize("identity_type", [1, 2])
def test_an_unknown_user_is_refused(
    tmp_path: Path, identity_type: int, log_events: list[dict[str, Any]]
) -> None:
    """Unknown user: False, not None: abstaining would let a lone user table carry any
    unknown username in, unverified."""
    harness = users_server(tmp_path)
    identity = UserIdentity(identity_type, b"eve", b"pw" if identity_type == 2 else b"")
    assert users_addin(harness).verify_user_identity(info(), identity) is False
    assert answer(harness, identity) == (1, 2, 1)
    assert _refusals(log_events)[-1]["reason"] == "no such account"


def test_a_later_verifier_may_still_accept_an_unknown_user(tmp_path: Path) -> None:
    """The table refuses a username it does not know; a directory after it accepts it."""
    harness = users_server(tmp_path, extra_addins={"zz_recorder.py": RECORDER})
    identity = UserIdentity(2, b"ldap-user", b"pw", positive_response_requested=True)
    ac = answer(harness, identity)
    assert isinstance(ac, AssociateAccept)
    assert ac.user_information.user_identity_response == b""
    [recorder] = [a for a in harness.server.addins if a.name == "recorder"]
    assert type(recorder).verify_user_identity.__globals__["asked"] == [(2, "ldap-user")]


@pytest.mark.parametrize("identity_type", [3, 4, 5, 9])
def test_other_identity_types_are_abstained_on(
    tmp_path: Path, identity_type: int, log_events: list[dict[str, Any]]
) -> None:
    """Kerberos, SAML, JWT and undefined types: None, nothing logged. Alone, the identity is
    carried unverified (no response though one was asked for); a verifier for it decides."""
    harness = users_server(tmp_path)
    identity = UserIdentity(identity_type, b"bad", positive_response_requested=True)
    assert users_addin(harness).verify_user_identity(info(), identity) is None
    ac = answer(harness, identity)
    assert isinstance(ac, AssociateAccept)
    assert ac.user_information.user_identity_response is None
    assert _refusals(log_events) == []
    (tmp_path / "stacked").mkdir()
    stacked = users_server(tmp_path / "stacked", extra_addins={"zz_recorder.py": RECORDER})
    ok = answer(stacked, UserIdentity(identity_type, b"ok", positive_response_requested=True))
    assert isinstance(ok, AssociateAccept) and ok.user_information.user_identity_response == b""


def test_a_refusal_is_logged_once_without_the_passcode(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """One info line per refusal, naming user and reason; the passcode appears nowhere."""
    harness = users_server(tmp_path)
    answer(harness, UserIdentity(2, b"alice", b"hunter2-guess"))
    [line] = _refusals(log_events)
    assert line["log_level"].name == "info"
    assert "alice" in (formatEvent(line) or "") and "wrong passcode" in (formatEvent(line) or "")
    everything = repr(log_events) + "".join(formatEvent(e) or "" for e in log_events)
    assert "hunter2-guess" not in everything


def _scrypt_calls(harness: Any, monkeypatch: Any) -> list[tuple[int, int, int]]:
    """The (N, r, p) of every scrypt the loaded add-in runs from now on."""
    passcodes = sys.modules[addin_module(harness).__name__ + ".passcodes"]
    original = passcodes._scrypt
    calls: list[tuple[int, int, int]] = []

    def recording(passcode: bytes, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
        calls.append((n, r, p))
        return original(passcode, salt, n, r, p, length)

    monkeypatch.setattr(passcodes, "_scrypt", recording)
    return calls


#: An account hashed with other parameters than the rest (before the defaults were raised,
#: say): N = 2**14 with r = p = 1, which costs a few milliseconds.
OLD = f'[users.old]\npasscode = "{hash_passcode(b"pw", n=2**14, r=1, p=1)}"\n'


def test_an_unknown_user_costs_the_dearest_passcode_check(tmp_path: Path, monkeypatch: Any) -> None:
    """A type 2 for a user that does not exist, or a passcode for an account without one,
    still runs one scrypt check, with the parameters of the most expensive hash in the table
    (not the defaults), so the answer's timing does not tell which usernames exist."""
    harness = users_server(tmp_path, ACCOUNTS + OLD)
    calls = _scrypt_calls(harness, monkeypatch)
    assert answer(harness, UserIdentity(2, b"nobody", b"guess")) == (1, 2, 1)
    assert calls == [(2**14, 1, 1)]
    assert answer(harness, UserIdentity(2, b"ct-room-1", b"guess")) == (1, 2, 1)
    assert answer(harness, UserIdentity(2, b"old", b"guess")) == (1, 2, 1)
    assert calls == [(2**14, 1, 1)] * 3


def test_the_dummy_follows_the_table_version(tmp_path: Path, monkeypatch: Any) -> None:
    """Made once per version read (the same object at every check), and again when the file
    changes; the defaults while the table holds no hash at all."""
    harness = users_server(tmp_path, ACCOUNTS + OLD)
    table = users_addin(harness).table
    dummy = table.state.dummy
    assert (dummy.n, dummy.r, dummy.p) == (2**14, 1, 1)
    assert dummy.salt == bytes(16) and dummy.key == bytes(32)
    answer(harness, UserIdentity(2, b"nobody", b"guess"))
    assert table.state.dummy is dummy
    calls = _scrypt_calls(harness, monkeypatch)
    rewrite(harness.server.server_dir / "user-accounts.toml", ACCOUNTS)
    answer(harness, UserIdentity(2, b"nobody", b"guess"))
    rewrite(harness.server.server_dir / "user-accounts.toml", "[users.x]\npasscode = false\n")
    answer(harness, UserIdentity(2, b"nobody", b"guess"))
    assert calls == [(16, 1, 1), (DEFAULT_N, DEFAULT_R, DEFAULT_P)]


def test_the_dummy_takes_the_most_work_then_the_most_memory() -> None:
    """Most N * r * p wins; between equal work, most N * r (memory)."""
    salt, key = bytes(range(16)), bytes(range(32))
    cheap, wide, deep = (
        PasscodeHash(n, r, p, salt, key) for n, r, p in [(16, 1, 1), (64, 1, 4), (256, 1, 1)]
    )
    wins = dummy_hash({"a": cheap, "b": wide, "c": None})
    assert (wins.n, wins.r, wins.p) == (64, 1, 4)
    wins = dummy_hash({"a": cheap, "b": wide, "c": deep})
    assert (wins.n, wins.r, wins.p) == (256, 1, 1)
    assert wins.salt == bytes(16) and wins.key == bytes(32)
    assert dummy_hash({"c": None}) == DEFAULT_DUMMY
    assert (DEFAULT_DUMMY.n, DEFAULT_DUMMY.r, DEFAULT_DUMMY.p) == (DEFAULT_N, DEFAULT_R, DEFAULT_P)


def test_without_an_accounts_file_it_abstains(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """Not configured (no accounts file, as in every server that never asked for users):
    every identity is carried unverified, as with no verifier loaded; nothing is refused."""
    harness = users_server(tmp_path, None)
    identity = UserIdentity(2, b"alice", b"wrong", positive_response_requested=True)
    assert users_addin(harness).verify_user_identity(info(), identity) is None
    ac = answer(harness, identity)
    assert isinstance(ac, AssociateAccept)
    assert ac.user_information.user_identity_response is None
    assert _refusals(log_events) == []
