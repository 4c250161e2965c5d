"""``ae add|update|remove`` and ``addins config KEY=VALUE``: the server's lock, as for
``server edit``, and a running server's refusal of a value worded as a stopped one's.

No test sleeps: two managers are one process taking the lock twice (``flock`` conflicts
between two open file descriptions of one process too), and the second edit landing at the
worst moment runs from inside the first one's save. A running server's admin socket is
played in memory by the real admin commands over the add-ins of the server's folder
(:class:`InMemoryAdmin`), so its refusals are worded by the server's own code.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import maybeDeferred

import pacsref.addin.aetitles_file
import pacsref.addin.options_file
from pacsref.addin import OPTIONS_DIR_NAME, load_addins
from pacsref.addin.aetitles import MemoryAeTitles
from pacsref.admin.addin_options import REQUEST_SOURCE
from pacsref.admin.handlers import AdminCommands
from pacsref.admin.messages import ServiceMessage
from pacsref.admin.protocol import AdminFactory
from pacsref.manager import addins, ae, daemon
from pacsref.manager.cli import main
from pacsref.manager.daemon import find_server
from pacsref.server.clients import ClientRegistry
from pacsref.server.control import ServerControl
from pacsref.server.notifications import Notifier
from pacsref.settings import ADDINS_DIR_NAME
from tests.admin.helpers import Connection

from .test_manager import add, run
from .test_manager_races import lock_held

#: The commands that change a stopped server's files, each after ``pacsref`` and the name.
CHANGES = {
    "ae add": ("ae", "add", "{name}", "MR1", "--host", "127.0.0.1", "--port", "104"),
    "ae update": ("ae", "update", "{name}", "CT1", "--port", "2104"),
    "ae remove": ("ae", "remove", "{name}", "CT1"),
    "addins config": ("addins", "config", "{name}", "storage", "duplicates=refuse"),
}


def _server(capsys: pytest.CaptureFixture[str], root: Path, name: str) -> Path:
    """A stopped server whose AE title table holds CT1; its directory."""
    add(capsys, root, name)
    argv = ("ae", "add", name, "CT1", "--host", "127.0.0.1", "--port", "1104")
    status, _, err = run(capsys, root, *argv)
    assert status == 0, err
    return root / name


def _argv(change: str, name: str) -> list[str]:
    return [word.format(name=name) for word in CHANGES[change]]


def _files(directory: Path) -> dict[str, bytes | None]:
    """The bytes of every file those commands write (None: there is none)."""
    paths = [directory / "aetitles.toml", directory / OPTIONS_DIR_NAME / "storage.toml"]
    return {p.name: p.read_bytes() if p.exists() else None for p in paths}


def _busy(name: str, doing: str) -> str:
    return (
        f"pacsref: server {name} is already {doing} (by pacsref pid {os.getpid()}); "
        "try again once that is done\n"
    )


# -- the server's lock ----------------------------------------------------------------------


@pytest.mark.parametrize("change", list(CHANGES))
@pytest.mark.parametrize("doing", ["starting", "stopping", "being edited"])
def test_a_change_is_refused_while_another_manager_holds_the_lock(
    tmp_path: Path, capsys, change: str, doing: str
) -> None:
    """As ``server edit`` is: one line saying what the other pacsref does, nothing written
    (a start meanwhile could read the file half-judged, an edit meanwhile be undone)."""
    directory = _server(capsys, tmp_path, "BUSY")
    before = _files(directory)
    with daemon.exclusive(find_server(tmp_path, "BUSY"), doing):
        status, out, err = run(capsys, tmp_path, *_argv(change, "BUSY"))
    assert (status, out, err) == (1, "", _busy("BUSY", doing))
    assert _files(directory) == before


#: For each kind of file: the module whose ``atomic_write_bytes`` saves it, two changes that
#: read the file before saving it whole, and what the file must hold once both are made.
INTERLEAVED = {
    "ae update": (
        pacsref.addin.aetitles_file,
        ("ae", "update", "TWO", "CT1", "--port", "2104"),
        ("ae", "update", "TWO", "CT1", "--description", "second"),
        ("port = 2104", 'description = "second"'),
    ),
    "ae add": (
        pacsref.addin.aetitles_file,
        ("ae", "add", "TWO", "MR1", "--host", "127.0.0.1", "--port", "104"),
        ("ae", "add", "TWO", "US1", "--host", "127.0.0.1", "--port", "105"),
        ('ae_title = "MR1"', 'ae_title = "US1"'),
    ),
    "addins config": (
        pacsref.addin.options_file,
        ("addins", "config", "TWO", "storage", "duplicates=refuse"),
        ("addins", "config", "TWO", "storage", "durability=relaxed"),
        ('duplicates = "refuse"', 'durability = "relaxed"'),
    ),
}


@pytest.mark.parametrize("change", list(INTERLEAVED))
def test_two_changes_at_once_do_not_lose_one(
    tmp_path: Path, capsys, monkeypatch, change: str
) -> None:
    """A second change landing while the first has read the file but not yet saved it is
    refused (the first would save what it read, and the second's change be gone); made
    again afterwards, both are in the file."""
    module, first, second, expected = INTERLEAVED[change]
    directory = _server(capsys, tmp_path, "TWO")
    save = module.atomic_write_bytes
    meanwhile: list[tuple[int, str] | None] = []

    def save_after_another_change(path: Any, data: bytes) -> None:
        if not meanwhile:  # the first save only (the second change, let through, saves too)
            meanwhile.append(None)
            status = main(["--root", str(tmp_path), *second])
            meanwhile[0] = (status, capsys.readouterr().err)
        save(path, data)

    def saved() -> str:
        return "\n".join(v.decode() for v in _files(directory).values() if v is not None)

    monkeypatch.setattr(module, "atomic_write_bytes", save_after_another_change)
    status, _, err = run(capsys, tmp_path, *first)
    assert status == 0, err
    assert expected[0] in saved()
    if meanwhile[0] is not None and meanwhile[0][0] == 0:  # told it was saved: it must be
        assert expected[1] in saved(), "the second change was reported saved, then lost"
    assert meanwhile == [(1, _busy("TWO", "being edited"))]
    monkeypatch.undo()
    status, _, err = run(capsys, tmp_path, *second)
    assert status == 0, err
    assert expected[0] in saved() and expected[1] in saved(), saved()


def _spy_on_the_lock(
    monkeypatch: pytest.MonkeyPatch, directory: Path, running: Callable[[Any], bool]
) -> dict[str, bool]:
    """Where "is it running?" is asked and where a file is saved: whether the lock is held."""
    seen: dict[str, bool] = {}

    def running_spy(server: Any) -> bool:
        seen["running"] = lock_held(directory)
        return running(server)

    for module in (pacsref.addin.aetitles_file, pacsref.addin.options_file):
        save = module.atomic_write_bytes

        def save_spy(path: Any, data: bytes, save: Callable[[Any, bytes], None] = save) -> None:
            seen["save"] = lock_held(directory)
            save(path, data)

        monkeypatch.setattr(module, "atomic_write_bytes", save_spy)
    monkeypatch.setattr(ae, "running", running_spy)
    monkeypatch.setattr(addins, "_running", running_spy)
    return seen


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_stopped_server_is_judged_and_saved_under_the_lock(
    tmp_path: Path, capsys, monkeypatch, change: str
) -> None:
    """From "is it running?" to the saved file, no start can slip in: it would read the old
    file, or the change would rewrite a file behind a server that just started."""
    directory = _server(capsys, tmp_path, "HELD")
    seen = _spy_on_the_lock(monkeypatch, directory, daemon.running)
    status, _, err = run(capsys, tmp_path, *_argv(change, "HELD"))
    assert status == 0, err
    assert seen == {"running": True, "save": True}
    assert not lock_held(directory)  # and released afterwards


@pytest.mark.parametrize(
    ("change", "path"),
    [("ae update", "aetitles.toml"), ("addins config", f"{OPTIONS_DIR_NAME}/storage.toml")],
)
def test_a_change_replaces_the_file_whole(tmp_path: Path, capsys, change: str, path: str) -> None:
    """Both files are replaced (a temporary file renamed over them), as ``settings.toml``
    is: a reader holding the old file reads it whole, and no temporary file is left."""
    directory = _server(capsys, tmp_path, "ATOM")
    options = ("addins", "config", "ATOM", "storage", "duplicates=overwrite")
    assert run(capsys, tmp_path, *options)[0] == 0  # so that both files exist
    saved = directory / path
    before = saved.read_bytes()
    with saved.open("rb") as reader:
        old = os.fstat(reader.fileno()).st_ino
        status, _, err = run(capsys, tmp_path, *_argv(change, "ATOM"))
        assert status == 0, err
        assert reader.read() == before
    assert saved.stat().st_ino != old and saved.read_bytes() != before
    assert list(saved.parent.glob(f".{saved.name}*")) == []


# -- a running server ------------------------------------------------------------------------


class InMemoryAdmin:
    """A running server's admin socket, in this process: the server's own admin commands
    over the add-ins of its folder, loaded as twistd loads them. Every request is recorded
    with whether the server's lock was held when it was sent."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        loaded = load_addins(
            directory / ADDINS_DIR_NAME, strict=False, options_dir=directory / OPTIONS_DIR_NAME
        )
        notifier = Notifier()
        commands = AdminCommands(
            ServerControl(ClientRegistry(notifier), notifier, directory.name),
            MemoryAeTitles([], resolver=lambda info: frozenset()),
            lambda f, *a: maybeDeferred(f, *a),
            addins=loaded.addins,
            failures=loaded.failures,
            addin_options_dir=directory / OPTIONS_DIR_NAME,
        )
        self.factory = AdminFactory(commands, directory.name)
        self.sent: list[tuple[str, tuple[Any, ...], bool]] = []

    def __enter__(self) -> InMemoryAdmin:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def call(self, message: str, *data: Any) -> ServiceMessage:
        self.sent.append((message, data, lock_held(self.directory)))
        return ServiceMessage.from_dict(Connection(self.factory).request(message, *data))


