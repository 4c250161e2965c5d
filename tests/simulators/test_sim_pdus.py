"""The hand-built PDUs and pynetdicom's codec must agree byte for byte in meaning.

Two independent encoders of PS3.8 9.3 check each other: what we build,
pynetdicom decodes to the same values, and what pynetdicom builds, we decode.
"""

from __future__ import annotations

import io

import pytest
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom import pdu as npdu
from pynetdicom.dimse_messages import C_ECHO_RSP
from pynetdicom.dimse_primitives import C_ECHO
from pynetdicom.dsutils import decode as decode_dataset
from pynetdicom.dsutils import encode as encode_dataset
from pynetdicom.pdu_primitives import (
    A_ABORT,
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import PresentationContext

from simulators import pdus
from simulators.commands import c_echo_rq, echo_response_status

EXPLICIT_LE = "1.2.840.10008.1.2.1"


def test_associate_rq_decodes_in_pynetdicom() -> None:
    """Every field of our A-ASSOCIATE-RQ reads back identically through pynetdicom."""
    data = pdus.associate_rq(
        "CALLED",
        "CALLING",
        contexts=[(1, pdus.VERIFICATION, [pdus.IMPLICIT_VR_LE, EXPLICIT_LE]), (3, "1.2.3.4", [])],
        max_pdu=32768,
        impl_version="SIMV1",
    )
    rq = npdu.A_ASSOCIATE_RQ()
    rq.decode(data)
    assert rq.protocol_version == 1
    assert rq.called_ae_title == "CALLED"
    assert rq.calling_ae_title == "CALLING"
    assert rq.application_context_name == pdus.DICOM_APP_CONTEXT
    assert rq.pdu_length == len(data) - 6
    contexts = [
        (c.context_id, c.abstract_syntax, list(c.transfer_syntax)) for c in rq.presentation_context
    ]
    assert contexts == [
        (1, pdus.VERIFICATION, [pdus.IMPLICIT_VR_LE, EXPLICIT_LE]),
        (3, "1.2.3.4", []),
    ]
    primitive = rq.to_primitive()
    assert primitive.maximum_length_received == 32768
    assert primitive.implementation_class_uid == pdus.SIM_IMPL_UID
    names = [
        item.implementation_version_name
        for item in primitive.user_information
        if isinstance(item, ImplementationVersionNameNotification)
    ]
    assert names == ["SIMV1"]
    assert rq.encode() == data


def test_associate_rq_carries_falsified_fields_verbatim() -> None:
    """Protocol version and application context are written as given, however wrong."""
    rq = npdu.A_ASSOCIATE_RQ()
    rq.decode(pdus.associate_rq("A", "B", protocol_version=0, app_context="1.2.3.4.5"))
    assert rq.protocol_version == 0
    assert rq.application_context_name == "1.2.3.4.5"


def test_p_data_decodes_in_pynetdicom() -> None:
    """PDV items keep their context ID, control header and data (PS3.8 9.3.5.1)."""
    data = pdus.p_data([(1, 0x03, b"\x01\x02\x03\x04"), (5, 0x00, b"xy")])
    pdata = npdu.P_DATA_TF()
    pdata.decode(data)
    # pynetdicom keeps the control header as the first byte of each PDV's data.
    items = [(pdv.context_id, pdv.data) for pdv in pdata.presentation_data_value_items]
    assert items == [(1, b"\x03\x01\x02\x03\x04"), (5, b"\x00xy")]
    assert pdus.decode_p_data(data[6:]) == [(1, 0x03, b"\x01\x02\x03\x04"), (5, 0x00, b"xy")]


@pytest.mark.parametrize(
    ("built", "cls"),
    [(pdus.release_rq(), npdu.A_RELEASE_RQ), (pdus.release_rp(), npdu.A_RELEASE_RP)],
)
def test_release_pdus_match_pynetdicom(built: bytes, cls: type) -> None:
    """A-RELEASE-RQ/RP are ten bytes that pynetdicom encodes identically."""
    assert built == cls().encode()


def test_abort_decodes_in_pynetdicom() -> None:
    """A-ABORT source and reason land in the fields of PS3.8 Table 9-26."""
    abort = npdu.A_ABORT_RQ()
    abort.decode(pdus.abort(2, 6))
    assert (abort.source, abort.reason_diagnostic) == (2, 6)


def _pynetdicom_ac() -> bytes:
    """An A-ASSOCIATE-AC encoded by pynetdicom: context 1 accepted, 3 refused (3)."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = pdus.DICOM_APP_CONTEXT
    primitive.called_ae_title = "SCP"
    primitive.calling_ae_title = "SCU"
    primitive.result = 0
    accepted, refused = PresentationContext(), PresentationContext()
    accepted.context_id, accepted.result = 1, 0
    accepted.transfer_syntax = [ImplicitVRLittleEndian]
    refused.context_id, refused.result = 3, 3
    refused.transfer_syntax = [ImplicitVRLittleEndian]
    primitive.presentation_context_definition_results_list = [accepted, refused]
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = 12345
    impl = ImplementationClassUIDNotification()
    impl.implementation_class_uid = "1.2.826.0.1.3680043.9.3811"
    primitive.user_information = [max_length, impl]
    ac = npdu.A_ASSOCIATE_AC()
    ac.from_primitive(primitive)
    return ac.encode()


def test_decode_associate_ac_from_pynetdicom() -> None:
    """Our AC decoder reads context results, max PDU and class UID as pynetdicom wrote them."""
    data = _pynetdicom_ac()
    assert data[0] == pdus.A_ASSOCIATE_AC
    ac = pdus.decode_associate_ac(data[6:])
    assert ac.protocol_version == 1
    assert ac.app_context == pdus.DICOM_APP_CONTEXT
    assert ac.contexts == (
        pdus.ContextResult(1, 0, ImplicitVRLittleEndian),
        pdus.ContextResult(3, 3, ImplicitVRLittleEndian),
    )
    assert ac.max_pdu == 12345
    assert ac.impl_uid == "1.2.826.0.1.3680043.9.3811"
    refused_result = ac.context(3)
    assert refused_result is not None
    assert "abstract-syntax-not-supported" in refused_result.result_words


def test_decode_associate_rj_and_abort_from_pynetdicom() -> None:
    """RJ triple and A-ABORT pair come out of pynetdicom's encoding unchanged, in PS3.8 words."""
    primitive = A_ASSOCIATE()
    primitive.result, primitive.result_source, primitive.diagnostic = 1, 1, 7
    rj = npdu.A_ASSOCIATE_RJ()
    rj.from_primitive(primitive)
    decoded = pdus.decode_associate_rj(rj.encode()[6:])
    assert decoded.triple == (1, 1, 7)
    assert "called-AE-title-not-recognized" in str(decoded)

    abort_primitive = A_ABORT()
    abort_primitive.abort_source = 0
    abort = npdu.A_ABORT_RQ()
    abort.from_primitive(abort_primitive)
    assert pdus.decode_abort(abort.encode()[6:]) == pdus.Abort(0, 0)


def test_item_length_that_overruns_is_a_decode_error() -> None:
    """A sub-item claiming more bytes than its parent holds is refused, not over-read."""
    with pytest.raises(pdus.PDUDecodeError):
        list(pdus.iter_items(pdus.item(0x10, b"abc")[:-1]))


def test_c_echo_rq_is_a_valid_implicit_le_command_set() -> None:
    """pynetdicom/pydicom read our C-ECHO-RQ with the right group length and fields."""
    data = c_echo_rq(42)
    ds = decode_dataset(io.BytesIO(data), True, True)
    assert ds.CommandGroupLength == len(data) - 12
    assert ds.AffectedSOPClassUID == pdus.VERIFICATION
    assert ds.CommandField == 0x0030
    assert ds.MessageID == 42
    assert ds.CommandDataSetType == 0x0101


def test_echo_response_status_reads_a_pynetdicom_c_echo_rsp() -> None:
    """The status (and the answered message ID) come out of pynetdicom's C-ECHO-RSP."""
    primitive = C_ECHO()
    primitive.MessageIDBeingRespondedTo = 42
    primitive.AffectedSOPClassUID = pdus.VERIFICATION
    primitive.Status = 0x0122
    message = C_ECHO_RSP()
    message.primitive_to_message(primitive)
    data = encode_dataset(message.command_set, True, True)
    assert data is not None
    assert echo_response_status(data, 42) == 0x0122
    with pytest.raises(ValueError):
        echo_response_status(data, 43)
    with pytest.raises(ValueError):
        echo_response_status(c_echo_rq(1))
