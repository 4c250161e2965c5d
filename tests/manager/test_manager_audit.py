"""The manager's answers to the CLI audit: stale pidfiles, concurrent starts, broken running
servers, start failures after twistd detached, Ctrl-C, a full disk, systemd escaping, usage.

The tests that need a real daemon start one on a free loopback port and stop it again.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pacsref.manager import daemon, servers
from pacsref.manager.cli import main
from pacsref.manager.daemon import find_server, process_alive
from pacsref.settings import load_settings

from .test_manager import add, kill_by_pidfile, run, stand_in_twistd

#: 128 + SIGINT, as documented (docs/manager.md).
INTERRUPTED_EXIT = 130

_SLEEPER = "import time; print('ready', flush=True); time.sleep(120)"


@contextmanager
def sleeper(*words: str, cwd: Path | None = None) -> Iterator[subprocess.Popen[str]]:
    """``python -c <sleep> WORDS...``, once it runs (just after exec its command line may
    still read empty), killed on the way out."""
    process = subprocess.Popen(
        [sys.executable, "-c", _SLEEPER, *words], cwd=cwd, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        yield process
    finally:
        process.kill()
        process.wait(10)


def one_line(err: str) -> str:
    """The single ``pacsref: ...`` line a failure must print, without a traceback."""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pacsref: "), err
    return lines[0]


@pytest.fixture
def unrelated() -> Iterator[subprocess.Popen[str]]:
    """A live process that is not a server (what a pid reused after a crash belongs to)."""
    with sleeper() as process:
        yield process


def _break(root: Path, name: str) -> None:
    """Two bad values by hand, as the audit's ``sed``: both must be reported."""
    path = root / name / "settings.toml"
    text = re.sub(r"(?m)^max_clients = .*$", "max_clients = 0", path.read_text())
    path.write_text(re.sub(r"(?m)^artim_timeout = .*$", "artim_timeout = -1", text))
    assert "max_clients = 0\n" in path.read_text() and "artim_timeout = -1\n" in path.read_text()


# -- 1. a pidfile whose pid now belongs to another process is stale ------------------------


def test_a_pidfile_naming_another_process_is_stale_and_that_process_is_left_alone(
    tmp_path: Path, capsys, unrelated: subprocess.Popen[str]
) -> None:
    add(capsys, tmp_path, "ONE")
    pidfile = tmp_path / "ONE" / "twistd.pid"
    pidfile.write_text(f"{unrelated.pid}\n")
    assert find_server(tmp_path, "ONE").pid() is None
    status, out, err = run(capsys, tmp_path, "server", "list")
    assert status == 0 and out.splitlines()[1].split()[3:] == ["stopped", "-"], out
    assert run(capsys, tmp_path, "server", "status", "ONE")[:2] == (3, "ONE: stopped\n")
    assert pidfile.exists()  # looking does not remove it

    status, out, err = run(capsys, tmp_path, "server", "stop", "ONE")
    warning, failure = err.splitlines()
    assert warning.startswith(
        f"pacsref: warning: server ONE: removed the stale pidfile {pidfile}: pid "
        f"{unrelated.pid} is not this server's twistd ({sys.executable[:20]}"
    )
    assert (status, failure) == (1, "pacsref: server ONE is not running")
    assert unrelated.poll() is None and process_alive(unrelated.pid)  # never SIGTERMed
    assert not pidfile.exists()


def test_delete_goes_past_a_stale_pidfile(
    tmp_path: Path, capsys, unrelated: subprocess.Popen[str]
) -> None:
    add(capsys, tmp_path, "GONE")
    (tmp_path / "GONE" / "twistd.pid").write_text(str(unrelated.pid))
    status, out, err = run(capsys, tmp_path, "server", "delete", "GONE")
    assert status == 0, err
    assert "removed the stale pidfile" in err and out.startswith("deleted server GONE")
    assert unrelated.poll() is None


