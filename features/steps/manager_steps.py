"""Steps about the service manager: the ``pacsref`` command, run as an administrator runs it.

Every command is a real subprocess (``python -m pacsref.manager.cli --root ROOT ...``) in the
scenario's root folder (``@fixture.pacsref.root``), whose daemons are killed when it ends. A
command in a step may use placeholders: ``<a free port>``, ``<root>``, ``<port of NAME>`` and
``<client id of "AE" on "SERVER">``.

``pacsref clients watch`` runs in the background (:class:`Background`): its lines are collected
by reader threads, so each Then step waits for a line with a deadline instead of sleeping.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import IO, Any

from admin_support import WAIT_S, child_env, connect_admin, expand, server_endpoint
from behave import given, then, when
from scenario_support import Answer, on_cleanup

from pacsref.admin.messages import NOTIFICATIONS
from pacsref.manager.daemon import PIDFILE_NAME, process_alive
from pacsref.settings import SETTINGS_FILE_NAME
from pacsref.testing.net import LOOPBACK, free_loopback_port
from simulators.echo import run_echoes
from simulators.misbehaving import A_ABORT, AssociateAC, AssociateRJ, RawPeer

#: A manager command may start or stop a daemon (each bounded by 20 s inside ``pacsref``).
COMMAND_TIMEOUT_S = 60.0


def _root(context: Any) -> Any:
    root = getattr(context, "pacsref_root", None)
    assert root is not None, "tag the scenario @fixture.pacsref.root"
    return root


def _command(context: Any, command: str) -> list[str]:
    """``pacsref ARGS`` with its placeholders expanded -> the argv to run."""
    while "<a free port>" in command:
        command = command.replace("<a free port>", str(free_loopback_port()), 1)
    words = shlex.split(expand(context, command))
    assert words[:1] == ["pacsref"], f"not a pacsref command: {command}"
    root = str(_root(context).path)
    return [sys.executable, "-m", "pacsref.manager.cli", "--root", root, *words[1:]]


def run_pacsref(context: Any, command: str) -> subprocess.CompletedProcess[str]:
    argv = _command(context, command)
    done = subprocess.run(
        argv,
        cwd=_root(context).path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    context.command = command
    context.done = done
    return done


def _shown(context: Any) -> str:
    done = context.done
    return (
        f"`{context.command}` exit {done.returncode}\nstdout:\n{done.stdout}stderr:\n{done.stderr}"
    )


@given('I run "{command}"')
@when('I run "{command}"')
def step_run(context: Any, command: str) -> None:
    """Run one ``pacsref`` command to its end (bounded); Then steps judge it."""
    run_pacsref(context, command)


@given('I have run "{command}"')
def step_have_run(context: Any, command: str) -> None:
    """Setting the scene: the command must succeed."""
    run_pacsref(context, command)
    assert context.done.returncode == 0, _shown(context)


@then("it succeeds")
def step_it_succeeds(context: Any) -> None:
    assert context.done.returncode == 0 and context.done.stderr == "", _shown(context)


@then('it succeeds, printing "{text}"')
def step_it_succeeds_printing(context: Any, text: str) -> None:
    step_it_succeeds(context)
    assert expand(context, text) in context.done.stdout, _shown(context)


@then('it fails, saying "{text}"')
def step_it_fails(context: Any, text: str) -> None:
    """Exit status 1 and one line ``pacsref: <reason>`` on standard error, holding ``text``."""
    done = context.done
    assert done.returncode == 1, _shown(context)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pacsref: "), _shown(context)
    assert expand(context, text) in lines[0], _shown(context)


@then('it succeeds, warning "{text}"')
def step_it_succeeds_warning(context: Any, text: str) -> None:
    """Exit status 0, and ``text`` in a ``pacsref: warning: ...`` line on standard error."""
    done = context.done
    assert done.returncode == 0, _shown(context)
    warnings = [line for line in done.stderr.splitlines() if line.startswith("pacsref: warning: ")]
    assert warnings and len(warnings) == len(done.stderr.splitlines()), _shown(context)
    assert any(expand(context, text) in line for line in warnings), _shown(context)


@then('it is refused as bad usage, saying "{text}"')
def step_bad_usage(context: Any, text: str) -> None:
    """Exit status 2 and one line ``pacsref: <reason>`` on standard error, holding ``text``."""
    done = context.done
    assert done.returncode == 2 and done.stdout == "", _shown(context)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pacsref: "), _shown(context)
    assert expand(context, text) in lines[0], _shown(context)


@then('it ends with exit status {code:d}, printing "{text}"')
def step_exit_status_printing(context: Any, code: int, text: str) -> None:
    done = context.done
    assert done.returncode == code and done.stderr == "", _shown(context)
    assert expand(context, text) in done.stdout, _shown(context)


@then("nothing was printed about a traceback")
def step_no_traceback(context: Any) -> None:
    assert "Traceback" not in context.done.stdout + context.done.stderr, _shown(context)


@then('the errors are "{first}" then "{last}"')
def step_errors_are(context: Any, first: str, last: str) -> None:
    """Exit status 1; standard error starts with ``first`` and ends with ``last``."""
    done = context.done
    lines = done.stderr.splitlines()
    assert done.returncode == 1 and len(lines) >= 2, _shown(context)
    assert expand(context, first) in lines[0] and lines[-1] == expand(context, last), _shown(
        context
    )


@then('the root folder holds no server, and nothing named "{name}" was made next to it')
def step_nothing_escaped(context: Any, name: str) -> None:
    root = _root(context).path
    assert [p for p in root.iterdir() if p.is_dir()] == [], list(root.iterdir())
    assert not (root.parent / name).exists() and not (root / name).exists()


@given('the server "{name}" has an add-in "{file_name}" that does not import')
def step_broken_addin(context: Any, name: str, file_name: str) -> None:
    (server_directory(context, name) / "addins" / file_name).write_text(
        "import a_module_nobody_installed\n"
    )


@given('someone adds the line "{line}" to the settings file of "{name}"')
def step_break_settings(context: Any, line: str, name: str) -> None:
    path = server_directory(context, name) / SETTINGS_FILE_NAME
    path.write_text(path.read_text() + line + "\n")


@then('the output has a line matching "{pattern}"')
def step_output_matches(context: Any, pattern: str) -> None:
    lines = context.done.stdout.splitlines()
    assert any(re.search(pattern, line) for line in lines), f"no line ~ {pattern!r}\n" + _shown(
        context
    )


@then('the output does not mention "{text}"')
def step_output_lacks(context: Any, text: str) -> None:
    assert text not in context.done.stdout + context.done.stderr, _shown(context)


@then('the output is a systemd unit that runs "{name}" in the foreground')
def step_unit(context: Any, name: str) -> None:
    """Type=simple, twistd with ``-n`` and no pidfile, absolute server directory, restart."""
    step_it_succeeds(context)
    lines = context.done.stdout.splitlines()
    assert lines[0] == "[Unit]" and "[Service]" in lines and "[Install]" in lines, lines
    assert "Type=simple" in lines and "Restart=on-failure" in lines, lines
    [start] = [line for line in lines if line.startswith("ExecStart=")]
    argv = shlex.split(start.removeprefix("ExecStart="))
    directory = str((_root(context).path / name).resolve())
    assert argv[0] == sys.executable and "-n" in argv and "--pidfile=" in argv, argv
    assert argv[-3:] == ["pacsref", "--server-dir", directory], argv


@then('"pacsref server list" shows')
def step_list_shows(context: Any) -> None:
    """Every server of the table, with its state and pid (``its pid``: the live daemon's)."""
    done = run_pacsref(context, "pacsref server list")
    assert done.returncode == 0, _shown(context)
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["NAME", "AE", "PORT", "STATE", "PID"], header
    listed = {row.split()[0]: row.split() for row in rows}
    assert sorted(listed) == sorted(r["NAME"] for r in context.table), done.stdout
    for row in context.table:
        name, ae_title, port, state, pid = listed[row["NAME"]]
        assert (ae_title, state) == (row["NAME"], row["STATE"]), listed[row["NAME"]]
        assert int(port) == server_endpoint(context, name).port, listed[name]
        if row["PID"] == "its pid":
            pidfile = _root(context).path / name / PIDFILE_NAME
            assert pid == pidfile.read_text().strip() and process_alive(int(pid)), (pid, name)
        else:
            assert pid == row["PID"], listed[name]


@then('"pacsref server status {name}" says "{state}" with {count:d} connected clients')
def step_status_says(context: Any, name: str, state: str, count: int) -> None:
    """``NAME: pid N {json}``: the pid of the daemon, the state and client count of GetStatus."""
    done = run_pacsref(context, f"pacsref server status {name}")
    assert done.returncode == 0, _shown(context)
    prefix, _, text = done.stdout.partition(" {")
    status = json.loads("{" + text)
    pid = (_root(context).path / name / PIDFILE_NAME).read_text().strip()
    assert prefix == f"{name}: pid {pid}", done.stdout
    assert (status["state"], status["clients"]) == (state, count), status
    assert {"connections", "associations", "refused"} <= set(status["counters"]), status


@then('the server "{name}" no longer listens on its port')
def step_not_listening(context: Any, name: str) -> None:
    where = server_endpoint(context, name)
    with socket.socket() as probe:
        probe.settimeout(WAIT_S)
        assert probe.connect_ex((where.host, where.port)) != 0, f"{name}'s port still accepts"


@given('another program listens on the port of "{name}"')
def step_port_taken(context: Any, name: str) -> None:
    """Hold the server's port, as a stray process would (closed when the scenario ends)."""
    holder = socket.socket()
    on_cleanup(context, holder.close)
    holder.bind((LOOPBACK, server_endpoint(context, name).port))
    holder.listen(1)


# -- a command left running: pacsref clients watch ------------------------------------------------


class Background:
    """A ``pacsref`` command running in the background, its output lines collected as they come."""

    def __init__(self, argv: list[str], cwd: Any) -> None:
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._collect, args=(stream, lines), daemon=True)
            for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    def _collect(self, stream: IO[str] | None, lines: list[str]) -> None:
        assert stream is not None
        for line in stream:
            with self._changed:
                lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_line(self, lines: list[str], pattern: str, what: str) -> str:
        """The first line matching ``pattern``; fail after :data:`WAIT_S`."""
        deadline = time.monotonic() + WAIT_S
        with self._changed:
            while True:
                found = [line for line in lines if re.search(pattern, line)]
                if found:
                    return found[0]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{what}: no line ~ {pattern!r} within {WAIT_S:g} s; "
                        f"stdout {self.out}, stderr {self.err}, exit {self.process.poll()}"
                    )
                self._changed.wait(min(remaining, 0.2))

    def wait_exit(self) -> int:
        """The exit status, once the process and its output have both ended (bounded)."""
        try:
            code = self.process.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {WAIT_S:g} s; stdout {self.out}") from None
        for reader in self._readers:
            reader.join(WAIT_S)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT_S)


