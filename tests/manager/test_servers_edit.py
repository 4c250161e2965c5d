"""``server add`` options, ``server edit`` (stopped, running), ``server delete``, graceful stop."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from pacsref.manager.daemon import find_server
from pacsref.settings import StartMode, load_settings
from pacsref.testing.net import LOOPBACK, free_loopback_port
from pacsref.testing.twistd import TwistdServer
from tests.server.helpers import associate_rq

from .test_manager import add, kill_by_pidfile, run


def test_add_takes_one_option_per_field(tmp_path: Path, capsys) -> None:
    """Per-field options (numbers, --no-<bool>, start mode choices) end up in settings.toml."""
    add(
        capsys, tmp_path, "OPTS", "--max-clients", "7", "--no-allow-anonymous",
        "--start-mode", "automatic", "--client-timeout", "2.5", "--description", "ward 3",
    )  # fmt: skip
    settings = find_server(tmp_path, "OPTS").settings
    assert settings.max_clients == 7 and settings.allow_anonymous is False
    assert settings.start_mode is StartMode.AUTOMATIC and settings.client_timeout == 2.5
    assert settings.description == "ward 3" and settings.artim_timeout == 2.0  # from --set


def test_add_bad_value_names_the_field(tmp_path: Path, capsys) -> None:
    """The settings model judges the values; the error names the field and what is allowed."""
    status, _, err = run(capsys, tmp_path, "server", "add", "BAD", "--max-clients", "0")
    assert status == 1 and "max_clients = 0 is out of range" in err and "allowed" in err
    assert not (tmp_path / "BAD" / "settings.toml").exists()


def test_edit_a_stopped_server_rewrites_its_file(tmp_path: Path, capsys) -> None:
    """edit changes the named fields only; no change or an AE title change is refused."""
    add(capsys, tmp_path, "EDIT")
    status, out, err = run(
        capsys, tmp_path, "server", "edit", "EDIT", "--max-clients", "9", "--set", "no_delay=false"
    )
    assert status == 0, err
    assert "max_clients" in out and "no_delay" in out
    saved = load_settings(tmp_path / "EDIT" / "settings.toml")
    assert saved.max_clients == 9 and saved.no_delay is False and saved.ip_address == LOOPBACK
    status, _, err = run(capsys, tmp_path, "server", "edit", "EDIT")
    assert status == 1 and "no change given" in err
    status, _, err = run(capsys, tmp_path, "server", "edit", "EDIT", "--set", 'ae_title="NEW"')
    assert status == 1 and "ae_title" in err and "server add" in err
    status, _, err = run(capsys, tmp_path, "server", "edit", "EDIT", "--port", "70000")
    assert status == 1 and "port = 70000 is out of range" in err


def test_delete_unregisters_and_keeps_the_directory(tmp_path: Path, capsys) -> None:
    """delete hides the server from list, keeps its data, and can be undone by a rename."""
    add(capsys, tmp_path, "GONE")
    (tmp_path / "GONE" / "data" / "kept.txt").write_text("x")
    status, out, _ = run(capsys, tmp_path, "server", "delete", "GONE")
    assert status == 0 and "remains" in out
    assert (tmp_path / "GONE" / "data" / "kept.txt").is_file()
    _, out, _ = run(capsys, tmp_path, "server", "list")
    assert "GONE" not in out
    status, _, err = run(capsys, tmp_path, "server", "add", "GONE")
    assert status == 1 and "deleted server" in err
    (tmp_path / "GONE" / "settings.toml.deleted").rename(tmp_path / "GONE" / "settings.toml")
    _, out, _ = run(capsys, tmp_path, "server", "list")
    assert "GONE" in out


def _read(peer: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = peer.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _pdu_type(peer: socket.socket) -> int | None:
    """The type of the next PDU from ``peer`` (its body skipped); None when it closed."""
    header = _read(peer, 6)
    if len(header) < 6:
        return None
    _read(peer, int.from_bytes(header[2:6], "big"))
    return header[0]


def _associate(port: int) -> socket.socket:
    peer = socket.create_connection((LOOPBACK, port), timeout=10)
    peer.sendall(associate_rq(called="RUNNING"))
    assert _pdu_type(peer) == 0x02  # A-ASSOCIATE-AC
    return peer


def test_edit_running_server_then_graceful_stop(tmp_path: Path, capsys) -> None:
    """A running server applies live fields at once; stop waits, then A-ABORTs the idle peer."""
    add(capsys, tmp_path, "RUNNING", "--stop-timeout", "1", "--client-timeout", "0")
    directory = tmp_path / "RUNNING"
    try:
        status, _, err = run(capsys, tmp_path, "server", "start", "RUNNING")
        assert status == 0, err
        status, _, err = run(capsys, tmp_path, "server", "delete", "RUNNING")
        assert status == 1 and "stop it first" in err
        new_port = free_loopback_port()
        status, out, err = run(
            capsys, tmp_path, "server", "edit", "RUNNING", "--max-clients", "5",
            "--port", str(new_port),
        )  # fmt: skip
        assert status == 0, err
        assert "applied live: max_clients" in out and "next restart: port" in out
        assert "pacsref server stop RUNNING && pacsref server start RUNNING" in out
        server = find_server(tmp_path, "RUNNING")
        assert server.call("GetSettings")[0]["max_clients"] == 5
        old_port = server.call("GetSettings")[0]["port"]
        assert old_port != new_port and server.settings.port == new_port

        peer = _associate(old_port)
        began = time.monotonic()
        status, _, err = run(capsys, tmp_path, "server", "stop", "RUNNING")
        assert status == 0, err
        assert time.monotonic() - began >= 0.9  # waited for the association (stop_timeout)
        assert _pdu_type(peer) == 0x07  # A-ABORT
        peer.close()
    finally:
        kill_by_pidfile(directory)


@pytest.mark.parametrize("flag", ["--allow-anonymous", "--no-allow-anonymous"])
def test_boolean_options_have_both_forms(tmp_path: Path, capsys, flag: str) -> None:
    add(capsys, tmp_path, "BOOL", flag)
    assert find_server(tmp_path, "BOOL").settings.allow_anonymous is (flag == "--allow-anonymous")


def test_a_server_without_a_pidfile_is_managed_through_its_socket(tmp_path: Path, capsys) -> None:
    """Run as the systemd unit runs it (``twistd -n --pidfile=``): status, pause, edit and
    clients go over the admin socket; delete, start and stop refuse and say why."""
    server = TwistdServer("FG", root=tmp_path, settings={"max_clients": "100"})
    server.start()
    try:
        assert not (tmp_path / "FG" / "twistd.pid").exists()
        status, out, err = run(capsys, tmp_path, "server", "status", "FG")
        assert status == 0 and out.startswith("FG: pid - {"), (out, err)
        assert run(capsys, tmp_path, "server", "pause", "FG")[:2] == (0, "paused FG\n")
        assert '"state": "paused"' in run(capsys, tmp_path, "server", "status", "FG")[1]
        assert run(capsys, tmp_path, "server", "resume", "FG")[0] == 0
        assert run(capsys, tmp_path, "clients", "list", "FG")[0] == 0
        status, out, err = run(capsys, tmp_path, "server", "edit", "FG", "--max-clients", "7")
        assert status == 0 and "applied live: max_clients" in out, (out, err)
        assert run(capsys, tmp_path, "server", "list")[1].split("\n")[1].split()[3] == "running"
        status, _, err = run(capsys, tmp_path, "server", "delete", "FG")
        assert status == 1 and "systemctl stop pacsref-FG" in err
        assert (tmp_path / "FG" / "settings.toml").exists()
        status, _, err = run(capsys, tmp_path, "server", "start", "FG")
        assert status == 1 and "FG running without a pidfile" in err
        status, _, err = run(capsys, tmp_path, "server", "stop", "FG")
        assert status == 1 and "systemctl stop pacsref-FG" in err
    finally:
        server.stop()
    status, out, _ = run(capsys, tmp_path, "server", "status", "FG")
    assert status == 3 and out == "FG: stopped\n"
