"""``pacsref clients watch``: notification lines, against a stand-in admin socket.

The stand-in is a Unix socket served by a thread in this process, in a server directory made
by ``pacsref server add`` whose pidfile names a live process with its twistd's command line:
``watch`` cannot tell it from a running server, and the test decides exactly which lines
arrive and when the server "goes away". The real-server round trip is in
``features/service_manager.feature``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pacsref.admin.messages import NOTIFICATIONS, ServiceMessage
from pacsref.manager.cli import main
from pacsref.manager.clients import FORMATTERS, format_notification
from pacsref.manager.daemon import find_server

from .test_manager import stand_in_twistd

CLIENT = {
    "id": 3,
    "ip": "10.0.0.5",
    "port": 40512,
    "ae_title": "CT_ROOM_1",
    "called_ae_title": "WATCHED",
    "connected_time": "2026-11-23T06:00:00+00:00",
    "state": "associated",
    "last_action": "",
    "association": None,
}
CONNECT = ServiceMessage("ClientConnect", "WATCHED", data=[CLIENT])
ACTION = ServiceMessage("ClientAction", "WATCHED", data=["C-ECHO-RQ", "CT_ROOM_1", 3])
STATUS = ServiceMessage("GetStatus", "WATCHED", data=[{"state": "paused"}])


def line(message: ServiceMessage) -> bytes:
    return message.to_json().encode() + b"\n"


@pytest.fixture
def server_dir(tmp_path: Path) -> Iterator[Path]:
    """A server directory whose pidfile names a live stand-in for its twistd (so it counts as
    running: a pidfile naming any other process, this one included, is stale)."""
    assert main(["--root", str(tmp_path), "server", "add", "WATCHED", "--addins", "none"]) == 0
    directory = tmp_path / "WATCHED"
    with stand_in_twistd(directory):
        yield directory


@pytest.fixture
def listener(server_dir: Path) -> Iterator[socket.socket]:
    path = find_server(server_dir.parent, "WATCHED").socket_path
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(1)
    sock.settimeout(10)
    yield sock
    sock.close()


def serve(
    listener: socket.socket, notes: list[ServiceMessage], then_close: bool
) -> threading.Thread:
    """Answer the watcher's GetStatus, push ``notes``, then close (or hold until it leaves)."""

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            request = conn.recv(65536)
            assert json.loads(request)["message"] == "GetStatus"
            conn.sendall(line(STATUS) + b"".join(line(n) for n in notes))
            if not then_close:
                conn.recv(1)  # until the watcher's side closes

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_lines_name_time_notification_and_key_fields() -> None:
    """One readable line per notification: time, name, client, address, calling AE, action."""
    assert format_notification(CONNECT, at=0).endswith("ClientConnect      #3 10.0.0.5:40512")
    assert format_notification(ACTION, at=0).endswith("ClientAction       #3 CT_ROOM_1 C-ECHO-RQ")
    gone = ServiceMessage("ClientDisconnected", "WATCHED", data=[CLIENT, "released"])
    assert format_notification(gone).endswith("#3 10.0.0.5:40512 CT_ROOM_1 (released)")
    idle = ServiceMessage("ClientTimedOut", "WATCHED", data=[CLIENT, 2.0])
    assert format_notification(idle).endswith("CT_ROOM_1 idle for 2 s, aborted")
    paused = format_notification(ServiceMessage("ServerPaused", "WATCHED"))
    assert paused.endswith("ServerPaused       new associations are refused (2, 3, 1)")


def test_server_stopping_says_what_the_stop_means() -> None:
    """data[0] stop_timeout and data[1] open clients in words, not ``[2.0,1]``."""
    stopping = ServiceMessage("ServerStopping", "WATCHED", data=[2.0, 1])
    assert format_notification(stopping, at=0).endswith(
        "ServerStopping     new associations are refused (2, 3, 1); 1 client(s) have 2 s to finish"
    )


