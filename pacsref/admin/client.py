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
    MAX_LINE_LENGTH,
    NOTIFICATIONS,
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
        self._buffer = b""
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
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_LINE_LENGTH:
                raise AdminConnectionError(f"{self._where()}: server sent a line longer than 1 MiB")
            try:
                chunk = self._sock.recv(65536)
            except OSError as exc:
                raise self._failed(doing, exc) from exc
            if not chunk:
                raise AdminConnectionError(
                    f"{self._where()}: the server closed the admin connection"
                )
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return ServiceMessage.from_json(line)

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

    Args:
        on_notification: called with each notification ServiceMessage (the
            subscription; set or change it any time with :meth:`subscribe`).
    """

    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE_LENGTH

    def __init__(self, on_notification: Callable[[ServiceMessage], object] | None = None) -> None:
        self._waiting: deque[Deferred[ServiceMessage]] = deque()
        self._subscribers: list[Callable[[ServiceMessage], object]] = []
        if on_notification is not None:
            self._subscribers.append(on_notification)

    def subscribe(self, callback: Callable[[ServiceMessage], object]) -> Callable[[], None]:
        """Call ``callback(message)`` for every notification; returns the unsubscribe call."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def call(self, message: str, *data: Any) -> Deferred[ServiceMessage]:
        """Send a request; the Deferred fires with its response (responses come in order)."""
        d: Deferred[ServiceMessage] = Deferred()
        if self.transport is None:
            d.errback(AdminConnectionError("not connected"))
            return d
        self._waiting.append(d)
        self.transport.write(_request(message, data))
        return d

    def lineReceived(self, line: bytes) -> None:
        message = ServiceMessage.from_json(line)
        if is_notification(message):
            for callback in list(self._subscribers):
                callback(message)
        elif self._waiting:
            self._waiting.popleft().callback(message)

    def connectionLost(self, reason: Failure | None = None) -> None:
        waiting, self._waiting = self._waiting, deque()
        for d in waiting:
            d.errback(AdminConnectionError("the admin connection was lost"))
