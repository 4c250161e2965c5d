"""Finding, starting and stopping servers under ``<root>``; the shared helpers of the manager.

A server is ``<root>/<NAME>/settings.toml``. Running means: ``<dir>/twistd.pid`` names a live
process that is this server's twistd (:func:`runs_server`). Paused or running is then asked over
the admin socket (GetStatus). Starts, stops, edits and deletes of one server take turns on its
lock file ``<dir>/manager.lock`` (:func:`exclusive`). A stop signals the daemon through a pidfd
opened before the process is checked (:func:`pin_live_pid`), where the system has pidfds.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import getopt
import math
import os
import select
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
from pacsref.processes import process_alive
from pacsref.server.create import (
    SERVER_NAME_ALLOWED,
    default_server_dir,
    server_name_problem,
    server_root,
)
from pacsref.server.graceful import ABORT_GRACE_S, CUT_GRACE_S
from pacsref.settings import (
    DEFAULT_STOP_TIMEOUT,
    LOGS_DIR_NAME,
    SETTINGS_FILE_NAME,
    ServerSettings,
    SettingsError,
    StartMode,
    load_settings,
)
from pacsref.settings.fields import (
    DEFAULT_START_MODE,
    Invalid,
    check_start_mode,
    validate_mapping,
)

#: twistd run with this interpreter (its module has no ``__main__`` guard, hence ``-c``).
TWISTD_CODE = "from twisted.scripts.twistd import run; run()"
PIDFILE_NAME = "twistd.pid"
LOGFILE_NAME = "twistd.log"
#: The lock file a start, stop, edit or delete of one server holds, so that no other one runs
#: meanwhile.
LOCK_NAME = "manager.lock"
#: The twistd plugin's name on a server's command line; its own options follow it.
PLUGIN_NAME = "pacsref"
#: The plugin's option naming the server directory, as ``twistd_command`` writes it.
SERVER_DIR_OPTION = "--server-dir"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0


class ManagerError(Exception):
    """A manager command failed; the message is the one line printed to the user."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what the command had already done when it came (the text printed).

    Stopping the manager stops neither a SIGTERM already sent nor a daemon already detached:
    the user must learn that the server goes on with it, not read a traceback.
    """


def warn(text: str) -> None:
    """One ``pacsref: warning: <text>`` line on standard error; it never fails a command."""
    print(f"pacsref: warning: {text}", file=sys.stderr, flush=True)


def check_server_name(name: str) -> str:
    """Refuse a name that is not one plain directory entry of the root; return it unchanged.

    The rules and their reasons: :func:`pacsref.server.create.server_name_problem`.
    """
    why = server_name_problem(name)
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
    """Where servers live: ``$PACSREF_ROOT``, else ``./pacsref-data``.

    The rule is twistd's own (:func:`pacsref.server.create.server_root`), so the embedded
    default server and one run with ``--ae-title AE`` alone are found here.
    """
    return server_root()


class _Registered:
    """What a registered server's directory tells, whether its settings can be read or not.

    The pidfile and the admin socket are enough to find, ask and stop a running server: one
    whose ``settings.toml`` a hand edit broke must still be stoppable and repairable by name.
    """

    name: str
    directory: Path

    @property
    def ae_title(self) -> str:  # pragma: no cover  (each kind of server says)
        raise NotImplementedError

    @property
    def stop_timeout(self) -> float:  # pragma: no cover  (each kind of server says)
        raise NotImplementedError

    @property
    def pidfile(self) -> Path:
        return self.directory / PIDFILE_NAME

    @property
    def logfile(self) -> Path:
        return self.directory / LOGS_DIR_NAME / LOGFILE_NAME

    @property
    def socket_path(self) -> Path:
        return admin_socket_path(self.directory, self.ae_title)

    def pid(self) -> int | None:
        """The pid in the pidfile when that process is alive and is this server's twistd."""
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
        if not by_pid and not (reply.success and reply.service == self.ae_title):
            return "stopped"
        if reply.success and reply.data:
            return str(reply.data[0].get("state", "running"))
        return "running"


@dataclass
class Server(_Registered):
    """One server directory and its settings."""

    name: str
    directory: Path
    settings: ServerSettings

    @property
    def ae_title(self) -> str:
        return self.settings.ae_title

    @property
    def stop_timeout(self) -> float:
        return self.settings.stop_timeout


