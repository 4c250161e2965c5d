"""PDU codec, cross-checked against pynetdicom's independent encoder/decoder."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pynetdicom import pdu as pn_pdu
from pynetdicom import pdu_primitives as pp
from pynetdicom.presentation import build_context

from pacsref.dimse import DimseProtocolError, MessageAssembler, encode_command
from pacsref.ul import codec
from pacsref.ul.constants import AbortReason, AbortSource, ContextResult, PDUType
from pacsref.ul.errors import MalformedPDU
from pacsref.ul.events import (
    AssociateAccept,
    AssociateRequest,
    DataTransfer,
    PresentationContextProposal,
    PresentationContextResult,
    PresentationDataValue,
    RoleSelection,
    UserInformation,
)
from pacsref.ul.framing import STREAM_ABOVE, PDUFramer

from .helpers import EXPLICIT, REQUEST, VERIFICATION


def _pynetdicom_rq() -> bytes:
    primitive = pp.A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = "SCU"
    primitive.called_ae_title = "ANY-SCP"
    context = build_context(VERIFICATION)
    context.context_id = 3
    primitive.presentation_context_definition_list = [context]
    max_length = pp.MaximumLengthNotification()
    max_length.maximum_length_received = 32768
    uid = pp.ImplementationClassUIDNotification()
    uid.implementation_class_uid = "1.2.3.4"
    version = pp.ImplementationVersionNameNotification()
    version.implementation_version_name = "PYNET"
    role = pp.SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = "1.2.840.10008.5.1.4.1.1.2"
    role.scu_role = True
    role.scp_role = False
    window = pp.AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked = 5
    window.maximum_number_operations_performed = 3
    primitive.user_information = [max_length, uid, version, role, window]
    pdu = pn_pdu.A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return pdu.encode()


def test_decodes_pynetdicom_associate_rq() -> None:
    """An A-ASSOCIATE-RQ encoded by pynetdicom decodes to the same values."""
    rq = codec.decode_associate_rq(_pynetdicom_rq()[6:])
    assert (rq.called_ae_title, rq.calling_ae_title) == ("ANY-SCP", "SCU")
    (context,) = rq.presentation_contexts
    assert context.context_id == 3 and context.abstract_syntax == VERIFICATION
    assert "1.2.840.10008.1.2" in context.transfer_syntaxes
    info = rq.user_information
    assert info.max_pdu_length == 32768
    assert info.implementation_class_uid == "1.2.3.4"
    assert info.implementation_version_name == "PYNET"
    assert info.async_operations == (5, 3)
    assert info.role_selections == (RoleSelection("1.2.840.10008.5.1.4.1.1.2", True, False),)


def test_our_associate_rq_decodes_in_pynetdicom() -> None:
    """pynetdicom reads back what we encode for an A-ASSOCIATE-RQ."""
    pdu = pn_pdu.A_ASSOCIATE_RQ()
    pdu.decode(codec.encode_associate_rq(REQUEST))
    primitive = pdu.to_primitive()
    assert primitive.called_ae_title == "PACSREF"
    assert primitive.calling_ae_title == "MODALITY"
    assert primitive.maximum_length_received == 16384
    assert codec.decode_associate_rq(codec.encode_associate_rq(REQUEST)[6:]) == REQUEST


def test_our_associate_ac_decodes_in_pynetdicom() -> None:
    """pynetdicom reads back our A-ASSOCIATE-AC, rejected contexts included."""
    ac = AssociateAccept(
        called_ae_title="PACSREF",
        calling_ae_title="SCU",
        presentation_contexts=(
            PresentationContextResult(1, ContextResult.ACCEPTANCE, EXPLICIT),
            PresentationContextResult(3, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED),
        ),
        user_information=UserInformation(
            16384,
            "1.2.3",
            "V1",
            async_operations=(1, 1),
            role_selections=(RoleSelection("1.2.840.10008.5.1.4.1.1.2", True, False),),
        ),
    )
    raw = codec.encode_associate_ac(ac)
    pdu = pn_pdu.A_ASSOCIATE_AC()
    pdu.decode(raw)
    results = {c.context_id: c.result for c in pdu.presentation_context}
    assert results == {1: 0, 3: 3}
    assert pdu.user_information.maximum_length == 16384
    assert (
        codec.decode_associate_ac(raw[6:]).presentation_contexts[0] == ac.presentation_contexts[0]
    )


def test_p_data_round_trip_with_pynetdicom() -> None:
    """P-DATA-TF PDVs survive our encoder and pynetdicom's decoder, and the reverse."""
    transfer = DataTransfer(
        (
            PresentationDataValue(1, True, False, b"cmd"),
            PresentationDataValue(1, False, True, b"ds"),
        )
    )
    raw = codec.encode_p_data(transfer)
    pdu = pn_pdu.P_DATA_TF()
    pdu.decode(raw)
    values = [bytes(v.presentation_data_value) for v in pdu.presentation_data_value_items]
    assert values == [b"\x01cmd", b"\x02ds"]
    assert codec.decode_p_data(pdu.encode()[6:]) == transfer


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (codec.encode_abort(AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU), (2, 2)),
        (codec.encode_abort(AbortSource.SERVICE_USER, AbortReason.UNEXPECTED_PDU), (0, 0)),
    ],
)
def test_abort_codes(encoded: bytes, expected: tuple[int, int]) -> None:
    """A-ABORT carries the provider's reason, and reason 0 for a user abort (PS3.8 9.3.8)."""
    pdu = pn_pdu.A_ABORT_RQ()
    pdu.decode(encoded)
    assert (pdu.source, pdu.reason_diagnostic) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x00" * 10, "shorter than the 68-byte fixed part"),
        (bytes(68) + b"\x10\x00\x00\x05abc", "declares length 5"),
        (bytes(4) + b"CALLED\\         " + bytes(16) + bytes(32), "not allowed in an AE title"),
    ],
)
def test_malformed_rq_is_named(body: bytes, message: str) -> None:
    """A broken A-ASSOCIATE-RQ raises MalformedPDU naming what is wrong."""
    with pytest.raises(MalformedPDU, match=message):
        codec.decode_associate_rq(body)


