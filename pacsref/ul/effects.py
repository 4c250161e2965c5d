"""Effects: what the upper layer asks its adapter to do (PS3.8 9.2 actions).

The state machine never performs I/O; each action returns a list of these
values and the Twisted adapter (or a test) carries them out in order. This is
what makes every cell of Table 9-10 testable as data in, data out.
"""

from __future__ import annotations

from dataclasses import dataclass

from pacsref.ul.constants import PDUType
from pacsref.ul.events import Indication


@dataclass(frozen=True, slots=True)
class SendPDU:
    """Write these bytes (one encoded PDU) to the transport."""

    pdu_type: PDUType
    data: bytes


@dataclass(frozen=True, slots=True)
class StartARTIM:
    """Start, or restart if running, the ARTIM timer (PS3.8 9.1.5)."""


@dataclass(frozen=True, slots=True)
class StopARTIM:
    """Stop the ARTIM timer if it is running."""


@dataclass(frozen=True, slots=True)
class OpenTransport:
    """Requestor only: issue a TRANSPORT CONNECT request (AE-1)."""


@dataclass(frozen=True, slots=True)
class CloseTransport:
    """Close the transport connection after pending writes are flushed."""


@dataclass(frozen=True, slots=True)
class Indicate:
    """Hand a primitive (indication or confirmation) to the local user."""

    primitive: Indication


Effect = SendPDU | StartARTIM | StopARTIM | OpenTransport | CloseTransport | Indicate
