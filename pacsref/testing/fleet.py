"""Several pacsref servers in one root folder, as an administrator runs them, for black-box tests.

Why a fleet and not N :class:`~pacsref.testing.twistd.TwistdServer` fixtures: what the admin
features must show is *isolation* (pausing one server, or adding an AE title to it, leaves its
neighbour alone; a watcher of one hears nothing of the other), and that only means something
when the servers share what real ones share: one root folder, one host, one user. Starting them
costs most of a feature's time, so a fleet is meant to live for a whole feature and its servers
start in parallel.

:class:`ManagedRoot` is the other half: a root folder for ``pacsref`` (the service manager)
commands, whose daemons it kills at the end whatever the scenario did to them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from pacsref.testing.twistd import TwistdServer

__all__ = ["ManagedRoot", "ServerFleet"]


class ServerFleet:
    """Named :class:`TwistdServer`\\ s (name = AE title) in one temporary root folder.

    Args:
        start_timeout_s: per server, as :class:`TwistdServer` takes it.
    """

    def __init__(self, start_timeout_s: float = 30.0) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pacsref-fleet-"))
        self.start_timeout_s = start_timeout_s
        self.servers: dict[str, TwistdServer] = {}

    def __getitem__(self, name: str) -> TwistdServer:
        try:
            return self.servers[name]
        except KeyError:
            known = ", ".join(self.servers) or "none"
            raise AssertionError(f"no server {name!r} in this feature (known: {known})") from None

    def ensure(self, wanted: Mapping[str, Mapping[str, str]]) -> None:
        """Have each named server running with exactly these settings; start missing ones.

        Servers already running with the same settings are kept (the point of a fleet); a
        name asked for with other settings than it runs with is an error in the feature, not
        something to paper over with a silent restart. Missing ones start in parallel.
        """
        to_start: list[TwistdServer] = []
        for name, settings in wanted.items():
            server = self.servers.get(name)
            if server is None:
                server = TwistdServer(
                    name, root=self.root, settings=settings, start_timeout_s=self.start_timeout_s
                )
                self.servers[name] = server
            elif server.settings != dict(settings):
                raise AssertionError(
                    f"server {name} already runs with {server.settings}, not {dict(settings)}"
                )
            if not server.running:
                to_start.append(server)
        errors: list[BaseException] = []

        def start(server: TwistdServer) -> None:
            try:
                server.start()
            except BaseException as exc:  # reported below, in the feature's thread
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(s,), daemon=True) for s in to_start]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(self.start_timeout_s * 2 + 30)
        if errors:
            raise errors[0]

    def log_tails(self, lines: int = 20) -> str:
        """The last log lines of every server, to print when a scenario failed."""
        return "\n".join(
            f"--- last lines of {server.log_path} ---\n{server.log_tail(lines)}"
            for server in self.servers.values()
            if server.root is not None
        )

    def stop(self) -> None:
        """Stop every server, then remove the root folder. Idempotent."""
        for server in self.servers.values():
            server.stop()
        self.servers.clear()
        shutil.rmtree(self.root, ignore_errors=True)


class ManagedRoot:
    """A temporary ``--root`` for ``pacsref`` commands; :meth:`cleanup` kills its daemons.

    The daemons are started by the command under test (``pacsref server start``), not by
    the test, so the only handle on them is the pidfile each server directory holds.
    """

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="pacsref-root-"))

    def live_pids(self) -> list[int]:
        """The pids named by pidfiles under the root whose processes are alive."""
        from pacsref.manager.daemon import PIDFILE_NAME, live_pid

        pids = (live_pid(pidfile) for pidfile in self.path.glob(f"*/{PIDFILE_NAME}"))
        return [pid for pid in pids if pid is not None]

    def cleanup(self, grace_s: float = 10.0) -> None:
        """SIGTERM every live daemon, SIGKILL those still alive after ``grace_s``; remove all."""
        from pacsref.manager.daemon import process_alive

        pids = self.live_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in pids:
            if process_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.path, ignore_errors=True)
