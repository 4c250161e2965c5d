"""The connected-client registry, notifications, disconnection and the client timeout."""

from __future__ import annotations

import json
from pathlib import Path

from pacsref.server.notifications import (
    ClientAction,
    ClientDisconnected,
    ClientTimedOut,
    Notifier,
    ServerPaused,
)
from pacsref.testing.harness import ServerHarness
from pacsref.ul import codec
from pacsref.ul.constants import PDUType
from pacsref.ul.events import PresentationContextProposal

from .helpers import EXPLICIT, IMPLICIT, VERIFICATION, associate_rq, echo_rq, responses


def _harness(tmp_path: Path, **settings: object) -> ServerHarness:
    values = {"artim_timeout": 10.0, "client_timeout": 60.0, **settings}
    return ServerHarness(tmp_path / "PACSREF", settings=values)


def test_notifications_for_one_association_life(tmp_path: Path) -> None:
    """Connect, associate, two C-ECHOs, release, close: ClientConnect, ClientAssociated,
    ClientAction twice (command and calling AE), ClientDisconnected, in that order."""
    harness = _harness(tmp_path)
    conn = harness.connect()
    conn.send(associate_rq(calling="CT1"))
    conn.send(echo_rq(message_id=1) + echo_rq(message_id=2))
    conn.send(codec.RELEASE_RQ)
    conn.lose()
    assert harness.event_names() == [
        "ClientConnect",
        "ClientAssociated",
        "ClientAction",
        "ClientAction",
        "ClientDisconnected",
    ]
    action = harness.events[2]
    assert isinstance(action, ClientAction)
    assert (action.action, action.ae_title, action.client_id) == ("C-ECHO-RQ", "CT1", 1)
    gone = harness.events[-1]
    assert isinstance(gone, ClientDisconnected) and gone.reason == "released"
    json.dumps([event.to_dict() for event in harness.events])  # every event is JSON-ready


def test_client_info_from_accept_to_close(tmp_path: Path) -> None:
    """A ClientInfo exists from TCP accept (no AE title yet) until close, and describes the
    association: contexts with syntaxes and roles, max PDU both ways, peer implementation."""
    harness = _harness(tmp_path)
    harness.clock.advance(1_700_000_000)
    conn = harness.connect(host="127.0.0.5", port=4242)
    [client] = harness.control.list_clients()
    assert client is conn.client
    before = client.to_dict()
    assert before["ae_title"] == "" and before["association"] is None
    assert (before["ip"], before["port"], before["state"]) == ("127.0.0.5", 4242, "connected")
    assert before["connected_time"] == "2023-11-14T22:13:20+00:00"
    conn.send(
        associate_rq(
            calling="CT1",
            max_pdu=32768,
            contexts=(PresentationContextProposal(1, VERIFICATION, (EXPLICIT, IMPLICIT)),),
        )
    )
    conn.send(echo_rq())
    info = client.to_dict()
    assert info["ae_title"] == "CT1" and info["state"] == "associated"
    assert info["last_action"] == "C-ECHO-RQ"
    association = info["association"]
    assert association["peer_max_pdu_length"] == 32768
    assert association["our_max_pdu_length"] == 131072
    assert association["peer_implementation_class_uid"] == "1.2.826.0.1.3680043.9.1"
    [context] = association["contexts"]
    assert context["abstract_syntax"] == VERIFICATION
    assert context["transfer_syntax"] == EXPLICIT
    assert (context["peer_scu"], context["peer_scp"]) == (True, False)
    json.dumps(info)
    assert harness.control.clients.get(client.id) is client
    conn.lose()
    assert harness.control.list_clients() == ()
    assert harness.control.clients.get(client.id) is None


def test_client_ids_are_unique(tmp_path: Path) -> None:
    """Each connection gets a new id, also after earlier ones closed."""
    harness = _harness(tmp_path)
    first = harness.connect()
    first.lose()
    second = harness.connect(port=40001)
    assert second.client.id == first.client.id + 1


