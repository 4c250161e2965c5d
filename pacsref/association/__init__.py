"""Association negotiation for the acceptor side (PS3.8 9.3.2/9.3.3, PS3.7 Annex D).

Pure values and functions: :func:`negotiate` turns an A-ASSOCIATE-RQ, the
server's :class:`ContextTable` and its :class:`AcceptorConfig` into the
response to send and a :class:`NegotiatedAssociation` for the layers above.
"""

from pacsref.association.contexts import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    ContextTable,
    SupportedContext,
    uid_label,
)
from pacsref.association.negotiated import (
    AcceptedContext,
    NegotiatedAssociation,
    RefusedContext,
)
from pacsref.association.negotiation import (
    DEFAULT_IMPLEMENTATION_CLASS_UID,
    DEFAULT_IMPLEMENTATION_VERSION_NAME,
    DEFAULT_MAX_PDU_LENGTH,
    SYNCHRONOUS_WINDOW,
    AcceptorConfig,
    NegotiationResult,
    choose_transfer_syntax,
    negotiate,
)
from pacsref.association.roles import RoleDecision, negotiate_roles, proposed_roles

__all__ = [
    "DEFAULT_IMPLEMENTATION_CLASS_UID",
    "DEFAULT_IMPLEMENTATION_VERSION_NAME",
    "DEFAULT_MAX_PDU_LENGTH",
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "SYNCHRONOUS_WINDOW",
    "UNCOMPRESSED_TRANSFER_SYNTAXES",
    "AcceptedContext",
    "AcceptorConfig",
    "ContextTable",
    "NegotiatedAssociation",
    "NegotiationResult",
    "RefusedContext",
    "RoleDecision",
    "SupportedContext",
    "choose_transfer_syntax",
    "negotiate",
    "negotiate_roles",
    "proposed_roles",
    "uid_label",
]