@when('I start "{command}" in the background')
def step_start_background(context: Any, command: str) -> None:
    """Start the watch; it is subscribed once it says "watching" on standard error."""
    watch = Background(_command(context, command), _root(context).path)
    on_cleanup(context, watch.stop)
    context.watch = watch
    watch.wait_line(watch.err, r"^watching ", f"`{command}` did not start watching")


@then('the watch prints a line matching "{pattern}"')
def step_watch_prints(context: Any, pattern: str) -> None:
    context.watch.wait_line(context.watch.out, pattern, "the watch")


@then('every line the watch printed is a notification ServiceMessage of "{name}"')
def step_watch_json(context: Any, name: str) -> None:
    lines = context.watch.out
    assert lines, "the watch printed nothing"
    for line in lines:
        message = json.loads(line)
        assert sorted(message) == ["data", "error", "message", "service", "success"], line
        assert message["message"] in NOTIFICATIONS and message["service"] == name, line


@then('the watch printed nothing about "{text}"')
def step_watch_silent_about(context: Any, text: str) -> None:
    """Checked once the watch has ended: every line it printed is in."""
    assert not [line for line in context.watch.out if text in line], context.watch.out


@when("I press Ctrl-C in the watch")
def step_ctrl_c(context: Any) -> None:
    context.watch.process.send_signal(signal.SIGINT)


