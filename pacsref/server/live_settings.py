"""Applying new settings to a running server: the live fields now, the others at next start.

A running server reads its settings through ``ServerContext.settings`` at each use (accept,
A-ASSOCIATE-RQ, each timer, each add-in call), so a new value takes effect by replacing that one
frozen object. The replacement carries the new *live* values and the *old* restart-only ones
(:data:`~pacsref.settings.RESTART_FIELDS`: port, IP address, TLS, ...), so the running server
never holds a mix in which, say, the settings say port 104 while the socket listens on 11112.
It is made on the reactor thread in one synchronous step, together with everything derived
from it, so no connection ever sees half an update. Open associations keep going; new values
apply to the next event that reads them (next accept, next request, next timer started).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

from pacsref.addin import IDicomRequest, ServiceNotFound
from pacsref.server.context import acceptor_config
from pacsref.settings import FIELD_NAMES, LIVE_FIELDS, ServerSettings

log = Logger(namespace="pacsref.server")

__all__ = [
    "LiveSettings",
    "SettingsChange",
    "diff_settings",
    "live_settings_for",
    "running_settings",
]

#: Called with the new running settings, for objects that keep a copy or a derived value.
Subscriber = Callable[[ServerSettings], object]


@dataclass(frozen=True, slots=True)
class SettingsChange:
    """The fields that differ between the running settings and the new ones, split by kind.

    Attributes:
        live: applied now, in field order.
        restart: saved, but in force only from the next start, in field order.
    """

    live: tuple[str, ...] = ()
    restart: tuple[str, ...] = ()


def diff_settings(running: ServerSettings, new: ServerSettings) -> SettingsChange:
    """Which fields of ``new`` differ from ``running``, live ones apart from restart-only ones."""
    before, after = running.as_mapping(), new.as_mapping()
    changed = [name for name in FIELD_NAMES if before[name] != after[name]]
    return SettingsChange(
        live=tuple(n for n in changed if n in LIVE_FIELDS),
        restart=tuple(n for n in changed if n not in LIVE_FIELDS),
    )


def running_settings(running: ServerSettings, new: ServerSettings) -> ServerSettings:
    """``new``'s live values over ``running``'s restart-only values: what the server runs with."""
    after = new.as_mapping()
    return running.replace(**{name: after[name] for name in LIVE_FIELDS})


class LiveSettings:
    """Swaps a running server's settings; call only on the reactor thread.

    Args:
        server: the :class:`~pacsref.server.context.ServerContext` whose ``settings`` (and
            the ``acceptor`` derived from them) are replaced.
    """

    def __init__(self, server: object) -> None:
        self.server = server
        self._subscribers: list[Subscriber] = []

    @property
    def current(self) -> ServerSettings:
        """The settings the server runs with now."""
        settings: ServerSettings = self.server.settings  # type: ignore[attr-defined]
        return settings

    def subscribe(self, subscriber: Subscriber) -> None:
        """Also give ``subscriber`` each new running settings (objects that cached them)."""
        self._subscribers.append(subscriber)

    def apply(self, new: ServerSettings) -> SettingsChange:
        """Run with ``new``'s live values from now on; report what applied and what waits.

        Logs one ``settings.changed`` line when anything differs. Subscribers run after the
        swap, still in the same reactor turn; one failing is logged and does not undo it.
        """
        old = self.current
        change = diff_settings(old, new)
        if not change.live and not change.restart:
            return change
        if change.live:
            running = running_settings(old, new)
            self._swap(running)
        log.info(
            "settings changed: {live_text} applied now; {restart_text} at next restart",
            kind="settings.changed",
            ae=old.ae_title,
            live=list(change.live),
            restart=list(change.restart),
            live_text=", ".join(change.live) or "nothing",
            restart_text=", ".join(change.restart) or "nothing",
        )
        return change

    def _swap(self, running: ServerSettings) -> None:
        server = self.server
        acceptor = acceptor_config(running)
        server.settings = running  # type: ignore[attr-defined]
        server.acceptor = acceptor  # type: ignore[attr-defined]
        for subscriber in list(self._subscribers):
            try:
                subscriber(running)
            except Exception:
                log.failure("settings subscriber {subscriber!r} failed", subscriber=subscriber)


def live_settings_for(factory: Any) -> LiveSettings:
    """The :class:`LiveSettings` of a server factory, with the server's own caches subscribed.

    Those are the values read once at start-up rather than at each use: the message
    notifier's ``copy_dataset_image`` and the default requestor's settings (its timeouts and
    identity). Other holders (the admin commands) subscribe themselves.
    """
    live = LiveSettings(factory.server)
    notifier = getattr(factory.dispatcher, "notifier", None)
    if notifier is not None:
        live.subscribe(lambda s: setattr(notifier, "copy_dataset_image", s.copy_dataset_image))
    try:
        requestor = factory.server.registry.get(IDicomRequest)
    except ServiceNotFound:
        requestor = None
    if isinstance(getattr(requestor, "settings", None), ServerSettings):
        live.subscribe(lambda s: setattr(requestor, "settings", s))
    return live
