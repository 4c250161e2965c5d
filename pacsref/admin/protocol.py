"""The administrative socket's protocol: newline-delimited JSON :class:`ServiceMessage` lines.

Each request line gets exactly one response line, in request order. Lines are served one at
a time: while a request's handler waits on a worker thread, the connection reads nothing
more (the lines after it wait in the socket), so a client pipelining requests cannot pile
them up in the server's memory nor have them all served in one reactor turn later.
Notifications may arrive between responses; clients tell them apart by the message name
(:data:`~pacsref.admin.messages.NOTIFICATIONS`). Bad input never ends the connection or
touches the DICOM service: it gets ``success: false`` and an ``error`` saying what was wrong,
except a line over :data:`~pacsref.admin.messages.MAX_LINE_LENGTH`, which is answered and
then closes that one admin connection (the rest of the line cannot be framed); a client that
does not read that answer is cut after :data:`CLOSE_GRACE_S`, so that it cannot hold its
connection open for ever. A response
longer than :data:`~pacsref.admin.messages.MAX_RESPONSE_LENGTH`, which the clients would
refuse, is replaced by a ``success: false`` one saying so.

A request whose ``service`` names another AE title than this server's is refused: a script
pointed at the wrong socket must not change the wrong server.

Output is bounded, by back-pressure first and by a cut last. Each connection registers a
streaming producer on its transport; once the transport says its buffer is full, what is
written is counted as pending. A client that sends requests without reading the answers:
past :data:`OUTPUT_HIGH_WATER` bytes pending, the connection stops reading its requests (the
lines after stay in the socket, where the client's writes block) and reads again once the
transport says its buffer drained (Twisted says so only when it is empty: that is the
low-water mark); no request is dropped, and every answer comes, in order. Notifications
cannot be held back that way (they keep coming whether or not the client reads), so past
:data:`MAX_PENDING_OUTPUT` bytes of notifications pending (answers do not count: reading
held back bounds them) that one connection is aborted (log
``kind=admin.slow_client``): a client that stops reading while notifications pile up cannot
grow the server's memory without limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, fail, maybeDeferred, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IPushProducer,
    IReactorTime,
)
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from pacsref.addin.errors import AeTitleError
from pacsref.admin.handlers import AdminCommands
from pacsref.admin.messages import (
    MAX_LINE_LENGTH,
    MAX_RESPONSE_LENGTH,
    MessageError,
    ServiceMessage,
    decode_request,
    notification_for,
)

log = Logger(namespace="pacsref.admin")

__all__ = [
    "CLOSE_GRACE_S",
    "MAX_PENDING_OUTPUT",
    "OUTPUT_HIGH_WATER",
    "AdminFactory",
    "AdminProtocol",
]

#: Bytes an admin connection may have waiting beyond the transport's own buffer before it
#: stops reading its client's requests (their answers would only add to the wait), until the
#: transport's buffer has drained.
OUTPUT_HIGH_WATER = 1024 * 1024
#: Bytes an admin connection may have waiting beyond the transport's own buffer before it is
#: closed as too slow: the last resort, since notifications keep coming whether or not the
#: client reads them, and the high-water mark's pause cannot hold them back.
MAX_PENDING_OUTPUT = 8 * 1024 * 1024
#: When the server stops, or a connection is refused for an over-long line, how long the client
#: gets to receive what is still buffered (the stop's last notifications, the refusal) before
#: its connection is cut.
CLOSE_GRACE_S = 2.0


def _nothing() -> None:
    pass


@implementer(IPushProducer)
class _OutputMeter:
    """Counts what an admin connection writes while its transport's buffer is full.

    A separate object, not the protocol: ``LineReceiver``'s own ``pauseProducing`` and
    ``resumeProducing`` stop and restart reading at once, whereas a full transport buffer
    should stop reading only past :data:`OUTPUT_HIGH_WATER` (a client that reads its answers
    a little late must not be slowed), and restart it only in step with the connection's
    other reasons not to read (a request waiting on a worker thread, a close).

    Args:
        drained: called when the transport's buffer has drained (the count starts again).
    """

    def __init__(self, drained: Callable[[], None]) -> None:
        self.paused = False
        self.pending = 0
        #: The part of ``pending`` that is notifications: only these count toward the cut,
        #: since answers are held back by not reading and would otherwise cut a client that
        #: reads, for one large answer written while its buffer was full.
        self.pending_notifications = 0
        self._drained = drained

    @property
    def backed_up(self) -> bool:
        """Whether more than :data:`OUTPUT_HIGH_WATER` bytes wait: stop reading requests."""
        return self.pending > OUTPUT_HIGH_WATER

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.pending = self.pending_notifications = 0
        self._drained()

    def stopProducing(self) -> None:
        self.paused = False
        self.pending = self.pending_notifications = 0

    def forget(self) -> None:
        """The connection is gone: drop the callback into it.

        It is a bound method of the protocol, which holds this meter: a reference cycle that
        kept the protocol, and through it its transport's unsent output (up to
        :data:`MAX_PENDING_OUTPUT` for a client cut for not reading), alive until Python's
        occasional full garbage collection.
        """
        self._drained = _nothing


@implementer(IHalfCloseableProtocol)
class AdminProtocol(LineReceiver):
    """One admin client's connection.

    Lines are served one at a time. While a request waits (on a worker thread), and while
    more than :data:`OUTPUT_HIGH_WATER` bytes of output wait for a client that does not read
    them, the connection stops reading: the lines after stay in the socket, where the
    client's own writes block, instead of piling up in the server's memory (as lines, or as
    their answers) and then being served all in one reactor turn. Once closing, nothing more
    is read or served. A client that shuts its sending side after its requests (as
    ``printf '...\n' | socat - UNIX-CONNECT:...`` does) gets every answer, then the close.
    """

    delimiter = b"\n"
    #: One byte more than a request may be: the ``\r`` a line may end with is not counted
    #: (``lineReceived`` checks the line without it).
    MAX_LENGTH = MAX_LINE_LENGTH + 1
    factory: AdminFactory

    def connectionMade(self) -> None:
        self._busy = False  # a request's answer is not written yet
        self._closing = False
        self._input_ended = False  # the client shut its sending side: close once answered
        self._meter = _OutputMeter(self._update_reading)
        self._metered = True
        self._cut_timer: IDelayedCall | None = None
        self.lost: Deferred[None] = Deferred()
        self.transport.registerProducer(self._meter, True)
        self.factory.connections.add(self)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._closing = True
        self.paused = True
        self._buffer = b""  # the lines not served yet have nobody to answer
        self.factory.connections.discard(self)
        if self._cut_timer is not None and self._cut_timer.active():
            self._cut_timer.cancel()
        self._cut_timer = None
        self._meter.forget()
        if not self.lost.called:
            self.lost.callback(None)

    def readConnectionLost(self) -> None:
        """The client sent all it will send: answer every request read, then close."""
        self._input_ended = True
        self._update_reading()

    def writeConnectionLost(self) -> None:
        """The client reads no more: nobody is left to answer."""
        self._shut()

    def _update_reading(self) -> None:
        """Read while the connection is open, no request is waiting for its answer, and the
        client is not more than :data:`OUTPUT_HIGH_WATER` bytes behind in reading; once the
        client has ended its input and every line read is answered, close."""
        stop = self._closing or self._busy or self._meter.backed_up
        if stop and not self.paused:
            self.paused = True
            if self.transport is not None and not self.transport.disconnecting:
                self.transport.pauseProducing()
        elif not stop and self.paused:
            self.paused = False
            self.transport.resumeProducing()
            self.dataReceived(b"")  # the lines read before the pause, still in the buffer
        if (
            self._input_ended
            and not (self._closing or self._busy or self.paused)
            and self.delimiter not in self._buffer
        ):
            self._shut()  # all answered; a partial last line has no end to be served by

    def send(self, message: ServiceMessage) -> None:
        """Write one answer line (reading stops while too much waits, see :meth:`_write`)."""
        self._write(message.to_line())

    def push(self, message: ServiceMessage) -> None:
        """Write one notification line; abort the connection if its client has stopped
        reading (notifications cannot be held back by not reading, as answers are)."""
        self._write(message.to_line(), notification=True)

    def _write(self, line: bytes, notification: bool = False) -> None:
        """Write, counting what waits: stop reading at high water, abort at the limit.

        Only what is written once the transport's buffer is already full counts: the write
        that fills it pauses the meter from inside ``transport.write``. Everything counted
        stops reading past :data:`OUTPUT_HIGH_WATER`; only notifications count toward the
        cut at :data:`MAX_PENDING_OUTPUT`: answers come only to requests read, so holding
        reading back bounds them, and a client that reads must not be cut for one large
        answer (answers may be far longer than the limit) written behind a few others.
        """
        if self.transport is None or self._closing:
            return
        data = line + self.delimiter
        full = self._meter.paused
        self.transport.write(data)
        if full:
            self._meter.pending += len(data)
            if notification:
                self._meter.pending_notifications += len(data)
            if self._meter.pending_notifications > MAX_PENDING_OUTPUT:
                self._too_slow()
            elif self._meter.backed_up and not self.paused:
                self._update_reading()

    def _too_slow(self) -> None:
        log.warn(
            "admin client is not reading: {pending} bytes of notifications waiting, more than "
            "{limit}; closing it (kind=admin.slow_client)",
            limit=MAX_PENDING_OUTPUT,
            pending=self._meter.pending_notifications,
            kind="admin.slow_client",
        )
        self._shut(abort=True)  # loseConnection would wait for the client to read

    def close(self) -> None:
        """Close once what is buffered has been written (the server is stopping)."""
        self._shut()

    def _shut(self, abort: bool = False) -> None:
        """Stop serving and close: nothing more is read, served or sent on this connection.

        The output meter is unregistered first: a transport closes after its buffer drains
        only when no producer is registered; with the meter (paused by a full buffer) still
        there, it would resume the meter instead and never close (nor let a stop finish
        before the grace period's cut).
        """
        self._closing = True
        self._buffer = b""
        self._update_reading()
        if self.transport is None:
            return
        if self._metered:
            self._metered = False
            self.transport.unregisterProducer()
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> object:
        """``LineReceiver``'s framing, and the refusal of a partial line that is already
        too long: with ``MAX_LENGTH`` one byte over the limit (for the ``\r``), Twisted waits
        for one byte more than a line may hold, which only a ``\r`` may be."""
        nested = self._busyReceiving
        why = super().dataReceived(data)
        pending = self._buffer
        if (
            not nested
            and not self._closing
            and len(pending) > MAX_LINE_LENGTH
            and self.delimiter not in pending
            and not (len(pending) == MAX_LINE_LENGTH + 1 and pending.endswith(b"\r"))
        ):
            self._buffer = b""
            self.lineLengthExceeded(pending)
        return why

    def lineReceived(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > MAX_LINE_LENGTH:
            self.lineLengthExceeded(line)
            return
        line = line.rstrip(b"\r")
        if self._closing or not line.strip():
            return
        try:
            served = self._serve(line)
        except Exception:
            served = fail()
        # Whatever goes wrong in serving one line, the next lines are still served: it is
        # answered "internal error" and the connection reads on.
        served.addErrback(self._unanswered)
        self._busy = True
        served.addBoth(self._served)
        if self._busy:  # still waiting (a worker thread): read nothing more until answered
            self._update_reading()

    def _served(self, _: object) -> None:
        self._busy = False
        self._update_reading()

    def _unanswered(self, failure: Failure) -> None:
        log.failure("admin request failed", failure)
        self.send(
            self.factory.failure(
                "Error", f"internal error: {failure.getErrorMessage() or failure.type.__name__}"
            )
        )

    def _serve(self, line: bytes) -> Deferred[None]:
        name = ""
        try:
            request = ServiceMessage.from_json(line)
            name = request.message
            self.factory.check_service(request)
            command, args = decode_request(request)
        except MessageError as exc:
            self.send(self.factory.failure(name or exc.name or "Error", str(exc)))
            return succeed(None)
        handler = getattr(self.factory.commands, command.handler)
        d = maybeDeferred(handler, *args)
        d.addCallbacks(
            lambda data: self._respond(command.name, data),
            lambda failure: self.send(self.factory.failure(command.name, _describe(failure))),
        )
        return d

    def _respond(self, name: str, data: list[Any]) -> None:
        """Write a successful response, or a refusal if it is longer than a client accepts."""
        line = self.factory.response(name, data).to_line()
        if len(line) > MAX_RESPONSE_LENGTH:
            log.warn(
                "admin response {name} of {size} bytes is over the limit; refused instead",
                name=name,
                size=len(line),
                kind="admin.response_too_long",
            )
            line = self.factory.failure(
                name,
                f"the response is {len(line)} bytes, more than an admin response line may "
                f"be ({MAX_RESPONSE_LENGTH} bytes)",
            ).to_line()
        self._write(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        # Reading stops while a request is served, so every answer due to the lines before
        # this one has been written: the refusal follows them, then the close. Nothing after
        # the over-long line can be framed, and nothing is sent after the refusal.
        self.send(
            self.factory.failure(
                "Error",
                f"line longer than {MAX_LINE_LENGTH} bytes refused; closing this admin connection",
            )
        )
        self._shut()
        if self.transport is not None and not self.lost.called:
            # loseConnection waits for the client to read the refusal; one that never reads
            # (its socket full) would keep the connection open until the server stops.
            self._cut_timer = self.factory.clock.callLater(CLOSE_GRACE_S, self._cut)

    def _cut(self) -> None:
        log.warn(
            "admin client did not read the refusal of its over-long line; cutting it",
            kind="admin.slow_client",
        )
        self._shut(abort=True)


def _describe(failure: Failure) -> str:
    if failure.check(MessageError, AeTitleError):
        return str(failure.value)
    log.failure("admin request failed", failure)
    return f"internal error: {failure.getErrorMessage() or failure.type.__name__}"


class AdminFactory(Factory):
    """Builds :class:`AdminProtocol` connections and pushes notifications to all of them.

    Args:
        commands: the request handlers.
        service: the server's AE title, put in every message's ``service`` field.
        clock: times the cut of a refused connection whose client does not read (the
            reactor when omitted).
    """

    protocol = AdminProtocol

    def __init__(
        self, commands: AdminCommands, service: str = "", clock: IReactorTime | None = None
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[assignment]
        self.clock: IReactorTime = clock  # type: ignore[assignment]
        self.commands = commands
        self.service = service
        self.connections: set[AdminProtocol] = set()
        self._unsubscribe = commands.control.notifier.subscribe(self.notify)

    def close(self) -> None:
        """Stop pushing notifications (the server is stopping)."""
        self._unsubscribe()

    def close_connections(self, clock: IReactorTime, grace: float = CLOSE_GRACE_S) -> Deferred[Any]:
        """Close every admin connection after its buffered output; fires once all are gone.

        Called after the server's last notifications (the stop's ClientDisconnected) were
        written: ``loseConnection`` sends what is buffered first, where the reactor's
        shutdown would drop it. A client that does not read is cut after ``grace`` seconds.
        """
        connections = list(self.connections)
        if not connections:
            return succeed(None)
        for connection in connections:
            connection.close()
        done: Deferred[Any] = DeferredList([c.lost for c in connections])

        def cut() -> None:
            for connection in list(self.connections):
                if connection.transport is not None:
                    connection.transport.abortConnection()

        timer = clock.callLater(grace, cut)

        def finished(result: object) -> object:
            if timer.active():
                timer.cancel()
            return result

        return done.addBoth(finished)

    def check_service(self, request: ServiceMessage) -> None:
        """Refuse a request addressed to another server (``service`` "" or omitted is fine)."""
        wanted = request.service.strip()
        if wanted and wanted != self.service.strip():
            raise MessageError(
                f"this socket serves AE title {self.service!r}, not {request.service!r}",
                request.message,
            )

    def response(self, name: str, data: list[Any]) -> ServiceMessage:
        return ServiceMessage(name, self.service, True, "", list(data))

    def failure(self, name: str, error: str) -> ServiceMessage:
        return ServiceMessage(name, self.service, False, error, [])

    def notify(self, event: Any) -> None:
        """Push ``event`` to every connected admin client (skipped when nobody listens)."""
        if not self.connections:
            return
        message = notification_for(event, self.service)
        if message is None:
            return
        for connection in list(self.connections):
            connection.push(message)
