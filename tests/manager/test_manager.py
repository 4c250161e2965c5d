"""The ``pacsref`` service manager: server add/list/unit, and a real daemon round trip."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pacsref.manager.cli import main
from pacsref.manager.daemon import find_server, process_alive
from pacsref.server.create import shipped_addins
from pacsref.testing.net import LOOPBACK, free_loopback_port


def run(capsys: pytest.CaptureFixture[str], root: Path, *argv: str) -> tuple[int, str, str]:
    """Run ``pacsref --root ROOT ARGV...``; its exit status, stdout and stderr."""
    status = main(["--root", str(root), *argv])
    out, err = capsys.readouterr()
    return status, out, err


def add(capsys: pytest.CaptureFixture[str], root: Path, name: str, *extra: str) -> int:
    """Add a loopback server on a free port with a short ARTIM; return its port."""
    port = free_loopback_port()
    status, _, err = run(
        capsys, root, "server", "add", name, "--port", str(port),
        "--ip-address", LOOPBACK, "--set", "artim_timeout=2", *extra,
    )  # fmt: skip
    assert status == 0, err
    return port


def kill_by_pidfile(directory: Path) -> None:
    """Cleanup: SIGKILL whatever the pidfile names, if it is still alive."""
    try:
        pid = int((directory / "twistd.pid").read_text().strip())
    except (OSError, ValueError):
        return
    if process_alive(pid):
        try:
            handle = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        try:
            os.kill(pid, signal.SIGKILL)
            select.select([handle], [], [], 10)  # readable once the process has exited
        finally:
            os.close(handle)


#: A stand-in daemon: says "ready" once SIGTERM is handled, prints "TERM" for each one, and
#: goes on living until killed unless ``exit`` (sys.argv[1]) says SIGTERM ends it.
_STAND_IN = """
import signal, sys, threading, time
threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()  # a thread, as twistd's
def term(*_):
    print("TERM", flush=True)
    if sys.argv[1] == "exit":
        sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


@contextmanager
def stand_in_twistd(
    directory: Path, *, exits_on_term: bool = True
) -> Iterator[subprocess.Popen[str]]:
    """A live process whose command line is that of ``directory``'s twistd, in its pidfile.

    The manager takes a pidfile's pid for the server only when that process runs the plugin
    ``pacsref`` with ``--server-dir`` naming the directory; this one does, without being a
    server. Killed (and the pidfile left as it is) on the way out.
    """
    argv = [sys.executable, "-c", _STAND_IN, "exit" if exits_on_term else "stay"]
    argv += ["pacsref", "--server-dir", str(directory.resolve())]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        (directory / "twistd.pid").write_text(f"{process.pid}\n")
        yield process
    finally:
        process.kill()
        process.wait(10)


def test_add_copies_only_the_named_addins(tmp_path: Path, capsys) -> None:
    """``server add --addins`` creates the directory with just those shipped add-ins."""
    name = shipped_addins()[0].stem
    add(capsys, tmp_path, "ONE", "--addins", name)
    copied = sorted(p.stem for p in (tmp_path / "ONE" / "addins").iterdir())
    assert copied == [name]
    assert find_server(tmp_path, "ONE").settings.ip_address == LOOPBACK


def test_add_without_addins_copies_all(tmp_path: Path, capsys) -> None:
    """By default every shipped add-in is copied."""
    add(capsys, tmp_path, "ALL")
    copied = sorted(p.stem for p in (tmp_path / "ALL" / "addins").iterdir())
    assert copied == sorted(p.stem for p in shipped_addins())


def test_add_unknown_addin_lists_the_known(tmp_path: Path, capsys) -> None:
    """An unknown add-in name is a one-line error naming the known ones; nothing is created."""
    status, _, err = run(capsys, tmp_path, "server", "add", "BAD", "--addins", "nope")
    assert status == 1
    assert "nope" in err and shipped_addins()[0].stem in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "BAD").exists()


def test_add_twice_fails(tmp_path: Path, capsys) -> None:
    """An existing server is never reset by a second add."""
    add(capsys, tmp_path, "TWICE")
    status, _, err = run(capsys, tmp_path, "server", "add", "TWICE")
    assert status == 1 and err.startswith("pacsref:")


