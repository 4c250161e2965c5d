"""Flow control of an admin connection: pipelined requests, back-pressure, closing,
over-long responses.

Some tests run the protocol over :class:`BufferedSocket`, Twisted's own write buffer and
producer logic (``FileDescriptor``) with a peer that reads only when the test says so: a
``StringTransport`` never closes nor resumes a producer, so it cannot show whether a
connection whose output was backed up really closes once its client has read everything.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet import main
from twisted.internet.abstract import FileDescriptor
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from pacsref.admin import protocol as admin_protocol
from pacsref.admin.messages import MAX_LINE_LENGTH, ServiceMessage
from pacsref.admin.protocol import (
    CLOSE_GRACE_S,
    MAX_PENDING_OUTPUT,
    OUTPUT_HIGH_WATER,
    AdminProtocol,
)
from tests.admin.helpers import Admin
from tests.admin.test_protocol import _held_threads

GET_TITLES = b'{"message": "GetAeTitles"}\n'


class BufferedSocket(FileDescriptor):
    """Twisted's write buffering and producer handling over a peer that reads on demand."""

    def __init__(self, protocol: AdminProtocol) -> None:
        super().__init__(MemoryReactor())
        self.connected = 1
        self.protocol = protocol
        self.room = 0  # bytes the peer's socket takes now
        self.received = bytearray()
        self.closed: Failure | None = None
        protocol.makeConnection(self)
        self.startReading()

    def writeSomeData(self, data: bytes) -> int:
        taken = min(len(data), self.room)
        self.received += bytes(data[:taken])
        self.room -= taken
        return taken

    def abortConnection(self) -> None:
        self._lost(Failure(main.CONNECTION_LOST))

    def _lost(self, reason: Failure) -> None:
        self.closed = reason
        self.connectionLost(reason)
        self.protocol.connectionLost(reason)

    @property
    def reading(self) -> bool:
        return self in self.reactor.readers

    def peer_reads_everything(self) -> None:
        """The peer reads what is sent, as the reactor would let it, until nothing is left."""
        while self.closed is None and self in self.reactor.writers:
            self.room = 1 << 40
            result = self.doWrite()
            if result is not None:
                self._lost(Failure(result))

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in bytes(self.received).splitlines()]


def test_lines_behind_a_waiting_request_are_not_read_until_it_is_answered() -> None:
    """While a request waits on a worker thread the connection stops reading: pipelined
    lines stay in the socket (bounded) instead of queueing in memory without limit."""
    pending, run_in_thread = _held_threads()
    admin = Admin(run_in_thread)
    conn = admin.connect()
    conn.protocol.dataReceived(b'{"message": "RemoveAeTitle", "data": ["MODALITY"]}\n')
    assert conn.transport.producerState == "paused"  # the transport stopped reading
    conn.protocol.dataReceived(GET_TITLES * 500)
    assert conn.read() == []
    pending[0].callback(None)
    replies = conn.read()
    assert [r["message"] for r in replies] == ["RemoveAeTitle"] + ["GetAeTitles"] * 500
    assert conn.transport.producerState == "producing"  # reading again


def test_a_real_transport_stops_reading_while_a_request_waits() -> None:
    pending, run_in_thread = _held_threads()
    admin = Admin(run_in_thread)
    sock = BufferedSocket(admin.factory.buildProtocol(None))  # type: ignore[arg-type]
    sock.protocol.dataReceived(b'{"message": "RemoveAeTitle", "data": ["MODALITY"]}\n')
    assert not sock.reading
    pending[0].callback(None)
    assert sock.reading


