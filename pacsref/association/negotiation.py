"""Association negotiation as the acceptor, as pure functions (PS3.8 9.3.2/9.3.3, PS3.7 Annex D).

:func:`negotiate` takes the A-ASSOCIATE-RQ the upper layer indicated, the
server's :class:`~pacsref.association.contexts.ContextTable` and its
:class:`AcceptorConfig`, and returns the response to send plus everything the
rest of the association needs (:class:`NegotiationResult`). No IO and no
Twisted here, so every rule is unit-testable with plain values.

Out of scope on purpose: called/calling AE title policy (who may associate)
is decided before negotiation, by the acceptance policy, with the
``REJECT_CALLED_AE``/``REJECT_CALLING_AE`` answers of :mod:`pacsref.ul.events`.

Decisions, and where they come from:

* **Transfer syntax: our preference wins.** PS3.8 9.3.2.2 gives the proposed
  transfer syntaxes no order of preference and PS3.8 9.3.3.2 lets the acceptor
  pick any one of them, so we pick the first of *our* list
  (:attr:`SupportedContext.transfer_syntaxes`) that was proposed. The server
  then controls what it stores, e.g. explicit VR little endian over implicit
  (see :data:`~pacsref.association.contexts.UNCOMPRESSED_TRANSFER_SYNTAXES`),
  as DCMTK's ``storescp`` does by default.
* **No context accepted: reject (1, 1, 1).** PS3.8 does not forbid an
  A-ASSOCIATE-AC whose every context is refused, and pynetdicom 3.0 as
  acceptor sends one (``acse.py`` ``_negotiate_as_acceptor``), only for its
  own requestor side to abort at once ("No accepted presentation contexts").
  DCMTK's ``DcmSCP::processAssociationRQ`` instead refuses with
  rejected-permanent / service-user / no-reason-given
  (``DCMSCP_NO_PRESENTATION_CONTEXTS``), and the issue this implements says
  the association succeeds only if some context is accepted. A reject tells
  the peer plainly that it can do nothing here, without an AC + A-ABORT
  round trip, so we follow DCMTK.
* **Duplicate presentation context IDs** (PS3.8 7.1.1.13 makes the ID
  identify the context, so they must be unique): the first proposal with an
  ID is negotiated normally; later ones are refused with result 2
  (no-reason, provider rejection) in :attr:`NegotiationResult.refused` but are
  *not* put in the A-ASSOCIATE-AC, because a second result item with the same
  ID would make our AC ambiguous too: a requestor that indexes results by ID
  (pynetdicom builds a dict, last wins) could see the first, accepted context
  as refused.
* **Refused contexts still carry a transfer syntax sub-item** (PS3.8 9.3.3.2,
  Table 9-18: it is not significant and "shall not be tested when received" when
  the result is not acceptance), but some decoders fail on an empty or
  missing one (pynetdicom issues #342, #361), so we echo the first proposed
  transfer syntax, or implicit VR little endian when that is not a UID.
* **Max PDU.** We announce :attr:`AcceptorConfig.max_pdu_length`; the peer's
  value bounds what we send (0 = unlimited, PS3.8 D.1). A nonzero peer limit
  below :data:`~pacsref.ul.constants.MINIMUM_PEER_MAX_PDU` cannot carry one
  byte of PDV data (PS3.8 9.3.5.1), so we reject (1, 1, 1) rather than
  accept an association on which no message could ever be sent.
* **Asynchronous Operations Window** (PS3.7 D.3.3.3): answered with (1, 1)
  when proposed, since we perform operations one at a time; omitted otherwise
  (PS3.7 D.3.3.3: absence means the default, one and one).
* **Protocol version**: only bit 0 is tested (PS3.8 9.3.2); without it,
  reject (1, 2, 2) protocol-version-not-supported.
* User Information sub-items we do not interpret (extended negotiation) get no
  answer, which PS3.7 D.3.3.5 allows; they are kept in
  :attr:`NegotiatedAssociation.peer_other_items` for add-ins. The User Identity
  sub-item (D.3.3.7) is decoded and verified after negotiation, by add-ins
  (:mod:`pacsref.server.acceptance`), which may add the response to our AC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pacsref.association.contexts import (
    ContextTable,
    check_uid,
    is_uid,
    uid_label,
)
from pacsref.association.negotiated import AcceptedContext, NegotiatedAssociation, RefusedContext
from pacsref.association.roles import RoleDecision, negotiate_roles, proposed_roles
from pacsref.ul.constants import (
    DICOM_APPLICATION_CONTEXT,
    IMPLICIT_VR_LITTLE_ENDIAN,
    MINIMUM_PEER_MAX_PDU,
    ContextResult,
)
from pacsref.ul.events import (
    REJECT_APPLICATION_CONTEXT,
    REJECT_NO_REASON,
    REJECT_PROTOCOL_VERSION,
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    PresentationContextProposal,
    PresentationContextResult,
    RoleSelection,
    UserInformation,
)

#: Implementation Class UID of pacsref (docs/CONTRACTS.md, Identity).
DEFAULT_IMPLEMENTATION_CLASS_UID = "2.25.301404248454960653866452990530993571449"
#: Implementation Version Name of pacsref (docs/CONTRACTS.md, Identity).
DEFAULT_IMPLEMENTATION_VERSION_NAME = "PACSREF_010"
#: The Max PDU Length (PS3.8 D.1 Maximum Length) we announce, as acceptor and as
#: requestor, unless configured (``max_pdu_length`` in settings.toml, which takes this
#: value: pacsref.settings.fields imports it). 128 KiB because DCMTK's storescu sends
#: P-DATA-TF PDUs of min(our maximum, 131072) ("Max Send PDV: 131060"): a 512 KiB image
#: then arrives as 4 PDUs instead of 32 with 16384 (DCMTK's own ASC_DEFAULTMAXPDU).
#: ``python bench/receive_path.py --pdu 16384`` vs ``--pdu 131072`` measured 436-477 vs
#: 313-323 us of reactor-thread CPU per 512 KiB object, and 16 parallel storescu clients
#: storing 400 x 512 KiB durably took 1.27 s vs 1.02 s (median of 4 alternating pairs).
#: 131072 is the largest value DCMTK (storescp --max-pdu 4096..131072) and Orthanc
#: (MaximumPduLength) accept for their own setting, so peers are used to it. An
#: association buffers at most one PDU, so memory stays bounded (128 KiB each). Any
#: 4096..2**32-1, or 0 (unlimited), can still be configured.
DEFAULT_MAX_PDU_LENGTH = 131072

#: Our answer to a proposed Asynchronous Operations Window: one operation
#: invoked, one performed at a time (PS3.7 D.3.3.3).
SYNCHRONOUS_WINDOW = (1, 1)


@dataclass(frozen=True, slots=True)
class AcceptorConfig:
    """Who we are on the wire when we accept an association (PS3.7 D.3.3.1-2).

    ``max_pdu_length`` is the largest P-DATA-TF PDU we are willing to
    *receive*, announced in the A-ASSOCIATE-AC; 0 means unlimited (PS3.8 D.1).
    """

    ae_title: str
    implementation_class_uid: str = DEFAULT_IMPLEMENTATION_CLASS_UID
    implementation_version_name: str = DEFAULT_IMPLEMENTATION_VERSION_NAME
    max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH

    def __post_init__(self) -> None:
        # Fail when the server is configured, not at the first association.
        if not (
            0 < len(self.ae_title.strip(" ")) <= 16
            and len(self.ae_title) <= 16
            and "\\" not in self.ae_title
            and all(0x20 <= ord(c) <= 0x7E for c in self.ae_title)
        ):
            raise ValueError(
                f"AE title {self.ae_title!r} must be 1-16 printable ASCII characters, "
                "not all spaces, no backslash (PS3.5 6.2, AE)"
            )
        check_uid("implementation class UID", self.implementation_class_uid)
        if len(self.implementation_version_name) > 16:
            raise ValueError(
                f"implementation version name {self.implementation_version_name!r} "
                "is longer than 16 characters (PS3.7 D.3.3.2)"
            )
        if not (
            self.max_pdu_length == 0 or MINIMUM_PEER_MAX_PDU <= self.max_pdu_length <= 0xFFFFFFFF
        ):
            raise ValueError(
                f"max PDU length {self.max_pdu_length} must be 0 (unlimited) or "
                f"{MINIMUM_PEER_MAX_PDU}..{0xFFFFFFFF}"
            )


_EMPTY_CONTEXTS: Mapping[int, AcceptedContext] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class NegotiationResult:
    """What :func:`negotiate` decided.

    ``response`` is the primitive to hand to the upper layer. ``association``
    is set only when ``response`` is an :class:`AssociateAccept`. ``reason``
    says in words why the association was rejected ("" when accepted);
    ``refused`` lists every proposed context we refused and why, also when
    the association as a whole was rejected for want of any accepted context.
    """

    response: AssociateAccept | AssociateReject
    association: NegotiatedAssociation | None = None
    reason: str = ""
    refused: tuple[RefusedContext, ...] = ()

    @property
    def accepted(self) -> bool:
        """True when the response is an A-ASSOCIATE-AC."""
        return isinstance(self.response, AssociateAccept)

    @property
    def accepted_contexts(self) -> Mapping[int, AcceptedContext]:
        """Context ID -> accepted context (empty when rejected)."""
        return self.association.contexts if self.association is not None else _EMPTY_CONTEXTS

    def log_lines(self) -> list[str]:
        """Human-readable lines for the service log: the verdict, then each refusal."""
        if isinstance(self.response, AssociateReject):
            lines = [f"association {self.response.describe()}: {self.reason}"]
        else:
            lines = [f"association accepted with {len(self.accepted_contexts)} context(s)"]
        lines.extend(refusal.describe() for refusal in self.refused)
        return lines


def choose_transfer_syntax(ours: tuple[str, ...], proposed: tuple[str, ...]) -> str | None:
    """The first of *our* transfer syntaxes that the requestor proposed, or None.

    Our order decides, not the requestor's: PS3.8 9.3.2.2 attaches no
    preference to the order of proposed transfer syntaxes, and the acceptor
    chooses (PS3.8 9.3.3.2).
    """
    offered = frozenset(proposed)
    return next((ts for ts in ours if ts in offered), None)


def placeholder_transfer_syntax(proposal: PresentationContextProposal) -> str:
    """The transfer syntax sub-item to send with a refused context.

    Not significant to the receiver (PS3.8 Table 9-18), but a real UID keeps
    strict decoders happy: the first proposed one, else implicit VR little endian.
    """
    first = proposal.transfer_syntaxes[0] if proposal.transfer_syntaxes else ""
    return first if is_uid(first) else IMPLICIT_VR_LITTLE_ENDIAN


def _negotiate_context(
    proposal: PresentationContextProposal,
    table: ContextTable,
    roles: Mapping[str, RoleSelection],
) -> AcceptedContext | RefusedContext:
    """Decide one presentation context (PS3.8 9.3.3.2 result codes 0, 1, 3, 4)."""

    def refuse(result: ContextResult, reason: str) -> RefusedContext:
        return RefusedContext(proposal.context_id, proposal.abstract_syntax, result, reason)

    supported = table.get(proposal.abstract_syntax)
    if supported is None:
        return refuse(
            ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED,
            "no installed add-in supports this abstract syntax",
        )
    chosen = choose_transfer_syntax(supported.transfer_syntaxes, proposal.transfer_syntaxes)
    if chosen is None:
        offered = ", ".join(uid_label(ts) for ts in proposal.transfer_syntaxes) or "none"
        ours = ", ".join(uid_label(ts) for ts in supported.transfer_syntaxes)
        return refuse(
            ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED,
            f"proposed [{offered}], we support [{ours}]",
        )
    decision: RoleDecision = negotiate_roles(supported, roles.get(proposal.abstract_syntax))
    if not decision.usable:
        return refuse(ContextResult.USER_REJECTION, decision.explanation)
    return AcceptedContext(
        proposal.abstract_syntax, chosen, scu_role=decision.scu_role, scp_role=decision.scp_role
    )


#: Refused contexts named in a rejection's reason; the rest are counted.
_REFUSALS_NAMED = 5


def _refusals_in_brief(refused: list[RefusedContext]) -> str:
    """Why each context was refused, for the log line and the AssociationRefused notification
    of a rejection: an administrator must see which syntax to add without a packet capture."""
    named = "; ".join(r.describe() for r in refused[:_REFUSALS_NAMED])
    more = len(refused) - _REFUSALS_NAMED
    return named + (f"; and {more} more" if more > 0 else "")


def _reject(
    response: AssociateReject, reason: str, refused: tuple[RefusedContext, ...] = ()
) -> NegotiationResult:
    return NegotiationResult(response=response, reason=reason, refused=refused)


def negotiate(
    request: AssociateRequest, table: ContextTable, config: AcceptorConfig
) -> NegotiationResult:
    """Answer an A-ASSOCIATE-RQ as the association acceptor.

    Checks, in order: protocol version (PS3.8 9.3.2), application context
    name (PS3.7 A.2.1), the peer's Max PDU Length (PS3.8 D.1), then each
    presentation context (PS3.8 9.3.3.2) with SCP/SCU Role Selection
    (PS3.7 D.3.3.4). See the module docstring for the decisions and their
    sources. Never raises for anything a peer can put in a request.
    """
    if not request.protocol_version & 1:
        return _reject(
            REJECT_PROTOCOL_VERSION,
            f"protocol version 0x{request.protocol_version:04x} lacks version 1 (bit 0)",
        )
    if request.application_context != DICOM_APPLICATION_CONTEXT:
        return _reject(
            REJECT_APPLICATION_CONTEXT,
            f"application context name {uid_label(request.application_context)} is not "
            f"the DICOM application context {DICOM_APPLICATION_CONTEXT}",
        )
    peer_info = request.user_information
    peer_max = peer_info.max_pdu_length
    if 0 < peer_max < MINIMUM_PEER_MAX_PDU:
        return _reject(
            REJECT_NO_REASON,
            f"peer max PDU length {peer_max} is below {MINIMUM_PEER_MAX_PDU}, "
            "too small to carry a single presentation data value",
        )

    roles = proposed_roles(peer_info.role_selections)
    results: list[PresentationContextResult] = []
    accepted: dict[int, AcceptedContext] = {}
    refused: list[RefusedContext] = []
    answered_ids: set[int] = set()
    for proposal in request.presentation_contexts:
        if proposal.context_id in answered_ids:
            refused.append(
                RefusedContext(
                    proposal.context_id,
                    proposal.abstract_syntax,
                    ContextResult.NO_REASON,
                    "duplicate presentation context ID; only the first proposal with "
                    "this ID is answered in the A-ASSOCIATE-AC",
                )
            )
            continue
        answered_ids.add(proposal.context_id)
        outcome = _negotiate_context(proposal, table, roles)
        if isinstance(outcome, AcceptedContext):
            accepted[proposal.context_id] = outcome
            results.append(
                PresentationContextResult(
                    proposal.context_id, ContextResult.ACCEPTANCE, outcome.transfer_syntax
                )
            )
        else:
            refused.append(outcome)
            results.append(
                PresentationContextResult(
                    proposal.context_id, outcome.result, placeholder_transfer_syntax(proposal)
                )
            )

    if not accepted:
        count = len(request.presentation_contexts)
        why = (
            "no presentation context was proposed"
            if count == 0
            else f"none of the {count} proposed presentation context(s) could be accepted: "
            + _refusals_in_brief(refused)
        )
        return _reject(REJECT_NO_REASON, why, tuple(refused))

    accepted_syntaxes = {ctx.abstract_syntax for ctx in accepted.values()}
    role_replies = tuple(
        negotiate_roles(table[uid], selection).reply
        for uid, selection in roles.items()
        if uid in accepted_syntaxes
    )
    our_info = UserInformation(
        max_pdu_length=config.max_pdu_length,
        implementation_class_uid=config.implementation_class_uid,
        implementation_version_name=config.implementation_version_name,
        async_operations=SYNCHRONOUS_WINDOW if peer_info.async_operations is not None else None,
        role_selections=tuple(reply for reply in role_replies if reply is not None),
    )
    accept = AssociateAccept(
        called_ae_title=request.called_ae_title,
        calling_ae_title=request.calling_ae_title,
        presentation_contexts=tuple(results),
        user_information=our_info,
        application_context=DICOM_APPLICATION_CONTEXT,
        echoed_fields=request.fixed_fields,
    )
    association = NegotiatedAssociation(
        calling_ae_title=request.calling_ae_title,
        called_ae_title=request.called_ae_title,
        our_ae_title=config.ae_title,
        peer_max_pdu_length=peer_max,
        our_max_pdu_length=config.max_pdu_length,
        contexts=accepted,
        peer_implementation_class_uid=peer_info.implementation_class_uid,
        peer_implementation_version_name=peer_info.implementation_version_name,
        refused=tuple(refused),
        peer_other_items=peer_info.other_items,
    )
    return NegotiationResult(response=accept, association=association, refused=tuple(refused))