def test_list_shows_stopped_servers(tmp_path: Path, capsys) -> None:
    """``server list`` shows AE, port, state stopped and no pid for a server never started."""
    port = add(capsys, tmp_path, "LISTED")
    status, out, _ = run(capsys, tmp_path, "server", "list")
    assert status == 0
    row = next(line for line in out.splitlines() if line.startswith("LISTED"))
    assert row.split() == ["LISTED", "LISTED", str(port), "stopped", "-"]


def test_unit_is_a_simple_service_with_absolute_paths(tmp_path: Path, capsys) -> None:
    """``server unit`` prints a Type=simple unit running twistd -n with absolute paths."""
    add(capsys, tmp_path, "UNIT")
    status, out, _ = run(capsys, tmp_path, "server", "unit", "UNIT")
    assert status == 0
    directory = (tmp_path / "UNIT").resolve()
    assert "Type=simple" in out and "Restart=on-failure" in out
    exec_start = next(line for line in out.splitlines() if line.startswith("ExecStart="))
    assert " -n " in exec_start and "--pidfile= " in exec_start
    assert f"--server-dir {directory}" in exec_start
    assert f"--logfile={directory}/logs/twistd.log" in exec_start


@pytest.mark.parametrize("command", ["start", "stop", "status", "pause", "unit"])
def test_unknown_server_is_an_error(tmp_path: Path, capsys, command: str) -> None:
    """Every per-server command fails with one line for a server that does not exist."""
    status, _, err = run(capsys, tmp_path, "server", command, "GHOST")
    assert status == 1 and "unknown server 'GHOST'" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["server", "stop", "IDLE"],
        ["server", "pause", "IDLE"],
        ["clients", "list", "IDLE"],
    ],
)
def test_commands_on_a_stopped_server_say_not_running(tmp_path: Path, capsys, argv) -> None:
    """Admin commands on a stopped server fail with 'not running'."""
    add(capsys, tmp_path, "IDLE")
    status, _, err = run(capsys, tmp_path, *argv)
    assert status == 1 and "not running" in err


def test_status_of_a_stopped_server_says_so_with_exit_3(tmp_path: Path, capsys) -> None:
    """'Not running' is an answer a script tells apart by exit status 3 (as systemctl)."""
    add(capsys, tmp_path, "IDLE")
    status, out, err = run(capsys, tmp_path, "server", "status", "IDLE")
    assert (status, out, err) == (3, "IDLE: stopped\n", "")


def test_disabled_server_refuses_to_start(tmp_path: Path, capsys) -> None:
    """A Start Mode disabled server is refused with a clear message, and start-all skips it."""
    add(capsys, tmp_path, "OFF", "--set", 'start_mode="disabled"')
    status, _, err = run(capsys, tmp_path, "server", "start", "OFF")
    assert status == 1 and "disabled" in err
    assert not (tmp_path / "OFF" / "twistd.pid").exists()
    status, _, _ = run(capsys, tmp_path, "server", "start-all")
    assert status == 0
    assert not (tmp_path / "OFF" / "twistd.pid").exists()


def test_start_on_a_taken_port_fails_with_the_reason(tmp_path: Path, capsys) -> None:
    """When the port is taken, start fails and says why; no daemon is left behind."""
    port = add(capsys, tmp_path, "BUSY")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((LOOPBACK, port))
        taken.listen()
        try:
            status, _, err = run(capsys, tmp_path, "server", "start", "BUSY")
        finally:
            kill_by_pidfile(tmp_path / "BUSY")
    assert status == 1
    assert err == (
        f"pacsref: server BUSY failed to start: cannot listen on {LOOPBACK}:{port}: "
        f"port {port} is in use\n"
    )
    assert find_server(tmp_path, "BUSY").pid() is None


