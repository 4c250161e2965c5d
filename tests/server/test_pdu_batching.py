"""What the server does does not depend on how TCP split the peer's bytes.

A read may hold several PDUs. The server acts on them one at a time, each after its answer to
the one before: acted on all at once, a later PDU changed the association's state before the
session answered an earlier one, the upper layer then refused the answer, and the session
still reported what it had meant to send ("accepted", "released", an action counted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pacsref.testing.harness import Connection, ServerHarness
from pacsref.ul import codec
from pacsref.ul.constants import PDUType
from pacsref.ul.events import (
    DataTransfer,
    PresentationContextProposal,
    PresentationDataValue,
    ReleaseResponse,
)

from .helpers import (
    IMPLICIT,
    TEST_STORE_SYNTAX,
    VERIFICATION,
    associate_rq,
    associate_store_and_echo,
    command_pdu,
    echo_rq,
    responses,
)

STATUS = 0x0900
#: A PDU type PS3.8 does not define: the server aborts with unrecognized-PDU.
UNKNOWN_PDU = b"\x50\x00\x00\x00\x00\x00"

STORING_ADDIN = f'''
from zope.interface import implementer
from pacsref.addin import IAddin, IStoreHandler, StoreOutcome, SupportedContext, nonblocking

@implementer(IAddin, IStoreHandler)
class Storing:
    name = "storing"
    description = "keeps nothing, answers success on the reactor thread"
    def presentation_contexts(self):
        return (SupportedContext("{TEST_STORE_SYNTAX}", ("{IMPLICIT}",)),)
    @nonblocking
    def handle_store(self, request):
        return StoreOutcome(0x0000, None, "")

storing = Storing()
'''

#: (0008,0016) SOP Class UID, Implicit VR LE.
DATASET = b"\x08\x00\x16\x00\x08\x00\x00\x001.2.3.4\x00"


def _store_rq(message_id: int = 1) -> bytes:
    """One P-DATA-TF with a whole C-STORE-RQ: its command and its data set."""
    command = command_pdu(
        {
            0x0002: TEST_STORE_SYNTAX,
            0x0100: 0x0001,
            0x0110: message_id,
            0x0700: 0,
            0x0800: 0x0000,
            0x1000: "1.2.826.0.1.3680043.9.7.21.1",
        },
        context_id=1,
    )
    data = codec.encode_p_data(DataTransfer((PresentationDataValue(1, False, True, DATASET),)))
    return command + data


def _pdu_types(conn: Connection) -> list[PDUType]:
    return [pdu_type for pdu_type, _ in conn.received()]


def _echo_association(one_read: bool, tmp_path: Path) -> tuple[ServerHarness, Connection, list]:
    harness = ServerHarness(tmp_path / "PACSREF")
    conn = harness.connect()
    rq = associate_rq(contexts=(PresentationContextProposal(1, VERIFICATION, (IMPLICIT,)),))
    if one_read:
        conn.send(rq + echo_rq())
    else:
        conn.send(rq)
        conn.send(echo_rq())
    return harness, conn, conn.received()


def test_a_request_in_the_read_of_the_associate_rq_is_served_as_if_read_apart(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """A-ASSOCIATE-RQ and a C-ECHO-RQ in one read: accepted, then answered, as in two reads.

    Before, the P-DATA-TF was checked against the contexts accepted so far (none) and the
    association aborted with reason 6, while the session still logged it accepted and
    announced it; its A-ASSOCIATE-AC was dropped.
    """
    apart_harness, _, apart = _echo_association(False, tmp_path / "apart")
    harness, conn, together = _echo_association(True, tmp_path / "together")
    assert [t for t, _ in together] == [t for t, _ in apart]
    assert [t for t, _ in together] == [PDUType.A_ASSOCIATE_AC, PDUType.P_DATA_TF]
    assert [r[STATUS] for r in responses(together)] == [0x0000]
    assert harness.event_names() == apart_harness.event_names()
    assert "ClientAction" in harness.event_names()
    assert not conn.closed
    assert not [e for e in log_events if str(e.get("log_format", "")).startswith("dropped ")]


def _released(harness: ServerHarness, conn: Connection) -> str:
    conn.lose()
    [event] = [e for e in harness.events if e.name == "ClientDisconnected"]
    return event.reason


def test_two_release_requests_in_one_read_release_once(tmp_path: Path) -> None:
    """A-RELEASE-RQ twice in one read: released (the second one arrives in Sta13 and is
    ignored, PS3.8 AA-6), not an A-ABORT reported as "released" with no A-RELEASE-RP."""
    harness = ServerHarness(tmp_path / "PACSREF")
    conn = associate_store_and_echo(harness, VERIFICATION)
    conn.send(codec.RELEASE_RQ + codec.RELEASE_RQ)
    assert _pdu_types(conn) == [PDUType.A_RELEASE_RP]
    assert _released(harness, conn) == "released"


def test_a_request_after_the_release_request_in_one_read_is_ignored(tmp_path: Path) -> None:
    """A-RELEASE-RQ then a P-DATA-TF in one read: released; the P-DATA-TF, arriving after
    the A-RELEASE-RP was sent, is ignored (Sta13), as it would be in a read of its own."""
    harness = ServerHarness(tmp_path / "PACSREF")
    conn = associate_store_and_echo(harness, VERIFICATION)
    conn.send(codec.RELEASE_RQ + echo_rq(context_id=3))
    assert _pdu_types(conn) == [PDUType.A_RELEASE_RP]
    assert _released(harness, conn) == "released"
    assert "ClientAction" not in harness.event_names()


def test_a_store_answered_at_once_is_answered_before_the_abort_the_next_pdu_causes(
    tmp_path: Path,
) -> None:
    """A whole C-STORE-RQ and an unknown PDU in one read: the C-STORE-RSP, then the A-ABORT,
    as in two reads. Before, the object was stored but its response dropped (the unknown
    PDU had already put the association in Sta13), and the action still counted."""
    outcomes = []
    for one_read in (False, True):
        harness = ServerHarness(
            tmp_path / f"PACSREF-{one_read}", extra_addins={"storing_addin.py": STORING_ADDIN}
        )
        conn = associate_store_and_echo(harness, TEST_STORE_SYNTAX)
        if one_read:
            conn.send(_store_rq() + UNKNOWN_PDU)
        else:
            conn.send(_store_rq())
            conn.send(UNKNOWN_PDU)
        received = conn.received()
        outcomes.append(
            (
                [t for t, _ in received],
                [r[STATUS] for r in responses(received)],
                harness.event_names().count("ClientAction"),
            )
        )
    assert outcomes[0] == outcomes[1]
    assert outcomes[1] == ([PDUType.P_DATA_TF, PDUType.A_ABORT], [0x0000], 1)


def test_a_release_response_the_upper_layer_refuses_is_not_reported_as_released(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """If the upper layer refuses the A-RELEASE-RP (the association ended under the session),
    the session says so and reports no release: no "released" line, reason or hooks."""
    harness = ServerHarness(tmp_path / "PACSREF")
    conn = associate_store_and_echo(harness, VERIFICATION)
    session = conn.protocol.session
    assert session is not None
    send = session._send

    def refusing(primitive: object) -> object:
        return False if isinstance(primitive, ReleaseResponse) else send(primitive)

    session._send = refusing
    conn.send(codec.RELEASE_RQ)
    assert _pdu_types(conn) == []
    assert session.end_reason != "released"
    assert [e["what"] for e in log_events if e.get("kind") == "association.not_sent"] == [
        "its A-RELEASE-RP"
    ]
    assert not [e for e in log_events if e.get("kind") == "association.released"]


def test_a_malformed_pdu_after_our_abort_is_no_second_end(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """After the session aborted (an unexpected C-ECHO-RSP), a malformed PDU is answered with
    one more A-ABORT (PS3.8 Sta13, AA-7) and logged as coming after the end, not as a second
    "aborted by us" line giving another reason."""
    harness = ServerHarness(tmp_path / "PACSREF")
    conn = associate_store_and_echo(harness, VERIFICATION)
    conn.send(command_pdu({0x0002: VERIFICATION, 0x0100: 0x8030, 0x0120: 1, 0x0800: 0x0101,
                           0x0900: 0}, context_id=3))  # fmt: skip
    conn.send(UNKNOWN_PDU)
    assert _pdu_types(conn) == [PDUType.A_ABORT, PDUType.A_ABORT]
    [ended] = [e for e in log_events if e.get("kind") == "association.aborted"]
    assert "unexpected C-ECHO-RSP" in ended["why"]
    [after] = [e for e in log_events if e.get("kind") == "association.abort_after_end"]
    assert "unrecognized PDU type 0x50" in after["detail"]
