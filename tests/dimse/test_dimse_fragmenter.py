"""fragment_message: outgoing messages as PDVs within the peer's max PDU (PS3.8 9.3.5, D.1)."""

from __future__ import annotations

import os
from io import BytesIO

import pytest
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE

from pacsref.dimse import (
    PDV_OVERHEAD,
    UNLIMITED_CHUNK,
    decode_command,
    encode_command,
    fragment_message,
    max_fragment_length,
)
from pacsref.ul.events import PresentationDataValue as PDV

COMMAND = encode_command(
    {
        0x0002: "1.2.840.10008.5.1.4.1.1.2",
        0x0100: 0x0001,
        0x0110: 5,
        0x0700: 0,
        0x0800: 0x0001,
        0x1000: "1.2.3.4",
    }
)


def variable_field_length(pdv: PDV) -> int:
    """Length of a P-DATA-TF variable field holding just this PDV (PS3.8 9.3.5.1)."""
    return 4 + 1 + 1 + len(pdv.data)


@pytest.mark.parametrize("peer_max", [7, 8, 9, 64, 100, 4096, 16384])
@pytest.mark.parametrize("dataset_length", [0, 1, 93, 94, 95, 10_000])
def test_pdu_never_exceeds_peer_maximum(peer_max: int, dataset_length: int) -> None:
    """Every PDV's PDU variable field is <= the peer max, and no fragment is wastefully small."""
    dataset = os.urandom(dataset_length)

    pdvs = list(fragment_message(1, COMMAND, dataset, peer_max))

    assert all(variable_field_length(p) <= peer_max for p in pdvs)
    assert all(len(p.data) == peer_max - PDV_OVERHEAD for p in pdvs if not p.is_last)
    assert b"".join(p.data for p in pdvs if p.is_command) == COMMAND
    assert b"".join(p.data for p in pdvs if not p.is_command) == dataset


def test_command_fragments_come_first_and_last_bits_are_set_once_each() -> None:
    """Command PDVs precede data PDVs; exactly one last command and one last data fragment."""
    pdvs = list(fragment_message(3, COMMAND, b"d" * 500, 50))

    kinds = [p.is_command for p in pdvs]
    assert kinds == sorted(kinds, reverse=True)
    command = [p for p in pdvs if p.is_command]
    data = [p for p in pdvs if not p.is_command]
    assert [p.is_last for p in command] == [False] * (len(command) - 1) + [True]
    assert [p.is_last for p in data] == [False] * (len(data) - 1) + [True]
    assert {p.context_id for p in pdvs} == {3}


def test_no_dataset_yields_only_command_fragments() -> None:
    """dataset None (CommandDataSetType 0x0101) produces no data set PDV at all."""
    pdvs = list(fragment_message(1, COMMAND, None, 16384))

    assert pdvs == [PDV(1, True, True, COMMAND)]


def test_empty_dataset_still_gets_one_last_fragment() -> None:
    """An announced but empty data set ends with one empty last data PDV."""
    pdvs = list(fragment_message(1, COMMAND, b"", 16384))

    assert pdvs[-1] == PDV(1, False, True, b"")


def test_zero_means_unlimited_but_memory_stays_bounded() -> None:
    """Peer max 0: the command goes whole; a large data set is cut at UNLIMITED_CHUNK."""
    dataset = b"x" * (UNLIMITED_CHUNK * 2 + 10)

    pdvs = list(fragment_message(1, COMMAND, dataset, 0))

    assert pdvs[0] == PDV(1, True, True, COMMAND)
    assert [len(p.data) for p in pdvs[1:]] == [UNLIMITED_CHUNK, UNLIMITED_CHUNK, 10]
    assert max_fragment_length(0) == UNLIMITED_CHUNK
    assert max_fragment_length(0xFFFFFFFF) == UNLIMITED_CHUNK


@pytest.mark.parametrize("peer_max", [1, 2, 6])
def test_tiny_peer_maximum_is_refused_immediately(peer_max: int) -> None:
    """A nonzero max below 7 cannot carry a PDV: ValueError at the call, not on iteration."""
    with pytest.raises(ValueError, match=rf"peer maximum PDU length {peer_max} cannot carry"):
        fragment_message(1, COMMAND, None, peer_max)


def test_file_like_dataset_is_read_in_chunks() -> None:
    """A stream is read chunk by chunk (never read() whole) and reproduced exactly."""
    content = os.urandom(50_000)

    class CountingStream(BytesIO):
        """Records the size asked of every read()."""

        sizes: list[int]

        def read(self, size: int | None = -1) -> bytes:
            self.sizes.append(-1 if size is None else size)
            return super().read(size)

    stream = CountingStream(content)
    stream.sizes = []

    pdvs = list(fragment_message(1, COMMAND, stream, 4096))

    assert b"".join(p.data for p in pdvs if not p.is_command) == content
    assert all(0 < size <= 4096 - PDV_OVERHEAD for size in stream.sizes)
    assert [p.is_last for p in pdvs if not p.is_command][-2:] == [False, True]


def test_empty_stream_yields_one_empty_last_fragment() -> None:
    """A zero-length stream still terminates the announced data set."""
    pdvs = list(fragment_message(1, COMMAND, BytesIO(b""), 1000))

    assert pdvs[-1] == PDV(1, False, True, b"")


@pytest.mark.parametrize("peer_max", [16, 100, 16384])
def test_fragments_match_pynetdicom_fragmentation(peer_max: int) -> None:
    """Our fragment boundaries equal pynetdicom's encode_msg for the same max PDU length."""
    dataset = os.urandom(3000)
    primitive = C_STORE()
    primitive.MessageID = 5
    primitive.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    primitive.AffectedSOPInstanceUID = "1.2.3.4"
    primitive.Priority = 0
    primitive.DataSet = BytesIO(dataset)
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    theirs = [
        value
        for pdata in message.encode_msg(1, peer_max)
        for _, value in pdata.presentation_data_value_list
    ]
    command = encode_command(decode_command(b"".join(v[1:] for v in theirs if v[0] & 1)))

    ours = [
        bytes([p.is_command | p.is_last << 1]) + p.data
        for p in fragment_message(1, command, dataset, peer_max)
    ]

    assert ours == theirs