def test_start_status_pause_resume_stop_round_trip(tmp_path: Path, capsys) -> None:
    """A real twistd daemon: start, status, pause (list shows paused), resume, stop."""
    port = add(capsys, tmp_path, "LIVE")
    directory = tmp_path / "LIVE"
    try:
        status, out, err = run(capsys, tmp_path, "server", "start", "LIVE")
        assert status == 0, err
        pid = find_server(tmp_path, "LIVE").pid()
        assert pid is not None and f"pid {pid}" in out
        with socket.create_connection((LOOPBACK, port), timeout=5):
            pass  # serving DICOM
        status, out, _ = run(capsys, tmp_path, "server", "status", "LIVE")
        assert status == 0 and '"state": "running"' in out

        status, out, _ = run(capsys, tmp_path, "server", "start", "LIVE")
        assert status == 1  # already running

        assert run(capsys, tmp_path, "server", "pause", "LIVE")[0] == 0
        _, out, _ = run(capsys, tmp_path, "server", "list")
        row = next(line for line in out.splitlines() if line.startswith("LIVE"))
        assert row.split() == ["LIVE", "LIVE", str(port), "paused", str(pid)]

        assert run(capsys, tmp_path, "server", "resume", "LIVE")[0] == 0
        _, out, _ = run(capsys, tmp_path, "server", "status", "LIVE")
        assert '"state": "running"' in out

        status, _, _ = run(
            capsys, tmp_path, "ae", "add", "LIVE", "WS1", "--host", LOOPBACK, "--port", "104"
        )
        assert status == 0
        assert run(capsys, tmp_path, "ae", "update", "LIVE", "WS1", "--port", "105")[0] == 0
        _, out, _ = run(capsys, tmp_path, "ae", "list", "LIVE")
        assert f"{LOOPBACK}:105" in out
        status, _, err = run(capsys, tmp_path, "ae", "remove", "LIVE", "NOSUCH")
        assert status == 1 and "RemoveAeTitle failed" in err
        assert run(capsys, tmp_path, "ae", "remove", "LIVE", "WS1")[0] == 0
        assert run(capsys, tmp_path, "clients", "list", "LIVE")[0] == 0
        status, _, err = run(capsys, tmp_path, "clients", "disconnect", "LIVE", "999")
        assert status == 1 and "DisconnectClient failed" in err

        status, out, _ = run(capsys, tmp_path, "server", "stop", "LIVE")
        assert status == 0 and not process_alive(pid)
        _, out, _ = run(capsys, tmp_path, "server", "list")
        row = next(line for line in out.splitlines() if line.startswith("LIVE"))
        assert row.split()[3:] == ["stopped", "-"]
    finally:
        kill_by_pidfile(directory)


def test_start_all_and_stop_all(tmp_path: Path, capsys) -> None:
    """start-all starts the automatic servers only; stop-all stops every running one."""
    add(capsys, tmp_path, "AUTO", "--set", 'start_mode="automatic"')
    add(capsys, tmp_path, "MAN", "--set", 'start_mode="manual"')
    try:
        status, _, err = run(capsys, tmp_path, "server", "start-all")
        assert status == 0, err
        assert find_server(tmp_path, "AUTO").pid() is not None
        assert find_server(tmp_path, "MAN").pid() is None
        status, _, err = run(capsys, tmp_path, "server", "stop-all")
        assert status == 0, err
        assert find_server(tmp_path, "AUTO").pid() is None
    finally:
        kill_by_pidfile(tmp_path / "AUTO")
        kill_by_pidfile(tmp_path / "MAN")


def test_root_from_environment_and_after_the_command(tmp_path: Path, capsys, monkeypatch) -> None:
    """``$PACSREF_ROOT`` names the root; ``--root`` may also follow the command."""
    monkeypatch.setenv("PACSREF_ROOT", str(tmp_path / "env"))
    assert main(["server", "add", "ENVSRV", "--port", str(free_loopback_port())]) == 0
    assert (tmp_path / "env" / "ENVSRV" / "settings.toml").is_file()
    capsys.readouterr()
    assert main(["server", "list", "--root", str(tmp_path / "other")]) == 0
    out, _ = capsys.readouterr()
    assert "ENVSRV" not in out
    assert main(["server", "list"]) == 0
    out, _ = capsys.readouterr()
    assert "ENVSRV" in out