@dataclass
class BrokenServer(_Registered):
    """A registered server (it has ``settings.toml``) whose settings cannot be read.

    Kept apart from :class:`Server` rather than skipped: a server that vanishes from ``list``
    and is passed over by ``start-all`` with exit status 0 hides exactly the problem the
    administrator needs to see. It may still run (its file broke after it started): its
    pidfile and admin socket find it, for ``stop``, ``status``, ``pause``, ``resume`` and an
    ``edit`` that repairs the file.
    """

    name: str
    directory: Path
    reason: str

    def _document(self) -> dict[str, Any] | None:
        """The file as TOML, or None when it is not even that."""
        try:
            return tomllib.loads(
                (self.directory / SETTINGS_FILE_NAME).read_bytes().decode("utf-8-sig")
            )
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return None

    @functools.cached_property
    def _valid_values(self) -> dict[str, object]:
        """The fields of the file that are valid on their own ({} when it is not TOML); read
        once per command, however often the AE title and stop timeout are asked for."""
        document = self._document()
        if document is None:
            return {}
        return validate_mapping(document, str(self.directory / SETTINGS_FILE_NAME))[0]

    @property
    def ae_title(self) -> str:
        """The file's AE title when it is still valid, else the name (what it was added as)."""
        value = self._valid_values.get("ae_title")
        return value if isinstance(value, str) else self.name

    @property
    def stop_timeout(self) -> float:
        """The file's ``stop_timeout`` when it is still valid, else the default."""
        value = self._valid_values.get("stop_timeout", DEFAULT_STOP_TIMEOUT)
        return float(value) if isinstance(value, int | float) else DEFAULT_STOP_TIMEOUT

    def start_mode(self) -> StartMode | None:
        """The start mode the file still states, or None when it cannot be told.

        A file broken elsewhere may still say ``start_mode = "manual"``: such a server is not
        one ``start-all`` must start, so it need not fail because of it.
        """
        document = self._document()
        if document is None:
            return None
        if "start_mode" not in document:
            return DEFAULT_START_MODE
        try:
            return check_start_mode(document["start_mode"])
        except Invalid:
            return None


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


def running(server: _Registered) -> bool:
    """Running by its pidfile, or by its admin socket (systemd runs servers without one).

    For the commands that work on a stopped server too (``ae``, ``addins``): a server that
    runs must be told over its socket, never have its files changed behind its back.
    """
    return server.pid() is not None or socket_answers(server.socket_path)


def answering_socket(directory: Path) -> Path | None:
    """Any admin socket in ``directory``'s ``admin/`` that answers, whatever its AE title.

    For a delete: a server running without a pidfile (under systemd) whose ``settings.toml``
    was since edited to another AE title (or broken) listens on the socket of the title it
    started with, which :func:`running` does not look for.
    """
    try:
        candidates = sorted(admin_socket_path(directory, "x").parent.glob("*.sock"))
    except OSError:
        return None
    return next((path for path in candidates if socket_answers(path)), None)


def call_running(server: _Registered, message: str, *data: Any) -> list[Any]:
    """Like ``Server.call``, without requiring a pidfile (servers run by systemd have none)."""
    try:
        with server.admin() as admin:
            reply = admin.call(message, *data)
    except (AdminConnectionError, OSError) as exc:
        raise ManagerError(f"server {server.name}: {exc}") from None
    if not reply.success:
        raise ManagerError(f"server {server.name}: {message} failed: {reply.error}")
    return list(reply.data)


def pidfile_pid(pidfile: Path) -> int | None:
    """The pid ``pidfile`` holds; None for no file or junk.

    Zero and negative numbers are junk too: ``kill(2)`` reads them as a process group or as
    every process the user may signal, so a stop (where ``/proc`` cannot say what the pid
    runs) would SIGTERM all of those. So is a number past what ``kill`` can take (a C
    ``int``: it raised OverflowError, a traceback in every command). A thread id is taken
    for the process it belongs to (its ``Tgid``), which is what ``kill`` signalled before
    pidfds.
    """
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    if not 0 < pid <= PID_LIMIT:
        return None
    return _thread_group(pid)


