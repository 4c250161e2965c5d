"""``IMessageNotification`` add-ins hear of every request after its response, refusals included.

docs/storage.md promises the subscribers "every request after its response was sent": a
request the session or the dispatcher turns down without calling a handler (0x0122, 0x0211,
0x0212, 0xA700) or a handler that returns no status counts too. They are told after the
response is written, on the thread pool, with no data set; one that raises changes nothing
for the peer. Driven through the real server in memory.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pacsref.testing.harness import Connection, ServerHarness
from pacsref.ul import codec
from pacsref.ul.events import DataTransfer, PresentationDataValue

from .helpers import (
    CT_IMAGE,
    IMPLICIT,
    TEST_STORE_SYNTAX,
    associate_store_and_echo,
    command_pdu,
    echo_rq,
    responses,
)

#: A private storage class only the recorder add-in declares, so no shipped add-in is involved.
STORE_SYNTAX = TEST_STORE_SYNTAX
STATUS = 0x0900

ADDINS = f'''
from zope.interface import implementer
from pacsref.addin import (
    IAddin, IMessageNotification, IStoreHandler, SupportedContext, nonblocking,
)

@implementer(IAddin, IStoreHandler)
class Recorder:
    name = "recorder"
    description = "stores nothing; answers what the test sets"
    answer = 0
    def presentation_contexts(self):
        return (SupportedContext("{STORE_SYNTAX}", ("{IMPLICIT}",)),)
    @nonblocking
    def handle_store(self, request):
        return self.answer

@implementer(IAddin, IMessageNotification)
class Listener:
    name = "listener"
    description = "records what it is told"
    def __init__(self):
        self.seen = []
    def presentation_contexts(self):
        return ()
    def notify(self, message):
        self.seen.append(message)

@implementer(IAddin, IMessageNotification)
class Broken:
    name = "broken-listener"
    description = "always raises"
    def __init__(self):
        self.calls = 0
    def presentation_contexts(self):
        return ()
    def notify(self, message):
        self.calls += 1
        raise RuntimeError("observer bug")

broken = Broken()
recorder = Recorder()
listener = Listener()
'''

#: (0008,0016) SOP Class UID, Implicit VR LE: the recorder never reads it.
DATASET = b"\x08\x00\x16\x00\x08\x00\x00\x001.2.3.4\x00"


@pytest.fixture
def harness(tmp_path: Path) -> ServerHarness:
    return ServerHarness(tmp_path / "PACSREF", extra_addins={"notified_addins.py": ADDINS})


def _addin(harness: ServerHarness, name: str) -> Any:
    [addin] = [a for a in harness.server.addins if a.name == name]
    return addin


def _associate(harness: ServerHarness) -> Connection:
    return associate_store_and_echo(harness, STORE_SYNTAX)


def _store(message_id: int, **fields: object) -> bytes:
    """A C-STORE-RQ on context 1 and its data set; ``fields`` replace (None: drop) elements."""
    command: dict[int, object] = {
        0x0002: STORE_SYNTAX,
        0x0100: 0x0001,
        0x0110: message_id,
        0x0700: 0,
        0x0800: 0x0000,
        0x1000: f"1.2.826.0.1.3680043.9.7.21.{message_id}",
    }
    command.update({int(k[1:], 16): v for k, v in fields.items()})
    command = {k: v for k, v in command.items() if v is not None}
    data = PresentationDataValue(1, False, True, DATASET)
    return command_pdu(command, context_id=1) + codec.encode_p_data(DataTransfer((data,)))


def _sop_class_mismatch(harness: ServerHarness, message_id: int) -> bytes:
    return _store(message_id, x0002=CT_IMAGE)


def _echo_on_storage_context(harness: ServerHarness, message_id: int) -> bytes:
    return echo_rq(message_id=message_id, context_id=1)


def _unknown_command(harness: ServerHarness, message_id: int) -> bytes:
    return command_pdu({0x0002: STORE_SYNTAX, 0x0100: 0x0005, 0x0110: message_id, 0x0800: 0x0101})


def _missing_priority(harness: ServerHarness, message_id: int) -> bytes:
    return _store(message_id, x0700=None)


def _spool_failure(harness: ServerHarness, message_id: int) -> bytes:
    shutil.rmtree(harness.server.spool_dir)
    return _store(message_id)


def _no_status(harness: ServerHarness, message_id: int) -> bytes:
    _addin(harness, "recorder").answer = "stored, probably"
    return _store(message_id)


@pytest.mark.parametrize(
    ("request_for", "status"),
    [
        (_sop_class_mismatch, 0x0122),
        (_echo_on_storage_context, 0x0211),
        (_unknown_command, 0x0211),
        (_missing_priority, 0x0212),
        (_spool_failure, 0xA700),
        (_no_status, 0x0110),
    ],
    ids=["0122-sop-class", "0211-not-served", "0211-unknown", "0212-missing", "A700-spool", "0110"],
)
def test_refused_request_is_notified_after_its_response(
    harness: ServerHarness,
    request_for: Callable[[ServerHarness, int], bytes],
    status: int,
    log_events: list[dict[str, Any]],
) -> None:
    """One notification per refused request, after the response is written, on the thread
    pool, without a data set; the subscriber that raises is logged and the association goes on."""
    listener, broken = _addin(harness, "listener"), _addin(harness, "broken-listener")
    conn = _associate(harness)

    conn.send(request_for(harness, 5))

    [response] = responses(conn.received())
    assert response[0x0120] == 5 and response[STATUS] == status
    assert listener.seen == [] and broken.calls == 0  # nothing before the response is out
    harness.clock.advance(0)
    assert listener.seen == []  # read and delivered on the thread pool, not the reactor
    harness.threadpool.run_all()
    [message] = listener.seen
    assert message.message_id == 5 and message.context_id in (1, 3)
    assert message.dataset is None
    assert message.status == status  # what the peer was answered with
    assert broken.calls == 1
    [failure] = [e for e in log_events if e.get("addin") == "broken-listener"]
    assert failure["log_failure"].check(RuntimeError)
    assert not conn.closed and responses(conn.received()) == []
    conn.send(echo_rq(message_id=6, context_id=3))
    [echo] = responses(conn.received())
    assert echo[0x0120] == 6 and echo[STATUS] == 0


def test_served_and_refused_requests_are_each_notified_once(harness: ServerHarness) -> None:
    """A stored request, a refused one and a C-ECHO: three notifications, in order."""
    listener = _addin(harness, "listener")
    conn = _associate(harness)
    conn.send(_store(1))
    conn.send(_store(2, x0002=CT_IMAGE))
    conn.send(echo_rq(message_id=3, context_id=3))
    statuses = [(r[0x0120], r[STATUS]) for r in responses(conn.received())]
    assert statuses == [(1, 0), (2, 0x0122), (3, 0)]
    harness.clock.advance(0)
    harness.threadpool.run_all()
    assert [(m.message_id, m.status) for m in listener.seen] == statuses
