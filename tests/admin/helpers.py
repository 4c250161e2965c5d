"""In-memory admin server pieces for the tests: a real ServerControl, fake threads."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from pacsref.addin.aetitles import AeInfo, MemoryAeTitles
from pacsref.addin.errors import AddinFailure
from pacsref.admin.handlers import AdminCommands
from pacsref.admin.messages import NOTIFICATIONS
from pacsref.admin.protocol import AdminFactory, AdminProtocol
from pacsref.server.clients import ClientRegistry
from pacsref.server.control import ServerControl
from pacsref.server.notifications import Notifier
from pacsref.settings import ServerSettings


class Closable:
    """A connection the registry can disconnect; records the reason."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def disconnect(self, reason: str) -> None:
        self.reasons.append(reason)

    def cut(self) -> None:
        self.reasons.append("cut")


def association() -> Any:
    """Enough of a NegotiatedAssociation for ClientInfo.to_dict."""
    return SimpleNamespace(
        calling_ae_title="MODALITY",
        called_ae_title="PACSREF",
        peer_max_pdu_length=16384,
        our_max_pdu_length=131072,
        peer_implementation_class_uid="1.2.3",
        peer_implementation_version_name="TEST",
        contexts={},
    )


class Admin:
    """One admin server (factory) over a real control, with synchronous 'threads'."""

    def __init__(self, run_in_thread: Any = None) -> None:
        self.notifier = Notifier()
        self.clients = ClientRegistry(self.notifier)
        self.control = ServerControl(self.clients, self.notifier, "PACSREF")
        self.titles = MemoryAeTitles(
            [AeInfo("MODALITY", "127.0.0.1", 104)], resolver=lambda info: frozenset()
        )
        self.hosts: list[str] = []
        self.now = 100.0
        self.commands = AdminCommands(
            self.control,
            self.titles,
            run_in_thread or (lambda f, *a: maybeDeferred(f, *a)),
            settings=ServerSettings(ae_title="PACSREF"),
            addins=[SimpleNamespace(name="storage", description="Stores images")],
            failures=[AddinFailure("broken", "ImportError: no module named x")],
            host_changed=self.hosts.append,
            clock=lambda: self.now,
        )
        self.clock = Clock()  # times the cut of a refused connection whose client does not read
        self.factory = AdminFactory(self.commands, "PACSREF", self.clock)

    def connect(self) -> Connection:
        return Connection(self.factory)

    def add_client(self, associate: bool = False) -> Any:
        connection = Closable()
        client = self.clients.add(connection, "127.0.0.1", 40000, 1_700_000_000.0, 10)
        if associate:
            self.clients.associated(client, association(), 7)
        return client, connection


class Connection:
    """One admin client over a StringTransport."""

    def __init__(self, factory: AdminFactory) -> None:
        self.protocol: AdminProtocol = factory.buildProtocol(None)  # type: ignore[assignment]
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def send_line(self, line: bytes) -> list[dict[str, Any]]:
        """Send one line; the responses written (notifications left out)."""
        self.protocol.dataReceived(line + b"\n")
        return [m for m in self.read() if m["message"] not in NOTIFICATIONS]

    def request(self, message: str, *data: Any) -> dict[str, Any]:
        [reply] = self.send_line(json.dumps({"message": message, "data": list(data)}).encode())
        return reply

    def read(self) -> list[dict[str, Any]]:
        out = self.transport.value()
        self.transport.clear()
        return [json.loads(line) for line in out.splitlines()]
