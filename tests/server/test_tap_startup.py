"""``twistd pacsref`` in a real process: a start that cannot succeed ends, in one line.

These run twistd as an administrator would (``twistd -n --pidfile= pacsref --server-dir DIR``)
with a short bound: before the start-up checks moved into ``makeService``, a too-long admin
socket path failed in ``startService`` after the DICOM port was open, and the process hung
for ever on the add-in thread pool's threads.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.application.service import Service
from twisted.internet.task import Clock

from pacsref.server.create import main as create_main
from pacsref.server.service import ServerService, StartFailed
from pacsref.server.tap import Options, makeService
from pacsref.testing.net import free_loopback_port
from pacsref.testing.twistd import _child_env

#: A start that fails must end well within this (the old failure never ended).
BOUND_S = 30.0

#: twistd, optionally with AdminService.startService replaced by one that fails, to reach the
#: failure path that no start-up check can foresee (the DICOM port is open by then).
CODE = """
import sys
if sys.argv.pop(1) == "fail-admin":
    from pacsref.admin import service

    def boom(self):
        raise OSError(28, "No space left on device")

    service.AdminService.startService = boom
from twisted.scripts.twistd import run
run()
"""


def _server(root: Path, name: str = "S") -> tuple[Path, int]:
    port = free_loopback_port()
    server_dir = root / name
    argv = ["--server-dir", str(server_dir), "--ae-title", name, "--port", str(port)]
    assert create_main([*argv, "--ip-address", "127.0.0.1"]) == 0
    return server_dir, port


def _twistd(server_dir: Path, *options: str, mode: str = "plain") -> subprocess.CompletedProcess:
    argv = [sys.executable, "-c", CODE, mode, *options, "pacsref", "--server-dir", str(server_dir)]
    return subprocess.run(
        argv,
        cwd=server_dir.parent,
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=BOUND_S,
        check=False,
    )


def _port_is_free(port: int) -> bool:
    probe = socket.socket()
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def test_too_long_admin_socket_path_ends_twistd_with_one_line(tmp_path: Path) -> None:
    server_dir, port = _server(tmp_path / ("d" * 100))
    logfile = tmp_path / "twistd.log"
    done = _twistd(server_dir, "-n", "--pidfile=", f"--logfile={logfile}")
    assert done.returncode == 1, done
    [line] = done.stderr.splitlines()
    assert line.startswith("pacsref: admin socket path is ") and line.endswith(
        "; use a shorter server root folder"
    )
    assert _port_is_free(port)


def test_a_user_identity_verifier_that_does_not_load_stops_the_start(tmp_path: Path) -> None:
    """A typo in the users add-in's options (which makes it fail to load) must not open the
    server to unverified users: one line naming the add-in, the option and the file; exit
    status 1; nothing listens. Fixed, the start-up checks pass."""
    server_dir, port = _server(tmp_path)
    options = server_dir / "addin-options" / "users.toml"
    options.parent.mkdir(exist_ok=True)
    options.write_text("require_identity = true\naccount_file = 'x.toml'\n")
    logfile = tmp_path / "twistd.log"
    done = _twistd(server_dir, "-n", "--pidfile=", f"--logfile={logfile}")
    assert done.returncode == 1, done
    [line] = done.stderr.splitlines()
    assert line.startswith("pacsref: an add-in that verifies user identities did not load"), line
    assert "add-in users failed to load" in line and "account_file" in line, line
    assert str(options) in line, line
    assert _port_is_free(port)
    options.write_text("require_identity = true\n")  # fixed: the start-up checks pass
    tap_options = Options()
    tap_options.parseOptions(["--server-dir", str(server_dir)])
    assert isinstance(makeService(tap_options, Clock()), Service)


def test_a_start_failure_after_the_port_opened_ends_the_process(tmp_path: Path) -> None:
    """Whatever fails in startService: one line, exit status 1, port closed, no pidfile."""
    server_dir, port = _server(tmp_path)
    logfile = tmp_path / "twistd.log"
    done = _twistd(server_dir, "-n", "--pidfile=", f"--logfile={logfile}", mode="fail-admin")
    assert done.returncode == 1, done
    assert done.stderr.splitlines() == [
        "pacsref: cannot start server S: [Errno 28] No space left on device"
    ]
    assert "kind" not in done.stderr
    assert "cannot start server S" in logfile.read_text()
    assert _port_is_free(port)


def test_a_daemon_whose_start_fails_exits_and_removes_its_pidfile(tmp_path: Path) -> None:
    server_dir, port = _server(tmp_path)
    pidfile = tmp_path / "twistd.pid"
    logfile = tmp_path / "twistd.log"
    done = _twistd(server_dir, f"--pidfile={pidfile}", f"--logfile={logfile}", mode="fail-admin")
    assert done.returncode == 1, done
    assert "cannot start server S" in done.stderr
    assert not pidfile.exists()
    assert _port_is_free(port)


class _Started(Service):
    def __init__(self, log: list[str], name: str) -> None:
        self.log = log
        self.label = name

    def startService(self) -> None:
        super().startService()
        self.log.append(f"{self.label} started")

    def stopService(self) -> None:
        super().stopService()
        self.log.append(f"{self.label} stopped")


class _Broken(Service):
    def startService(self) -> None:
        raise OSError(13, "Permission denied")


class _RunningReactor:
    running = True

    def __init__(self) -> None:
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def _tree(reactor: object) -> tuple[ServerService, list[str]]:
    log: list[str] = []
    root = ServerService(reactor)
    root.setName("pacsref-S")
    _Started(log, "pool").setServiceParent(root)
    _Started(log, "dicom").setServiceParent(root)
    _Broken().setServiceParent(root)
    _Started(log, "signals").setServiceParent(root)
    return root, log


def test_a_failing_child_stops_the_started_ones_and_exits_in_one_line() -> None:
    root, log = _tree(None)
    with pytest.raises(StartFailed) as caught:
        root.startService()
    assert isinstance(caught.value, SystemExit) and caught.value.code == 1
    assert str(caught.value) == "cannot start server S: [Errno 13] Permission denied"
    assert log == ["pool started", "dicom started", "dicom stopped", "pool stopped"]
    assert not root.running


def test_a_failing_child_once_the_reactor_runs_stops_the_reactor() -> None:
    reactor = _RunningReactor()
    root, log = _tree(reactor)
    root.startService()
    assert reactor.stopped and not root.running
    assert log[-2:] == ["dicom stopped", "pool stopped"]