def _running_in_memory(monkeypatch: pytest.MonkeyPatch, directory: Path) -> InMemoryAdmin:
    admin = InMemoryAdmin(directory)
    monkeypatch.setattr(addins, "_running", lambda server: True)
    monkeypatch.setattr(daemon._Registered, "admin", lambda server, timeout=10.0: admin)
    return admin


@pytest.mark.parametrize(
    "assignments",
    [
        ["duplicates=maybe"],
        ["duplicates=3"],
        ["minimum_free_space_mib=lots"],
        ["accept_unknown_storage_classes=3"],
        ["duplicates=maybe", "minimum_free_space_mib=lots"],  # two problems, one line
    ],
)
def test_a_bad_value_reads_the_same_whether_the_server_runs_or_not(
    tmp_path: Path, capsys, monkeypatch, assignments: list[str]
) -> None:
    """The user typed the same thing either way: a running server's refusal names the
    command line, as a stopped server's does, not the admin request's field; the rest is
    the server's own wording."""
    add(capsys, tmp_path, "SAME")
    argv = ("addins", "config", "SAME", "storage", *assignments)
    stopped = run(capsys, tmp_path, *argv)
    admin = _running_in_memory(monkeypatch, tmp_path / "SAME")
    running = run(capsys, tmp_path, *argv)
    assert running == stopped
    status, out, err = running
    assert (status, out) == (1, "") and len(err.splitlines()) == 1, err
    problems = err.removeprefix("pacsref: ").split("; ")
    assert [p.partition(" = ")[0] for p in problems] == [
        f"command line: {a.partition('=')[0]}" for a in assignments
    ]
    assert [message for message, _, _ in admin.sent] == ["GetAddInOptions", "SetAddInOptions"]
    assert not (tmp_path / "SAME" / OPTIONS_DIR_NAME / "storage.toml").exists()


