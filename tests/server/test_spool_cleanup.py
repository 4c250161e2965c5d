"""A request's spool file is deleted after its response is sent, and failing to delete it
costs the peer nothing.

A spool file system that turns read-only (ext4 ``errors=remount-ro``) while a C-STORE is
served makes the deletion fail; the peer still gets exactly one final response, the
association goes on, and the server logs one warning instead of an unhandled error. Driven
through the real server in memory, with a store handler that raises (as one would that
cannot rename on that file system), on the reactor thread and on the thread pool.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from pacsref.dimse import SPOOL_PREFIX, DimseMessage
from pacsref.testing.harness import Connection, ServerHarness
from pacsref.ul import codec
from pacsref.ul.constants import PDUType
from pacsref.ul.events import DataTransfer, PresentationDataValue

from .helpers import (
    IMPLICIT,
    TEST_STORE_SYNTAX,
    associate_store_and_echo,
    command_pdu,
    echo_rq,
    responses,
)

#: A private storage class only the failing add-in declares, so no shipped add-in is involved.
STORE_SYNTAX = TEST_STORE_SYNTAX
STATUS = 0x0900
PROCESSING_FAILURE = 0x0110

FAILING_ADDIN = f'''
from zope.interface import implementer
from pacsref.addin import IAddin, IStoreHandler, SupportedContext, nonblocking

@implementer(IAddin, IStoreHandler)
class Failing:
    name = "failing"
    description = "cannot store anything: raises"
    def presentation_contexts(self):
        return (SupportedContext("{STORE_SYNTAX}", ("{IMPLICIT}",)),)
    def handle_store(self, request):
        raise RuntimeError("cannot rename the spool file")

@implementer(IAddin, IStoreHandler)
class FailingNow(Failing):
    name = "failing-now"
    description = "cannot store anything: raises on the reactor thread"
    @nonblocking
    def handle_store(self, request):
        raise RuntimeError("cannot rename the spool file")
'''

#: (0008,0016) SOP Class UID, Implicit VR LE: the add-in never reads it.
DATASET = b"\x08\x00\x16\x00\x08\x00\x00\x001.2.3.4\x00"


def _harness(tmp_path: Path, on_reactor: bool) -> ServerHarness:
    """A server whose one store add-in raises, on the reactor thread or on the pool."""
    source = FAILING_ADDIN + ("failing = FailingNow()\n" if on_reactor else "failing = Failing()\n")
    return ServerHarness(tmp_path / "PACSREF", extra_addins={"failing_addin.py": source})


def _associate(harness: ServerHarness) -> Connection:
    return associate_store_and_echo(harness, STORE_SYNTAX)


def _send_store(harness: ServerHarness, conn: Connection, message_id: int) -> None:
    command = {
        0x0002: STORE_SYNTAX,
        0x0100: 0x0001,
        0x0110: message_id,
        0x0700: 0,
        0x0800: 0x0000,
        0x1000: f"1.2.826.0.1.3680043.9.7.21.{message_id}",
    }
    conn.send(command_pdu(command, context_id=1))
    conn.send(codec.encode_p_data(DataTransfer((PresentationDataValue(1, False, True, DATASET),))))
    harness.threadpool.run_all()


@pytest.fixture
def read_only_spool(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Spool files can no longer be deleted (EROFS); the list collects the attempts."""
    attempts: list[Path] = []
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self.name.startswith(SPOOL_PREFIX):
            attempts.append(self)
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    return attempts


@pytest.mark.parametrize("on_reactor", [False, True], ids=["thread-pool", "reactor-thread"])
def test_undeletable_spool_file_still_gets_its_one_response(
    tmp_path: Path,
    on_reactor: bool,
    read_only_spool: list[Path],
    log_events: list[dict[str, Any]],
) -> None:
    """The failure status goes out once, the association goes on (a C-ECHO after it
    succeeds), and the undeletable file is one warning naming it, not an unhandled error."""
    harness = _harness(tmp_path, on_reactor)
    conn = _associate(harness)

    _send_store(harness, conn, 7)

    [response] = responses(conn.received())
    assert response[0x0120] == 7 and response[STATUS] == PROCESSING_FAILURE
    assert not conn.closed
    [spool_file] = read_only_spool
    [warning] = [e for e in log_events if e.get("kind") == "spool.undeletable"]
    assert warning["file"] == str(spool_file) and warning["errno"] == errno.EROFS
    assert "log_failure" not in warning
    os_errors = [e for e in log_events if e.get("log_failure") and e["log_failure"].check(OSError)]
    assert os_errors == []
    conn.send(echo_rq(message_id=8, context_id=3))
    [echo] = responses(conn.received())
    assert echo[0x0120] == 8 and echo[STATUS] == 0


