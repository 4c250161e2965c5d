"""``require_identity``: requests without a verified User Identity are rejected (1, 2, 1).

The verifier judges only requests that carry an identity, and abstains on some (other
types; no accounts file yet), which the core then carries unverified. Refusing what is left
is an association hook's job, which the add-in takes on only when the option is on, inline
because it reads two fields. A broken accounts file does not take the hook away.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from zope.interface.verify import verifyObject

from pacsref.addin import IAssociationHook
from pacsref.server.notifications import AssociationRefused
from pacsref.ul.constants import PDUType
from pacsref.ul.events import AssociateAccept, UserIdentity

from .helpers import (
    ACCOUNTS,
    RECORDER,
    answer,
    of_kind,
    request,
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
    conn.send(request(None))
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