#: The largest number ``kill(2)`` takes as a pid (a C ``int``); Linux hands out at most 2**22.
PID_LIMIT = 2**31 - 1


def _thread_group(pid: int) -> int:
    """The process that thread ``pid`` belongs to (``Tgid`` in ``/proc``); ``pid`` itself
    when it is a process, or when ``/proc`` cannot say."""
    try:
        status = Path("/proc", str(pid), "status").read_text()
    except OSError:
        return pid
    for line in status.splitlines():
        if line.startswith("Tgid:"):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                return pid
    return pid


def _pidfile_process(pidfile: Path) -> tuple[int, bool] | None:
    """The live pid ``pidfile`` names, and whether it may be its server's twistd (False only
    when its command line says it is another process); None for no file, junk or a dead
    process (a killed daemon leaves its pidfile behind)."""
    pid = pidfile_pid(pidfile)
    if pid is None or not process_alive(pid):
        return None
    return pid, runs_server(pid, pidfile.parent) is not False


def live_pid(pidfile: Path) -> int | None:
    """The pid ``pidfile`` names when that process is alive and is the twistd of the server
    directory holding the pidfile; None otherwise, also for another process that has since
    been given its pid."""
    found = _pidfile_process(pidfile)
    return found[0] if found is not None and found[1] else None


def stale_pid(pidfile: Path) -> int | None:
    """The live pid ``pidfile`` names when that process is *not* its server's twistd."""
    found = _pidfile_process(pidfile)
    return found[0] if found is not None and not found[1] else None


#: pidfd_open's errors meaning "no pidfds here", not "no such process": an old kernel (ENOSYS),
#: a sandbox whose seccomp filter refuses the call (EPERM), a pid that is not a process but one
#: of its threads (EINVAL; ENOENT on recent kernels; pidfile_pid maps thread ids to their
#: process first anyway).
_NO_PIDFD = frozenset({errno.ENOSYS, errno.EPERM, errno.EINVAL, errno.ENOENT})