@pytest.mark.parametrize("on_reactor", [False, True], ids=["thread-pool", "reactor-thread"])
def test_response_is_sent_before_the_spool_file_is_deleted(
    tmp_path: Path, on_reactor: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Send first, then discard: when the spool file is deleted, the response is already
    written, so nothing the deletion does can keep it from the peer."""
    harness = _harness(tmp_path, on_reactor)
    conn = _associate(harness)
    written_at_discard: list[bytes] = []
    real_discard = DimseMessage.discard

    def discard(self: DimseMessage) -> None:
        if self.message_id == 7 and self.dataset_path is not None:
            written_at_discard.append(conn.transport.value())
        real_discard(self)

    monkeypatch.setattr(DimseMessage, "discard", discard)

    _send_store(harness, conn, 7)

    [written] = written_at_discard
    [(pdu_type, body)] = conn.received()
    assert pdu_type is PDUType.P_DATA_TF
    assert written.endswith(body)
    [response] = responses([(pdu_type, body)])
    assert response[0x0120] == 7 and response[STATUS] == PROCESSING_FAILURE


class _SocketLikeTransport(StringTransport):
    """A ``StringTransport`` with what ``flush_now`` reads of a plain TCP connection: what
    was written stays pending until ``doWrite`` sends it, as with Twisted's own buffer."""

    TLS = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent = b""

    @property
    def _tempDataLen(self) -> int:  # Twisted's attribute name
        return len(self.io.getvalue()) - len(self.sent)

    dataBuffer = b""

    def doWrite(self) -> None:  # Twisted's method name
        self.sent = self.io.getvalue()


@pytest.mark.parametrize("on_reactor", [False, True], ids=["thread-pool", "reactor-thread"])
def test_response_leaves_for_the_socket_before_the_spool_file_is_deleted(
    tmp_path: Path, on_reactor: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The response is sent, not only buffered, before the clean-up: a peer sending one object
    at a time waits for it, so the clean-up must not delay it; nor, for a request served on
    the thread pool, the reactor's next iteration."""
    harness = _harness(tmp_path, on_reactor)
    peer = IPv4Address("TCP", "127.0.0.1", 40000)
    protocol = harness.factory.buildProtocol(peer)
    transport = _SocketLikeTransport(peerAddress=peer)
    protocol.makeConnection(transport)
    conn = associate_store_and_echo(harness, STORE_SYNTAX, Connection(protocol, transport))
    sent_at_discard: list[bytes] = []
    real_discard = DimseMessage.discard

    def discard(self: DimseMessage) -> None:
        if self.message_id == 7 and self.dataset_path is not None:
            sent_at_discard.append(transport.sent)
        real_discard(self)

    monkeypatch.setattr(DimseMessage, "discard", discard)

    command = {
        0x0002: STORE_SYNTAX,
        0x0100: 0x0001,
        0x0110: 7,
        0x0700: 0,
        0x0800: 0x0000,
        0x1000: "1.2.826.0.1.3680043.9.7.21.7",
    }
    conn.send(command_pdu(command, context_id=1))
    # Only the last PDV's read serves a request on the reactor thread; on the pool, the
    # response is written when the test runs the pool, outside any read.
    conn.send(codec.encode_p_data(DataTransfer((PresentationDataValue(1, False, True, DATASET),))))
    harness.threadpool.run_all()

    [sent] = sent_at_discard
    assert sent == transport.io.getvalue()
    [(pdu_type, body)] = conn.received()
    assert pdu_type is PDUType.P_DATA_TF and sent.endswith(body)
    [response] = responses([(pdu_type, body)])
    assert response[0x0120] == 7 and response[STATUS] == PROCESSING_FAILURE
