"""Client library for the administrative socket, blocking and Twisted flavours.

Blocking (scripts, the service manager)::

    with AdminClient(path) as admin:
        reply = admin.call("GetAeTitles")          # -> ServiceMessage
        for note in admin.notifications():          # blocks; ends when the server closes
            print(note.message, note.data)

Twisted::

    protocol = AdminClientProtocol(on_notification=print)
    # connect it with an endpoint (UNIXClientEndpoint), then
    d = protocol.call("Pause")                      # Deferred firing with a ServiceMessage

``call`` returns the response even when ``success`` is false (check it, or
use :meth:`ServiceMessage` fields); only a lost connection is an exception.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from pacsref.admin.messages import (
    MAX_RESPONSE_LENGTH,
    NOTIFICATIONS,
    MessageError,
    ServiceMessage,
    is_notification,
)

__all__ = ["AdminClient", "AdminClientProtocol", "AdminConnectionError", "AdminTimeoutError"]


class AdminConnectionError(ConnectionError):
    """The administrative connection closed or failed before the answer came."""


class AdminTimeoutError(AdminConnectionError, TimeoutError):
    """No answer within the client's timeout.

    Also a :class:`TimeoutError`, so that a caller polling for notifications with a short
    timeout can tell "nothing yet" from "the connection is gone".
    """


def _request(message: str, data: tuple[Any, ...]) -> bytes:
    return ServiceMessage(message, data=list(data)).to_line() + b"\n"


def _too_long(limit: int) -> str:
    return f"the server sent a line longer than {limit} bytes (the admin protocol's limit)"


class _LineTooLong(Exception):
    pass


class _Lines:
    """Cuts the server's byte stream into lines, in time linear in their length.

    A response may be tens of MB (GetClients of a busy server); joining the chunks into one
    ``bytes`` and searching it whole at every chunk, as ``LineReceiver`` does, is quadratic
    there (45 s for 60 MB). A line longer than ``limit`` raises :class:`_LineTooLong`: a
    client must not buffer without bound whatever is sent to it.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._data = bytearray()
        self._searched = 0  # no newline before this offset

    def feed(self, data: bytes) -> None:
        self._data += data

    def next_line(self) -> bytes | None:
        """The next complete line without its newline, or None until more data comes."""
        end = self._data.find(b"\n", self._searched)
        if end < 0:
            self._searched = len(self._data)
            if self._searched > self.limit:
                raise _LineTooLong
            return None
        if end > self.limit:
            raise _LineTooLong
        line = bytes(self._data[:end])
        del self._data[: end + 1]  # bytearray deletes from the front without copying the rest
        self._searched = 0
        return line