@pytest.mark.parametrize("how", ["server stop", "connection lost", "client too slow"])
def test_lines_behind_a_waiting_request_are_dropped_once_the_connection_closes(
    how: str,
) -> None:
    """Nobody is left to answer: a Pause read behind a waiting request must not run."""
    pending, run_in_thread = _held_threads()
    admin = Admin(run_in_thread)
    conn = admin.connect()
    conn.protocol.dataReceived(
        b'{"message": "RemoveAeTitle", "data": ["MODALITY"]}\n{"message": "Pause"}\n'
    )
    if how == "server stop":
        conn.protocol.close()
    elif how == "connection lost":
        conn.protocol.connectionLost(None)
    else:
        conn.transport.producer.pauseProducing()  # its buffer is full
        big = ServiceMessage("ServerResumed", "PACSREF", True, "", ["x" * (1024 * 1024)])
        for _ in range(MAX_PENDING_OUTPUT // len(big.to_json()) + 1):
            conn.protocol.push(big)
        assert conn.transport.disconnected  # aborted
    conn.transport.clear()
    pending[0].callback(None)
    assert not admin.control.paused
    assert conn.transport.value() == b""


def _back_up(sock: BufferedSocket) -> None:
    """Pipelined requests whose answers overflow Twisted's buffer: the meter is paused."""
    sock.protocol.dataReceived(GET_TITLES * 1000)
    assert sock.producer is not None and sock.producerPaused


def test_a_refused_connection_closes_once_its_client_has_read_everything() -> None:
    """After "line too long" the connection closes when its backed-up output is read (the
    meter, left registered, was resumed instead: the connection stayed open for ever), and
    nothing follows the refusal, not even a notification."""
    admin = Admin()
    sock = BufferedSocket(admin.factory.buildProtocol(None))  # type: ignore[arg-type]
    _back_up(sock)
    sock.protocol.dataReceived(b"x" * (MAX_LINE_LENGTH + 10))
    admin.control.pause()  # a ServerPaused after the refusal would be sent to nobody's use
    sock.peer_reads_everything()
    assert sock.closed is not None and sock.closed.check(ConnectionDone)
    *answers, refusal = sock.lines()
    assert [a["message"] for a in answers] == ["GetAeTitles"] * 1000
    assert refusal["message"] == "Error" and "line longer than" in refusal["error"]
    assert sock.protocol not in admin.factory.connections
    assert not admin.clock.getDelayedCalls()  # the cut was called off


def test_a_refused_connection_whose_client_does_not_read_is_cut_after_the_grace() -> None:
    """A client that never reads the refusal (its socket full) cannot hold the connection
    open until the server stops: it is cut once the grace has passed."""
    admin = Admin()
    sock = BufferedSocket(admin.factory.buildProtocol(None))  # type: ignore[arg-type]
    _back_up(sock)
    sock.protocol.dataReceived(b"x" * (MAX_LINE_LENGTH + 10))
    admin.clock.advance(CLOSE_GRACE_S - 0.1)
    assert sock.closed is None and sock.protocol in admin.factory.connections
    admin.clock.advance(0.1)
    assert sock.closed is not None
    assert sock.protocol not in admin.factory.connections
    assert not admin.clock.getDelayedCalls()


def _stopping_backed_up() -> tuple[BufferedSocket, Clock, list[Any]]:
    """A connection whose output is backed up, and the server's stop closing it: the socket,
    the stop's clock and the list its Deferred fires into."""
    admin = Admin()
    sock = BufferedSocket(admin.factory.buildProtocol(None))  # type: ignore[arg-type]
    _back_up(sock)
    clock = Clock()
    done: list[Any] = []
    admin.factory.close_connections(clock).addCallback(done.append)
    return sock, clock, done


def test_a_stop_closes_a_backed_up_connection_once_read_not_after_the_grace() -> None:
    """On stop, a client that reads what was backed up is closed then: the stop does not
    wait for the grace period's cut (it did while the meter stayed registered)."""
    sock, clock, done = _stopping_backed_up()
    sock.peer_reads_everything()
    assert sock.closed is not None and len(done) == 1
    assert len(sock.lines()) == 1000
    assert not clock.getDelayedCalls()


def test_the_grace_still_cuts_a_stopped_connection_whose_client_does_not_read() -> None:
    sock, clock, done = _stopping_backed_up()
    clock.advance(CLOSE_GRACE_S - 0.1)
    assert done == [] and sock.closed is None
    clock.advance(0.1)
    assert sock.closed is not None and len(done) == 1


def test_a_response_longer_than_a_client_accepts_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The clients refuse lines over MAX_RESPONSE_LENGTH; the server answers "too long"
    instead of sending one, and the connection goes on."""
    monkeypatch.setattr(admin_protocol, "MAX_RESPONSE_LENGTH", 2000)
    admin = Admin()
    conn = admin.connect()
    for _ in range(20):
        admin.add_client(associate=True)
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        reply = conn.request("GetClients")
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert (reply["message"], reply["success"], reply["data"]) == ("GetClients", False, [])
    assert "more than an admin response line may be (2000 bytes)" in reply["error"]
    assert [e["kind"] for e in events if e.get("kind")] == ["admin.response_too_long"]
    assert conn.request("GetStatus")["success"]


# -- back-pressure: a client that sends requests but does not read the answers ----------------

#: Associated clients that make one GetClients answer about 100 kB, so a few pass high water.
CLIENTS = 256
#: Pairs of requests: a big GetClients, then a GetAssociation whose refusal names its number,
#: so the answers show their order.
PAIRS = 40


def _pipelined(pairs: int = PAIRS) -> bytes:
    return b"".join(
        b'{"message": "GetClients"}\n{"message": "GetAssociation", "data": [%d]}\n' % (90000 + i)
        for i in range(pairs)
    )


def _expected(pairs: int = PAIRS) -> list[tuple[str, str]]:
    """(message, error) of the answers to :func:`_pipelined`, in request order."""
    expected = []
    for i in range(pairs):
        expected.append(("GetClients", ""))
        expected.append(("GetAssociation", f"no connected client with id {90000 + i}"))
    return expected


def _busy_server(run_in_thread: Any = None) -> Admin:
    admin = Admin(run_in_thread)
    for _ in range(CLIENTS):
        admin.add_client(associate=True)
    return admin


def _answers(lines: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(line["message"], line["error"]) for line in lines]


def test_reading_stops_at_the_high_water_mark_and_resumes_once_drained() -> None:
    """A client that pipelines requests without reading the answers: once more than
    OUTPUT_HIGH_WATER bytes wait beyond the transport's full buffer, the connection stops
    reading; when the transport says its buffer drained, it reads on, and every request is
    answered, in order (none is lost or refused, and the connection is not cut)."""
    admin = _busy_server()
    conn = admin.connect()
    conn.protocol.dataReceived(_pipelined())  # a client that reads: never held back
    assert conn.transport.producerState == "producing"
    assert _answers(conn.read()) == _expected()

    conn.transport.producer.pauseProducing()  # the transport's buffer is full
    conn.protocol.dataReceived(_pipelined())
    assert conn.transport.producerState == "paused"  # reading stopped
    out = conn.transport.value()
    last = out.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    # The answer that passed high water was the last one written: nothing more was served.
    assert len(out) - len(last) - 1 <= OUTPUT_HIGH_WATER < len(out)
    before = conn.read()
    assert 0 < len(before) < 2 * PAIRS

    conn.transport.producer.resumeProducing()  # the client caught up: the buffer drained
    assert conn.transport.producerState == "producing"  # reading again
    assert _answers(before + conn.read()) == _expected()
    assert not conn.transport.disconnecting


def test_a_real_transport_holds_back_a_client_that_does_not_read_and_loses_nothing() -> None:
    """Over Twisted's own write buffer: reading stops while the peer reads nothing, and once
    it reads, all the answers come, in order, the connection pausing and resuming as its
    buffer fills and drains."""
    admin = _busy_server()
    sock = BufferedSocket(admin.factory.buildProtocol(None))  # type: ignore[arg-type]
    sock.protocol.dataReceived(_pipelined())
    assert not sock.reading and sock.producerPaused
    assert sock.lines() == []  # the peer has read nothing yet
    held_back = 0
    while sock in sock.reactor.writers:  # the peer reads what there is, again and again
        sock.room = 1 << 40
        assert sock.doWrite() is None
        held_back += not sock.reading  # what reading on wrote filled the buffer again
    assert held_back >= 1
    assert sock.reading and sock.closed is None
    assert _answers(sock.lines()) == _expected()


def test_notifications_still_cut_a_client_that_stopped_reading_at_the_limit() -> None:
    """Reading is paused, but notifications cannot be: past MAX_PENDING_OUTPUT bytes waiting
    the connection is aborted as before (log kind=admin.slow_client), and the requests it
    had not read yet are dropped, never served."""
    admin = _busy_server()
    conn = admin.connect()
    conn.transport.producer.pauseProducing()  # the transport's buffer is full
    conn.protocol.dataReceived(_pipelined() + b'{"message": "Pause"}\n')
    assert conn.transport.producerState == "paused"  # held back, not cut
    big = ServiceMessage("ServerResumed", "PACSREF", True, "", ["x" * (1024 * 1024)])
    size = len(big.to_line()) + 1
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        pushed = 0  # the buffer was full before any of them: all count
        while pushed + size <= MAX_PENDING_OUTPUT:
            conn.protocol.push(big)
            pushed += size
        assert not conn.transport.disconnecting
        conn.protocol.push(big)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert conn.transport.disconnecting and conn.transport.disconnected  # aborted, not lost
    cuts = [e for e in events if e.get("kind") == "admin.slow_client"]
    assert [(c["limit"], c["pending"] > MAX_PENDING_OUTPUT) for c in cuts] == [
        (MAX_PENDING_OUTPUT, True)
    ]
    conn.transport.clear()
    conn.protocol.connectionLost(None)
    assert not admin.control.paused  # the unread Pause was never served
    assert conn.transport.value() == b""


@pytest.mark.parametrize("first", ["answered", "drained"])
def test_reading_resumes_only_once_answered_and_drained(first: str) -> None:
    """A request waiting on a worker thread and output past high water each stop reading;
    the lines behind them are served only once both are over, whichever ends first."""
    pending, run_in_thread = _held_threads()
    admin = Admin(run_in_thread)
    conn = admin.connect()
    conn.transport.producer.pauseProducing()  # the transport's buffer is full
    conn.protocol.dataReceived(b'{"message": "RemoveAeTitle", "data": ["MODALITY"]}\n')
    conn.protocol.dataReceived(GET_TITLES * 3)
    big = ServiceMessage("ServerResumed", "PACSREF", True, "", ["x" * OUTPUT_HIGH_WATER])
    conn.protocol.push(big)  # a notification: now past high water
    if first == "answered":
        pending[0].callback(None)
    else:
        conn.transport.producer.resumeProducing()
    assert conn.transport.producerState == "paused"
    assert [m["message"] for m in conn.read()] == (
        ["ServerResumed", "RemoveAeTitle"] if first == "answered" else ["ServerResumed"]
    )
    if first == "answered":
        conn.transport.producer.resumeProducing()
    else:
        pending[0].callback(None)
    assert conn.transport.producerState == "producing"
    assert [m["message"] for m in conn.read()] == (
        ["GetAeTitles"] * 3 if first == "answered" else ["RemoveAeTitle"] + ["GetAeTitles"] * 3
    )


def test_one_answer_longer_than_the_limit_to_a_reading_client_is_neither_cut_nor_held_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Responses may be far longer than MAX_PENDING_OUTPUT: the write that fills the
    transport's buffer is not counted as waiting (the transport pauses the meter from inside
    that write), so a client that reads is not cut for one large answer, nor held back."""
    admin = Admin()
    big = ["x" * (MAX_PENDING_OUTPUT + 1024)]
    monkeypatch.setattr(admin.commands, "get_status", lambda: big)
    sock = BufferedSocket(admin.factory.buildProtocol(None))  # type: ignore[arg-type]
    sock.protocol.dataReceived(b'{"message": "GetStatus"}\n' + GET_TITLES)
    assert sock.closed is None and sock.reading
    sock.peer_reads_everything()
    assert sock.closed is None
    status, titles = sock.lines()
    assert (status["message"], status["data"], titles["message"]) == (
        "GetStatus",
        big,
        "GetAeTitles",
    )


def test_answers_never_count_toward_the_cut_a_reading_client_gets_them_all() -> None:
    """Answers come only to requests read, so they are held back by not reading, never cut:
    two pipelined answers of more than MAX_PENDING_OUTPUT each, written while the buffer is
    full, both arrive; notifications still count on their own."""
    admin = _busy_server()
    conn = admin.connect()
    conn.transport.producer.pauseProducing()  # the transport's buffer is full
    huge = ServiceMessage("GetStatus", "PACSREF", True, "", ["x" * (MAX_PENDING_OUTPUT + 1024)])
    conn.protocol.send(huge)
    conn.protocol.send(huge)
    assert not conn.transport.disconnecting
    assert conn.transport.producerState == "paused"  # reading held back instead
    small = ServiceMessage("ServerPaused", "PACSREF", True, "", [])
    conn.protocol.push(small)
    assert not conn.transport.disconnecting


def test_a_client_that_half_closes_gets_every_answer_then_the_close() -> None:
    """``printf '...' | socat - UNIX-CONNECT:...`` shuts its sending side after the requests:
    each is answered, in order, and then the server closes (it used to close at once,
    answering nothing). A request still waiting on a worker thread is answered first."""
    pending, run_in_thread = _held_threads()
    admin = Admin(run_in_thread)
    conn = admin.connect()
    conn.protocol.dataReceived(
        GET_TITLES + b'{"message": "RemoveAeTitle", "data": ["MODALITY"]}\n' + GET_TITLES
    )
    conn.protocol.readConnectionLost()
    assert not conn.transport.disconnecting  # RemoveAeTitle still waits for its thread
    pending[0].callback(None)
    assert [m["message"] for m in conn.read()] == ["GetAeTitles", "RemoveAeTitle", "GetAeTitles"]
    assert conn.transport.disconnecting


def test_a_client_that_stops_reading_is_answered_no_more() -> None:
    """The client shut its reading side: nothing it asked is served any longer."""
    admin = Admin()
    conn = admin.connect()
    conn.protocol.writeConnectionLost()
    assert conn.transport.disconnecting
    conn.protocol.dataReceived(b'{"message": "Pause"}\n')
    assert not admin.control.paused


def test_a_client_cut_for_not_reading_is_freed_without_waiting_for_the_collector() -> None:
    """A connection cut for not reading leaves nothing behind: its protocol, and with it the
    transport's unsent notifications (up to MAX_PENDING_OUTPUT each), are freed as soon as
    the last reference goes, not at Python's next full garbage collection (the protocol and
    its output meter referred to each other: 60 such cuts held 700 MB)."""
    import gc
    import weakref

    class TwistedLikeSocket(BufferedSocket):
        def _lost(self, reason: Failure) -> None:
            protocol = self.protocol
            self.closed = reason
            self.connectionLost(reason)
            del self.protocol  # as Twisted's tcp.Connection.connectionLost does
            protocol.connectionLost(reason)

    admin = _busy_server()
    sock = TwistedLikeSocket(admin.factory.buildProtocol(None))  # type: ignore[arg-type]
    protocol = weakref.ref(sock.protocol)
    big = ServiceMessage("ServerResumed", "PACSREF", True, "", ["x" * (1024 * 1024)])
    gc.disable()
    try:
        _back_up(sock)
        pushing = sock.protocol
        for _ in range(MAX_PENDING_OUTPUT // len(big.to_line()) + 2):
            pushing.push(big)
        del pushing
        assert sock.closed is not None  # cut
        sock.reactor.removeAll()
        del sock
        assert protocol() is None
    finally:
        gc.enable()
