"""Command set codec (PS3.7 6.3.1, Annex E), cross-checked against pynetdicom/pydicom."""

from __future__ import annotations

import contextlib
import struct
from io import BytesIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.filereader import read_dataset
from pynetdicom.dimse_messages import (
    C_ECHO_RQ,
    C_FIND_RSP,
    C_MOVE_RQ,
    C_STORE_RQ,
    C_STORE_RSP,
    N_GET_RQ,
)
from pynetdicom.dimse_primitives import C_ECHO, C_FIND, C_MOVE, C_STORE, N_GET

from pacsref.dimse import (
    KEYWORDS,
    VRS,
    CommandField,
    CommandSetError,
    decode_command,
    encode_command,
    format_tag,
)

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def pynetdicom_command_bytes(message_cls: type, primitive: object) -> bytes:
    """Encode a primitive with pynetdicom and return the joined command fragments."""
    message = message_cls()
    message.primitive_to_message(primitive)
    pdvs = [pd.presentation_data_value_list[0][1] for pd in message.encode_msg(1, 0)]
    return b"".join(pdv[1:] for pdv in pdvs if pdv[0] & 1)


def walk(raw: bytes) -> list[tuple[int, int]]:
    """(element number, value length) of each element of an encoded command set."""
    found = []
    offset = 0
    while offset < len(raw):
        _, elem, length = struct.unpack_from("<HHI", raw, offset)
        found.append((elem, length))
        offset += 8 + length
    return found


def element(elem: int, value: bytes) -> bytes:
    """One raw Implicit VR LE group 0000 element."""
    return struct.pack("<HHI", 0, elem, len(value)) + value


def test_echo_rq_from_pynetdicom_decodes_and_reencodes_byte_exact() -> None:
    """A C-ECHO-RQ encoded by pynetdicom decodes to ints/str and re-encodes identically."""
    primitive = C_ECHO()
    primitive.MessageID = 7
    primitive.AffectedSOPClassUID = VERIFICATION
    raw = pynetdicom_command_bytes(C_ECHO_RQ, primitive)

    command = decode_command(raw)

    assert command == {
        0x0000: len(raw) - 12,
        0x0002: VERIFICATION,
        0x0100: CommandField.C_ECHO_RQ,
        0x0110: 7,
        0x0800: 0x0101,
    }
    assert encode_command(command) == raw


def test_store_rq_with_move_originator_is_byte_exact_with_pynetdicom() -> None:
    """C-STORE-RQ with AE (space padded) and odd UIDs (NUL padded) matches pynetdicom bytes."""
    primitive = C_STORE()
    primitive.MessageID = 3
    primitive.AffectedSOPClassUID = CT_IMAGE
    primitive.AffectedSOPInstanceUID = "1.2.3.4.5"
    primitive.Priority = 2
    primitive.MoveOriginatorApplicationEntityTitle = "MOVESCU"
    primitive.MoveOriginatorMessageID = 9
    primitive.DataSet = BytesIO(b"\x08\x00\x16\x00\x04\x00\x00\x001.23")
    raw = pynetdicom_command_bytes(C_STORE_RQ, primitive)

    ours = encode_command(
        {
            0x0002: CT_IMAGE,
            0x0100: CommandField.C_STORE_RQ,
            0x0110: 3,
            0x0700: 2,
            0x0800: 0x0001,
            0x1000: "1.2.3.4.5",
            0x1030: "MOVESCU",
            0x1031: 9,
        }
    )

    assert ours == raw
    assert decode_command(raw)[0x1030] == "MOVESCU"


