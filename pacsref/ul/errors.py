"""Errors of the sans-IO upper layer, split by whose fault they are.

Following h11 (``_util.py``): a :class:`LocalProtocolError` means *we* asked
for something the protocol forbids in the current state; a
:class:`RemoteProtocolError` means the *peer* misbehaved, and it carries the
A-ABORT source and reason PS3.8 prescribes as the reply, so the machine never
has to guess what to send.
"""

from __future__ import annotations

from pacsref.ul.constants import AbortReason, AbortSource


class ProtocolError(Exception):
    """Base of every upper-layer protocol error; never raised directly."""


class LocalProtocolError(ProtocolError):
    """The local user issued a primitive PS3.8 Table 9-10 does not allow here."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something invalid; ``abort_hint`` is the A-ABORT to send.

    Args:
        detail: what was wrong, naming the PDU and field.
        reason: the A-ABORT reason (PS3.8 Table 9-26), source is always the
            service provider for errors we detect.
    """

    def __init__(self, detail: str, reason: AbortReason = AbortReason.INVALID_PDU_PARAMETER_VALUE):
        super().__init__(detail)
        self.detail = detail
        self.abort_hint: tuple[AbortSource, AbortReason] = (AbortSource.SERVICE_PROVIDER, reason)


class MalformedPDU(RemoteProtocolError):
    """A PDU that is unrecognised or does not decode: PS3.8 event Evt19."""
