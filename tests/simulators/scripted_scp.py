"""A hand-built SCP on loopback whose answers to release, C-ECHO and unknown PDUs a test picks.

pynetdicom's SCP always releases, answers every echo and aborts an unknown PDU
with (2, 0); judging the simulators' verdicts on a server that does otherwise
needs a server that does otherwise. Every wait is on a real event: leaving the
context shuts the listener and every connection down and joins the threads.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from simulators.commands import TAG_MESSAGE_ID, decode_command
from simulators.netutil import LOOPBACK
from simulators.pdus import (
    A_ABORT,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RQ,
    A_RELEASE_RQ,
    DICOM_APP_CONTEXT,
    IMPLICIT_VR_LE,
    P_DATA_TF,
    VERIFICATION,
    abort,
    decode_p_data,
    item,
    iter_items,
    p_data,
    pdu,
    release_rp,
)

#: What the SCP does instead of answering: send A-ABORT (2, 0) and close, just close,
#: or say nothing and keep the connection open.
Misdeed = Literal["abort", "close", "silent"]
#: The answer to A-RELEASE-RQ: A-RELEASE-RP, or a misdeed.
ReleaseAnswer = Literal["rp", "abort", "close", "silent"]


@dataclass
class Script:
    """How the SCP behaves; every association it accepts follows the same script."""

    on_release: ReleaseAnswer = "rp"
    #: Answer this many C-ECHO-RQs, then meet the next with ``after_echoes`` (None: answer all).
    echoes_answered: int | None = None
    after_echoes: Misdeed = "abort"
    #: A-ABORT (source, reason) sent for a PDU of unknown type.
    unknown_pdu_abort: tuple[int, int] = (2, 1)


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _read_pdu(sock: socket.socket) -> tuple[int, bytes] | None:
    header = _read_exactly(sock, 6)
    if header is None:
        return None
    pdu_type, _, length = struct.unpack(">BBI", header)
    payload = _read_exactly(sock, length)
    return None if payload is None else (pdu_type, payload)


def associate_ac(rq_payload: bytes) -> bytes:
    """An A-ASSOCIATE-AC accepting every proposed context with Implicit VR LE (PS3.8 9.3.3)."""
    called, calling = rq_payload[4:20], rq_payload[20:36]
    contexts = b"".join(
        item(0x21, bytes([value[0], 0, 0, 0]) + item(0x40, IMPLICIT_VR_LE.encode()))
        for kind, value in iter_items(rq_payload[68:])
        if kind == 0x20
    )
    user_info = item(0x50, item(0x51, struct.pack(">I", 16384)) + item(0x52, b"2.25.1"))
    fixed = struct.pack(">HH", 1, 0) + called + calling + bytes(32)
    app_context = item(0x10, DICOM_APP_CONTEXT.encode())
    return pdu(A_ASSOCIATE_AC, fixed + app_context + contexts + user_info)


def _element(tag: int, value: bytes) -> bytes:
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def c_echo_rsp(message_id: int, status: int = 0x0000) -> bytes:
    """A C-ECHO-RSP command set (PS3.7 Table 9.3-13), Implicit VR LE."""
    uid = VERIFICATION.encode() + b"\0" * (len(VERIFICATION) % 2)
    body = (
        _element(0x0000_0002, uid)
        + _element(0x0000_0100, struct.pack("<H", 0x8030))
        + _element(0x0000_0120, struct.pack("<H", message_id))
        + _element(0x0000_0800, struct.pack("<H", 0x0101))
        + _element(0x0000_0900, struct.pack("<H", status))
    )
    return _element(0x0000_0000, struct.pack("<I", len(body))) + body


class ScriptedSCP(socketserver.ThreadingTCPServer):
    """The listener; ``echoes_received`` counts every C-ECHO-RQ that reached it."""

    daemon_threads = True
    block_on_close = True

    def __init__(self, script: Script) -> None:
        self.script = script
        self.echoes_received = 0
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        super().__init__((LOOPBACK, 0), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def misbehave(self, sock: socket.socket, misdeed: Misdeed) -> bool:
        """Do ``misdeed`` on ``sock``; True if the connection is over."""
        if misdeed == "abort":
            sock.sendall(abort(2, 0))
        return misdeed != "silent"


class _Handler(socketserver.BaseRequestHandler):
    server: ScriptedSCP

    def handle(self) -> None:
        sock: socket.socket = self.request
        with self.server.lock:
            self.server.connections.append(sock)
        with contextlib.suppress(OSError):
            while (got := _read_pdu(sock)) is not None:
                if self._answer(sock, *got):
                    return

    def _answer(self, sock: socket.socket, pdu_type: int, payload: bytes) -> bool:
        """Answer one PDU; True when the connection is over."""
        scp, script = self.server, self.server.script
        if pdu_type == A_ASSOCIATE_RQ:
            sock.sendall(associate_ac(payload))
        elif pdu_type == P_DATA_TF:
            for context_id, _, command in decode_p_data(payload):
                with scp.lock:
                    scp.echoes_received += 1
                    number = scp.echoes_received
                if script.echoes_answered is not None and number > script.echoes_answered:
                    return scp.misbehave(sock, script.after_echoes)
                (message_id,) = struct.unpack("<H", decode_command(command)[TAG_MESSAGE_ID])
                sock.sendall(p_data([(context_id, 0x03, c_echo_rsp(message_id))]))
        elif pdu_type == A_ABORT:
            return True
        elif pdu_type == A_RELEASE_RQ:
            if script.on_release == "rp":
                sock.sendall(release_rp())
                return True
            return scp.misbehave(sock, script.on_release)
        else:
            sock.sendall(abort(*script.unknown_pdu_abort))
            return True
        return False


@contextlib.contextmanager
def scripted_scp(script: Script) -> Iterator[ScriptedSCP]:
    """Serve ``script`` on a free loopback port until the block ends."""
    server = ScriptedSCP(script)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        with server.lock:
            for sock in server.connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked in recv
        server.server_close()  # joins the handler threads (block_on_close)
        thread.join(timeout=10)