@then('the watch ends with exit status {code:d}, its last words on standard error being "{text}"')
def step_watch_ends(context: Any, code: int, text: str) -> None:
    """The exit status, and what it said last (the "watching" line, or why it stopped)."""
    watch = context.watch
    assert watch.wait_exit() == code, f"exit {watch.process.returncode}; stderr {watch.err}"
    assert watch.err and watch.err[-1] == text, f"stderr: {watch.err}"
    assert not any("Traceback" in line for line in watch.err), watch.err


# -- settings files, ports and deleted servers --------------------------------------------------


def server_directory(context: Any, name: str) -> Path:
    """``<root>/NAME`` of the scenario's ``pacsref`` root, or the fleet server's directory."""
    fleet = getattr(context, "pacsref_fleet", None)
    if fleet is not None and name in fleet.servers:
        return Path(fleet[name].server_dir)
    return Path(_root(context).path) / name


def _toml_value(text: str) -> Any:
    """A table cell read as a TOML value (``3``, ``7.0``, ``false``, ``"text"``)."""
    return tomllib.loads(f"value = {text}")["value"]


@then('the settings file of "{name}" has')
def step_settings_file_has(context: Any, name: str) -> None:
    """``<dir>/settings.toml`` holds each (setting, value) of the table: same value, same type."""
    path = server_directory(context, name) / SETTINGS_FILE_NAME
    saved = tomllib.loads(path.read_text(encoding="utf-8"))
    for row in context.table:
        expected = _toml_value(row["value"])
        have = saved.get(row["setting"], "<missing>")
        assert have == expected and type(have) is type(expected), (
            f"{path}: {row['setting']} = {have!r}, expected {expected!r}"
        )


