"""The server end to end in memory: real factory and protocol, StringTransport and Clock.

These pin what a peer sees on the wire for each rule of the core issue:
negotiation, C-ECHO, DIMSE refusals, aborts, ARTIM, add-in timeouts and
fragmentation, without sockets or sleeps.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from pacsref.dimse import decode_command
from pacsref.testing.harness import ServerHarness
from pacsref.ul import codec
from pacsref.ul.constants import PDUType
from pacsref.ul.events import (
    DataTransfer,
    PresentationContextProposal,
    PresentationDataValue,
)

from .helpers import (
    EXPLICIT,
    IMPLICIT,
    VERIFICATION,
    associate_rq,
    command_pdu,
    echo_rq,
    responses,
)

SLOW_SYNTAX = "1.2.826.0.1.3680043.9.7.1"
FAILING_SYNTAX = "1.2.826.0.1.3680043.9.7.2"

SLOW_ADDIN = f'''
from zope.interface import implementer
from pacsref.addin import IAddin, IEchoHandler, SupportedContext

@implementer(IAddin, IEchoHandler)
class Slow:
    name = "slow"
    description = "blocks; answers 0xB000 when it finally returns"
    def presentation_contexts(self):
        return (SupportedContext("{SLOW_SYNTAX}", ("1.2.840.10008.1.2",)),)
    def handle_echo(self, request):
        return 0xB000

@implementer(IAddin, IEchoHandler)
class Failing:
    name = "failing"
    description = "raises"
    def presentation_contexts(self):
        return (SupportedContext("{FAILING_SYNTAX}", ("1.2.840.10008.1.2",)),)
    def handle_echo(self, request):
        raise RuntimeError("disk on fire")

slow = Slow()
failing = Failing()
'''


@pytest.fixture
def harness(tmp_path: Path) -> ServerHarness:
    return ServerHarness(
        tmp_path / "PACSREF",
        settings={"addin_timeout": 5.0, "artim_timeout": 10.0, "client_timeout": 60.0},
        extra_addins={"testing_addins.py": SLOW_ADDIN},
    )


def _associate(harness: ServerHarness, **kwargs: object):  # type: ignore[no-untyped-def]
    conn = harness.connect()
    conn.send(associate_rq(**kwargs))  # type: ignore[arg-type]
    [(pdu_type, body)] = conn.received()
    assert pdu_type is PDUType.A_ASSOCIATE_AC, body
    return conn, codec.decode_associate_ac(body)


def test_echo_then_release(harness: ServerHarness) -> None:
    """A C-ECHO on an accepted context is answered 0x0000; release gets A-RELEASE-RP."""
    conn, ac = _associate(harness)
    assert ac.user_information.max_pdu_length == 131072
    assert ac.user_information.implementation_version_name == "PACSREF_010"
    conn.send(echo_rq(message_id=7))
    [rsp] = responses(conn.received())
    assert rsp[0x0100] == 0x8030 and rsp[0x0120] == 7 and rsp[0x0900] == 0x0000
    conn.send(codec.RELEASE_RQ)
    assert [t for t, _ in conn.received()] == [PDUType.A_RELEASE_RP]


def test_many_echoes_on_one_association(harness: ServerHarness) -> None:
    """1,000 C-ECHOs on one association are all answered with success, in order."""
    conn, _ = _associate(harness)
    conn.send(b"".join(echo_rq(message_id=i) for i in range(1, 1001)))
    got = responses(conn.received())
    assert [r[0x0120] for r in got] == list(range(1, 1001))
    assert {r[0x0900] for r in got} == {0}


def test_wrong_called_ae_rejected_1_1_7(harness: ServerHarness) -> None:
    """A wrong called AE title gets A-ASSOCIATE-RJ (1, 1, 7), then ARTIM closes."""
    conn = harness.connect()
    conn.send(associate_rq(called="NOTME"))
    [(pdu_type, body)] = conn.received()
    assert pdu_type is PDUType.A_ASSOCIATE_RJ and body == bytes([0, 1, 1, 7])
    assert not conn.closed
    harness.clock.advance(10)
    assert conn.closed


def test_any_calling_ae_accepted_by_default(harness: ServerHarness) -> None:
    """A fresh server (Allow Anonymous on) accepts any calling AE title."""
    _associate(harness, calling="WHO-EVER")


def test_context_results(harness: ServerHarness) -> None:
    """Unknown abstract syntax -> result 3; unsupported transfer syntax -> result 4."""
    _, ac = _associate(
        harness,
        contexts=(
            PresentationContextProposal(1, VERIFICATION, (EXPLICIT, IMPLICIT)),
            PresentationContextProposal(3, "1.2.3.4.5.6.7", (IMPLICIT,)),
            PresentationContextProposal(5, VERIFICATION, ("1.2.3.999",)),
        ),
    )
    results = {
        pc.context_id: (int(pc.result), pc.transfer_syntax) for pc in ac.presentation_contexts
    }
    assert results[1] == (0, EXPLICIT)
    assert results[3][0] == 3
    assert results[5][0] == 4


def test_no_context_accepted_is_rejected(harness: ServerHarness) -> None:
    """An association with no acceptable context is rejected (1, 1, 1).

    1.2.3.4.5.6.7 is no SOP class (CT Image Storage was used here before the storage
    add-in shipped and made it acceptable).
    """
    conn = harness.connect()
    unknown = "1.2.3.4.5.6.7"
    conn.send(associate_rq(contexts=(PresentationContextProposal(1, unknown, (IMPLICIT,)),)))
    [(pdu_type, body)] = conn.received()
    assert pdu_type is PDUType.A_ASSOCIATE_RJ and body == bytes([0, 1, 1, 1])


@pytest.mark.parametrize("peer_max", [1, 6])
def test_peer_max_pdu_too_small_rejected(harness: ServerHarness, peer_max: int) -> None:
    """A peer maximum length that cannot carry one PDV byte is refused cleanly."""
    conn = harness.connect()
    conn.send(associate_rq(max_pdu=peer_max))
    [(pdu_type, _)] = conn.received()
    assert pdu_type is PDUType.A_ASSOCIATE_RJ


def test_response_fragmented_to_peer_max(harness: ServerHarness) -> None:
    """With a peer max of 20 bytes, every P-DATA-TF we send fits and the response reassembles."""
    conn, _ = _associate(harness, max_pdu=20)
    conn.send(echo_rq())
    pdus = conn.received()
    assert len(pdus) > 3
    assert all(len(body) <= 20 for _, body in pdus)
    [rsp] = responses(pdus)
    assert rsp[0x0900] == 0


def test_unknown_command_field_gets_0211(harness: ServerHarness) -> None:
    """An unknown Command Field is answered 0x0211 and the association goes on."""
    conn, _ = _associate(harness)
    conn.send(command_pdu({0x0002: VERIFICATION, 0x0100: 0x0777, 0x0110: 3, 0x0800: 0x0101}))
    [rsp] = responses(conn.received())
    assert rsp[0x0900] == 0x0211 and rsp[0x0120] == 3
    conn.send(echo_rq(message_id=4))
    assert responses(conn.received())[0][0x0900] == 0


#: A C-FIND identifier, Query/Retrieve Level (0008,0052) "STUDY" in Implicit VR LE.
_IDENTIFIER = b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY "


def test_find_on_verification_context_gets_0211(harness: ServerHarness) -> None:
    """A known command no add-in serves on that context (C-FIND on Verification) -> 0x0211."""
    conn, _ = _associate(harness)
    command = command_pdu(
        {0x0002: VERIFICATION, 0x0100: 0x0020, 0x0110: 9, 0x0700: 0, 0x0800: 0x0000}
    )
    identifier = PresentationDataValue(1, False, True, _IDENTIFIER)
    conn.send(command + codec.encode_p_data(DataTransfer((identifier,))))
    [rsp] = responses(conn.received())
    assert rsp[0x0900] == 0x0211


@pytest.mark.parametrize(
    ("fields", "comment"),
    [
        ({0x0100: 0x0030, 0x0800: 0x0000}, "C-ECHO-RQ carries no data set"),
        ({0x0100: 0x0020, 0x0700: 0, 0x0800: 0x0101}, "C-FIND-RQ must carry a data set"),
    ],
)
def test_dataset_type_against_the_service_gets_0212(
    harness: ServerHarness, fields: dict[int, int], comment: str
) -> None:
    """CommandDataSetType contradicting the service (PS3.7 9.3) -> 0x0212 naming it; served
    no further, and the association goes on."""
    conn, _ = _associate(harness)
    command = command_pdu({0x0002: VERIFICATION, 0x0110: 9, **fields})
    dataset = codec.encode_p_data(
        DataTransfer((PresentationDataValue(1, False, True, _IDENTIFIER),))
    )
    conn.send(command + (dataset if fields[0x0800] != 0x0101 else b""))
    [rsp] = responses(conn.received())
    assert rsp[0x0900] == 0x0212 and rsp[0x0120] == 9
    assert rsp[0x0902] == f"CommandDataSetType (0000,0800): {comment}"
    assert not list(harness.server.spool_dir.glob("pacsref-dimse-*"))  # spool deleted
    conn.send(echo_rq(message_id=10))
    assert responses(conn.received())[0][0x0900] == 0


def test_missing_required_element_gets_0212(harness: ServerHarness) -> None:
    """A C-ECHO-RQ without Affected SOP Class UID is answered 0x0212 naming it."""
    conn, _ = _associate(harness)
    conn.send(echo_rq(message_id=5, e0002=None))
    [rsp] = responses(conn.received())
    assert rsp[0x0900] == 0x0212 and "AffectedSOPClassUID" in rsp[0x0902]


def test_command_without_message_id_aborts(harness: ServerHarness) -> None:
    """A request with no Message ID cannot be answered: the association is aborted."""
    conn, _ = _associate(harness)
    conn.send(command_pdu({0x0002: VERIFICATION, 0x0100: 0x0030, 0x0800: 0x0101}))
    assert [t for t, _ in conn.received()] == [PDUType.A_ABORT]


def test_command_without_command_field_aborts_saying_why_once(
    harness: ServerHarness, log_events: list[dict[str, Any]]
) -> None:
    """The abort's reason says what is missing, without repeating itself."""
    conn, _ = _associate(harness)
    conn.send(command_pdu({0x0002: VERIFICATION, 0x0110: 1, 0x0800: 0x0101}))
    assert [t for t, _ in conn.received()] == [PDUType.A_ABORT]
    [why] = [e["why"] for e in log_events if e.get("kind") == "association.aborted"]
    assert why == (
        "command without a command field cannot be answered: it has no usable Message ID "
        "or Command Field"
    )