def test_rq_without_user_information_is_malformed() -> None:
    """The user information item with Maximum Length is mandatory (PS3.7 D.1)."""
    raw = _pynetdicom_rq()[6:]
    cut = raw.index(b"\x50\x00")
    with pytest.raises(MalformedPDU, match="user information item"):
        codec.decode_associate_rq(raw[:cut])


def _item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BxH", item_type, len(value)) + value


@pytest.mark.parametrize(
    ("repeated", "message"),
    [
        (_item(0x51, struct.pack(">L", 7)), r"more than one maximum length sub-item \(0x51\)"),
        (_item(0x52, b"1.2.3.5"), r"more than one implementation class UID sub-item \(0x52\)"),
        (_item(0x55, b"OTHER"), r"more than one implementation version name sub-item"),
    ],
)
def test_repeated_single_user_information_sub_item_is_malformed(
    repeated: bytes, message: str
) -> None:
    """A second maximum length (say 7 after 32768) must not silently win (PS3.7 Annex D)."""
    raw = _pynetdicom_rq()[6:]
    at = raw.index(b"\x50\x00")
    (length,) = struct.unpack_from(">H", raw, at + 2)
    user_info = raw[at + 4 : at + 4 + length] + repeated
    body = raw[:at] + _item(0x50, user_info) + raw[at + 4 + length :]
    with pytest.raises(MalformedPDU, match=message):
        codec.decode_associate_rq(body)


@pytest.mark.parametrize("item_type", [0x10, 0x50])
def test_repeated_application_context_or_user_information_is_malformed(item_type: int) -> None:
    """PS3.8 Table 9-11: one application context item, one user information item."""
    raw = _pynetdicom_rq()[6:]
    at = raw.index(bytes([item_type, 0]))
    (length,) = struct.unpack_from(">H", raw, at + 2)
    with pytest.raises(MalformedPDU, match=rf"more than one .* item \(0x{item_type:02X}\)"):
        codec.decode_associate_rq(raw + raw[at : at + 4 + length])


def test_framer_refuses_oversized_p_data_from_header() -> None:
    """A P-DATA-TF longer than our announced maximum is refused from its header alone."""
    framer = PDUFramer(16384)
    framer.feed(b"\x04\x00\x00\x00\x40\x01")
    with pytest.raises(MalformedPDU, match="exceeds the maximum length 16384"):
        framer.next_pdu()


