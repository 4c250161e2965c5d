"""Server notifications: a tiny in-process publisher and the events it carries.

The administrative interface (a later issue) pushes these to its subscribers
as the seed's messages: ClientConnect, ClientAssociated, ClientDisconnected,
ClientAction; pacsref adds AssociationRefused, ClientTimedOut, ServerPaused,
ServerResumed and ServerStopping. Until then tests and add-in services subscribe in Python.

Publishing happens on the reactor thread and calls subscribers synchronously,
in subscription order, so a subscriber sees events in the order they
happened. A subscriber that raises is logged and does not affect the others
or the server. Events that carry a :class:`~pacsref.server.clients.ClientInfo`
carry the live object: a subscriber that keeps an event past its call should
keep ``event.to_dict()`` (a snapshot), not the event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from twisted.logger import Logger

from pacsref.ul.events import describe_reject

if TYPE_CHECKING:
    from pacsref.server.clients import ClientInfo

log = Logger(namespace="pacsref.notifications")

__all__ = [
    "AssociationRefused",
    "ClientAction",
    "ClientAssociated",
    "ClientConnect",
    "ClientDisconnected",
    "ClientTimedOut",
    "Event",
    "Notifier",
    "ServerPaused",
    "ServerResumed",
    "ServerStopping",
]


@dataclass(frozen=True, slots=True)
class ClientConnect:
    """A TCP connection was accepted (before any A-ASSOCIATE-RQ)."""

    name: ClassVar[str] = "ClientConnect"
    client: ClientInfo

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready snapshot: ``{"event": name, "client": {...}}``."""
        return {"event": self.name, "client": self.client.to_dict()}


@dataclass(frozen=True, slots=True)
class ClientAssociated:
    """The A-ASSOCIATE-AC was sent; ``client.association`` describes the association."""

    name: ClassVar[str] = "ClientAssociated"
    client: ClientInfo

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready snapshot: ``{"event": name, "client": {...}}``."""
        return {"event": self.name, "client": self.client.to_dict()}


@dataclass(frozen=True, slots=True)
class ClientDisconnected:
    """The TCP connection is gone; ``reason`` says how the association ended."""

    name: ClassVar[str] = "ClientDisconnected"
    client: ClientInfo
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready snapshot: ``{"event": name, "client": {...}, "reason": ...}``."""
        return {"event": self.name, "client": self.client.to_dict(), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ClientAction:
    """One DIMSE request was served: its command name and the calling AE title.

    Plain values, not the ClientInfo: it is published once per request, so it
    is kept small (and built only when someone subscribed).
    """

    name: ClassVar[str] = "ClientAction"
    action: str
    ae_title: str
    client_id: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"event": name, "action": ..., "ae_title": ..., "client_id": ...}``."""
        return {
            "event": self.name,
            "action": self.action,
            "ae_title": self.ae_title,
            "client_id": self.client_id,
        }


@dataclass(frozen=True, slots=True)
class AssociationRefused:
    """An A-ASSOCIATE-RQ was refused with ``reject`` = (result, source, reason).

    ``rule`` names the rule of the acceptance policy (or ``negotiation``,
    ``addin``, ``protocol-version``); ``why`` says it in words.
    """

    name: ClassVar[str] = "AssociationRefused"
    client: ClientInfo
    reject: tuple[int, int, int]
    rule: str
    why: str
    calling_ae_title: str = ""
    called_ae_title: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready snapshot with the reject triple and its PS3.8 words."""
        return {
            "event": self.name,
            "client": self.client.to_dict(),
            "calling_ae_title": self.calling_ae_title,
            "called_ae_title": self.called_ae_title,
            "reject": list(self.reject),
            "reject_text": describe_reject(*self.reject),
            "rule": self.rule,
            "why": self.why,
        }


@dataclass(frozen=True, slots=True)
class ClientTimedOut:
    """An associated peer sent nothing for ``timeout`` seconds; it is being aborted."""

    name: ClassVar[str] = "ClientTimedOut"
    client: ClientInfo
    timeout: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready snapshot."""
        return {"event": self.name, "client": self.client.to_dict(), "timeout": self.timeout}


@dataclass(frozen=True, slots=True)
class ServerPaused:
    """The server stopped accepting new associations (existing ones go on)."""

    name: ClassVar[str] = "ServerPaused"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"event": "ServerPaused"}``."""
        return {"event": self.name}


@dataclass(frozen=True, slots=True)
class ServerResumed:
    """The server accepts new associations again."""

    name: ClassVar[str] = "ServerResumed"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"event": "ServerResumed"}``."""
        return {"event": self.name}


@dataclass(frozen=True, slots=True)
class ServerStopping:
    """A graceful stop began: ``clients`` open connections have ``deadline`` seconds to finish.

    Its own event rather than a ServerPaused: a paused server comes back with a Resume, a
    stopping one does not, and a watcher should know how long the stop may take.
    """

    name: ClassVar[str] = "ServerStopping"
    deadline: float
    clients: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"event": "ServerStopping", "deadline": ..., "clients": ...}``."""
        return {"event": self.name, "deadline": self.deadline, "clients": self.clients}


Event = (
    ClientConnect
    | ClientAssociated
    | ClientDisconnected
    | ClientAction
    | AssociationRefused
    | ClientTimedOut
    | ServerPaused
    | ServerResumed
    | ServerStopping
)

Subscriber = Callable[[Any], object]


class Notifier:
    """Publishes events to subscribers; one per server.

    Subscribers are kept in a tuple replaced on (un)subscribe, so a subscriber
    may unsubscribe itself (or others) while an event is being delivered.
    """

    def __init__(self) -> None:
        self._subscribers: tuple[tuple[object, Subscriber], ...] = ()

    @property
    def active(self) -> bool:
        """True when someone listens; publishers of per-message events check it first."""
        return bool(self._subscribers)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` for every event from now on; returns the unsubscribe call.

        Each subscription is its own: subscribing one callable twice delivers
        twice, and each returned ``unsubscribe`` ends only its own subscription.
        """
        token = object()
        self._subscribers = (*self._subscribers, (token, callback))

        def unsubscribe() -> None:
            self._subscribers = tuple(s for s in self._subscribers if s[0] is not token)

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber; one failing does not stop the others."""
        for _, subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:
                log.failure(
                    "notification subscriber {subscriber!r} failed on {event}",
                    subscriber=subscriber,
                    event=event.name,
                )
