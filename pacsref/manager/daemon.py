"""Finding, starting and stopping servers under ``<root>``; the shared helpers of the manager.

A server is ``<root>/<NAME>/settings.toml``. Running means: ``<dir>/twistd.pid`` names a live
process. Paused or running is then asked over the admin socket (GetStatus).
"""

from __future__ import annotations

import os
import shlex
import signal
import site
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pacsref.admin.client import AdminClient, AdminConnectionError
from pacsref.admin.service import admin_socket_path
from pacsref.server.graceful import ABORT_GRACE_S, CUT_GRACE_S
from pacsref.settings import (
    LOGS_DIR_NAME,
    SETTINGS_FILE_NAME,
    ServerSettings,
    SettingsError,
    StartMode,
    load_settings,
)
from pacsref.settings.fields import DEFAULT_START_MODE, Invalid, check_start_mode

#: twistd run with this interpreter (its module has no ``__main__`` guard, hence ``-c``).
TWISTD_CODE = "from twisted.scripts.twistd import run; run()"
PIDFILE_NAME = "twistd.pid"
LOGFILE_NAME = "twistd.log"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0


class ManagerError(Exception):
    """A manager command failed; the message is the one line printed to the user."""


#: What a server name may be, completing "... cannot be used as a server name: <why>; ...".
SERVER_NAME_ALLOWED = (
    "a server name is its directory under the root: one path component, "
    "not empty, no '/', no NUL, not starting with '.'"
)


def check_server_name(name: str) -> str:
    """Refuse a name that is not one plain directory entry of the root; return it unchanged.

    The name is joined to the root as a path, so ``..``, ``a/b`` or ``/tmp/x`` would put (or
    look for) a server outside the root, or in a subdirectory the scan of ``<root>/*`` never
    finds. AE titles may legally contain ``/`` (PS3.5, AE VR), but such a server cannot be
    given a directory named after it; a leading ``.`` is refused too, since ``.`` and ``..``
    are the root itself and its parent, and hidden entries are where editors and tools keep
    their own files.
    """
    why = None
    if not name:
        why = "it is empty"
    elif "/" in name:
        why = "it contains '/' (an AE title with '/' cannot name a server directory)"
    elif "\0" in name:
        why = "it contains a NUL character"
    elif name.startswith("."):
        why = "it starts with '.'"
    if why is not None:
        raise ManagerError(
            f"{name!r} cannot be used as a server name: {why}; {SERVER_NAME_ALLOWED}"
        )
    return name


def os_reason(exc: OSError) -> str:
    """The operating system's words for ``exc`` without Python's ``[Errno N]`` decoration."""
    return exc.strerror or str(exc)


def command_hint(*words: str) -> str:
    """A ``pacsref ...`` command line the user can paste, each word quoted for a POSIX shell."""
    return " ".join(["pacsref", *(shlex.quote(str(word)) for word in words)])


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
        return live_pid(self.pidfile)

    def admin(self, timeout: float = 10.0) -> AdminClient:
        return AdminClient(self.socket_path, timeout=timeout)

    def call(self, message: str, *data: Any) -> list[Any]:
        """Send ``message`` to the running server; its response data, or ManagerError.

        Running by its pidfile or its admin socket (:func:`running`): a server that systemd
        runs in the foreground has no pidfile.
        """
        if not running(self):
            raise ManagerError(f"server {self.name} is not running")
        return call_running(self, message, *data)

    def state(self) -> str:
        """``stopped``, or the admin socket's state (``running``/``paused``).

        Without a live pidfile, only a GetStatus answered on the admin socket in this server's
        name counts as running (a systemd-run server); any other program there does not.
        """
        by_pid = self.pid() is not None
        if not by_pid and not socket_answers(self.socket_path):
            return "stopped"
        try:
            with self.admin(timeout=5.0) as admin:
                reply = admin.call("GetStatus")
        except (AdminConnectionError, OSError):
            return "running" if by_pid else "stopped"
        if not by_pid and not (reply.success and reply.service == self.settings.ae_title):
            return "stopped"
        if reply.success and reply.data:
            return str(reply.data[0].get("state", "running"))
        return "running"


def socket_answers(path: Path) -> bool:
    """Whether something accepts connections on the Unix socket ``path``."""
    if not path.exists():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def running(server: Server) -> bool:
    """Running by its pidfile, or by its admin socket (systemd runs servers without one).

    For the commands that work on a stopped server too (``ae``, ``addins``): a server that
    runs must be told over its socket, never have its files changed behind its back.
    """
    return server.pid() is not None or socket_answers(server.socket_path)