def test_undecodable_command_aborts(harness: ServerHarness) -> None:
    """A command set that does not decode ends the association with A-ABORT."""
    conn, _ = _associate(harness)
    pdv = PresentationDataValue(1, True, True, b"\x00\x00\x00\x00\x04\x00")
    conn.send(codec.encode_p_data(DataTransfer((pdv,))))
    assert [t for t, _ in conn.received()] == [PDUType.A_ABORT]


def test_pdv_for_unaccepted_context_aborts_2_6(harness: ServerHarness) -> None:
    """A PDV on a context that was not accepted -> A-ABORT (service-provider, 6)."""
    conn, _ = _associate(harness)
    conn.send(echo_rq(context_id=3))
    [(pdu_type, body)] = conn.received()
    assert pdu_type is PDUType.A_ABORT and body[2:] == bytes([2, 6])


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"\x0a\x00\x00\x00\x00\x00", 1), (b"\x01\x00\x00\x00\x00\x04abcd", None)],
    ids=["unrecognized-type", "malformed-rq"],
)
def test_garbage_before_association(
    harness: ServerHarness, data: bytes, reason: int | None
) -> None:
    """Garbage in Sta2 -> A-ABORT (AA-1), then ARTIM closes; nothing escapes."""
    conn = harness.connect()
    conn.send(data)
    [(pdu_type, _)] = conn.received()
    assert pdu_type is PDUType.A_ABORT
    harness.clock.advance(10)
    assert conn.closed


