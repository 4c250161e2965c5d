"""The root rule ($PACSREF_ROOT, else ./pacsref-data), stated once and shared by the twistd
plugin and the manager, and the plugin's independence from the manager package."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pacsref.manager import daemon
from pacsref.server.create import default_server_dir, server_root

#: A stand-in process whose command line names the plugin but no --server-dir.
_SLEEPER = "import time; print('ready', flush=True); time.sleep(120)"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, Path("pacsref-data")),
        ({"PACSREF_ROOT": ""}, Path("pacsref-data")),
        ({"PACSREF_ROOT": "/srv/pacs"}, Path("/srv/pacs")),
        ({"PACSREF_ROOT": "rel/root"}, Path("rel/root")),
    ],
)
def test_server_root_rule(environ: dict[str, str], expected: Path) -> None:
    """Set and not empty: $PACSREF_ROOT as given (a relative one stays relative, to the
    working directory); otherwise ./pacsref-data. The embedded default is <root>/PACSREF."""
    assert server_root(environ) == expected
    assert default_server_dir(environ) == expected / "PACSREF"


@pytest.mark.parametrize("value", [None, "", "/srv/pacs", "rel/root"])
def test_manager_and_plugin_read_one_root(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    """The manager's default root is the plugin's, whatever the environment says."""
    if value is None:
        monkeypatch.delenv("PACSREF_ROOT", raising=False)
    else:
        monkeypatch.setenv("PACSREF_ROOT", value)
    assert daemon.default_root() == server_root() == default_server_dir().parent


@contextmanager
def _plugin_process(cwd: Path, root: str | None) -> Iterator[subprocess.Popen[str]]:
    """A live process with ``pacsref`` (no --server-dir) on its command line, started with
    ``PACSREF_ROOT=root`` (unset for None), killed on the way out."""
    env = {name: value for name, value in os.environ.items() if name != "PACSREF_ROOT"}
    if root is not None:
        env["PACSREF_ROOT"] = root
    process = subprocess.Popen(
        [sys.executable, "-c", _SLEEPER, "pacsref"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        yield process
    finally:
        process.kill()
        process.wait(10)


@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="needs /proc")
def test_runs_server_reads_the_process_s_own_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A twistd run without --server-dir serves <its $PACSREF_ROOT>/PACSREF (relative to its
    working directory), whatever the manager's own environment says: a pidfile put there is
    not taken for a stale one."""
    monkeypatch.setenv("PACSREF_ROOT", str(tmp_path / "managers-own"))
    for where in ("srv/PACSREF", "rel/PACSREF", "pacsref-data/PACSREF"):
        (tmp_path / where).mkdir(parents=True)
    with _plugin_process(tmp_path, str(tmp_path / "srv")) as process:
        assert daemon.runs_server(process.pid, tmp_path / "srv" / "PACSREF") is True
        assert daemon.runs_server(process.pid, tmp_path / "pacsref-data" / "PACSREF") is False
    with _plugin_process(tmp_path, "rel") as process:
        assert daemon.runs_server(process.pid, tmp_path / "rel" / "PACSREF") is True
    for unset in (None, ""):
        with _plugin_process(tmp_path, unset) as process:
            assert daemon.runs_server(process.pid, tmp_path / "pacsref-data" / "PACSREF") is True


@pytest.mark.parametrize(
    "options",
    [
        ["--ae-title", "STORE"],
        ["-a", "STORE"],
        ["--ae-title=STORE"],
        ["-aSTORE"],
        ["--ae", "STORE"],  # getopt takes a unique abbreviation, as twistd did
        ["--port", "104", "--ae=STORE"],
        ["--ae-title", "OTHER", "-a", "STORE"],  # the last one given wins
    ],
)
def test_runs_server_knows_a_server_named_by_its_ae_title_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: list[str]
) -> None:
    """``twistd pacsref --ae-title STORE`` (no --server-dir) runs <root>/STORE, not the
    embedded default: its pidfile there is the server's, not a stale one."""
    for where in ("STORE", "PACSREF"):
        (tmp_path / where).mkdir()
    monkeypatch.setattr(daemon, "command_line", lambda pid: ["twistd", "-n", "pacsref", *options])
    monkeypatch.setattr(daemon, "process_environment", lambda pid: {"PACSREF_ROOT": str(tmp_path)})
    assert daemon.runs_server(1, tmp_path / "STORE") is True
    assert daemon.runs_server(1, tmp_path / "PACSREF") is False


def test_runs_server_abbreviated_or_unparsable_plugin_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--server DIR`` is ``--server-dir DIR`` to twistd and so to the manager; options
    twistd could not have parsed cannot be judged (None: the pid is trusted, as without
    /proc)."""
    (tmp_path / "S").mkdir()
    words = ["twistd", "-n", "pacsref", "--server", str(tmp_path / "S")]
    monkeypatch.setattr(daemon, "command_line", lambda pid: words)
    assert daemon.runs_server(1, tmp_path / "S") is True
    words[3:] = ["--no-such-option"]
    assert daemon.runs_server(1, tmp_path / "S") is None


def test_runs_server_without_the_process_s_environment_cannot_tell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --server-dir and an environment that may not be read (another user's process):
    unknown, so the pid is trusted as when /proc says nothing."""
    monkeypatch.setattr(daemon, "command_line", lambda pid: ["twistd", "-n", "pacsref"])
    monkeypatch.setattr(daemon, "process_environment", lambda pid: None)
    assert daemon.runs_server(1, tmp_path) is None


def test_twistd_plugin_does_not_import_the_manager() -> None:
    """The plugin reads the root rule from pacsref.server.create, not from pacsref.manager."""
    code = (
        "import sys, pacsref.server.tap; "
        "print(sorted(m for m in sys.modules if m.startswith('pacsref.manager')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out == "[]\n"
