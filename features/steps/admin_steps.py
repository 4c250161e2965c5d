"""Steps about the administrative socket: requests, responses, notifications, bad input.

The servers are named (``PACS_A``, ``PACS_B``...): the feature's fleet (``@fixture.pacsref.servers``
on the Feature, started by the Background) or servers a ``pacsref`` root holds. The administrator
is pacsref's blocking :class:`~pacsref.admin.client.AdminClient`; bad input goes over a raw Unix
socket, since the client library cannot send it. Modalities are the simulators (pynetdicom's
Verification SCU, the raw peer), never pacsref's own requestor.

Generic steps (``sends "Message" with data``, ``the response to "Message" succeeds with data``)
cover any request, so a new message needs a scenario, not new steps.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from admin_support import (
    REPO,
    WAIT_S,
    call,
    child_env,
    expand,
    is_notification,
    json_docstring,
    matches,
    note_fields,
    server_endpoint,
    start_watcher,
    watcher_of,
)
from behave import given, then, when
from scenario_support import Answer, on_cleanup

from pacsref.admin.messages import MAX_LINE_LENGTH, NOTIFICATIONS, ServiceMessage
from simulators.crowd import request_one
from simulators.echo import HeldAssociation, run_echoes

# -- the servers ---------------------------------------------------------------------------------


def _settings(cell: str) -> dict[str, str]:
    """``allow_anonymous=false, client_timeout=2`` -> a settings mapping ("" -> defaults)."""
    pairs = [part.strip() for part in cell.split(",") if part.strip()]
    return dict(pair.split("=", 1) for pair in pairs)


@given('the servers "{first}" and "{second}" run side by side in one root folder')
def step_two_servers(context: Any, first: str, second: str) -> None:
    """Two servers on default settings; started once per feature, in parallel."""
    context.pacsref_fleet.ensure({first: {}, second: {}})


@given("these servers run side by side in one root folder")
def step_servers_table(context: Any) -> None:
    """Servers from a table (server, settings as ``key=value, ...``); started once, in parallel."""
    fleet = getattr(context, "pacsref_fleet", None)
    assert fleet is not None, "tag the feature @fixture.pacsref.servers"
    fleet.ensure({row["server"]: _settings(row["settings"]) for row in context.table})


# -- modalities ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Echoed:
    """What the echo steps of echo_steps.py read from ``context.echo_outcome``."""

    client: str
    requested: int
    succeeded: int
    rejection: tuple[int, int, int] | None
    detail: str


@when('the modality "{calling}" sends a C-ECHO to server "{server}"')
def step_echo_to(context: Any, calling: str, server: str) -> None:
    """One C-ECHO on one association (pynetdicom), released; judged by the echo Then steps."""
    where = server_endpoint(context, server)
    started = time.monotonic()
    result = run_echoes(where.host, where.port, where.ae_title, calling, 1, timeout=WAIT_S)
    rejection = result.rejection
    triple = None if rejection is None else (rejection.result, rejection.source, rejection.reason)
    detail = "; ".join(result.failures[:5]) or f"{result.succeeded} of 1 succeeded"
    context.echo_outcome = Echoed("pynetdicom", 1, result.succeeded, triple, detail)
    accepted = triple is None and result.succeeded > 0
    context.answer = Answer("pynetdicom", accepted, triple, time.monotonic() - started, detail)


@when('the modality "{calling}" asks server "{server}" for an association')
def step_ask_association(context: Any, calling: str, server: str) -> None:
    """One A-ASSOCIATE-RQ by the raw peer; the answer is kept, an accepted one released."""
    where = server_endpoint(context, server)
    attempt = request_one(where.host, where.port, where.ae_title, calling, timeout=WAIT_S)
    try:
        assert attempt.error is None, f"{calling} -> {server}: {attempt.error}"
        detail = attempt.outcome()
        context.answer = Answer(
            "raw peer", attempt.accepted, attempt.rejection, attempt.elapsed, detail
        )
    finally:
        if attempt.accepted:
            attempt.peer.finish(WAIT_S)
        attempt.peer.close()


@given('the modality "{calling}" holds an association with server "{server}"')
@when('the modality "{calling}" holds an association with server "{server}"')
def step_hold(context: Any, calling: str, server: str) -> None:
    """Associate (pynetdicom) and stay; aborted when the scenario ends if still open."""
    where = server_endpoint(context, server)
    held = HeldAssociation(where.host, where.port, where.ae_title, calling, timeout=WAIT_S)
    on_cleanup(context, held.abort)
    assert held.established, f"{calling} -> {server}: {held.error}"
    if getattr(context, "held_on", None) is None:
        context.held_on = {}
    context.held_on[calling] = held


@when('the modality "{calling}" releases its association with server "{server}"')
def step_release_held(context: Any, calling: str, server: str) -> None:
    """An orderly A-RELEASE of an association held with a named server; it must be confirmed."""
    held: HeldAssociation = context.held_on[calling]
    assert held.release(), f"{calling} -> {server}: the release was not confirmed"


@then('the held association of "{calling}" has been aborted by the server')
def step_held_aborted(context: Any, calling: str) -> None:
    """The server's A-ABORT reached the modality (pynetdicom notices it on its own thread)."""
    held: HeldAssociation = context.held_on[calling]
    deadline = time.monotonic() + WAIT_S
    while held.established and time.monotonic() < deadline:
        time.sleep(0.02)
    assert held.assoc.is_aborted, f"{calling}: still established={held.established}"


