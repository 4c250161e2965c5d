"""``require_identity``: requests without a verified User Identity are rejected (1, 2, 1).

The verifier judges only requests that carry an identity, and abstains on some (other
types; no accounts file yet), which the core then carries unverified. Refusing what is left
is an association hook's job, which the add-in takes on only when the option is on, inline
because it reads two fields. Neither a broken accounts file nor a server directory the
add-in cannot find takes the hook away.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.logger import formatEvent
from zope.interface.verify import verifyObject

from pacsref.addin import IAssociationHook, load_addins
from pacsref.server.create import shipped_addins_dir
from pacsref.server.notifications import AssociationRefused
from pacsref.ul.constants import PDUType
from pacsref.ul.events import REJECT_USER_IDENTITY, AssociateAccept, UserIdentity
from tests.server.helpers import associate_rq

from .helpers import (
    ACCOUNTS,
    RECORDER,
    answer,
    info,
    of_kind,
    options_text,
    rewrite,
    users_addin,
    users_server,
)

REQUIRED = {"require_identity": True}


def test_a_request_without_identity_is_rejected_1_2_1(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """No User Identity sub-item: A-ASSOCIATE-RJ (1, 2, 1), refused by this add-in, logged."""
    harness = users_server(tmp_path, options=REQUIRED)
    users = users_addin(harness)
    verifyObject(IAssociationHook, users)
    assert answer(harness, None) == (1, 2, 1)
    [refused] = [e for e in harness.events if isinstance(e, AssociationRefused)]
    assert refused.rule == "addin" and "add-in users refused" in refused.why
    [line] = of_kind(log_events, "users.refused")
    assert line["reason"] == "no User Identity sent"


def test_the_hook_answers_inline(tmp_path: Path) -> None:
    """Marked nonblocking: the rejection is sent before any thread-pool job runs."""
    harness = users_server(tmp_path, options=REQUIRED)
    conn = harness.connect()
    conn.send(associate_rq())
    assert harness.threadpool.pending == []
    [(pdu_type, body)] = conn.received()
    assert pdu_type is PDUType.A_ASSOCIATE_RJ and tuple(body[1:4]) == (1, 2, 1)


def test_a_verified_identity_passes_the_hook(tmp_path: Path) -> None:
    """With an identity the verifier decided: accepted users get through, others do not."""
    harness = users_server(tmp_path, options=REQUIRED)
    assert isinstance(answer(harness, UserIdentity(1, b"ct-room-1")), AssociateAccept)
    assert answer(harness, UserIdentity(1, b"alice")) == (1, 2, 1)


@pytest.mark.parametrize(
    ("accounts", "identity"),
    [
        ("", UserIdentity(5, b"some.jwt")),
        (None, UserIdentity(2, b"alice", b"secret")),
    ],
    ids=["type-nobody-checks", "no-accounts-file"],
)
def test_an_identity_every_verifier_abstained_on_is_rejected(
    tmp_path: Path,
    accounts: str | None,
    identity: UserIdentity,
    log_events: list[dict[str, Any]],
) -> None:
    """An identity nobody judged proves as little as none: a token with no verifier for it,
    or any username while the accounts file is missing, is rejected (1, 2, 1)."""
    harness = users_server(tmp_path, accounts, options=REQUIRED)
    assert answer(harness, identity) == (1, 2, 1)
    [line] = of_kind(log_events, "users.refused")
    assert line["reason"].endswith("not verified: every verifier abstained")


def test_an_identity_another_verifier_accepted_passes(tmp_path: Path) -> None:
    """Verified by another add-in (here a token): the hook lets it through."""
    harness = users_server(tmp_path, options=REQUIRED, extra_addins={"zz_rec.py": RECORDER})
    assert isinstance(answer(harness, UserIdentity(5, b"ok")), AssociateAccept)


def test_without_the_option_no_identity_is_fine(tmp_path: Path) -> None:
    """Option off (the default): no hook, requests without an identity are accepted."""
    harness = users_server(tmp_path)
    assert not IAssociationHook.providedBy(users_addin(harness))
    assert isinstance(answer(harness, None), AssociateAccept)


def test_a_broken_accounts_file_at_start_still_enforces_it(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """The add-in loads with its file broken and keeps the hook: no identity, an abstained
    JWT and a username (refused by the broken table) are all rejected (1, 2, 1); once the
    file is fixed, alice gets in."""
    harness = users_server(tmp_path, "[users.alice\n", options=REQUIRED)
    users = users_addin(harness)
    assert users in harness.server.addins
    verifyObject(IAssociationHook, users)
    assert users.description.endswith("requests without a verified User Identity are rejected")
    alice = UserIdentity(2, b"alice", b"secret")
    for identity in (None, UserIdentity(5, b"some.jwt"), alice):
        assert answer(harness, identity) == (1, 2, 1)
    reasons = [e["reason"] for e in of_kind(log_events, "users.refused")]
    assert reasons[0] == "no User Identity sent"
    assert reasons[1].endswith("not verified: every verifier abstained")
    assert reasons[2].startswith("the accounts file ") and reasons[2].endswith("cannot be used")
    rewrite(harness.server.server_dir / "user-accounts.toml", ACCOUNTS)
    assert isinstance(answer(harness, alice), AssociateAccept)
    assert answer(harness, None) == (1, 2, 1)


def test_a_symlinked_addin_folder_still_finds_its_server(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """``<server dir>/addins/users`` a symbolic link to a shared copy of the add-in: the
    add-in still finds its server directory (the link is not followed out of it), reads the
    server's accounts file and enforces ``require_identity``."""
    harness = users_server(tmp_path, options=REQUIRED, linked=True)
    server_dir = harness.server.server_dir
    assert (server_dir / "addins" / "users").is_symlink()
    users = users_addin(harness)
    assert users.server_dir == server_dir
    assert users.table.path == server_dir / "user-accounts.toml"
    verifyObject(IAssociationHook, users)
    assert answer(harness, None) == (1, 2, 1)
    assert answer(harness, UserIdentity(2, b"alice", b"wrong")) == (1, 2, 1)
    assert isinstance(answer(harness, UserIdentity(2, b"alice", b"secret")), AssociateAccept)
    assert of_kind(log_events, "users.accounts-broken") == []


