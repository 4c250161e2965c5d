"""An add-in's presentation contexts are asked for once, at start-up.

The server used to ask again per route and for every request on a fallback-accepted context,
so an add-in whose answer changed, was slow or raised after the loader's check cost peers at
run time, or ended start-up with a traceback.
"""

from __future__ import annotations

from pathlib import Path

from pacsref.testing.harness import ServerHarness
from pacsref.ul import codec
from pacsref.ul.events import DataTransfer, PresentationDataValue

from .helpers import (
    IMPLICIT,
    TEST_STORE_SYNTAX,
    associate_store_and_echo,
    command_pdu,
    responses,
)

STATUS = 0x0900
#: (0008,0016) SOP Class UID, Implicit VR LE: enough of a data set for a handler that reads none.
DATASET = b"\x08\x00\x16\x00\x08\x00\x00\x001.2.3.4\x00"

ADDINS = f'''
from zope.interface import implementer
from pacsref.addin import IAddin, IStoreHandler, SupportedContext

@implementer(IAddin)
class RaisesLater:
    name = "raises-later"
    description = "answers the loader's check, then raises"
    def __init__(self):
        self.calls = 0
    def presentation_contexts(self):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("contexts unavailable")
        return ()

@implementer(IAddin, IStoreHandler)
class Counted:
    name = "counted"
    description = "stores nothing; counts how often its contexts are asked for"
    def __init__(self):
        self.calls = 0
    def presentation_contexts(self):
        self.calls += 1
        return (SupportedContext("{TEST_STORE_SYNTAX}", ("{IMPLICIT}",)),)
    def handle_store(self, request):
        return 0

raises_later = RaisesLater()
counted = Counted()
'''


def _harness(tmp_path: Path) -> ServerHarness:
    return ServerHarness(tmp_path / "PACSREF", extra_addins={"declaring.py": ADDINS})


def test_an_addin_whose_contexts_raise_at_start_up_is_a_load_failure(tmp_path: Path) -> None:
    """The server starts without it and says why, as for any add-in that fails to load."""
    harness = _harness(tmp_path)
    assert "raises-later" not in [a.name for a in harness.server.addins]
    [failure] = [f for f in harness.server.failures if f.name == "raises-later"]
    assert failure.error == "RuntimeError: contexts unavailable (presentation_contexts())"


def test_contexts_are_not_asked_for_again_while_serving(tmp_path: Path) -> None:
    harness = _harness(tmp_path)
    [counted] = [a for a in harness.server.addins if a.name == "counted"]
    asked = counted.calls  # the loader's check and the server's one question
    conn = associate_store_and_echo(harness, TEST_STORE_SYNTAX)
    for message_id in (1, 2):
        command = {
            0x0002: TEST_STORE_SYNTAX,
            0x0100: 0x0001,
            0x0110: message_id,
            0x0700: 0,
            0x0800: 0x0000,
            0x1000: f"1.2.826.0.1.3680043.9.7.30.{message_id}",
        }
        data = PresentationDataValue(1, False, True, DATASET)
        conn.send(command_pdu(command) + codec.encode_p_data(DataTransfer((data,))))
        harness.threadpool.run_all()  # the handler runs on the pool
    statuses = [r[STATUS] for r in responses(conn.received())]
    assert statuses == [0, 0]
    assert counted.calls == asked == 2