def test_a_refusal_that_blames_no_value_sent_is_the_server_s(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """An add-in that refuses the values it was told is not a mistake on the command line:
    it is told as the server's refusal, naming the server and the request."""
    add(capsys, tmp_path, "NOPE")
    admin = _running_in_memory(monkeypatch, tmp_path / "NOPE")
    storage = next(a for a in admin.factory.commands.addins if a.name == "storage")

    def refuse(new_options: Any) -> None:
        raise RuntimeError("not today")

    monkeypatch.setattr(storage, "options_changed", refuse)
    status, out, err = run(capsys, tmp_path, *_argv("addins config", "NOPE"))
    assert (status, out, err) == (
        1,
        "",
        "pacsref: server NOPE: SetAddInOptions failed: add-in 'storage' refused the options: "
        "RuntimeError: not today\n",
    )


@pytest.mark.parametrize(
    ("error", "typed"),
    [
        (f"{REQUEST_SOURCE}: a = 1: bad (add-in x)", "command line: a = 1: bad (add-in x)"),
        (
            f"/f.toml: b = 2: bad (add-in x); {REQUEST_SOURCE}: a = 1: bad; known: a (add-in x)",
            "/f.toml: b = 2: bad (add-in x); command line: a = 1: bad; known: a (add-in x)",
        ),
        (
            f"{REQUEST_SOURCE}: a = 1: bad (add-in x); {REQUEST_SOURCE}: c: unknown (add-in x)",
            "command line: a = 1: bad (add-in x); command line: c: unknown (add-in x)",
        ),
        ("/f.toml: b = 2: bad (add-in x)", None),
        ("add-in 'x' refused the options: ValueError: no", None),
    ],
)
def test_only_the_request_s_field_is_renamed(error: str, typed: str | None) -> None:
    """Each problem blamed on the request's field is blamed on the command line instead;
    the file's problems, and refusals that blame no value, are left as they are."""
    assert addins._as_typed(error) == typed


def test_a_running_server_is_still_sent_the_options_under_the_lock(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """Running, ``addins config`` still asks the add-in's options and sends the change over
    the admin socket (the server validates and saves it) and names the keys that wait for a
    restart; now with the lock held, so no stop or start runs meanwhile."""
    add(capsys, tmp_path, "LIVE")
    admin = _running_in_memory(monkeypatch, tmp_path / "LIVE")
    argv = ("addins", "config", "LIVE", "storage", "duplicates=overwrite", "durability=relaxed")
    status, out, err = run(capsys, tmp_path, *argv)
    assert status == 0, err
    assert out.splitlines() == [
        'duplicates = "overwrite"',
        'durability = "relaxed"',
        "saved; applies at the next start: durability",
    ]
    changes = {"duplicates": "overwrite", "durability": "relaxed"}
    assert admin.sent == [
        ("GetAddInOptions", ("storage",), True),
        ("SetAddInOptions", ("storage", changes), True),
    ]
    assert not lock_held(tmp_path / "LIVE")


def test_a_running_server_is_still_sent_its_ae_changes_under_the_lock(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """Running, ``ae add|update|remove`` still go over the admin socket and write no file;
    now with the lock held, so no stop or start runs meanwhile."""
    directory = _server(capsys, tmp_path, "LIVE")
    before = _files(directory)
    ct1 = {"ae_title": "CT1", "host": "127.0.0.1", "port": 1104}
    answers: dict[str, list[Any]] = {
        "AddAeTitle": [{"ae_title": "MR1", "host": "127.0.0.1", "port": 104}],
        "GetAeTitles": [[ct1]],
        "UpdateAeTitle": [ct1, {**ct1, "port": 2104}],
        "RemoveAeTitle": [],
    }
    sent: list[tuple[str, tuple[Any, ...], bool]] = []

    def call_running(server: Any, message: str, *data: Any) -> list[Any]:
        sent.append((message, data, lock_held(directory)))
        return answers[message]

    monkeypatch.setattr(ae, "running", lambda server: True)
    monkeypatch.setattr(ae, "call_running", call_running)
    outs = []
    for change in CHANGES:
        if change.startswith("ae "):
            status, out, err = run(capsys, tmp_path, *_argv(change, "LIVE"))
            assert status == 0, err
            outs.append(out)
    assert outs == [
        "MR1               127.0.0.1:104  -\n",
        "CT1               127.0.0.1:2104  -\n",
        "removed CT1 from LIVE\n",
    ]
    assert sent == [
        ("AddAeTitle", ({"ae_title": "MR1", "host": "127.0.0.1", "port": 104},), True),
        ("GetAeTitles", (), True),
        ("UpdateAeTitle", ("CT1", {**ct1, "port": 2104}), True),
        ("RemoveAeTitle", ("CT1",), True),
    ]
    assert _files(directory) == before
    assert not lock_held(directory)