def test_framer_does_not_allocate_declared_length() -> None:
    """A 4 GiB declared association PDU is refused; a plausible one waits for bytes."""
    framer = PDUFramer(0)
    framer.feed(b"\x01\x00\xff\xff\xff\xff")
    with pytest.raises(MalformedPDU, match="exceeds"):
        framer.next_pdu()
    framer = PDUFramer(0)
    framer.feed(b"\x04\x00\x7f\xff\xff\xff")
    assert framer.next_pdu() is None
    # Longer than STREAM_ABOVE: its header is taken and its PDVs will pass as they come.
    assert framer.buffered == 0


def test_framer_splits_coalesced_and_fragmented_pdus() -> None:
    """PDUs arriving one byte at a time, or several in one read, are framed the same."""
    stream = codec.RELEASE_RQ + codec.RELEASE_RP
    framer = PDUFramer(0)
    seen = []
    for byte in stream:
        framer.feed(bytes([byte]))
        while (pdu := framer.next_pdu()) is not None:
            seen.append(pdu[0])
    assert seen == [PDUType.A_RELEASE_RQ, PDUType.A_RELEASE_RP]


def _p_data_tf(body_length: int) -> bytes:
    """A P-DATA-TF PDU with one PDV of ``body_length - 6`` data bytes (context 1, last fragment)."""
    data = bytes(range(256)) * (body_length // 256 + 1)
    item = (body_length - 4).to_bytes(4, "big") + b"\x01\x02" + data[: body_length - 6]
    return b"\x04\x00" + body_length.to_bytes(4, "big") + item


@pytest.mark.parametrize("read_size", [1, 7, 4096, 16384, 65536, 131078, 300000])
def test_framer_reassembles_a_large_pdu_from_reads_of_any_size(read_size: int) -> None:
    """A 128 KiB P-DATA-TF between two release PDUs comes out whole and byte-exact however the
    stream is cut, including the reads that end one parked PDU and start the next."""
    big = _p_data_tf(131072)
    stream = codec.RELEASE_RQ + big + codec.RELEASE_RP + big
    framer = PDUFramer(131072)
    seen: list[tuple[PDUType, bytes]] = []
    fed = 0
    for start in range(0, len(stream), read_size):
        chunk = stream[start : start + read_size]
        framer.feed(chunk)
        fed += len(chunk)
        while (pdu := framer.next_pdu()) is not None:
            seen.append((pdu[0], bytes(pdu[1])))
        assert framer.buffered == fed - sum(len(body) + 6 for _, body in seen)
    assert seen == [
        (PDUType.A_RELEASE_RQ, codec.RELEASE_RQ[6:]),
        (PDUType.P_DATA_TF, big[6:]),
        (PDUType.A_RELEASE_RP, codec.RELEASE_RP[6:]),
        (PDUType.P_DATA_TF, big[6:]),
    ]
    assert framer.buffered == 0


def _pdv(context: int, control: int, data: bytes) -> bytes:
    return (len(data) + 2).to_bytes(4, "big") + bytes([context, control]) + data


@pytest.mark.parametrize(
    ("head_read", "read_size"),
    [(1, 65536), (5, 65536), (6, 4096), (7, 65536), (4096, 4096), (65536, 65536),
     (1 << 20, 1 << 20)],
)  # fmt: skip
def test_a_p_data_tf_above_stream_above_passes_in_pieces_never_held_whole(
    head_read: int, read_size: int
) -> None:
    """A 3 MiB P-DATA-TF (announced limit 0) with a command PDV, an empty PDV and a data set
    PDV: its pieces are P-DATA-TF bodies whose PDVs, joined per PDV, are the originals; only a
    PDV's last piece keeps its last-fragment bit; at most one read is ever buffered. The first
    kilobyte (the PDU header and every PDV header) arrives in reads of ``head_read`` bytes."""
    command = bytes(range(200))
    dataset = bytes(range(256)) * (3 * 4096)
    body = _pdv(1, 0x03, command) + _pdv(3, 0x00, b"") + _pdv(1, 0x02, dataset)
    pdu = b"\x04\x00" + len(body).to_bytes(4, "big") + body
    assert len(body) > STREAM_ABOVE
    stream = pdu + codec.RELEASE_RQ
    reads = [stream[i : i + head_read] for i in range(0, 1024, head_read)]
    start = len(b"".join(reads))
    reads += [stream[i : i + read_size] for i in range(start, len(stream), read_size)]
    framer = PDUFramer(0)
    pieces: list[PresentationDataValue] = []
    others = []
    for chunk in reads:
        framer.feed(chunk)
        while (frame := framer.next_pdu()) is not None:
            if frame[0] is PDUType.P_DATA_TF:
                pieces.extend(codec.decode_p_data(frame[1]).values)
            else:
                others.append(frame[0])
        assert framer.buffered <= len(chunk) + 6
    assert others == [PDUType.A_RELEASE_RQ]
    whole: list[tuple[int, bool, list[bytes], bool]] = []
    for piece in pieces:
        if whole and whole[-1][0] == piece.context_id and not whole[-1][3]:
            context, is_command, parts, _ = whole.pop()
            whole.append((context, is_command, [*parts, bytes(piece.data)], piece.is_last))
        else:
            whole.append((piece.context_id, piece.is_command, [bytes(piece.data)], piece.is_last))
    assert [(c, cmd, b"".join(d), last) for c, cmd, d, last in whole] == [
        (1, True, command, True),
        (3, False, b"", False),
        (1, False, dataset, True),
    ]
    assert sum(1 for p in pieces if p.is_last) == 2  # no piece but a PDV's last is "last"


def test_a_streamed_p_data_tf_with_an_impossible_pdv_is_malformed() -> None:
    """The PDV checks decode_p_data makes on a whole PDU apply to a streamed one."""
    body = _pdv(1, 0x02, b"x" * (STREAM_ABOVE + 10))
    bad = body[:0] + (STREAM_ABOVE + 100).to_bytes(4, "big") + body[4:]
    framer = PDUFramer(0)
    framer.feed(b"\x04\x00" + len(bad).to_bytes(4, "big") + bad[:4096])
    with pytest.raises(MalformedPDU, match=r"PDV item length .* does not fit the PDU"):
        framer.next_pdu()


def test_a_streamed_p_data_tf_ending_too_short_for_a_pdv_is_malformed_at_once() -> None:
    """A streamed PDU whose last 1-5 bytes cannot hold a PDV header is malformed when those
    bytes arrive, not when the peer sends more (it may send nothing, and the association
    then ended by the client timeout, under another reason)."""
    pdv = _pdv(1, 0x02, b"x" * (STREAM_ABOVE + 10))
    body = pdv + b"\0\0\0"
    pdu = b"\x04\x00" + len(body).to_bytes(4, "big") + body
    framer = PDUFramer(0)
    framer.feed(pdu[:4096])  # streamed from here on
    assert framer.next_pdu() is not None
    framer.feed(pdu[4096:])
    with pytest.raises(MalformedPDU, match=r"truncated PDV item header \(3 bytes left\)"):
        while framer.next_pdu() is not None:
            pass


def test_framer_parks_a_partial_pdu_without_joining_each_read() -> None:
    """While a PDU's body is incomplete its reads are only listed: next_pdu answers None
    without looking at them, and the whole PDU is joined once, on the read that completes it."""
    big = _p_data_tf(131072)
    framer = PDUFramer(131072)
    framer.feed(big[:100])
    assert framer.next_pdu() is None
    for start in range(100, 130100, 1000):
        framer.feed(big[start : start + 1000])
        assert framer.next_pdu() is None
    assert framer._data == b""  # nothing concatenated yet
    assert framer.buffered == 130100
    framer.feed(big[130100:] + codec.RELEASE_RQ)
    assert framer.next_pdu() == (PDUType.P_DATA_TF, memoryview(big)[6:])
    assert framer.next_pdu() == (PDUType.A_RELEASE_RQ, codec.RELEASE_RQ[6:])
    assert framer.next_pdu() is None


def test_proposed_names_that_are_not_uids_decode_as_text() -> None:
    """A requestor's odd syntax names are kept for negotiation to refuse (bytes past
    ASCII as escapes, padding stripped), and an empty transfer syntax item is still one."""
    request = AssociateRequest(
        called_ae_title="ANY-SCP",
        calling_ae_title="SCU",
        presentation_contexts=(PresentationContextProposal(1, "7.7.7.7", ("8.8",)),),
        user_information=UserInformation(16384, "1.2.3.4"),
    )
    encoded = codec.encode_associate_rq(request)[6:]
    body = encoded.replace(b"7.7.7.7", b"1.2.\xe9 \x00").replace(b"8.8", b"\x00\x00 ")
    (context,) = codec.decode_associate_rq(body).presentation_contexts
    assert (context.abstract_syntax, context.transfer_syntaxes) == ("1.2.\\xe9", ("",))


def test_an_accepted_transfer_syntax_that_is_not_a_uid_is_malformed() -> None:
    """What an acceptor accepted must be a UID we proposed: our requestor side stays strict."""
    accept = AssociateAccept(
        called_ae_title="ANY-SCP",
        calling_ae_title="SCU",
        presentation_contexts=(
            PresentationContextResult(1, ContextResult.ACCEPTANCE, "1.2.840.10008.1.29"),
        ),
        user_information=UserInformation(16384, "1.2.3.4"),
    )
    encoded = codec.encode_associate_ac(accept)[6:]
    odd = encoded.replace(b"1.2.840.10008.1.29", b"1.2.840.10008.1.2x")
    with pytest.raises(MalformedPDU, match=r"syntax '1\.2\.840\.10008\.1\.2x' is not a UID"):
        codec.decode_associate_ac(odd)


def _body(pdvs: list[tuple[int, int, bytes]]) -> bytes:
    return b"".join(_pdv(context, control, data) for context, control, data in pdvs)


def _values(pdvs: list[tuple[int, int, bytes]]) -> tuple[PresentationDataValue, ...]:
    """What decoding every PDV item would give."""
    return tuple(
        PresentationDataValue(context, bool(control & 1), bool(control & 2), data)
        for context, control, data in pdvs
    )


def test_empty_data_fragments_after_a_data_fragment_are_left_out() -> None:
    """A P-DATA-TF of one 4 KiB data set PDV and 21,000 empty ones after it on the same
    context decodes to that one PDV, not 21,001 objects (5.6 MiB at once; 45 MiB for a 1 MiB
    PDU); empty ones in front of a last or a non-empty fragment do not change that."""
    data = bytes(range(256)) * 16
    pdvs = [(1, 0x00, data)] + [(1, 0x00, b"")] * 21000 + [(1, 0x04, b"")]  # reserved bit
    assert codec.decode_p_data(_body(pdvs)).values == _values(pdvs[:1])
    pdvs = [(3, 0x00, b"")] * 1000 + [(3, 0x00, b"ab")] + [(3, 0x00, b"")] * 9 + [(3, 0x02, b"")]
    expected = [pdvs[0], pdvs[1000], pdvs[-1]]
    assert codec.decode_p_data(_body(pdvs)).values == _values(expected)


@pytest.mark.parametrize(
    "pdvs",
    [
        [(1, 0x00, b"")],  # the first: the assembler may refuse it
        [(1, 0x01, b"x"), (1, 0x00, b"")],  # after a command fragment: refused there
        [(1, 0x00, b"x"), (3, 0x00, b"")],  # another context: refused as interleaved
        [(1, 0x02, b"x"), (1, 0x00, b"")],  # after the last: no data set in progress
        [(1, 0x00, b"x"), (1, 0x02, b"")],  # the last: completes the message
        [(1, 0x00, b"x"), (1, 0x01, b""), (1, 0x01, b"")],  # commands count as fragments
    ],
)
def test_empty_fragments_that_may_break_a_rule_are_kept(pdvs: list[tuple[int, int, bytes]]) -> None:
    assert codec.decode_p_data(_body(pdvs)).values == _values(pdvs)


_STORE_RQ = encode_command({
    0x0002: "1.2.840.10008.5.1.4.1.1.7", 0x0100: 0x0001, 0x0110: 5, 0x0700: 0, 0x0800: 0x0000,
    0x1000: "1.2.3.4",
})  # fmt: skip
_ECHO_RQ = encode_command({0x0002: "1.2.840.10008.1.1", 0x0100: 0x0030, 0x0110: 1, 0x0800: 0x0101})
_SOME_PDVS = [
    (1, 0x03, _STORE_RQ), (3, 0x03, _STORE_RQ), (1, 0x03, _ECHO_RQ), (5, 0x03, _ECHO_RQ),
    (1, 0x01, b""), (3, 0x01, b""), (1, 0x01, _STORE_RQ[:10]), (1, 0x03, _STORE_RQ[10:]),
    (1, 0x00, b""), (1, 0x00, b""), (1, 0x00, b"ab"), (1, 0x02, b""), (1, 0x02, b"cd"),
    (3, 0x00, b""), (3, 0x00, b"ef"), (3, 0x02, b""), (5, 0x00, b""), (1, 0x04, b""),
]  # fmt: skip


def _outcome(values: tuple[PresentationDataValue, ...]) -> tuple[object, ...]:
    """What the upper layer's context check and a message assembler make of ``values``."""
    accepted = {1: "1.2.840.10008.1.2", 3: "1.2.840.10008.1.2"}
    refused = [pdv.context_id for pdv in values if pdv.context_id not in accepted][:1]
    delivered: list[tuple[object, ...]] = []
    with tempfile.TemporaryDirectory() as spool:
        assembler = MessageAssembler(Path(spool), accepted)
        try:
            for pdv in values:
                message = assembler.feed(pdv)
                if message is not None:
                    path = message.dataset_path
                    data = path.read_bytes() if path is not None else None
                    delivered.append((message.context_id, message.command_field, data))
                    message.discard()
        except DimseProtocolError as exc:
            return refused, delivered, exc.detail
        finally:
            assembler.abort()
    return refused, delivered, None


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([[], [(1, 0x03, _STORE_RQ)], [(3, 0x03, _STORE_RQ)]]),
    st.lists(st.sampled_from(_SOME_PDVS), min_size=1, max_size=30),
)
def test_empty_fragments_left_out_change_nothing_for_the_assembler(
    start: list[tuple[int, int, bytes]], more: list[tuple[int, int, bytes]]
) -> None:
    """Whatever the PDVs around them, decoding without the empty ones it leaves out gives the
    same context check, the same messages and data sets, and the same error, as all of them
    (most sequences start with a C-STORE-RQ, so that a data set is in progress)."""
    pdvs = start + more
    decoded = codec.decode_p_data(_body(pdvs)).values
    assert _outcome(decoded) == _outcome(_values(pdvs))


