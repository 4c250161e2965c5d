"""Split an outgoing DIMSE message into PDVs that fit the peer (PS3.8 9.3.5, D.1).

The peer's Maximum Length Received (negotiated in A-ASSOCIATE, PS3.8 D.1)
bounds the *variable field* of each P-DATA-TF PDU it receives. The sender
puts exactly one PDV in each PDU, so the variable field is one PDV item:
4 (item length) + 1 (presentation context ID) + 1 (message control header)
+ fragment. Hence a fragment carries at most ``peer_max_pdu - 6`` bytes, and
a peer maximum below 7 cannot carry any data at all.

A maximum of 0 means "unlimited" (PS3.8 D.1), but one enormous PDV would
force the whole data set into memory, so fragments are then capped at
:data:`UNLIMITED_CHUNK`. The same cap applies to huge finite maxima: a
smaller PDU is always permitted, and memory stays bounded either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from pacsref.ul.constants import MINIMUM_PEER_MAX_PDU
from pacsref.ul.events import PresentationDataValue

__all__ = ["PDV_OVERHEAD", "UNLIMITED_CHUNK", "fragment_message", "max_fragment_length"]

#: Bytes of a P-DATA-TF variable field taken by one PDV item besides its data.
PDV_OVERHEAD = 6
#: Largest fragment we produce (when the peer allows more, or no limit).
UNLIMITED_CHUNK = 1 << 20


def max_fragment_length(peer_max_pdu: int) -> int:
    """Largest PDV data length for a peer Maximum Length Received value.

    Raises ValueError for a nonzero maximum below 7 (PS3.8 D.1 cannot be
    honoured: not even one data byte fits).
    """
    if peer_max_pdu == 0:
        return UNLIMITED_CHUNK
    if peer_max_pdu < MINIMUM_PEER_MAX_PDU:
        raise ValueError(
            f"peer maximum PDU length {peer_max_pdu} cannot carry a PDV "
            f"(needs at least {MINIMUM_PEER_MAX_PDU}: 6 bytes of PDV item header + data)"
        )
    return min(peer_max_pdu - PDV_OVERHEAD, UNLIMITED_CHUNK)


def _split(
    context_id: int, is_command: bool, data: bytes | bytearray | memoryview, size: int
) -> Iterator[PresentationDataValue]:
    length = len(data)
    if length <= size:
        yield PresentationDataValue(context_id, is_command, True, bytes(data))
        return
    view = memoryview(data)
    last_start = length - (length - 1) % size - 1
    for start in range(0, last_start, size):
        yield PresentationDataValue(
            context_id, is_command, False, bytes(view[start : start + size])
        )
    yield PresentationDataValue(context_id, is_command, True, bytes(view[last_start:]))


def _split_stream(context_id: int, stream: BinaryIO, size: int) -> Iterator[PresentationDataValue]:
    # Read one chunk ahead: only then do we know whether the current one is last.
    pending = stream.read(size)
    while True:
        following = stream.read(size) if pending else b""
        if not following:
            yield PresentationDataValue(context_id, False, True, bytes(pending))
            return
        yield PresentationDataValue(context_id, False, False, bytes(pending))
        pending = following


def fragment_message(
    context_id: int,
    command_bytes: bytes,
    dataset: bytes | bytearray | memoryview | BinaryIO | None,
    peer_max_pdu: int,
) -> Iterator[PresentationDataValue]:
    """Yield the PDVs of one message: command fragments, then data set fragments.

    Each PDV is meant for its own P-DATA-TF PDU, whose variable field then
    stays within ``peer_max_pdu`` (0 = unlimited). The last command fragment
    and the last data set fragment have ``is_last`` set (PS3.8 E.2).
    ``dataset`` None means the command announced no data set; an empty data
    set still yields one (empty) last fragment, because the receiver waits
    for it once the command said a data set follows. A file-like data set is
    read chunk by chunk from its current position, never as a whole.

    Validation happens on the call, not on the first ``next()``, so a bad
    ``peer_max_pdu`` fails where the message is built.
    """
    size = max_fragment_length(peer_max_pdu)
    if dataset is None and len(command_bytes) <= size:
        # The common case (C-ECHO, every response without a data set).
        return iter((PresentationDataValue(context_id, True, True, bytes(command_bytes)),))
    return _fragments(context_id, command_bytes, dataset, size)


def _fragments(
    context_id: int,
    command_bytes: bytes,
    dataset: bytes | bytearray | memoryview | BinaryIO | None,
    size: int,
) -> Iterator[PresentationDataValue]:
    yield from _split(context_id, True, command_bytes, size)
    if dataset is None:
        return
    if isinstance(dataset, bytes | bytearray | memoryview):
        yield from _split(context_id, False, dataset, size)
    else:
        yield from _split_stream(context_id, dataset, size)
