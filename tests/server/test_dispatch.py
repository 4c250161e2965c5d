"""The dispatcher serves a DIMSE-C request only as the SOP class its context was negotiated for.

The context's abstract syntax chooses the add-in; a command naming another Affected SOP Class
UID would otherwise be served as something never negotiated (a C-STORE of SOP class 1.2.3.4 on
a context accepted for one storage class), past the negotiated SOP class list and the storage
add-in's "accept unknown storage classes" option. Driven through the real server in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.logger import LogLevel

from pacsref.addin import AssociationInfo
from pacsref.dimse import DimseMessage
from pacsref.dimse.responses import MAX_ERROR_COMMENT
from pacsref.testing.harness import Connection, ServerHarness
from pacsref.ul import codec
from pacsref.ul.events import DataTransfer, PresentationDataValue

from .helpers import (
    CT_IMAGE,
    IMPLICIT,
    TEST_STORE_SYNTAX,
    VERIFICATION,
    associate_store_and_echo,
    command_pdu,
    echo_rq,
    responses,
)

#: A private storage class only the recorder add-in declares, so no shipped add-in is involved.
STORE_SYNTAX = TEST_STORE_SYNTAX
STATUS = 0x0900
ERROR_COMMENT = 0x0902
SOP_CLASS_NOT_SUPPORTED = 0x0122
MISMATCH = "dimse.sop_class_mismatch"

RECORDER_ADDIN = f'''
from zope.interface import implementer
from pacsref.addin import IAddin, IStoreHandler, SupportedContext, nonblocking

@implementer(IAddin, IStoreHandler)
class Recorder:
    name = "recorder"
    description = "stores nothing; remembers the SOP class of each request it is given"
    def __init__(self):
        self.calls = []
    def presentation_contexts(self):
        return (SupportedContext("{STORE_SYNTAX}", ("{IMPLICIT}",)),)
    @nonblocking
    def handle_store(self, request):
        self.calls.append(request.affected_sop_class_uid)
        return 0

recorder = Recorder()
'''

#: (0008,0016) SOP Class UID, Implicit VR LE: the recorder never reads it.
DATASET = b"\x08\x00\x16\x00\x08\x00\x00\x001.2.3.4\x00"


@pytest.fixture
def harness(tmp_path: Path) -> ServerHarness:
    return ServerHarness(tmp_path / "PACSREF", extra_addins={"recorder_addin.py": RECORDER_ADDIN})


def _calls(harness: ServerHarness) -> list[str]:
    [recorder] = [addin for addin in harness.server.addins if addin.name == "recorder"]
    return recorder.calls  # type: ignore[no-any-return]


def _associate(harness: ServerHarness) -> Connection:
    return associate_store_and_echo(harness, STORE_SYNTAX)


def _store(conn: Connection, message_id: int, sop_class: str) -> dict[int, object]:
    """Send a C-STORE-RQ on context 1 whose command names ``sop_class``; its one response."""
    command = {
        0x0002: sop_class,
        0x0100: 0x0001,
        0x0110: message_id,
        0x0700: 0,
        0x0800: 0x0000,
        0x1000: f"1.2.826.0.1.3680043.9.7.21.{message_id}",
    }
    conn.send(command_pdu(command, context_id=1))
    conn.send(codec.encode_p_data(DataTransfer((PresentationDataValue(1, False, True, DATASET),))))
    [response] = responses(conn.received())
    return response


def test_store_naming_another_sop_class_is_refused_without_calling_the_addin(
    harness: ServerHarness, log_events: list[dict[str, Any]]
) -> None:
    """0x0122, an Error Comment naming both UIDs and the context, a warning naming the peer."""
    conn = _associate(harness)
    response = _store(conn, 5, "1.2.3.4")
    assert response[STATUS] == SOP_CLASS_NOT_SUPPORTED
    assert response[0x0120] == 5 and response[0x0002] == "1.2.3.4"
    comment = response[ERROR_COMMENT]
    assert isinstance(comment, str)
    assert "1.2.3.4" in comment and STORE_SYNTAX in comment and "context 1" in comment
    assert _calls(harness) == []
    [line] = [e for e in log_events if e.get("kind") == MISMATCH]
    assert line["log_level"] is LogLevel.warn
    assert line["calling"] == "MODALITY" and line["context_id"] == 1
    assert (line["sop_class"], line["abstract_syntax"]) == ("1.2.3.4", STORE_SYNTAX)


def test_store_of_the_negotiated_sop_class_is_still_dispatched(
    harness: ServerHarness, log_events: list[dict[str, Any]]
) -> None:
    """The refusal ends that request only: the next, matching one reaches the add-in."""
    conn = _associate(harness)
    assert _store(conn, 5, CT_IMAGE)[STATUS] == SOP_CLASS_NOT_SUPPORTED
    response = _store(conn, 6, STORE_SYNTAX)
    assert response[STATUS] == 0 and ERROR_COMMENT not in response
    assert _calls(harness) == [STORE_SYNTAX]
    assert len([e for e in log_events if e.get("kind") == MISMATCH]) == 1


def test_echo_naming_another_sop_class_is_refused(harness: ServerHarness) -> None:
    """C-ECHO too: the Verification add-in, which always answers 0x0000, is not called."""
    conn = _associate(harness)
    conn.send(echo_rq(message_id=7, context_id=3, e0002=CT_IMAGE))
    [response] = responses(conn.received())
    assert response[STATUS] == SOP_CLASS_NOT_SUPPORTED
    assert CT_IMAGE in response[ERROR_COMMENT]  # type: ignore[operator]
    conn.send(echo_rq(message_id=8, context_id=3))
    assert responses(conn.received())[0][STATUS] == 0


def test_a_command_nobody_serves_on_the_context_keeps_0211(harness: ServerHarness) -> None:
    """Whether the command is served there at all is asked first (C-ECHO on a storage context)."""
    conn = _associate(harness)
    conn.send(echo_rq(message_id=9, context_id=1))
    [response] = responses(conn.received())
    assert response[STATUS] == 0x0211


def _dispatch(harness: ServerHarness, message: DimseMessage, abstract_syntax: str) -> Any:
    association = AssociationInfo("MODALITY", "PACSREF", "127.0.0.1", 40000)
    results: list[Any] = []
    harness.factory.dispatcher.dispatch(message, association, abstract_syntax).addCallback(
        results.extend
    )
    [(fields, dataset)] = results
    assert dataset is None
    return fields


def test_long_uids_still_fit_the_error_comment(harness: ServerHarness) -> None:
    """Error Comment is LO (64 characters): a shorter wording keeps both UIDs whole."""
    command = {0x0002: CT_IMAGE, 0x0100: 0x0030, 0x0110: 4, 0x0800: 0x0101}
    message = DimseMessage(131, command, None, IMPLICIT)
    fields = _dispatch(harness, message, VERIFICATION)
    comment = fields[ERROR_COMMENT]
    assert fields[STATUS] == SOP_CLASS_NOT_SUPPORTED and len(comment) <= MAX_ERROR_COMMENT
    assert CT_IMAGE in comment and VERIFICATION in comment and "context 131" in comment


def test_dispatcher_fails_closed_without_an_affected_sop_class(harness: ServerHarness) -> None:
    """The session answers a missing UID 0x0212 first; called directly, no add-in is reached."""
    message = DimseMessage(3, {0x0100: 0x0030, 0x0110: 4, 0x0800: 0x0101}, None, IMPLICIT)
    fields = _dispatch(harness, message, VERIFICATION)
    assert fields[STATUS] == SOP_CLASS_NOT_SUPPORTED
