"""A blocking add-in's point of no return against the add-in timeout, through the real server.

The handler runs on the harness's ``ManualThreadPool``; time passes with the harness clock,
here from inside the handler, so "the timer fired while the thread was past its commit" is a
plain sequence of calls. The storage add-in's own case (a nonblocking handler whose store runs
on its index pool) is in ``tests/storage/test_addin_timeout.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pacsref.testing.harness import Connection, ServerHarness
from pacsref.ul import codec
from pacsref.ul.constants import PDUType
from pacsref.ul.events import DataTransfer, PresentationContextProposal, PresentationDataValue

from .helpers import IMPLICIT, associate_rq, command_pdu, responses

STORE_SYNTAX = "1.2.826.0.1.3680043.9.7.22"
TIMEOUT = 4.0
STATUS = 0x0900

COMMITTER_ADDIN = f'''
from zope.interface import implementer
from pacsref.addin import IAddin, IMessageNotification, IStoreHandler, SupportedContext

@implementer(IAddin, IStoreHandler)
class Committer:
    name = "committer"
    description = "a blocking store handler with a point of no return"
    def __init__(self):
        self.decisions = []
        self.before_commit = None  # what "happens meanwhile" while it runs, before its commit
        self.after_commit = None  # what "happens meanwhile" once it committed (the test sets)
    def presentation_contexts(self):
        return (SupportedContext("{STORE_SYNTAX}", ("{IMPLICIT}",)),)
    def handle_store(self, request):
        if self.before_commit is not None:
            self.before_commit()
        go_on = request.point_of_no_return()
        self.decisions.append(go_on)
        if not go_on:
            return 0x0110
        if self.after_commit is not None:
            self.after_commit()
        return 0xB000  # a warning, so the test knows the handler's own status got through

committer = Committer()

@implementer(IAddin, IMessageNotification)
class Listener:
    name = "listener"
    description = "records the requests it is told of"
    def __init__(self):
        self.seen = []
    def presentation_contexts(self):
        return ()
    def notify(self, message):
        self.seen.append((message.message_id, message.status))

listener = Listener()
'''


@pytest.fixture
def harness(tmp_path: Path) -> ServerHarness:
    return ServerHarness(
        tmp_path / "PACSREF", settings={"addin_timeout": TIMEOUT},
        extra_addins={"committer_addin.py": COMMITTER_ADDIN},
    )  # fmt: skip


def _committer(harness: ServerHarness) -> object:
    [addin] = [a for a in harness.server.addins if a.name == "committer"]
    return addin


def _send_store(harness: ServerHarness) -> Connection:
    conn = harness.connect()
    conn.send(associate_rq(contexts=(PresentationContextProposal(1, STORE_SYNTAX, (IMPLICIT,)),)))
    [(pdu_type, body)] = conn.received()
    assert pdu_type is PDUType.A_ASSOCIATE_AC, body
    command = {
        0x0002: STORE_SYNTAX, 0x0100: 0x0001, 0x0110: 7, 0x0700: 0, 0x0800: 0x0000,
        0x1000: "1.2.826.0.1.3680043.9.7.22.1",
    }  # fmt: skip
    conn.send(command_pdu(command, context_id=1))
    dataset = b"\x08\x00\x16\x00\x08\x00\x00\x001.2.3.4\x00"
    conn.send(codec.encode_p_data(DataTransfer((PresentationDataValue(1, False, True, dataset),))))
    return conn


def test_timeout_after_the_commit_waits_for_the_handlers_status(harness: ServerHarness) -> None:
    """The timer fires after the handler committed: the peer gets the handler's own status."""
    committer = _committer(harness)
    committer.after_commit = lambda: harness.clock.advance(TIMEOUT * 10)  # type: ignore[attr-defined]
    conn = _send_store(harness)
    assert responses(conn.received()) == []
    harness.threadpool.run_all()
    [response] = responses(conn.received())
    assert response[STATUS] == 0xB000
    assert committer.decisions == [True]  # type: ignore[attr-defined]


def test_timeout_before_the_commit_answers_0110_and_the_handler_stops(
    harness: ServerHarness,
) -> None:
    """The timer fires while the handler runs, before its commit: 0x0110 at once, and the
    handler is told not to commit."""
    committer = _committer(harness)
    conn = _send_store(harness)
    answered: list[object] = []

    def time_passes() -> None:
        harness.clock.advance(TIMEOUT)
        answered.extend(responses(conn.received()))

    committer.before_commit = time_passes  # type: ignore[attr-defined]
    harness.threadpool.run_all()
    [response] = answered
    assert response[STATUS] == 0x0110  # type: ignore[index]
    assert committer.decisions == [False]  # type: ignore[attr-defined]
    assert responses(conn.received()) == []


def test_a_handler_still_waiting_for_a_thread_at_the_timeout_is_not_called(
    harness: ServerHarness,
) -> None:
    """The timer fires while the request still waits for a pool thread: 0x0110, and the
    handler is never called (nothing it could do would be answered)."""
    committer = _committer(harness)
    conn = _send_store(harness)
    harness.clock.advance(TIMEOUT)
    [response] = responses(conn.received())
    assert response[STATUS] == 0x0110
    harness.threadpool.run_all()
    assert committer.decisions == []  # type: ignore[attr-defined]
    assert responses(conn.received()) == []


def _listener(harness: ServerHarness) -> object:
    [addin] = [a for a in harness.server.addins if a.name == "listener"]
    return addin


def test_association_ending_after_the_commit_still_notifies(harness: ServerHarness) -> None:
    """The peer went away after the handler committed: its late outcome is notified once."""
    committer = _committer(harness)
    conns: list[Connection] = []
    committer.after_commit = lambda: conns[0].lose()  # type: ignore[attr-defined]
    conns.append(_send_store(harness))
    harness.threadpool.run_all()  # the handler, then the notification it led to
    harness.clock.advance(0)
    harness.threadpool.run_all()
    assert committer.decisions == [True]  # type: ignore[attr-defined]
    # no response could be sent: the status told is the handler's own
    assert _listener(harness).seen == [(7, 0xB000)]  # type: ignore[attr-defined]


def test_association_ending_before_the_commit_stops_the_handler(harness: ServerHarness) -> None:
    """The peer went away while the handler ran, before its commit: it is refused its
    commit. Gone while the request still waited for a thread, the handler is not called.
    Either way the listener hears of a request nobody was answered."""
    committer = _committer(harness)
    conn = _send_store(harness)
    committer.before_commit = conn.lose  # type: ignore[attr-defined]
    harness.threadpool.run_all()
    harness.clock.advance(0)
    harness.threadpool.run_all()
    assert committer.decisions == [False]  # type: ignore[attr-defined]
    assert _listener(harness).seen == [(7, None)]  # type: ignore[attr-defined]  # no answer
    committer.before_commit = None  # type: ignore[attr-defined]
    _send_store(harness).lose()
    harness.threadpool.run_all()
    harness.clock.advance(0)
    harness.threadpool.run_all()
    assert committer.decisions == [False]  # type: ignore[attr-defined]
    assert _listener(harness).seen == [(7, None), (7, None)]  # type: ignore[attr-defined]