def call_running(server: Server, message: str, *data: Any) -> list[Any]:
    """Like ``Server.call``, without requiring a pidfile (servers run by systemd have none)."""
    try:
        with server.admin() as admin:
            reply = admin.call(message, *data)
    except (AdminConnectionError, OSError) as exc:
        raise ManagerError(f"server {server.name}: {exc}") from None
    if not reply.success:
        raise ManagerError(f"server {server.name}: {message} failed: {reply.error}")
    return list(reply.data)


def live_pid(pidfile: Path) -> int | None:
    """The pid ``pidfile`` names when that process is alive; None for no file, junk or a
    dead process (a killed daemon leaves its pidfile behind)."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if process_alive(pid) else None


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
    directory = root / check_server_name(name)
    if not (directory / SETTINGS_FILE_NAME).is_file():
        raise ManagerError(f"unknown server {name!r} (no {directory / SETTINGS_FILE_NAME})")
    try:
        settings = load_settings(directory / SETTINGS_FILE_NAME)
    except SettingsError as exc:
        raise ManagerError(str(exc).splitlines()[0]) from None
    return Server(name, directory, settings)


@dataclass
class BrokenServer:
    """A registered server (it has ``settings.toml``) whose settings cannot be read.

    Kept apart from :class:`Server` rather than skipped: a server that vanishes from ``list``
    and is passed over by ``start-all`` with exit status 0 hides exactly the problem the
    administrator needs to see.
    """

    name: str
    directory: Path
    reason: str

    @property
    def pidfile(self) -> Path:
        return self.directory / PIDFILE_NAME

    def pid(self) -> int | None:
        """The pid in the pidfile when that process is alive (started before the file broke)."""
        return live_pid(self.pidfile)

    def start_mode(self) -> StartMode | None:
        """The start mode the file still states, or None when it cannot be told.

        A file broken elsewhere may still say ``start_mode = "manual"``: such a server is not
        one ``start-all`` must start, so it need not fail because of it.
        """
        try:
            document = tomllib.loads(
                (self.directory / SETTINGS_FILE_NAME).read_bytes().decode("utf-8-sig")
            )
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return None
        if "start_mode" not in document:
            return DEFAULT_START_MODE
        try:
            return check_start_mode(document["start_mode"])
        except Invalid:
            return None


def scan(root: Path) -> Iterator[Server | BrokenServer]:
    """Every registered server under ``root``, by name: readable ones and broken ones."""
    try:
        entries = sorted(root.iterdir()) if root.is_dir() else []
    except OSError as exc:
        raise ManagerError(f"cannot read the root folder {root}: {os_reason(exc)}") from None
    for directory in entries:
        if (directory / SETTINGS_FILE_NAME).is_file():
            try:
                yield find_server(root, directory.name)
            except ManagerError as exc:
                yield BrokenServer(directory.name, directory, str(exc))


def all_servers(root: Path) -> Iterator[Server]:
    """Every readable server under ``root``, by name."""
    for server in scan(root):
        if isinstance(server, Server):
            yield server


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
            "allow it first: "
            + command_hint("server", "edit", server.name, "--start-mode", "manual")
        )
    if server.pid() is not None:
        raise ManagerError(f"server {server.name} is already running (pid {server.pid()})")
    if socket_answers(server.socket_path):
        raise ManagerError(
            f"another server is already listening on {server.socket_path}: {server.name} "
            f"running without a pidfile (run by systemd? systemctl status pacsref-{server.name})"
        )
    try:
        server.logfile.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ManagerError(
            f"server {server.name}: cannot create its log folder {server.logfile.parent}: "
            f"{os_reason(exc)}"
        ) from None
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
    except OSError as exc:
        raise ManagerError(f"server {server.name}: cannot run twistd: {os_reason(exc)}") from None
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
        timeout = server.settings.stop_timeout + ABORT_GRACE_S + CUT_GRACE_S + STOP_TIMEOUT_S
    pid = server.pid()
    if pid is None:
        if socket_answers(server.socket_path):
            raise ManagerError(
                f"server {server.name} runs without a pidfile (its admin socket answers: run "
                f"by systemd?); stop it there: systemctl stop pacsref-{server.name}"
            )
        raise ManagerError(f"server {server.name} is not running")
    return stop_pid(server.name, pid, timeout)


def stop_pid(name: str, pid: int, timeout: float) -> int:
    """SIGTERM ``pid`` (the daemon of server ``name``) and wait up to ``timeout`` s for its end."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return pid
    except PermissionError as exc:
        raise ManagerError(f"server {name} (pid {pid}): cannot stop it: {os_reason(exc)}") from None
    deadline = time.monotonic() + timeout
    interval = 0.01
    while process_alive(pid):
        if time.monotonic() > deadline:
            raise ManagerError(f"server {name} (pid {pid}) did not exit within {timeout:g} s")
        time.sleep(interval)
        interval = min(interval * 2, 0.1)
    return pid
