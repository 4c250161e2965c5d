"""Response command sets, status codes and required elements (PS3.7 9.3, 10.3, Annex C)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pynetdicom.dimse_messages import C_ECHO_RSP, C_STORE_RSP
from pynetdicom.dimse_primitives import C_ECHO, C_STORE

from pacsref.dimse import (
    CommandField,
    DimseMessage,
    StatusCategory,
    can_respond,
    command_name,
    dataset_expected,
    decode_command,
    describe_status,
    encode_command,
    invalid_request_response,
    missing_elements_response,
    missing_required,
    response_command,
    status_category,
    status_name,
    unrecognized_operation_response,
)
from pacsref.dimse import status as st
from pacsref.dimse.responses import unechoable_uids

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ECHO_RQ = {0x0000: 56, 0x0002: VERIFICATION, 0x0100: 0x0030, 0x0110: 7, 0x0800: 0x0101}
STORE_RQ = {
    0x0002: CT_IMAGE,
    0x0100: 0x0001,
    0x0110: 5,
    0x0700: 0,
    0x0800: 0x0001,
    0x1000: "1.2.3.4",
}


def pynetdicom_bytes(message_cls: type, primitive: object) -> bytes:
    """The command bytes pynetdicom encodes for a primitive."""
    message = message_cls()
    message.primitive_to_message(primitive)
    (pdata,) = message.encode_msg(1, 0)
    return pdata.presentation_data_value_list[0][1][1:]


def test_echo_response_matches_pynetdicom_bytes() -> None:
    """C-ECHO-RSP Success built from a request encodes exactly as pynetdicom's."""
    primitive = C_ECHO()
    primitive.MessageIDBeingRespondedTo = 7
    primitive.AffectedSOPClassUID = VERIFICATION
    primitive.Status = 0x0000

    fields = response_command(ECHO_RQ, st.SUCCESS)

    assert fields == {
        0x0100: 0x8030,
        0x0120: 7,
        0x0800: 0x0101,
        0x0900: 0x0000,
        0x0002: VERIFICATION,
    }
    assert encode_command(fields) == pynetdicom_bytes(C_ECHO_RSP, primitive)


def test_store_response_echoes_class_and_instance_and_matches_pynetdicom() -> None:
    """C-STORE-RSP echoes both Affected UIDs; a warning with comment is byte-exact too."""
    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo = 5
    primitive.AffectedSOPClassUID = CT_IMAGE
    primitive.AffectedSOPInstanceUID = "1.2.3.4"
    primitive.Status = 0xB000
    primitive.ErrorComment = "coerced"
    message = DimseMessage(1, dict(STORE_RQ), None, "1.2.840.10008.1.2")

    fields = response_command(message, st.COERCION_OF_DATA_ELEMENTS, ErrorComment="coerced")

    assert fields[0x0002] == CT_IMAGE
    assert fields[0x1000] == "1.2.3.4"
    assert fields[0x0100] == CommandField.C_STORE_RSP
    assert encode_command(fields) == pynetdicom_bytes(C_STORE_RSP, primitive)


def test_error_comment_is_truncated_and_offending_element_listed() -> None:
    """ErrorComment is cut to 64 characters (LO); a single OffendingElement becomes a list."""
    fields = response_command(
        STORE_RQ,
        st.DATASET_DOES_NOT_MATCH_SOP_CLASS,
        ErrorComment="x" * 100,
        OffendingElement=0x00100010,
    )

    assert fields[0x0902] == "x" * 64
    assert fields[0x0901] == [0x00100010]
    assert decode_command(encode_command(fields))[0x0901] == [0x00100010]


def test_dataset_flag_and_extra_suboperation_counts() -> None:
    """dataset=True announces a data set; keyword extras set elements, None removes them."""
    move = {
        0x0002: "1.2.840.10008.5.1.4.1.2.2.2",
        0x0100: 0x0021,
        0x0110: 9,
        0x0700: 0,
        0x0800: 1,
        0x0600: "DEST",
    }

    fields = response_command(
        move,
        st.PENDING,
        dataset=True,
        NumberOfRemainingSuboperations=3,
        NumberOfCompletedSuboperations=1,
        AffectedSOPClassUID=None,
    )

    assert fields[0x0800] == 0x0001
    assert fields[0x1020] == 3 and fields[0x1021] == 1
    assert 0x0002 not in fields
    with pytest.raises(TypeError, match="unknown command element 'Bogus'"):
        response_command(move, 0, Bogus=1)


