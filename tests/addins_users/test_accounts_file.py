"""The accounts file at start: where it is, what it may hold, and how a bad one fails closed.

A file the add-in cannot use does not stop it from loading (a server without its verifier
would carry every identity unverified): it loads broken and refuses every username, and one
error names the file, the user and the field of every problem, never quoting a passcode
value (which may be a plain-text passcode written by mistake). A missing file is not an
error: the add-in is not configured and abstains, said once at start (a warning only when an
option shows the file was meant).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.logger import formatEvent

from addins.users.accounts import AccountsFileError, parse_accounts
from pacsref.addin import load_addins
from pacsref.ul.events import AssociateAccept, UserIdentity

from .helpers import (
    ACCOUNTS,
    RECORDER,
    answer,
    cheap_hash,
    info,
    of_kind,
    rewrite,
    users_addin,
    users_server,
)

GOOD = cheap_hash(b"secret")


@pytest.mark.parametrize(
    ("text", "where", "why"),
    [
        ("[users.alice\n", "", "cannot be read as TOML"),
        ('[users]\nalice = "plain-secret"\n', "users.alice: ", "must be a table"),
        ('[users.alice]\npasscode = "plain-secret"\n', "users.alice.passcode: ", "not a passcode"),
        ("[users.alice]\npasscode = 918273645\n", "users.alice.passcode: ", "quoted hash string"),
        (f'[users.alice]\npasscode = "{GOOD}"\nrole = "x"\n', "users.alice.role: ", "unknown key"),
        ('[users."ct room"]\npasscode = "scrypt$1$8$1$AA==$AA=="\n', 'users."ct room".pass', "N"),
        (f'[users.alice]\npasscode = "{GOOD}"\n[groups.x]\n', "groups: ", "unknown key"),
        ("users = 5\n", "users: ", "must be a table"),
        ('[users.""]\npasscode = false\n', 'users."": ', "must not be empty"),
        (
            '[users."ct-room-1"]\n',
            "users.ct-room-1.passcode: ",
            'missing; give passcode = "scrypt$..." (from `python -m pacsref.shipped_addins.'
            "users hash`), or passcode = false for a username-only account",
        ),
        ("[users.alice]\npasscode = true\n", "users.alice.passcode: ", "hash string or false"),
    ],
    ids=[
        "toml",
        "not-table",
        "plain",
        "integer",
        "key",
        "quoted-user",
        "top-key",
        "users",
        "empty",
        "no-passcode-key",
        "passcode-true",
    ],
)
def test_a_bad_file_loads_the_addin_broken_naming_file_user_and_field(
    tmp_path: Path, text: str, where: str, why: str, log_events: list[dict[str, Any]]
) -> None:
    """The add-in still loads (no load failure); one error, ``users.accounts-broken``, reads
    ``<file>: users.<user>.<field>: <why>``, and no value is shown anywhere."""
    harness = users_server(tmp_path, text)
    path = harness.server.server_dir / "user-accounts.toml"
    users = users_addin(harness)
    assert users in harness.server.addins
    assert [f for f in harness.server.failures if f.name == "users"] == []
    [error] = of_kind(log_events, "users.accounts-broken")
    assert error["log_level"].name == "error"
    printed = formatEvent(error) or ""
    assert f"{path}: {where}" in printed and why in printed, printed
    assert users.table.broken is not None and f"{path}: {where}" in users.table.broken
    # Every field of every event but its time, whose digits may hold any short number (one
    # run in a few hundred had "1234", the number this case used as a passcode before).
    fields = [{k: v for k, v in e.items() if k != "log_time"} for e in log_events]
    everything = repr(fields) + "".join(formatEvent(e) or "" for e in log_events)
    assert "plain-secret" not in everything and "918273645" not in everything


def test_every_problem_is_reported_at_once(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """Two bad passcodes and an account with an unknown key and none: four problems, in
    file order, and at start all four in the one error line."""
    text = '[users.a]\npasscode = "x"\n[users.b]\nextra = 1\n[users.c]\npasscode = 5\n'
    with pytest.raises(AccountsFileError) as caught:
        parse_accounts(text, "f.toml")
    fields = ["users.a.passcode", "users.b.extra", "users.b.passcode", "users.c.passcode"]
    assert [p.split(":")[1].strip() for p in caught.value.problems] == fields
    harness = users_server(tmp_path, text)
    path = harness.server.server_dir / "user-accounts.toml"
    [error] = of_kind(log_events, "users.accounts-broken")
    printed = formatEvent(error) or ""
    places = [printed.index(f"{path}: {field}: ") for field in fields]
    assert places == sorted(places), printed


#: The accounts every other test uses, with one bad entry: alice's hash is good, the file not.
BROKEN = ACCOUNTS + '[users.bob]\npasscode = "builder"\n'


def test_a_broken_file_at_start_refuses_every_username(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """Fail closed: types 1 and 2 are refused (1, 2, 1) even for an account the file spells
    right, each refusal naming the file and no passcode; a JWT, not a user table's kind,
    is still carried unverified; fixing the file lets alice in at the next association."""
    harness = users_server(tmp_path, BROKEN)
    path = harness.server.server_dir / "user-accounts.toml"
    users = users_addin(harness)
    alice = UserIdentity(2, b"alice", b"secret")
    assert answer(harness, alice) == (1, 2, 1)
    assert answer(harness, UserIdentity(1, b"ct-room-1")) == (1, 2, 1)
    assert users.verify_user_identity(info(), alice) is False
    refusals = of_kind(log_events, "users.refused")
    assert [(e["username"], e["reason"]) for e in refusals] == [
        ("alice", f"the accounts file {path} cannot be used"),
        ("ct-room-1", f"the accounts file {path} cannot be used"),
        ("alice", f"the accounts file {path} cannot be used"),
    ]
    jwt = UserIdentity(5, b"some.jwt", positive_response_requested=True)
    assert users.verify_user_identity(info(), jwt) is None
    ac = answer(harness, jwt)
    assert isinstance(ac, AssociateAccept) and ac.user_information.user_identity_response is None
    assert "the accounts file is broken" in users.description
    assert len(of_kind(log_events, "users.accounts-broken")) == 1
    everything = repr(log_events) + "".join(formatEvent(e) or "" for e in log_events)
    assert "builder" not in everything
    rewrite(path, ACCOUNTS)
    assert isinstance(answer(harness, alice), AssociateAccept)
    assert users.table.broken is None
    assert users.description == f"User Identity verification from {path}"


def test_a_broken_file_still_lets_a_later_verifier_accept(tmp_path: Path) -> None:
    """A refusal, like any: a directory after the broken table may still accept its users."""
    harness = users_server(tmp_path, BROKEN, extra_addins={"zz_recorder.py": RECORDER})
    assert isinstance(answer(harness, UserIdentity(2, b"ldap-user", b"pw")), AssociateAccept)
    assert answer(harness, UserIdentity(2, b"alice", b"secret")) == (1, 2, 1)


def test_an_unreadable_file_at_start_is_broken(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """A file that exists but cannot be opened (here a directory in its place) is broken,
    not missing: refused, one error saying it cannot be read; a real file then is read."""
    harness = users_server(tmp_path, None, extra_files={"user-accounts.toml/x": ""})
    path = harness.server.server_dir / "user-accounts.toml"
    [error] = of_kind(log_events, "users.accounts-broken")
    assert f"{path}: cannot be read" in (formatEvent(error) or "")
    assert of_kind(log_events, "users.no-accounts") == []
    assert answer(harness, UserIdentity(1, b"ct-room-1")) == (1, 2, 1)
    (path / "x").unlink()
    path.rmdir()
    rewrite(path, ACCOUNTS)
    assert isinstance(answer(harness, UserIdentity(1, b"ct-room-1")), AssociateAccept)


def test_an_empty_file_means_no_accounts(tmp_path: Path) -> None:
    """An empty file is valid and configures a table with nobody in it: all refused."""
    harness = users_server(tmp_path, "")
    assert users_addin(harness).table.current() == {}
    assert answer(harness, UserIdentity(1, b"ct-room-1")) == (1, 2, 1)


def _said_at_start(log_events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in log_events if e.get("log_namespace") == "pacsref.addin.users"]


def test_a_missing_file_is_said_once_at_info(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """No accounts file with default options (most servers): one info line naming the path,
    no warning; identities are carried unverified, and nothing more is logged per request."""
    harness = users_server(tmp_path, None)
    path = harness.server.server_dir / "user-accounts.toml"
    [line] = _said_at_start(log_events)
    assert line["kind"] == "users.no-accounts" and line["log_level"].name == "info"
    assert str(path) in (formatEvent(line) or "")
    assert isinstance(answer(harness, UserIdentity(1, b"alice")), AssociateAccept)
    assert isinstance(answer(harness, UserIdentity(1, b"alice")), AssociateAccept)
    assert len(_said_at_start(log_events)) == 1


@pytest.mark.parametrize(
    "options",
    [{"accounts_file": "people.toml"}, {"require_identity": True}],
    ids=["named-file", "require-identity"],
)
def test_a_missing_file_someone_meant_is_one_warning(
    tmp_path: Path, options: dict[str, object], log_events: list[dict[str, Any]]
) -> None:
    """An accounts_file set, or require_identity on, yet no file: one warning naming it."""
    harness = users_server(tmp_path, None, options=options)
    [line] = _said_at_start(log_events)
    assert line["kind"] == "users.no-accounts" and line["log_level"].name == "warn"
    assert str(users_addin(harness).table.path) in (formatEvent(line) or "")


@pytest.mark.parametrize("absolute", [False, True])
def test_accounts_file_option_names_another_file(tmp_path: Path, absolute: bool) -> None:
    """``accounts_file``: relative to the server directory (not the working directory), or
    absolute; the default file, broken here, is then not read."""
    other = tmp_path / "PACSREF" / "conf" / "people.toml"
    harness = users_server(
        tmp_path,
        "not toml [",
        options={"accounts_file": str(other) if absolute else "conf/people.toml"},
        extra_files={"conf/people.toml": ACCOUNTS},
    )
    assert users_addin(harness).table.path == other
    assert isinstance(answer(harness, UserIdentity(1, b"ct-room-1")), AssociateAccept)


def test_outside_a_server_directory_it_loads_and_abstains() -> None:
    """Loaded from the shipped folder itself (no server directory to resolve the default
    relative path against): it loads, strictly, and abstains instead of failing the load."""
    shipped = Path(__file__).resolve().parents[2] / "addins"
    result = load_addins(shipped, entry_point_group=None, strict=True)
    [users] = [a for a in result.addins if a.name == "users"]
    assert users.table is None
    assert users.verify_user_identity(info(), UserIdentity(2, b"alice", b"secret")) is None


def test_passcode_false_is_an_account_entered_by_username_alone() -> None:
    """``passcode = false`` is the only way to say an account has no passcode."""
    accounts = parse_accounts('[users."ct-room-1"]\npasscode = false\n', "f.toml")
    assert dict(accounts) == {"ct-room-1": None}


#: ct-room-1 with a passcode, and the same file cut short as a reader may find it mid-write:
#: its table written, its passcode line not yet.
WITH_PASSCODE = f'[users."ct-room-1"]\npasscode = "{GOOD}"\n'
HALF_WRITTEN = WITH_PASSCODE[: WITH_PASSCODE.index("passcode")]


def test_a_half_written_account_is_not_a_username_only_account(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """An account table with no passcode key is a problem, never "no passcode": read between
    two writes, the file does not let ct-room-1 in by username alone. After a good version
    that version stays in use; before one (at start) the table is broken."""
    harness = users_server(tmp_path, WITH_PASSCODE)
    path = harness.server.server_dir / "user-accounts.toml"
    ct_room = UserIdentity(1, b"ct-room-1")
    assert answer(harness, ct_room) == (1, 2, 1)
    rewrite(path, HALF_WRITTEN)
    assert answer(harness, ct_room) == (1, 2, 1)
    [error] = of_kind(log_events, "users.reload-failed")
    assert f"{path}: users.ct-room-1.passcode: missing" in (formatEvent(error) or "")
    assert isinstance(answer(harness, UserIdentity(2, b"ct-room-1", b"secret")), AssociateAccept)
    (tmp_path / "again").mkdir()
    at_start = users_server(tmp_path / "again", HALF_WRITTEN)
    assert answer(at_start, ct_room) == (1, 2, 1)
    assert users_addin(at_start).table.broken is not None