def test_start_removes_a_stale_pidfile_and_the_new_daemon_counts(
    tmp_path: Path, capsys, unrelated: subprocess.Popen[str]
) -> None:
    """twistd itself refuses to start while the pid in its pidfile lives: it must go first."""
    add(capsys, tmp_path, "AGAIN", "--start-mode", "automatic")
    directory = tmp_path / "AGAIN"
    (directory / "twistd.pid").write_text(str(unrelated.pid))
    try:
        status, out, err = run(capsys, tmp_path, "server", "start-all")
        assert status == 0, err
        assert err.count("removed the stale pidfile") == 1 and out.startswith("started AGAIN")
        pid = find_server(tmp_path, "AGAIN").pid()
        assert pid is not None and pid != unrelated.pid
        assert daemon.runs_server(pid, directory) is True
        # The lock is free again while the daemon runs: twistd did not inherit it.
        with daemon.exclusive(find_server(tmp_path, "AGAIN"), "testing"):
            pass
        status, out, err = run(capsys, tmp_path, "server", "stop", "AGAIN")
        assert (status, err) == (0, "") and not process_alive(pid)
    finally:
        kill_by_pidfile(directory)
    assert unrelated.poll() is None


def test_runs_server_reads_the_command_line(tmp_path: Path) -> None:
    """``--server-dir DIR`` after the plugin name, absolute or relative to the process's cwd,
    ``--server-dir=DIR``, ``-d DIR``; twistd's default server without the option."""
    directory = tmp_path / "SRV"
    (directory / "pacsref-data" / "PACSREF").mkdir(parents=True)
    forms = {
        ("pacsref", "--server-dir", str(directory)): True,
        ("pacsref", "--server-dir=" + str(directory)): True,
        ("pacsref", "-d", str(directory)): True,
        ("pacsref", "-d" + str(directory)): True,
        ("pacsref", "--server-dir", "."): True,  # relative to its cwd (the directory)
        ("pacsref", "--server-dir", str(tmp_path)): False,
        ("-d", str(directory), "pacsref"): False,  # twistd's own -d (rundir), not the plugin's
        ("--server-dir", str(directory)): False,  # not the plugin
    }
    for words, expected in forms.items():
        with sleeper(*words, cwd=directory) as process:
            assert daemon.runs_server(process.pid, directory) is expected, words
    with sleeper("pacsref", cwd=directory) as process:
        # no --server-dir: ./pacsref-data/PACSREF of its working directory
        assert daemon.runs_server(process.pid, directory / "pacsref-data" / "PACSREF") is True
        assert daemon.runs_server(process.pid, directory) is False


def test_without_proc_a_live_pid_is_trusted_as_before(
    tmp_path: Path, capsys, monkeypatch, unrelated: subprocess.Popen[str]
) -> None:
    add(capsys, tmp_path, "NOPROC")
    (tmp_path / "NOPROC" / "twistd.pid").write_text(str(unrelated.pid))
    monkeypatch.setattr(daemon, "command_line", lambda pid: None)
    assert find_server(tmp_path, "NOPROC").pid() == unrelated.pid


# -- 2. one start (stop, delete) at a time -------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "doing"),
    [
        (["server", "start", "BUSY"], "starting"),
        (["server", "stop", "BUSY"], "stopping"),
        (["server", "delete", "BUSY"], "being deleted"),
        (["server", "start-all"], "starting"),
    ],
)
def test_a_second_start_or_stop_is_refused_while_one_is_under_way(
    tmp_path: Path, capsys, argv: list[str], doing: str
) -> None:
    add(capsys, tmp_path, "BUSY", "--start-mode", "automatic")
    server = find_server(tmp_path, "BUSY")
    with daemon.exclusive(server, doing):
        status, out, err = run(capsys, tmp_path, *argv)
    lines = err.splitlines()
    assert status == 1 and out == ""
    assert lines[0] == (
        f"pacsref: server BUSY is already {doing} (by pacsref pid {os.getpid()}); "
        "try again once that is done"
    )
    assert not (tmp_path / "BUSY" / "twistd.pid").exists()
    assert (tmp_path / "BUSY" / "settings.toml").exists()