def test_unexpected_pdu_after_association_aborts_2_2(harness: ServerHarness) -> None:
    """An A-ASSOCIATE-RQ on an established association -> A-ABORT (2, 2 unexpected-PDU)."""
    conn, _ = _associate(harness)
    conn.send(associate_rq())
    [(pdu_type, body)] = conn.received()
    assert pdu_type is PDUType.A_ABORT and body[2:] == bytes([2, 2])


def test_pdata_longer_than_announced_max_aborts(harness: ServerHarness) -> None:
    """A P-DATA-TF longer than our Max PDU Length is a protocol error -> A-ABORT."""
    conn, ac = _associate(harness)
    announced = ac.user_information.max_pdu_length
    assert announced  # the default is a limit, not 0 (unlimited)
    pdv = PresentationDataValue(1, False, True, b"\x00" * announced)  # PDU length announced + 6
    conn.send(codec.encode_p_data(DataTransfer((pdv,)))[:100])
    [(pdu_type, body)] = conn.received()
    assert pdu_type is PDUType.A_ABORT and body[2:] == bytes([2, 6])


def test_artim_bounds_the_wait_for_associate_rq(harness: ServerHarness) -> None:
    """A peer that connects and sends nothing is dropped when ARTIM expires."""
    conn = harness.connect()
    harness.clock.advance(9.9)
    assert not conn.closed
    harness.clock.advance(0.2)
    assert conn.closed