@pytest.mark.parametrize(
    "options",
    [{"require_identity": True}, {"accounts_file": "people.toml"}],
    ids=["require-identity", "accounts-file"],
)
def test_without_a_server_directory_what_was_asked_for_fails_closed(
    tmp_path: Path, options: dict[str, object], log_events: list[dict[str, Any]]
) -> None:
    """Loaded where it finds no server directory, with a relative accounts file it cannot
    place, but options showing verification was meant: one error, the table taken as
    broken (types 1 and 2 refused, others abstained on), and ``require_identity`` still
    installs the hook, which rejects every request without a verified identity."""
    (tmp_path / "addin-options").mkdir()
    (tmp_path / "addin-options" / "users.toml").write_text(options_text(**options))
    result = load_addins(
        shipped_addins_dir(), entry_point_group=None, options_dir=tmp_path / "addin-options"
    )
    [users] = [a for a in result.addins if a.name == "users"]
    assert users.table is None
    [error] = of_kind(log_events, "users.accounts-broken")
    assert error["log_level"].name == "error"
    assert "is a relative path: every username" in (formatEvent(error) or "")
    for identity in (UserIdentity(1, b"ct-room-1"), UserIdentity(2, b"alice", b"secret")):
        assert users.verify_user_identity(info(identity), identity) is False
    assert users.verify_user_identity(info(), UserIdentity(5, b"some.jwt")) is None
    [refused, *_] = of_kind(log_events, "users.refused")
    assert refused["reason"].startswith("no server directory to find the accounts file")
    assert "every username is refused" in users.description
    required = bool(options.get("require_identity"))
    assert IAssociationHook.providedBy(users) is required
    if required:
        verifyObject(IAssociationHook, users)
        assert users.association_requested(info()) is REJECT_USER_IDENTITY
