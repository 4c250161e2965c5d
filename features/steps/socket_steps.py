"""Steps about the server's sockets: the options on an accepted connection, the listen address.

Socket options cannot be seen on the wire (the buffer sizes only shape TCP windows, and No Delay
only timing), so these steps look at the server's own socket: they find its file descriptor in
``/proc/PID/fd`` by the connection's inode in ``/proc/net/tcp``, borrow a duplicate with
``pidfd_getfd(2)`` (Linux 5.6+; allowed because this process started the server) and read it
with ``getsockopt``. The duplicate is only read and then closed; the server's socket is
untouched. Where the kernel refuses, the scenario is skipped with the reason.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
from pathlib import Path
from typing import Any

from behave import then, when
from scenario_support import on_cleanup, running_server, server_pid

from pacsref.testing.twistd import TwistdServer
from simulators.misbehaving import AssociateAC, RawPeer
from simulators.netutil import tcp_entry

#: pidfd_getfd's system call number (the same on x86-64 and arm64).
SYS_PIDFD_GETFD = 438


def fd_of_inode(pid: int, inode: int) -> int:
    """The file descriptor number under which process ``pid`` holds socket ``inode``."""
    target = f"socket:[{inode}]"
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(entry) == target:
                return int(entry.name)
        except OSError:
            continue  # closed meanwhile
    raise AssertionError(f"process {pid} holds no file descriptor for {target}")


def borrow_fd(pid: int, fd: int) -> int | str:
    """A duplicate of ``pid``'s descriptor ``fd`` in this process, or why the kernel refused."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        duplicate = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if duplicate < 0:
            code = ctypes.get_errno()
            if code in (errno.EPERM, errno.ENOSYS, errno.EACCES):
                return f"pidfd_getfd is not available here: {os.strerror(code)}"
            raise OSError(code, os.strerror(code))
        return int(duplicate)
    finally:
        os.close(pidfd)


def server_socket_options(server: TwistdServer, peer: RawPeer) -> dict[str, int] | str:
    """TCP_NODELAY, SO_RCVBUF, SO_SNDBUF of the server's end of ``peer``'s connection.

    Returns the reason instead when the kernel does not let us borrow the socket.
    """
    entry = tcp_entry(server.address, peer.local_address)
    assert entry is not None, f"no TCP socket {server.address} -> {peer.local_address}"
    pid = server_pid(server)
    duplicate = borrow_fd(pid, fd_of_inode(pid, entry[1]))
    if isinstance(duplicate, str):
        return duplicate
    borrowed = socket.socket(fileno=duplicate)
    try:
        return {
            "TCP_NODELAY": borrowed.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
            "SO_RCVBUF": borrowed.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            "SO_SNDBUF": borrowed.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
        }
    finally:
        borrowed.close()  # closes our duplicate only; the server's descriptor stays open


@when('a raw peer "{calling_ae}" associates and stays')
def step_associate_and_stay(context: Any, calling_ae: str) -> None:
    """An association held open by a raw peer, whose address names the server's socket."""
    server = running_server(context)
    host, port = server.address
    peer = RawPeer(host, port, timeout=10)
    peer.connect()
    on_cleanup(context, peer.close)
    reply = peer.associate(server.ae_title, calling_ae)
    assert isinstance(reply, AssociateAC), f"{calling_ae}: association not accepted: {reply}"
    peers = getattr(context, "raw_peers", None)
    if peers is None:
        peers = context.raw_peers = {}
    peers[calling_ae] = peer


@then(
    'the server\'s socket for "{calling_ae}" has TCP_NODELAY {nodelay:d},'
    " SO_RCVBUF {rcvbuf:d} and SO_SNDBUF {sndbuf:d}"
)
def step_socket_options(
    context: Any, calling_ae: str, nodelay: int, rcvbuf: int, sndbuf: int
) -> None:
    """The options as ``getsockopt`` reads them on the server's accepted socket."""
    peer: RawPeer = getattr(context, "raw_peers", {}).get(calling_ae)
    assert peer is not None, f"no raw peer {calling_ae} holds an association"
    seen = server_socket_options(running_server(context), peer)
    if isinstance(seen, str):
        context.scenario.skip(seen)
        return
    expected = {"TCP_NODELAY": nodelay, "SO_RCVBUF": rcvbuf, "SO_SNDBUF": sndbuf}
    if seen["TCP_NODELAY"]:
        seen["TCP_NODELAY"] = 1  # any non-zero value means "on"
    assert seen == expected, f"server socket options {seen}, expected {expected}"


@then("a connection to {ip} on the server's port is {verdict}")
def step_listen_address(context: Any, ip: str, verdict: str) -> None:
    """``accepted`` or ``refused``: the listener is bound to the IP Address setting only."""
    if verdict not in ("accepted", "refused"):
        raise AssertionError(f"verdict {verdict!r}: expected 'accepted' or 'refused'")
    _, port = running_server(context).address
    try:
        with socket.create_connection((ip, port), timeout=5):
            outcome = "accepted"
    except ConnectionRefusedError:
        outcome = "refused"
    assert outcome == verdict, f"a connection to {ip}:{port} was {outcome}, not {verdict}"
