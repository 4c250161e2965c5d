"""The Twisted ``Protocol``: a thin adapter between a socket and the sans-IO core.

It feeds bytes into :class:`~pacsref.ul.machine.UpperLayer`, performs the
effects the machine returns (write, close, ARTIM), hands indications to the
:class:`~pacsref.server.session.AssociationSession`, and owns the timers,
with time from an injected ``IReactorTime`` so tests drive it with a
``Clock``. It registers the connection with the client registry from accept
to close, and applies the socket options of the settings to the accepted
socket. Nothing raised below it may escape into the reactor: a bug is
logged and the association aborted.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IPushProducer,
    IReactorTime,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pacsref.security import (
    handshake_failure,
    is_tls,
    peer_identity,
    tls_session,
    underlying_socket,
)
from pacsref.server.clients import ClientInfo
from pacsref.server.dispatch import Dispatcher
from pacsref.server.notifications import ClientTimedOut
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
    """No Delay, Receive Buffer and Send Buffer from settings, on the accepted socket.

    Set per accepted socket rather than on the listening one: Linux does
    copy SO_RCVBUF/SO_SNDBUF from a listener, but not every platform does,
    and TCP_NODELAY is per connection anyway. Linux reports back twice the
    buffer sizes asked for (its bookkeeping overhead, ``man 7 socket``). A size
    of 0 leaves that buffer to the kernel, whose autotuning a setsockopt would
    switch off (``man 7 tcp``, tcp_rmem).
    """
    # Under TLS the transport is Twisted's TLS wrapper, whose handle is the OpenSSL
    # connection; the socket is found below it.
    handle = underlying_socket(transport)
    if handle is None:  # in-memory transports have no socket
        return
    handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(settings.no_delay))
    if settings.receive_buffer:
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, settings.receive_buffer)
    if settings.send_buffer:
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings.send_buffer)


@implementer(IPushProducer)
class ReadThrottle:
    """Stops reading a peer's requests while our answers to it are not being taken.

    Registered as the streaming producer of the connection's transport, which
    pauses it when its write buffer grows past its limit and resumes it when the
    buffer drains. A peer that floods requests and never reads the responses
    therefore stops being read (memory stays bounded) and falls silent to us, so
    the client timeout ends it.
    """

    def __init__(self, transport: Any) -> None:
        self.transport = transport

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        """The transport is going away; nothing to stop."""


def flush_now(transport: Any) -> None:
    """Send what was written now rather than on the reactor's next iteration.

    Twisted's TCP transport only buffers in ``write`` and sends when epoll next
    reports the socket writable: one more reactor iteration per request/response
    round trip, about 12% of a C-ECHO's time (bench/echo_rate.py). For a plain TCP
    transport that is not closing we send at once. A send error returned here is
    left for the reactor: the socket is still registered for writing, so its next
    ``doWrite`` finds the same error and closes the connection as usual. A closing
    transport is never flushed here, because its ``doWrite`` would finish the close
    and expect the reactor to act on the return value.
    """
    if getattr(transport, "disconnecting", True) or getattr(transport, "TLS", True):
        return
    if getattr(transport, "_tempDataLen", 0) or getattr(transport, "dataBuffer", b""):
        transport.doWrite()


@implementer(IHandshakeListener)
class DicomServerProtocol(Protocol):
    """One accepted DICOM connection (association-acceptor).

    Under TLS, ``connectionMade`` runs before the handshake, so ARTIM (started
    there) also bounds a peer that never completes it; ``handshakeCompleted``
    logs the negotiated version, suite and peer certificate, and a handshake
    that fails ends in ``connectionLost`` with the reason logged.
    """

    def __init__(self, factory: Any, clock: IReactorTime) -> None:
        self.factory = factory
        self.clock = clock
        self.ul = UpperLayer(Role.ACCEPTOR)
        self.session: AssociationSession | None = None
        self.client: ClientInfo | None = None
        self._artim: IDelayedCall | None = None
        self._idle: IDelayedCall | None = None
        self._closer: IDelayedCall | None = None
        #: The read throttle is registered as the transport's producer (until the close).
        self._throttled = False
        self._tls_pending = False  # TLS connection whose handshake has not completed
        self._tls_timeout = ""  # set when ARTIM ends a TLS connection still in its handshake

    # -- Twisted callbacks ----------------------------------------------------------------

    def connectionMade(self) -> None:
        server = self.factory.server
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        try:
            apply_socket_options(self.transport, server.settings)
        except OSError as exc:
            log.warn("could not set socket options: {error}", error=exc)
        control = self.factory.control
        self.client = client = control.clients.add(
            self, peer.host, peer.port, self.clock.seconds(), server.settings.max_clients
        )
        dispatcher: Dispatcher = self.factory.dispatcher
        self._tls_pending = secure = is_tls(self.transport)
        self.session = AssociationSession(
            server,
            dispatcher,
            (peer.host, peer.port),
            self._send_primitive,
            secure,
            control=control,
            client=client,
            flush=lambda: flush_now(self.transport),
        )
        self.factory.connection_made(self)
        register = getattr(self.transport, "registerProducer", None)
        if register is not None:
            register(ReadThrottle(self.transport), True)
            self._throttled = True
        log.info(
            "connection {client} from {host}:{port}{over}",
            kind="connection",
            client=client.id,
            host=client.ip,
            port=peer.port,
            admitted=client.admitted,
            over="" if client.admitted else " (Max Clients reached: its request will be refused)",
        )
        self._perform(self.ul.connection_made())

    def dataReceived(self, data: bytes) -> None:
        """Act on the PDUs of ``data`` one at a time, each after the session's answer to
        the one before it.

        A read may hold several PDUs (an A-ASSOCIATE-RQ and the first P-DATA-TF, a C-STORE
        and an A-RELEASE-RQ): acted on all at once, the later ones would change the
        association's state before the session answered the earlier ones, and the answer
        would then be refused by the upper layer. So what the server does does not depend
        on how TCP split the peer's bytes.
        """
        self._touch()
        ul = self.ul
        try:
            ul.feed(data)
            while (effects := ul.next_pdu_effects()) is not None:
                self._perform(effects)
        except Exception:
            self._internal_error(Failure())
        flush_now(self.transport)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        for timer in (self._artim, self._idle, self._closer):
            if timer is not None and timer.active():
                timer.cancel()
        self._artim = self._idle = self._closer = None
        try:
            self._perform(self.ul.connection_lost())
        except Exception:
            log.failure("error while closing the connection")
        why = "connection closed"
        tls_failure = None
        if self._tls_pending:
            tls_failure = self._tls_timeout or handshake_failure(self.transport, reason)
            tls_failure = f"TLS handshake failed: {tls_failure}"
            self._log_tls_refused(tls_failure)
        if self.session is not None:
            self.session.end(tls_failure or why)
            why = tls_failure or self.session.end_reason or why
        self.factory.connection_lost(self)
        if self.client is not None:
            log.info(
                "connection {client} from {host}:{port} closed: {why}",
                kind="connection.closed",
                client=self.client.id,
                host=self.client.ip,
                port=self.client.port,
                why=why,
            )
            self.factory.control.clients.remove(self.client, why)

    def handshakeCompleted(self) -> None:
        """TLS is up: log what was negotiated and keep the verified peer identity.

        OpenSSL verified the peer certificate, but ``cryptography``, which reads
        its identity for the binding table, parses more strictly and may fail
        (a byte 0xE9 in a SAN dNSName, say). A peer whose identity cannot be
        read cannot be policed, so it is refused like any other bad certificate:
        one ``tls.refused`` line and the connection cut, before any of its data
        is read. Raised here, the error would escape into the reactor (a
        traceback, and a close with no reason).
        """
        self._tls_pending = False
        try:
            identity = peer_identity(self.transport)
        except ValueError as exc:
            self._refuse_tls(f"TLS handshake failed: peer certificate refused: {exc}")
            return
        if self.session is not None:
            self.session.peer_certificate = identity
        log.info(
            "connection {client}: TLS established ({tls_version}, {cipher}), "
            "peer certificate {peer_certificate}",
            kind="tls.established",
            client=self.client.id if self.client else 0,
            **tls_session(self.transport),
        )

    def _refuse_tls(self, why: str) -> None:
        """Log ``why`` as a ``tls.refused`` line (as ``connectionLost`` does) and cut.

        The session ends first with ``why``, so the ``connection.closed`` line
        gives it too. Cut, not closed: a close would still hand the peer's
        A-ASSOCIATE-RQ (already sent, under TLS 1.3) to the Upper Layer.
        """
        self._log_tls_refused(why)
        if self.session is not None:
            self.session.end(why)
        self.cut()

    def _log_tls_refused(self, why: str) -> None:
        log.warn(
            "connection {client} from {host}:{port}: {why}",
            kind="tls.refused",
            client=self.client.id if self.client else 0,
            host=self.client.ip if self.client else "",
            port=self.client.port if self.client else 0,
            why=why,
        )

    def disconnect(self, reason: str) -> None:
        """End this connection: A-ABORT when an association exists, then close.

        For the administrator's DisconnectClient and the client timeout. The
        A-ABORT is sent only where PS3.8 allows one (Sta3 onwards); before an
        A-ASSOCIATE-RQ there is nothing to abort and the connection is closed.
        """
        if self.session is not None:
            self.session.end(reason)
        try:
            effects = self.ul.send(Abort(detail=reason))
        except LocalProtocolError:
            effects = []  # no association to abort (Sta2, or already ending)
        self._perform(effects)
        self.close_within_artim()

    def close_within_artim(self) -> None:
        """Close now, and cut the connection if it is still open when ARTIM expires.

        ``loseConnection`` waits until everything written has been sent; a peer that
        has stopped reading never lets that happen, so the close is bounded like the
        rest of an association's end (PS3.8 Sta13 is bounded by ARTIM).
        """
        self.transport.loseConnection()  # type: ignore[union-attr]
        # The read throttle (a streaming producer) is no longer wanted, and Twisted's TLS
        # transport sends its close_notify and closes only once no producer is registered:
        # left registered, every TLS close waited for the ARTIM cut below.
        if self._throttled:
            self._throttled = False
            self.transport.unregisterProducer()  # type: ignore[union-attr]
        if self._closer is None:
            timeout = self.factory.server.settings.artim_timeout
            self._closer = self.clock.callLater(timeout, self._force_close)

    def _force_close(self) -> None:
        self._closer = None
        log.warn("peer did not take our last bytes within ARTIM; cutting the connection")
        self.cut()

    def cut(self) -> None:
        """Drop the connection now, with whatever the peer has not taken yet."""
        if self._closer is not None and self._closer.active():
            self._closer.cancel()
        self._closer = None
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()

    # -- effects ---------------------------------------------------------------------------

    def _send_primitive(self, primitive: object) -> bool:
        """Hand ``primitive`` to the upper layer; False if it refused it (the association
        ended under the session, which must then not report what it meant to send)."""
        try:
            effects = self.ul.send(primitive)
        except LocalProtocolError as exc:
            log.warn("dropped {primitive}: {error}", primitive=type(primitive).__name__, error=exc)
            return False
        self._perform(effects)
        return True

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
                # Bounded like every close: a peer that stopped reading would otherwise keep
                # the connection (and its Max Clients place) for as long as it likes.
                self.close_within_artim()
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
        if self._tls_pending:
            timeout = self.factory.server.settings.artim_timeout
            self._tls_timeout = f"not completed within the ARTIM timeout ({timeout:g} s)"
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
        timeout = self.factory.server.settings.client_timeout
        client = self.client
        log.warn(
            "client timeout: {calling} ({host}) sent nothing for {timeout} s; aborting",
            kind="client.timeout",
            client=client.id if client else 0,
            calling=client.ae_title if client else "",
            host=client.ip if client else "",
            timeout=timeout,
        )
        if client is not None:
            self.factory.control.notifier.publish(ClientTimedOut(client, timeout))
        self.disconnect("client timeout")

    def _internal_error(self, failure: Failure) -> None:
        """A bug below us: log it, abort the association, keep the reactor running."""
        log.failure("internal error; aborting the association", failure)
        with contextlib.suppress(Exception):  # already failing; closing is what matters
            self._perform(self.ul.send(Abort(detail="internal error")))
        self.close_within_artim()
