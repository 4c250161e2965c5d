"""The outcome of association negotiation, as later layers consume it.

Negotiation (:mod:`pacsref.association.negotiation`) turns an A-ASSOCIATE-RQ
into a response PDU *and* a :class:`NegotiatedAssociation`: the facts the DIMSE
layer and the add-ins need for the life of the association (which context ID
carries which SOP class in which transfer syntax and in which roles, how big
our P-DATA-TF PDUs may be), so nothing downstream re-parses the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pacsref.association.contexts import uid_label
from pacsref.ul.constants import ContextResult


@dataclass(frozen=True, slots=True)
class AcceptedContext:
    """One accepted presentation context (PS3.8 9.3.3.2) with its negotiated roles.

    ``scu_role``/``scp_role`` are *our* (the acceptor's) roles on this
    context after SCP/SCU Role Selection (PS3.7 D.3.3.4). The peer's roles are
    the mirror image: we may only send requests (e.g. C-STORE sub-operations
    of a C-GET) on a context where ``scu_role`` is True, and only answer
    requests where ``scp_role`` is True.
    """

    abstract_syntax: str
    transfer_syntax: str
    scu_role: bool = False
    scp_role: bool = True

    @property
    def peer_scu_role(self) -> bool:
        """The requestor may invoke operations on this context."""
        return self.scp_role

    @property
    def peer_scp_role(self) -> bool:
        """The requestor performs operations we invoke on this context."""
        return self.scu_role


@dataclass(frozen=True, slots=True)
class RefusedContext:
    """One proposed presentation context we did not accept, with why (for logs)."""

    context_id: int
    abstract_syntax: str
    result: ContextResult
    reason: str

    def describe(self) -> str:
        """'context 5 (CT Image Storage (...)) refused: transfer-syntaxes-not-supported: ...'."""
        code = self.result.name.lower().replace("_", "-")
        return (
            f"context {self.context_id} ({uid_label(self.abstract_syntax)}) refused: "
            f"{code} ({int(self.result)}): {self.reason}"
        )


def _frozen_contexts(contexts: Mapping[int, AcceptedContext]) -> Mapping[int, AcceptedContext]:
    return MappingProxyType(dict(sorted(contexts.items())))


@dataclass(frozen=True, slots=True)
class NegotiatedAssociation:
    """Everything an established association needs to remember from its negotiation.

    ``peer_max_pdu_length`` bounds the P-DATA-TF PDUs *we send* and
    ``our_max_pdu_length`` what we announced we can receive; 0 means
    unlimited in both (PS3.8 D.1). ``contexts`` maps presentation context ID
    to the accepted context; ``refused`` lists the proposals we refused.
    """

    calling_ae_title: str
    called_ae_title: str
    our_ae_title: str
    peer_max_pdu_length: int
    our_max_pdu_length: int
    contexts: Mapping[int, AcceptedContext] = field(hash=False)
    peer_implementation_class_uid: str = ""
    peer_implementation_version_name: str = ""
    refused: tuple[RefusedContext, ...] = ()
    #: User Information sub-items we did not interpret (SOP class
    #: extended negotiation, ...), as (item type, raw value), for add-ins.
    peer_other_items: tuple[tuple[int, bytes], ...] = ()

    def __post_init__(self) -> None:
        # A read-only view, so a frozen association cannot grow contexts later.
        object.__setattr__(self, "contexts", _frozen_contexts(self.contexts))

    def accepted_transfer_syntaxes(self) -> dict[int, str]:
        """Context ID -> accepted transfer syntax: what the DIMSE layer decodes with."""
        return {cid: ctx.transfer_syntax for cid, ctx in self.contexts.items()}

    def context(self, context_id: int) -> AcceptedContext | None:
        """The accepted context with this ID, or None (a PDV on it is a protocol error)."""
        return self.contexts.get(context_id)

    def contexts_for(self, abstract_syntax: str) -> dict[int, AcceptedContext]:
        """The accepted contexts carrying ``abstract_syntax`` (there may be several,
        one per transfer syntax), e.g. to pick one for a C-GET sub-operation."""
        return {
            cid: ctx for cid, ctx in self.contexts.items() if ctx.abstract_syntax == abstract_syntax
        }
