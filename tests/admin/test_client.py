"""The client library: blocking over a socketpair with canned lines, Twisted over iosim."""

from __future__ import annotations

import json
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import StringTransport
from twisted.test.iosim import connect, makeFakeClient, makeFakeServer

from pacsref.admin import client as client_module
from pacsref.admin.client import (
    AdminClient,
    AdminClientProtocol,
    AdminConnectionError,
    AdminTimeoutError,
)
from pacsref.admin.messages import ServiceMessage
from tests.admin.helpers import Admin


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path (pytest's tmp_path may be too long for a socket)."""
    with tempfile.TemporaryDirectory(prefix="adm", dir="/tmp") as name:
        yield Path(name)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    try:
        yield ours, theirs
    finally:
        ours.close()
        theirs.close()


def line(message: str, *data: Any, success: bool = True, error: str = "") -> bytes:
    return ServiceMessage(message, "PACSREF", success, error, list(data)).to_json().encode() + b"\n"


def test_blocking_call_returns_the_response_and_keeps_notifications(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    theirs.sendall(line("ClientConnect", {"id": 1}) + line("Pause", "paused"))
    client = AdminClient(sock=ours, timeout=5)
    reply = client.call("Pause")
    assert (reply.message, reply.success, reply.data) == ("Pause", True, ["paused"])
    sent = json.loads(theirs.recv(65536))
    assert sent == {"message": "Pause", "service": "", "success": True, "error": "", "data": []}
    theirs.sendall(line("ClientAction", "C-ECHO-RQ", "MODALITY", 1))
    theirs.close()
    notes = list(client.notifications())
    assert [n.message for n in notes] == ["ClientConnect", "ClientAction"]
    assert notes[1].data == ["C-ECHO-RQ", "MODALITY", 1]


def test_blocking_call_returns_failures_as_messages(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    theirs.sendall(line("RemoveAeTitle", success=False, error="AE title 'X' does not exist"))
    with AdminClient(sock=ours, timeout=5) as client:
        reply = client.call("RemoveAeTitle", "X")
    assert not reply.success and "does not exist" in reply.error
    assert json.loads(theirs.recv(65536))["data"] == ["X"]


def test_blocking_call_on_a_closed_connection_raises(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    theirs.close()
    client = AdminClient(sock=ours, timeout=5)
    with pytest.raises(AdminConnectionError) as caught:
        client.call("GetStatus")
    assert not isinstance(caught.value, BrokenPipeError)
    assert "the admin socket: sending GetStatus failed: Broken pipe" in str(caught.value)


def test_blocking_call_timeout_is_an_admin_connection_error(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A server that does not answer: AdminTimeoutError, both an AdminConnectionError and a
    TimeoutError, saying what it waited for."""
    ours, _theirs = pair
    client = AdminClient(sock=ours, timeout=0.05)
    with pytest.raises(AdminConnectionError) as caught:
        client.call("GetStatus")
    assert isinstance(caught.value, AdminTimeoutError) and isinstance(caught.value, TimeoutError)
    assert str(caught.value) == (
        "the admin socket: no answer within 0.05 s while waiting for the response to GetStatus"
    )
    with pytest.raises(AdminTimeoutError):
        next(client.notifications())  # a timeout does not end the notifications, it is raised


def test_blocking_call_errors_name_the_server_socket(short_dir: Path) -> None:
    """With a path, every failure names that socket: a reset, a close, a timeout."""
    path = short_dir / "S.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    try:
        client = AdminClient(path, timeout=0.05)
        with pytest.raises(AdminTimeoutError, match=f"^admin socket {path}: no answer within"):
            client.call("GetStatus")
        accepted, _ = server.accept()
        accepted.close()
        with pytest.raises(AdminConnectionError, match=f"^admin socket {path}: "):
            client.call("GetStatus")
        client.close()
    finally:
        server.close()


def test_blocking_client_without_a_server(tmp_path: Path) -> None:
    with pytest.raises(AdminConnectionError, match="cannot connect"):
        AdminClient(tmp_path / "none.sock", timeout=1)
    with pytest.raises(ValueError, match="needs a path or a socket"):
        AdminClient()


def test_twisted_client_round_trip_and_notifications() -> None:
    admin = Admin()
    notes: list[ServiceMessage] = []
    server = admin.factory.buildProtocol(None)
    client = AdminClientProtocol(on_notification=notes.append)
    other: list[ServiceMessage] = []
    unsubscribe = client.subscribe(other.append)
    pump = connect(server, makeFakeServer(server), client, makeFakeClient(client))
    replies: list[ServiceMessage] = []
    client.call("GetAeTitles").addCallback(replies.append)
    client.call("RemoveAeTitle", "NOPE").addCallback(replies.append)
    pump.flush()
    assert [(r.message, r.success) for r in replies] == [
        ("GetAeTitles", True),
        ("RemoveAeTitle", False),
    ]
    assert replies[0].data[0][0]["ae_title"] == "MODALITY"
    admin.add_client()
    pump.flush()
    unsubscribe()
    admin.control.pause()
    pump.flush()
    assert [n.message for n in notes] == ["ClientConnect", "ServerPaused"]
    assert [n.message for n in other] == ["ClientConnect"]


def test_twisted_client_pending_calls_fail_when_the_connection_is_lost() -> None:
    admin = Admin()
    server = admin.factory.buildProtocol(None)
    client = AdminClientProtocol()
    connect(server, makeFakeServer(server), client, makeFakeClient(client))
    errors: list[Any] = []
    client.call("GetStatus").addErrback(errors.append)
    client.connectionLost(None)
    assert errors and errors[0].check(AdminConnectionError)
    unconnected: list[Any] = []
    AdminClientProtocol().call("GetStatus").addErrback(unconnected.append)
    assert unconnected[0].check(AdminConnectionError)


def test_blocking_call_of_a_notification_name_gets_its_refusal_not_a_notification(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """The refusal carries the notification's name but success false; notifications are kept."""
    ours, theirs = pair
    refusal = "'ClientConnect' is a notification, not a request"
    theirs.sendall(
        line("ClientConnect", {"id": 1}) + line("ClientConnect", success=False, error=refusal)
    )
    client = AdminClient(sock=ours, timeout=5)
    reply = client.call("ClientConnect")
    assert (reply.message, reply.success, reply.error) == ("ClientConnect", False, refusal)
    theirs.close()
    assert [(n.message, n.data) for n in client.notifications()] == [("ClientConnect", [{"id": 1}])]


def test_twisted_call_of_a_notification_name_fires_with_the_refusal() -> None:
    admin = Admin()
    notes: list[ServiceMessage] = []
    server = admin.factory.buildProtocol(None)
    client = AdminClientProtocol(on_notification=notes.append)
    pump = connect(server, makeFakeServer(server), client, makeFakeClient(client))
    replies: list[ServiceMessage] = []
    client.call("ClientConnect").addCallback(replies.append)
    pump.flush()
    assert [(r.message, r.success) for r in replies] == [("ClientConnect", False)]
    assert "is a notification, not a request" in replies[0].error
    assert notes == []


def _clients_response(size: int) -> bytes:
    """A GetClients response line of about ``size`` bytes (a busy server's is over 1 MiB)."""
    return line("GetClients", ["x" * size])


def test_blocking_call_reads_a_response_over_1_mib(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """The 1 MiB limit is the server's for requests; responses may be far longer."""
    ours, theirs = pair
    response = _clients_response(3 * 1024 * 1024)
    sender = threading.Thread(target=theirs.sendall, args=(response,), daemon=True)
    sender.start()
    reply = AdminClient(sock=ours, timeout=5).call("GetClients")
    sender.join(5)
    assert reply.success and len(reply.data[0][0]) == 3 * 1024 * 1024


def test_blocking_client_refuses_a_line_over_its_limit(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "MAX_RESPONSE_LENGTH", 1000)
    ours, theirs = pair
    theirs.sendall(_clients_response(5000))
    client = AdminClient(sock=ours, timeout=5)
    with pytest.raises(AdminConnectionError, match="line longer than 1000 bytes"):
        client.call("GetClients")
    assert ours.fileno() == -1  # closed: nothing after the line can be framed


def test_blocking_client_closes_on_a_line_that_is_no_admin_message(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A line from the server that is not JSON is a broken connection, said as one (not a
    MessageError about a request), and the socket is closed."""
    ours, theirs = pair
    theirs.sendall(b"this is not json\n")
    client = AdminClient(sock=ours, timeout=5)
    with pytest.raises(AdminConnectionError, match="not an admin message"):
        client.call("GetStatus")
    assert ours.fileno() == -1


def test_twisted_call_gets_a_long_response_and_a_clear_error_for_a_too_long_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over 1 MiB is fine; over the limit fails the Deferred (it never fired) and closes."""
    client = AdminClientProtocol()
    transport = StringTransport()
    client.makeConnection(transport)
    replies: list[Any] = []
    client.call("GetClients").addBoth(replies.append)
    response = _clients_response(3 * 1024 * 1024)
    for start in range(0, len(response), 65536):
        client.dataReceived(response[start : start + 65536])
    assert isinstance(replies[0], ServiceMessage) and replies[0].success

    monkeypatch.setattr(client_module, "MAX_RESPONSE_LENGTH", 1000)
    client = AdminClientProtocol()
    client.makeConnection(transport)
    errors: list[Any] = []
    client.call("GetClients").addErrback(errors.append)
    client.dataReceived(_clients_response(5000))
    assert errors[0].check(AdminConnectionError)
    assert "line longer than 1000 bytes" in errors[0].getErrorMessage()
    assert transport.disconnecting
    later: list[Any] = []
    client.call("GetStatus").addErrback(later.append)
    assert later[0].check(AdminConnectionError)


def test_twisted_call_after_the_connection_was_lost_fails_at_once() -> None:
    client = AdminClientProtocol()
    transport = StringTransport()
    client.makeConnection(transport)
    client.connectionLost(None)
    errors: list[Any] = []
    client.call("GetStatus").addErrback(errors.append)
    assert errors[0].check(AdminConnectionError)
    assert errors[0].getErrorMessage() == "the admin connection was lost"
    assert transport.value() == b""
