"""negotiate(): SCP/SCU Role Selection as the acceptor (PS3.7 D.3.3.4)."""

from __future__ import annotations

import pytest

from pacsref.association import AcceptedContext, SupportedContext, negotiate, negotiate_roles
from pacsref.ul.constants import ContextResult
from pacsref.ul.events import RoleSelection

from .helpers import (
    CONFIG,
    CT_STORAGE,
    EXPLICIT,
    IMPLICIT,
    JPEG_BASELINE,
    MR_STORAGE,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    VERIFICATION,
    accept_of,
    request,
    results_by_id,
    table,
)

# --- SCP/SCU role selection (PS3.7 D.3.3.4) ----------------------------------------------------

SCP_ONLY = (True, False)
SCU_ONLY = (False, True)
BOTH = (True, True)


@pytest.mark.parametrize(
    ("support", "proposed", "our_roles", "reply"),
    [
        # support = (we SCP, we SCU); proposed/reply = requestor's (SCU, SCP) as on the wire;
        # our_roles = (our SCU, our SCP) or None when the context is refused.
        (SCP_ONLY, None, (False, True), None),
        (SCP_ONLY, (True, False), (False, True), (True, False)),
        (SCP_ONLY, (True, True), (False, True), (True, False)),
        (SCP_ONLY, (False, True), None, None),
        (SCP_ONLY, (False, False), None, None),
        (SCU_ONLY, None, None, None),
        (SCU_ONLY, (True, False), None, None),
        (SCU_ONLY, (False, True), (True, False), (False, True)),
        (SCU_ONLY, (True, True), (True, False), (False, True)),
        (SCU_ONLY, (False, False), None, None),
        (BOTH, None, (False, True), None),
        (BOTH, (True, False), (False, True), (True, False)),
        (BOTH, (False, True), (True, False), (False, True)),
        (BOTH, (True, True), (True, True), (True, True)),
        (BOTH, (False, False), None, None),
    ],
)
def test_role_selection_truth_table(
    support: tuple[bool, bool],
    proposed: tuple[bool, bool] | None,
    our_roles: tuple[bool, bool] | None,
    reply: tuple[bool, bool] | None,
) -> None:
    """A requestor role is granted only if proposed AND we support the mirror role; no sub-item
    means default roles (us SCP); a context left without a role is refused with result 1 and
    gets no reply sub-item."""
    t = table(SupportedContext(CT_STORAGE, (IMPLICIT,), scp_role=support[0], scu_role=support[1]))
    roles = [] if proposed is None else [RoleSelection(CT_STORAGE, *proposed)]
    result = negotiate(
        request((1, VERIFICATION, [IMPLICIT]), (3, CT_STORAGE, [IMPLICIT]), roles=roles), t, CONFIG
    )
    ac = accept_of(result)
    if our_roles is None:
        assert results_by_id(ac)[3][0] == ContextResult.USER_REJECTION
        assert 3 not in result.accepted_contexts
        assert "role" in next(r.reason for r in result.refused if r.context_id == 3).lower()
    else:
        ctx = result.accepted_contexts[3]
        assert (ctx.scu_role, ctx.scp_role) == our_roles
        assert (ctx.peer_scu_role, ctx.peer_scp_role) == (our_roles[1], our_roles[0])
    expected = () if reply is None else (RoleSelection(CT_STORAGE, *reply),)
    assert ac.user_information.role_selections == expected


def test_role_replies_only_for_proposed_and_accepted_sop_classes() -> None:
    """The AC answers role selection only for SOP classes the requestor proposed it for and
    that have an accepted context; proposals for refused or unproposed SOP classes get none,
    and a repeated sub-item is answered once (the first)."""
    t = table(
        SupportedContext(STUDY_ROOT_GET, (IMPLICIT,)),
        SupportedContext(CT_STORAGE, (IMPLICIT,), scp_role=False, scu_role=True),
        SupportedContext(MR_STORAGE, (IMPLICIT,), scp_role=False, scu_role=True),
    )
    roles = [
        RoleSelection(CT_STORAGE, False, True),
        RoleSelection(CT_STORAGE, True, True),  # repeat: ignored
        RoleSelection(MR_STORAGE, False, True),  # MR context refused (TS)
        RoleSelection(STUDY_ROOT_FIND, True, False),  # SOP class not proposed at all
    ]
    req = request(
        (1, STUDY_ROOT_GET, [IMPLICIT]),
        (3, CT_STORAGE, [IMPLICIT]),
        (5, MR_STORAGE, [JPEG_BASELINE]),
        roles=roles,
    )
    result = negotiate(req, t, CONFIG)
    assert accept_of(result).user_information.role_selections == (
        RoleSelection(CT_STORAGE, False, True),
    )
    assert result.accepted_contexts[1] == AcceptedContext(STUDY_ROOT_GET, IMPLICIT, False, True)
    assert result.accepted_contexts[3] == AcceptedContext(CT_STORAGE, IMPLICIT, True, False)


def test_scu_only_sop_class_without_role_selection_is_user_rejected() -> None:
    """A storage SOP class we only declare for C-GET sub-operations is refused (result 1) when
    proposed with default roles: we could not perform the C-STORE the peer would send."""
    t = table(SupportedContext(CT_STORAGE, (IMPLICIT,), scp_role=False, scu_role=True))
    result = negotiate(
        request((1, VERIFICATION, [IMPLICIT]), (3, CT_STORAGE, [IMPLICIT])), t, CONFIG
    )
    refusal = next(r for r in result.refused if r.context_id == 3)
    assert refusal.result == ContextResult.USER_REJECTION
    assert "only act as SCU" in refusal.reason


def test_role_selection_applies_to_every_context_of_the_sop_class() -> None:
    """Role selection is per SOP class (PS3.7 D.3.3.4): all contexts of it share the roles."""
    t = table(SupportedContext(CT_STORAGE, (EXPLICIT, IMPLICIT), scp_role=True, scu_role=True))
    req = request(
        (1, CT_STORAGE, [IMPLICIT]),
        (3, CT_STORAGE, [EXPLICIT]),
        roles=[RoleSelection(CT_STORAGE, True, True)],
    )
    result = negotiate(req, t, CONFIG)
    assert {cid: (c.scu_role, c.scp_role) for cid, c in result.accepted_contexts.items()} == {
        1: (True, True),
        3: (True, True),
    }
    assert accept_of(result).user_information.role_selections == (
        RoleSelection(CT_STORAGE, True, True),
    )


def test_negotiate_roles_reply_never_grants_an_unproposed_role() -> None:
    """The acceptor may turn a proposed 1 into 0 but never a 0 into 1 (PS3.7 D.3.3.4)."""
    both = SupportedContext(CT_STORAGE, (IMPLICIT,), scp_role=True, scu_role=True)
    for scu in (False, True):
        for scp in (False, True):
            reply = negotiate_roles(both, RoleSelection(CT_STORAGE, scu, scp)).reply
            assert reply == RoleSelection(CT_STORAGE, scu, scp)