@when('the modality "{calling}" associates with server "{server}" and then stays silent')
def step_idle_modality(context: Any, calling: str, server: str) -> None:
    """``python -m simulators raw --scenario idle-association``: it exits 0 once aborted."""
    run_simulator(context, server, "idle-association", calling)


@when('the modality "{calling}" calls server "{server}" by a wrong AE title')
def step_wrong_called(context: Any, calling: str, server: str) -> None:
    """``python -m simulators raw --scenario wrong-called-ae``: it exits 0 on an RJ."""
    run_simulator(context, server, "wrong-called-ae", calling)


def run_simulator(context: Any, server: str, scenario: str, calling: str) -> None:
    """Run one raw-peer scenario of ``python -m simulators`` against ``server``; it must pass."""
    where = server_endpoint(context, server)
    argv = [sys.executable, "-m", "simulators", "raw", "--scenario", scenario]
    argv += ["--host", where.host, "--port", str(where.port), "--called-ae", where.ae_title]
    argv += ["--calling-ae", calling, "--timeout", str(WAIT_S)]
    done = subprocess.run(
        argv, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=WAIT_S * 3
    )
    assert done.returncode == 0, f"{' '.join(argv[2:])}: exit {done.returncode}\n{done.stdout}"
    context.simulator_output = done.stdout


# -- requests and responses ----------------------------------------------------------------------


def _keep(context: Any, server: str, reply: ServiceMessage) -> None:
    context.admin_reply = reply
    context.admin_reply_server = server


@given('the administrator of "{server}" is connected')
def step_admin_connected(context: Any, server: str) -> None:
    """Open the administrator's connection now (bad-input steps show it is unaffected)."""
    reply = call(context, server, "GetStatus")
    assert reply.success, reply.error


@when('the administrator of "{server}" sends "{message}"')
def step_send(context: Any, server: str, message: str) -> None:
    """A request without data."""
    _keep(context, server, call(context, server, message))


@when('the administrator of "{server}" sends "{message}" with data')
def step_send_data(context: Any, server: str, message: str) -> None:
    """A request whose ``data`` list is the docstring (JSON; placeholders expanded)."""
    data = json_docstring(context)
    assert isinstance(data, list), "the data of a request is a JSON list"
    _keep(context, server, call(context, server, message, *data))


def reply_to(context: Any, message: str) -> ServiceMessage:
    """The latest response, which must answer ``message`` and come from the right server."""
    reply: ServiceMessage | None = getattr(context, "admin_reply", None)
    assert reply is not None, "no request was sent yet in this scenario"
    assert reply.message == message, f"the response is {reply.message!r}, not {message!r}"
    expected = server_endpoint(context, context.admin_reply_server).ae_title
    assert reply.service == expected, f"the response names {reply.service!r}, not {expected!r}"
    return reply


@then('the response to "{message}" succeeds')
def step_succeeds(context: Any, message: str) -> None:
    reply = reply_to(context, message)
    assert reply.success and reply.error == "", f"{message} failed: {reply.error}"


@then('the response to "{message}" succeeds with data')
def step_succeeds_with(context: Any, message: str) -> None:
    """Success, and ``data`` as the docstring shows it (objects may hold more fields)."""
    step_succeeds(context, message)
    expected = json_docstring(context)
    actual = context.admin_reply.data
    assert matches(expected, actual), (
        f"{message} data:\n{json.dumps(actual, indent=1)}\nexpected:\n{json.dumps(expected)}"
    )


