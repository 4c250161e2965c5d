"""The default ``IDicomRequest``: the server acting as an SCU.

Built on the same sans-IO upper layer and DIMSE code as the acceptor, in the
requestor role (PS3.8 Sta4/Sta5/Sta7...). Add-ins use it for C-MOVE
sub-operations and storage commitment later; C-ECHO is what it offers now.
Connection attempts are bounded by the Reconnect timeout setting, and every
exchange by the timeout given or that same setting. A peer whose AE table entry
says ``secure`` is reached over TLS with the security add-in's certificate,
and its certificate must name the entry's host (service_identity, see
:mod:`pacsref.security`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IHandshakeListener
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pacsref.addin import AeInfo, AeTitleError, IAeTitles, IDicomRequest
from pacsref.dimse import (
    CommandField,
    DimseMessage,
    MessageAssembler,
    encode_command,
    fragment_message,
)
from pacsref.security import SecureTransport, TLSConfigurationError, handshake_failure, is_tls
from pacsref.settings import ServerSettings
from pacsref.ul.constants import ContextResult, Role
from pacsref.ul.effects import CloseTransport, Indicate, SendPDU, StartARTIM, StopARTIM
from pacsref.ul.events import (
    Abort,
    AssociateAccept,
    AssociateReject,
    AssociateRequest,
    DataTransfer,
    PresentationContextProposal,
    ReleaseRequest,
    ReleaseResponse,
    TransportClosed,
    UserInformation,
)
from pacsref.ul.machine import UpperLayer

log = Logger(namespace="pacsref.requestor")

VERIFICATION = "1.2.840.10008.1.1"
#: The Message ID of the one C-ECHO-RQ an association of ours carries.
_ECHO_MESSAGE_ID = 1
_TRANSFER_SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")


class AssociationRejected(Exception):
    """The peer answered A-ASSOCIATE-RJ; the message gives the PS3.8 words."""


class AssociationFailed(Exception):
    """The association ended (abort, closed connection) before the exchange completed."""


class ReconnectTimeout(AssociationFailed):
    """No TCP connection to the peer within the Reconnect timeout setting."""


class ExchangeTimeout(AssociationFailed):
    """The whole exchange (connect, associate, request, release) took longer than allowed."""


class UnexpectedResponse(AssociationFailed):
    """The peer answered the C-ECHO-RQ with something else; we aborted the association.

    Anything but one C-ECHO-RSP to our Message ID, carrying a Status (PS3.7 9.3.5.2): a
    status taken from another message would report an echo that never happened.
    """


class TLSUnavailable(AssociationFailed):
    """The peer must be reached over TLS, and this server cannot (no usable security add-in)."""


@implementer(IHandshakeListener)
class _EchoRequestor(Protocol):
    """One association that performs a single C-ECHO and releases."""

    def __init__(
        self, request: AssociateRequest, reactor: Any, artim: float, spool_dir: Path | None = None
    ) -> None:
        self.request = request
        self.reactor = reactor
        self.artim = artim
        #: where a data set the peer sends (none is expected with a C-ECHO-RSP) is spooled
        self.spool_dir = spool_dir or Path(tempfile.gettempdir())
        self.ul = UpperLayer(Role.REQUESTOR)
        #: Cancelling it (e.g. its timeout) also stops the connection attempt or aborts
        #: the connection, so nothing outlives the caller's interest.
        self.done: Deferred[int] = Deferred(lambda _: self._give_up())
        self.connecting: Deferred[Any] | None = None
        self.status: int | None = None
        self._assembler: MessageAssembler | None = None
        self._timer: IDelayedCall | None = None
        self._tls_pending = False

    def handshakeCompleted(self) -> None:
        self._tls_pending = False

    def connectionMade(self) -> None:
        # Under TLS this runs before the handshake; the request waits in the TLS layer.
        self._tls_pending = is_tls(self.transport)
        self._perform(self.ul.send(self.request))
        self._perform(self.ul.connection_made())

    def dataReceived(self, data: bytes) -> None:
        ul = self.ul
        try:
            ul.feed(data)  # one PDU at a time, as the server's protocol does
            while (effects := ul.next_pdu_effects()) is not None:
                self._perform(effects)
        except Exception:
            self._finish(Failure())
            self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._perform(self.ul.connection_lost())
        if self._assembler is not None:
            self._assembler.abort()
        why = "connection closed before the C-ECHO completed"
        if self._tls_pending:
            why = f"TLS handshake failed: {handshake_failure(self.transport, reason)}"
        self._finish(Failure(AssociationFailed(why)))

    def _give_up(self) -> None:
        if self.connecting is not None:
            # A no-op once connected; while connecting it is "called" but waiting on the
            # endpoint's Deferred, and cancel() forwards to that.
            self.connecting.cancel()
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _finish(self, result: int | Failure) -> None:
        if not self.done.called:
            self.done.callback(result) if isinstance(result, int) else self.done.errback(result)

    def _perform(self, effects: list[Any]) -> None:
        for effect in effects:
            kind = type(effect)
            if kind is SendPDU:
                self.transport.write(effect.data)  # type: ignore[union-attr]
            elif kind is Indicate:
                self._indicate(effect.primitive)
            elif kind is StartARTIM:
                if self._timer is not None and self._timer.active():
                    self._timer.cancel()
                self._timer = self.reactor.callLater(self.artim, self._artim_expired)
            elif kind is StopARTIM and self._timer is not None and self._timer.active():
                self._timer.cancel()
            elif kind is CloseTransport:
                self.transport.loseConnection()  # type: ignore[union-attr]

    def _artim_expired(self) -> None:
        self._perform(self.ul.artim_expired())

    def _indicate(self, primitive: object) -> None:
        if isinstance(primitive, AssociateAccept):
            self._send_echo(primitive)
        elif isinstance(primitive, DataTransfer):
            assert self._assembler is not None
            for pdv in primitive.values:
                message = self._assembler.feed(pdv)
                if message is None:
                    continue
                message.discard()
                problem = self._not_our_response(message)
                if problem is not None:
                    self._fail_unexpected(problem)
                    return
                self.status = message.status
                self._perform(self.ul.send(ReleaseRequest()))
        elif isinstance(primitive, ReleaseResponse):
            if self.status is not None:
                self._finish(self.status)
        elif isinstance(primitive, AssociateReject):
            self._finish(Failure(AssociationRejected(primitive.describe())))
        elif isinstance(primitive, Abort):
            self._finish(
                Failure(AssociationFailed(f"association aborted ({primitive.source.name})"))
            )
        elif isinstance(primitive, TransportClosed) and self.status is not None:
            self._finish(self.status)

    def _not_our_response(self, message: DimseMessage) -> str | None:
        """Why ``message`` is not the C-ECHO-RSP to our request, or None if it is."""
        command_field = message.command_field
        field = f"0x{command_field:04X}" if command_field is not None else "absent"
        responding_to = message.message_id_being_responded_to
        arrived = (
            f"{message.name} (Command Field {field}) responding to message {responding_to}"
            if responding_to is not None
            else f"{message.name} (Command Field {field}, Message ID {message.message_id})"
        )
        if self.status is not None:
            return f"{arrived} after the C-ECHO-RSP"
        if command_field != CommandField.C_ECHO_RSP or responding_to != _ECHO_MESSAGE_ID:
            return f"{arrived} instead of a C-ECHO-RSP to message {_ECHO_MESSAGE_ID}"
        if message.status is None:
            return f"{arrived} without a Status"
        return None

    def _fail_unexpected(self, problem: str) -> None:
        """Fail the echo with ``problem`` and abort: the peer does not speak C-ECHO with us."""
        self._finish(Failure(UnexpectedResponse(f"the peer sent {problem}")))
        self._perform(self.ul.send(Abort()))
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _send_echo(self, ac: AssociateAccept) -> None:
        accepted = {
            pc.context_id: pc.transfer_syntax
            for pc in ac.presentation_contexts
            if pc.result is ContextResult.ACCEPTANCE
        }
        if 1 not in accepted:
            self._finish(Failure(AssociationFailed("the peer refused the Verification context")))
            self._perform(self.ul.send(Abort()))
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        self._assembler = MessageAssembler(self.spool_dir, accepted)
        command = encode_command(
            {0x0002: VERIFICATION, 0x0100: 0x0030, 0x0110: _ECHO_MESSAGE_ID, 0x0800: 0x0101}
        )
        for pdv in fragment_message(1, command, None, self.ul.peer_max_pdu):
            self._perform(self.ul.send(DataTransfer((pdv,))))


@implementer(IDicomRequest)
class DicomRequestor:
    """Default :class:`~pacsref.addin.IDicomRequest` provider.

    Args:
        reactor: provides TCP connections and time.
        settings: our AE title, implementation identity, max PDU and timeouts.
    """

    def __init__(self, reactor: Any, settings: ServerSettings) -> None:
        self.reactor = reactor
        self.settings = settings
        self.registry: Any = None
        #: TLS for peers marked ``secure``; set from the security add-in at start-up.
        self.security: SecureTransport | None = None
        #: The server's spool directory, set at start-up (the system's temporary directory
        #: for a requestor without a server, such as ``pacsref echo``).
        self.spool_dir: Path | None = None

    def bind(self, registry: Any) -> None:
        """Give the requestor the registry in which it finds ``IAeTitles``."""
        self.registry = registry

    def _resolve(self, ae: str | AeInfo) -> AeInfo:
        if isinstance(ae, AeInfo):
            return ae
        titles = self.registry.get(IAeTitles) if self.registry is not None else None
        info = titles.get(ae) if titles is not None else None
        if info is None:
            raise AeTitleError(f"AE title {ae!r} is not in the AE title table")
        return info

    def echo(self, ae: str | AeInfo, timeout: float | None = None) -> Deferred[int]:
        """C-ECHO ``ae``; fires with the response status (see IDicomRequest)."""
        try:
            peer = self._resolve(ae)
        except AeTitleError:
            return fail()
        settings = self.settings
        request = AssociateRequest(
            called_ae_title=peer.ae_title,
            calling_ae_title=settings.ae_title,
            presentation_contexts=(
                PresentationContextProposal(1, VERIFICATION, _TRANSFER_SYNTAXES),
            ),
            user_information=UserInformation(
                max_pdu_length=settings.max_pdu_length,
                implementation_class_uid=settings.implementation_class_uid,
                implementation_version_name=settings.implementation_version_name,
            ),
        )
        protocol = _EchoRequestor(request, self.reactor, settings.artim_timeout, self.spool_dir)
        return self._run(protocol, peer, timeout)

    def _run(self, protocol: _EchoRequestor, peer: AeInfo, timeout: float | None) -> Deferred[int]:
        """Connect (bounded by the Reconnect timeout), then run ``protocol`` (bounded by
        ``timeout`` or that same setting); every failure names the peer and the limit."""
        settings = self.settings
        reconnect = settings.reconnect_timeout
        where = f"{peer.ae_title} at {peer.host}:{peer.port}"
        tls = None
        if getattr(peer, "secure", False):
            if self.security is None:
                return fail(
                    TLSUnavailable(
                        f"{where} is marked secure, but no security add-in provides "
                        "ISecurity (addin-options/security.toml)"
                    )
                )
            try:
                tls = self.security.client_options(peer.host)
            except TLSConfigurationError as exc:
                return fail(TLSUnavailable(f"cannot reach {where} with TLS: {exc}"))
        endpoint: Any = HostnameEndpoint(self.reactor, peer.host, peer.port, timeout=reconnect)
        if tls is not None:
            endpoint = wrapClientTLS(tls, endpoint)
        connected = connectProtocol(endpoint, protocol)
        protocol.connecting = connected

        def connect_timed_out(result: object, seconds: float) -> Failure:
            return Failure(
                ReconnectTimeout(
                    f"could not connect to {where} within {seconds:g} s (reconnect timeout)"
                )
            )

        connected.addTimeout(reconnect, self.reactor, onTimeoutCancel=connect_timed_out)
        connected.addErrback(protocol._finish)
        limit = timeout or reconnect

        def exchange_timed_out(result: object, seconds: float) -> object:
            # Called only when the limit expired; what the cancellation produced (a
            # CancelledError, or the connection attempt's own cancellation error) is noise.
            if isinstance(result, Failure):
                return Failure(
                    ExchangeTimeout(f"C-ECHO to {where} did not complete within {seconds:g} s")
                )
            return result

        done = protocol.done
        done.addTimeout(limit, self.reactor, onTimeoutCancel=exchange_timed_out)
        return done