def test_n_service_response_echoes_requested_uids_as_affected() -> None:
    """N-GET-RSP / N-ACTION-RSP carry the Requested UIDs as Affected ones (PS3.7 10.3)."""
    action = {
        0x0003: "1.2.3",
        0x0100: 0x0130,
        0x0110: 4,
        0x0800: 0x0101,
        0x1001: "1.2.3.9",
        0x1008: 1,
    }

    fields = response_command(action, st.SUCCESS)

    assert fields[0x0002] == "1.2.3"
    assert fields[0x1000] == "1.2.3.9"
    assert fields[0x1008] == 1
    assert fields[0x0100] == 0x8130


def test_unrecognized_command_field_gets_0211() -> None:
    """An unknown command field with a Message ID is answered 0x0211 naming the field."""
    command = {0x0100: 0x0055, 0x0110: 3, 0x0800: 0x0101}

    fields = unrecognized_operation_response(command)

    assert can_respond(command)
    assert fields[0x0900] == 0x0211
    assert fields[0x0100] == 0x8055
    assert fields[0x0902] == "unrecognized command field 0x0055"
    assert invalid_request_response(command) == fields


def test_missing_required_element_gets_0212_naming_it() -> None:
    """A C-ECHO-RQ without AffectedSOPClassUID is refused with 0x0212 and an Error Comment."""
    command = {0x0100: 0x0030, 0x0110: 8, 0x0800: 0x0101}

    fields = invalid_request_response(command)

    assert missing_required(command) == ["AffectedSOPClassUID"]
    assert fields is not None
    assert fields[0x0900] == st.MISTYPED_ARGUMENT
    assert fields[0x0902] == "missing AffectedSOPClassUID (0000,0002)"
    assert fields == missing_elements_response(command)
    assert encode_command(fields)


def test_complete_requests_need_no_refusal() -> None:
    """Well-formed C-ECHO and C-STORE requests pass invalid_request_response."""
    assert invalid_request_response(ECHO_RQ) is None
    assert invalid_request_response(STORE_RQ) is None
    assert missing_required(STORE_RQ) == []


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ({0x0100: 0x0030, 0x0800: 0x0101}, False),  # no Message ID
        ({0x0110: 1}, False),  # no Command Field
        ({0x0100: 0x8030, 0x0110: 1}, False),  # a response
        ({0x0100: 0x0FFF, 0x0120: 1, 0x0110: 1}, False),  # C-CANCEL-RQ has no response
        ({0x0100: 0x0030, 0x0110: b"\x01\x00\x00"}, False),  # not an int
        ({0x0100: 0x0030, 0x0110: 1}, True),
    ],
)
def test_can_respond_requires_request_field_and_message_id(
    command: dict[int, object], expected: bool
) -> None:
    """Without an addressable request the caller must abort instead of answering."""
    assert can_respond(command) is expected
    if not expected:
        with pytest.raises(ValueError, match="cannot respond"):
            response_command(command, 0)


def test_required_elements_per_request_type() -> None:
    """PS3.7 tables: C-MOVE needs MoveDestination, N-ACTION ActionTypeID, C-CANCEL the ID."""
    assert missing_required({0x0100: 0x0021}) == [
        "AffectedSOPClassUID",
        "MessageID",
        "Priority",
        "CommandDataSetType",
        "MoveDestination",
    ]
    assert "ActionTypeID" in missing_required({0x0100: 0x0130})
    assert missing_required({0x0100: 0x0FFF, 0x0800: 0x0101}) == ["MessageIDBeingRespondedTo"]
    assert missing_required({0x0100: 0x8001}) == [
        "MessageIDBeingRespondedTo",
        "CommandDataSetType",
        "Status",
    ]
    assert missing_required({0x0110: 1}) == ["CommandField"]
    assert missing_required({0x0100: 0x0055}) == []


def test_command_names_and_dataset_expectations() -> None:
    """Names for logs and the data-set rules of the request types."""
    assert command_name(0x0030) == "C-ECHO-RQ"
    assert command_name(0x8150) == "N-DELETE-RSP"
    assert command_name(0x0055) == "command field 0x0055"
    assert command_name(None) == "command without a command field"
    assert CommandField.C_CANCEL_RQ.label == "C-CANCEL-RQ"
    assert dataset_expected(0x0001) is True
    assert dataset_expected(0x0030) is False
    assert dataset_expected(0x0140) is None


