"""The connected-client registry: one :class:`ClientInfo` per TCP connection.

A client exists from TCP accept to close, associated or not, because that is
what an administrator needs to see (a peer that connects and says nothing is
exactly the one to disconnect). The registry also keeps the two counts the
acceptance policy asks about, in O(1): how many connections hold one of the
Max Clients places, and whether a calling AE title is already associated from
an address. It publishes the client events of :mod:`pacsref.server.notifications`;
everything here runs on the reactor thread.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any, Protocol

from pacsref.association import NegotiatedAssociation, uid_label
from pacsref.association.policy import normalize_ip
from pacsref.dimse import command_name
from pacsref.server.notifications import (
    AssociationRefused,
    ClientAction,
    ClientAssociated,
    ClientConnect,
    ClientDisconnected,
    Notifier,
)
from pacsref.ul.events import AssociateReject

__all__ = ["ClientInfo", "ClientRegistry", "Disconnectable"]


class Disconnectable(Protocol):
    """What the registry needs of a connection: a way to end it (A-ABORT, then close)."""

    def disconnect(self, reason: str) -> None: ...

    def cut(self) -> None:
        """Drop the connection now, with whatever the peer has not taken yet."""


class ClientInfo:
    """One connected peer, as the admin interface shows it.

    Mutable on purpose, and updated in place on the reactor thread: its
    ``last_command`` changes with every DIMSE request, and allocating a new
    value per message would tax the hot path. Use :meth:`to_dict` for a
    snapshot.

    Attributes:
        id: server-unique number (never reused while the server runs).
        ip: the peer's address (IPv4-mapped IPv6 shown as IPv4).
        port: the peer's TCP port.
        connected_time: wall-clock seconds since the epoch of the TCP accept.
        ae_title: the calling AE title, "" until associated.
        called_ae_title: the AE title the peer addressed, "" until associated.
        state: ``connected`` (awaiting or negotiating an association),
            ``associated``, or ``ended`` (released, aborted or refused; the
            connection is closing).
        association: the negotiated association once associated, else None.
        association_id: the number that ties together its log lines (0 before).
        last_command: Command Field of the last request served (0 = none yet).
        admitted: holds one of the Max Clients places.
        user_identity: the User Identity the peer sent (PS3.7 D.3.3.7) as the admin
            interface shows it (type, words, username, verified), or None.
    """

    __slots__ = (
        "_claim",
        "admitted",
        "ae_title",
        "association",
        "association_id",
        "called_ae_title",
        "connected_time",
        "id",
        "ip",
        "last_command",
        "port",
        "state",
        "user_identity",
    )

    def __init__(self, client_id: int, ip: str, port: int, connected_time: float) -> None:
        self.id = client_id
        self.ip = normalize_ip(ip)
        self.port = port
        self.connected_time = connected_time
        self.ae_title = ""
        self.called_ae_title = ""
        self.state = "connected"
        self.association: NegotiatedAssociation | None = None
        self.association_id = 0
        self.last_command = 0
        self.admitted = False
        self.user_identity: dict[str, Any] | None = None
        self._claim: tuple[str, str] | None = None

    def __repr__(self) -> str:
        return f"<ClientInfo {self.id} {self.ip}:{self.port} {self.ae_title!r} {self.state}>"

    @property
    def last_action(self) -> str:
        """The last DIMSE request served, e.g. ``C-ECHO-RQ``; "" when none yet."""
        return command_name(self.last_command) if self.last_command else ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready snapshot (ISO 8601 UTC time, association details when associated)."""
        when = datetime.fromtimestamp(self.connected_time, UTC).isoformat()
        return {
            "id": self.id,
            "ip": self.ip,
            "port": self.port,
            "ae_title": self.ae_title,
            "called_ae_title": self.called_ae_title,
            "connected_time": when,
            "state": self.state,
            "last_action": self.last_action,
            # Only while associated: a released or aborted one is over (docs/admin-protocol.md,
            # GetAssociation and ClientDisconnected), though its connection may linger.
            "association": _association_dict(
                self.association if self.state == "associated" else None,
                self.association_id,
                self.user_identity,
            ),
        }


def _association_dict(
    association: NegotiatedAssociation | None,
    association_id: int,
    user_identity: dict[str, Any] | None,
) -> dict[str, Any] | None:
    if association is None:
        return None
    return {
        "id": association_id,
        "user_identity": user_identity,
        "calling_ae_title": association.calling_ae_title,
        "called_ae_title": association.called_ae_title,
        # Maximum Length: what we may send (the peer's) and what we receive (ours); 0 = no limit.
        "peer_max_pdu_length": association.peer_max_pdu_length,
        "our_max_pdu_length": association.our_max_pdu_length,
        "peer_implementation_class_uid": association.peer_implementation_class_uid,
        "peer_implementation_version_name": association.peer_implementation_version_name,
        "contexts": [
            {
                "id": context_id,
                "abstract_syntax": context.abstract_syntax,
                "abstract_syntax_name": uid_label(context.abstract_syntax),
                "transfer_syntax": context.transfer_syntax,
                "transfer_syntax_name": uid_label(context.transfer_syntax),
                # The peer's roles (PS3.7 D.3.3.4): what the client may do on this context.
                "peer_scu": context.peer_scu_role,
                "peer_scp": context.peer_scp_role,
            }
            for context_id, context in association.contexts.items()
        ],
    }


