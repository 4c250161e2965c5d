"""Loopback ports and bounded waits for tests that run real servers.

Black-box tests (behave features, interop tests, the conformance wrapper, the benchmark) start
real servers in subprocesses. They must neither hard-code a port (parallel runs would collide)
nor sleep a fixed time hoping the server is up (too short fails on a loaded CI machine, too long
wastes every run). So: ask the kernel for a free port, then poll a TCP connect until it is
accepted or a deadline passes.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

LOOPBACK = "127.0.0.1"

#: Longest pause between two refused connects; the first pauses are shorter (back-off), so a
#: server that is up after 30 ms is noticed after about 30 ms, not after a fixed interval.
MAX_POLL_INTERVAL_S = 0.1


def free_loopback_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on ``host`` that nothing listens on right now.

    The kernel picks it (bind to port 0). Between closing this probe and the server binding the
    port another socket could take it (a client connection's own end is an ephemeral port too):
    rare, but it happened in CI, so :class:`~pacsref.testing.twistd.TwistdServer` moves a server
    whose port it chose to another one when its log says the port is in use.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(
    host: str,
    port: int,
    deadline_s: float,
    *,
    pause: Callable[[float], bool] | None = None,
) -> bool:
    """Poll a TCP connect to ``host:port`` until it is accepted or ``deadline_s`` seconds pass.

    Returns True as soon as a connection is accepted (it is closed at once), False when the
    deadline passes. Each connect attempt has a short socket timeout, so a black-holed address
    cannot overrun the deadline.

    Args:
        pause: waits up to the given number of seconds between refused attempts and returns
            True to give up early. A caller watching a subprocess passes a wait on that process
            (``Popen.wait(timeout=...)``), so a server that dies at start-up is noticed at once
            instead of after the whole deadline. Without it the pause is a plain short wait.
    """
    end = time.monotonic() + deadline_s
    interval = 0.01
    while True:
        remaining = end - time.monotonic()
        if remaining <= 0:
            return False
        try:
            with socket.create_connection((host, port), timeout=min(0.5, remaining)):
                return True
        except OSError:
            pass
        wait_s = max(0.0, min(interval, end - time.monotonic()))
        if pause is not None:
            if pause(wait_s):
                return False
        else:
            time.sleep(wait_s)
        interval = min(interval * 2, MAX_POLL_INTERVAL_S)
