"""What each administrative request does: :class:`AdminCommands`, one method per command.

Methods take the converted ``data`` items of :data:`pacsref.admin.messages.COMMANDS`
and return the response's ``data`` list, or a Deferred of it; raising
:class:`~pacsref.admin.messages.MessageError` or
:class:`~pacsref.addin.errors.AeTitleError` makes a ``success: false``
response with that text. They run on the reactor thread; AE title changes run
the table's blocking ``add``/``update``/``remove`` (DNS, disk) on a worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock
from twisted.python.failure import Failure

from pacsref.addin.aetitles import AeInfo
from pacsref.admin.addin_options import AddInOptionsCommands
from pacsref.admin.messages import MessageError, ae_info_to_dict
from pacsref.settings import ServerSettings, SettingsError
from pacsref.settings.edit import edit_settings_file
from pacsref.settings.spool import TemporaryDirectoryError

__all__ = ["AdminCommands", "Counters"]

#: ``run_in_thread(function, *args) -> Deferred`` (deferToThreadPool in a server).
ThreadRunner = Callable[..., "Deferred[Any]"]


class Counters:
    """Event counts since start, fed by the server's notifier."""

    FIELDS = ("connections", "associations", "refused", "actions", "disconnections", "timeouts")
    _BY_EVENT = {
        "ClientConnect": "connections",
        "ClientAssociated": "associations",
        "AssociationRefused": "refused",
        "ClientAction": "actions",
        "ClientDisconnected": "disconnections",
        "ClientTimedOut": "timeouts",
    }

    def __init__(self) -> None:
        self.counts = dict.fromkeys(self.FIELDS, 0)

    def __call__(self, event: Any) -> None:
        field = self._BY_EVENT.get(getattr(event, "name", ""))
        if field is not None:
            self.counts[field] += 1