def test_trickling_peer_is_still_dropped_by_artim(harness: ServerHarness) -> None:
    """One byte a second does not restart ARTIM: the whole wait for the RQ is bounded."""
    conn = harness.connect()
    rq = associate_rq()
    for byte in rq[:12]:
        conn.send(bytes([byte]))
        harness.clock.advance(1)
    assert conn.closed


def test_addin_timeout_gives_failure_and_association_continues(harness: ServerHarness) -> None:
    """An add-in that does not answer within the add-in timeout -> 0x0110; next request served."""
    conn, _ = _associate(
        harness,
        contexts=(
            PresentationContextProposal(1, VERIFICATION, (IMPLICIT,)),
            PresentationContextProposal(3, SLOW_SYNTAX, (IMPLICIT,)),
        ),
    )
    conn.send(echo_rq(message_id=1, context_id=3, e0002=SLOW_SYNTAX))
    assert conn.received() == []
    harness.clock.advance(5)
    [rsp] = responses(conn.received())
    assert rsp[0x0900] == 0x0110 and "within 5 s" in rsp[0x0902]
    harness.threadpool.run_all()  # the late answer is discarded
    assert conn.received() == []
    conn.send(echo_rq(message_id=2))
    assert responses(conn.received())[0][0x0900] == 0


def test_blocking_addin_answer_is_sent(harness: ServerHarness) -> None:
    """A blocking add-in's status is sent once its worker call returns."""
    conn, _ = _associate(
        harness, contexts=(PresentationContextProposal(1, SLOW_SYNTAX, (IMPLICIT,)),)
    )
    conn.send(echo_rq(message_id=1, e0002=SLOW_SYNTAX))
    harness.threadpool.run_all()
    assert responses(conn.received())[0][0x0900] == 0xB000


def test_release_waits_for_request_in_flight(harness: ServerHarness) -> None:
    """A-RELEASE-RQ while a request is in flight: the response comes first, then the RP."""
    conn, _ = _associate(
        harness, contexts=(PresentationContextProposal(1, SLOW_SYNTAX, (IMPLICIT,)),)
    )
    conn.send(echo_rq(message_id=1, e0002=SLOW_SYNTAX) + codec.RELEASE_RQ)
    assert conn.received() == []
    harness.threadpool.run_all()
    kinds = [t for t, _ in conn.received()]
    assert kinds == [PDUType.P_DATA_TF, PDUType.A_RELEASE_RP]


def test_failing_addin_gives_processing_failure(harness: ServerHarness) -> None:
    """An add-in that raises -> 0x0110 with its error in Error Comment."""
    conn, _ = _associate(
        harness, contexts=(PresentationContextProposal(1, FAILING_SYNTAX, (IMPLICIT,)),)
    )
    conn.send(echo_rq(message_id=1, e0002=FAILING_SYNTAX))
    harness.threadpool.run_all()
    [rsp] = responses(conn.received())
    assert rsp[0x0900] == 0x0110 and "disk on fire" in rsp[0x0902]


def test_client_timeout_aborts_idle_association(harness: ServerHarness) -> None:
    """No data from an associated peer for the client timeout -> A-ABORT and close."""
    conn, _ = _associate(harness)
    harness.clock.advance(59)
    conn.send(echo_rq())
    conn.received()
    harness.clock.advance(59)
    assert not conn.closed
    harness.clock.advance(2)
    assert [t for t, _ in conn.received()] == [PDUType.A_ABORT]
    assert conn.closed


