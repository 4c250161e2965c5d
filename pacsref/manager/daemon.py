"""Finding, starting and stopping servers under ``<root>``; the shared helpers of the manager.

A server is ``<root>/<NAME>/settings.toml``. Running means: ``<dir>/twistd.pid`` names a live
process. Paused or running is then asked over the admin socket (GetStatus).
"""

from __future__ import annotations

import os
import signal
import site
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pacsref.admin.client import AdminClient, AdminConnectionError
from pacsref.admin.service import admin_socket_path
from pacsref.server.graceful import ABORT_GRACE_S
from pacsref.settings import (
    LOGS_DIR_NAME,
    SETTINGS_FILE_NAME,
    ServerSettings,
    SettingsError,
    StartMode,
    load_settings,
)

#: twistd run with this interpreter (its module has no ``__main__`` guard, hence ``-c``).
TWISTD_CODE = "from twisted.scripts.twistd import run; run()"
PIDFILE_NAME = "twistd.pid"
LOGFILE_NAME = "twistd.log"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0


class ManagerError(Exception):
    """A manager command failed; the message is the one line printed to the user."""


def default_root() -> Path:
    """Where servers live: ``$PACSREF_ROOT``, else ``./pacsref-data`` (twistd's default)."""
    return Path(os.environ.get("PACSREF_ROOT") or "pacsref-data")


@dataclass
class Server:
    """One server directory and its settings."""

    name: str
    directory: Path
    settings: ServerSettings

    @property
    def pidfile(self) -> Path:
        return self.directory / PIDFILE_NAME

    @property
    def logfile(self) -> Path:
        return self.directory / LOGS_DIR_NAME / LOGFILE_NAME

    @property
    def socket_path(self) -> Path:
        return admin_socket_path(self.directory, self.settings.ae_title)

    def pid(self) -> int | None:
        """The pid in the pidfile when that process is alive, else None."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if process_alive(pid) else None

    def admin(self, timeout: float = 10.0) -> AdminClient:
        return AdminClient(self.socket_path, timeout=timeout)

    def call(self, message: str, *data: Any) -> list[Any]:
        """Send ``message`` to the running server; its response data, or ManagerError."""
        if self.pid() is None:
            raise ManagerError(f"server {self.name} is not running")
        try:
            with self.admin() as admin:
                reply = admin.call(message, *data)
        except (AdminConnectionError, OSError) as exc:
            raise ManagerError(f"server {self.name}: {exc}") from None
        if not reply.success:
            raise ManagerError(f"server {self.name}: {message} failed: {reply.error}")
        return list(reply.data)

    def state(self) -> str:
        """``stopped``, or the admin socket's state (``running``/``paused``)."""
        if self.pid() is None:
            return "stopped"
        try:
            with self.admin(timeout=5.0) as admin:
                reply = admin.call("GetStatus")
        except (AdminConnectionError, OSError):
            return "running"
        if reply.success and reply.data:
            return str(reply.data[0].get("state", "running"))
        return "running"


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def find_server(root: Path, name: str) -> Server:
    """The server ``name`` under ``root``; ManagerError when unknown or unreadable."""
    directory = root / name
    if not (directory / SETTINGS_FILE_NAME).is_file():
        raise ManagerError(f"unknown server {name!r} (no {directory / SETTINGS_FILE_NAME})")
    try:
        settings = load_settings(directory / SETTINGS_FILE_NAME)
    except SettingsError as exc:
        raise ManagerError(str(exc).splitlines()[0]) from None
    return Server(name, directory, settings)


def all_servers(root: Path) -> Iterator[Server]:
    """Every readable server under ``root``, by name."""
    if not root.is_dir():
        return
    for directory in sorted(root.iterdir()):
        if (directory / SETTINGS_FILE_NAME).is_file():
            try:
                yield find_server(root, directory.name)
            except ManagerError:
                continue


def _pythonpath() -> str | None:
    """The source tree to put on the child's path when pacsref is not installed."""
    import pacsref

    tree = str(Path(pacsref.__file__).resolve().parent.parent)
    installed = {
        str(Path(p).resolve()) for p in [*site.getsitepackages(), site.getusersitepackages()]
    }
    return None if tree in installed else tree


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    extra = _pythonpath()
    if extra is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [extra, env.get("PYTHONPATH")]))
    return env


def twistd_command(server: Server, *, daemon: bool) -> list[str]:
    """The twistd command line of ``server`` (absolute paths)."""
    directory = server.directory.resolve()
    command = [sys.executable, "-c", TWISTD_CODE]
    if not daemon:
        command.append("-n")
    pidfile = str(directory / PIDFILE_NAME) if daemon else ""
    command += [f"--pidfile={pidfile}", f"--logfile={directory / LOGS_DIR_NAME / LOGFILE_NAME}"]
    command += ["pacsref", "--server-dir", str(directory)]
    return command


def log_tail(server: Server, lines: int = 5) -> str:
    try:
        text = server.logfile.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


def start(server: Server, timeout: float = START_TIMEOUT_S) -> int:
    """Start ``server`` as a twistd daemon; return its pid once GetStatus answers."""
    if server.settings.start_mode is StartMode.DISABLED:
        raise ManagerError(
            f'server {server.name} has Start Mode "disabled" and refuses to start; '
            "change start_mode in its settings.toml first"
        )
    if server.pid() is not None:
        raise ManagerError(f"server {server.name} is already running (pid {server.pid()})")
    server.logfile.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            twistd_command(server, daemon=True),
            cwd=server.directory,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ManagerError(
            f"server {server.name}: twistd did not detach in {timeout:g} s"
        ) from None
    if done.returncode != 0:
        # twistd prints the plugin's own "pacsref: <reason>"; this command adds that prefix.
        output = " | ".join(
            line.strip().removeprefix("pacsref: ")
            for line in (done.stderr + done.stdout).splitlines()
            if line.strip()
        )
        reason = output[-500:] or log_tail(server) or f"twistd exited {done.returncode}"
        raise ManagerError(f"server {server.name} failed to start: {reason}")
    began = time.monotonic()
    deadline = began + timeout
    interval = 0.01
    while True:
        pid = server.pid()
        if pid is None and time.monotonic() - began > 2.0:  # the daemon wrote it, then died
            raise ManagerError(f"server {server.name} exited at start: {log_tail(server)}")
        if pid is not None:
            try:
                with server.admin(timeout=2.0) as admin:
                    if admin.call("GetStatus").success:
                        return pid
            except (AdminConnectionError, OSError):
                pass
        if time.monotonic() > deadline:
            raise ManagerError(
                f"server {server.name} did not answer on {server.socket_path} within "
                f"{timeout:g} s: {log_tail(server)}"
            )
        time.sleep(interval)
        interval = min(interval * 2, 0.1)


def stop(server: Server, timeout: float | None = None) -> int:
    """SIGTERM the server's daemon and wait for it to exit; return the pid it had.

    The server first lets open associations finish for its ``stop_timeout``, then aborts
    them, so the default wait is that plus :data:`STOP_TIMEOUT_S` for the rest of the stop.
    """
    if timeout is None:
        timeout = server.settings.stop_timeout + ABORT_GRACE_S + STOP_TIMEOUT_S
    pid = server.pid()
    if pid is None:
        raise ManagerError(f"server {server.name} is not running")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return pid
    deadline = time.monotonic() + timeout
    interval = 0.01
    while process_alive(pid):
        if time.monotonic() > deadline:
            raise ManagerError(
                f"server {server.name} (pid {pid}) did not exit within {timeout:g} s"
            )
        time.sleep(interval)
        interval = min(interval * 2, 0.1)
    return pid
