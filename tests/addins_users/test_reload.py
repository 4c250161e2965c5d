"""Edits of the accounts file apply without a restart; broken edits never loosen anything.

After a good version, a broken edit (or a deletion) keeps the accounts read before; before
any good version, a broken file refuses every username (fail closed). The file is checked at
each verification (a stat on the pool thread) and re-read when its signature changes.
``rewrite`` moves the mtime on explicitly, so nothing here sleeps.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import formatEvent

from pacsref.ul.events import AssociateAccept, UserIdentity

from .helpers import (
    ACCOUNTS,
    answer,
    cheap_hash,
    info,
    of_kind,
    rewrite,
    users_addin,
    users_server,
)

BOB = f'[users.bob]\npasscode = "{cheap_hash(b"builder")}"\n'
ALICE = UserIdentity(2, b"alice", b"secret")
BOB_ID = UserIdentity(2, b"bob", b"builder")


def _accounts(harness: Any) -> Path:
    return harness.server.server_dir / "user-accounts.toml"


def test_an_edit_applies_at_the_next_association(tmp_path: Path) -> None:
    """A user added is accepted, a user removed refused, with no restart in between."""
    harness = users_server(tmp_path)
    assert answer(harness, BOB_ID) == (1, 2, 1)
    rewrite(_accounts(harness), ACCOUNTS + BOB)
    assert isinstance(answer(harness, BOB_ID), AssociateAccept)
    rewrite(_accounts(harness), BOB)
    assert answer(harness, ALICE) == (1, 2, 1)


def test_an_unchanged_file_is_not_read_again(tmp_path: Path, monkeypatch: Any) -> None:
    """Verifications of an unchanged file cost a stat, not a read and a parse."""
    harness = users_server(tmp_path)
    table = users_addin(harness).table
    module = sys.modules[type(table).__module__]
    reads: list[Path] = []
    original = module.read_accounts

    def counting(path: Path) -> Any:
        reads.append(path)
        return original(path)

    monkeypatch.setattr(module, "read_accounts", counting)
    for _ in range(3):
        assert isinstance(answer(harness, ALICE), AssociateAccept)
    assert reads == []
    rewrite(_accounts(harness), ACCOUNTS + BOB)
    answer(harness, ALICE)
    assert reads == [_accounts(harness)]


def test_a_broken_edit_keeps_the_accounts_and_is_reported_once(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """A file that no longer parses: the accounts read before stay in use (nobody locked out,
    nobody let in), one error names the file and the problem; fixing it takes effect."""
    harness = users_server(tmp_path)
    path = _accounts(harness)
    rewrite(path, ACCOUNTS + '[users.bob]\npasscode = "builder"\n')
    for _ in range(3):
        assert isinstance(answer(harness, ALICE), AssociateAccept)
        assert answer(harness, BOB_ID) == (1, 2, 1)
    [error] = of_kind(log_events, "users.reload-failed")
    assert error["log_level"].name == "error"
    text = formatEvent(error) or ""
    assert f"{path}: users.bob.passcode: not a passcode hash" in text
    assert "keeping the 3 account(s)" in text and '"builder"' not in text
    assert of_kind(log_events, "users.accounts-broken") == []
    assert users_addin(harness).table.broken is not None
    assert "using the 3 account(s) read before" in users_addin(harness).description
    rewrite(path, BOB)
    assert isinstance(answer(harness, BOB_ID), AssociateAccept)
    assert answer(harness, ALICE) == (1, 2, 1)
    assert users_addin(harness).table.broken is None


def test_a_deleted_file_keeps_the_accounts(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """The file gone after the start (an editor's delete-and-write, a slip): the accounts in
    use stay, one error says so; an empty file is how every account is removed."""
    harness = users_server(tmp_path)
    _accounts(harness).unlink()
    assert isinstance(answer(harness, ALICE), AssociateAccept)
    assert isinstance(answer(harness, ALICE), AssociateAccept)
    [error] = of_kind(log_events, "users.reload-failed")
    assert "no such file" in (formatEvent(error) or "")
    rewrite(_accounts(harness), "")
    assert answer(harness, ALICE) == (1, 2, 1)


def test_a_file_created_after_the_start_configures_the_table(tmp_path: Path) -> None:
    """Missing at start (abstaining: anything goes, unverified), then written: from the next
    association on, the table judges, with no restart."""
    harness = users_server(tmp_path, None)
    wrong = UserIdentity(2, b"alice", b"wrong")
    assert isinstance(answer(harness, wrong), AssociateAccept)
    rewrite(_accounts(harness), ACCOUNTS)
    assert answer(harness, wrong) == (1, 2, 1)
    assert users_addin(harness).verify_user_identity(info(), ALICE) is True


def test_a_broken_file_before_any_good_one_refuses_everyone(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """Not configured, then the first file to appear is broken: fail closed. Types 1 and 2
    are refused, other types still abstained on, one error per broken version; a later
    good version is taken at the next association."""
    harness = users_server(tmp_path, None)
    users = users_addin(harness)
    path = _accounts(harness)
    rewrite(path, "[users.alice\n")
    assert users.verify_user_identity(info(), ALICE) is False
    assert answer(harness, ALICE) == (1, 2, 1)
    assert answer(harness, UserIdentity(1, b"ct-room-1")) == (1, 2, 1)
    assert users.verify_user_identity(info(), UserIdentity(5, b"some.jwt")) is None
    [error] = of_kind(log_events, "users.accounts-broken")
    assert error["log_level"].name == "error"
    assert f"{path}: cannot be read as TOML" in (formatEvent(error) or "")
    assert of_kind(log_events, "users.reload-failed") == []
    reasons = {e["reason"] for e in of_kind(log_events, "users.refused")}
    assert reasons == {f"the accounts file {path} cannot be used"}
    rewrite(path, '[users.alice]\npasscode = "secret"\n')
    assert answer(harness, ALICE) == (1, 2, 1)
    [_, second] = of_kind(log_events, "users.accounts-broken")
    assert "users.alice.passcode: not a passcode hash" in (formatEvent(second) or "")
    assert '"secret"' not in (formatEvent(second) or "")
    rewrite(path, ACCOUNTS)
    assert isinstance(answer(harness, ALICE), AssociateAccept)
    assert users.table.broken is None


def test_deleting_a_broken_file_does_not_turn_verification_off(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """Broken before any good version, then deleted while running: still refusing (a
    deletion never loosens anything while the server runs), said once."""
    harness = users_server(tmp_path, "[users.alice\n")
    _accounts(harness).unlink()
    assert answer(harness, ALICE) == (1, 2, 1)
    assert answer(harness, ALICE) == (1, 2, 1)
    at_start, deleted = of_kind(log_events, "users.accounts-broken")
    assert "cannot be read as TOML" in (formatEvent(at_start) or "")
    assert f"{_accounts(harness)}: no such file" in (formatEvent(deleted) or "")
    assert "the accounts file is broken" in users_addin(harness).description


def test_a_change_of_mode_alone_is_noticed(tmp_path: Path, monkeypatch: Any) -> None:
    """``chmod``, the fix for an unreadable file, changes the ctime but not the mtime or the
    content: the signature includes the ctime, so the fixed file is read."""
    harness = users_server(tmp_path, None)
    path = _accounts(harness)
    table = users_addin(harness).table
    module = sys.modules[type(table).__module__]
    original = module.read_accounts

    def unreadable(path: Path) -> Any:
        raise module.AccountsFileError([f"{path}: cannot be read: Permission denied"])

    monkeypatch.setattr(module, "read_accounts", unreadable)
    rewrite(path, ACCOUNTS)
    assert answer(harness, ALICE) == (1, 2, 1)
    monkeypatch.setattr(module, "read_accounts", original)
    before = path.stat()
    path.chmod(0o600)
    if path.stat().st_ctime_ns == before.st_ctime_ns:
        pytest.skip("this file system did not move the ctime")
    assert path.stat().st_mtime_ns == before.st_mtime_ns
    assert isinstance(answer(harness, ALICE), AssociateAccept)


def test_a_new_accounts_file_option_is_read_at_the_next_verification(tmp_path: Path) -> None:
    """``accounts_file`` changed while running (admin socket, ``pacsref addins config``):
    nothing is read on the reactor thread; the next verification reads the new file."""
    harness = users_server(tmp_path, extra_files={"other.toml": BOB})
    users = users_addin(harness)
    new = users.options_declaration.validate(
        {"accounts_file": "other.toml"}, addin="users", source="test"
    )
    users.options_changed(new)
    assert users.table.path == harness.server.server_dir / "other.toml"
    assert isinstance(answer(harness, BOB_ID), AssociateAccept)
    assert answer(harness, ALICE) == (1, 2, 1)