def _settings_of_running(context: Any, name: str) -> dict[str, Any]:
    """GetSettings on a connection of its own (the server may have been restarted)."""
    admin, _ = connect_admin(server_endpoint(context, name).socket_path)
    try:
        reply = admin.call("GetSettings")
    finally:
        admin.close()
    assert reply.success, f"GetSettings on {name}: {reply.error}"
    settings: dict[str, Any] = reply.data[0]
    return settings


def _accepts_connections(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(WAIT_S)
        return probe.connect_ex((LOOPBACK, port)) == 0


def _echo_on(context: Any, name: str, port: int) -> str:
    """One C-ECHO (pynetdicom) to ``name``'s AE title on ``port``; "" if it succeeded."""
    where = server_endpoint(context, name)
    result = run_echoes(where.host, port, where.ae_title, "PORT_PROBE", 1, timeout=WAIT_S)
    return "" if result.succeeded == 1 else "; ".join(result.failures[:3]) or "not answered"


@given('the port server "{name}" listens on now is noted')
def step_note_port(context: Any, name: str) -> None:
    """Remember the port from the settings file, before an edit changes the file."""
    if getattr(context, "noted_ports", None) is None:
        context.noted_ports = {}
    context.noted_ports[name] = server_endpoint(context, name).port


@then('the server "{name}" still runs on its noted port, not on the port in its settings file')
def step_still_on_noted_port(context: Any, name: str) -> None:
    """A restart-only change waits: GetSettings, the listener and a C-ECHO say the old port."""
    noted = context.noted_ports[name]
    saved = server_endpoint(context, name).port
    assert saved != noted, f"the settings file of {name} still says port {noted}"
    running = _settings_of_running(context, name)["port"]
    assert running == noted, f"GetSettings says port {running}, the server started on {noted}"
    problem = _echo_on(context, name, noted)
    assert not problem, f"C-ECHO on the old port {noted}: {problem}"
    assert not _accepts_connections(saved), f"{name} already accepts on the new port {saved}"


@then('the server "{name}" runs on the port in its settings file, no longer on its noted port')
def step_on_new_port(context: Any, name: str) -> None:
    noted = context.noted_ports[name]
    saved = server_endpoint(context, name).port
    running = _settings_of_running(context, name)["port"]
    assert running == saved != noted, f"GetSettings says port {running}; file {saved}, old {noted}"
    problem = _echo_on(context, name, saved)
    assert not problem, f"C-ECHO on the new port {saved}: {problem}"
    assert not _accepts_connections(noted), f"{name} still accepts on its old port {noted}"


@then(
    'the directory of "{name}" remains, its settings kept as "{file_name}", '
    "with {count:d} stored image"
)
@then(
    'the directory of "{name}" remains, its settings kept as "{file_name}", '
    "with {count:d} stored images"
)
def step_directory_remains(context: Any, name: str, file_name: str, count: int) -> None:
    """``delete`` only renames settings.toml: data, index, logs and add-ins stay where they were."""
    directory = server_directory(context, name)
    assert not (directory / SETTINGS_FILE_NAME).exists(), f"{directory} still has settings.toml"
    kept = directory / file_name
    assert kept.is_file(), f"no {kept}: {sorted(p.name for p in directory.iterdir())}"
    assert tomllib.loads(kept.read_text(encoding="utf-8"))["ae_title"] == name, kept
    assert stored_images(directory) == count, f"{directory / 'data'}: {stored_images(directory)}"
    assert (directory / "addins").is_dir() and (directory / "logs").is_dir(), directory


def stored_images(directory: Path) -> int:
    """Stored files under ``data/``, checked against the rows of the SQLite index."""
    data = directory / "data"
    files = len(list(data.glob("*/*.dcm")))
    with contextlib.closing(sqlite3.connect(data / "index.sqlite")) as db:
        (rows,) = db.execute("SELECT COUNT(*) FROM instance").fetchone()
    assert rows == files, f"{data}: {files} files but {rows} index rows"
    return files


# -- a graceful stop --------------------------------------------------------------------------


def _raw_peers(context: Any) -> dict[str, RawPeer]:
    """The scenario's raw-socket modalities by calling AE title (closed when it ends)."""
    peers: dict[str, RawPeer] | None = getattr(context, "raw_peers", None)
    if peers is None:
        peers = context.raw_peers = {}
        on_cleanup(context, lambda: [peer.close() for peer in peers.values()])
    return peers


@given('the modality "{calling}" is associated with server "{server}" and sends nothing')
def step_idle_raw(context: Any, calling: str, server: str) -> None:
    """A raw peer (the simulators') associates and then stays silent: only the server can end it."""
    where = server_endpoint(context, server)
    peer = RawPeer(where.host, where.port, timeout=WAIT_S)
    _raw_peers(context)[calling] = peer
    peer.connect()
    reply = peer.associate(where.ae_title, calling)
    assert isinstance(reply, AssociateAC), f"{calling} -> {server}: {reply}"


@given('the modality "{calling}" has connected to server "{server}" without asking for anything')
def step_connected_raw(context: Any, calling: str, server: str) -> None:
    """A TCP connection, accepted, with no A-ASSOCIATE-RQ yet (as a slow modality's)."""
    where = server_endpoint(context, server)
    peer = RawPeer(where.host, where.port, timeout=WAIT_S)
    _raw_peers(context)[calling] = peer
    peer.connect()
    context.raw_called = {**getattr(context, "raw_called", {}), calling: where.ae_title}


@when('the modality "{calling}" now asks for an association on that connection')
def step_ask_on_connection(context: Any, calling: str) -> None:
    """The A-ASSOCIATE-RQ on the connection opened earlier; the answer is judged as usual."""
    peer = _raw_peers(context)[calling]
    started = time.monotonic()
    reply = peer.associate(context.raw_called[calling], calling)
    elapsed = time.monotonic() - started
    rejection = reply.triple if isinstance(reply, AssociateRJ) else None
    context.answer = Answer(
        "raw peer", isinstance(reply, AssociateAC), rejection, elapsed, f"answered {reply}"
    )
    peer.close()


@when('I start "{command}" without waiting for it to end')
def step_start_no_wait(context: Any, command: str) -> None:
    """Run a ``pacsref`` command in the background; a later step waits for its end."""
    context.started_command = command
    command_run = Background(_command(context, command), _root(context).path)
    on_cleanup(context, command_run.stop)
    context.command_run = command_run


@then('the server "{name}" stops listening on its port within {seconds:g} seconds')
def step_stops_listening(context: Any, name: str, seconds: float) -> None:
    """Poll the port; note the moment it refuses, which later timings count from."""
    port = server_endpoint(context, name).port
    deadline = time.monotonic() + seconds
    while _accepts_connections(port):
        assert time.monotonic() < deadline, f"{name} still listens on {port} after {seconds:g} s"
        time.sleep(0.02)
    context.stopped_listening_at = time.monotonic()


@then(
    'the server aborts the association of "{calling}" about {seconds:g} second '
    "after it stopped listening"
)
@then(
    'the server aborts the association of "{calling}" about {seconds:g} seconds '
    "after it stopped listening"
)
def step_aborted_after(context: Any, calling: str, seconds: float) -> None:
    """An A-ABORT PDU reaches the silent modality, ``seconds`` (-0.3, +1.0) after the stop."""
    peer = _raw_peers(context)[calling]
    watching_from = time.monotonic()
    reaction = peer.react(seconds + WAIT_S, until=frozenset({A_ABORT}))
    assert reaction.aborts, f"{calling}: no A-ABORT; the server: {reaction.describe()}"
    arrived = watching_from + reaction.arrivals[-1]
    waited = arrived - context.stopped_listening_at
    assert seconds - 0.3 <= waited <= seconds + 1.0, (
        f"{calling} was aborted {waited:.2f} s after the server stopped listening, "
        f"not about {seconds:g} s"
    )


@then('that command ends within {seconds:g} seconds, printing "{text}"')
def step_command_ends(context: Any, seconds: float, text: str) -> None:
    """Exit status 0, nothing on standard error, ``text`` on standard output."""
    command_run: Background = context.command_run
    try:
        code = command_run.process.wait(seconds)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"`{context.started_command}` still running after {seconds:g} s: {command_run.out}"
        ) from None
    for reader in command_run._readers:
        reader.join(WAIT_S)
    shown = f"`{context.started_command}` exit {code}: {command_run.out} {command_run.err}"
    assert code == 0 and not command_run.err, shown
    assert any(expand(context, text) in line for line in command_run.out), shown