def test_move_rq_and_n_get_rq_round_trip_through_pynetdicom() -> None:
    """C-MOVE-RQ (MoveDestination AE) and N-GET-RQ (AT list) decode as pynetdicom wrote them."""
    move = C_MOVE()
    move.MessageID = 11
    move.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.2"
    move.Priority = 0
    move.MoveDestination = "STORESCP"
    move.Identifier = BytesIO(b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY ")
    raw_move = pynetdicom_command_bytes(C_MOVE_RQ, move)
    n_get = N_GET()
    n_get.MessageID = 12
    n_get.RequestedSOPClassUID = "1.2.840.10008.5.1.1.16"
    n_get.RequestedSOPInstanceUID = "1.2.840.10008.5.1.1.17"
    n_get.AttributeIdentifierList = [0x21100010, 0x00080070]
    raw_get = pynetdicom_command_bytes(N_GET_RQ, n_get)

    decoded_move = decode_command(raw_move)
    decoded_get = decode_command(raw_get)

    assert decoded_move[0x0600] == "STORESCP"
    assert decoded_move[0x0100] == CommandField.C_MOVE_RQ
    assert decoded_get[0x1005] == [0x21100010, 0x00080070]
    assert decoded_get[0x1001] == "1.2.840.10008.5.1.1.17"
    assert encode_command(decoded_move) == raw_move
    assert encode_command(decoded_get) == raw_get


def test_response_with_status_comment_and_offending_element_matches_pynetdicom() -> None:
    """C-STORE-RSP / C-FIND-RSP with Status, ErrorComment, OffendingElement are byte-exact."""
    store = C_STORE()
    store.MessageIDBeingRespondedTo = 3
    store.AffectedSOPClassUID = CT_IMAGE
    store.AffectedSOPInstanceUID = "1.2.3.4.5"
    store.Status = 0xA900
    store.OffendingElement = [0x00100010]
    store.ErrorComment = "bad name"
    find = C_FIND()
    find.MessageIDBeingRespondedTo = 4
    find.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.1"
    find.Status = 0x0000

    raw_store = pynetdicom_command_bytes(C_STORE_RSP, store)
    raw_find = pynetdicom_command_bytes(C_FIND_RSP, find)

    ours_store = encode_command(
        {
            0x0002: CT_IMAGE,
            0x0100: 0x8001,
            0x0120: 3,
            0x0800: 0x0101,
            0x0900: 0xA900,
            0x0901: [0x00100010],
            0x0902: "bad name",
            0x1000: "1.2.3.4.5",
        }
    )
    assert ours_store == raw_store
    assert decode_command(raw_find)[0x0900] == 0
    assert encode_command(decode_command(raw_find)) == raw_find


def test_our_encoding_is_read_by_pydicom_with_the_same_values() -> None:
    """pydicom's Implicit VR LE reader sees the values and even lengths we wrote."""
    raw = encode_command(
        {
            0x0002: "1.2.840.10008.5.1.4.1.1.7",  # odd length, NUL padded
            0x0100: 0x0021,
            0x0110: 65535,
            0x0600: "DEST",
            0x0700: 1,
            0x0800: 0x0001,
            0x0902: "odd comment",
            0x1005: [0x00100010, 0x7FE00010],
        }
    )

    ds = read_dataset(BytesIO(raw), is_implicit_VR=True, is_little_endian=True)

    assert ds.CommandGroupLength == len(raw) - 12
    assert ds.AffectedSOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert ds.CommandField == 0x0021
    assert ds.MessageID == 65535
    assert ds.MoveDestination == "DEST"
    assert ds.ErrorComment == "odd comment"
    assert [int(t) for t in ds.AttributeIdentifierList] == [0x00100010, 0x7FE00010]
    assert all(length % 2 == 0 for _, length in walk(raw))
    assert raw[raw.index(b"1.2.840.10008.5.1.4.1.1.7") + 25] == 0  # UI pad is NUL
    assert b"odd comment " in raw  # LO pad is space


def test_elements_are_written_in_ascending_tag_order_regardless_of_input_order() -> None:
    """PS3.5 7.1 requires ascending order; dict order must not leak into the encoding."""
    raw = encode_command({0x0800: 0x0101, 0x0110: 1, 0x0100: 0x0030, 0x0002: VERIFICATION})

    tags = [elem for elem, _ in walk(raw)]

    assert tags == sorted(tags)
    assert tags[0] == 0x0000


def test_given_group_length_and_none_values_are_ignored_when_encoding() -> None:
    """A stale CommandGroupLength is recomputed and None-valued fields are left out."""
    raw = encode_command({0x0000: 9999, 0x0100: 0x0030, 0x0902: None})

    assert decode_command(raw) == {0x0000: 10, 0x0100: 0x0030}


def test_unknown_group_0000_elements_survive_as_raw_bytes() -> None:
    """Elements not in Annex E (e.g. retired (0000,0850)) round-trip as their raw bytes."""
    raw = element(0x0100, b"\x30\x00") + element(0x0850, b"\x05\x00") + element(0x5010, b"ABC ")

    command = decode_command(raw)

    assert command == {0x0100: 0x0030, 0x0850: b"\x05\x00", 0x5010: b"ABC "}
    assert encode_command(command)[12:] == raw


def test_padding_is_stripped_from_strings() -> None:
    """Trailing NUL/space padding disappears; AE/LO also lose leading spaces (PS3.5 6.2)."""
    raw = (
        element(0x0002, b"1.2.3\x00")
        + element(0x0600, b"  DEST  ")
        + element(0x0902, b" text  ")
        + element(0x1000, b"1.2 ")
    )

    command = decode_command(raw)

    assert command == {0x0002: "1.2.3", 0x0600: "DEST", 0x0902: "text", 0x1000: "1.2"}


def test_empty_command_set_decodes_to_empty_dict() -> None:
    """Zero bytes is a valid (if useless) element list; the caller reports what is missing."""
    assert decode_command(b"") == {}


def test_memoryview_input_is_accepted() -> None:
    """decode_command takes any bytes-like object, e.g. a memoryview of a receive buffer."""
    raw = encode_command({0x0100: 0x0030})

    assert decode_command(memoryview(raw)) == decode_command(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (element(0x0100, b"\x30\x00\x00"), "(0000,0100) has length 3, expected 2 for US"),
        (element(0x0000, b"\x01\x00"), "(0000,0000) has length 2, expected 4 for UL"),
        (element(0x0901, b"\x10\x00\x10"), "expected a multiple of 4 for AT"),
        (struct.pack("<HHI", 8, 0x16, 2) + b"1\x00", "element (0008,0016)"),
        (element(0x0100, b"\x30\x00")[:9], "truncated element"),
        (b"\x00\x00\x00\x01\x02", "truncated: 5 bytes left"),
        (
            struct.pack("<HHI", 0, 0x0002, 0xFFFFFFFF),
            "(0000,0002) has undefined length (0xFFFFFFFF), not allowed in a command set "
            "(PS3.7 6.3.1)",
        ),
        (element(0x0100, b"\x30\x00") * 2, "(0000,0100) occurs twice"),
        (element(0x0002, b"1.2\xff"), "UI value is not ASCII"),
    ],
)
def test_malformed_command_sets_raise_specific_errors(raw: bytes, message: str) -> None:
    """Each kind of malformation raises CommandSetError whose detail names the problem."""
    with pytest.raises(CommandSetError) as caught:
        decode_command(raw)

    assert message in caught.value.detail