# -- User Identity negotiation (PS3.7 D.3.3.7) --------------------------------------------------


def _rq_user_info(items: list[object]) -> bytes:
    """A pynetdicom A-ASSOCIATE-RQ body whose user information also carries ``items``."""
    primitive = pn_pdu.A_ASSOCIATE_RQ()
    primitive.decode(_pynetdicom_rq())
    prim = primitive.to_primitive()
    prim.user_information = list(prim.user_information) + items
    pdu = pn_pdu.A_ASSOCIATE_RQ()
    pdu.from_primitive(prim)
    return pdu.encode()[6:]


@pytest.mark.parametrize(
    ("identity_type", "primary", "secondary", "positive"),
    [
        (1, b"alice", None, False),
        (2, "j\u00f6rg".encode(), b"s3cret", True),
        (3, b"\x60\x82kerberos-ticket", None, True),
        (5, b"header.payload.signature", None, False),
    ],
)
def test_user_identity_from_pynetdicom(
    identity_type: int, primary: bytes, secondary: bytes | None, positive: bool
) -> None:
    """pynetdicom's User Identity sub-item (0x58) decodes field by field; re-encoded,
    pynetdicom reads the same fields back."""
    item = pp.UserIdentityNegotiation()
    item.user_identity_type = identity_type
    item.positive_response_requested = positive
    item.primary_field = primary
    if secondary is not None:
        item.secondary_field = secondary
    body = _rq_user_info([item])
    rq = codec.decode_associate_rq(body)
    identity = rq.user_information.user_identity
    assert identity is not None
    assert (identity.identity_type, identity.primary_field) == (identity_type, primary)
    assert identity.secondary_field == (secondary or b"")
    assert identity.positive_response_requested is positive
    ours = pn_pdu.A_ASSOCIATE_RQ()
    ours.decode(codec.encode_associate_rq(rq))
    [again] = [
        i for i in ours.to_primitive().user_information if isinstance(i, pp.UserIdentityNegotiation)
    ]
    assert (again.user_identity_type, again.primary_field) == (identity_type, primary)
    assert again.positive_response_requested is positive
    assert (again.secondary_field or b"") == (secondary or b"")
    assert b"s3cret" not in repr(rq).encode() and "s3cret" not in identity.describe()
    if identity_type == 2:
        assert (identity.username, identity.passcode) == ("j\u00f6rg", "s3cret")
        assert identity.describe() == "username and passcode 'j\u00f6rg'"