class AdminCommands:
    """The handlers of one server's administrative requests.

    Args:
        control: the server's :class:`~pacsref.server.control.ServerControl`.
        ae_titles: its :class:`~pacsref.addin.IAeTitles` table.
        run_in_thread: runs a blocking call off the reactor thread, returning a Deferred.
        settings: its :class:`~pacsref.settings.ServerSettings` (``as_mapping``).
        addins: loaded add-ins (``name``, ``description``).
        failures: add-ins that failed to load (``name``, ``error``).
        host_changed: called on the reactor thread with a host name an AE title
            change added or dropped, so that an address cache can refresh it.
        clock: seconds, for the uptime (``time.monotonic`` by default).
        live_settings: applies new settings to the running server
            (:class:`~pacsref.server.live_settings.LiveSettings`); with ``settings_file``,
            needed for UpdateSettings.
        settings_file: the server's ``settings.toml``.
        addin_options_dir: ``<server dir>/addin-options``, for GetAddInOptions and
            SetAddInOptions (without it, both are refused).
    """

    def __init__(
        self,
        control: Any,
        ae_titles: Any,
        run_in_thread: ThreadRunner,
        settings: Any = None,
        addins: list[Any] | None = None,
        failures: list[Any] | None = None,
        host_changed: Callable[[str], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        live_settings: Any = None,
        settings_file: Path | None = None,
        addin_options_dir: Path | None = None,
    ) -> None:
        self.control = control
        self.ae_titles = ae_titles
        self.run_in_thread = run_in_thread
        self.settings = settings
        self.addins = addins or []
        self.failures = failures or []
        self.host_changed = host_changed
        self.clock = clock
        self.started = clock()
        self.counters = Counters()
        self._unsubscribe = control.notifier.subscribe(self.counters)
        self.live_settings = live_settings
        self.settings_file = settings_file
        self._settings_lock = DeferredLock()
        if live_settings is not None:
            live_settings.subscribe(self._settings_applied)
        self.addin_options = (
            AddInOptionsCommands(self.addins, self.failures, addin_options_dir, run_in_thread)
            if addin_options_dir is not None
            else None
        )

    def close(self) -> None:
        """Stop counting events."""
        self._unsubscribe()

    # -- AE titles ------------------------------------------------------------------------------

    def get_ae_titles(self) -> list[Any]:
        return [[ae_info_to_dict(info) for info in self.ae_titles.list()]]

    def _hosts_changed(self, *hosts: str) -> None:
        if self.host_changed is not None:
            for host in dict.fromkeys(hosts):
                self.host_changed(host)

    def add_ae_title(self, info: AeInfo) -> Deferred[list[Any]]:
        def added(stored: AeInfo) -> list[Any]:
            self._hosts_changed(stored.host)
            return [ae_info_to_dict(stored)]

        return self.run_in_thread(self.ae_titles.add, info).addCallback(added)

    def update_ae_title(self, old_ae_title: str, info: AeInfo) -> Deferred[list[Any]]:
        before = self.ae_titles.get(old_ae_title)

        def updated(stored: AeInfo) -> list[Any]:
            hosts = [stored.host] + ([before.host] if before is not None else [])
            self._hosts_changed(*hosts)
            return [old_ae_title, ae_info_to_dict(stored)]

        return self.run_in_thread(self.ae_titles.update, old_ae_title, info).addCallback(updated)

    def remove_ae_title(self, ae_title: str) -> Deferred[list[Any]]:
        def removed(gone: AeInfo) -> list[Any]:
            self._hosts_changed(gone.host)
            return [ae_title]

        return self.run_in_thread(self.ae_titles.remove, ae_title).addCallback(removed)

    # -- clients --------------------------------------------------------------------------------

    def disconnect_client(self, client_id: int) -> list[Any]:
        if not self.control.disconnect(client_id):
            raise MessageError(f"no connected client with id {client_id}")
        return [client_id]

    def get_clients(self) -> list[Any]:
        return [[client.to_dict() for client in self.control.list_clients()]]

    def get_association(self, client_id: int) -> list[Any]:
        client = self.control.clients.get(client_id)
        if client is None:
            raise MessageError(f"no connected client with id {client_id}")
        association = client.to_dict()["association"]
        if association is None:
            raise MessageError(f"client {client_id} is not associated (state {client.state})")
        return [association]

    # -- server ---------------------------------------------------------------------------------

    def _state(self) -> str:
        state = getattr(self.control, "state", None)  # ServerControl: running/paused/stopping
        if isinstance(state, str):
            return state
        return "paused" if self.control.paused else "running"

    def pause(self) -> list[Any]:
        self.control.pause()
        return [self._state()]

    def resume(self) -> list[Any]:
        self.control.resume()
        return [self._state()]

    def get_status(self) -> list[Any]:
        return [
            {
                "state": self._state(),
                "uptime": round(self.clock() - self.started, 3),
                "clients": len(self.control.clients),
                "counters": dict(self.counters.counts),
            }
        ]

    def get_addins(self) -> list[Any]:
        loaded = [
            {"name": str(a.name), "description": str(getattr(a, "description", ""))}
            for a in self.addins
        ]
        failed = [{"name": f.name, "error": f.error} for f in self.failures]
        return [loaded, failed]

    def get_settings(self) -> list[Any]:
        if self.settings is None:
            raise MessageError("no settings available")
        return [dict(self.settings.as_mapping())]

    # -- settings -------------------------------------------------------------------------------

    def update_settings(self, changes: dict[str, Any]) -> Deferred[list[Any]]:
        """Save ``changes`` to settings.toml and apply the live ones (docs/admin-protocol.md).

        One update at a time (a lock), so two admin clients cannot interleave a read of the
        file with the other's write. The file is edited on a worker thread (disk I/O, fsync);
        the running settings are swapped back on the reactor thread, after the file is saved,
        so the server never runs with a value the file does not hold.
        """
        if self.live_settings is None or self.settings_file is None:
            raise MessageError("this server cannot change its settings while running")
        return self._settings_lock.run(self._update_settings, changes, self.settings_file)

    def _update_settings(self, changes: dict[str, Any], settings_file: Path) -> Deferred[list[Any]]:
        # The server directory lets the edit check a new temporary_directory on this machine
        # (and on the worker thread: it creates and removes a file): the manager checks it too,
        # but a direct admin client does not go through the manager.
        d = self.run_in_thread(
            edit_settings_file,
            settings_file,
            changes,
            "UpdateSettings",
            settings_file.parent,
        )

        def saved(result: tuple[ServerSettings, tuple[str, ...]]) -> list[Any]:
            change = self.live_settings.apply(result[0])
            return [list(change.live), list(change.restart)]

        def refused(failure: Failure) -> list[Any]:
            failure.trap(SettingsError, TemporaryDirectoryError, OSError)
            if isinstance(failure.value, SettingsError):
                raise MessageError("; ".join(str(p) for p in failure.value.problems))
            if isinstance(failure.value, TemporaryDirectoryError):
                raise MessageError(str(failure.value))
            raise MessageError(f"cannot save {settings_file}: {failure.value}")

        return d.addCallbacks(saved, refused)

    def _settings_applied(self, settings: ServerSettings) -> None:
        self.settings = settings

    # -- add-in options -------------------------------------------------------------------------

    def _options_commands(self) -> AddInOptionsCommands:
        if self.addin_options is None:
            raise MessageError("this server has no add-in options folder")
        return self.addin_options

    def get_addin_options(self, addin: str) -> Deferred[list[Any]]:
        return self._options_commands().get(addin)

    def set_addin_options(self, addin: str, changes: dict[str, Any]) -> Deferred[list[Any]]:
        return self._options_commands().set(addin, changes)
