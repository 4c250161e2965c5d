"""A raw-socket DICOM peer that can break every rule of PS3.8 on purpose.

pynetdicom's AE is a well-behaved peer: it will not send a PDU of type 0x0A,
trickle an A-ASSOCIATE-RQ one byte a second, or lie about an item length. A
server's error paths (ARTIM, A-ABORT with the right reason, closing the
transport) are only exercised by a peer that does, so this one writes the
bytes itself and reports exactly what came back and when.

The PDU builders and decoders live in :mod:`simulators.pdus` and the C-ECHO
command set in :mod:`simulators.commands`; both are re-exported here so one
import gives the whole toolkit.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from simulators.commands import (
    CONTROL_COMMAND,
    CONTROL_LAST,
    c_echo_rq,
    decode_command,
    echo_response_status,
)
from simulators.pdus import (
    A_ABORT,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    A_ASSOCIATE_RQ,
    A_RELEASE_RP,
    A_RELEASE_RQ,
    DICOM_APP_CONTEXT,
    IMPLICIT_VR_LE,
    P_DATA_TF,
    PDU_NAMES,
    VERIFICATION,
    Abort,
    AssociateAC,
    AssociateRJ,
    PDUDecodeError,
    abort,
    associate_rq,
    decode_abort,
    decode_associate_ac,
    decode_associate_rj,
    decode_p_data,
    p_data,
    pdu,
    release_rp,
    release_rq,
)

__all__ = [
    "A_ABORT",
    "A_ASSOCIATE_AC",
    "A_ASSOCIATE_RJ",
    "A_ASSOCIATE_RQ",
    "A_RELEASE_RP",
    "A_RELEASE_RQ",
    "CONTROL_COMMAND",
    "CONTROL_LAST",
    "DICOM_APP_CONTEXT",
    "ECHO_PDU_LENGTH",
    "IMPLICIT_VR_LE",
    "P_DATA_TF",
    "VERIFICATION",
    "Abort",
    "AssociateAC",
    "AssociateRJ",
    "Flood",
    "PDUDecodeError",
    "RawPeer",
    "Reaction",
    "abort",
    "associate_rq",
    "c_echo_rq",
    "decode_abort",
    "decode_associate_ac",
    "decode_associate_rj",
    "decode_command",
    "decode_p_data",
    "describe_pdu",
    "echo_response_status",
    "p_data",
    "pdu",
    "release_rp",
    "release_rq",
]

#: A PDU longer than this from a peer means we lost framing, not a real PDU.
_SANE_PDU_LIMIT = 64 << 20


def describe_pdu(pdu_type: int, payload: bytes) -> str:
    """One-line PS3.8 description of a received PDU, decoding RJ and A-ABORT fully."""
    try:
        if pdu_type == A_ASSOCIATE_RJ:
            return f"A-ASSOCIATE-RJ {decode_associate_rj(payload)}"
        if pdu_type == A_ABORT:
            return str(decode_abort(payload))
    except PDUDecodeError as exc:
        return f"malformed {PDU_NAMES[pdu_type]} ({exc})"
    name = PDU_NAMES.get(pdu_type, f"unknown PDU type 0x{pdu_type:02X}")
    return f"{name} ({len(payload)} bytes)"


@dataclass
class Reaction:
    """What the server did after a provocation: the PDUs it sent, and whether it closed.

    ``elapsed`` runs from the start of the wait to the close (or to giving up).
    """

    pdus: list[tuple[int, bytes]] = field(default_factory=list)
    #: Seconds from the start of the wait to the arrival of each PDU in ``pdus``.
    arrivals: list[float] = field(default_factory=list)
    closed: bool = False
    elapsed: float = 0.0
    #: Bytes of the provocation actually written (only a trickle stops part-way).
    bytes_sent: int = 0
    #: True if the wait ended at a PDU listed in ``until`` (see :meth:`RawPeer.react`).
    stopped: bool = False

    @property
    def aborts(self) -> list[Abort]:
        """Every A-ABORT among the received PDUs, decoded."""
        return [decode_abort(p) for t, p in self.pdus if t == A_ABORT]

    def describe(self) -> str:
        """One line, e.g. ``A-ABORT source 2 (..) after 0.01 s`` or ``bare close after 5 s``."""
        said = "; ".join(
            f"{describe_pdu(t, p)} after {at:.2f} s"
            for (t, p), at in zip(self.pdus, self.arrivals, strict=True)
        )
        if self.closed:
            tail = f"close after {self.elapsed:.2f} s"
            return f"{said} then {tail}" if said else f"bare {tail}"
        if self.stopped:
            return said
        still = f"connection still open after {self.elapsed:.2f} s"
        return f"{said}; {still}" if said else f"no reaction: {still}"


#: Bytes of one C-ECHO-RQ in one P-DATA-TF: every message ID encodes to the same length.
ECHO_PDU_LENGTH = len(p_data([(1, CONTROL_COMMAND | CONTROL_LAST, c_echo_rq(1))]))


@dataclass
class Flood:
    """What :meth:`RawPeer.flood_echoes` managed to send before it stopped, and why."""

    bytes_sent: int = 0
    #: True if a send waited ``stall_after`` in vain: the server stopped reading from us.
    stalled: bool = False
    #: True if the server closed or reset the connection while we were sending.
    closed: bool = False
    elapsed: float = 0.0

    @property
    def messages_sent(self) -> int:
        """Complete C-ECHO-RQs written (the last one may have gone out in part)."""
        return self.bytes_sent // ECHO_PDU_LENGTH

    def describe(self) -> str:
        """One line: how much, how long, and why it stopped."""
        why = (
            "the server closed the connection"
            if self.closed
            else "the server stopped reading (back-pressure)"
            if self.stalled
            else "the byte or time budget ran out"
        )
        return (
            f"{self.messages_sent} C-ECHO-RQs ({self.bytes_sent} bytes) in "
            f"{self.elapsed:.2f} s, never reading; stopped because {why}"
        )


class RawPeer:
    """A blocking TCP peer that sends whatever bytes it is told and frames PDUs it receives.

    Every wait is bounded: ``timeout`` is the default for connect and for
    each receive; ``recv_pdu`` and ``wait_closed`` take their own bounds.
    Every PDU received is appended to ``received`` so a check can inspect,
    for example, the length of each fragment the server sent.
    """

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float = 10.0,
        *,
        bind_address: str | None = None,
        receive_buffer: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        #: Local IP address to connect from, e.g. ``127.0.0.2`` to play another host on
        #: loopback (Linux routes all of 127/8 to ``lo``); None lets the kernel choose.
        self.bind_address = bind_address
        #: SO_RCVBUF to ask for before connecting; a small one makes a peer that never
        #: reads fill the server's send buffer sooner (the window is fixed at connect).
        self.receive_buffer = receive_buffer
        self.sock: socket.socket | None = None
        self.received: list[tuple[int, bytes]] = []
        self._buffer = b""
        self._eof = False

    def __enter__(self) -> RawPeer:
        """Connect (unless already connected, e.g. by a helper that associated first)."""
        if self.sock is None:
            self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self) -> None:
        """Open the TCP connection (the Transport Connect of PS3.8 9.1.1).

        Built by hand rather than with ``socket.create_connection`` because the
        receive buffer must be set before ``connect`` to shape the TCP window.
        """
        family, kind, proto, _, address = socket.getaddrinfo(
            self.host, self.port, type=socket.SOCK_STREAM
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            if self.receive_buffer is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
            if self.bind_address is not None:
                sock.bind((self.bind_address, 0))
            sock.settimeout(self.timeout)
            sock.connect(address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    @property
    def local_address(self) -> tuple[str, int]:
        """Our ``(ip, port)``: what the server sees as the peer address."""
        name = self._socket().getsockname()
        return str(name[0]), int(name[1])

    def _socket(self) -> socket.socket:
        if self.sock is None:
            raise RuntimeError("RawPeer is not connected")
        return self.sock

    def send_bytes(self, data: bytes) -> None:
        """Write ``data`` as is; raises OSError (e.g. BrokenPipeError) if the server is gone."""
        self._socket().sendall(data)

    def send_pdu(self, pdu_type: int, payload: bytes) -> None:
        """Frame ``payload`` with a PDU header of type ``pdu_type`` (any value) and send it."""
        self.send_bytes(pdu(pdu_type, payload))

    def _fill(self, need: int, deadline: float) -> bool:
        """Read until ``need`` bytes are buffered; False on EOF. Raises TimeoutError."""
        sock = self._socket()
        while len(self._buffer) < need:
            if self._eof:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete PDU before the deadline")
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, ConnectionAbortedError):
                chunk = b""  # A reset is a close too (e.g. a server that aborts hard).
            if not chunk:
                self._eof = True
                return False
            self._buffer += chunk
        return True

    def recv_pdu(self, timeout: float | None = None) -> tuple[int, bytes] | None:
        """Return the next ``(pdu_type, payload)``, or None once the server has closed.

        Raises TimeoutError if no complete PDU arrives within ``timeout``
        (default: the peer's timeout), and PDUDecodeError on an absurd length.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        if not self._fill(6, deadline):
            return None
        pdu_type, _, length = struct.unpack_from(">BBI", self._buffer)
        if length > _SANE_PDU_LIMIT:
            raise PDUDecodeError(f"PDU length {length} is not plausible; framing lost")
        if not self._fill(6 + length, deadline):
            return None
        payload = self._buffer[6 : 6 + length]
        self._buffer = self._buffer[6 + length :]
        self.received.append((pdu_type, payload))
        return pdu_type, payload

    def wait_closed(self, timeout: float) -> bool:
        """Read (and keep in ``received``) until the server closes; False if it has not by then."""
        return self.react(timeout).closed

    def react(self, timeout: float, until: frozenset[int] = frozenset()) -> Reaction:
        """Collect every PDU the server sends until it closes or ``timeout`` passes.

        Stops early at the first PDU whose type is in ``until``: after an
        A-ABORT or A-ASSOCIATE-RJ it is the *requestor* that closes the
        transport (PS3.8 Table 9-10, AA-3 / AE-4), while the server may wait for
        that close on its ARTIM timer (Sta13), so waiting on would only
        measure the server's ARTIM.
        """
        start = time.monotonic()
        reaction = Reaction()
        while True:
            if any(t in until for t, _ in reaction.pdus):
                reaction.stopped = True
                break
            remaining = timeout - (time.monotonic() - start)
            try:
                got = self.recv_pdu(max(remaining, 0.0))
            except TimeoutError:
                break
            if got is None:
                reaction.closed = True
                break
            reaction.pdus.append(got)
            reaction.arrivals.append(time.monotonic() - start)
        reaction.elapsed = time.monotonic() - start
        return reaction

    def close(self) -> None:
        """Close our end; harmless if already closed or never opened."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # -- Conveniences built from the primitives above ---------------------------------

    def associate(
        self, called: str, calling: str, **rq: Any
    ) -> AssociateAC | AssociateRJ | Abort | None:
        """Send an A-ASSOCIATE-RQ (``rq`` goes to :func:`associate_rq`) and decode the reply.

        Returns the AC, the RJ, an A-ABORT, or None if the server closed without
        a word; raises TimeoutError if it says nothing within the timeout.
        """
        self.send_bytes(associate_rq(called, calling, **rq))
        return self.read_association_reply()

    def read_association_reply(self) -> AssociateAC | AssociateRJ | Abort | None:
        """Decode the server's answer to an A-ASSOCIATE-RQ (PS3.8 9.3.3, 9.3.4, 9.3.8)."""
        got = self.recv_pdu()
        if got is None:
            return None
        pdu_type, payload = got
        if pdu_type == A_ASSOCIATE_AC:
            return decode_associate_ac(payload)
        if pdu_type == A_ASSOCIATE_RJ:
            return decode_associate_rj(payload)
        if pdu_type == A_ABORT:
            return decode_abort(payload)
        raise PDUDecodeError(
            f"unexpected reply to A-ASSOCIATE-RQ: {describe_pdu(pdu_type, payload)}"
        )

    def read_command(self, context_id: int | None = None) -> bytes:
        """Reassemble one DIMSE command set from P-DATA-TF fragments (PS3.8 E.2, PS3.7 8.1).

        Raises ConnectionError if the server aborts or closes first.
        """
        command = b""
        while True:
            got = self.recv_pdu()
            if got is None:
                raise ConnectionError("server closed the connection before the command ended")
            pdu_type, payload = got
            if pdu_type != P_DATA_TF:
                raise ConnectionError(f"expected P-DATA-TF, got {describe_pdu(pdu_type, payload)}")
            for ctx, control, data in decode_p_data(payload):
                if context_id is not None and ctx != context_id:
                    raise PDUDecodeError(f"PDV on context {ctx}, expected {context_id}")
                if not control & CONTROL_COMMAND:
                    raise PDUDecodeError("data set fragment where a command was expected")
                command += data
                if control & CONTROL_LAST:
                    return command

    def echo(self, context_id: int, message_id: int = 1, sop_class: str = VERIFICATION) -> int:
        """Send a C-ECHO-RQ in one PDV and return the response Status (PS3.7 9.3.5)."""
        command = c_echo_rq(message_id, sop_class)
        self.send_bytes(p_data([(context_id, CONTROL_COMMAND | CONTROL_LAST, command)]))
        return echo_response_status(self.read_command(context_id), message_id)

    def finish(self, timeout: float | None = None) -> bool:
        """Release, half-close, and wait for the server to close its end; True if it did.

        After the A-RELEASE-RP it is the requestor that closes (PS3.8 AR-3). Waiting
        for the server's own close proves it has dropped the association, so a next
        request cannot race its bookkeeping (max clients, multiple connections).
        """
        bound = self.timeout if timeout is None else timeout
        try:
            reply = self.release()
        except (OSError, TimeoutError, PDUDecodeError):
            return False
        if reply is None or reply[0] != A_RELEASE_RP:
            return False
        with contextlib.suppress(OSError):
            self._socket().shutdown(socket.SHUT_WR)
        return self.react(bound).closed

    def flood_echoes(
        self,
        context_id: int,
        *,
        max_bytes: int = 8 << 20,
        stall_after: float = 1.0,
        deadline: float = 30.0,
    ) -> Flood:
        """Send C-ECHO-RQs as fast as the server takes them, and never read a reply.

        This is the slow reader: its replies pile up in its receive buffer, then
        in the server's send buffer. A server that reads on regardless buffers
        every response in memory; one that applies back-pressure stops reading
        from us, so our sends stall. Stops after ``max_bytes``, after a send
        waited ``stall_after`` seconds in vain, or after ``deadline`` seconds.
        """
        sock = self._socket()
        message = 1
        flood = Flood()
        start = time.monotonic()
        sock.setblocking(False)
        try:
            while flood.bytes_sent < max_bytes and time.monotonic() - start < deadline:
                batch = b"".join(
                    p_data([(context_id, CONTROL_COMMAND | CONTROL_LAST, c_echo_rq(m))])
                    for m in range(message, message + 256)
                )
                message = (message + 256) % 0xFF00 or 1
                if not self._send_within(sock, batch, stall_after, flood):
                    flood.stalled = True
                    break
        finally:
            sock.settimeout(self.timeout)
        flood.elapsed = time.monotonic() - start
        return flood

    @staticmethod
    def _send_within(sock: socket.socket, data: bytes, stall_after: float, flood: Flood) -> bool:
        """Write all of ``data`` on a non-blocking socket; False if a write waits too long."""
        view = memoryview(data)
        while view:
            _, writable, _ = select.select([], [sock], [], stall_after)
            if not writable:
                return False
            try:
                sent = sock.send(view)
            except BlockingIOError:
                continue
            except OSError:
                flood.closed = True
                return False
            flood.bytes_sent += sent
            view = view[sent:]
        return True

    def release(self) -> tuple[int, bytes] | None:
        """Send A-RELEASE-RQ and return the next PDU (A-RELEASE-RP when all is well)."""
        self.send_bytes(release_rq())
        return self.recv_pdu()

    def trickle(self, data: bytes, interval: float, deadline: float) -> Reaction:
        """Send ``data`` one byte every ``interval`` seconds until the server reacts.

        The pause between bytes is a bounded wait for the server to close or
        speak, so the moment it gives up is measured to within a read. Stops at
        the first PDU or close, or after ``deadline`` seconds.
        """
        start = time.monotonic()
        reaction = Reaction()
        for index in range(len(data)):
            if time.monotonic() - start >= deadline:
                break
            try:
                self.send_bytes(data[index : index + 1])
            except OSError:
                reaction.closed = True
                break
            reaction.bytes_sent += 1
            wait = min(interval, max(0.0, deadline - (time.monotonic() - start)))
            try:
                got = self.recv_pdu(wait)
            except TimeoutError:
                continue
            if got is None:
                reaction.closed = True
            else:
                reaction.pdus.append(got)
                reaction.arrivals.append(time.monotonic() - start)
            break
        if not reaction.closed:
            # The server spoke, or the whole PDU went out: the rest of its reaction.
            offset = time.monotonic() - start
            more = self.react(max(0.0, deadline - offset))
            reaction.pdus += more.pdus
            reaction.arrivals += [offset + at for at in more.arrivals]
            reaction.closed = more.closed
        reaction.elapsed = time.monotonic() - start
        return reaction