def test_disconnect_aborts_then_closes(tmp_path: Path) -> None:
    """disconnect(id) on an associated client sends A-ABORT, then closes; other clients go on."""
    harness = _harness(tmp_path)
    victim = harness.connect()
    victim.send(associate_rq())
    other = harness.connect(port=40001)
    other.send(associate_rq())
    victim.received()
    other.received()
    assert harness.control.disconnect(victim.client.id) is True
    assert [t for t, _ in victim.received()] == [PDUType.A_ABORT]
    assert victim.closed
    victim.lose()
    disconnected = [e for e in harness.events if isinstance(e, ClientDisconnected)]
    assert disconnected[0].reason == "disconnected by the administrator"
    other.send(echo_rq())
    assert responses(other.received())[0][0x0900] == 0


def test_disconnect_before_association_just_closes(tmp_path: Path) -> None:
    """A client that has not sent an A-ASSOCIATE-RQ has no association to abort: it is closed."""
    harness = _harness(tmp_path)
    conn = harness.connect()
    assert harness.control.disconnect(conn.client.id) is True
    assert conn.received() == [] and conn.closed


def test_disconnect_unknown_client(tmp_path: Path) -> None:
    """disconnect() of an id that is not connected returns False."""
    harness = _harness(tmp_path)
    conn = harness.connect()
    conn.lose()
    assert harness.control.disconnect(conn.client.id) is False
    assert harness.control.disconnect(12345) is False


def test_client_timeout_notifies_then_aborts(tmp_path: Path) -> None:
    """No data from an associated peer for the client timeout: ClientTimedOut is published,
    then A-ABORT and close; the disconnection names the timeout."""
    harness = _harness(tmp_path)
    conn = harness.connect()
    conn.send(associate_rq())
    conn.received()
    harness.clock.advance(59.9)
    assert "ClientTimedOut" not in harness.event_names()
    harness.clock.advance(0.2)
    timed_out = [e for e in harness.events if isinstance(e, ClientTimedOut)]
    assert len(timed_out) == 1 and timed_out[0].timeout == 60.0
    assert timed_out[0].client is conn.client
    assert [t for t, _ in conn.received()] == [PDUType.A_ABORT]
    assert conn.closed
    conn.lose()
    assert harness.events[-1].name == "ClientDisconnected"
    assert harness.events[-1].reason == "client timeout"


def test_client_timeout_zero_disables(tmp_path: Path) -> None:
    """client_timeout = 0: an idle association is never aborted."""
    harness = _harness(tmp_path, client_timeout=0)
    conn = harness.connect()
    conn.send(associate_rq())
    conn.received()
    harness.clock.advance(10_000)
    assert not conn.closed and conn.received() == []


def test_failing_subscriber_does_not_affect_others_or_the_server(tmp_path: Path) -> None:
    """A subscriber that raises is logged; later subscribers still get the event and the
    association is served normally."""
    harness = _harness(tmp_path)
    seen: list[str] = []

    def broken(event: object) -> None:
        raise RuntimeError("subscriber bug")

    harness.factory.notifications.subscribe(broken)
    harness.factory.notifications.subscribe(lambda e: seen.append(e.name))
    conn = harness.connect()
    conn.send(associate_rq())
    assert [t for t, _ in conn.received()] == [PDUType.A_ASSOCIATE_AC]
    assert seen == ["ClientConnect", "ClientAssociated"]


def test_unsubscribe_is_per_subscription() -> None:
    """Each subscribe() returns its own unsubscribe; the same callable may subscribe twice."""
    notifier = Notifier()
    got: list[str] = []
    first = notifier.subscribe(lambda e: got.append(e.name))
    second = notifier.subscribe(lambda e: got.append(e.name.lower()))
    notifier.publish(ServerPaused())
    first()
    notifier.publish(ServerPaused())
    second()
    notifier.publish(ServerPaused())
    assert got == ["ServerPaused", "serverpaused", "serverpaused"]
    assert not notifier.active


def test_no_client_action_built_without_subscribers(tmp_path: Path) -> None:
    """With nobody subscribed, serving a request still records the last action."""
    harness = _harness(tmp_path)
    harness.factory.notifications._subscribers = ()  # the harness's own recorder too
    conn = harness.connect()
    conn.send(associate_rq())
    conn.send(echo_rq())
    assert conn.client.last_action == "C-ECHO-RQ"
    assert harness.events == []