def test_spool_file_removed_when_aborted_mid_dataset(harness: ServerHarness) -> None:
    """A data set half received when the peer aborts leaves nothing in the spool."""
    conn, _ = _associate(harness)
    store = {
        0x0002: VERIFICATION,
        0x0100: 0x0001,
        0x0110: 1,
        0x0700: 0,
        0x0800: 0x0000,
        0x1000: "1.2.3",
    }
    conn.send(command_pdu(store))
    pdv = PresentationDataValue(1, False, False, b"\x08\x00" * 500)
    conn.send(codec.encode_p_data(DataTransfer((pdv,))))
    assert list(harness.server.spool_dir.iterdir())
    conn.send(codec.encode_abort(0, 0))
    assert list(harness.server.spool_dir.iterdir()) == []


def test_peer_abort_and_close_are_clean(harness: ServerHarness) -> None:
    """The peer's A-ABORT closes the connection; connectionLost after it is harmless."""
    conn, _ = _associate(harness)
    conn.send(codec.encode_abort(0, 0))
    assert conn.closed
    conn.lose()
    assert harness.factory.connections == set()


def test_echo_response_decodes_with_pydicom_semantics(harness: ServerHarness) -> None:
    """The C-ECHO-RSP carries Affected SOP Class UID and no data set (0x0101)."""
    conn, _ = _associate(harness)
    conn.send(echo_rq())
    [(_, body)] = conn.received()
    rsp = decode_command(codec.decode_p_data(body).values[0].data)
    assert rsp[0x0002] == VERIFICATION and rsp[0x0800] == 0x0101


def test_called_ae_not_checked_when_setting_off(tmp_path: Path) -> None:
    """check_called_ae_title = false: an association to any called AE title is accepted."""
    harness = ServerHarness(tmp_path / "ANY", settings={"check_called_ae_title": False})
    _associate(harness, called="ANY-SCP")


def test_slow_reader_is_throttled_and_cut_after_artim(harness: ServerHarness) -> None:
    """A peer that does not read: reading pauses with the transport, and the close is bounded.

    The transport pauses its producer when its write buffer is full; our throttle then stops
    reading the peer. When the client timeout ends the association, a close that cannot
    drain is cut when ARTIM expires.
    """
    conn, _ = _associate(harness)
    transport = conn.transport
    assert transport.producer is not None and transport.streaming
    transport.producer.pauseProducing()
    assert transport.producerState == "paused"
    transport.producer.resumeProducing()
    assert transport.producerState == "producing"
    aborted: list[bool] = []
    transport.abortConnection = lambda: aborted.append(True)  # type: ignore[method-assign]
    harness.clock.advance(60)  # client timeout: A-ABORT, then a close that never drains
    assert conn.closed and not aborted
    harness.clock.advance(10)  # ARTIM
    assert aborted == [True]


def test_close_after_release_is_cut_when_artim_expires(harness: ServerHarness) -> None:
    """After A-RELEASE-RP, ARTIM closes; a peer that never reads is cut ARTIM later."""
    conn, _ = _associate(harness)
    aborted: list[bool] = []
    conn.transport.abortConnection = lambda: aborted.append(True)  # type: ignore[method-assign]
    conn.send(codec.RELEASE_RQ)
    assert [t for t, _ in conn.received()] == [PDUType.A_RELEASE_RP]
    harness.clock.advance(10)  # ARTIM in Sta13: the close starts (AA-2)
    assert conn.closed and not aborted
    harness.clock.advance(10)  # still not drained: cut
    assert aborted == [True]


def test_uid_too_long_to_echo_is_left_out_of_the_response(
    harness: ServerHarness, log_lines: list[str]
) -> None:
    """An 80-character Affected SOP Instance UID: answered, without it, and logged by name."""
    conn, _ = _associate(harness)
    long_uid = ("1." + "2" * 78).encode()  # encode_command would refuse it: built by hand
    elements = [
        struct.pack("<HHIH", 0, 0x0100, 2, 0x0030),
        struct.pack("<HHIH", 0, 0x0110, 2, 3),
        struct.pack("<HHIH", 0, 0x0800, 2, 0x0101),
        struct.pack("<HHI", 0, 0x1000, len(long_uid)) + long_uid,
    ]
    uid = VERIFICATION.encode() + b"\0" * (len(VERIFICATION) % 2)
    body = struct.pack("<HHI", 0, 0x0002, len(uid)) + uid + b"".join(elements)
    command = struct.pack("<HHII", 0, 0, 4, len(body)) + body
    conn.send(codec.encode_p_data(DataTransfer((PresentationDataValue(1, True, True, command),))))
    [rsp] = responses(conn.received())
    assert rsp[0x0900] == 0 and rsp[0x0120] == 3 and 0x1000 not in rsp
    assert any(
        "AffectedSOPInstanceUID (0000,1000): 80 characters, a UI holds 64" in line
        for line in log_lines
    ), log_lines
    assert not conn.closed


