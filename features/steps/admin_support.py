"""Shared helpers of admin_steps.py and manager_steps.py (registers no steps).

The admin and manager features talk about servers *by name*: the servers of the feature's fleet
(``@fixture.pacsref.servers``) or those a scenario added under its ``pacsref`` root
(``@fixture.pacsref.root``). :func:`server_endpoint` finds either, so the steps about modalities
and administrators read the same in both features.

Every wait here is bounded; everything opened here is closed by the scenario's cleanup.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenario_support import on_cleanup

from pacsref.admin.client import AdminClient, AdminConnectionError
from pacsref.admin.messages import NOTIFICATIONS, ServiceMessage
from pacsref.admin.service import admin_socket_path
from pacsref.testing.net import LOOPBACK

#: Bound of every single wait: a connection, a response, a notification, a command.
WAIT_S = 10.0

#: The repository (``python -m simulators`` runs from here).
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Endpoint:
    """Where a named server is: its DICOM address and AE title, its admin socket."""

    name: str
    host: str
    port: int
    ae_title: str
    socket_path: Path


def server_endpoint(context: Any, name: str) -> Endpoint:
    """The server ``name`` of this feature's fleet, or of this scenario's ``pacsref`` root."""
    fleet = getattr(context, "pacsref_fleet", None)
    if fleet is not None and name in fleet.servers:
        server = fleet[name]
        host, port = server.address
        path = admin_socket_path(server.server_dir, server.ae_title)
        return Endpoint(name, host, port, server.ae_title, path)
    root = getattr(context, "pacsref_root", None)
    if root is not None:
        from pacsref.manager.daemon import ManagerError, find_server

        try:
            found = find_server(root.path, name)
        except ManagerError as exc:
            raise AssertionError(str(exc)) from None
        settings = found.settings
        host = LOOPBACK if settings.ip_address in ("0.0.0.0", "::", "") else settings.ip_address
        return Endpoint(name, host, settings.port, settings.ae_title, found.socket_path)
    raise AssertionError(
        f"no server {name!r}: tag the feature @fixture.pacsref.servers or @fixture.pacsref.root"
    )


def connect_admin(path: Path, read_timeout: float = WAIT_S) -> tuple[AdminClient, socket.socket]:
    """A blocking AdminClient on ``path``, retrying until the socket answers (bounded).

    The socket is ours (passed as ``sock=``), so a watcher can shorten its read timeout for
    bounded polling without reaching into the client.
    """
    deadline = time.monotonic() + WAIT_S
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(read_timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            sock.close()
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"admin socket {path} did not accept within {WAIT_S:g} s: {exc}"
                ) from None
            time.sleep(0.05)
            continue
        return AdminClient(sock=sock, timeout=read_timeout), sock


def admin_of(context: Any, name: str) -> AdminClient:
    """The scenario's administrator connection to server ``name`` (opened once, closed after)."""
    admins: dict[str, AdminClient] | None = getattr(context, "admins", None)
    if admins is None:
        admins = context.admins = {}
        on_cleanup(context, lambda: [client.close() for client in admins.values()])
    if name not in admins:
        admins[name], _ = connect_admin(server_endpoint(context, name).socket_path)
    return admins[name]


def call(context: Any, name: str, message: str, *data: Any) -> ServiceMessage:
    """Send ``message`` to server ``name`` as its administrator; the response must come."""
    try:
        return admin_of(context, name).call(message, *data)
    except (AdminConnectionError, OSError) as exc:
        raise AssertionError(f"{message} to {name}: no response: {exc}") from None


def client_id(context: Any, server: str, calling_ae: str) -> int:
    """The id of the client associated as ``calling_ae`` (GetClients; exactly one)."""
    reply = call(context, server, "GetClients")
    assert reply.success, reply.error
    ids = [c["id"] for c in reply.data[0] if c["ae_title"] == calling_ae]
    assert len(ids) == 1, f"{server} lists {len(ids)} clients {calling_ae!r}: {reply.data[0]}"
    return int(ids[0])


def note_fields(note: ServiceMessage) -> dict[str, str]:
    """A notification as the words a feature's table uses (columns; values as text).

    ``client`` (id), ``address``, ``calling AE``, ``called AE``, ``state``, ``action``, ``how``
    (ClientDisconnected), ``timeout`` (ClientTimedOut, ServerStopping), ``clients``
    (ServerStopping), ``rejection`` and ``rule`` (AssociationRefused), ``server`` (the
    ``service`` field).
    """
    fields = {"notification": note.message, "server": note.service}
    data = note.data
    client: dict[str, Any] | None = None
    if note.message in (
        "ClientConnect",
        "ClientAssociated",
        "ClientDisconnected",
        "ClientTimedOut",
    ):
        client = data[0]
    if note.message == "ClientDisconnected":
        fields["how"] = str(data[1])
    elif note.message == "ClientTimedOut":
        fields["timeout"] = f"{data[1]:g}"
    elif note.message == "ClientAction":
        fields.update(action=str(data[0]), client=str(data[2]))
        fields["calling AE"] = str(data[1])
    elif note.message == "ServerStopping":
        fields["timeout"] = f"{data[0]:g}"
        fields["clients"] = str(data[1])
    elif note.message == "AssociationRefused":
        refusal = data[0]
        client = refusal["client"]
        fields["calling AE"] = refusal["calling_ae_title"]
        fields["called AE"] = refusal["called_ae_title"]
        fields["rejection"] = "({}, {}, {})".format(*refusal["reject"])
        fields["rule"] = refusal["rule"]
    if client is not None:
        fields.setdefault("client", str(client["id"]))
        fields["address"] = str(client["ip"])
        fields.setdefault("calling AE", str(client["ae_title"]))
        fields.setdefault("called AE", str(client["called_ae_title"]))
        fields["state"] = str(client["state"])
    return fields


