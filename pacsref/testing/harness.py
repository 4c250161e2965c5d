"""An in-memory server for tests: the real factory and protocol, no sockets, no threads.

``ServerHarness`` builds a real server directory (defaults plus the shipped
add-ins, plus any extra add-in source a test supplies), the real
:class:`~pacsref.server.factory.DicomServerFactory`, and connects protocols
to ``StringTransport`` objects. Time is a ``Clock``; add-in calls that would
go to a thread pool wait in a :class:`ManualThreadPool` until the test runs
them, so timeouts and slow add-ins are tested deterministically. Every
notification the server publishes is recorded in ``ServerHarness.events``,
and ``ServerHarness.control`` pauses, resumes and lists clients.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from pacsref.server.context import ServerContext, build_server_context
from pacsref.server.control import ServerControl
from pacsref.server.create import create_server
from pacsref.server.factory import DicomServerFactory
from pacsref.server.protocol import DicomServerProtocol
from pacsref.ul.constants import PDUType
from pacsref.ul.framing import PDUFramer


class ThreadClock(Clock):
    """A Clock that also runs ``callFromThread`` calls at once (there are no threads)."""

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


class SyncReactor(ThreadClock):
    """A ThreadClock plus the few IReactorCore calls ``adbapi.ConnectionPool`` makes.

    For driving an add-in's index pool on the caller's thread (with :class:`SyncPool`): the
    storage tests and ``bench/store_path.py``.
    """

    def callWhenRunning(self, f: Callable[..., Any], *args: Any, **kw: Any) -> None:
        """The caller starts the pool itself."""

    def addSystemEventTrigger(self, *args: Any, **kw: Any) -> int:
        return 1

    def removeSystemEventTrigger(self, trigger: int) -> None:
        """Nothing registered."""


class SyncPool:
    """A thread pool that runs each job at once on the calling thread, as ThreadPool reports."""

    def callInThreadWithCallback(
        self, on_result: Callable[[bool, Any], None], f: Callable[..., Any], *args: Any, **kw: Any
    ) -> None:
        try:
            result = f(*args, **kw)
        except BaseException:
            from twisted.python.failure import Failure

            on_result(False, Failure())
        else:
            on_result(True, result)

    def start(self) -> None:
        """Nothing to start."""

    def stop(self) -> None:
        """Nothing to stop."""


class ManualThreadPool:
    """A thread pool whose work runs only when the test says so."""

    def __init__(self) -> None:
        self.pending: list[tuple[Callable[..., Any], Callable[..., Any], tuple[Any, ...]]] = []

    def callInThreadWithCallback(
        self, on_result: Callable[[bool, Any], None], f: Callable[..., Any], *args: Any, **kw: Any
    ) -> None:
        self.pending.append((on_result, f, args))

    def run_all(self) -> None:
        """Run every queued call, delivering results as a real pool would."""
        while self.pending:
            on_result, f, args = self.pending.pop(0)
            try:
                result = f(*args)
            except BaseException as exc:  # delivered as a Failure, like ThreadPool does
                from twisted.python.failure import Failure

                on_result(False, Failure(exc))
            else:
                on_result(True, result)

    def start(self) -> None:
        """Nothing to start."""

    def stop(self) -> None:
        """Nothing to stop."""


class Connection:
    """One client connection to the harness server, speaking raw PDUs."""

    def __init__(self, protocol: DicomServerProtocol, transport: StringTransport) -> None:
        self.protocol = protocol
        self.transport = transport
        self._framer = PDUFramer(0)

    def send(self, data: bytes) -> None:
        """Bytes from the client to the server."""
        self.protocol.dataReceived(data)

    def received(self) -> list[tuple[PDUType, bytes]]:
        """PDUs the server wrote since the last call, as (type, body)."""
        self._framer.feed(self.transport.value())
        self.transport.clear()
        out = []
        while (pdu := self._framer.next_pdu()) is not None:
            out.append(pdu)
        return out

    @property
    def client(self) -> Any:
        """This connection's :class:`~pacsref.server.clients.ClientInfo`."""
        return self.protocol.client

    @property
    def closed(self) -> bool:
        """True once the server asked to close the connection."""
        return bool(self.transport.disconnecting)

    def lose(self) -> None:
        """The client's side of the connection goes away."""
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.protocol.connectionLost(Failure(ConnectionDone()))


class ServerHarness:
    """A real pacsref server built in ``server_dir``, driven in memory.

    Args:
        server_dir: a directory that does not exist yet.
        settings: settings to create the server with (ae_title defaults to PACSREF).
        extra_addins: file name -> Python source of further add-ins.
        without_addins: names (file or package) of shipped add-ins to leave out, e.g.
            ``("users",)`` for a server with no user identity verifier.
    """

    def __init__(
        self,
        server_dir: Path,
        settings: Mapping[str, object] | None = None,
        extra_addins: Mapping[str, str] | None = None,
        without_addins: Iterable[str] = (),
    ) -> None:
        values = {"ae_title": "PACSREF", **(settings or {})}
        create_server(server_dir, values)
        for name in without_addins:
            shipped = server_dir / "addins" / name
            if shipped.is_dir():
                shutil.rmtree(shipped)
            else:
                shipped.with_suffix(".py").unlink()
        for name, source in (extra_addins or {}).items():
            (server_dir / "addins" / name).write_text(source)
        self.clock = ThreadClock()
        self.server: ServerContext = build_server_context(server_dir, self.clock)
        self.threadpool = ManualThreadPool()
        self.server.threadpool = self.threadpool  # type: ignore[assignment]
        self.factory = DicomServerFactory(self.server, self.clock)
        self.events: list[Any] = []
        self.factory.notifications.subscribe(self.events.append)

    @property
    def control(self) -> ServerControl:
        """Pause/resume, clients and notifications of the harness server."""
        return self.factory.control

    def event_names(self) -> list[str]:
        """Names of the notifications published so far, in order (e.g. ``ClientConnect``)."""
        return [event.name for event in self.events]

    def connect(self, host: str = "127.0.0.1", port: int = 40000) -> Connection:
        """Accept a new connection from ``host:port``."""
        protocol = self.factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        protocol.makeConnection(transport)
        return Connection(protocol, transport)


__all__ = [
    "Connection",
    "ManualThreadPool",
    "ServerHarness",
    "ThreadClock",
]