@pytest.mark.parametrize("response", [b"", b"server-ticket"])
def test_user_identity_response_read_by_pynetdicom(response: bytes) -> None:
    """Our A-ASSOCIATE-AC's Server-response (0x59) as pynetdicom decodes it, and back."""
    ac = AssociateAccept(
        called_ae_title="ANY-SCP",
        calling_ae_title="SCU",
        presentation_contexts=(PresentationContextResult(1, ContextResult.ACCEPTANCE, EXPLICIT),),
        user_information=UserInformation(
            16384, "1.2.826.0.1.3680043.9.1", user_identity_response=response
        ),
    )
    raw = codec.encode_associate_ac(ac)
    decoded = pn_pdu.A_ASSOCIATE_AC()
    decoded.decode(raw)
    [item] = [
        i
        for i in decoded.to_primitive().user_information
        if isinstance(i, pp.UserIdentityNegotiation)
    ]
    assert item.server_response == response
    again = codec.decode_associate_ac(raw[6:])
    assert again.user_information.user_identity_response == response


def _identity_body(sub: bytes) -> bytes:
    raw = _pynetdicom_rq()[6:]
    at = raw.index(b"\x50\x00")
    (length,) = struct.unpack_from(">H", raw, at + 2)
    user_info = raw[at + 4 : at + 4 + length] + sub
    return raw[:at] + _item(0x50, user_info) + raw[at + 4 + length :]


