"""PDU framing: cut a byte stream into whole PDUs (PS3.8 9.3.1).

The framer buffers only what has arrived; a declared length is checked
against limits before any body is awaited and is never used to allocate
memory. Limits:

- an unknown PDU type is refused from its header alone (Evt19,
  unrecognized-PDU), so a peer cannot make us wait for a huge bogus body;
- a P-DATA-TF longer than the Maximum Length we announced is a protocol error
  (PS3.8 D.1, reason invalid-PDU-parameter-value);
- association PDUs are bounded by MAXIMUM_ASSOCIATION_PDU; release and abort
  PDUs must be exactly 4 bytes long.

A P-DATA-TF longer than :data:`STREAM_ABOVE` is never held whole: with ``max_pdu_length`` 0
(no limit) or a large one, a peer may send a whole data set in one PDU (pynetdicom does, when
the acceptor announces no limit), and buffering it would hold that data set in memory. Such a
PDU is passed on as it arrives, as a series of smaller P-DATA-TF bodies that carry the same PDV
items cut into pieces: every piece keeps its PDV's presentation context and command/data bit,
and only the last piece of a PDV keeps its last-fragment bit. For the DIMSE layer that is the
same message in more fragments (PS3.8 E.2 allows any fragmentation).
"""

from __future__ import annotations

from struct import Struct

from pacsref.ul.constants import (
    MAXIMUM_ASSOCIATION_PDU,
    PDU_HEADER_LENGTH,
    AbortReason,
    PDUType,
)
from pacsref.ul.errors import MalformedPDU

_HEADER = Struct(">BxL")
_PDV_HEADER = Struct(">LBB")
_PDV_HEADER_LENGTH = 6
_LAST_FRAGMENT = 0x02

#: A P-DATA-TF longer than this is passed on in pieces as it arrives, not buffered whole.
STREAM_ABOVE = 1 << 20
_KNOWN_TYPES = frozenset(int(t) for t in PDUType)
_P_DATA_TF = int(PDUType.P_DATA_TF)
_FIXED_LENGTH = {
    PDUType.A_ASSOCIATE_RJ: 4,
    PDUType.A_RELEASE_RQ: 4,
    PDUType.A_RELEASE_RP: 4,
    PDUType.A_ABORT: 4,
}


