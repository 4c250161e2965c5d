"""The zope interfaces between the server and its add-ins.

The protocol is fixed; policy is pluggable (STYLE.md principle 11): the server
consults these interfaces the way Twisted's ``SMTP`` consults
``IMessageDelivery``. An add-in is any object providing :class:`IAddin`; it
also provides the handler interfaces for the DIMSE services it serves. Which
handler is called is decided by the presentation context a message arrives on:
the add-in that declared its abstract syntax in
:meth:`IAddin.presentation_contexts` gets it.

Threading contract for every handler method below: it is called on a worker
thread of the server's add-in thread pool, never on the reactor thread, so it
may block (disk, database, network). It must finish within the add-in timeout
(see :mod:`pacsref.addin.runner`), otherwise the server answers with a failure
status and ignores the late result. Handlers that return iterators are advanced
on the worker thread too, one ``next()`` per timeout. A handler signals failure
by raising; the status sent is chosen by
:func:`pacsref.addin.runner.status_for_exception` (raise
:class:`~pacsref.addin.errors.AddinStatusError` to pick it yourself).

Methods are written without ``self``, as zope.interface expects.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from pydicom import Dataset
    from twisted.internet.defer import Deferred
    from zope.interface.interfaces import IInterface

    from pacsref.addin.aetitles import AeInfo
    from pacsref.addin.requests import AssociationInfo, DimseRequest, SubOperation
    from pacsref.association import SupportedContext
    from pacsref.ul.events import AssociateReject, UserIdentity

__all__ = [
    "IAbstractSyntaxFallback",
    "IAddInOptions",
    "IAddin",
    "IAeTitles",
    "IAssociationHook",
    "IDicomRequest",
    "IEchoHandler",
    "IFindHandler",
    "IGetHandler",
    "IMessageNotification",
    "IMoveHandler",
    "INServiceHandler",
    "ISecurity",
    "IServiceRegistry",
    "IStoreHandler",
    "IUserIdentityNegotiation",
]


class IAddin(Interface):
    """An add-in: a named unit of server behaviour found in the server's ``addins/`` folder.

    Providing ``IAddin`` is what makes the loader pick an object up; the other
    interfaces it provides say what it does.
    """

    name = Attribute(
        """
        ``str``, unique among the add-ins of one server: it names the add-in in
        logs, in the admin interface's GetAddIns answer, in load failures and in
        the logger namespace ``pacsref.addin.<name>`` handed to its handlers.
        Two add-ins with the same name are a load failure.
        """
    )

    description = Attribute(
        """
        ``str``: one human sentence saying what the add-in serves, shown by the
        service manager.
        """
    )

    def presentation_contexts() -> Iterable[SupportedContext]:
        """The abstract syntaxes this add-in serves, with transfer syntaxes and roles.

        Asked at load time only (the loader's check, then the server keeps the answer for
        its whole run, never asking per association or request); an exception, or a value
        that is not a ``SupportedContext``, makes the add-in a load failure, and the server
        starts without it. Messages arriving on a presentation context
        whose abstract syntax an add-in declared are dispatched to that
        add-in's handler for the message's command. An add-in that only hooks
        associations or notifications returns an empty iterable.

        Returns:
            :class:`pacsref.association.SupportedContext` values.
        """


class IAddInOptions(Interface):
    """An add-in with options of its own (the seed's per-add-in settings dialog).

    The server keeps the values in ``<server dir>/addin-options/<name>.toml``, validates
    them against :attr:`options_declaration` (see :mod:`pacsref.addin.options`), and hands
    them to the add-in: once when it is loaded, and again whenever an operator changes them
    (admin socket SetAddInOptions, ``pacsref addins config``). A file with problems stops
    the add-in from loading, with every problem in the load failure.
    """

    options_declaration = Attribute(
        """
        The options the add-in accepts: an :class:`~pacsref.addin.options.OptionsSchema`
        or a sequence of :class:`~pacsref.addin.options.AddInOption`. Read at load time.
        """
    )

    def options_changed(new_options: Mapping[str, object]) -> None:
        """Take ``new_options`` (an immutable, validated ``OptionValues``) into use.

        Called on the reactor thread, so it must be quick: swap a reference, no I/O.
        Called at load with the file's values, then before a change is saved. Raising
        refuses the change: nothing is saved and the operator gets the exception's text.
        Options declared ``live=False`` may be kept as they were until the next start;
        the operator is told so.
        """


class IEchoHandler(Interface):
    """Serves C-ECHO (PS3.7 9.1.5; the Verification SOP Class, PS3.4 Annex A)."""

    def handle_echo(request: DimseRequest) -> int:
        """Answer one C-ECHO-RQ.

        Returns:
            the DIMSE status of the C-ECHO-RSP, normally 0x0000 (success).
        """


class IStoreHandler(Interface):
    """Serves C-STORE as an SCP (PS3.7 9.1.1; Storage Service Class, PS3.4 Annex B)."""

    def handle_store(request: DimseRequest) -> int:
        """Store the data set of one C-STORE-RQ.

        ``request.dataset_path`` holds the received data set, already on disk.
        To keep it, move or rename the file (cheap: same file system as the
        spool); the server deletes what is left after responding. Return only
        once the instance is durable, because the peer may discard its copy on
        success.

        The spool file is a DICOM Part-10 file: the server wrote the preamble
        and file meta (from the command, the transfer syntax, its identity and
        the calling AE title) before the data set, which starts at
        ``request.dataset_offset``. Keeping it is one fsync and one rename.

        Returns:
            the DIMSE status of the C-STORE-RSP: 0x0000, a warning (0xB000,
            0xB007, 0xB006) or a failure (e.g. 0xA700 out of resources); or a
            :class:`~pacsref.addin.requests.StoreOutcome` that also names the
            stored file (message notification then reads the data set from it).
            A handler marked ``nonblocking`` may return a Deferred of either;
            the add-in timeout applies to it.
        """


class IFindHandler(Interface):
    """Serves C-FIND as an SCP (PS3.7 9.1.2; Query/Retrieve and Worklist, PS3.4 C and K)."""

    def handle_find(request: DimseRequest) -> Iterator[tuple[int, Dataset | None]]:
        """Match the identifier in ``request.dataset_path`` and yield the results.

        Yield ``(0xFF00, identifier)`` (or 0xFF01 when optional keys were not
        supported) per match, then optionally one final ``(status, None)``. An
        iterator that ends without a final status means success (0x0000). Each
        ``next()`` runs on a worker thread with the add-in timeout, so a
        generator may query lazily. On C-CANCEL (or association loss) the server
        stops iterating and calls the iterator's ``close()`` if it has one, so
        ``try/finally`` in a generator releases database cursors.

        Returns:
            an iterator of ``(status, identifier data set or None)``.
        """


class IMoveHandler(Interface):
    """Serves C-MOVE as an SCP (PS3.7 9.1.4; PS3.4 C.4.2).

    The add-in selects *what* to send; the server performs the C-STORE
    sub-operations to the Move Destination (resolved through
    :class:`IAeTitles`, via :class:`IDicomRequest`) and sends the pending
    responses with Remaining/Completed/Failed/Warning counts and the final
    status with the Failed SOP Instance UID List. First consumer: the
    query/retrieve issue; the shape is fixed here so add-ins can be written now.
    """

    def handle_move(request: DimseRequest) -> Iterable[SubOperation]:
        """Resolve the identifier in ``request.dataset_path`` to instances to send.

        ``request.command[0x0600]`` is the Move Destination AE title. The server
        materialises the iterable (on the worker thread, within the timeout)
        before the first sub-operation, because every pending response must
        carry the number of remaining sub-operations (PS3.4 C.4.2.1.5). Raise
        :class:`~pacsref.addin.errors.AddinStatusError` for a refusal such as
        0xA701 (out of resources: unable to calculate number of matches).

        Returns:
            one :class:`~pacsref.addin.requests.SubOperation` per instance.
        """


class IGetHandler(Interface):
    """Serves C-GET as an SCP (PS3.7 9.1.3; PS3.4 C.4.3).

    Same shape as :class:`IMoveHandler`; the server sends the sub-operations
    back over the requesting association, on contexts where the peer accepted
    the SCP role for the storage SOP class (PS3.7 D.3.3.4).
    """

    def handle_get(request: DimseRequest) -> Iterable[SubOperation]:
        """Resolve the identifier in ``request.dataset_path`` to instances to send.

        Returns:
            one :class:`~pacsref.addin.requests.SubOperation` per instance.
        """


class INServiceHandler(Interface):
    """Serves the DIMSE-N services of normalized SOP classes (PS3.7 10.1; e.g. MPPS, PS3.4 F).

    Each method returns ``(status, data set or None)``: the status of the
    N-xxx-RSP and its data set (e.g. the attribute values of an N-GET-RSP, the
    Action Reply of an N-ACTION-RSP). ``request.affected_sop_instance_uid``
    holds the Affected or Requested SOP Instance UID. An operation the SOP
    class does not support should return (0x0211, None): *Unrecognized
    operation* (PS3.7 Annex C).
    """

    def handle_n_create(request: DimseRequest) -> tuple[int, Dataset | None]:
        """Create the SOP instance described by the request's data set (PS3.7 10.1.5)."""

    def handle_n_set(request: DimseRequest) -> tuple[int, Dataset | None]:
        """Modify attributes of an existing SOP instance (PS3.7 10.1.3)."""

    def handle_n_get(request: DimseRequest) -> tuple[int, Dataset | None]:
        """Return the requested attributes (0000,1005) of a SOP instance (PS3.7 10.1.2)."""

    def handle_n_action(request: DimseRequest) -> tuple[int, Dataset | None]:
        """Perform Action Type ID (0000,1008) on a SOP instance (PS3.7 10.1.4)."""

    def handle_n_delete(request: DimseRequest) -> tuple[int, Dataset | None]:
        """Delete a SOP instance (PS3.7 10.1.6)."""

    def handle_n_event_report(request: DimseRequest) -> tuple[int, Dataset | None]:
        """Accept an event report, Event Type ID (0000,1002), from the peer (PS3.7 10.1.1)."""


class IAssociationHook(Interface):
    """Observes, and may veto, associations; for acceptance policy beyond the settings.

    The server's own policy (called/calling AE title, max clients, paused)
    runs first; hooks are consulted only for requests it would accept. Hook
    methods run on the worker thread like handlers. Exceptions from the
    notification methods (everything but ``association_requested``) are logged
    and otherwise ignored: an observer must not break the association.
    """

    def association_requested(info: AssociationInfo) -> AssociateReject | None:
        """Decide whether to accept an A-ASSOCIATE-RQ the server would accept.

        Returns:
            None to accept, or the :class:`pacsref.ul.events.AssociateReject`
            to send (e.g. ``pacsref.ul.events.REJECT_CALLING_AE``). An exception
            rejects with ``REJECT_NO_REASON`` and is logged.
        """

    def association_established(info: AssociationInfo) -> None:
        """The A-ASSOCIATE-AC was sent; DIMSE messages may follow."""

    def association_released(info: AssociationInfo) -> None:
        """The association ended by an orderly A-RELEASE (PS3.8 7.2)."""

    def association_aborted(info: AssociationInfo) -> None:
        """The association ended by A-ABORT, A-P-ABORT or a dropped connection (PS3.8 7.3, 7.4)."""


class IUserIdentityNegotiation(Interface):
    """Verifies the User Identity a requestor sends in its A-ASSOCIATE-RQ (PS3.7 D.3.3.7).

    Who may use the server is site policy (a user table, LDAP, a Kerberos realm, a JWT
    issuer), so the core only carries the identity and the answer. Consulted after the
    server's own acceptance policy and negotiation and before the IAssociationHook
    add-ins (which then see ``info.user_identity`` and ``info.user_verified``), only
    for requests that carry a User Identity sub-item: an add-in that wants every
    association to carry one refuses the others in ``association_requested``.

    Several such add-ins are asked in load order until one accepts (one per
    authentication source, as PAM stacks "sufficient" modules). When none accepts and at
    least one refused, the association is rejected with A-ASSOCIATE-RJ (1, 2, 1), the
    rejection PS3.7 D.3.3.7 prescribes for an authorization failure. When every one
    abstains (answers None), or none is loaded, the identity is not verified, no User
    Identity response is sent and the association goes on (``info.user_verified``
    False), which D.3.3.7 allows an acceptor that does not support user identities; a
    requestor that asked for a positive response then decides itself. So a verifier
    answers None for identities it does not handle (a user table and a Kerberos ticket)
    or while it is not configured, and False for those it judges and refuses.
    """

    def verify_user_identity(info: AssociationInfo, identity: UserIdentity) -> bool | bytes | None:
        """Accept or refuse ``identity`` (passcode included) for the association ``info``.

        Returns:
            ``True`` to accept; ``bytes`` to accept with that Server-response (the
            Kerberos server ticket, SAML response or JWT for types 3-5, sent when the
            requestor asked for a positive response; types 1 and 2 always get an empty
            one, as PS3.7 D.3.3.7.2 requires); ``False`` to refuse (the next such add-in
            may still accept; if none does, the association is rejected); ``None`` to
            abstain. An exception, a timeout or any other value counts as a refusal and
            is logged. Runs on the thread pool under the add-in timeout (a directory
            look-up may block) unless marked ``nonblocking``.
        """


class IAbstractSyntaxFallback(Interface):
    """Serves abstract syntaxes no add-in declared (e.g. "accept unknown storage classes").

    Negotiation cannot tell a storage SOP class from any other UID it has never heard of,
    so an add-in that wants "every other storage class" says so here and decides per UID.
    Consulted, in load order, only for UID-shaped abstract syntaxes that no add-in
    declared; requests on such a context go to the add-in that answered, and a command
    it has no handler for gets 0x0211 *Unrecognized operation* as usual.
    """

    def context_for_unknown(abstract_syntax: str) -> SupportedContext | None:
        """The context to negotiate for an undeclared ``abstract_syntax``, or None to refuse.

        Called on the reactor thread during negotiation: it must be quick and not block.
        """


class IMessageNotification(Interface):
    """Spies on DIMSE traffic: told about every request message the server handled.

    For audit trails, dashboards and the admin interface's ClientAction
    notification. Observation only: the return value is ignored, exceptions
    are logged, and the response to the peer never waits for it longer than
    the add-in timeout.
    """

    def notify(message: DimseRequest) -> None:
        """One request message was received and answered.

        Called on the thread pool after the response was sent, so it never
        slows the peer. After a C-STORE whose handler returned a
        :class:`~pacsref.addin.requests.StoreOutcome` with a success or
        warning status and a path, ``message.dataset`` is the stored data set
        (pydicom ``Dataset``, Pixel Data left out unless the server setting
        ``copy_dataset_image`` is on) and ``message.dataset_path`` the stored
        file. Otherwise ``message.dataset`` is None and ``dataset_path`` may
        no longer exist: copy what you need from the command set.
        ``message.status`` is the status the peer was answered with, refusals
        included (None if the association ended before any answer).
        """


class ISecurity(Interface):
    """Supplies the TLS parameters of a secure server (DICOM Basic TLS Secure Transport
    Connection Profile, PS3.15 B.1).

    A server marked secure refuses to start without exactly one provider.
    Attributes only: :mod:`pacsref.security` builds ``CertificateOptions``
    from them (STYLE.md principle 13), for the listener and for outbound
    requests, with the BCP 195 versions and cipher suites (docs/security.md).
    The same certificate and key serve both directions, so the certificate
    should allow serverAuth and clientAuth (or carry no Extended Key Usage).
    """

    certificate = Attribute(
        """
        ``pathlib.Path`` of the server's PEM certificate chain, leaf first.
        """
    )

    private_key = Attribute(
        """
        ``pathlib.Path`` of the PEM private key matching ``certificate``;
        should be readable only by the server's user.
        """
    )

    trust_roots = Attribute(
        """
        ``Sequence[pathlib.Path]`` of PEM CA certificates that may sign peer
        certificates; empty means no peer certificate can be verified.
        """
    )

    require_peer_certificate = Attribute(
        """
        ``bool``: refuse TLS peers that present no certificate signed by one of
        ``trust_roots`` (mutual authentication). The ``ssl:`` endpoint string
        cannot express this, hence an explicit setting.
        """
    )

    passphrase = Attribute(
        """
        ``bytes | None``: the passphrase of an encrypted ``private_key``;
        None when the key is not encrypted.
        """
    )

    bindings = Attribute(
        """
        ``Sequence[pacsref.security.CertificateBinding]``: which calling AE
        titles a peer certificate may use (certificate identity -> AE titles).
        A request breaking a binding is rejected with A-ASSOCIATE-RJ (1, 1, 3)
        *calling AE title not recognized*. Empty means no binding.
        """
    )

    require_binding = Attribute(
        """
        ``bool``: also refuse peers whose certificate (or lack of one) matches
        no binding; off, the table only restricts the identities it names.
        """
    )


class IAeTitles(Interface):
    """The AE title table: the peers this server knows (base service, replaceable).

    Used by the acceptance policy (is the calling AE known?), by C-MOVE (where
    is the Move Destination?) and by the admin interface (GetAeTitles,
    AddAeTitle, UpdateAeTitle, RemoveAeTitle). Titles are compared with
    leading/trailing spaces removed and case preserved (PS3.5 6.2, VR AE).
    Providers must be safe to call from several threads at once. Every
    refusal raises :class:`~pacsref.addin.errors.AeTitleError` with a message
    fit to show the operator.
    """

    def list() -> Sequence[AeInfo]:
        """Every entry, as a snapshot (later changes do not affect it)."""

    def get(ae_title: str) -> AeInfo | None:
        """The entry for ``ae_title``, or None when unknown (not an error: it is
        the acceptance policy's everyday question)."""

    def add(info: AeInfo) -> AeInfo:
        """Add an entry; refuses a title already present. Returns the stored entry."""

    def update(old_ae_title: str, info: AeInfo) -> AeInfo:
        """Replace the entry ``old_ae_title`` by ``info`` (which may rename it).

        Refuses an unknown ``old_ae_title``, and a rename onto a title already
        present. Returns the stored entry.
        """

    def remove(ae_title: str) -> AeInfo:
        """Remove an entry; refuses an unknown title. Returns the removed entry."""


class IDicomRequest(Interface):
    """Issues DICOM requests as an SCU on behalf of the server and its add-ins (base service).

    Rarely replaced. Methods return Deferreds and must be called on the
    reactor thread; from a worker thread use
    ``twisted.internet.threads.blockingCallFromThread``. More operations
    (C-STORE for C-MOVE sub-operations, C-FIND, ...) join as their issues land.
    """

    def echo(ae: str | AeInfo, timeout: float | None = None) -> Deferred[int]:
        """Send a C-ECHO to a peer.

        Args:
            ae: an AE title, looked up in :class:`IAeTitles`, or an
                :class:`~pacsref.addin.aetitles.AeInfo` giving the address.
            timeout: seconds for the whole exchange; None uses the server's
                reconnect timeout.

        Returns:
            a Deferred firing with the C-ECHO-RSP status, or failing with
            :class:`~pacsref.addin.errors.AeTitleError` for an unknown title,
            or the connection / association error.
        """


class IServiceRegistry(Interface):
    """Where handlers find the server's base services, keyed by interface.

    Reached through ``DimseRequest.services``. Lookups are safe from worker
    threads; registration happens at start-up on the reactor thread.
    """

    def get(interface: IInterface) -> object:
        """The provider registered for ``interface``.

        Raises:
            ServiceNotFound: nothing is registered for it.
        """

    def register(interface: IInterface, provider: object, replaceable: bool = True) -> None:
        """Register ``provider`` for ``interface``, replacing the previous provider.

        ``provider`` is checked with ``zope.interface.verify.verifyObject``
        first. ``replaceable=False`` marks the registration as final: a later
        registration for the same interface raises ``ServiceConflict`` instead
        of silently replacing it (used for add-in providers, so two add-ins
        both providing ``IAeTitles`` fail loudly).

        Raises:
            ServiceConflict: the current provider is not replaceable.
            zope.interface.exceptions.Invalid: ``provider`` does not provide
                ``interface`` correctly.
        """