@then('the response to "{message}" fails with error "{error}"')
def step_fails_with(context: Any, message: str, error: str) -> None:
    """``success: false``, ``data: []`` and exactly this ``error``."""
    reply = reply_to(context, message)
    assert not reply.success, f"{message} succeeded: {reply.data}"
    assert reply.data == [], f"a failed response carries no data: {reply.data}"
    error = expand(context, error)
    assert reply.error == error, f"{message} error:\n  {reply.error}\nexpected:\n  {error}"


@then('the response to "{message}" fails with an error starting "{prefix}"')
def step_fails_starting(context: Any, message: str, prefix: str) -> None:
    reply = reply_to(context, message)
    assert not reply.success, f"{message} succeeded: {reply.data}"
    assert reply.data == [], f"a failed response carries no data: {reply.data}"
    assert reply.error.startswith(prefix), f"{message} error {reply.error!r} lacks {prefix!r}"


@then('the response to "{message}" fails with an error ending "{suffix}"')
def step_fails_ending(context: Any, message: str, suffix: str) -> None:
    """For errors that begin with a path of the server's directory (an options file)."""
    reply = reply_to(context, message)
    assert not reply.success, f"{message} succeeded: {reply.data}"
    assert reply.data == [], f"a failed response carries no data: {reply.data}"
    assert reply.error.endswith(suffix), f"{message} error {reply.error!r} lacks {suffix!r}"


@then("the error names each of {names}")
def step_error_names(context: Any, names: str) -> None:
    """Every listed name appears, as a whole word, in the latest response's error."""
    known = context.admin_reply.error.split("known: ", 1)[-1].split(", ")
    missing = [name for name in names.split(", ") if name not in known]
    assert not missing, f"the error does not name {missing}: {context.admin_reply.error}"


@then('the status of "{server}" says "{state}" with {count:d} connected client')
@then('the status of "{server}" says "{state}" with {count:d} connected clients')
def step_status(context: Any, server: str, state: str, count: int) -> None:
    """GetStatus: the state and the number of clients (polled: closes finish asynchronously)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        reply = call(context, server, "GetStatus")
        assert reply.success, reply.error
        status = reply.data[0]
        if (status["state"], status["clients"]) == (state, count):
            break
        assert time.monotonic() < deadline, f"{server} status: {status}"
        time.sleep(0.05)
    assert status["uptime"] > 0, status


@given('the AE title table of "{server}" has "{ae_title}" at {host} port {port:d}')
def step_table_has(context: Any, server: str, ae_title: str, host: str, port: int) -> None:
    """Add the entry through the admin socket (AddAeTitle); it must be accepted."""
    reply = call(context, server, "AddAeTitle", {"ae_title": ae_title, "host": host, "port": port})
    assert reply.success, f"AddAeTitle {ae_title} to {server}: {reply.error}"


@then('the AE title table of "{server}" lists "{ae_title}" at {host} port {port:d}')
def step_table_lists(context: Any, server: str, ae_title: str, host: str, port: int) -> None:
    reply = call(context, server, "GetAeTitles")
    assert reply.success, reply.error
    found = [e for e in reply.data[0] if e["ae_title"] == ae_title]
    assert [(e["host"], e["port"]) for e in found] == [(host, port)], reply.data[0]


@then('the AE title table of "{server}" does not list "{ae_title}"')
def step_table_lacks(context: Any, server: str, ae_title: str) -> None:
    reply = call(context, server, "GetAeTitles")
    assert reply.success, reply.error
    assert ae_title not in [e["ae_title"] for e in reply.data[0]], reply.data[0]


@then('the clients of "{server}" are {names}')
def step_clients_are(context: Any, server: str, names: str) -> None:
    """GetClients lists exactly these associated AE titles (``none``), once closes have settled."""
    wanted = [] if names == "none" else [n.strip().strip('"') for n in names.split(" and ")]
    deadline = time.monotonic() + WAIT_S
    while True:
        reply = call(context, server, "GetClients")
        assert reply.success, reply.error
        seen = [(c["ae_title"], c["state"]) for c in reply.data[0]]
        if seen == [(name, "associated") for name in wanted]:
            return
        assert time.monotonic() < deadline, f"{server} clients: {seen}, expected {wanted}"
        time.sleep(0.05)


@when("the pause is undone at the end of the scenario")
def step_resume_later(context: Any) -> None:
    """Servers are shared by the feature's scenarios: leave them running whatever happens."""
    fleet = context.pacsref_fleet

    def resume_all() -> None:
        for name in list(fleet.servers):
            call(context, name, "Resume")

    on_cleanup(context, resume_all)