class AdminClient:
    """A blocking connection to one server's administrative socket.

    Args:
        path: the socket path (see :func:`pacsref.admin.service.admin_socket_path`).
        timeout: seconds any one read or write may wait (None: forever).
        sock: an already connected socket instead of ``path`` (tests, socketpair).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        timeout: float | None = 30.0,
        sock: socket.socket | None = None,
    ) -> None:
        if sock is None:
            if path is None:
                raise ValueError("AdminClient needs a path or a socket")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(os.fspath(Path(path)))
            except OSError as exc:
                sock.close()
                raise AdminConnectionError(f"cannot connect to {path}: {exc}") from None
        else:
            sock.settimeout(timeout)
        self._path = None if path is None else os.fspath(path)
        self._sock = sock
        self._lines = _Lines(MAX_RESPONSE_LENGTH)
        self._pending: deque[ServiceMessage] = deque()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _where(self) -> str:
        """The server socket, for error messages (looked up late: ``sock=`` may connect after)."""
        if self._path is not None:
            return f"admin socket {self._path}"
        try:
            peer = self._sock.getpeername()
        except OSError:
            peer = ""
        return f"admin socket {peer}" if peer else "the admin socket"

    def _failed(self, doing: str, exc: OSError) -> AdminConnectionError:
        if isinstance(exc, AdminConnectionError):
            return exc
        if isinstance(exc, TimeoutError):
            timeout = self._sock.gettimeout()
            within = f" within {timeout:g} s" if timeout is not None else ""
            return AdminTimeoutError(f"{self._where()}: no answer{within} while {doing}")
        why = exc.strerror or str(exc) or type(exc).__name__
        return AdminConnectionError(f"{self._where()}: {doing} failed: {why}")

    def _read_message(self, doing: str = "reading") -> ServiceMessage:
        while True:
            try:
                line = self._lines.next_line()
            except _LineTooLong:
                # Nothing after the line can be framed: the connection is done with, as the
                # Twisted client's is.
                where = self._where()
                self.close()
                raise AdminConnectionError(f"{where}: {_too_long(self._lines.limit)}") from None
            if line is not None:
                try:
                    return ServiceMessage.from_json(line)
                except MessageError as exc:
                    where = self._where()
                    self.close()
                    raise AdminConnectionError(
                        f"{where}: the server sent a line that is not an admin message ({exc}); "
                        "admin connection closed"
                    ) from None
            try:
                chunk = self._sock.recv(1024 * 1024)
            except OSError as exc:
                raise self._failed(doing, exc) from exc
            if not chunk:
                raise AdminConnectionError(
                    f"{self._where()}: the server closed the admin connection"
                )
            self._lines.feed(chunk)

    def call(self, message: str, *data: Any) -> ServiceMessage:
        """Send request ``message`` with ``data`` and return its response.

        Notifications that arrive first are kept for :meth:`notifications`. Any socket
        failure, timeouts included, is an :class:`AdminConnectionError` naming the socket
        and what went wrong (:class:`AdminTimeoutError` for a timeout).
        """
        try:
            self._sock.sendall(_request(message, data))
        except OSError as exc:
            raise self._failed(f"sending {message}", exc) from exc
        while True:
            reply = self._read_message(f"waiting for the response to {message}")
            if is_notification(reply):
                self._pending.append(reply)
                continue
            return reply

    def notifications(self) -> Iterator[ServiceMessage]:
        """Every notification, kept ones first, then as they arrive; ends when the server closes.

        A timeout raises :class:`AdminTimeoutError` (a ``TimeoutError``) rather than ending
        the iteration, so a caller polling with a short timeout can go on.
        """
        while True:
            while self._pending:
                yield self._pending.popleft()
            try:
                note = self._read_message("waiting for notifications")
            except AdminTimeoutError:
                raise  # nothing came within the timeout: the connection is still there
            except AdminConnectionError:
                return
            if note.message in NOTIFICATIONS:
                yield note


class AdminClientProtocol(LineReceiver):
    """The Twisted flavour: ``call`` returns a Deferred of the response ServiceMessage.

    Every Deferred fires: with the response, or with :class:`AdminConnectionError` when the
    connection is lost (a call after that fails at once) or the server sends a line over
    :data:`~pacsref.admin.messages.MAX_RESPONSE_LENGTH` (the connection is then closed).

    Args:
        on_notification: called with each notification ServiceMessage (the
            subscription; set or change it any time with :meth:`subscribe`).
    """

    delimiter = b"\n"
    MAX_LENGTH = MAX_RESPONSE_LENGTH

    def __init__(self, on_notification: Callable[[ServiceMessage], object] | None = None) -> None:
        self._waiting: deque[Deferred[ServiceMessage]] = deque()
        self._subscribers: list[Callable[[ServiceMessage], object]] = []
        self._lines = _Lines(MAX_RESPONSE_LENGTH)
        self._gone = ""  # why the connection ended, once it has
        if on_notification is not None:
            self._subscribers.append(on_notification)

    def subscribe(self, callback: Callable[[ServiceMessage], object]) -> Callable[[], None]:
        """Call ``callback(message)`` for every notification; returns the unsubscribe call."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def call(self, message: str, *data: Any) -> Deferred[ServiceMessage]:
        """Send a request; the Deferred fires with its response (responses come in order)."""
        d: Deferred[ServiceMessage] = Deferred()
        if self._gone:
            d.errback(AdminConnectionError(self._gone))
            return d
        if self.transport is None:
            d.errback(AdminConnectionError("not connected"))
            return d
        self._waiting.append(d)
        self.transport.write(_request(message, data))
        return d

    def dataReceived(self, data: bytes) -> None:
        """Frame lines with :class:`_Lines` (linear in a long response's length)."""
        self._lines.feed(data)
        while not self._gone:
            try:
                line = self._lines.next_line()
            except _LineTooLong:
                self._end(_too_long(self._lines.limit))
                if self.transport is not None:
                    self.transport.loseConnection()
                return
            if line is None:
                return
            self.lineReceived(line)

    def lineReceived(self, line: bytes) -> None:
        message = ServiceMessage.from_json(line)
        if is_notification(message):
            for callback in list(self._subscribers):
                callback(message)
        elif self._waiting:
            self._waiting.popleft().callback(message)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._end("the admin connection was lost")

    def _end(self, why: str) -> None:
        """Fail every call waiting, and every later one, with ``why`` (the first reason kept)."""
        if not self._gone:
            self._gone = why
        waiting, self._waiting = self._waiting, deque()
        for d in waiting:
            d.errback(AdminConnectionError(self._gone))
