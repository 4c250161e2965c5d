"""SCP/SCU Role Selection negotiation (PS3.7 D.3.3.4), as the acceptor.

Perspective matters and is easy to get backwards. On the wire, the SCU-role
and SCP-role fields of the Role Selection sub-item always describe the
*association requestor's* roles, in the A-ASSOCIATE-RQ (what it proposes to
be) and in the A-ASSOCIATE-AC (which of those proposals the acceptor agrees
to; it may turn a proposed 1 into 0, never a 0 into 1). Our own roles are
the mirror image: the requestor acting as SCU means we act as SCP, and the
requestor acting as SCP (e.g. receiving C-GET's C-STORE sub-operations) means
we act as SCU. :class:`~pacsref.association.contexts.SupportedContext` and
:class:`~pacsref.association.negotiated.AcceptedContext` are in *our* terms;
:class:`~pacsref.ul.events.RoleSelection` is in the requestor's.

Truth table (requestor proposal -> our roles) for a SOP class we support as
SCP only (the default declaration):

=====================  ===================  ========================
proposed (SCU, SCP)    reply (SCU, SCP)     our roles
=====================  ===================  ========================
no sub-item            none                 SCP (default roles)
(1, 0)                 (1, 0)               SCP
(1, 1)                 (1, 0)               SCP
(0, 1)                 (0, 0)               none -> context refused
(0, 0)                 (0, 0)               none -> context refused
=====================  ===================  ========================

A context left with no role for us is refused with result 1
(user-rejection): accepting it would give the peer a context on which
neither side may invoke anything. pynetdicom (``presentation.py``
``negotiate_as_acceptor``) refuses such a context the same way, but only
where its own context declares roles; otherwise it, like DCMTK, ignores the
proposal and accepts with the default roles, which leaves the peer believing
it may act as SCP where it may not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pacsref.association.contexts import SupportedContext
from pacsref.ul.events import RoleSelection


@dataclass(frozen=True, slots=True)
class RoleDecision:
    """Our negotiated roles for one SOP class, and the AC sub-item to send.

    ``scu_role``/``scp_role`` are ours; ``reply`` is in the requestor's
    terms (see module docstring) and None when no Role Selection sub-item
    was proposed for the SOP class, since PS3.7 D.3.3.4 only lets the
    acceptor answer a proposal. ``explanation`` says why when no role is left.
    """

    scu_role: bool
    scp_role: bool
    reply: RoleSelection | None
    explanation: str = ""

    @property
    def usable(self) -> bool:
        """At least one side may invoke operations on a context with these roles."""
        return self.scu_role or self.scp_role


def proposed_roles(selections: Iterable[RoleSelection]) -> dict[str, RoleSelection]:
    """The requestor's Role Selection sub-items by SOP class UID, first one wins.

    PS3.7 D.3.3.4 allows one sub-item per SOP class; a repeated one is
    ignored rather than failing the association, and is not answered twice.
    """
    by_uid: dict[str, RoleSelection] = {}
    for selection in selections:
        by_uid.setdefault(selection.sop_class_uid, selection)
    return by_uid


def negotiate_roles(supported: SupportedContext, proposed: RoleSelection | None) -> RoleDecision:
    """Grant each proposed requestor role only if proposed AND we support its mirror.

    Without a sub-item the default roles apply (PS3.7 D.3.3.4: requestor SCU,
    acceptor SCP), which we can honour only if we support the SCP role for
    the SOP class.
    """
    uid = supported.abstract_syntax
    if proposed is None:
        if supported.scp_role:
            return RoleDecision(scu_role=False, scp_role=True, reply=None)
        return RoleDecision(
            scu_role=False,
            scp_role=False,
            reply=None,
            explanation=(
                "we only act as SCU for this SOP class, and the requestor proposed no "
                "SCP/SCU Role Selection, so default roles (us as SCP) would apply"
            ),
        )
    peer_scu = proposed.scu_role and supported.scp_role
    peer_scp = proposed.scp_role and supported.scu_role
    reply = RoleSelection(uid, scu_role=peer_scu, scp_role=peer_scp)
    explanation = ""
    if not (peer_scu or peer_scp):
        explanation = (
            f"role selection proposed requestor SCU={int(proposed.scu_role)} "
            f"SCP={int(proposed.scp_role)}; we support SCP={int(supported.scp_role)} "
            f"SCU={int(supported.scu_role)} for this SOP class, leaving no usable role"
        )
    return RoleDecision(scu_role=peer_scp, scp_role=peer_scu, reply=reply, explanation=explanation)