class Watcher:
    """An administrator's connection that only listens: every notification of one server.

    Registered with the server once its first GetStatus is answered (the server adds a
    connection before it reads from it), so nothing after :meth:`__init__` can be missed.
    """

    #: Read timeout while polling; short, so "nothing more came" costs little.
    POLL_S = 0.05

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.admin, self._sock = connect_admin(endpoint.socket_path)
        reply = self.admin.call("GetStatus")
        assert reply.success, f"GetStatus on {endpoint.name}: {reply.error}"
        self.seen: list[ServiceMessage] = []

    def _read(self, until: float) -> bool:
        """Read one notification before ``until`` (monotonic); False if none came."""
        self._sock.settimeout(max(0.01, min(self.POLL_S * 20, until - time.monotonic())))
        try:
            note = next(self.admin.notifications())
        except TimeoutError:
            return False
        except StopIteration:
            raise AssertionError(f"{self.endpoint.name} closed the watcher's connection") from None
        self.seen.append(note)
        return True

    def wait_for(self, done: Any, what: str, seconds: float = WAIT_S) -> None:
        """Read until ``done(self.seen)`` holds; fail naming ``what`` after ``seconds``."""
        deadline = time.monotonic() + seconds
        while not done(self.seen):
            if time.monotonic() > deadline:
                names = [n.message for n in self.seen]
                raise AssertionError(
                    f"watcher of {self.endpoint.name}: no {what} within {seconds:g} s "
                    f"(received: {names})"
                )
            self._read(deadline)

    def until_closed(self, seconds: float = WAIT_S) -> list[ServiceMessage]:
        """Every notification up to the server's close of this connection (bounded)."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                names = [n.message for n in self.seen]
                raise AssertionError(
                    f"{self.endpoint.name} kept the watcher's connection open for {seconds:g} s "
                    f"(received: {names})"
                )
            self._sock.settimeout(min(remaining, self.POLL_S * 20))
            try:
                note = next(self.admin.notifications())
            except TimeoutError:
                continue
            except StopIteration:
                return self.seen
            self.seen.append(note)

    def sync(self) -> list[ServiceMessage]:
        """Everything the server pushed before it answers a GetStatus sent now.

        The server writes notifications and responses on one ordered stream, so once the
        response is in, every notification it sent earlier is in too.
        """
        self._sock.settimeout(WAIT_S)
        reply = self.admin.call("GetStatus")
        assert reply.success, reply.error
        while self._read(time.monotonic() + self.POLL_S):
            pass
        return self.seen

    def close(self) -> None:
        self.admin.close()


def watcher_of(context: Any, name: str) -> Watcher:
    """The scenario's watcher of server ``name``; it must have been started by a Given step."""
    watchers: dict[str, Watcher] = getattr(context, "watchers", {})
    if name not in watchers:
        raise AssertionError(f"nobody watches {name}: add 'an administrator watches {name}'")
    return watchers[name]


def start_watcher(context: Any, name: str) -> Watcher:
    """Open a watcher of ``name`` for this scenario (closed when it ends)."""
    watchers: dict[str, Watcher] | None = getattr(context, "watchers", None)
    if watchers is None:
        watchers = context.watchers = {}
        on_cleanup(context, lambda: [w.close() for w in watchers.values()])
    watchers[name] = Watcher(server_endpoint(context, name))
    return watchers[name]


def json_docstring(context: Any) -> Any:
    """The step's docstring as JSON, after :func:`expand`."""
    text = expand(context, context.text or "")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"the feature's JSON does not parse: {exc}\n{text}") from None


def expand(context: Any, text: str) -> str:
    """Replace the placeholders a feature may use.

    ``<client id of "AE" on "SERVER">``: the id GetClients gives that client the first time
    the scenario asks (kept, so a step after its disconnection still names it).
    ``<port of NAME>``: the server's DICOM port. ``<root>``: the scenario's ``pacsref`` root.
    """
    if getattr(context, "client_ids", None) is None:
        context.client_ids = {}
    while '<client id of "' in text:
        start = text.index('<client id of "')
        end = text.index('">', start) + 2
        inner = text[start + len('<client id of "') : end - 2]
        calling, _, server = inner.partition('" on "')
        if (calling, server) not in context.client_ids:
            context.client_ids[calling, server] = client_id(context, server, calling)
        text = text[:start] + str(context.client_ids[calling, server]) + text[end:]
    for name in re.findall(r"<port of (\S+?)>", text):
        text = text.replace(f"<port of {name}>", str(server_endpoint(context, name).port))
    root = getattr(context, "pacsref_root", None)
    if root is not None:
        text = text.replace("<root>", str(root.path))
    return text


def matches(expected: Any, actual: Any) -> bool:
    """Whether ``actual`` has ``expected``'s shape and values.

    Objects may hold more fields than the feature shows (timestamps, ports, counters nobody
    can predict); lists must have exactly the items shown, in order; values must be equal.
    """
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and matches(value, actual[key]) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual) and type(expected) is type(actual)


def is_notification(name: str) -> str:
    """``name``, checked against the protocol's table: a typo must not pass as 'never came'."""
    assert name in NOTIFICATIONS, f"{name!r} is not a notification: {', '.join(NOTIFICATIONS)}"
    return name


def child_env() -> dict[str, str]:
    """Environment for ``pacsref`` and ``python -m simulators`` subprocesses: this tree first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env
