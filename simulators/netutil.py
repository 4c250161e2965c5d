"""Small socket helpers shared by the simulators, the conformance suite and their tests.

Tests start real servers (DCMTK, pynetdicom) in subprocesses or threads and must
neither guess a port nor sleep while the server starts: they ask the kernel for
a free loopback port and then poll a TCP connect until it succeeds or a deadline
passes.
"""

from __future__ import annotations

import socket
import sys
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


#: TCP states as /proc/net/tcp numbers them (include/net/tcp_states.h).
TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
}

#: States in which the owner of a socket still holds the connection open. In any other state
#: it has closed (or reset) its end, even if the kernel still drains an orphaned socket.
HELD_STATES = frozenset({"ESTABLISHED", "SYN_RECV", "CLOSE_WAIT"})


def proc_net_address(ip: str, port: int) -> str:
    """``127.0.0.1:11112`` as /proc/net/tcp writes it: ``0100007F:2B68``.

    The kernel prints the network-order IPv4 word as a native integer, so on a
    little-endian machine the bytes come out reversed.
    """
    packed = socket.inet_aton(ip)
    word = int.from_bytes(packed, "little" if sys.byteorder == "little" else "big")
    return f"{word:08X}:{port:04X}"


def tcp_entry(local: tuple[str, int], remote: tuple[str, int]) -> tuple[str, int] | None:
    """``(state, inode)`` of the IPv4 TCP socket ``local`` -> ``remote``, or None if gone.

    Linux only (``/proc/net/tcp`` of this network namespace); raises OSError elsewhere.
    """
    wanted = (proc_net_address(*local), proc_net_address(*remote))
    with open("/proc/net/tcp", encoding="ascii") as table:
        next(table)  # header line
        for line in table:
            fields = line.split()
            if (fields[1], fields[2]) == wanted:
                state = TCP_STATES.get(int(fields[3], 16), f"state 0x{fields[3]}")
                return state, int(fields[9])
    return None


def tcp_state(local: tuple[str, int], remote: tuple[str, int]) -> str | None:
    """The kernel's state of the IPv4 TCP socket ``local`` -> ``remote``, or None if gone.

    This is how a black-box test tells whether a server on this machine still
    holds a connection that the test itself cannot read from without changing
    the outcome (a peer that never reads must not start reading to find out).
    """
    entry = tcp_entry(local, remote)
    return None if entry is None else entry[0]