def test_an_undefined_length_is_named_as_such_not_as_a_truncated_element() -> None:
    """0xFFFFFFFF (a sequence's length elsewhere) is said to be what it is, even with a value
    and a sequence delimiter after it: it used to read "has length 4294967295 but only 26
    bytes remain (truncated element)", which sent one looking for a cut-off transfer."""
    raw = (
        element(0x0100, b"\x30\x00")
        + struct.pack("<HHI", 0, 0x0002, 0xFFFFFFFF)
        + b"1.2.840.10008.1.1\x00"
        + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    )

    with pytest.raises(CommandSetError) as caught:
        decode_command(raw)

    assert caught.value.detail == (
        "command element (0000,0002) has undefined length (0xFFFFFFFF), "
        "not allowed in a command set (PS3.7 6.3.1)"
    )


def test_group_length_element_names_group_0000_rule_when_not_in_group() -> None:
    """A non-command element is refused with the PS3.7 6.3.1 reason."""
    raw = struct.pack("<HHI", 8, 0x16, 2) + b"1\x00"

    with pytest.raises(CommandSetError, match=r"is not in group 0000"):
        decode_command(raw)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({0x0110: 70000}, "does not fit US"),
        ({0x0110: "7"}, "does not fit US"),
        ({0x0002: 5}, "is not a str for UI"),
        ({0x0002: "1." * 40}, "longer than 64"),
        ({0x0600: "A" * 17}, "longer than 16"),
        ({0x0600: "ÄE"}, "is not ASCII"),
        ({0x0901: "xx"}, "is not a tag or list of tags"),
        ({0x0850: 5}, "give its value as bytes"),
        ({0x00080016: "1.2"}, "element (0008,0016) is not in group 0000"),
    ],
)
def test_encoding_refuses_values_that_do_not_fit(fields: dict[int, object], message: str) -> None:
    """encode_command raises CommandSetError rather than writing a malformed element."""
    with pytest.raises(CommandSetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        encode_command(fields)


def test_non_ascii_error_comment_is_replaced_not_refused() -> None:
    """ErrorComment built from an exception text never makes the response unencodable."""
    command = decode_command(encode_command({0x0902: "disk voll: Datei über"}))

    assert command[0x0902] == "disk voll: Datei ?ber"


def test_error_comment_backslash_and_control_characters_become_spaces() -> None:
    """An exception text with a Windows path and a line break is one LO value for the peer:
    no backslash (the value delimiter) and no control character (PS3.5 Table 6.2-1); pydicom
    used to read three values out of it. The length does not change, so a comment cut to 64
    characters before stays within 64."""
    comment = "cannot read D:\\incoming\\x.dcm\nretry\tlater\r\x7f\x1b\x00über"
    raw = encode_command({0x0100: 0x8001, 0x0902: comment})

    value = raw[raw.index(b"cannot") :]
    assert all(0x20 <= byte < 0x7F and byte != 0x5C for byte in value)
    ds = read_dataset(BytesIO(raw), is_implicit_VR=True, is_little_endian=True)
    assert ds["ErrorComment"].VM == 1
    expected = "cannot read D: incoming x.dcm retry later    ?ber"
    assert ds.ErrorComment == expected
    assert decode_command(raw)[0x0902] == expected
    assert len(encode_command({0x0902: "\\\n" * 32})) == 12 + 8 + 64  # 64 still fit


def test_single_at_value_and_keyword_tables() -> None:
    """An int AT value is written as a one-tag list; the tables cover Annex E."""
    assert decode_command(encode_command({0x0901: 0x00100020}))[0x0901] == [0x00100020]
    assert KEYWORDS[0x1030] == "MoveOriginatorApplicationEntityTitle"
    assert VRS[0x1005] == "AT"
    assert format_tag(0x00080016) == "(0008,0016)"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_decode_never_raises_anything_but_command_set_error_on_random_bytes(data: bytes) -> None:
    """Arbitrary input either decodes or fails with CommandSetError, never another exception."""
    with contextlib.suppress(CommandSetError):
        decode_command(data)


_ELEMENT_NUMBERS = st.sampled_from([*VRS, 0x0850, 0x5010, 0x0001])


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(_ELEMENT_NUMBERS, st.binary(max_size=20), st.integers(0, 40)),
        max_size=8,
    )
)
def test_decode_of_plausible_element_lists_raises_only_command_set_error(
    items: list[tuple[int, bytes, int]],
) -> None:
    """Group 0000 elements with random values/lengths exercise every VR branch safely."""
    raw = b"".join(struct.pack("<HHI", 0, elem, length) + value for elem, value, length in items)
    try:
        command = decode_command(raw)
    except CommandSetError:
        return
    if any(isinstance(v, str) and not v.isascii() for v in command.values()):
        return  # latin-1 text is not re-encodable as the default repertoire
    if any(isinstance(v, bytes) and len(v) % 2 for v in command.values()):
        return  # odd raw values are tolerated on input but padded on output
    try:
        again = decode_command(encode_command(command))
    except CommandSetError:
        return  # e.g. an AE value longer than 16 characters
    assert again | {0: 0} == command | {0: 0}
