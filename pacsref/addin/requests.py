"""The values the server hands to add-in handlers.

An add-in never sees the protocol objects (the Twisted ``Protocol``, the
upper-layer machine, the spool writer): it gets one immutable
:class:`DimseRequest` per DIMSE message. Immutability matters because the
handler runs on a worker thread while the reactor thread keeps serving the
association; a frozen value can be shared between them without locks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from twisted.logger import Logger

from pacsref.addin.deadline import AddinDeadline

if TYPE_CHECKING:
    from pydicom import Dataset

    from pacsref.addin.interfaces import IServiceRegistry
    from pacsref.security import CertificateIdentity
    from pacsref.ul.events import UserIdentity

__all__ = ["AssociationInfo", "DimseRequest", "StoreOutcome", "SubOperation"]


@dataclass(frozen=True, slots=True)
class AssociationInfo:
    """Who is on the other end of an association, as association hooks and handlers see it.

    Attributes:
        calling_ae: the peer's AE title (Calling AE Title of the A-ASSOCIATE-RQ,
            PS3.8 9.3.2), leading/trailing spaces removed.
        called_ae: the AE title the peer addressed (ours), spaces removed.
        peer_host: the peer's IP address as the transport reports it.
        peer_port: the peer's TCP port.
        secure: True when the association runs over TLS.
        association_id: a server-unique number for correlating log lines of one
            association; 0 when not assigned (e.g. in tests).
        peer_certificate: the peer's verified TLS certificate
            (:class:`pacsref.security.CertificateIdentity`: subject CNs, SAN
            DNS names, SHA-256 fingerprint), or None without TLS or without a
            client certificate; lets an association hook apply its own
            certificate policy.
        user_identity: the User Identity the requestor sent (PS3.7 D.3.3.7), without its
            passcode (only :class:`~pacsref.addin.IUserIdentityNegotiation` add-ins see
            that), or None when it sent none. ``user_identity.username`` is the user
            for types 1 and 2.
        user_verified: True once an ``IUserIdentityNegotiation`` add-in accepted
            ``user_identity``. False when none is loaded: the identity is then only
            what the peer claims (the server accepts it unverified, as PS3.7 D.3.3.7
            lets an acceptor that does not support user identities do).
    """

    calling_ae: str
    called_ae: str
    peer_host: str
    peer_port: int
    secure: bool = False
    association_id: int = 0
    peer_certificate: CertificateIdentity | None = None
    user_identity: UserIdentity | None = None
    user_verified: bool = False

    @property
    def peer(self) -> tuple[str, int]:
        """The peer address as ``(host, port)``."""
        return (self.peer_host, self.peer_port)


@dataclass(frozen=True, slots=True)
class DimseRequest:
    """One DIMSE request message, as the server passes it to the add-in that serves it.

    The data set is *not* in memory: it was streamed to ``dataset_path`` in the
    server's temporary directory while it arrived (DESIGN.md, "Never hold a
    whole data set in memory"). A handler that wants to keep it (a storage
    SCP) may move the file; whatever is left at that path after the response
    is sent is deleted by the server.

    Attributes:
        association: the association the message arrived on.
        context_id: the presentation context ID it arrived on (PS3.8 9.3.5.1).
        abstract_syntax: that context's abstract syntax (the SOP Class UID).
        transfer_syntax: that context's negotiated transfer syntax, i.e. the
            encoding of the file at ``dataset_path`` (PS3.7 6.3.1: the command
            set itself is always Implicit VR Little Endian).
        command: the decoded command set, keyed by element number of group
            0000 (e.g. ``0x0100`` Command Field), as
            :func:`pacsref.dimse.command.decode_command` returns it.
        dataset_path: the spooled data set (starting at ``dataset_offset``), or None when
            the command carries no data set (C-ECHO, N-GET, ...).
        message_id: Message ID (0000,0110).
        affected_sop_class_uid: Affected SOP Class UID (0000,0002), or the
            Requested SOP Class UID (0000,0003) for N-services that carry that
            instead; "" when absent.
        affected_sop_instance_uid: Affected (or Requested) SOP Instance UID
            (0000,1000 / 0000,1001); "" when absent.
        log: a ``twisted.logger.Logger`` namespaced ``pacsref.addin.<name>``,
            so an add-in's log lines are attributable without it configuring
            anything; safe to call from the worker thread.
        services: the server's :class:`~pacsref.addin.interfaces.IServiceRegistry`,
            through which the add-in reaches ``IAeTitles``, ``IDicomRequest``...
        dataset_offset: where the data set starts in ``dataset_path``. For a
            C-STORE-RQ the server writes the spool file as a DICOM Part-10 file
            (preamble, ``DICM``, file meta from the command, the transfer syntax,
            our identity and the calling AE title) so a storage SCP keeps it by
            a rename; this is then the header's length. 0 for other requests.
        dataset: only in what :class:`~pacsref.addin.interfaces.IMessageNotification`
            add-ins receive after a successful C-STORE: the stored data set as
            a pydicom ``Dataset`` (without Pixel Data unless the server's
            ``copy_dataset_image`` setting is on); None otherwise.
        status: only in what :class:`~pacsref.addin.interfaces.IMessageNotification`
            add-ins receive: the status of the final response the server sent (a refusal's
            too: 0x0122, 0x0211, 0x0212, 0xA700...), or, when the association ended before
            the response, the status of a handler that finished past its point of no
            return; None when there is neither. None in what handlers receive.
        deadline: decides between this request's add-in timeout and the handler's point of
            no return (:meth:`point_of_no_return`); the server makes one per request.
        keep_stored_open: True when message-notification add-ins will be handed the data
            set a C-STORE stores. A storage handler that may replace a stored file (as
            ``duplicates = "overwrite"`` does) then returns the stored file opened
            (:attr:`StoreOutcome.opened`) from where nothing can replace it yet: the
            subscribers are called later, on the thread pool, and by then another
            association may have overwritten the same instance; the open file is still the
            version this request stored. False also when too many notifications already
            hold a file open (``message_notification.MAX_PINNED``).
    """

    association: AssociationInfo
    context_id: int
    abstract_syntax: str
    transfer_syntax: str
    command: Mapping[int, object]
    dataset_path: Path | None
    message_id: int
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    log: Logger = field(repr=False, compare=False)
    services: IServiceRegistry = field(repr=False, compare=False)
    dataset_offset: int = 0
    dataset: Dataset | None = field(default=None, repr=False, compare=False)
    status: int | None = field(default=None, compare=False)
    deadline: AddinDeadline = field(default_factory=AddinDeadline, repr=False, compare=False)
    keep_stored_open: bool = field(default=False, compare=False)

    def point_of_no_return(self) -> bool:
        """Call just before the step that cannot be undone; False: do not take it.

        True: go on; the server now waits for this handler's outcome even past the add-in
        timeout, so the status the peer gets is the one the handler returns. False: the
        add-in timeout has already expired and the peer is being answered 0x0110, so the
        handler must leave everything as it was and return (its result is ignored). Safe
        from any thread; see :mod:`pacsref.addin.deadline`.
        """
        return self.deadline.commit()

    def __post_init__(self) -> None:
        if not 0 <= self.message_id <= 0xFFFF:
            raise ValueError(f"message ID {self.message_id} is not a 16-bit unsigned integer")
        if not (1 <= self.context_id <= 255 and self.context_id % 2 == 1):
            raise ValueError(f"presentation context ID {self.context_id} is not an odd 1-255")

    @property
    def calling_ae(self) -> str:
        """Shortcut for ``association.calling_ae``."""
        return self.association.calling_ae

    @property
    def called_ae(self) -> str:
        """Shortcut for ``association.called_ae``."""
        return self.association.called_ae

    @property
    def peer(self) -> tuple[str, int]:
        """Shortcut for ``association.peer``: ``(host, port)``."""
        return self.association.peer


@dataclass(frozen=True, slots=True)
class SubOperation:
    """One C-STORE sub-operation an ``IMoveHandler``/``IGetHandler`` asks the server to perform.

    A retrieve add-in decides *what* to send; the server knows *how*: C-GET
    sub-operations must travel over the requesting association itself (PS3.4
    C.4.3), which an add-in cannot reach, and the pending responses with their
    Remaining/Completed/Failed/Warning counts (PS3.4 C.4.2.1.5) are protocol
    mechanics the framework keeps in one place.

    Attributes:
        path: a DICOM Part-10 file to send.
        sop_class_uid: its SOP Class UID (chooses the presentation context).
        sop_instance_uid: its SOP Instance UID (listed in Failed SOP Instance
            UID List (0008,0058) if the sub-operation fails).
    """

    path: Path
    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    """What an ``IStoreHandler`` may return instead of a bare status: the status and the file.

    Returning where the instance was stored lets the server hand the stored data set to
    :class:`~pacsref.addin.interfaces.IMessageNotification` add-ins after the response
    is sent, without the storage add-in knowing about them.

    Attributes:
        status: the DIMSE status of the C-STORE-RSP.
        path: the stored Part-10 file, or None when nothing was stored.
        comment: an Error Comment (0000,0902) for a warning or failure status, or "".
        opened: ``path`` opened for reading (binary) where nothing could replace it yet,
            when the request asked for it (:attr:`DimseRequest.keep_stored_open`); the
            server reads the notification's data set from it and closes it. None: the
            notification reads ``path``.
    """

    status: int
    path: Path | None = None
    comment: str = ""
    opened: BinaryIO | None = field(default=None, repr=False, compare=False)
