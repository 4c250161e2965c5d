"""Run a real pacsref server under ``twistd`` for black-box tests, benchmarks and conformance.

The behave features, the interop tests, the conformance wrapper and the benchmark judge the server
the way an administrator runs it: ``twistd -n pacsref --server-dir DIR`` in its own process,
reached over loopback. :class:`TwistdServer` owns that process: it picks a free port, creates the
server directory (quick-start options, or the creation step when settings must be overridden
before the first start), waits until the port accepts connections (with a deadline, failing with
the log tail), and always stops the process again (SIGTERM, then SIGKILL), also at interpreter
exit if a caller forgot.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from pacsref.testing.net import LOOPBACK, free_loopback_port, wait_for_port

#: Runs twistd with this interpreter. ``python -m twisted`` would run ``twist``, which has
#: different options (no ``-n``); twistd's module has no ``__main__`` guard, hence ``-c``.
TWISTD = ("-c", "from twisted.scripts.twistd import run; run()")

#: Settings overrides are applied by this module before the first start (docs/CONTRACTS.md).
CREATE_MODULE = "pacsref.server.create"


#: How many ports a server with a port of its own choosing tries before giving up.
PORT_ATTEMPTS = 3


class ServerStartError(RuntimeError):
    """The server did not come up: it exited, or its port did not open before the deadline.

    The message ends with the tail of the server's log, the first thing anyone debugging it
    needs.
    """


def _pythonpath_for_pacsref() -> str | None:
    """The directory the child needs on ``sys.path`` to import the same pacsref we imported.

    Installed (site-packages): nothing to add. Run from a source tree (``/work/main``, not
    installed): the tree's root, which also puts its ``twisted/plugins/`` on Twisted's plugin
    path. The child's working directory is the server root, so it cannot rely on cwd.
    """
    import pacsref

    tree = str(Path(pacsref.__file__).resolve().parent.parent)
    installed = {
        str(Path(p).resolve()) for p in [*site.getsitepackages(), site.getusersitepackages()]
    }
    return None if tree in installed else tree


def _child_env() -> dict[str, str]:
    """Environment of the server process: ours, plus unbuffered output and the import path."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # the log tail must be complete when the server dies
    extra = _pythonpath_for_pacsref()
    if extra is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [extra, env.get("PYTHONPATH")]))
    return env


