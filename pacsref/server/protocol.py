"""The Twisted ``Protocol``: a thin adapter between a socket and the sans-IO core.

It feeds bytes into :class:`~pacsref.ul.machine.UpperLayer`, performs the
effects the machine returns (write, close, ARTIM), hands indications to the
:class:`~pacsref.server.session.AssociationSession`, and owns the timers,
with time from an injected ``IReactorTime`` so tests drive it with a
``Clock``. Nothing raised below it may escape into the reactor: a bug is
logged and the association aborted.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from pacsref.server.dispatch import Dispatcher
from pacsref.server.session import AssociationSession
from pacsref.settings import ServerSettings
from pacsref.ul.constants import Role
from pacsref.ul.effects import CloseTransport, Indicate, SendPDU, StartARTIM, StopARTIM
from pacsref.ul.errors import LocalProtocolError
from pacsref.ul.events import Abort
from pacsref.ul.machine import UpperLayer
from pacsref.ul.states import State

log = Logger(namespace="pacsref.connection")

#: States in which the peer owes us data and an idle peer is timed out.
_ASSOCIATED = frozenset({State.Sta6, State.Sta7, State.Sta8, State.Sta9, State.Sta10})


def apply_socket_options(transport: Any, settings: ServerSettings) -> None:
    """No Delay, Receive Buffer and Send Buffer from settings, on the accepted socket."""
    get_handle = getattr(transport, "getHandle", None)
    handle = get_handle() if get_handle is not None else None
    if not hasattr(handle, "setsockopt"):  # in-memory transports have no socket
        return
    handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(settings.no_delay))
    handle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, settings.receive_buffer)
    handle.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings.send_buffer)


class DicomServerProtocol(Protocol):
    """One accepted DICOM connection (association-acceptor)."""

    def __init__(self, factory: Any, clock: IReactorTime) -> None:
        self.factory = factory
        self.clock = clock
        self.ul = UpperLayer(Role.ACCEPTOR)
        self.session: AssociationSession | None = None
        self._artim: IDelayedCall | None = None
        self._idle: IDelayedCall | None = None

    # -- Twisted callbacks ----------------------------------------------------------------

    def connectionMade(self) -> None:
        server = self.factory.server
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        try:
            apply_socket_options(self.transport, server.settings)
        except OSError as exc:
            log.warn("could not set socket options: {error}", error=exc)
        dispatcher: Dispatcher = self.factory.dispatcher
        self.session = AssociationSession(
            server, dispatcher, (peer.host, peer.port), self._send_primitive
        )
        self.factory.connection_made(self)
        log.info("connection from {host}:{port}", host=peer.host, port=peer.port)
        self._perform(self.ul.connection_made())

    def dataReceived(self, data: bytes) -> None:
        self._touch()
        try:
            self._perform(self.ul.receive_data(data))
        except Exception:
            self._internal_error(Failure())

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        for timer in (self._artim, self._idle):
            if timer is not None and timer.active():
                timer.cancel()
        self._artim = self._idle = None
        try:
            self._perform(self.ul.connection_lost())
        except Exception:
            log.failure("error while closing the connection")
        if self.session is not None:
            self.session._end("connection closed")
        self.factory.connection_lost(self)

    # -- effects ---------------------------------------------------------------------------

    def _send_primitive(self, primitive: object) -> None:
        try:
            effects = self.ul.send(primitive)
        except LocalProtocolError as exc:
            log.warn("dropped {primitive}: {error}", primitive=type(primitive).__name__, error=exc)
            return
        self._perform(effects)

    def _perform(self, effects: list[Any]) -> None:
        for effect in effects:
            kind = type(effect)
            if kind is SendPDU:
                self.transport.write(effect.data)  # type: ignore[union-attr]
            elif kind is Indicate:
                if self.session is not None:
                    self.session.indicate(effect.primitive)
            elif kind is StartARTIM:
                self._start_artim()
            elif kind is StopARTIM:
                if self._artim is not None and self._artim.active():
                    self._artim.cancel()
                self._artim = None
            elif kind is CloseTransport:
                self.transport.loseConnection()  # type: ignore[union-attr]
        if self.ul.state in _ASSOCIATED and self._idle is None:
            self._touch()

    def _start_artim(self) -> None:
        if self._artim is not None and self._artim.active():
            self._artim.cancel()
        timeout = self.factory.server.settings.artim_timeout
        self._artim = self.clock.callLater(timeout, self._artim_expired)

    def _artim_expired(self) -> None:
        self._artim = None
        log.info("ARTIM expired in {state}: closing", state=self.ul.state.name)
        try:
            self._perform(self.ul.artim_expired())
        except Exception:
            self._internal_error(Failure())

    # -- client (idle) timeout ----------------------------------------------------------------

    def _touch(self) -> None:
        """Restart the client timeout: an associated peer must send something in time."""
        timeout = self.factory.server.settings.client_timeout
        if not timeout or self.ul.state not in _ASSOCIATED:
            return
        if self._idle is not None and self._idle.active():
            self._idle.reset(timeout)
        else:
            self._idle = self.clock.callLater(timeout, self._client_timed_out)

    def _client_timed_out(self) -> None:
        self._idle = None
        if self.ul.state not in _ASSOCIATED:
            return
        log.warn(
            "client timeout: no data for {timeout} s, aborting",
            timeout=self.factory.server.settings.client_timeout,
        )
        if self.session is not None:
            self.session._end("client timeout")
        self._send_primitive(Abort(detail="client timeout"))
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _internal_error(self, failure: Failure) -> None:
        """A bug below us: log it, abort the association, keep the reactor running."""
        log.failure("internal error; aborting the association", failure)
        with contextlib.suppress(Exception):  # already failing; closing is what matters
            self._perform(self.ul.send(Abort(detail="internal error")))
        self.transport.loseConnection()  # type: ignore[union-attr]
