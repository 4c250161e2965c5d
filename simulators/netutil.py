"""Small socket helpers shared by the simulators, the conformance suite and their tests.

Tests start real servers (DCMTK, pynetdicom) in subprocesses or threads and must
neither guess a port nor sleep while the server starts: they ask the kernel for
a free loopback port and then poll a TCP connect until it succeeds or a deadline
passes.
"""

from __future__ import annotations

import socket
import time

LOOPBACK = "127.0.0.1"


def free_loopback_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    The kernel picks the port (bind to port 0), so parallel test runs do not
    collide the way a hard-coded port would. There is an unavoidable window
    between closing this probe socket and the server binding the port; the
    ephemeral range is large enough that this does not matter in practice.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, deadline_s: float = 10.0, interval_s: float = 0.05) -> bool:
    """Poll a TCP connect to ``host:port`` until it is accepted or ``deadline_s`` passes.

    Returns True as soon as a connection is accepted (and closes it at once),
    False when the deadline passes. This is a poll on a real condition with a
    bound; the short pause between refused attempts only keeps it from spinning.
    """
    end = time.monotonic() + deadline_s
    while True:
        remaining = end - time.monotonic()
        if remaining <= 0:
            return False
        try:
            with socket.create_connection((host, port), timeout=min(1.0, remaining)):
                return True
        except OSError:
            time.sleep(min(interval_s, max(0.0, end - time.monotonic())))