@pytest.mark.parametrize("name", sorted(NOTIFICATIONS))
def test_every_notification_of_the_protocol_has_a_formatter(name: str) -> None:
    """A notification added to NOTIFICATIONS without a formatter would print as raw JSON."""
    assert name in FORMATTERS, f"pacsref.manager.clients.FORMATTERS lacks {name!r}"


def test_formatters_name_only_known_notifications() -> None:
    """A formatter for a name the protocol does not have is a typo or a leftover."""
    assert set(FORMATTERS) <= set(NOTIFICATIONS)


def test_a_strange_notification_shows_its_raw_data() -> None:
    """A shape this watcher does not know (a newer server) is printed, not a crash."""
    odd = ServiceMessage("ClientAction", "WATCHED", data=["only one"])
    assert format_notification(odd).endswith('ClientAction       ["only one"]')
    stopping = ServiceMessage("ServerStopping", "WATCHED", data=["soon", 1])
    assert format_notification(stopping).endswith('ServerStopping     ["soon",1]')
    paused = ServiceMessage("ServerPaused", "WATCHED", data=[1])
    assert format_notification(paused).endswith("ServerPaused       [1]")


def test_watch_prints_each_notification_and_fails_when_the_server_goes(
    server_dir: Path, listener: socket.socket, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lines as they come; the server closing is exit 1 with one ``pacsref:`` line."""
    thread = serve(listener, [CONNECT, ACTION], then_close=True)
    status = main(["--root", str(server_dir.parent), "clients", "watch", "WATCHED"])
    thread.join(10)
    out, err = capsys.readouterr()
    assert status == 1
    lines = out.splitlines()
    assert [entry.split()[1] for entry in lines] == ["ClientConnect", "ClientAction"]
    assert lines[1].endswith("#3 CT_ROOM_1 C-ECHO-RQ")
    assert err.splitlines() == [
        "watching WATCHED (paused); Ctrl-C to stop",
        "pacsref: server WATCHED closed the admin connection (stopped?)",
    ]


def test_watch_json_prints_the_raw_service_messages(
    server_dir: Path, listener: socket.socket, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--json``: the ServiceMessage lines exactly as the server sent them."""
    thread = serve(listener, [CONNECT, ACTION], then_close=True)
    main(["--root", str(server_dir.parent), "clients", "watch", "WATCHED", "--json"])
    thread.join(10)
    out, _ = capsys.readouterr()
    assert out.splitlines() == [CONNECT.to_json(), ACTION.to_json()]


def test_watch_of_a_stopped_server_fails_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No live pid: exit 1 saying so, without touching the socket."""
    main(["--root", str(tmp_path), "server", "add", "IDLE", "--addins", "none"])
    capsys.readouterr()
    assert main(["--root", str(tmp_path), "clients", "watch", "IDLE"]) == 1
    assert capsys.readouterr().err == "pacsref: server IDLE is not running\n"


def test_ctrl_c_ends_the_watch_quietly_with_status_0(
    server_dir: Path, listener: socket.socket
) -> None:
    """SIGINT while waiting: exit 0, no traceback; lines seen so far were flushed at once."""
    thread = serve(listener, [CONNECT], then_close=False)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    root = str(server_dir.parent)
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pacsref.manager.cli",
            "--root",
            root,
            "clients",
            "watch",
            "WATCHED",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    guard = threading.Timer(20, watcher.kill)  # bounds the readline below
    guard.start()
    try:
        assert watcher.stdout is not None
        first = watcher.stdout.readline()  # flushed per line, or this would block until exit
        assert first.split()[1:3] == ["ClientConnect", "#3"]
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=10)
    finally:
        guard.cancel()
        watcher.kill()
        watcher.wait(10)
        thread.join(10)
    assert watcher.returncode == 0
    assert out == ""
    assert err == "watching WATCHED (paused); Ctrl-C to stop\n"