@pytest.mark.parametrize(
    ("sub", "message"),
    [
        (_item(0x58, b"\x01\x00\x00"), r"user identity sub-item \(0x58\) has 3 bytes, fewer than"),
        (_item(0x58, b"\x01\x00\x00\x09abc\x00\x00"), "primary field length 9 runs past"),
        (
            _item(0x58, b"\x02\x00\x00\x01a\x00\x05abc"),
            "primary field length 1 and secondary field length 5 do not add up",
        ),
        (
            _item(0x58, b"\x01\x00\x00\x01a\x00\x00") * 2,
            r"more than one user identity sub-item \(0x58\)",
        ),
    ],
    ids=["short", "primary-overrun", "secondary-mismatch", "twice"],
)
def test_malformed_user_identity_names_the_field(sub: bytes, message: str) -> None:
    """A User Identity sub-item whose lengths do not add up is a malformed PDU, and the
    error says which length is wrong (an A-ABORT follows, as for any malformed PDU)."""
    with pytest.raises(MalformedPDU, match=message):
        codec.decode_associate_rq(_identity_body(sub))


def test_user_identity_sub_items_in_the_wrong_pdu_are_kept_raw() -> None:
    """A Server-response (0x59) in a request is no identity: it stays among the raw items."""
    rq = codec.decode_associate_rq(_identity_body(_item(0x59, b"\x00\x00")))
    assert rq.user_information.user_identity is None
    assert rq.user_information.other_items == ((0x59, b"\x00\x00"),)


@pytest.mark.parametrize("data", [b"\x16\x03\x01\x02\x00\x01\x00", b"\x16"])
def test_a_tls_client_hello_is_named_as_such(data: bytes) -> None:
    """0x16 starts a TLS handshake record: still an unrecognized PDU (PS3.8), but the reason
    says what the peer most likely did, so the administrator looks at TLS, not at DICOM."""
    framer = PDUFramer(0)
    framer.feed(data)
    with pytest.raises(MalformedPDU, match=r"type 0x16 \(the start of a TLS handshake"):
        framer.next_pdu()