# -- notifications -------------------------------------------------------------------------------


@given('an administrator watches the notifications of "{server}"')
def step_watch(context: Any, server: str) -> None:
    """A second admin connection that only listens; subscribed from this step on."""
    start_watcher(context, server)


def _about(notes: list[ServiceMessage], calling: str) -> list[dict[str, str]]:
    """The notifications about the connections of the modality ``calling``, in order."""
    fields = [note_fields(note) for note in notes]
    ids = {f["client"] for f in fields if f.get("calling AE") == calling}
    return [f for f in fields if f.get("client") in ids]


@then('the watcher of "{server}" receives these notifications about "{calling}", in order')
def step_receives_about(context: Any, server: str, calling: str) -> None:
    """Exactly the table's notifications, in order; blank cells unchecked, ``-`` means empty."""
    watcher = watcher_of(context, server)
    rows = list(context.table)
    watcher.wait_for(
        lambda notes: len(_about(notes, calling)) >= len(rows),
        f"{len(rows)} notifications about {calling}",
    )
    got = _about(watcher.sync(), calling)
    names = [f["notification"] for f in got]
    expected = [is_notification(row["notification"]) for row in rows]
    assert names == expected, f"{server} told about {calling}: {names}, expected {expected}"
    _check_rows(context, server, rows, got)


@then(
    'the watcher of "{server}" receives exactly these notifications, '
    "then the server closes its connection"
)
def step_receives_until_closed(context: Any, server: str) -> None:
    """All the notifications up to the close, exactly the table's, in order (cells as above)."""
    watcher = watcher_of(context, server)
    got = [note_fields(note) for note in watcher.until_closed()]
    rows = list(context.table)
    names = [f["notification"] for f in got]
    expected = [is_notification(row["notification"]) for row in rows]
    assert names == expected, f"{server} told: {names}, expected {expected}"
    _check_rows(context, server, rows, got)


def _check_rows(context: Any, server: str, rows: list[Any], got: list[dict[str, str]]) -> None:
    """Each table row against its notification: blank cells unchecked, ``-`` means empty."""
    ae_title = server_endpoint(context, server).ae_title
    for row, fields in zip(rows, got, strict=True):
        assert fields["server"] == ae_title, f"{fields} comes from another server"
        for heading in row.headings[1:]:
            want = row[heading].strip()
            if want:
                have = fields.get(heading, "")
                assert have == ("" if want == "-" else want), (
                    f"{fields['notification']} {heading}: {have!r}, expected {want!r}\n{fields}"
                )


@then('the watcher of "{server}" receives "{name}" with no data')
def step_receives_bare(context: Any, server: str, name: str) -> None:
    """A server-wide notification such as ServerPaused: its name, its server, empty data."""
    watcher = watcher_of(context, server)
    is_notification(name)
    watcher.wait_for(lambda notes: any(n.message == name for n in notes), name)
    note = next(n for n in watcher.seen if n.message == name)
    expected = server_endpoint(context, server).ae_title
    assert (note.service, note.success, note.error, note.data) == (expected, True, "", []), note


@then('the watcher of "{server}" has received nothing about "{calling}"')
def step_nothing_about(context: Any, server: str, calling: str) -> None:
    """Nothing about that modality up to now, and nothing of any other server at all."""
    watcher = watcher_of(context, server)
    notes = watcher.sync()
    expected = server_endpoint(context, server).ae_title
    strangers = [n.to_json() for n in notes if n.service != expected]
    assert not strangers, (
        f"the watcher of {server} received other servers' notifications: {strangers}"
    )
    about = _about(notes, calling)
    assert not about, f"the watcher of {server} received notifications about {calling}: {about}"


@then('the watcher of "{server}" has received no "{name}"')
def step_no_such(context: Any, server: str, name: str) -> None:
    watcher = watcher_of(context, server)
    is_notification(name)
    seen = [n.message for n in watcher.sync()]
    assert name not in seen, f"the watcher of {server} received {name}: {seen}"


# -- bad input, over a raw Unix socket -------------------------------------------------------------


def raw_admin(context: Any, server: str) -> socket.socket:
    """The scenario's raw connection to ``server``'s admin socket (closed when it ends)."""
    if getattr(context, "raw_admins", None) is None:
        context.raw_admins, context.raw_buffers = {}, {}
    raws: dict[str, socket.socket] = context.raw_admins
    if server not in raws:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        on_cleanup(context, sock.close)
        sock.settimeout(WAIT_S)
        sock.connect(str(server_endpoint(context, server).socket_path))
        raws[server] = sock
    return raws[server]


