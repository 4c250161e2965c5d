"""Every request's success and error paths, bad input, ordering and notifications, in memory."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail

from pacsref.admin.messages import MAX_LINE_LENGTH
from tests.admin.helpers import Admin, association

MODALITY = {
    "ae_title": "MODALITY",
    "host": "127.0.0.1",
    "port": 104,
    "description": "",
    "move_destination": True,
    "secure": False,
}
NEW = {"ae_title": "WS1", "host": "ws1.example", "port": 11112}


def ok(reply: dict[str, Any], message: str) -> list[Any]:
    assert (reply["message"], reply["success"], reply["error"]) == (message, True, "")
    assert reply["service"] == "PACSREF"
    return reply["data"]


def refused(reply: dict[str, Any], message: str, words: str) -> None:
    assert (reply["message"], reply["success"], reply["data"]) == (message, False, [])
    assert words in reply["error"], reply["error"]


def test_get_ae_titles() -> None:
    admin = Admin()
    assert ok(admin.connect().request("GetAeTitles"), "GetAeTitles") == [[MODALITY]]


def test_add_ae_title_and_its_errors() -> None:
    admin = Admin()
    conn = admin.connect()
    [stored] = ok(conn.request("AddAeTitle", NEW), "AddAeTitle")
    assert stored["ae_title"] == "WS1" and stored["move_destination"] is True
    assert admin.titles.get("WS1") is not None
    assert admin.hosts == ["ws1.example"]
    refused(conn.request("AddAeTitle", NEW), "AddAeTitle", "'WS1' already exists")
    refused(conn.request("AddAeTitle", {**NEW, "ae_title": "ws1"}), "AddAeTitle", "letter case")
    refused(conn.request("AddAeTitle", {**NEW, "ae_title": ""}), "AddAeTitle", "data[0] (info)")


def test_update_ae_title_and_its_errors() -> None:
    admin = Admin()
    conn = admin.connect()
    data = ok(conn.request("UpdateAeTitle", "MODALITY", NEW), "UpdateAeTitle")
    assert data[0] == "MODALITY" and data[1]["ae_title"] == "WS1"
    assert [i.ae_title for i in admin.titles.list()] == ["WS1"]
    assert admin.hosts == ["ws1.example", "127.0.0.1"]
    refused(conn.request("UpdateAeTitle", "GONE", NEW), "UpdateAeTitle", "'GONE' does not exist")
    refused(conn.request("UpdateAeTitle", "WS1"), "UpdateAeTitle", "takes 2 data item(s)")


def test_remove_ae_title_and_its_errors() -> None:
    admin = Admin()
    conn = admin.connect()
    assert ok(conn.request("RemoveAeTitle", " MODALITY "), "RemoveAeTitle") == ["MODALITY"]
    assert admin.titles.list() == ()
    refused(conn.request("RemoveAeTitle", "MODALITY"), "RemoveAeTitle", "does not exist")


def test_ae_title_changes_run_through_run_in_thread() -> None:
    calls: list[Any] = []

    def run_in_thread(function: Any, *args: Any) -> Deferred[Any]:
        calls.append((function.__name__, args))
        return Deferred()

    admin = Admin(run_in_thread)
    conn = admin.connect()
    conn.protocol.dataReceived(b'{"message": "RemoveAeTitle", "data": ["MODALITY"]}\n')
    assert calls == [("remove", ("MODALITY",))]
    assert conn.read() == []  # answered when the worker thread is done


def _held_threads() -> tuple[list[Deferred[Any]], Any]:
    """A ``run_in_thread`` whose calls wait until the test fires them (in ``pending``)."""
    pending: list[Deferred[Any]] = []

    def run_in_thread(function: Any, *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        pending.append(d)
        d.addCallback(lambda _: function(*args))
        return d

    return pending, run_in_thread


def test_responses_keep_request_order_while_a_thread_works() -> None:
    pending, run_in_thread = _held_threads()
    admin = Admin(run_in_thread)
    conn = admin.connect()
    conn.protocol.dataReceived(
        b'{"message": "RemoveAeTitle", "data": ["MODALITY"]}\n{"message": "GetAeTitles"}\n'
    )
    assert conn.read() == []
    pending[0].callback(None)
    first, second = conn.read()
    assert ok(first, "RemoveAeTitle") == ["MODALITY"]
    assert ok(second, "GetAeTitles") == [[]]


def test_unexpected_handler_failure_is_reported_not_raised() -> None:
    admin = Admin(lambda f, *a: fail(OSError("disk full")))
    conn = admin.connect()
    refused(conn.request("AddAeTitle", NEW), "AddAeTitle", "internal error: disk full")
    assert ok(conn.request("GetAeTitles"), "GetAeTitles")  # the connection goes on


def test_clients_disconnect_and_association() -> None:
    admin = Admin()
    conn = admin.connect()
    plain, _ = admin.add_client()
    associated, closable = admin.add_client(associate=True)
    [listed] = ok(conn.request("GetClients"), "GetClients")
    assert [c["id"] for c in listed] == [plain.id, associated.id]
    [association] = ok(conn.request("GetAssociation", associated.id), "GetAssociation")
    assert association["calling_ae_title"] == "MODALITY" and association["id"] == 7
    refused(conn.request("GetAssociation", plain.id), "GetAssociation", "is not associated")
    refused(conn.request("GetAssociation", 99), "GetAssociation", "no connected client with id 99")
    dict_form = listed[1]
    assert ok(conn.request("DisconnectClient", dict_form), "DisconnectClient") == [associated.id]
    assert closable.reasons == ["disconnected by the administrator"]
    assert ok(conn.request("DisconnectClient", plain.id), "DisconnectClient") == [plain.id]
    refused(conn.request("DisconnectClient", 99), "DisconnectClient", "no connected client")


def test_pause_resume_and_status() -> None:
    admin = Admin()
    conn = admin.connect()
    admin.add_client(associate=True)
    admin.now += 12.5
    [status] = ok(conn.request("GetStatus"), "GetStatus")
    assert status["state"] == "running" and status["uptime"] == 12.5 and status["clients"] == 1
    assert status["counters"]["connections"] == 1 and status["counters"]["associations"] == 1
    assert ok(conn.request("Pause"), "Pause") == ["paused"]
    assert admin.control.paused
    assert ok(conn.request("Pause"), "Pause") == ["paused"]  # idempotent
    assert ok(conn.request("GetStatus"), "GetStatus")[0]["state"] == "paused"
    assert ok(conn.request("Resume"), "Resume") == ["running"]
    assert not admin.control.paused
    refused(conn.request("Pause", 1), "Pause", "Pause takes 0 data item(s)")


def test_addins_and_settings() -> None:
    admin = Admin()
    conn = admin.connect()
    loaded, failed = ok(conn.request("GetAddIns"), "GetAddIns")
    assert loaded == [{"name": "storage", "description": "Stores images"}]
    assert failed == [{"name": "broken", "error": "ImportError: no module named x"}]
    [settings] = ok(conn.request("GetSettings"), "GetSettings")
    assert settings["ae_title"] == "PACSREF" and "port" in settings
    admin.commands.settings = None
    refused(conn.request("GetSettings"), "GetSettings", "no settings")


def test_bad_input_answers_and_the_connection_goes_on() -> None:
    admin = Admin()
    conn = admin.connect()
    [reply] = conn.send_line(b"{not json")
    refused(reply, "Error", "malformed JSON")
    [reply] = conn.send_line(b'"just a string"')
    refused(reply, "Error", "must be a JSON object")
    refused(conn.request("Frobnicate"), "Frobnicate", "unknown message 'Frobnicate'")
    refused(conn.request("RemoveAeTitle", 1, 2), "RemoveAeTitle", "takes 1 data item(s)")
    refused(conn.request("RemoveAeTitle", "bad\\title"), "RemoveAeTitle", "backslash")
    assert conn.send_line(b"   ") == []  # blank lines are ignored
    [reply] = conn.send_line(b'{"message": "Pause"}\r')  # CRLF is accepted
    assert ok(reply, "Pause") == ["paused"]
    assert not conn.transport.disconnecting


def test_json_python_cannot_take_is_malformed_json_and_the_connection_goes_on() -> None:
    """An integer of 5,000 digits, nesting 100,000 deep: answered "Error", not wedged."""
    admin = Admin()
    conn = admin.connect()
    [reply] = conn.send_line(b'{"message":"GetStatus","data":[' + b"9" * 5000 + b"]}")
    refused(reply, "Error", "malformed JSON: Exceeds the limit")
    [reply] = conn.send_line(b"[" * 100_000)
    refused(reply, "Error", "malformed JSON: nested too deeply")
    assert ok(conn.request("Pause"), "Pause") == ["paused"]


def test_an_error_text_echoing_a_lone_surrogate_is_sent_escaped() -> None:
    """The request's lone surrogate comes back in the error, escaped (UTF-8 cannot hold it),
    and the connection is still served."""
    admin = Admin()
    conn = admin.connect()
    [reply] = conn.send_line(b'{"message":"RemoveAeTitle","data":["X\\ud800"]}')
    refused(reply, "RemoveAeTitle", "\ud800")
    assert ok(conn.request("GetAeTitles"), "GetAeTitles")


def test_a_failure_outside_any_handler_is_answered_and_the_next_line_served(
    monkeypatch: Any,
) -> None:
    """Whatever breaks while serving one line, the lines after it still get their answers."""
    admin = Admin()
    conn = admin.connect()
    protocol = conn.protocol
    real = protocol._serve
    calls = iter([RuntimeError("boom")])

    def serve(line: bytes) -> Any:
        error = next(calls, None)
        if error is not None:
            raise error
        return real(line)

    monkeypatch.setattr(protocol, "_serve", serve)
    [reply] = conn.send_line(b'{"message":"GetStatus"}')
    refused(reply, "Error", "internal error: boom")
    assert ok(conn.request("Pause"), "Pause") == ["paused"]


def test_oversized_line_is_answered_then_that_connection_closes() -> None:
    admin = Admin()
    conn, other = admin.connect(), admin.connect()
    conn.protocol.dataReceived(b"x" * (MAX_LINE_LENGTH + 10))
    [reply] = conn.read()
    refused(reply, "Error", f"line longer than {MAX_LINE_LENGTH} bytes")
    assert conn.transport.disconnecting
    assert ok(other.request("GetStatus"), "GetStatus")  # others unaffected


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_a_line_of_the_limit_is_served_whatever_it_ends_with(ending: bytes) -> None:
    """A request line of exactly MAX_LINE_LENGTH bytes is served, ending in ``\n`` or in
    ``\r\n`` (the ``\r`` is ignored, so it does not count: it used to make the line over-long);
    one byte more is refused either way."""
    request = b'{"message": "GetStatus", "data": [], "pad": "'
    line = request + b"x" * (MAX_LINE_LENGTH - len(request) - 2) + b'"}'
    assert len(line) == MAX_LINE_LENGTH
    admin = Admin()
    conn = admin.connect()
    conn.protocol.dataReceived(line + ending)
    [reply] = conn.read()
    assert "line longer than" not in reply.get("error", "")
    assert not conn.transport.disconnecting
    longer = request + b"x" * (MAX_LINE_LENGTH - len(request) - 1) + b'"}'
    conn.protocol.dataReceived(longer + ending)
    [reply] = conn.read()
    refused(reply, "Error", f"line longer than {MAX_LINE_LENGTH} bytes")
    assert conn.transport.disconnecting


def test_a_partial_line_is_refused_once_it_is_over_the_limit_but_for_a_cr() -> None:
    """Before its newline: one byte over the limit is refused at once, unless that byte is
    the ``\r`` of a line ending in ``\r\n``, which waits for its ``\n`` and is served."""
    request = b'{"message": "GetStatus", "data": [], "pad": "'
    line = request + b"x" * (MAX_LINE_LENGTH - len(request) - 2) + b'"}'
    admin = Admin()
    waiting = admin.connect()
    waiting.protocol.dataReceived(line + b"\r")
    assert waiting.read() == [] and not waiting.transport.disconnecting
    waiting.protocol.dataReceived(b"\n")
    [reply] = waiting.read()
    # Answered on its merits (its extra field refused by name), not as an over-long line.
    assert reply["message"] == "GetStatus" and "unknown field(s) 'pad'" in reply["error"]
    over = admin.connect()
    over.protocol.dataReceived(line + b"x")
    [reply] = over.read()
    refused(reply, "Error", f"line longer than {MAX_LINE_LENGTH} bytes")
    assert over.transport.disconnecting


def test_oversized_line_waits_for_the_answers_due_before_it() -> None:
    """A request still on a worker thread is answered first; then the refusal, then the close;
    nothing read after the over-long line is served."""
    pending, run_in_thread = _held_threads()
    admin = Admin(run_in_thread)
    conn = admin.connect()
    conn.protocol.dataReceived(b'{"message": "RemoveAeTitle", "data": ["MODALITY"]}\n')
    conn.protocol.dataReceived(b"x" * (MAX_LINE_LENGTH + 10) + b'\n{"message": "Pause"}\n')
    assert conn.read() == [] and not conn.transport.disconnecting
    pending[0].callback(None)
    first, second = conn.read()
    assert ok(first, "RemoveAeTitle") == ["MODALITY"]
    refused(second, "Error", f"line longer than {MAX_LINE_LENGTH} bytes")
    assert conn.transport.disconnecting and not admin.control.paused


def test_line_of_exactly_the_limit_is_not_refused_for_length() -> None:
    admin = Admin()
    conn = admin.connect()
    line = b'{"message": "Pause", "error": "' + b"s" * (MAX_LINE_LENGTH - 40)
    line += b'"}'
    assert len(line) <= MAX_LINE_LENGTH
    [reply] = conn.send_line(line)
    assert ok(reply, "Pause") == ["paused"]


def test_notifications_reach_every_admin_client() -> None:
    admin = Admin()
    first, second = admin.connect(), admin.connect()
    client, _ = admin.add_client()
    admin.clients.associated(client, association(), 3)
    admin.clients.action(client, 0x0030)
    admin.clients.remove(client, "released")
    admin.control.pause()
    for conn in (first, second):
        notes = conn.read()
        assert [n["message"] for n in notes] == [
            "ClientConnect",
            "ClientAssociated",
            "ClientAction",
            "ClientDisconnected",
            "ServerPaused",
        ]
        assert all(n["success"] and n["service"] == "PACSREF" for n in notes)
        assert notes[0]["data"][0]["id"] == client.id
        assert notes[1]["data"][0]["association"]["id"] == 3
        assert notes[2]["data"] == ["C-ECHO-RQ", "MODALITY", client.id]
        assert notes[3]["data"][0]["state"] == "ended" and notes[3]["data"][1] == "released"


def test_closed_admin_connection_gets_no_more_notifications() -> None:
    admin = Admin()
    gone, staying = admin.connect(), admin.connect()
    gone.protocol.connectionLost(None)
    admin.add_client()
    assert gone.read() == []
    assert [n["message"] for n in staying.read()] == ["ClientConnect"]
    admin.factory.close()
    admin.add_client()
    assert staying.read() == []


def test_a_readable_name_answers_even_when_other_fields_are_wrong() -> None:
    """The response is "Error" only when no name could be read; else it carries the name."""
    admin = Admin()
    conn = admin.connect()
    [reply] = conn.send_line(b'{"message": "GetStatus", "data": "x"}')
    refused(reply, "GetStatus", 'field "data" must be a list, not a string')
    [reply] = conn.send_line(b'{"message": "GetStatus", "data": [], "extra": 1}')
    refused(reply, "GetStatus", "unknown field(s) 'extra'")
    [reply] = conn.send_line(b'{"message": "GetStatus", "service": 3}')
    refused(reply, "GetStatus", 'field "service" must be a string')
    [reply] = conn.send_line(b'{"message": 3, "data": []}')
    refused(reply, "Error", 'field "message" must be a non-empty string')
    [reply] = conn.send_line(b'{"message": "", "extra": 1}')
    refused(reply, "Error", "unknown field(s) 'extra'")


def test_a_request_for_another_server_is_refused() -> None:
    """A script pointed at the wrong socket must not change the wrong server."""
    admin = Admin()
    conn = admin.connect()
    [reply] = conn.send_line(b'{"message": "Pause", "service": "OTHER", "data": []}')
    refused(reply, "Pause", "this socket serves AE title 'PACSREF', not 'OTHER'")
    assert not admin.control.paused
    for service in (b'""', b'"PACSREF"', b'" PACSREF "'):
        [reply] = conn.send_line(b'{"message": "GetStatus", "service": ' + service + b"}")
        assert ok(reply, "GetStatus")
    [reply] = conn.send_line(b'{"message": "GetStatus"}')
    assert ok(reply, "GetStatus")


def test_an_admin_client_that_stops_reading_is_cut_off() -> None:
    """Past MAX_PENDING_OUTPUT bytes written while the transport is full, the connection ends."""
    from twisted.logger import globalLogPublisher

    from pacsref.admin.messages import ServiceMessage
    from pacsref.admin.protocol import MAX_PENDING_OUTPUT

    admin = Admin()
    slow, other = admin.connect(), admin.connect()
    producer = slow.transport.producer
    assert producer is not None and slow.transport.streaming
    big = ServiceMessage("ServerPaused", "PACSREF", True, "", ["x" * (1024 * 1024)])
    for _ in range(10):  # a client that reads: the transport never pauses us
        slow.protocol.push(big)
    assert not slow.transport.disconnecting
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        producer.pauseProducing()  # its buffer is full: the client stopped reading
        for _ in range(MAX_PENDING_OUTPUT // len(big.to_json()) - 1):
            slow.protocol.push(big)
        assert not slow.transport.disconnecting
        producer.resumeProducing()  # it caught up: the count starts again
        producer.pauseProducing()
        for _ in range(MAX_PENDING_OUTPUT // len(big.to_json())):
            slow.protocol.push(big)
        assert not slow.transport.disconnecting
        slow.protocol.push(big)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert slow.transport.disconnecting and slow.transport.disconnected  # aborted, not lost
    assert [e["kind"] for e in events if e.get("kind") == "admin.slow_client"] == [
        "admin.slow_client"
    ]
    slow.transport.clear()
    admin.control.pause()
    assert slow.transport.value() == b""  # nothing more is queued for it
    assert [n["message"] for n in other.read() if n["message"] == "ServerPaused"][-1:] == [
        "ServerPaused"
    ]
    assert ok(other.request("GetStatus"), "GetStatus")


def test_closing_connections_waits_for_their_output_then_cuts_the_slow() -> None:
    """On stop, admin connections are closed after their buffer (loseConnection), bounded."""
    from twisted.internet.task import Clock

    from pacsref.admin.protocol import CLOSE_GRACE_S

    admin = Admin()
    reading, stuck = admin.connect(), admin.connect()
    clock = Clock()
    done: list[Any] = []
    admin.factory.close_connections(clock).addCallback(done.append)
    assert reading.transport.disconnecting and not reading.transport.disconnected
    reading.protocol.connectionLost(None)
    assert done == []
    clock.advance(CLOSE_GRACE_S)
    assert stuck.transport.disconnected  # aborted
    stuck.protocol.connectionLost(None)
    assert len(done) == 1
    assert not clock.getDelayedCalls()


def test_an_ended_association_is_no_longer_shown() -> None:
    """Released (the connection lingering): GetAssociation refuses, GetClients shows none."""
    admin = Admin()
    conn = admin.connect()
    client, _ = admin.add_client(associate=True)
    assert ok(conn.request("GetAssociation", client.id), "GetAssociation")
    admin.control.clients.ended(client)
    refused(conn.request("GetAssociation", client.id), "GetAssociation", "(state ended)")
    [listed] = ok(conn.request("GetClients"), "GetClients")
    assert listed[0]["state"] == "ended" and listed[0]["association"] is None