# -- storing on a named server ---------------------------------------------------------------

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"


def _store_on(context: Any, calling: str, server: str, files: list[Path]) -> None:
    """C-STORE ``files`` on one association (pynetdicom); the statuses go to ``context``."""
    from pynetdicom import AE

    where = server_endpoint(context, server)
    ae = AE(ae_title=calling)
    ae.add_requested_context(CT_IMAGE, EXPLICIT_VR_LITTLE_ENDIAN)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT_S
    assoc = ae.associate(where.host, where.port, ae_title=where.ae_title)
    assert assoc.is_established, f"{calling} -> {server}: association not established"
    statuses = []
    try:
        for path in files:
            answer = assoc.send_c_store(path)
            assert "Status" in answer, f"{calling} -> {server}: no C-STORE-RSP for {path.name}"
            statuses.append(int(answer.Status))
    finally:
        assoc.release()
    context.statuses = statuses


@given('the modality "{calling}" stores a new image on server "{server}"')
@when('the modality "{calling}" stores a new image on server "{server}"')
def step_store_new_on(context: Any, calling: str, server: str) -> None:
    """One generated CT image (pydicom), stored with pynetdicom on its own association."""
    from tests.storage.dicomgen import make_study

    folder = Path(tempfile.mkdtemp(prefix="pacsref-images-"))
    on_cleanup(context, lambda: shutil.rmtree(folder, ignore_errors=True))
    context.image = make_study(folder, series=1, per_series=1).files[0]
    _store_on(context, calling, server, [context.image])


@when('the modality "{calling}" sends that image to server "{server}" again')
def step_store_again_on(context: Any, calling: str, server: str) -> None:
    """The same file (same SOP Instance UID) once more, on a new association."""
    _store_on(context, calling, server, [context.image])


@then('the server "{name}" holds {count:d} stored image')
@then('the server "{name}" holds {count:d} stored images')
def step_holds_images(context: Any, name: str, count: int) -> None:
    """Files under ``data/``, as many as the index has rows."""
    directory = server_directory(context, name)
    assert stored_images(directory) == count, f"{directory}: not {count} stored images"
