"""The acceptance policy: who may associate, as one pure function.

:func:`decide` answers "should this A-ASSOCIATE-RQ be refused, and with which
A-ASSOCIATE-RJ?" from the request, the peer's IP address and a
:class:`PolicyView` (a snapshot of the settings and of the server's state).
No IO, no Twisted, no clock: every rule is a unit test with plain values, and
the server, the conformance suite and the documentation share one statement
of the rules (docs/architecture.md, "Acceptance policy").

Rules, in the order they are applied (the first that matches answers):

1. protocol version without bit 0 -> (1, 2, 2). Checked by the upper layer
   itself (``UpperLayer._ae_6``) before the request is indicated, so it never
   reaches :func:`decide`; listed here so the order reads whole.
2. application context not the DICOM one -> (1, 1, 2).
3. called AE title not ours, when ``check_called_ae_title`` -> (1, 1, 7).
4. server paused, or stopping gracefully -> (2, 3, 1) temporary-congestion.
5. Max Clients reached -> (2, 3, 2) local-limit-exceeded.
6. calling AE title unknown while Allow Anonymous is off, or known but
   registered with another host than the peer's address -> (1, 1, 3).
6b. over TLS, the peer's certificate is not bound to the calling AE title
   (the security add-in's binding table, :mod:`pacsref.security`) -> (1, 1, 3).
7. Multiple Connections off and the same calling AE title already associated
   from the same IP address -> (2, 3, 2) local-limit-exceeded.

Why this order: permanent, configuration errors of the *request* come first
(2, 3), because a peer told "congested" or "limit exceeded" retries, and a
misaddressed or misconfigured peer would retry for ever; telling it the
permanent truth at once is what lets its administrator fix it. Then the
transient conditions that concern every peer alike (4, 5): they need nothing
from the AE title table, so an overloaded or paused server sheds load without
consulting a provider that may be an add-in with its own locks. Then the
identity of the peer (6), and last the rule that presumes an accepted identity
(7): "the same AE title" only means something once the title is known to be
allowed. IAssociationHook add-ins come after all of these (they only see
requests the server itself would accept), and so does negotiation.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pacsref.association.contexts import uid_label
from pacsref.ul.constants import DICOM_APPLICATION_CONTEXT
from pacsref.ul.events import (
    REJECT_APPLICATION_CONTEXT,
    REJECT_CALLED_AE,
    REJECT_CALLING_AE,
    REJECT_CONGESTION,
    REJECT_LOCAL_LIMIT,
    AssociateReject,
    AssociateRequest,
)

__all__ = [
    "REJECT_MULTIPLE_CONNECTIONS",
    "AeEntry",
    "PolicySettings",
    "PolicyView",
    "Refusal",
    "Rule",
    "decide",
    "normalize_ip",
    "same_address",
]

#: Multiple Connections off and the AE already associated from this IP. Transient
#: ("try again when your other association has ended") and the same triple as
#: Max Clients, because it *is* a per-peer limit on concurrent associations: dcm4che
#: answers its per-calling-AE limit (``Device.limitAssociationsInitiatedBy``) with
#: exactly this A-ASSOCIATE-RJ. See docs/architecture.md, "Acceptance policy".
REJECT_MULTIPLE_CONNECTIONS = REJECT_LOCAL_LIMIT


class Rule(enum.StrEnum):
    """Which rule refused an association; the ``rule`` field of logs and notifications."""

    PROTOCOL_VERSION = "protocol-version"
    APPLICATION_CONTEXT = "application-context"
    CALLED_AE = "called-ae-title"
    #: Also a graceful stop's refusals: the same rule and A-ASSOCIATE-RJ as a pause (a peer
    #: should retry either way, perhaps against the restarted server); only ``why`` differs.
    PAUSED = "paused"
    MAX_CLIENTS = "max-clients"
    CALLING_AE = "calling-ae-title"
    CALLING_HOST = "calling-host"
    #: The calling AE's table entry names a host whose addresses are not known
    #: yet: the server resolves it off the reactor and asks again (see
    #: :class:`pacsref.server.addresses.HostAddresses`); only if it is still
    #: unknown then is the refusal sent.
    CALLING_HOST_UNRESOLVED = "calling-host-unresolved"
    #: The TLS peer certificate may not use this calling AE title (docs/security.md).
    CERTIFICATE_BINDING = "certificate-binding"
    MULTIPLE_CONNECTIONS = "multiple-connections"
    #: Refusals decided elsewhere but logged and notified the same way.
    NEGOTIATION = "negotiation"
    #: No IUserIdentityNegotiation add-in accepted the requestor's User Identity.
    USER_IDENTITY = "user-identity"
    ADDIN = "addin"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused A-ASSOCIATE-RQ: the A-ASSOCIATE-RJ to send, the rule, and why in words."""

    reject: AssociateReject
    rule: Rule
    why: str


class PolicySettings(Protocol):
    """The settings the policy reads (:class:`pacsref.settings.ServerSettings` fits)."""

    @property
    def ae_title(self) -> str: ...
    @property
    def check_called_ae_title(self) -> bool: ...
    @property
    def allow_anonymous(self) -> bool: ...
    @property
    def max_clients(self) -> int: ...
    @property
    def multiple_connections(self) -> bool: ...


class AeEntry(Protocol):
    """What the policy needs from an AE title table entry (:class:`pacsref.addin.AeInfo`)."""

    @property
    def ae_title(self) -> str: ...
    @property
    def host(self) -> str: ...