class TwistdServer:
    """A pacsref server in a ``twistd`` subprocess, listening on a loopback port.

    Attributes may be changed until :meth:`start` (behave steps configure the AE title and
    settings first, and the server starts when a client first needs it).

    Args:
        ae_title: the server's AE title; also the server directory's name.
        root: directory holding the server directory and the twistd log; a temporary directory
            (removed by :meth:`stop`) when None.
        port: TCP port; a free loopback port when None.
        host: IP address to listen on; loopback, as tests must not listen on the network.
        settings: ``key=value`` overrides applied by the creation step before the first start.
        start_timeout_s: how long to wait for the port to accept connections.
        stop_timeout_s: how long SIGTERM may take before SIGKILL.
    """

    def __init__(
        self,
        ae_title: str = "PACSREF",
        *,
        root: str | os.PathLike[str] | None = None,
        port: int | None = None,
        host: str = LOOPBACK,
        settings: Mapping[str, str] | None = None,
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.ae_title = ae_title
        self.root: Path | None = Path(root) if root is not None else None
        self.port = port
        self.host = host
        self.settings: dict[str, str] = dict(settings or {})
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._own_root = False
        self._process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    # -- where things are -------------------------------------------------------------------

    def _root(self) -> Path:
        """The root directory, created (as a temporary directory) on first use."""
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="pacsref-test-"))
            self._own_root = True
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root

    def _port(self) -> int:
        """The port, chosen on first use so attributes set before start are respected."""
        if self.port is None:
            self.port = free_loopback_port(self.host)
        return self.port

    @property
    def server_dir(self) -> Path:
        """``<root>/<AE>``, the server directory (docs/CONTRACTS.md)."""
        return self._root() / self.ae_title

    @property
    def log_path(self) -> Path:
        """The twistd process's stdout/stderr; outside the server directory, which may not
        exist yet when the process starts."""
        return self._root() / f"{self.ae_title}.twistd.log"

    @property
    def pid(self) -> int:
        """The running twistd process's id (for signals: SIGUSR1 pauses, SIGUSR2 resumes)."""
        if self._process is None or self._process.poll() is not None:
            raise RuntimeError("the server process is not running")
        return int(self._process.pid)

    def kill(self) -> None:
        """``kill -9`` the server and reap it: a crash, for recovery tests."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` for clients."""
        return self.host, self._port()

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    # -- life cycle --------------------------------------------------------------------------

    def create(self) -> Path:
        """Create the server directory with the creation step, applying :attr:`settings`.

        Separate from :meth:`start` so a caller may also edit ``settings.toml`` by hand before
        the first start.
        """
        argv = [
            sys.executable,
            "-m",
            CREATE_MODULE,
            "--server-dir",
            str(self.server_dir),
            "--ae-title",
            self.ae_title,
            "--port",
            str(self._port()),
            "--ip-address",
            self.host,
        ]
        for key, value in self.settings.items():
            argv += ["--set", f"{key}={value}"]
        done = subprocess.run(
            argv,
            cwd=self._root(),
            env=_child_env(),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=self.start_timeout_s,
            check=False,
        )
        if done.returncode != 0:
            raise ServerStartError(
                f"creating server {self.ae_title} in {self.server_dir} failed "
                f"(exit code {done.returncode}): {' '.join(argv)}\n{done.stdout}{done.stderr}"
            )
        return self.server_dir

    def _twistd_argv(self) -> list[str]:
        """``twistd -n pacsref --server-dir DIR``, with quick-start options if DIR is new."""
        argv = [sys.executable, *TWISTD, "--nodaemon", "--logfile=-", "--pidfile="]
        argv += ["pacsref", "--server-dir", str(self.server_dir)]
        if not self.server_dir.exists():
            argv += ["--ae-title", self.ae_title, "--port", str(self._port())]
            argv += ["--ip-address", self.host]
        return argv

    def start(self) -> TwistdServer:
        """Start the server (creating its directory first) and wait until it listens.

        Does nothing if it is already running.

        Raises:
            ServerStartError: the creation step failed, or the process exited, or within
                :attr:`start_timeout_s` its port did not open or its log did not say
                ``listening on HOST:PORT``; the server is stopped in every case.
        """
        if self.running:
            return self
        chosen = self.port is None  # ours to change if another process takes it first
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                return self._start_once()
            except ServerStartError as exc:
                if not (chosen and attempt < PORT_ATTEMPTS and self._port_was_taken(exc)):
                    raise
                self._move_to_a_new_port()
        raise AssertionError("unreachable")  # pragma: no cover

    def _port_was_taken(self, error: ServerStartError) -> bool:
        """Whether the server exited because its port was in use (``free_loopback_port``'s
        race: between its probe and twistd's bind, a client's connection may get the same
        ephemeral port as its own end)."""
        return f"port {self.port} is in use" in str(error)

    def _move_to_a_new_port(self) -> None:
        """Choose another free port, and write it into the server's settings if it has them."""
        self.port = free_loopback_port(self.host)
        settings_file = self.server_dir / "settings.toml"
        if settings_file.exists():
            from pacsref.settings.edit import edit_settings_file

            edit_settings_file(settings_file, {"port": self.port}, source="the test harness")

    def _start_once(self) -> TwistdServer:
        if self.settings and not self.server_dir.exists():
            self.create()
        argv = self._twistd_argv()
        with open(self.log_path, "ab") as log:
            log.write(f"# {' '.join(argv)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                argv,
                cwd=self._root(),
                env=_child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C meant for the test runner is not sent here
            )
        atexit.register(self.stop)
        problem = self._wait_until_listening()
        if problem is not None:
            returncode = self._process.poll()
            how = f"exited with code {returncode}" if returncode is not None else problem
            log_path, tail = self.log_path, self.log_tail()
            self.stop()
            raise ServerStartError(
                f"pacsref server {self.ae_title} {how}\ncommand: {' '.join(argv)}\n"
                f"last lines of {log_path}:\n{tail}"
            )
        return self

    def _wait_until_listening(self) -> str | None:
        """Wait until the port accepts connections *and* the log says it is ours; None if so.

        The port alone is not proof: between :func:`free_loopback_port` closing its probe and
        twistd binding, another process on the machine can take the port, and a test would then
        talk to a stranger. The contract's log line ``listening on IP:PORT`` (docs/CONTRACTS.md)
        settles it. Returns what was missing when the deadline passed or the process exited.
        """
        host, port = self.address
        deadline = time.monotonic() + self.start_timeout_s
        if not wait_for_port(host, port, self.start_timeout_s, pause=self._exited_within):
            return f"did not accept connections on {host}:{port} within {self.start_timeout_s} s"
        expected = f"listening on {host}:{port}"
        while expected not in self.log_tail(lines=200):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._exited_within(min(0.05, remaining)):
                return (
                    f"{host}:{port} accepts connections but the log does not say "
                    f"{expected!r} within {self.start_timeout_s} s (another process on the port?)"
                )
        return None

    def _exited_within(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the process to exit; True if it has (stop polling)."""
        if self._process is None:
            return True
        try:
            self._process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self) -> int | None:
        """Stop the server: SIGTERM, then SIGKILL after :attr:`stop_timeout_s`. Idempotent.

        Returns the process's exit code (None if it never started). Removes the root directory
        if it was a temporary one made by this object.
        """
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=self.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=self.stop_timeout_s)
            self.returncode = process.returncode
        if self._own_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            self._own_root = False
        return self.returncode

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the twistd log (empty if there is none yet)."""
        if self.root is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> TwistdServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
