"""Service primitives of the DICOM Upper Layer (PS3.8 section 7), as values.

These frozen dataclasses are what crosses the boundary of the sans-IO upper
layer in both directions: the local user passes requests/responses to
:meth:`pacsref.ul.machine.UpperLayer.send`, and indications/confirmations come
back inside :class:`pacsref.ul.effects.Indicate`. They validate themselves on
construction so that a bad value is caught where it is made, not when it is
encoded. Don't subclass these.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pacsref.ul.constants import (
    DICOM_APPLICATION_CONTEXT,
    AbortReason,
    AbortSource,
    ContextResult,
    RejectReason,
    RejectResult,
    RejectSource,
)

_UID_CHARS = frozenset("0123456789.")


def _check_uid(name: str, value: str) -> None:
    if not value or len(value) > 64 or not set(value) <= _UID_CHARS:
        raise ValueError(f"{name} {value!r} is not a UID (digits and dots, 1-64 characters)")


def _check_ae(name: str, value: str) -> None:
    if len(value) > 16 or "\\" in value or any(ord(c) < 0x20 or ord(c) > 0x7E for c in value):
        raise ValueError(
            f"{name} {value!r} is not an AE title "
            "(at most 16 printable ASCII characters, no backslash)"
        )


@dataclass(frozen=True, slots=True)
class PresentationContextProposal:
    """One Presentation Context item of an A-ASSOCIATE-RQ (PS3.8 9.3.2.2)."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]

    def __post_init__(self) -> None:
        if not (1 <= self.context_id <= 255 and self.context_id % 2 == 1):
            raise ValueError(f"presentation context ID {self.context_id} is not an odd 1-255")


@dataclass(frozen=True, slots=True)
class PresentationContextResult:
    """One Presentation Context item of an A-ASSOCIATE-AC (PS3.8 9.3.3.2).

    ``transfer_syntax`` is significant only when ``result`` is acceptance.
    """

    context_id: int
    result: ContextResult
    transfer_syntax: str = ""

    def __post_init__(self) -> None:
        if not (1 <= self.context_id <= 255 and self.context_id % 2 == 1):
            raise ValueError(f"presentation context ID {self.context_id} is not an odd 1-255")
        if self.result == ContextResult.ACCEPTANCE:
            _check_uid("accepted transfer syntax", self.transfer_syntax)


@dataclass(frozen=True, slots=True)
class RoleSelection:
    """SCP/SCU Role Selection sub-item (PS3.7 D.3.3.4)."""

    sop_class_uid: str
    scu_role: bool
    scp_role: bool


class UserIdentityType(enum.IntEnum):
    """User-Identity-Type of the User Identity sub-item (PS3.7 D.3.3.7.1)."""

    USERNAME = 1
    USERNAME_AND_PASSCODE = 2
    KERBEROS = 3
    SAML = 4
    JWT = 5


_IDENTITY_TYPE_NAMES = {
    UserIdentityType.USERNAME: "username",
    UserIdentityType.USERNAME_AND_PASSCODE: "username and passcode",
    UserIdentityType.KERBEROS: "Kerberos service ticket",
    UserIdentityType.SAML: "SAML assertion",
    UserIdentityType.JWT: "JSON Web Token",
}