def test_second_request_while_one_is_served_aborts(
    harness: ServerHarness, log_lines: list[str]
) -> None:
    """Window 1/1 (PS3.7 D.3.3.3): a request while another is in flight aborts, naming both."""
    conn, _ = _associate(
        harness,
        contexts=(
            PresentationContextProposal(1, SLOW_SYNTAX, (IMPLICIT,)),
            PresentationContextProposal(3, VERIFICATION, (IMPLICIT,)),
        ),
    )
    conn.send(echo_rq(message_id=1, e0002=SLOW_SYNTAX))
    assert conn.received() == []
    conn.send(echo_rq(message_id=2, context_id=3) + echo_rq(message_id=3, context_id=3))
    assert [t for t, _ in conn.received()] == [PDUType.A_ABORT]
    aborts = [line for line in log_lines if "aborted by us" in line]
    assert len(aborts) == 1, aborts
    assert "C-ECHO-RQ (message 2) arrived while message 1 is still being served" in aborts[0]
    assert "asynchronous operations window of 1" in aborts[0]
    harness.threadpool.run_all()  # the slow answer comes after the end: nothing is sent
    assert conn.received() == []


def test_cancel_is_not_answered_and_the_association_goes_on(
    harness: ServerHarness, log_lines: list[str]
) -> None:
    """C-CANCEL-RQ (PS3.7 9.3.2.3) gets no response; nothing is cancellable here yet."""
    conn, _ = _associate(harness)
    conn.send(echo_rq(message_id=1))
    assert responses(conn.received())[0][0x0900] == 0
    conn.send(command_pdu({0x0100: 0x0FFF, 0x0120: 1, 0x0800: 0x0101}))
    assert conn.received() == [] and not conn.closed
    assert any(
        "C-CANCEL-RQ for message 1 ignored: no operation is in progress" in line
        for line in log_lines
    ), log_lines
    conn.send(echo_rq(message_id=2))
    assert responses(conn.received())[0][0x0900] == 0


def test_a_response_sent_to_us_aborts_naming_it(
    harness: ServerHarness, log_lines: list[str]
) -> None:
    """A DIMSE response arriving at this SCP: no request of ours is outstanding."""
    conn, _ = _associate(harness)
    conn.send(command_pdu({0x0002: VERIFICATION, 0x0100: 0x8030, 0x0120: 1, 0x0800: 0x0101,
                           0x0900: 0}))  # fmt: skip
    assert [t for t, _ in conn.received()] == [PDUType.A_ABORT]
    assert any("unexpected C-ECHO-RSP (responding to message 1)" in line for line in log_lines)


def test_release_in_the_middle_of_a_message_drops_it_with_a_warning(
    harness: ServerHarness, log_lines: list[str]
) -> None:
    """A-RELEASE-RQ after part of a data set: released, the partial spool file deleted, said."""
    conn, _ = _associate(harness)
    command = command_pdu({0x0002: VERIFICATION, 0x0100: 0x0030, 0x0110: 5, 0x0800: 0x0000})
    partial = PresentationDataValue(1, False, False, b"\x08\x00\x52\x00")
    conn.send(command + codec.encode_p_data(DataTransfer((partial,))))
    assert list(harness.server.spool_dir.glob("pacsref-dimse-*"))
    conn.send(codec.RELEASE_RQ)
    assert [t for t, _ in conn.received()] == [PDUType.A_RELEASE_RP]
    assert not list(harness.server.spool_dir.glob("pacsref-dimse-*"))
    assert any(
        "A-RELEASE-RQ while a message was still arriving on presentation context 1" in line
        for line in log_lines
    ), log_lines


