"""UpdateSettings: validated with the file, saved atomically, live fields applied at once."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import maybeDeferred

from pacsref.addin.aetitles import MemoryAeTitles
from pacsref.admin.handlers import AdminCommands
from pacsref.admin.protocol import AdminFactory
from pacsref.server.live_settings import live_settings_for
from pacsref.settings import edit, load_settings, spool
from pacsref.testing.harness import ServerHarness

from .helpers import Connection


class Server:
    """A harness server with its admin socket's factory and a synchronous 'thread'."""

    def __init__(self, directory: Path) -> None:
        self.harness = ServerHarness(directory)
        self.file = directory / "settings.toml"
        live = live_settings_for(self.harness.factory)
        self.commands = AdminCommands(
            self.harness.control,
            MemoryAeTitles([], resolver=lambda info: frozenset()),
            lambda f, *a: maybeDeferred(f, *a),
            settings=self.harness.server.settings,
            live_settings=live,
            settings_file=self.file,
        )
        self.admin = Connection(AdminFactory(self.commands, "PACSREF"))

    def update(self, changes: Any) -> dict[str, Any]:
        return self.admin.request("UpdateSettings", changes)


@pytest.fixture
def server(tmp_path: Path) -> Server:
    return Server(tmp_path / "PACSREF")


def test_live_fields_apply_and_restart_ones_are_saved(server: Server) -> None:
    """max_clients applies now; port is saved for the next start; both are in the file."""
    reply = server.update({"max_clients": 20, "artim_timeout": 10, "port": 11113})
    assert reply["success"], reply["error"]
    assert reply["data"] == [["max_clients", "artim_timeout"], ["port"]]
    running = server.harness.server.settings
    assert (running.max_clients, running.artim_timeout, running.port) == (20, 10.0, 11112)
    saved = load_settings(server.file)
    assert (saved.max_clients, saved.artim_timeout, saved.port) == (20, 10.0, 11113)
    got = server.admin.request("GetSettings")["data"][0]
    assert got["max_clients"] == 20 and got["port"] == 11112  # what the server runs with


def test_pending_restart_fields_are_reported_again(server: Server) -> None:
    """A port saved earlier still waits for a restart in the next update's answer."""
    server.update({"port": 11113})
    reply = server.update({"client_timeout": 0})
    assert reply["data"] == [["client_timeout"], ["port"]]


def test_every_problem_is_reported_and_nothing_is_written(server: Server) -> None:
    """Bad values, an unknown key and a broken file line are all named in one error."""
    text = re.sub(r"(?m)^send_buffer = \d+$", "send_buffer = 1", server.file.read_text())
    assert "send_buffer = 1" in text  # whatever the default is, the line is now broken
    server.file.write_text(text)
    reply = server.update({"port": 0, "max_clients": "many", "bogus": 1})
    assert not reply["success"]
    for words in ("port = 0", "max_clients", "bogus", "send_buffer = 1", str(server.file)):
        assert words in reply["error"]
    assert server.file.read_text() == text
    assert server.harness.server.settings.max_clients == 100


def test_the_ae_title_cannot_change(server: Server) -> None:
    """The AE title names the directory and the admin socket: refused, with what to do."""
    reply = server.update({"ae_title": "OTHER"})
    assert not reply["success"] and "server add" in reply["error"]
    assert server.update({"ae_title": "PACSREF", "description": "x"})["success"]


@pytest.mark.parametrize(
    ("data", "words"), [([], "must be a settings object"), ({}, "names no setting")]
)
def test_the_request_must_carry_an_object(server: Server, data: Any, words: str) -> None:
    reply = server.update(data)
    assert not reply["success"] and words in reply["error"]


def test_without_live_settings_it_is_refused(tmp_path: Path) -> None:
    """A server wired without LiveSettings (e.g. an old caller) refuses, saying so."""
    harness = ServerHarness(tmp_path / "X")
    commands = AdminCommands(harness.control, None, lambda f, *a: maybeDeferred(f, *a))
    reply = Connection(AdminFactory(commands, "X")).request("UpdateSettings", {"port": 1})
    assert not reply["success"] and "cannot change its settings" in reply["error"]


# -- temporary_directory: checked on the server's machine, not only by the manager -----------


def test_a_temporary_directory_under_a_file_is_refused_and_nothing_saved(
    server: Server, tmp_path: Path
) -> None:
    """A direct admin client gets the manager's words, and the file keeps the old value."""
    (tmp_path / "plain").write_text("")
    before = server.file.read_text()
    bad = str(tmp_path / "plain" / "spool")
    reply = server.update({"temporary_directory": bad, "max_clients": 20})
    assert not reply["success"]
    assert reply["error"].startswith(f"cannot use temporary_directory {bad!r}: cannot create ")
    assert server.file.read_text() == before
    assert server.harness.server.settings.max_clients == 100  # nothing applied either


def test_a_temporary_directory_that_is_a_file_is_refused(server: Server, tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("")
    reply = server.update({"temporary_directory": str(tmp_path / "plain")})
    assert not reply["success"] and reply["error"].endswith("plain is not a directory")


def test_writing_is_tried_not_assumed(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory the server may not write in is refused even where ``os.access`` says yes
    (root, a read-only mount): the check creates a file; what it created is removed again."""

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "access", lambda *args, **kwargs: True)
    monkeypatch.setattr(spool.tempfile, "TemporaryFile", read_only)
    target = tmp_path / "new" / "spool"
    reply = server.update({"temporary_directory": str(target)})
    assert not reply["success"]
    assert f"cannot write in {target}: {os.strerror(errno.EROFS)}" in reply["error"]
    assert not (tmp_path / "new").exists()


def test_a_usable_temporary_directory_is_saved_and_left_for_the_start(
    server: Server, tmp_path: Path
) -> None:
    """Creatable: saved for the next start; the probe leaves no directory behind."""
    target = tmp_path / "spool" / "deep"
    reply = server.update({"temporary_directory": str(target)})
    assert reply["success"], reply["error"]
    assert load_settings(server.file).temporary_directory == str(target)
    assert not (tmp_path / "spool").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    assert server.update({"temporary_directory": str(existing)})["success"]
    assert list(existing.iterdir()) == []  # the probe file is gone


def test_the_check_runs_on_the_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It creates and removes files (maybe on a slow mount): never on the reactor thread."""
    server = Server(tmp_path / "PACSREF")
    inside: list[bool] = []
    in_runner = False

    def runner(function: Any, *args: Any) -> Any:
        nonlocal in_runner
        in_runner = True
        try:
            return maybeDeferred(function, *args)
        finally:
            in_runner = False

    real = edit.check_temporary_directory

    def recorded(*args: Any) -> None:
        inside.append(in_runner)
        real(*args)

    monkeypatch.setattr(edit, "check_temporary_directory", recorded)
    server.commands.run_in_thread = runner
    reply = server.update({"temporary_directory": str(tmp_path / "spool")})
    assert reply["success"], reply["error"]
    assert inside == [True]


def test_an_unchanged_or_default_temporary_directory_is_not_probed(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a new value needs judging; "" is the server directory's own tmp/."""
    probed: list[object] = []
    monkeypatch.setattr(edit, "check_temporary_directory", lambda *a: probed.append(a))
    assert server.update({"temporary_directory": ""})["success"]
    assert probed == []
