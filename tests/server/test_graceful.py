"""Graceful stop: stop listening, let associations finish, abort what is left at the deadline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed

from pacsref.server.graceful import ABORT_GRACE_S, CUT_GRACE_S, drain
from pacsref.server.service import DicomListenerService, ServerService
from pacsref.testing.harness import ServerHarness
from pacsref.ul.constants import PDUType

from .helpers import associate_rq


@pytest.fixture
def harness(tmp_path: Path) -> ServerHarness:
    return ServerHarness(tmp_path / "PACSREF", settings={"stop_timeout": 5.0})


def _associated(harness: ServerHarness, port: int = 40000) -> Any:
    conn = harness.connect(port=port)
    conn.send(associate_rq())
    [(pdu_type, _)] = conn.received()
    assert pdu_type is PDUType.A_ASSOCIATE_AC
    return conn


def _result(d: Deferred[Any]) -> list[Any]:
    out: list[Any] = []
    d.addCallback(out.append)
    return out


def test_no_clients_fires_at_once(harness: ServerHarness) -> None:
    """Nothing connected: the drain is over before it starts."""
    assert _result(drain(harness.control.clients, harness.clock, 5.0)) == [0]


def test_clients_that_finish_in_time_are_not_aborted(harness: ServerHarness) -> None:
    """The drain fires when the last client leaves, before the deadline, aborting no one."""
    conn = _associated(harness)
    got = _result(drain(harness.control.clients, harness.clock, 5.0))
    harness.clock.advance(4)
    assert got == [] and conn.received() == []
    conn.lose()
    assert got == [0]
    assert not [call for call in harness.clock.getDelayedCalls() if call.active()]


def test_clients_left_at_the_deadline_get_a_abort(harness: ServerHarness) -> None:
    """At the deadline an idle association gets A-ABORT; the drain ends when it closes."""
    conn = _associated(harness)
    got = _result(drain(harness.control.clients, harness.clock, 5.0))
    harness.clock.advance(5)
    assert [t for t, _ in conn.received()] == [PDUType.A_ABORT] and conn.closed
    assert got == []
    conn.lose()
    assert got == [1]


def test_a_connection_that_never_closes_is_cut_then_given_up_on(harness: ServerHarness) -> None:
    """An aborted connection that does not go away (its peer does not read) is cut after
    ABORT_GRACE_S, and holds the stop only CUT_GRACE_S more if even that is not reported."""
    conn = _associated(harness)
    got = _result(drain(harness.control.clients, harness.clock, 5.0))
    harness.clock.advance(5)
    assert not conn.transport.disconnected
    harness.clock.advance(ABORT_GRACE_S)
    assert conn.transport.disconnected and got == []
    harness.clock.advance(CUT_GRACE_S)
    assert got == [1]


def test_a_cut_connection_is_reported_before_the_drain_ends(harness: ServerHarness) -> None:
    """The cut connection's loss (the reactor's next turn) publishes its ClientDisconnected
    and ends the drain: administrators hear of it before their connections close."""
    conn = _associated(harness)
    heard: list[str] = []
    harness.control.clients.notifier.subscribe(lambda event: heard.append(event.name))
    got = _result(drain(harness.control.clients, harness.clock, 5.0))
    harness.clock.advance(5)
    harness.clock.advance(ABORT_GRACE_S)
    assert conn.transport.disconnected and got == []
    conn.lose()  # what abortConnection leads to
    assert got == [1] and heard[-1] == "ClientDisconnected"
    assert not [call for call in harness.clock.getDelayedCalls() if call.active()]


class FakePort:
    def __init__(self) -> None:
        self.listening = True

    def stopListening(self) -> Deferred[None]:
        self.listening = False
        return succeed(None)


class Recorder(Service):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def stopService(self) -> None:
        super().stopService()
        self.log.append("other stopped")


def test_server_stops_listening_then_drains_before_the_rest(harness: ServerHarness) -> None:
    """stopService: no new connections, new RQs refused (2, 3, 1), others wait for the drain."""
    conn = _associated(harness)
    log: list[str] = []
    root = ServerService()
    Recorder(log).setServiceParent(root)
    listener = DicomListenerService(harness.factory, harness.clock)
    listener.setName("dicom")
    listener.setServiceParent(root)
    root.running = 1
    listener.running = 1
    listener.port = port = FakePort()  # type: ignore[assignment]
    got = _result(root.stopService())
    assert not port.listening and harness.control.paused and log == []
    late = harness.connect(port=40001)
    late.send(associate_rq())
    [(pdu_type, body)] = late.received()
    assert pdu_type is PDUType.A_ASSOCIATE_RJ and body == bytes([0, 2, 3, 1])
    late.lose()
    harness.clock.advance(5)  # stop_timeout
    assert [t for t, _ in conn.received()] == [PDUType.A_ABORT]
    conn.lose()
    assert log == ["other stopped"] and len(got) == 1


def test_a_stop_is_told_as_server_stopping_not_as_a_pause(harness: ServerHarness) -> None:
    """ServerStopping(stop_timeout, open clients) when the stop begins; never ServerPaused."""
    _associated(harness)
    listener = DicomListenerService(harness.factory, harness.clock)
    listener.running = 1
    listener.port = FakePort()  # type: ignore[assignment]
    listener.stopService()
    [stopping] = [e for e in harness.events if e.name == "ServerStopping"]
    assert (stopping.deadline, stopping.clients) == (5.0, 1)
    control = harness.control
    assert control.paused and control.stopping and control.state == "stopping"
    control.pause()
    control.resume()  # a stop cannot be resumed
    assert control.paused and "ServerPaused" not in harness.event_names()
    assert "ServerResumed" not in harness.event_names()


def test_watchers_get_the_stop_s_last_disconnection_before_their_connection_closes(
    harness: ServerHarness,
) -> None:
    """The admin service stops after the drain, and closes its connections after their output."""
    import json
    import tempfile

    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from pacsref.admin.service import AdminService

    conn = _associated(harness)
    with tempfile.TemporaryDirectory(prefix="grc", dir="/tmp") as short:
        admin_reactor = MemoryReactorClock()
        admin = AdminService(
            harness.control, harness.server, admin_reactor, path=Path(short) / "P.sock"
        )
        root = ServerService(harness.clock)
        listener = DicomListenerService(harness.factory, harness.clock)
        listener.setName("dicom")
        listener.setServiceParent(root)
        admin.setServiceParent(root)
        root.running = listener.running = 1
        listener.port = FakePort()  # type: ignore[assignment]
        admin.startService()
        assert admin.factory is not None
        watcher = admin.factory.buildProtocol(None)
        transport = StringTransport()
        watcher.makeConnection(transport)

        def names() -> list[str]:
            return [json.loads(line)["message"] for line in transport.value().splitlines()]

        stopped = _result(root.stopService())
        assert names() == ["ServerStopping"]
        harness.clock.advance(5)  # stop_timeout: the held client is aborted
        assert not transport.disconnecting
        conn.lose()
        assert names() == ["ServerStopping", "ClientDisconnected"]
        last = json.loads(transport.value().splitlines()[-1])
        assert last["data"][1] == "server stopping: stop_timeout passed"
        assert transport.disconnecting and not transport.disconnected  # after its buffer
        assert stopped == []  # the reactor's shutdown waits for the admin connection
        watcher.connectionLost(None)
        assert len(stopped) == 1