class PDUFramer:
    """Accumulates bytes and yields ``(PDUType, body)`` for each complete PDU.

    The received bytes are kept as one immutable ``bytes`` object and a read
    offset, rather than a ``bytearray`` that grows on every read and shifts on
    every PDU: a 64 KiB read holding four 16 KiB P-DATA-TF PDUs then costs no
    copy to buffer and no copy to cut, only the partial PDU at its end is
    carried into the next read. A P-DATA-TF body comes back as a ``memoryview``
    of that buffer (its decoder copies each PDV's data once); every other PDU
    body as ``bytes``.

    A PDU whose header has arrived but whose body has not is *parked*: the reads
    that follow are kept in a list and joined once, when the declared length is
    complete. Concatenating on every read instead would copy a 128 KiB PDU that
    arrives in 16 KiB TLS records eight times over (quadratic in the PDU length).

    Args:
        max_pdata_length: the Maximum Length we announced (0 = unlimited);
            a P-DATA-TF whose length field exceeds it is refused.
    """

    __slots__ = (
        "_data",
        "_parked",
        "_parked_need",
        "_parked_size",
        "_pdv_context",
        "_pdv_control",
        "_pdv_left",
        "_position",
        "_stream_left",
        "max_pdata_length",
    )

    def __init__(self, max_pdata_length: int) -> None:
        self._data = b""
        self._position = 0
        self._parked: list[bytes] = []  # the reads of a parked PDU, oldest first
        self._parked_size = 0  # bytes in _parked
        self._parked_need = 0  # the parked PDU's whole size, header included
        # A P-DATA-TF passed on in pieces (module docstring): body bytes still to come, and
        # the PDV in progress (data bytes still to come, None: its header comes next).
        self._stream_left = 0
        self._pdv_left: int | None = None
        self._pdv_context = 0
        self._pdv_control = 0
        self.max_pdata_length = max_pdata_length

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete PDU."""
        if self._parked:
            return self._parked_size
        return len(self._data) - self._position

    def feed(self, data: bytes) -> None:
        """Append bytes received from the transport."""
        if self._parked:
            chunk = bytes(data)
            self._parked.append(chunk)
            self._parked_size += len(chunk)
            if self._parked_size >= self._parked_need:  # complete: one copy for all its reads
                self._data = b"".join(self._parked)
                self._position = 0
                self._parked = []
                self._parked_size = 0
            return
        position = self._position
        if position == len(self._data):
            self._data = bytes(data)  # bytes(bytes) is the object itself: no copy
        else:
            self._data = self._data[position:] + data
        self._position = 0

    def next_pdu(self) -> tuple[PDUType, bytes | memoryview] | None:
        """Return the next complete PDU, or None if more bytes are needed.

        Raises:
            MalformedPDU: the header names an unknown type or an impossible
                length; the stream cannot be resynchronised after that.
        """
        if self._parked:
            return None
        if self._stream_left:
            return self._next_piece()
        data = self._data
        start = self._position
        available = len(data) - start
        if available < PDU_HEADER_LENGTH:
            if available and data[start] not in _KNOWN_TYPES:
                raise _unrecognized(data[start])
            return self._wait()
        raw_type, length = _HEADER.unpack_from(data, start)
        if raw_type != _P_DATA_TF or (self.max_pdata_length and length > self.max_pdata_length):
            self._check_header(raw_type, length)
        end = start + PDU_HEADER_LENGTH + length
        if len(data) < end:
            if raw_type == _P_DATA_TF and length > STREAM_ABOVE:
                self._position = start + PDU_HEADER_LENGTH
                self._stream_left = length
                self._pdv_left = None
                return self._next_piece()
            self._park(data[start:] if start else data, end - start)
            return None
        self._position = end
        if raw_type == _P_DATA_TF:
            return PDUType.P_DATA_TF, memoryview(data)[start + PDU_HEADER_LENGTH : end]
        return PDUType(raw_type), data[start + PDU_HEADER_LENGTH : end]

    def _next_piece(self) -> tuple[PDUType, bytes] | None:
        """The next piece of the P-DATA-TF being streamed, or None until more bytes come.

        Raises:
            MalformedPDU: a PDV item whose header is impossible (as ``decode_p_data`` would
                find it in the whole PDU).
        """
        data = self._data
        position = self._position
        items: list[bytes] = []
        while self._stream_left:
            available = len(data) - position
            if self._pdv_left is None:
                # Before waiting for more bytes: a PDU whose last bytes cannot hold a PDV
                # header is malformed now, whatever comes next (a peer may send nothing).
                if self._stream_left < _PDV_HEADER_LENGTH:
                    raise MalformedPDU(
                        f"P-DATA-TF: truncated PDV item header ({self._stream_left} bytes left)"
                    )
                if available < _PDV_HEADER_LENGTH:
                    break
                length, context, control = _PDV_HEADER.unpack_from(data, position)
                if length < 2 or 4 + length > self._stream_left:
                    raise MalformedPDU(
                        f"P-DATA-TF: PDV item length {length} does not fit the PDU "
                        f"({self._stream_left} bytes left)"
                    )
                position += _PDV_HEADER_LENGTH
                self._stream_left -= _PDV_HEADER_LENGTH
                self._pdv_left = length - 2
                self._pdv_context, self._pdv_control = context, control
                if self._pdv_left == 0:  # an empty PDV: passed on as it is
                    items.append(_PDV_HEADER.pack(2, context, control))
                    self._pdv_left = None
                continue
            if not available:
                break
            take = min(self._pdv_left, available)
            self._pdv_left -= take
            self._stream_left -= take
            control = (
                self._pdv_control if not self._pdv_left else (self._pdv_control & ~_LAST_FRAGMENT)
            )
            items.append(_PDV_HEADER.pack(take + 2, self._pdv_context, control))
            items.append(data[position : position + take])
            position += take
            if not self._pdv_left:
                self._pdv_left = None
        self._position = position
        if not items:
            self._wait()
            return None
        return PDUType.P_DATA_TF, b"".join(items)

    def _wait(self) -> None:
        """Keep only the unconsumed bytes while waiting for more.

        So that an idle connection does not hold on to its last whole read
        (64 KiB per connection with Twisted's read size).
        """
        if self._position:
            self._data = self._data[self._position :]
            self._position = 0

    def _park(self, data: bytes, pdu_size: int) -> None:
        """Set ``data`` (a header and part of its body) aside until ``pdu_size`` bytes of the
        PDU have arrived; the PDUs already consumed from the last read are released."""
        self._parked = [data]
        self._parked_size = len(data)
        self._parked_need = pdu_size
        self._data = b""
        self._position = 0

    def _check_header(self, raw_type: int, length: int) -> None:
        if raw_type not in _KNOWN_TYPES:
            raise _unrecognized(raw_type)
        pdu_type = PDUType(raw_type)
        fixed = _FIXED_LENGTH.get(pdu_type)
        if fixed is not None and length != fixed:
            raise MalformedPDU(f"{pdu_type.label} PDU length is {length}, PS3.8 requires {fixed}")
        if pdu_type is PDUType.P_DATA_TF:
            limit = self.max_pdata_length
            if limit and length > limit:
                raise MalformedPDU(
                    f"P-DATA-TF PDU length {length} exceeds the maximum length {limit} "
                    "we announced (PS3.8 D.1)"
                )
        elif length > MAXIMUM_ASSOCIATION_PDU:
            raise MalformedPDU(
                f"{pdu_type.name} PDU length {length} exceeds the {MAXIMUM_ASSOCIATION_PDU} "
                "bytes we accept for association PDUs"
            )


def frame(pdu_type: PDUType, body: bytes) -> bytes:
    """Prefix a PDU body with its 6-byte header."""
    return _HEADER.pack(pdu_type, len(body)) + body


#: The first byte of a TLS handshake record (a ClientHello): no PDU type, but what a peer
#: configured for TLS sends to a port without it, which the log should say.
_TLS_HANDSHAKE_RECORD = 0x16


def _unrecognized(raw_type: int) -> MalformedPDU:
    hint = ""
    if raw_type == _TLS_HANDSHAKE_RECORD:
        hint = " (the start of a TLS handshake: the peer uses TLS, this port does not)"
    return MalformedPDU(
        f"unrecognized PDU type 0x{raw_type:02X}{hint}", AbortReason.UNRECOGNIZED_PDU
    )