@dataclass(frozen=True, slots=True)
class PolicyView:
    """A snapshot of everything :func:`decide` may look at, built per A-ASSOCIATE-RQ.

    Attributes:
        settings: the server's settings.
        paused: the server is paused (no new associations).
        stopping: a graceful stop began; refused like ``paused``, but the log and the
            AssociationRefused notification must not tell the administrator "paused"
            when nobody paused it (a Resume would not help).
        associated_count: connections holding one of the Max Clients places,
            not counting the requester. A place is taken at TCP accept (while
            places are left) and given back when the association ends or the
            connection closes, so Max Clients also bounds peers that connect
            and say nothing (they are dropped by ARTIM).
        ae_lookup: the AE title table's ``get`` (:class:`pacsref.addin.IAeTitles`).
        associated_from: ``(calling AE title, IP) -> bool``: another association
            with that calling AE title from that address is open.
        entry_addresses: table entry -> the IP addresses its host stands for, as
            resolved earlier off the reactor (the table does it when an entry is
            loaded, added or updated), or None when not resolved yet. Never
            resolves by itself.
        certificate_refusal: calling AE title -> why the peer's TLS certificate
            may not use it, or None (always None without TLS or bindings).
    """

    settings: PolicySettings
    paused: bool = False
    stopping: bool = False
    associated_count: int = 0
    ae_lookup: Callable[[str], AeEntry | None] = lambda title: None
    associated_from: Callable[[str, str], bool] = lambda title, ip: False
    entry_addresses: Callable[[AeEntry], frozenset[str] | None] = lambda entry: None
    certificate_refusal: Callable[[str], str | None] = lambda calling: None


def normalize_ip(address: str) -> str:
    """The canonical text of an IP address; IPv4-mapped IPv6 becomes plain IPv4.

    A server listening on ``::`` sees IPv4 peers as ``::ffff:a.b.c.d``; an
    administrator writes ``a.b.c.d`` in the AE table. Non-IP text is returned
    unchanged (lower-cased), so host names compare case-insensitively.
    """
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return address.strip().lower()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return False
    return True


def same_address(host: str, peer_ip: str, resolved: frozenset[str] | None) -> bool | None:
    """Is ``peer_ip`` one of ``host``'s addresses? None when a host name is not resolved.

    An IP literal in the table is compared with the peer's address directly;
    a host name is compared through ``resolved`` (its addresses, resolved
    earlier, normalised or not).
    """
    peer = normalize_ip(peer_ip)
    if _is_ip_literal(host):
        return normalize_ip(host) == peer
    if resolved is None:
        return None
    return peer in {normalize_ip(address) for address in resolved}


def closed_refusal(*, paused: bool, stopping: bool, why_suffix: str = "") -> Refusal | None:
    """The (2, 3, 1) refusal of a server that takes no new associations now, or None.

    Asked by :func:`decide`, and again by the acceptance once slow association hooks have
    answered: a Pause or a graceful stop that came meanwhile must not be followed by an
    A-ASSOCIATE-AC (``why_suffix`` then says when it came).
    """
    if stopping:
        return Refusal(REJECT_CONGESTION, Rule.PAUSED, "the server is stopping" + why_suffix)
    if paused:
        return Refusal(REJECT_CONGESTION, Rule.PAUSED, "the server is paused" + why_suffix)
    return None


def decide(request: AssociateRequest, peer_ip: str, view: PolicyView) -> Refusal | None:
    """Refuse ``request`` from ``peer_ip``, or return None to go on to negotiation.

    Applies the rules of the module docstring in order; see there for why.
    """
    settings = view.settings
    if request.application_context != DICOM_APPLICATION_CONTEXT:
        return Refusal(
            REJECT_APPLICATION_CONTEXT,
            Rule.APPLICATION_CONTEXT,
            f"application context name {uid_label(request.application_context)} is not the DICOM "
            f"application context {DICOM_APPLICATION_CONTEXT}",
        )
    called = request.called_ae_title.strip(" ")
    if settings.check_called_ae_title and called != settings.ae_title:
        return Refusal(
            REJECT_CALLED_AE,
            Rule.CALLED_AE,
            f"called AE title {called!r} is not this server's ({settings.ae_title!r})",
        )
    closed = closed_refusal(paused=view.paused, stopping=view.stopping)
    if closed is not None:
        return closed
    if view.associated_count >= settings.max_clients:
        return Refusal(
            REJECT_LOCAL_LIMIT,
            Rule.MAX_CLIENTS,
            f"Max Clients ({settings.max_clients}) reached",
        )
    calling = request.calling_ae_title.strip(" ")
    entry = view.ae_lookup(calling)
    if entry is None:
        if not settings.allow_anonymous:
            return Refusal(
                REJECT_CALLING_AE,
                Rule.CALLING_AE,
                f"calling AE title {calling!r} is not in the AE title table "
                "and Allow Anonymous is off",
            )
    else:
        matches = same_address(entry.host, peer_ip, view.entry_addresses(entry))
        if matches is None:
            return Refusal(
                REJECT_CALLING_AE,
                Rule.CALLING_HOST_UNRESOLVED,
                f"calling AE title {calling!r} is registered at host {entry.host!r}, "
                "whose addresses could not be resolved",
            )
        if not matches:
            return Refusal(
                REJECT_CALLING_AE,
                Rule.CALLING_HOST,
                f"calling AE title {calling!r} is registered at {entry.host!r}, "
                f"not at {normalize_ip(peer_ip)}",
            )
    why = view.certificate_refusal(calling)
    if why is not None:
        return Refusal(REJECT_CALLING_AE, Rule.CERTIFICATE_BINDING, why)
    if not settings.multiple_connections and view.associated_from(calling, normalize_ip(peer_ip)):
        return Refusal(
            REJECT_MULTIPLE_CONNECTIONS,
            Rule.MULTIPLE_CONNECTIONS,
            f"calling AE title {calling!r} is already associated from "
            f"{normalize_ip(peer_ip)} and Multiple Connections is off",
        )
    return None