@dataclass(frozen=True, slots=True)
class UserIdentity:
    """The User Identity sub-item of an A-ASSOCIATE-RQ (PS3.7 D.3.3.7.1).

    Both fields are credentials (a passcode, a ticket, a bearer token), so they are kept
    out of ``repr`` and :meth:`describe` names only the username: an identity that ends
    up in a log line or a traceback does not leak them. ``identity_type`` is kept as sent,
    even a value PS3.7 does not define; whoever verifies identities decides about it.
    """

    identity_type: int
    primary_field: bytes = field(repr=False)
    secondary_field: bytes = field(default=b"", repr=False)
    positive_response_requested: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.identity_type <= 255:
            raise ValueError(f"user identity type {self.identity_type} is not one byte")
        for name, value in (("primary", self.primary_field), ("secondary", self.secondary_field)):
            if len(value) > 0xFFFF:
                raise ValueError(f"user identity {name} field of {len(value)} bytes exceeds 65535")

    @property
    def username(self) -> str | None:
        """The username of types 1 and 2 (UTF-8, PS3.7 D.3.3.7.1); None for the others."""
        if self.identity_type not in (
            UserIdentityType.USERNAME,
            UserIdentityType.USERNAME_AND_PASSCODE,
        ):
            return None
        return self.primary_field.decode("utf-8", "replace")

    @property
    def passcode(self) -> str | None:
        """The passcode of type 2 (UTF-8); None for the other types."""
        if self.identity_type != UserIdentityType.USERNAME_AND_PASSCODE:
            return None
        return self.secondary_field.decode("utf-8", "replace")

    def describe(self) -> str:
        """Words for logs: the kind of identity and the username, never a credential."""
        kind = _IDENTITY_TYPE_NAMES.get(self.identity_type)  # type: ignore[call-overload]
        if kind is None:
            return f"user identity of undefined type {self.identity_type}"
        username = self.username
        if username is not None:
            return f"{kind} {username!r}"
        if not self.primary_field:  # taken out by without_credentials
            return kind
        return f"{kind} ({len(self.primary_field)} bytes)"

    def without_credentials(self) -> UserIdentity:
        """What add-ins other than verifiers see: the username of types 1 and 2 without the
        passcode; for the other types neither field, since a Kerberos ticket, a SAML
        assertion or a JWT is itself the credential (a bearer token replayed by whoever
        holds it). A verifier that wants hooks or handlers to know more (a token's claims)
        keeps that itself."""
        keep = self.primary_field if self.username is not None else b""
        if keep == self.primary_field and not self.secondary_field:
            return self
        return UserIdentity(self.identity_type, keep, b"", self.positive_response_requested)


@dataclass(frozen=True, slots=True)
class UserInformation:
    """User Information item (PS3.8 9.3.2.3, PS3.7 Annex D.3.3).

    ``max_pdu_length`` 0 means "no limit" (PS3.8 D.1). ``async_operations``
    is (invoked, performed) or None when the sub-item is absent.
    ``other_items`` keeps sub-items we do not interpret (extended negotiation,
    ...) as (item type, raw value) so they are not lost. ``user_identity`` is the
    requestor's User Identity sub-item (A-ASSOCIATE-RQ only, PS3.7 D.3.3.7.1);
    ``user_identity_response`` the acceptor's Server-response (A-ASSOCIATE-AC only,
    D.3.3.7.2; ``b""`` is a positive response without data, None no sub-item).
    """

    max_pdu_length: int
    implementation_class_uid: str
    implementation_version_name: str = ""
    async_operations: tuple[int, int] | None = None
    role_selections: tuple[RoleSelection, ...] = ()
    other_items: tuple[tuple[int, bytes], ...] = ()
    user_identity: UserIdentity | None = None
    user_identity_response: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.max_pdu_length <= 0xFFFFFFFF:
            raise ValueError(f"maximum length {self.max_pdu_length} out of range")
        _check_uid("implementation class UID", self.implementation_class_uid)
        if len(self.implementation_version_name) > 16:
            raise ValueError(
                f"implementation version name {self.implementation_version_name!r} "
                "is longer than 16 characters"
            )
        if self.user_identity_response is not None and len(self.user_identity_response) > 0xFFFF:
            raise ValueError(
                f"user identity server response of {len(self.user_identity_response)} bytes "
                "exceeds 65535"
            )