def test_a_start_or_stop_during_a_start_is_refused_and_launches_nothing(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """While twistd is being launched, another ``server start`` (or ``stop``) of the server
    is refused, instead of launching a second twistd that writes over the first's pidfile."""
    add(capsys, tmp_path, "RACE")
    launches: list[object] = []
    inner: list[tuple[int, str]] = []

    def twistd(argv: object, **kwargs: object) -> subprocess.CompletedProcess:
        launches.append(argv)
        if len(launches) == 1:
            for command in ("start", "stop"):
                status = main(["--root", str(tmp_path), "server", command, "RACE"])
                inner.append((status, capsys.readouterr().err))
        return subprocess.CompletedProcess(argv, 1, "", "pacsref: simulated failure\n")

    monkeypatch.setattr(daemon.subprocess, "run", twistd)
    status, _, err = run(capsys, tmp_path, "server", "start", "RACE")
    assert (status, err) == (1, "pacsref: server RACE failed to start: simulated failure\n")
    assert len(launches) == 1
    busy = f"pacsref: server RACE is already starting (by pacsref pid {os.getpid()}); "
    assert inner == [(1, busy + "try again once that is done\n")] * 2


# -- 3. a running server whose settings.toml broke ---------------------------------------


def test_a_running_server_with_a_broken_file_is_stopped_paused_and_repaired_by_name(
    tmp_path: Path, capsys
) -> None:
    add(capsys, tmp_path, "B3")
    directory = tmp_path / "B3"
    try:
        assert run(capsys, tmp_path, "server", "start", "B3")[0] == 0
        pid = find_server(tmp_path, "B3").pid()
        _break(tmp_path, "B3")

        status, out, err = run(capsys, tmp_path, "server", "status", "B3")
        assert status == 0 and out.startswith(f"B3: pid {pid} "), err
        assert err.startswith("pacsref: warning: ") and "max_clients = 0" in err
        for command in ("pause", "resume"):
            status, _, err = run(capsys, tmp_path, "server", command, "B3")
            assert status == 0 and err.startswith("pacsref: warning: "), err

        status, out, err = run(
            capsys, tmp_path, "server", "edit", "B3", "--max-clients", "5", "--artim-timeout", "30"
        )
        assert status == 0, err
        settings = load_settings(directory / "settings.toml")  # repaired by the server
        assert (settings.max_clients, settings.artim_timeout) == (5, 30)

        _break(tmp_path, "B3")
        status, out, err = run(capsys, tmp_path, "server", "stop", "B3")
        assert (status, out) == (0, f"stopped B3 (pid {pid})\n"), err
        assert err.startswith("pacsref: warning: ") and not process_alive(pid)
    finally:
        kill_by_pidfile(directory)


def test_edit_repairs_a_stopped_broken_file_and_names_every_problem(tmp_path: Path, capsys) -> None:
    add(capsys, tmp_path, "B4")
    _break(tmp_path, "B4")
    status, _, err = run(capsys, tmp_path, "server", "edit", "B4", "--description", "x")
    line = one_line(err)
    assert status == 1 and "max_clients = 0" in line and "artim_timeout = -1" in line
    status, out, err = run(
        capsys, tmp_path, "server", "edit", "B4", "--max-clients", "5", "--artim-timeout", "30"
    )
    assert status == 0 and out.startswith("edited B4 (stopped): "), err
    assert load_settings(tmp_path / "B4" / "settings.toml").max_clients == 5


def test_status_and_stop_of_a_stopped_broken_server(tmp_path: Path, capsys) -> None:
    add(capsys, tmp_path, "B5")
    _break(tmp_path, "B5")
    status, out, err = run(capsys, tmp_path, "server", "status", "B5")
    assert (status, out) == (3, "B5: stopped\n")
    assert err.startswith("pacsref: warning: ") and "max_clients = 0" in err
    status, _, err = run(capsys, tmp_path, "server", "stop", "B5")
    assert status == 1 and err.splitlines()[-1] == "pacsref: server B5 is not running"


def test_a_broken_server_is_found_by_its_stand_in_pidfile(tmp_path: Path, capsys) -> None:
    """stop of a broken server needs only its pidfile, with the file's stop_timeout if valid."""
    add(capsys, tmp_path, "B6", "--stop-timeout", "0")
    _break(tmp_path, "B6")
    with stand_in_twistd(tmp_path / "B6") as stand_in:
        status, out, err = run(capsys, tmp_path, "server", "stop", "B6")
        assert (status, out) == (0, f"stopped B6 (pid {stand_in.pid})\n"), err
        assert stand_in.wait(10) == 0
    broken = daemon.load_server(tmp_path, "B6")
    assert isinstance(broken, daemon.BrokenServer)
    assert (broken.ae_title, broken.stop_timeout) == ("B6", 0.0)


# -- 4. a start that fails after twistd detached -----------------------------------------


def test_a_failure_after_detaching_is_told_from_the_server_log(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """twistd's own words are a 100-byte bytes literal; the log has the whole reason."""
    add(capsys, tmp_path, "P5")
    log = tmp_path / "P5" / "logs" / "twistd.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text(
        "2026-01-01T00:00:00+0000 [pacsref.server#critical] cannot start server P5: old\n"
    )
    reason = 'connection failed: connection to server at "127.0.0.1", port 1 failed: refused'

    def daemonized_then_failed(*args: object, **kwargs: object) -> subprocess.CompletedProcess:
        with log.open("a") as out:
            out.write(f"2026-01-02T00:00:00+0000 [pacsref.server#critical] cannot start server "
                      f"P5: {reason}\n")  # fmt: skip
        stderr = (
            "An error has occurred: b'pacsref.server.service.StartFailed: cannot start server "
            "P5: connection failed: connection to serve'\n"
            "Please look at log file for more information.\n"
        )
        return subprocess.CompletedProcess([], 1, "", stderr)

    monkeypatch.setattr(daemon.subprocess, "run", daemonized_then_failed)
    status, _, err = run(capsys, tmp_path, "server", "start", "P5")
    assert (status, err) == (1, f"pacsref: server P5 failed to start: {reason}\n")


def test_without_a_logged_reason_twistd_s_words_stay(tmp_path: Path, capsys, monkeypatch) -> None:
    add(capsys, tmp_path, "P6")
    output = "An error has occurred: b'something'\nPlease look at log file for more information."
    monkeypatch.setattr(
        daemon.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess([], 1, output, "")
    )
    status, _, err = run(capsys, tmp_path, "server", "start", "P6")
    assert status == 1 and one_line(err) == (
        "pacsref: server P6 failed to start: An error has occurred: b'something' | "
        "Please look at log file for more information."
    )


# -- 5. Ctrl-C ----------------------------------------------------------------------------


STOP_SLOW = ("server", "stop", "SLOW")


def test_ctrl_c_while_stop_waits_says_sigterm_was_sent_with_status_130(tmp_path: Path) -> None:
    """A real SIGINT to ``pacsref server stop``: one line, exit 130, the server untouched more."""
    assert main(["--root", str(tmp_path), "server", "add", "SLOW", "--addins", "none"]) == 0
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    with stand_in_twistd(tmp_path / "SLOW", exits_on_term=False) as stand_in:
        stopper = subprocess.Popen(
            [sys.executable, "-m", "pacsref.manager.cli", "--root", str(tmp_path), *STOP_SLOW],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert stand_in.stdout is not None and stand_in.stdout.readline() == "TERM\n"
            stopper.send_signal(signal.SIGINT)
            out, err = stopper.communicate(timeout=20)
        finally:
            stopper.kill()
            stopper.wait(10)
        assert stand_in.poll() is None
    assert stopper.returncode == INTERRUPTED_EXIT and out == ""
    assert err == (
        f"pacsref: interrupted; server SLOW (pid {stand_in.pid}) was sent SIGTERM and goes on "
        "with its graceful stop: pacsref server status SLOW\n"
    )


def test_ctrl_c_anywhere_else_is_one_line_too(tmp_path: Path, capsys, monkeypatch) -> None:
    def interrupted(root: Path, args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(servers, "_list", interrupted)
    status, out, err = run(capsys, tmp_path, "server", "list")
    assert (status, out, err) == (INTERRUPTED_EXIT, "", "pacsref: interrupted\n")


# -- 6. server add on a full disk --------------------------------------------------------


def _full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """copytree fails as on a full disk: a partial file, then shutil.Error for every file."""

    def copytree(source: Path, destination: Path, **kwargs: object) -> None:
        Path(destination).mkdir(parents=True, exist_ok=True)
        (Path(destination) / "writer.py").write_text("partial")
        raise shutil.Error([
            (f"{source}/f{i}.py", f"{destination}/f{i}.py",
             f"[Errno 28] No space left on device: '{source}/f{i}.py' -> '{destination}/f{i}.py'")
            for i in range(40)
        ])  # fmt: skip

    monkeypatch.setattr(shutil, "copytree", copytree)


def test_add_on_a_full_disk_is_one_short_line_and_leaves_nothing(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    root = tmp_path / "new-root"  # made by the add, and removed again
    _full_disk(monkeypatch)
    status, _, err = run(capsys, root, "server", "add", "FULL", "--addins", "storage")
    line = one_line(err)
    assert status == 1 and len(line) < 300, line
    assert line == (
        f"pacsref: cannot create server directory {root / 'FULL'}: No space left on device "
        f"({root / 'FULL' / 'addins' / 'storage'}/f0.py and 39 more file(s))"
    )
    assert not root.exists()
    monkeypatch.undo()
    assert run(capsys, root, "server", "add", "FULL", "--addins", "storage")[0] == 0


def test_a_failed_add_keeps_what_was_in_the_directory_before(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    (tmp_path / "PRE").mkdir()
    (tmp_path / "PRE" / "keep.txt").write_text("the installer's")
    _full_disk(monkeypatch)
    assert run(capsys, tmp_path, "server", "add", "PRE", "--addins", "storage")[0] == 1
    assert [p.name for p in (tmp_path / "PRE").iterdir()] == ["keep.txt"]


# -- 7. systemd unit escaping -------------------------------------------------------------


def test_unit_escapes_percent_everywhere_and_dollar_in_arguments(tmp_path: Path, capsys) -> None:
    root = tmp_path / "a b"
    add(capsys, root, "C%T$Z")
    status, out, _ = run(capsys, root, "server", "unit", "C%T$Z")
    assert status == 0
    directory = str((root / "C%T$Z").resolve())
    lines = out.splitlines()
    assert "Description=pacsref DICOM server C%%T$Z" in lines
    assert f"WorkingDirectory={directory.replace('%', '%%')}" in lines
    [start] = [line for line in lines if line.startswith("ExecStart=")]
    escaped = directory.replace("%", "%%").replace("$", "$$")
    assert start.endswith(f' pacsref --server-dir "{escaped}"'), start
    assert f'"--logfile={escaped}/logs/twistd.log"' in start
    assert start.startswith(f"ExecStart={sys.executable} ")  # the program: no $ expansion


def test_unit_words_quote_what_systemd_would_split_or_unescape() -> None:
    assert servers.systemd_word("plain/path") == "plain/path"
    assert servers.systemd_word('a"b\\c') == '"a\\"b\\\\c"'
    assert servers.systemd_word("x;y") == '"x;y"'
    assert servers.systemd_word("$HOME", exec_line=True) == "$$HOME"
    assert servers.systemd_word("$HOME") == "$HOME"
    assert servers.systemd_word("") == '""'


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_accepts_the_unit(tmp_path: Path, capsys) -> None:
    add(capsys, tmp_path, "CT%Z$Y")
    _, out, _ = run(capsys, tmp_path, "server", "unit", "CT%Z$Y")
    unit = tmp_path / "pacsref-test.service"
    unit.write_text(out)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "specifier" not in done.stderr.lower(), done.stderr


# -- 8. names with outer spaces, usage errors of subcommands, addins config ------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [(" CT", "begins or ends with a space"), ("CT ", "begins or ends with a space"),
     ("   ", "only spaces")],
)  # fmt: skip
def test_a_name_with_outer_spaces_is_refused(tmp_path: Path, capsys, name: str, why: str) -> None:
    """The AE title's outer spaces are not significant: ' CT' would answer (and name its
    admin socket) as CT while its directory is ' CT'."""
    status, _, err = run(capsys, tmp_path, "server", "add", name, "--port", "11999")
    line = one_line(err)
    assert status == 1 and "cannot be used as a server name" in line and why in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["server", "add", "X", "--bogus", "1"],
            "pacsref: server add: unrecognized arguments: --bogus 1 "
            "(see: pacsref server add --help)",
        ),
        (
            ["ae", "list", "X", "--bogus"],
            "pacsref: ae list: unrecognized arguments: --bogus (see: pacsref ae list --help)",
        ),
        (
            ["addins", "config", "X", "storage", "duplicates"],
            "pacsref: addins config: argument KEY=VALUE: 'duplicates' is not KEY=VALUE "
            "(see: pacsref addins config --help)",
        ),
    ],
)
def test_usage_errors_of_a_subcommand_name_it_with_status_2(
    tmp_path: Path, capsys, argv: list[str], expected: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--root", str(tmp_path), *argv])
    assert info.value.code == 2
    assert one_line(capsys.readouterr().err) == expected


def test_addins_config_blames_the_command_line_for_its_own_keys(tmp_path: Path, capsys) -> None:
    add(capsys, tmp_path, "OPT")
    path = tmp_path / "OPT" / "addin-options" / "storage.toml"
    status, _, err = run(capsys, tmp_path, "addins", "config", "OPT", "storage", "dupes=refuse")
    line = one_line(err)
    assert status == 1 and line.startswith("pacsref: command line: dupes: unknown option")
    assert str(path) not in line
    path.parent.mkdir(exist_ok=True)
    path.write_text("durability = 3\n")  # a bad file, and a bad value given: both told
    status, _, err = run(capsys, tmp_path, "addins", "config", "OPT", "storage", "duplicates=twice")
    line = one_line(err)
    assert status == 1 and f"{path}: durability = 3" in line
    assert "command line: duplicates = 'twice'" in line