def test_proposed_names_that_are_not_uids_refuse_their_context_not_the_association(
    harness: ServerHarness, log_events: list[dict[str, Any]]
) -> None:
    """A letter, a space or non-ASCII bytes in a proposed syntax name refuse that context
    (result 3 or 4) and the rest of the association goes on: DCMTK and pynetdicom compare
    such names as strings and refuse, so one odd entry among a modality's proposals must
    not abort everything as a malformed PDU (it did before)."""
    placeholder = "9.9.9.9.9.9"
    raw = associate_rq(
        contexts=(
            PresentationContextProposal(1, VERIFICATION, ("1.2.840.10008.1.2.1x", EXPLICIT)),
            PresentationContextProposal(3, VERIFICATION, ("not a uid",)),
            PresentationContextProposal(5, VERIFICATION + " ", (placeholder,)),
            PresentationContextProposal(7, VERIFICATION + "Z", (IMPLICIT,)),
        )
    )
    non_ascii = b"1.2.\xff\xfe.9999"
    assert len(non_ascii) == len(placeholder)
    conn = harness.connect()
    conn.send(raw.replace(placeholder.encode(), non_ascii))
    [(pdu_type, body)] = conn.received()
    assert pdu_type is PDUType.A_ASSOCIATE_AC, body
    results = {
        pc.context_id: (int(pc.result), pc.transfer_syntax)
        for pc in codec.decode_associate_ac(body).presentation_contexts
    }
    # 5: trailing spaces are padding (PS3.8 9.3.2.2.1), so its abstract syntax is
    # Verification; its only transfer syntax is the non-ASCII one. (Our AC decoder keeps
    # a transfer syntax for accepted contexts only, hence the empty ones.)
    assert results == {1: (0, EXPLICIT), 3: (4, ""), 5: (4, ""), 7: (3, "")}
    # Refused contexts echo a real UID, never the peer's odd name (strict decoders).
    assert b"not a uid" not in body and b"\xff" not in body and b"x" not in body
    [accepted] = [e for e in log_events if e.get("kind") == "association.accepted"]
    refusals = "\n".join(accepted["refused"])
    assert "'not a uid'" in refusals and "'1.2.\\\\xff\\\\xfe.9999'" in refusals, refusals
    assert "'1.2.840.10008.1.1Z'" in refusals, refusals
    conn.send(echo_rq(message_id=2, context_id=1))
    [rsp] = responses(conn.received())
    assert rsp[0x0900] == 0x0000 and not conn.closed


def test_an_application_context_name_that_is_not_a_uid_is_rejected_1_1_2(
    harness: ServerHarness, log_lines: list[str]
) -> None:
    """An odd application context name gets the reject PS3.8 9.3.4 has for it
    (application-context-name-not-supported), not an abort, and a 300-character one is
    quoted in the log by its start only."""
    name = "1.2.840.10008.3.1.1.1" + "x" * 279
    raw = associate_rq()
    dicom = b"1.2.840.10008.3.1.1.1"
    at = raw.index(b"\x10\x00\x00\x15" + dicom)
    item = struct.pack(">BxH", 0x10, len(name)) + name.encode()
    body = raw[6:at] + item + raw[at + 4 + len(dicom) :]
    conn = harness.connect()
    conn.send(struct.pack(">BxL", 0x01, len(body)) + body)
    [(pdu_type, rj)] = conn.received()
    assert pdu_type is PDUType.A_ASSOCIATE_RJ and rj == bytes([0, 1, 1, 2])
    [line] = [line for line in log_lines if "application context name" in line]
    assert "... (300 characters)" in line and "x" * 100 not in line, line


def test_the_associate_ac_echoes_the_requests_fixed_fields_byte_for_byte(
    harness: ServerHarness,
) -> None:
    """PS3.8 Table 9-17: the AC's called and calling AE title fields and its 32 reserved
    bytes (PDU bytes 11-74) are sent identical to the RQ's, padding and all; before, the
    titles were sent as decoded (leading spaces dropped) and the reserved bytes as zeros."""
    rq = bytearray(associate_rq())
    rq[10:26] = b"  PACSREF       "  # leading spaces: PACSREF to every other test
    rq[26:42] = b" MODALITY\0\0\0\0\0\0\0"
    rq[42:74] = bytes(range(1, 33))
    conn = harness.connect()
    conn.send(bytes(rq))
    [(pdu_type, body)] = conn.received()
    assert pdu_type is PDUType.A_ASSOCIATE_AC
    assert body[4:68] == rq[10:74]
    assert codec.decode_associate_ac(body).called_ae_title == "PACSREF"