def send_raw(context: Any, server: str, payload: bytes) -> None:
    """Send ``payload`` and read the one response line it must get.

    Notifications pushed meanwhile (this connection is an admin client like any other, and
    the servers are shared by the feature's scenarios) are skipped: a notification has a
    notification's name and ``success: true``; the one response that can carry such a name
    is the refusal of a notification sent as a request, which has ``success: false``.
    """
    sock = raw_admin(context, server)
    sock.sendall(payload)
    buffer = context.raw_buffers.get(server, b"")
    deadline = time.monotonic() + WAIT_S
    while True:
        while b"\n" not in buffer:
            assert time.monotonic() < deadline, f"no response line within {WAIT_S:g} s"
            chunk = sock.recv(65536)
            assert chunk, f"{server} closed the admin connection without a response"
            buffer += chunk
        line, buffer = buffer.split(b"\n", 1)
        message = ServiceMessage.from_json(line)
        if message.message not in NOTIFICATIONS or not message.success:
            break
    context.raw_buffers[server] = buffer
    _keep(context, server, message)


@when('a raw admin connection to "{server}" sends the line')
def step_raw_line(context: Any, server: str) -> None:
    """The docstring as one line, byte for byte (UTF-8), then a newline."""
    send_raw(context, server, (context.text or "").encode("utf-8") + b"\n")


@when('a raw admin connection to "{server}" sends: {line}')
@when('the raw admin connection to "{server}" sends: {line}')
def step_raw_inline(context: Any, server: str, line: str) -> None:
    """The text after the colon as one line (the same connection all scenario long)."""
    send_raw(context, server, line.encode("utf-8") + b"\n")


@when('a raw admin connection to "{server}" sends a line that is not UTF-8')
def step_raw_not_utf8(context: Any, server: str) -> None:
    send_raw(context, server, b'{"message": "GetStatus\xff\xfe", "data": []}\n')


@when('a raw admin connection to "{server}" sends a line of 1 MiB and one byte more')
def step_raw_too_long(context: Any, server: str) -> None:
    """``MAX_LINE_LENGTH + 1`` bytes with no newline: the server cannot frame the rest."""
    body = b'{"message": "GetStatus", "data": ["' + b"x" * MAX_LINE_LENGTH
    send_raw(context, server, body[: MAX_LINE_LENGTH + 1])


@then('the server "{server}" closes that raw admin connection')
def step_raw_closed(context: Any, server: str) -> None:
    sock = raw_admin(context, server)
    deadline = time.monotonic() + WAIT_S
    rest = context.raw_buffers.get(server, b"")
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return
        if not chunk:
            assert rest == b"", f"more came before the close: {rest[:200]!r}"
            return
        rest += chunk
    raise AssertionError(f"{server} kept the connection open for {WAIT_S:g} s")


# -- start-up refusals -----------------------------------------------------------------------------


@given('a file that is not a socket lies where the admin socket of "{server}" goes')
def step_file_in_socket_place(context: Any, server: str) -> None:
    """A stray regular file at ``admin/<AE>.sock``: the server must refuse, never remove it."""
    path = server_endpoint(context, server).socket_path
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text("not a socket\n")


@then('the file where the admin socket of "{server}" goes is still there')
def step_file_still_there(context: Any, server: str) -> None:
    path = server_endpoint(context, server).socket_path
    assert path.read_text() == "not a socket\n", f"{path} was changed"


@given('another program listens on the admin socket of "{server}"')
def step_admin_socket_taken(context: Any, server: str) -> None:
    """A live Unix socket at ``admin/<AE>.sock``, as another server would hold it."""
    path = server_endpoint(context, server).socket_path
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    on_cleanup(context, holder.close)
    holder.bind(str(path))
    holder.listen(1)


@given('the settings file of "{server}" says temporary_directory = "{value}"')
def step_temporary_directory(context: Any, server: str, value: str) -> None:
    """Edit the one line by hand, as an administrator would (the manager refuses such a value)."""
    root = context.pacsref_root.path
    path = root / server / "settings.toml"
    lines = path.read_text().splitlines(keepends=True)
    edited = [
        f'temporary_directory = "{value}"\n' if line.startswith("temporary_directory =") else line
        for line in lines
    ]
    assert edited != lines, f"{path} has no temporary_directory line"
    path.write_text("".join(edited))
