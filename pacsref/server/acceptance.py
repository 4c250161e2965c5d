"""Answering one A-ASSOCIATE-RQ: acceptance policy, negotiation, association hooks.

:class:`Acceptance` runs the steps in order and ends in exactly one of its two
callbacks, ``accept(result, info)`` or ``refuse(refusal)``:

1. :func:`pacsref.association.policy.decide` with a :class:`PolicyView` built
   from the server's state (the one place the acceptance rules live);
2. the calling AE's place in Max Clients and Multiple Connections is taken;
3. :func:`pacsref.association.negotiate` (presentation contexts, roles, PDU);
4. a User Identity sub-item, if the request has one and IUserIdentityNegotiation add-ins
   are loaded, is verified (:func:`pacsref.server.identity.verify_identity`): refused,
   the request is rejected (1, 2, 1); accepted, ``info.user_verified`` is set and the
   A-ASSOCIATE-AC carries the Server-response when the requestor asked for one; every
   verifier abstaining, it goes on unverified as if none were loaded;
5. the IAssociationHook add-ins (:func:`pacsref.server.hooks.consult_hooks`).
   If steps 4 and 5 took time and the server was paused or began stopping meanwhile,
   the request is refused (2, 3, 1) as it would have been had it arrived then.

Steps 1, 4 and 5 may wait (a host name of an add-in's AE table to resolve on the
thread pool, a blocking verifier or hook); PS3.8 lets the acceptor take its time in Sta3,
and each wait is bounded (ARTIM for DNS, the add-in timeout for hooks). If the
peer goes away meanwhile, :meth:`Acceptance.cancel` drops the pending work and
neither callback is called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from pacsref.addin import AssociationInfo
from pacsref.association import NegotiationResult, negotiate
from pacsref.association.policy import (
    AeEntry,
    PolicyView,
    Refusal,
    Rule,
    closed_refusal,
    decide,
)
from pacsref.server.clients import ClientInfo
from pacsref.server.context import ServerContext
from pacsref.server.control import ServerControl
from pacsref.server.hooks import consult_hooks
from pacsref.server.identity import IdentityVerdict, verify_identity
from pacsref.ul.events import REJECT_USER_IDENTITY, AssociateAccept, AssociateRequest

__all__ = ["Acceptance", "policy_view"]


def policy_view(
    server: ServerContext,
    control: ServerControl,
    client: ClientInfo,
    info: AssociationInfo | None = None,
) -> PolicyView:
    """The policy's snapshot of this server for ``client``'s A-ASSOCIATE-RQ.

    ``info`` tells whether the connection is TLS and with which peer
    certificate, for the certificate-to-AE-title binding.
    """
    titles = server.ae_titles
    table_addresses = getattr(titles, "addresses", None)

    def entry_addresses(entry: AeEntry) -> frozenset[str] | None:
        if callable(table_addresses):  # the default table caches them (FileAeTitles)
            found = table_addresses(entry.ae_title)
            if found is not None:
                return frozenset(found)
        return server.addresses.lookup(entry.host)

    return PolicyView(
        settings=server.settings,
        paused=control.paused,
        stopping=control.stopping,
        associated_count=control.clients.admitted_except(client),
        ae_lookup=titles.get,
        associated_from=control.clients.associated_from,
        entry_addresses=entry_addresses,
        certificate_refusal=_certificate_refusal(server, info),
    )


def _certificate_refusal(
    server: ServerContext, info: AssociationInfo | None
) -> Callable[[str], str | None]:
    """The binding check of the security add-in, for TLS connections only."""
    security = server.security
    if security is None or info is None or not info.secure:
        return lambda calling: None
    certificate = info.peer_certificate
    return lambda calling: security.binding_refusal(calling, certificate)


class Acceptance:
    """The decision on one A-ASSOCIATE-RQ, possibly asynchronous.

    Args:
        server: the server's shared state.
        control: pause state and the client registry.
        client: the requesting connection.
        reactor: for thread-pool calls and their timers.
        info: the association as add-ins will see it.
        accept: called with the negotiation result when the association is accepted.
        refuse: called with the refusal otherwise.
    """

    def __init__(
        self,
        server: ServerContext,
        control: ServerControl,
        client: ClientInfo,
        reactor: Any,
        info: AssociationInfo,
        accept: Callable[[NegotiationResult], None],
        refuse: Callable[[Refusal], None],
    ) -> None:
        self.server = server
        self.control = control
        self.client = client
        self.reactor = reactor
        self.info = info
        self._accept = accept
        self._refuse = refuse
        self._pending: Deferred[Any] | None = None
        self._resolved_once = False
        self.cancelled = False

    def start(self, request: AssociateRequest) -> None:
        """Decide ``request``; calls ``accept`` or ``refuse`` now or later."""
        if self.cancelled:
            return
        view = policy_view(self.server, self.control, self.client, self.info)
        refusal = decide(request, self.client.ip, view)
        if (
            refusal is not None
            and refusal.rule is Rule.CALLING_HOST_UNRESOLVED
            and not self._resolved_once
        ):
            self._resolve_then_retry(request)
            return
        if refusal is not None:
            self._refuse(refusal)
            return
        clients = self.control.clients
        clients.admit(self.client)
        clients.claim(self.client, request.calling_ae_title)
        result = negotiate(request, self.server.contexts, self.server.acceptor)
        if result.association is None:
            self._refuse(Refusal(result.response, Rule.NEGOTIATION, result.reason))  # type: ignore[arg-type]
            return
        identity = request.user_information.user_identity
        verifiers = self.server.identity_verifiers
        if identity is None or not verifiers:
            self._consult_hooks(result, waited=False)
            return
        d = verify_identity(
            verifiers,
            self.info,
            identity,
            self.reactor,
            self.server.threadpool,
            self.server.settings.addin_timeout,
            self.server.identity_limiter,
        )
        self._wait(d, lambda verdict: self._after_identity(verdict, result))

    def _after_identity(self, verdict: IdentityVerdict, result: NegotiationResult) -> None:
        """Reject (1, 2, 1) an identity refused and accepted by none; note an accepted one;
        go on to the hooks (an identity every verifier abstained on goes on unverified)."""
        if not verdict.judged:
            self._consult_hooks(result, waited=True)
            return
        if not verdict.accepted:
            self._refuse(Refusal(REJECT_USER_IDENTITY, Rule.USER_IDENTITY, verdict.why))
            return
        self.info = replace(self.info, user_verified=True)
        if verdict.response is not None:
            accept = result.response
            assert isinstance(accept, AssociateAccept)
            answer = replace(
                accept,
                user_information=replace(
                    accept.user_information, user_identity_response=verdict.response
                ),
            )
            result = replace(result, response=answer)
        self._consult_hooks(result, waited=True)

    def _consult_hooks(self, result: NegotiationResult, waited: bool) -> None:
        hooks = self.server.association_hooks
        if not hooks:
            if waited:
                self._after_hooks(None, result)
            else:
                self._accept(result)
            return
        settings = self.server.settings
        d = consult_hooks(
            hooks, self.info, self.reactor, self.server.threadpool, settings.addin_timeout
        )
        self._wait(d, lambda refusal: self._after_hooks(refusal, result))

    def _after_hooks(self, refusal: Refusal | None, result: NegotiationResult) -> None:
        """Refuse or accept once the add-ins answered; a pause meanwhile refuses (2, 3, 1).

        A verifier or hook may take up to the add-in timeout. An administrator who paused
        the server (or began a graceful stop) in that time expects no association to open
        after it.
        """
        if refusal is None:
            refusal = closed_refusal(
                paused=self.control.paused,
                stopping=self.control.stopping,
                why_suffix=" (since the request arrived, while add-ins were consulted)",
            )
        if refusal is not None:
            self._refuse(refusal)
        else:
            self._accept(result)

    def cancel(self) -> None:
        """The peer went away: drop pending work; neither callback will be called."""
        self.cancelled = True
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.cancel()

    def _resolve_then_retry(self, request: AssociateRequest) -> None:
        entry = self.server.ae_titles.get(request.calling_ae_title)
        self._resolved_once = True
        if entry is None:  # the table changed under us: decide again from scratch
            self.start(request)
            return
        d = self.server.addresses.resolve_later(
            entry.host, self.reactor, self.server.threadpool, self.server.settings.artim_timeout
        )
        self._wait(d, lambda _: self.start(request))

    def _wait(self, d: Deferred[Any], then: Callable[[Any], None]) -> None:
        def done(result: object) -> None:
            self._pending = None
            if not self.cancelled:
                then(result)

        def cancelled(failure: Failure) -> None:
            failure.trap(CancelledError)

        if not d.called:
            self._pending = d
        d.addCallback(done)
        d.addErrback(cancelled)