class ClientRegistry:
    """Every live connection of one server, with the counts the policy needs.

    Args:
        notifier: where client events are published.
    """

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self._clients: dict[int, ClientInfo] = {}
        self._connections: dict[int, Disconnectable] = {}
        self._next_id = 0
        self._admitted = 0
        self._claims: Counter[tuple[str, str]] = Counter()

    def __len__(self) -> int:
        return len(self._clients)

    # -- queries (admin interface) ----------------------------------------------------------

    def list(self) -> tuple[ClientInfo, ...]:
        """Every connected client, oldest first."""
        return tuple(self._clients.values())

    def get(self, client_id: int) -> ClientInfo | None:
        """The client with this id, or None when it is not (or no longer) connected."""
        return self._clients.get(client_id)

    def disconnect(self, client_id: int, reason: str = "disconnected by the administrator") -> bool:
        """End one client's connection: A-ABORT if associated, then close.

        Returns False for an unknown id (already gone, or never existed).
        """
        connection = self._connections.get(client_id)
        if connection is None:
            return False
        connection.disconnect(reason)
        return True

    def cut(self, client_id: int) -> bool:
        """Drop one client's connection at once (a graceful stop's last resort).

        Returns False for an unknown id (already gone).
        """
        connection = self._connections.get(client_id)
        if connection is None:
            return False
        connection.cut()
        return True

    # -- counts (acceptance policy) -----------------------------------------------------------

    @property
    def admitted_count(self) -> int:
        """Connections holding one of the Max Clients places."""
        return self._admitted

    def admitted_except(self, client: ClientInfo) -> int:
        """Places held by connections other than ``client``."""
        return self._admitted - (1 if client.admitted else 0)

    def associated_from(self, ae_title: str, ip: str) -> bool:
        """Another association (accepted or being accepted) is open for ``ae_title`` from ``ip``."""
        return self._claims[(ae_title, normalize_ip(ip))] > 0

    # -- life cycle (called by the protocol and the session) ----------------------------------

    def add(
        self, connection: Disconnectable, ip: str, port: int, now: float, max_clients: int
    ) -> ClientInfo:
        """Register a just-accepted connection and publish ClientConnect.

        It takes a Max Clients place if one is left; if not, it is still
        accepted (so that its A-ASSOCIATE-RQ gets an A-ASSOCIATE-RJ, not a bare
        close) and ARTIM bounds how long it may stay.
        """
        self._next_id += 1
        client = ClientInfo(self._next_id, ip, port, now)
        self._clients[client.id] = client
        self._connections[client.id] = connection
        if self._admitted < max_clients:
            self.admit(client)
        self.notifier.publish(ClientConnect(client))
        return client

    def admit(self, client: ClientInfo) -> None:
        """Give ``client`` a Max Clients place (no-op if it holds one)."""
        if not client.admitted:
            client.admitted = True
            self._admitted += 1

    def claim(self, client: ClientInfo, calling_ae_title: str) -> None:
        """``client`` passed the policy as ``calling_ae_title``: count it for Multiple Connections.

        Claimed before negotiation and hooks, so that two requests racing
        through a slow association hook cannot both pass the rule.
        """
        if client._claim is None:
            client._claim = (calling_ae_title, client.ip)
            self._claims[client._claim] += 1

    def associated(
        self,
        client: ClientInfo,
        association: NegotiatedAssociation,
        association_id: int,
        user_identity: dict[str, Any] | None = None,
    ) -> None:
        """The A-ASSOCIATE-AC was sent: record the association and publish ClientAssociated."""
        client.user_identity = user_identity
        client.ae_title = association.calling_ae_title
        client.called_ae_title = association.called_ae_title
        client.association = association
        client.association_id = association_id
        client.state = "associated"
        self.notifier.publish(ClientAssociated(client))

    def action(self, client: ClientInfo, command_field: int) -> None:
        """One request was served; publishes ClientAction only when someone listens (hot path)."""
        client.last_command = command_field
        if self.notifier.active:
            action = ClientAction(command_name(command_field), client.ae_title, client.id)
            self.notifier.publish(action)

    def refused(
        self,
        client: ClientInfo,
        reject: AssociateReject,
        rule: str,
        why: str,
        calling_ae_title: str = "",
        called_ae_title: str = "",
    ) -> None:
        """An A-ASSOCIATE-RQ of ``client`` was refused: end it and publish AssociationRefused."""
        self.ended(client)
        self.notifier.publish(
            AssociationRefused(
                client,
                (int(reject.result), int(reject.source), int(reject.reason)),
                rule,
                why,
                calling_ae_title,
                called_ae_title,
            )
        )

    def ended(self, client: ClientInfo) -> None:
        """The association is over (released, aborted, refused): give back what it held.

        The connection may linger until the peer closes it (bounded by ARTIM),
        but it no longer counts against Max Clients or Multiple Connections.
        """
        client.state = "ended"
        if client.admitted:
            client.admitted = False
            self._admitted -= 1
        if client._claim is not None:
            self._claims[client._claim] -= 1
            if self._claims[client._claim] <= 0:
                del self._claims[client._claim]
            client._claim = None

    def remove(self, client: ClientInfo, reason: str) -> None:
        """The TCP connection is gone: forget the client and publish ClientDisconnected."""
        if self._clients.pop(client.id, None) is None:
            return
        self._connections.pop(client.id, None)
        self.ended(client)
        self.notifier.publish(ClientDisconnected(client, reason))