@dataclass(frozen=True, slots=True)
class AssociateRequest:
    """A-ASSOCIATE request/indication (PS3.8 7.1.1)."""

    called_ae_title: str
    calling_ae_title: str
    presentation_contexts: tuple[PresentationContextProposal, ...]
    user_information: UserInformation
    application_context: str = DICOM_APPLICATION_CONTEXT
    protocol_version: int = 1
    #: Bytes 11-74 of the PDU as received (the two AE title fields, padding and all, and
    #: the 32 reserved bytes), which the A-ASSOCIATE-AC must send back identical (PS3.8
    #: Table 9-17); empty for a request built here.
    fixed_fields: bytes = field(default=b"", compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_ae("called AE title", self.called_ae_title)
        _check_ae("calling AE title", self.calling_ae_title)


@dataclass(frozen=True, slots=True)
class AssociateAccept:
    """A-ASSOCIATE response/confirmation, result accepted (PS3.8 7.1.1.7)."""

    called_ae_title: str
    calling_ae_title: str
    presentation_contexts: tuple[PresentationContextResult, ...]
    user_information: UserInformation
    application_context: str = DICOM_APPLICATION_CONTEXT
    protocol_version: int = 1
    #: The request's :attr:`AssociateRequest.fixed_fields`, sent back as they came instead
    #: of the AE titles re-encoded and zeros (PS3.8 Table 9-17, bytes 11-74); empty: encode.
    echoed_fields: bytes = field(default=b"", compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_ae("called AE title", self.called_ae_title)
        _check_ae("calling AE title", self.calling_ae_title)


@dataclass(frozen=True, slots=True)
class AssociateReject:
    """A-ASSOCIATE response/confirmation, result rejected (PS3.8 9.3.4)."""

    result: RejectResult
    source: RejectSource
    reason: int

    def __post_init__(self) -> None:
        if not 1 <= self.reason <= 7:
            raise ValueError(f"reject reason {self.reason} is not 1-7")

    def describe(self) -> str:
        """A human sentence such as 'rejected-permanent by service-user: called-AE ...'."""
        return describe_reject(self.result, self.source, self.reason)


_REJECT_REASONS: dict[tuple[int, int], str] = {
    (1, 1): "no-reason-given",
    (1, 2): "application-context-name-not-supported",
    (1, 3): "calling-AE-title-not-recognized",
    (1, 7): "called-AE-title-not-recognized",
    (2, 1): "no-reason-given",
    (2, 2): "protocol-version-not-supported",
    (3, 1): "temporary-congestion",
    (3, 2): "local-limit-exceeded",
}


def describe_reject(result: int, source: int, reason: int) -> str:
    """Render an A-ASSOCIATE-RJ triple in PS3.8 Table 9-21 words."""
    res = {1: "rejected-permanent", 2: "rejected-transient"}.get(result, f"result {result}")
    src = {
        1: "service-user",
        2: "service-provider (ACSE)",
        3: "service-provider (presentation)",
    }.get(source, f"source {source}")
    why = _REJECT_REASONS.get((source, reason), f"reason {reason}")
    return f"{res} by {src}: {why} ({result}, {source}, {reason})"


#: Shortcuts for the rejections the acceptance policy sends.
REJECT_CALLED_AE = AssociateReject(
    RejectResult.PERMANENT, RejectSource.SERVICE_USER, RejectReason.USER_CALLED_AE_NOT_RECOGNIZED
)
REJECT_CALLING_AE = AssociateReject(
    RejectResult.PERMANENT, RejectSource.SERVICE_USER, RejectReason.USER_CALLING_AE_NOT_RECOGNIZED
)
REJECT_APPLICATION_CONTEXT = AssociateReject(
    RejectResult.PERMANENT,
    RejectSource.SERVICE_USER,
    RejectReason.USER_APPLICATION_CONTEXT_NOT_SUPPORTED,
)
REJECT_PROTOCOL_VERSION = AssociateReject(
    RejectResult.PERMANENT,
    RejectSource.SERVICE_PROVIDER_ACSE,
    RejectReason.ACSE_PROTOCOL_VERSION_NOT_SUPPORTED,
)
REJECT_NO_REASON = AssociateReject(
    RejectResult.PERMANENT, RejectSource.SERVICE_USER, RejectReason.USER_NO_REASON
)
#: A user identity that could not be verified (PS3.7 D.3.3.7: "an Association rejected due
#: to an authorization failure will be indicated using Rejection Permanent with a Source of
#: DICOM UL service provider (ACSE related function)"), reason no-reason-given.
REJECT_USER_IDENTITY = AssociateReject(
    RejectResult.PERMANENT, RejectSource.SERVICE_PROVIDER_ACSE, RejectReason.ACSE_NO_REASON
)
REJECT_LOCAL_LIMIT = AssociateReject(
    RejectResult.TRANSIENT,
    RejectSource.SERVICE_PROVIDER_PRESENTATION,
    RejectReason.PRESENTATION_LOCAL_LIMIT_EXCEEDED,
)
REJECT_CONGESTION = AssociateReject(
    RejectResult.TRANSIENT,
    RejectSource.SERVICE_PROVIDER_PRESENTATION,
    RejectReason.PRESENTATION_TEMPORARY_CONGESTION,
)


@dataclass(frozen=True, slots=True)
class PresentationDataValue:
    """One PDV item of a P-DATA-TF PDU (PS3.8 9.3.5.1, Annex E.2).

    ``data`` is the message fragment without the control header. Received
    PDVs carry a read-only ``memoryview`` of the received bytes (no copy);
    whoever keeps one beyond the current read must copy it with ``bytes()``,
    or it pins the whole read buffer.
    """

    context_id: int
    is_command: bool
    is_last: bool
    data: bytes | memoryview


@dataclass(frozen=True, slots=True)
class DataTransfer:
    """P-DATA request/indication: the PDVs of one P-DATA-TF PDU (PS3.8 7.6)."""

    values: tuple[PresentationDataValue, ...]


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    """A-RELEASE request/indication (PS3.8 7.2)."""


@dataclass(frozen=True, slots=True)
class ReleaseResponse:
    """A-RELEASE response/confirmation (PS3.8 7.2)."""


@dataclass(frozen=True, slots=True)
class Abort:
    """A-ABORT request/indication, or A-P-ABORT indication (PS3.8 7.3, 7.4).

    ``source`` SERVICE_USER is an A-ABORT by the peer's (or our) user;
    SERVICE_PROVIDER is a provider-initiated abort (A-P-ABORT) with a reason.
    ``local`` is True when this side's provider decided to abort (e.g. it
    received a malformed PDU), False when the peer's A-ABORT PDU arrived.
    """

    source: AbortSource = AbortSource.SERVICE_USER
    reason: AbortReason = AbortReason.NOT_SPECIFIED
    local: bool = False
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TransportClosed:
    """The transport connection is gone (Evt17 indication, PS3.8 9.2.1).

    ``expected`` is True when the association had already ended normally
    (release or reject completed); False means an A-P-ABORT (AA-4).
    """

    expected: bool


@dataclass(frozen=True, slots=True)
class ProviderRejected:
    """The upper layer itself rejected an A-ASSOCIATE-RQ (AE-6, not acceptable).

    Indicated so that the local user can log who was refused and why, even
    though it never saw the request as an A-ASSOCIATE indication.
    """

    request: AssociateRequest
    reject: AssociateReject


@dataclass(frozen=True, slots=True)
class TransportConnected:
    """Requestor side: the TRANSPORT CONNECT confirmation arrived (Evt2)."""


#: Primitives the local user may hand to ``UpperLayer.send``.
Request = (
    AssociateRequest
    | AssociateAccept
    | AssociateReject
    | DataTransfer
    | ReleaseRequest
    | ReleaseResponse
    | Abort
)

#: Primitives the upper layer indicates to its local user.
Indication = (
    AssociateRequest
    | AssociateAccept
    | AssociateReject
    | DataTransfer
    | ReleaseRequest
    | ReleaseResponse
    | Abort
    | TransportClosed
    | ProviderRejected
)

__all__ = [
    "Abort",
    "AssociateAccept",
    "AssociateReject",
    "AssociateRequest",
    "DataTransfer",
    "Indication",
    "PresentationContextProposal",
    "PresentationContextResult",
    "PresentationDataValue",
    "ProviderRejected",
    "ReleaseRequest",
    "ReleaseResponse",
    "Request",
    "RoleSelection",
    "TransportClosed",
    "TransportConnected",
    "UserIdentity",
    "UserIdentityType",
    "UserInformation",
    "describe_reject",
]