def test_dimse_message_properties(tmp_path: Path) -> None:
    """DimseMessage exposes the common fields and whether a data set came with it."""
    path = tmp_path / "ds"
    path.write_bytes(b"x")
    message = DimseMessage(1, dict(STORE_RQ), path, "1.2.840.10008.1.2.1")
    response = DimseMessage(
        1, {0x0100: 0x8001, 0x0120: 5, 0x0900: 0xA700}, None, "1.2.840.10008.1.2"
    )

    assert message.name == "C-STORE-RQ"
    assert message.has_dataset and message.announced_dataset()
    assert message.affected_sop_instance_uid == "1.2.3.4"
    assert response.message_id is None
    assert response.message_id_being_responded_to == 5
    assert response.status == 0xA700
    assert not response.has_dataset


@pytest.mark.parametrize(
    ("code", "category", "name"),
    [
        (0x0000, StatusCategory.SUCCESS, "Success"),
        (0xFF00, StatusCategory.PENDING, "Pending"),
        (0xFF01, StatusCategory.PENDING, "Pending (optional keys not supported)"),
        (0xFE00, StatusCategory.CANCEL, "Cancel"),
        (0x0001, StatusCategory.WARNING, "Warning"),
        (0x0107, StatusCategory.WARNING, "Attribute list error"),
        (0x0116, StatusCategory.WARNING, "Attribute value out of range"),
        (0xB007, StatusCategory.WARNING, "Warning: Data set does not match SOP class"),
        (0xB123, StatusCategory.WARNING, "Warning"),
        (0x0110, StatusCategory.FAILURE, "Processing failure"),
        (0x0111, StatusCategory.FAILURE, "Duplicate SOP instance"),
        (0x0112, StatusCategory.FAILURE, "No such object instance"),
        (0x0117, StatusCategory.FAILURE, "Invalid object instance"),
        (0x0118, StatusCategory.FAILURE, "No such SOP class"),
        (0x0119, StatusCategory.FAILURE, "Class-instance conflict"),
        (0x0120, StatusCategory.FAILURE, "Missing attribute"),
        (0x0122, StatusCategory.FAILURE, "Refused: SOP class not supported"),
        (0x0124, StatusCategory.FAILURE, "Refused: Not authorized"),
        (0x0210, StatusCategory.FAILURE, "Duplicate invocation"),
        (0x0211, StatusCategory.FAILURE, "Unrecognized operation"),
        (0x0212, StatusCategory.FAILURE, "Mistyped argument"),
        (0x0213, StatusCategory.FAILURE, "Resource limitation"),
        (0xA700, StatusCategory.FAILURE, "Refused: Out of resources"),
        (0xA7FF, StatusCategory.FAILURE, "Refused: Out of resources"),
        (0xA801, StatusCategory.FAILURE, "Refused: Move destination unknown"),
        (0xA900, StatusCategory.FAILURE, "Error: Data set does not match SOP class"),
        (0xC000, StatusCategory.FAILURE, "Error: Cannot understand"),
        (0xC123, StatusCategory.FAILURE, "Error: Cannot understand"),
        (0x4242, StatusCategory.FAILURE, "Unknown status"),
    ],
)
def test_status_category_and_name(code: int, category: StatusCategory, name: str) -> None:
    """Annex C categories (unknown codes count as failure) and log names."""
    assert status_category(code) is category
    assert status_name(code) == name


def test_describe_status_for_logs() -> None:
    """describe_status gives code, name and category in one string."""
    assert describe_status(0x0212) == "0x0212 Mistyped argument (failure)"
    assert describe_status(0xFF00) == "0xFF00 Pending (pending)"


def test_store_without_a_data_set_gets_0212_naming_command_data_set_type() -> None:
    """A C-STORE-RQ announcing no data set cannot be served (PS3.7 Table 9.3-1)."""
    rsp = invalid_request_response({**STORE_RQ, 0x0800: 0x0101})
    assert rsp is not None and rsp[0x0900] == st.MISTYPED_ARGUMENT
    assert rsp[0x0902] == "CommandDataSetType (0000,0800): C-STORE-RQ must carry a data set"
    assert invalid_request_response(STORE_RQ) is None


def test_uids_that_are_no_ui_values_are_named_and_not_echoed() -> None:
    """Too long or not ASCII: left out of the response (optional there), named for the log."""
    request = {**STORE_RQ, 0x1000: "1." + "2" * 70, 0x0002: "1.2.\u00e9"}
    assert unechoable_uids(request) == [
        "AffectedSOPClassUID (0000,0002): not ASCII",
        "AffectedSOPInstanceUID (0000,1000): 72 characters, a UI holds 64",
    ]
    rsp = response_command(request, 0x0117)
    assert 0x0002 not in rsp and 0x1000 not in rsp
    encode_command(rsp)  # and the rest encodes
    assert unechoable_uids(STORE_RQ) == []