def open_pidfd(pid: int) -> int | None:
    """A pidfd (``pidfd_open(2)``) referring to the process ``pid`` is now; None where the
    system has none (not Linux, or see :data:`_NO_PIDFD`): the caller then signals by pid, as
    before pidfds. ProcessLookupError when there is no process ``pid``."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None or not hasattr(signal, "pidfd_send_signal"):
        return None
    try:
        return int(opener(pid))
    except ProcessLookupError:
        raise
    except OSError as exc:
        if exc.errno in _NO_PIDFD:
            return None
        raise


@dataclass
class PinnedProcess:
    """A server's live pid, with a pidfd holding on to that very process (None: no pidfds).

    A pid is only a number: between the look at ``/proc/PID`` that tells the process is the
    server and the signal, the server may exit and its pid be given to another process, which
    ``kill(pid)`` would then hit. A pidfd opened *before* that look refers to the process that
    had the pid then, whatever gets the number later: a signal through it reaches the process
    looked at, or fails with ESRCH once that one has exited (it cannot have been alive at the
    signal and not at the look), and it becomes readable when that process exits. A context
    manager: the pidfd is closed on the way out.
    """

    pid: int
    pidfd: int | None

    def __enter__(self) -> PinnedProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def send_signal(self, signum: int) -> None:
        """Send ``signum``; ProcessLookupError when the process has exited.

        A pidfd the system then will not signal through (a sandbox that allows
        ``pidfd_open`` but not ``pidfd_send_signal``: the errors of :data:`_NO_PIDFD`) falls
        back to the pid, as where there are no pidfds at all, after checking through the
        pidfd that the process has not exited meanwhile.
        """
        if self.pidfd is None:
            os.kill(self.pid, signum)
            return
        try:
            signal.pidfd_send_signal(self.pidfd, signum)
        except OSError as exc:
            if exc.errno not in _NO_PIDFD:
                raise
            if self.wait(0):
                raise ProcessLookupError(errno.ESRCH, os.strerror(errno.ESRCH)) from None
            os.kill(self.pid, signum)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the process to exit; whether it did.

        With a pidfd, one ``poll`` wakes up as soon as it exits (Ctrl-C still interrupts it);
        without, its pid is looked at with a growing interval (10 ms to 100 ms), as before.
        """
        if self.pidfd is not None:
            poller = select.poll()
            poller.register(self.pidfd, select.POLLIN)
            # poll() takes whole milliseconds in a C int; after EINTR Python polls again
            # for what is left of the timeout (PEP 475).
            return bool(poller.poll(min(math.ceil(max(timeout, 0.0) * 1000), 2**31 - 1)))
        deadline = time.monotonic() + timeout
        interval = 0.01
        while process_alive(self.pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(interval)
            interval = min(interval * 2, 0.1)
        return True


def pin_live_pid(pidfile: Path) -> PinnedProcess | None:
    """The process :func:`live_pid` finds, pinned by a pidfd opened before it is checked.

    None when :func:`live_pid` would say None (no file, junk, no such process, another
    process than the server's twistd). The caller must close what it gets.
    """
    pid = pidfile_pid(pidfile)
    if pid is None:
        return None
    try:
        pinned = PinnedProcess(pid, open_pidfd(pid))
    except ProcessLookupError:
        return None
    try:
        if process_alive(pid) and runs_server(pid, pidfile.parent) is not False:
            return pinned
    except BaseException:  # Ctrl-C while /proc is read: the pidfd must not leak
        pinned.close()
        raise
    pinned.close()
    return None


def command_line(pid: int) -> list[str] | None:
    """The arguments ``pid`` was run with (``/proc/<pid>/cmdline``); None when unknown.

    ``[]`` for a process that has none (a kernel thread) or no longer exists while ``/proc``
    does; None where there is no ``/proc`` or it may not be read.
    """
    try:
        raw = Path("/proc", str(pid), "cmdline").read_bytes()
    except FileNotFoundError:
        return [] if Path("/proc/self").is_dir() else None
    except OSError:
        return None
    words = [os.fsdecode(word) for word in raw.split(b"\0")]
    if words and words[-1] == "":
        words.pop()  # the NUL ending the last argument
    return words


def process_environment(pid: int) -> dict[str, str] | None:
    """The environment process ``pid`` was started with (``/proc/<pid>/environ``).

    None when it cannot be read: no ``/proc``, the process is gone, or it is another user's.
    """
    try:
        raw = Path("/proc", str(pid), "environ").read_bytes()
    except OSError:
        return None
    environ: dict[str, str] = {}
    for entry in raw.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep:
            environ[os.fsdecode(name)] = os.fsdecode(value)
    return environ


def _plugin_options(options: list[str]) -> dict[str, str] | None:
    """The plugin's ``options`` as twistd reads them: ``getopt`` with the plugin's own option
    table, so abbreviations (``--ae``, ``--server``), ``--opt=V``, ``-sV`` and the last of a
    repeated option mean what they meant to twistd. None when they do not parse (then
    twistd could not have started with them either: the caller cannot tell)."""
    from pacsref.server.tap import Options as PluginOptions  # its table, one source of truth

    table = PluginOptions()
    try:
        pairs, _ = getopt.getopt(options, table.shortOpt, table.longOpt)
    except getopt.GetoptError:
        return None
    found: dict[str, str] = {}
    for flag, value in pairs:
        name = flag.lstrip("-")
        found[table.synonyms.get(name, name)] = value
    return found


def _served_directory(options: list[str], pid: int) -> Path | None:
    """The server directory a twistd with the plugin's ``options`` runs (None: cannot tell).

    ``--server-dir DIR``; else ``--ae-title AE`` alone, ``<root>/AE``; else the embedded
    default, ``<root>/PACSREF``, the root being the one that process's own
    ``$PACSREF_ROOT`` named, not ours (:mod:`pacsref.server.tap` decides the same way).
    """
    parsed = _plugin_options(options)
    if parsed is None:
        return None
    if parsed.get("server-dir"):
        return Path(parsed["server-dir"])
    environ = process_environment(pid)
    if environ is None:
        return None
    ae_title = parsed.get("ae-title", "").strip(" ")
    if ae_title:
        return server_root(environ) / ae_title
    return default_server_dir(environ)


def _same_directory(first: Path, second: Path) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:
        return os.path.realpath(first) == os.path.realpath(second)


def runs_server(pid: int, directory: Path) -> bool | None:
    """Whether process ``pid`` is twistd running the pacsref server of ``directory``.

    A pidfile outlives its daemon (kill -9, a crash, a reboot), and its pid may since have
    been given to any process, which must then be neither signalled nor taken for the server.
    The command line says what a process runs: the twistd plugin ``pacsref`` followed by
    ``--server-dir DIR`` (:func:`twistd_command`; ``-d DIR`` or ``--server-dir=DIR`` when
    typed by hand; relative to the process's working directory; no such option: twistd's
    embedded default server, under the root that process's own ``$PACSREF_ROOT`` named, not
    ours). None when the system cannot tell (no ``/proc``, or it may not be read): then the
    pid is trusted, as before this check.
    """
    words = command_line(pid)
    if words is None:
        return None
    if PLUGIN_NAME not in words:
        return False
    served = _served_directory(words[words.index(PLUGIN_NAME) + 1 :], pid)
    if served is None:
        return None
    if not served.is_absolute():
        try:
            served = Path(os.readlink(f"/proc/{pid}/cwd")) / served
        except OSError:
            return None
    return _same_directory(served, directory)


def discard_stale_pidfile(server: _Registered) -> None:
    """Remove a pidfile whose pid now belongs to another process, with a warning.

    Called where a command would act on the pidfile: ``stop`` would SIGTERM that process,
    ``start`` would be refused (twistd itself too, while the pid lives), ``delete`` too.
    """
    pid = stale_pid(server.pidfile)
    if pid is None:
        return
    try:
        server.pidfile.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ManagerError(
            f"server {server.name}: cannot remove its stale pidfile {server.pidfile} (pid {pid} "
            f"is another process): {os_reason(exc)}"
        ) from None
    what = " ".join(command_line(pid) or []) or "?"
    if len(what) > 60:
        what = what[:57] + "..."
    warn(
        f"server {server.name}: removed the stale pidfile {server.pidfile}: pid {pid} is not "
        f"this server's twistd ({what})"
    )


@contextlib.contextmanager
def exclusive(server: _Registered, doing: str) -> Iterator[None]:
    """Hold the server's lock file (``<dir>/manager.lock``) while it is started, stopped,
    edited or deleted; refuse at once when another ``pacsref`` holds it, saying what that one
    is ``doing`` (``starting``, ``stopping``, ``being edited``, ``being deleted``).

    Two starts at once both found the server stopped: each twistd wrote its pid over the
    other's, and the one that failed removed the pidfile as it exited, leaving the other
    running without one. Two edits at once each read the file before the other saved it, and
    the second to save undid the first's change. The lock is an ``flock`` on an open file
    description: the kernel drops it when this process ends, however it ends, and twistd does
    not inherit it (the descriptor is close-on-exec and ``subprocess`` closes the others).
    """
    path = server.directory / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ManagerError(
            f"server {server.name}: cannot open its lock file {path}: {os_reason(exc)}"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").split(maxsplit=1)
            if len(holder) == 2 and holder[0].isdigit():
                busy = f"{holder[1].strip()} (by pacsref pid {holder[0]})"
            else:
                busy = "being started, stopped, edited or deleted by another pacsref"
            raise ManagerError(
                f"server {server.name} is already {busy}; try again once that is done"
            ) from None
        except OSError as exc:
            raise ManagerError(
                f"server {server.name}: cannot lock {path}: {os_reason(exc)}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {doing}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def find_server(root: Path, name: str) -> Server:
    """The server ``name`` under ``root``; ManagerError when unknown or unreadable."""
    found = load_server(root, name)
    if isinstance(found, BrokenServer):
        raise ManagerError(found.reason)
    return found


def load_server(root: Path, name: str) -> Server | BrokenServer:
    """The server ``name`` under ``root``, a :class:`BrokenServer` when its settings cannot
    be read; ManagerError for a name that is not allowed or a server that does not exist."""
    directory = root / check_server_name(name)
    if not (directory / SETTINGS_FILE_NAME).is_file():
        raise ManagerError(f"unknown server {name!r} (no {directory / SETTINGS_FILE_NAME})")
    try:
        settings = load_settings(directory / SETTINGS_FILE_NAME)
    except SettingsError as exc:
        return BrokenServer(name, directory, str(exc).splitlines()[0])
    return Server(name, directory, settings)


def scan(root: Path) -> Iterator[Server | BrokenServer]:
    """Every registered server under ``root``, by name: readable ones and broken ones."""
    try:
        entries = sorted(root.iterdir()) if root.is_dir() else []
    except OSError as exc:
        raise ManagerError(f"cannot read the root folder {root}: {os_reason(exc)}") from None
    for directory in entries:
        if (directory / SETTINGS_FILE_NAME).is_file():
            try:
                yield load_server(root, directory.name)
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
    """The twistd command line of ``server`` (absolute paths).

    ``--server-dir`` with the absolute directory is also what :func:`runs_server` looks for
    to tell this server's daemon from a process that inherited its pid.
    """
    directory = server.directory.resolve()
    command = [sys.executable, "-c", TWISTD_CODE]
    if not daemon:
        command.append("-n")
    pidfile = str(directory / PIDFILE_NAME) if daemon else ""
    command += [f"--pidfile={pidfile}", f"--logfile={directory / LOGS_DIR_NAME / LOGFILE_NAME}"]
    command += [PLUGIN_NAME, SERVER_DIR_OPTION, str(directory)]
    return command


def log_tail(server: Server, lines: int = 5) -> str:
    try:
        text = server.logfile.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


#: What twistd prints when the daemon it forked fails in ``startService``: the reason it then
#: gets through its status pipe is cut at 100 bytes and shown as a bytes literal.
DAEMON_FAILED = "An error has occurred"
#: How the server logs that failure, whole (``pacsref.server.service``).
START_FAILURE_LOGGED = "cannot start server "


def _log_size(server: Server) -> int:
    try:
        return server.logfile.stat().st_size
    except OSError:
        return 0


def logged_start_failure(server: Server, offset: int = 0) -> str | None:
    """The reason of the last ``cannot start server AE: <reason>`` line the server logged
    after ``offset`` (the log's size before this start: older failures are not this one's)."""
    try:
        with server.logfile.open("rb") as log:
            if log.seek(0, os.SEEK_END) >= offset:  # smaller: rotated meanwhile, read it all
                log.seek(offset)
            else:
                log.seek(0)
            text = log.read().decode(errors="replace")
    except OSError:
        return None
    found = None
    for line in text.splitlines():
        message = line.partition("] ")[2].strip()  # after "<time> [<namespace>#<level>] "
        if message.startswith(START_FAILURE_LOGGED):
            found = message
    if found is None:
        return None
    own = f"{START_FAILURE_LOGGED}{server.settings.ae_title}: "
    return found.removeprefix(own) or found


def start(server: Server, timeout: float = START_TIMEOUT_S) -> int:
    """Start ``server`` as a twistd daemon; return its pid once GetStatus answers.

    Holds the server's lock (:func:`exclusive`) throughout, so that a second start waits for
    no pidfile race but is refused with what is going on. Under the lock, ``server.settings``
    is read again (and replaced): an edit that saved the file after the caller read it (a
    Start Mode now ``disabled``, another port) is what twistd will start with, so it is also
    what this start judges and reports.
    """
    with exclusive(server, "starting"):
        server.settings = _settings_now(server)
        if server.settings.start_mode is StartMode.DISABLED:
            raise ManagerError(
                f'server {server.name} has Start Mode "disabled" and refuses to start; '
                "allow it first: "
                + command_hint("server", "edit", server.name, "--start-mode", "manual")
            )
        return _start(server, timeout)


def _settings_now(server: Server) -> ServerSettings:
    """The settings ``server``'s file holds now; ManagerError when they cannot be read."""
    try:
        return load_settings(server.directory / SETTINGS_FILE_NAME)
    except SettingsError as exc:
        raise ManagerError(str(exc).splitlines()[0]) from None


def _start(server: Server, timeout: float) -> int:
    discard_stale_pidfile(server)  # twistd would refuse to start while that pid lives
    pid = server.pid()
    if pid is not None:
        raise ManagerError(f"server {server.name} is already running (pid {pid})")
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
    log_offset = _log_size(server)
    status = command_hint("server", "status", server.name)
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
    except KeyboardInterrupt:
        raise Interrupted(
            f"twistd was starting server {server.name}; it may have started: {status}"
        ) from None
    if done.returncode != 0:
        # twistd prints the plugin's own "pacsref: <reason>"; this command adds that prefix.
        output = " | ".join(
            line.strip().removeprefix("pacsref: ")
            for line in (done.stderr + done.stdout).splitlines()
            if line.strip()
        )
        logged = logged_start_failure(server, log_offset) if DAEMON_FAILED in output else None
        reason = logged or output[-500:] or log_tail(server) or f"twistd exited {done.returncode}"
        raise ManagerError(f"server {server.name} failed to start: {reason}")
    try:
        return _wait_until_it_answers(server, timeout, log_offset)
    except KeyboardInterrupt:
        raise Interrupted(
            f"server {server.name} was started (twistd detached) and had not answered yet; "
            f"it goes on starting: {status}"
        ) from None


def _wait_until_it_answers(server: Server, timeout: float, log_offset: int) -> int:
    began = time.monotonic()
    deadline = began + timeout
    interval = 0.01
    while True:
        pid = server.pid()
        if pid is None and time.monotonic() - began > 2.0:  # the daemon wrote it, then died
            reason = logged_start_failure(server, log_offset) or log_tail(server)
            raise ManagerError(f"server {server.name} exited at start: {reason}")
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


def stop(server: Server | BrokenServer, timeout: float | None = None) -> int:
    """SIGTERM the server's daemon and wait for it to exit; return the pid it had.

    The server first lets open associations finish for its ``stop_timeout``, then aborts
    them, so the default wait is that plus :data:`STOP_TIMEOUT_S` for the rest of the stop.
    A broken server (unreadable ``settings.toml``) is stopped by its pidfile alone, waiting
    for the file's ``stop_timeout`` if that is still valid, else the default.
    """
    if timeout is None:
        timeout = server.stop_timeout + ABORT_GRACE_S + CUT_GRACE_S + STOP_TIMEOUT_S
    with exclusive(server, "stopping"):
        discard_stale_pidfile(server)  # never SIGTERM a process that inherited its pid
        try:
            # pinned before its /proc entry is read: see PinnedProcess
            process = pin_live_pid(server.pidfile)
        except OSError as exc:  # no pidfd for another reason than none here (EMFILE...)
            raise ManagerError(f"server {server.name}: {os_reason(exc)}") from None
        if process is None:
            if socket_answers(server.socket_path):
                raise ManagerError(
                    f"server {server.name} runs without a pidfile (its admin socket answers: "
                    f"run by systemd?); stop it there: systemctl stop pacsref-{server.name}"
                )
            raise ManagerError(f"server {server.name} is not running")
        with process:
            return stop_pid(server.name, process, timeout)


def stop_pid(name: str, process: int | PinnedProcess, timeout: float) -> int:
    """SIGTERM ``process`` (the daemon of server ``name``) and wait up to ``timeout`` s for
    its end; return its pid.

    A bare pid is signalled and watched by its number (the caller vouches that it is still the
    server's); a :class:`PinnedProcess` through its pidfd when it has one. Ctrl-C while it
    waits raises :class:`Interrupted` saying the SIGTERM went out: the server goes on with its
    graceful stop whether this command waits or not.
    """
    if isinstance(process, int):
        process = PinnedProcess(process, None)
    pid = process.pid
    # Ctrl-C is held back from just before the SIGTERM until the wait below can say it was sent:
    # one landing in between would otherwise be reported as if nothing had been done.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        process.send_signal(signal.SIGTERM)
    except ProcessLookupError:  # it exited meanwhile (by pidfd: never another one signalled)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        return pid
    except OSError as exc:  # EPERM, or anything else the system says: one line, Ctrl-C back
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        raise ManagerError(f"server {name} (pid {pid}): cannot stop it: {os_reason(exc)}") from None
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        if not process.wait(timeout):
            raise ManagerError(f"server {name} (pid {pid}) did not exit within {timeout:g} s")
    except KeyboardInterrupt:
        raise Interrupted(
            f"server {name} (pid {pid}) was sent SIGTERM and goes on with its graceful stop: "
            + command_hint("server", "status", name)
        ) from None
    return pid
