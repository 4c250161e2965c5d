"""Races of the manager with itself and with the kernel: an edit takes the server's lock, a
server whose settings broke can be deleted (unless it runs), and a stop signals the process it
checked, never one that was given its pid meanwhile (pidfds).

No test sleeps: two managers are one process taking the lock twice (``flock`` conflicts
between two open file descriptions of one process too), and the kernel's side of a pid reused
at the worst moment is played by :class:`FakeProcesses`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import pacsref.settings.edit
from pacsref.manager import daemon, servers
from pacsref.manager.cli import main
from pacsref.manager.daemon import ManagerError, find_server, process_alive
from pacsref.settings import load_settings

from .test_manager import add, run, stand_in_twistd
from .test_manager_audit import INTERRUPTED_EXIT, _break, one_line

_real_process_alive = daemon.process_alive
_real_runs_server = daemon.runs_server


def lock_held(directory: Path) -> bool:
    """Whether someone holds the server's ``manager.lock`` (this process included: a new
    open file description conflicts with the one ``daemon.exclusive`` locked)."""
    fd = os.open(directory / daemon.LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases a lock this probe got
    return False


def _break_toml(root: Path, name: str) -> None:
    """Not TOML at all any more."""
    path = root / name / "settings.toml"
    path.write_text(path.read_text() + "max_clients = = 3\n")


# -- 1. server edit takes the server's lock ------------------------------------------------


@pytest.mark.parametrize("doing", ["starting", "stopping", "being deleted", "being edited"])
def test_an_edit_is_refused_while_another_manager_holds_the_lock(
    tmp_path: Path, capsys, doing: str
) -> None:
    """Like start, stop and delete, edit says what the other pacsref is doing, and changes
    nothing."""
    add(capsys, tmp_path, "BUSY")
    settings_file = tmp_path / "BUSY" / "settings.toml"
    before = settings_file.read_bytes()
    with daemon.exclusive(find_server(tmp_path, "BUSY"), doing):
        status, out, err = run(capsys, tmp_path, "server", "edit", "BUSY", "--max-clients", "5")
    assert (status, out) == (1, "")
    assert one_line(err) == (
        f"pacsref: server BUSY is already {doing} (by pacsref pid {os.getpid()}); "
        "try again once that is done"
    )
    assert settings_file.read_bytes() == before


def test_two_edits_at_once_do_not_lose_a_change(tmp_path: Path, capsys, monkeypatch) -> None:
    """A second edit landing while the first has read the file but not yet saved it is
    refused: otherwise the first saves what it read, and the second's change is gone."""
    add(capsys, tmp_path, "TWO")
    save = pacsref.settings.edit.save_settings
    second: list[tuple[int, str] | None] = []

    def save_after_another_edit(settings: object, path: object) -> None:
        if not second:  # the first save only (the second edit, when let through, saves too)
            second.append(None)
            status = main(["--root", str(tmp_path), "server", "edit", "TWO", "--max-clients", "7"])
            second[0] = (status, capsys.readouterr().err)
        save(settings, path)  # type: ignore[arg-type]

    monkeypatch.setattr(pacsref.settings.edit, "save_settings", save_after_another_edit)
    status, out, err = run(capsys, tmp_path, "server", "edit", "TWO", "--description", "first")
    assert status == 0 and out.startswith("edited TWO (stopped): description"), err
    assert second == [
        (
            1,
            f"pacsref: server TWO is already being edited (by pacsref pid {os.getpid()}); "
            "try again once that is done\n",
        )
    ]
    saved = load_settings(tmp_path / "TWO" / "settings.toml")
    assert saved.description == "first"


def test_a_stopped_server_is_judged_and_saved_under_the_lock(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """From "is it running?" to the saved file, no start can slip in: it would read the old
    file, or the edit would rewrite a file behind a server that just started."""
    add(capsys, tmp_path, "HELD")
    directory = tmp_path / "HELD"
    seen: dict[str, bool] = {}
    running, edit_file = daemon.running, servers.edit_settings_file

    def running_spy(server: daemon._Registered) -> bool:
        seen["running"] = lock_held(directory)
        return running(server)

    def edit_spy(*args: object, **kwargs: object) -> object:
        seen["save"] = lock_held(directory)
        return edit_file(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(daemon, "running", running_spy)
    monkeypatch.setattr(servers, "edit_settings_file", edit_spy)
    status, _, err = run(capsys, tmp_path, "server", "edit", "HELD", "--max-clients", "9")
    assert status == 0, err
    assert seen == {"running": True, "save": True}
    assert not lock_held(directory)  # and released afterwards


def test_a_running_server_is_sent_its_edit_under_the_lock(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """Running, the edit still goes over the admin socket (the server saves the file and
    applies the live fields) and still names the restart; now with the lock held, so no
    stop or start runs meanwhile."""
    add(capsys, tmp_path, "LIVE")
    directory = tmp_path / "LIVE"
    sent: list[tuple[str, tuple[object, ...], bool]] = []

    def call_running(server: daemon._Registered, message: str, *data: object) -> list[object]:
        sent.append((message, data, lock_held(directory)))
        return [["max_clients"], ["port"]]

    monkeypatch.setattr(daemon, "running", lambda server: True)
    monkeypatch.setattr(daemon, "call_running", call_running)
    before = (directory / "settings.toml").read_bytes()
    status, out, err = run(
        capsys, tmp_path, "server", "edit", "LIVE", "--max-clients", "5", "--port", "11999"
    )
    assert status == 0, err
    assert sent == [("UpdateSettings", ({"max_clients": 5, "port": 11999},), True)]
    assert out.splitlines() == [
        "edited LIVE: applied live: max_clients",
        "LIVE: saved, applies at next restart: port "
        "(pacsref server stop LIVE && pacsref server start LIVE)",
    ]
    assert (directory / "settings.toml").read_bytes() == before  # the server saves it


def test_an_edit_replaces_the_file_whole(tmp_path: Path, capsys) -> None:
    """Atomic replacement (a temporary file renamed over it): a reader holding the old file
    reads it whole, a new reader the new one, and no temporary file is left behind."""
    add(capsys, tmp_path, "ATOM")
    settings_file = tmp_path / "ATOM" / "settings.toml"
    with settings_file.open("rb") as reader:
        old_inode = os.fstat(reader.fileno()).st_ino
        status, _, err = run(capsys, tmp_path, "server", "edit", "ATOM", "--max-clients", "3")
        assert status == 0, err
        assert b"max_clients = 3\n" not in reader.read()
    assert settings_file.stat().st_ino != old_inode
    assert b"max_clients = 3\n" in settings_file.read_bytes()
    assert list(settings_file.parent.glob(".settings.toml*")) == []


def test_a_start_judges_the_settings_saved_before_it_took_the_lock(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """An edit to Start Mode disabled that lands after a start read the settings but before
    it took the lock is honoured: twistd would start from the file as it is then."""
    add(capsys, tmp_path, "LATE")
    server = find_server(tmp_path, "LATE")  # what a start read first
    edit = ("server", "edit", "LATE", "--start-mode", "disabled")
    assert run(capsys, tmp_path, *edit)[0] == 0
    launched: list[object] = []

    def twistd(argv: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        launched.append(argv)
        return subprocess.CompletedProcess(argv, 1, "", "pacsref: launched\n")

    monkeypatch.setattr(daemon.subprocess, "run", twistd)
    with pytest.raises(ManagerError, match='has Start Mode "disabled" and refuses to start'):
        daemon.start(server)
    assert launched == []


# -- 2. deleting a server whose settings.toml is broken ----------------------------------


@pytest.mark.parametrize("how", [_break_toml, _break], ids=["not TOML", "bad values"])
def test_a_stopped_server_with_a_broken_file_is_deleted(
    tmp_path: Path, capsys, how: Callable[[Path, str], None]
) -> None:
    """Its problem is a warning; the file is kept, broken as it was, under its deleted name."""
    add(capsys, tmp_path, "BAD")
    directory = tmp_path / "BAD"
    (directory / "data" / "kept.txt").write_text("x")
    how(tmp_path, "BAD")
    broken = (directory / "settings.toml").read_bytes()
    status, out, err = run(capsys, tmp_path, "server", "delete", "BAD")
    assert status == 0, err
    [warning] = err.splitlines()
    assert warning.startswith(f"pacsref: warning: {directory / 'settings.toml'}")
    assert out.startswith(f"deleted server BAD; its directory {directory} remains")
    assert (directory / "settings.toml.deleted").read_bytes() == broken
    assert not (directory / "settings.toml").exists()
    assert (directory / "data" / "kept.txt").is_file()
    assert "BAD" not in run(capsys, tmp_path, "server", "list")[1]


def test_a_running_server_with_a_broken_file_is_not_deleted(tmp_path: Path, capsys) -> None:
    """It may run from the settings it read before the file broke: its pidfile's live
    twistd says so, and delete refuses, naming the stop that works for it."""
    add(capsys, tmp_path, "RUNS")
    directory = tmp_path / "RUNS"
    _break(tmp_path, "RUNS")
    with stand_in_twistd(directory) as stand_in:
        status, out, err = run(capsys, tmp_path, "server", "delete", "RUNS")
        warning, failure = err.splitlines()
        assert (status, out) == (1, "")
        assert warning.startswith("pacsref: warning: ") and "max_clients = 0" in warning
        assert failure == (
            f"pacsref: server RUNS is running (pid {stand_in.pid}; it runs with the settings it "
            "read before its settings.toml broke); stop it first: pacsref server stop RUNS"
        )
        assert stand_in.poll() is None  # not signalled
    assert (directory / "settings.toml").exists()
    assert not (directory / "settings.toml.deleted").exists()


def test_a_broken_server_run_by_systemd_is_not_deleted(tmp_path: Path, capsys, monkeypatch) -> None:
    """No pidfile, but its admin socket answers (the AE title is the name when the file's
    is unreadable): refused, naming systemctl."""
    add(capsys, tmp_path, "UNIT")
    _break_toml(tmp_path, "UNIT")
    asked: list[Path] = []
    monkeypatch.setattr(daemon, "socket_answers", lambda path: asked.append(path) or True)
    status, _, err = run(capsys, tmp_path, "server", "delete", "UNIT")
    assert status == 1 and err.splitlines()[-1].endswith(
        "stop it first: systemctl stop pacsref-UNIT"
    )
    assert asked and asked[0].name == "UNIT.sock"
    assert (tmp_path / "UNIT" / "settings.toml").exists()


def test_a_broken_server_is_deleted_past_a_stale_pidfile(tmp_path: Path, capsys) -> None:
    """A pidfile whose live pid is another process is stale, as for any server."""
    add(capsys, tmp_path, "STALE")
    directory = tmp_path / "STALE"
    _break_toml(tmp_path, "STALE")
    (directory / "twistd.pid").write_text(f"{os.getpid()}\n")  # this pytest: not a twistd
    status, out, err = run(capsys, tmp_path, "server", "delete", "STALE")
    assert status == 0, err
    assert "removed the stale pidfile" in err and out.startswith("deleted server STALE")


def test_deleting_a_broken_server_renames_its_link_never_what_it_points_to(
    tmp_path: Path, capsys
) -> None:
    """A settings.toml that is a symbolic link out of the root: the link is what is renamed;
    the file it points to stays where and as it is."""
    root = tmp_path / "root"
    add(capsys, root, "LINK")
    outside = tmp_path / "elsewhere.toml"
    outside.write_text("not = = toml\n")
    link = root / "LINK" / "settings.toml"
    link.unlink()
    link.symlink_to(outside)
    status, _, err = run(capsys, root, "server", "delete", "LINK")
    assert status == 0, err
    assert (root / "LINK" / "settings.toml.deleted").readlink() == outside
    assert outside.read_text() == "not = = toml\n"
    assert {p.name for p in tmp_path.iterdir()} == {"root", "elsewhere.toml"}


@pytest.mark.parametrize("name", ["../LINK", ".hidden", "a/b"])
def test_delete_still_refuses_names_outside_the_root(tmp_path: Path, capsys, name: str) -> None:
    """The name check comes before the settings are read: a broken ``settings.toml`` next to
    the root (or hidden, or in a subfolder) is never reached."""
    (tmp_path / "root").mkdir()
    (tmp_path / "LINK").mkdir()
    (tmp_path / "LINK" / "settings.toml").write_text("broken = = \n")
    status, _, err = run(capsys, tmp_path / "root", "server", "delete", name)
    assert status == 1 and "cannot be used as a server name" in one_line(err)
    assert (tmp_path / "LINK" / "settings.toml").exists()


def test_a_directory_without_a_settings_file_is_not_a_server_to_delete(
    tmp_path: Path, capsys
) -> None:
    """Only a directory whose ``settings.toml`` is a file is a server, broken or not."""
    (tmp_path / "NOTONE" / "settings.toml").mkdir(parents=True)  # a directory, not a file
    status, _, err = run(capsys, tmp_path, "server", "delete", "NOTONE")
    assert status == 1 and one_line(err).startswith("pacsref: unknown server 'NOTONE'")
    assert (tmp_path / "NOTONE" / "settings.toml").is_dir()


# -- 3. stop signals the process it checked, through a pidfd -----------------------------


#: A pid above any pid_max (2**22 at most): no real process has it.
FAKE_PID = 2**22 + 4242


class FakeProcesses:
    """The kernel, as far as the manager sees it, for the one pid :data:`FAKE_PID`.

    Whoever holds that pid is a generation: 0 is the server's twistd, later ones are other
    processes that were given the pid after it exited. A pidfd pins the generation that held
    the pid when it was opened, and is the read end of a pipe that becomes readable when that
    generation exits, as a real pidfd does. SIGTERM ends a generation unless told otherwise.
    Every other pid goes to the real system calls.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, exits_on_term: bool = True) -> None:
        self.generation = 0
        self.alive = {0}
        self.exits_on_term = exits_on_term
        #: (generation, signal, "pidfd" or "kill") for each signal delivered to FAKE_PID.
        self.signals: list[tuple[int, int, str]] = []
        self.opened: list[int] = []  # the generation each pidfd_open pinned
        self._pins: dict[int, int] = {}  # pidfd -> generation
        self._writers: dict[int, list[int]] = {}  # generation -> write ends
        #: Called after each look at /proc that finds the server, with this object.
        self.after_look: Callable[[FakeProcesses], None] = lambda fake: None
        real_open, real_kill = os.pidfd_open, os.kill
        real_send = signal.pidfd_send_signal

        def pidfd_open(pid: int, flags: int = 0) -> int:
            return self._open() if pid == FAKE_PID else real_open(pid, flags)

        def pidfd_send_signal(fd: int, sig: int, *args: object) -> None:
            if fd not in self._pins:
                real_send(fd, sig, *args)  # type: ignore[arg-type]
            else:
                self._deliver(self._pins[fd], sig, "pidfd")

        def kill(pid: int, sig: int) -> None:
            if pid != FAKE_PID:
                real_kill(pid, sig)
            elif self.generation not in self.alive:
                raise ProcessLookupError(errno.ESRCH, "No such process")
            elif sig:
                self._deliver(self.generation, sig, "kill")

        monkeypatch.setattr(os, "pidfd_open", pidfd_open)
        monkeypatch.setattr(signal, "pidfd_send_signal", pidfd_send_signal)
        monkeypatch.setattr(os, "kill", kill)
        monkeypatch.setattr(daemon, "process_alive", self._process_alive)
        monkeypatch.setattr(daemon, "runs_server", self._runs_server)

    def _open(self) -> int:
        if self.generation not in self.alive:
            raise ProcessLookupError(errno.ESRCH, "No such process")
        reader, writer = os.pipe()
        self._pins[reader] = self.generation
        self._writers.setdefault(self.generation, []).append(writer)
        self.opened.append(self.generation)
        return reader

    def _deliver(self, generation: int, sig: int, route: str) -> None:
        if generation not in self.alive:
            raise ProcessLookupError(errno.ESRCH, "No such process")
        self.signals.append((generation, sig, route))
        if sig == signal.SIGTERM and (self.exits_on_term or generation != 0):
            self.exit(generation)

    def _process_alive(self, pid: int) -> bool:
        return self.generation in self.alive if pid == FAKE_PID else _real_process_alive(pid)

    def _runs_server(self, pid: int, directory: Path) -> bool | None:
        if pid != FAKE_PID:
            return _real_runs_server(pid, directory)
        found = self.generation == 0 and 0 in self.alive
        if found:
            self.after_look(self)
        return found

    def exit(self, generation: int) -> None:
        self.alive.discard(generation)
        for writer in self._writers.pop(generation, []):
            os.write(writer, b"x")
            os.close(writer)

    def reuse(self) -> None:
        """The server exits and its pid goes to another process at once."""
        self.exit(self.generation)
        self.generation += 1
        self.alive.add(self.generation)

    def close(self) -> None:
        for writers in self._writers.values():
            for writer in writers:
                os.close(writer)
        self._writers.clear()


@pytest.fixture
def fake_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProcesses]:
    """A :class:`FakeProcesses`, its pipes closed on the way out."""
    fake = FakeProcesses(monkeypatch)
    try:
        yield fake
    finally:
        fake.close()


def _fake_server(root: Path, capsys: pytest.CaptureFixture[str], name: str) -> Path:
    add(capsys, root, name, "--stop-timeout", "0")
    (root / name / "twistd.pid").write_text(f"{FAKE_PID}\n")
    return root / name


def test_stop_never_signals_a_process_given_the_server_s_pid_after_the_check(
    tmp_path: Path, capsys, monkeypatch, fake_processes: FakeProcesses
) -> None:
    """The server exits, and its pid goes to another process, right after the look at /proc
    that found it: the SIGTERM goes through the pidfd opened before that look, fails with
    ESRCH, and the other process is left alone."""
    _fake_server(tmp_path, capsys, "RACE")
    # The stale-pidfile check looks too; this test is about the last look before the signal.
    monkeypatch.setattr(daemon, "discard_stale_pidfile", lambda server: None)
    fake_processes.after_look = FakeProcesses.reuse
    status, out, err = run(capsys, tmp_path, "server", "stop", "RACE")
    assert fake_processes.signals == []  # in particular, generation 1 got no SIGTERM
    assert fake_processes.opened == [0]  # pinned before the look, so the server's
    assert (status, out, err) == (0, f"stopped RACE (pid {FAKE_PID})\n", "")


def test_stop_signals_and_waits_through_the_pidfd(
    tmp_path: Path, capsys, monkeypatch, fake_processes: FakeProcesses
) -> None:
    """SIGTERM through the pidfd, then one poll of it until the process exits: no polling of
    the pid, no sleep."""

    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s instead of polling the pidfd")

    monkeypatch.setattr(time, "sleep", no_sleep)
    _fake_server(tmp_path, capsys, "FD")
    status, out, err = run(capsys, tmp_path, "server", "stop", "FD")
    assert (status, out, err) == (0, f"stopped FD (pid {FAKE_PID})\n", "")
    assert fake_processes.signals == [(0, signal.SIGTERM, "pidfd")]
    assert fake_processes.opened == [0]


def test_a_pidfd_stop_that_times_out_says_so(
    tmp_path: Path, capsys, fake_processes: FakeProcesses
) -> None:
    """A poll of the pidfd that ends before the process does is the timeout, as before."""
    fake_processes.exits_on_term = False
    server = find_server(tmp_path, _fake_server(tmp_path, capsys, "STUCK").name)
    with pytest.raises(
        ManagerError, match=rf"server STUCK \(pid {FAKE_PID}\) did not exit within 0 s"
    ):
        daemon.stop(server, timeout=0.0)
    assert fake_processes.signals == [(0, signal.SIGTERM, "pidfd")]


def test_ctrl_c_while_waiting_on_the_pidfd_is_status_130(
    tmp_path: Path, capsys, monkeypatch, fake_processes: FakeProcesses
) -> None:
    """The wait on the pidfd is interrupted as the pid's was: one line, exit 130, saying
    the SIGTERM was sent."""
    fake_processes.exits_on_term = False

    class CtrlC:
        def register(self, *args: object) -> None:
            pass

        def poll(self, *args: object) -> list[object]:
            raise KeyboardInterrupt

    def ctrl_c(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(daemon.select, "poll", CtrlC)
    monkeypatch.setattr(time, "sleep", ctrl_c)  # the same, should the pid be polled instead
    _fake_server(tmp_path, capsys, "INT")
    status, out, err = run(capsys, tmp_path, "server", "stop", "INT")
    assert (status, out) == (INTERRUPTED_EXIT, "")
    assert err == (
        f"pacsref: interrupted; server INT (pid {FAKE_PID}) was sent SIGTERM and goes on "
        "with its graceful stop: pacsref server status INT\n"
    )
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # unblocked again


def test_a_real_daemon_is_stopped_through_a_pidfd(tmp_path: Path, capsys, monkeypatch) -> None:
    """With a real process: the pidfd is opened for the pidfile's pid, the SIGTERM sent
    through it, and the pidfd closed again."""
    opened: list[int] = []
    through: list[int] = []
    closed: list[int] = []
    real_open, real_send, real_close = os.pidfd_open, signal.pidfd_send_signal, os.close

    def pidfd_open(pid: int, flags: int = 0) -> int:
        fd = real_open(pid, flags)
        opened.append(fd)
        return fd

    def pidfd_send_signal(fd: int, sig: int, *args: object) -> None:
        through.append(fd)
        real_send(fd, sig, *args)  # type: ignore[arg-type]

    def close(fd: int) -> None:
        if fd in opened:
            closed.append(fd)
        real_close(fd)

    add(capsys, tmp_path, "REAL", "--stop-timeout", "0")
    with stand_in_twistd(tmp_path / "REAL") as stand_in:
        monkeypatch.setattr(os, "pidfd_open", pidfd_open)
        monkeypatch.setattr(signal, "pidfd_send_signal", pidfd_send_signal)
        monkeypatch.setattr(os, "close", close)
        status, out, err = run(capsys, tmp_path, "server", "stop", "REAL")
        monkeypatch.undo()
        assert (status, out) == (0, f"stopped REAL (pid {stand_in.pid})\n"), err
        assert stand_in.wait(10) == 0 and not process_alive(stand_in.pid)
    assert len(opened) == 1 and through == opened and closed == opened


@pytest.mark.parametrize("missing", ["ENOSYS", "no pidfd_open"])
def test_without_pidfds_stop_signals_the_pid_as_before(
    tmp_path: Path, capsys, monkeypatch, missing: str
) -> None:
    """An old kernel (ENOSYS) or a system without pidfd_open: SIGTERM by pid, the pid
    watched until it is gone."""
    add(capsys, tmp_path, "OLD", "--stop-timeout", "0")
    with stand_in_twistd(tmp_path / "OLD") as stand_in:
        if missing == "ENOSYS":

            def pidfd_open(pid: int, flags: int = 0) -> int:
                raise OSError(errno.ENOSYS, "Function not implemented")

            monkeypatch.setattr(os, "pidfd_open", pidfd_open)
        else:
            monkeypatch.delattr(os, "pidfd_open")
        status, out, err = run(capsys, tmp_path, "server", "stop", "OLD")
        monkeypatch.undo()
        assert (status, out, err) == (0, f"stopped OLD (pid {stand_in.pid})\n", "")
        assert stand_in.wait(10) == 0


@pytest.mark.parametrize("junk", ["0", "-1"])
def test_a_pidfile_of_zero_or_a_negative_number_is_junk(
    tmp_path: Path, capsys, monkeypatch, junk: str
) -> None:
    """kill(0) and kill(-1) reach a process group or every process: where /proc cannot say
    what such a "pid" runs, a stop would otherwise SIGTERM all of them."""
    add(capsys, tmp_path, "JUNK")
    (tmp_path / "JUNK" / "twistd.pid").write_text(f"{junk}\n")
    monkeypatch.setattr(daemon, "command_line", lambda pid: None)  # no /proc
    killed: list[tuple[int, int]] = []
    real_kill = os.kill

    def kill(pid: int, sig: int) -> None:
        if pid <= 0:
            killed.append((pid, sig))  # recorded, never done
        else:
            real_kill(pid, sig)

    monkeypatch.setattr(os, "kill", kill)
    status, _, err = run(capsys, tmp_path, "server", "stop", "JUNK")
    assert (status, err) == (1, "pacsref: server JUNK is not running\n")
    assert killed == []


def test_a_pidfile_past_what_kill_takes_is_junk(tmp_path: Path, capsys) -> None:
    """A number too large for kill(2) used to raise OverflowError in every command (list,
    start, stop, delete); it is junk like any other."""
    add(capsys, tmp_path, "HUGE")
    (tmp_path / "HUGE" / "twistd.pid").write_text("99999999999\n")
    status, out, _ = run(capsys, tmp_path, "server", "list")
    assert status == 0 and "HUGE" in out
    status, _, err = run(capsys, tmp_path, "server", "stop", "HUGE")
    assert (status, err) == (1, "pacsref: server HUGE is not running\n")


def test_a_pidfile_naming_one_of_its_threads_stops_the_process(tmp_path: Path, capsys) -> None:
    """A thread id in the pidfile (pidfd_open refuses those) is taken for its process, as
    kill() took it before pidfds: the stop works instead of failing with ENOENT."""
    add(capsys, tmp_path, "THREAD", "--stop-timeout", "0")
    with stand_in_twistd(tmp_path / "THREAD") as stand_in:
        tids = [t for t in os.listdir(f"/proc/{stand_in.pid}/task") if t != str(stand_in.pid)]
        (tmp_path / "THREAD" / "twistd.pid").write_text(f"{tids[0]}\n")
        status, out, err = run(capsys, tmp_path, "server", "stop", "THREAD")
        assert (status, out, err) == (0, f"stopped THREAD (pid {stand_in.pid})\n", "")
        assert stand_in.wait(10) == 0


@pytest.mark.parametrize("code", [errno.EPERM, errno.ENOSYS, errno.EIO])
def test_a_pidfd_the_system_will_not_signal_through(
    tmp_path: Path, capsys, monkeypatch, code: int
) -> None:
    """pidfd_open works but pidfd_send_signal is refused: a sandbox's refusal (EPERM,
    ENOSYS) falls back to kill() by pid; anything else is one line, and either way Ctrl-C is
    not left blocked."""
    add(capsys, tmp_path, "BOXED", "--stop-timeout", "0")
    with stand_in_twistd(tmp_path / "BOXED") as stand_in:

        def refused(pidfd: int, sig: int, *rest: object) -> None:
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(signal, "pidfd_send_signal", refused)
        status, out, err = run(capsys, tmp_path, "server", "stop", "BOXED")
        monkeypatch.undo()
        assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
        if code == errno.EIO:
            assert (status, out) == (1, "")
            assert err.startswith(f"pacsref: server BOXED (pid {stand_in.pid}): cannot stop it")
            return
        assert (status, out, err) == (0, f"stopped BOXED (pid {stand_in.pid})\n", "")
        assert stand_in.wait(10) == 0


def test_pin_live_pid_closes_its_pidfd_when_interrupted(tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C while /proc is read, after the pidfd was opened: the pidfd is closed."""
    pidfile = tmp_path / "twistd.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    closed: list[int] = []
    real_close = os.close

    def interrupted(pid: int, directory: Path) -> bool:
        raise KeyboardInterrupt

    def close(fd: int) -> None:
        closed.append(fd)
        real_close(fd)

    monkeypatch.setattr(daemon, "runs_server", interrupted)
    monkeypatch.setattr(daemon, "open_pidfd", lambda pid: os.dup(0))
    monkeypatch.setattr(os, "close", close)
    with pytest.raises(KeyboardInterrupt):
        daemon.pin_live_pid(pidfile)
    assert len(closed) == 1


def test_a_server_run_by_systemd_under_its_old_ae_title_is_not_deleted(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """No pidfile, and settings.toml since edited to another AE title: the socket of the
    title it started with still answers, so the delete is refused all the same."""
    add(capsys, tmp_path, "OLDNAME")
    directory = tmp_path / "OLDNAME"
    (directory / "admin").mkdir(exist_ok=True)
    started_as = directory / "admin" / "OLDNAME.sock"
    started_as.touch()
    settings = directory / "settings.toml"
    settings.write_text(settings.read_text().replace('"OLDNAME"', '"RENAMED"'))
    monkeypatch.setattr(daemon, "socket_answers", lambda path: path == started_as)
    status, _, err = run(capsys, tmp_path, "server", "delete", "OLDNAME")
    assert status == 1, err
    assert f"its admin socket {started_as} answers" in err
    assert err.splitlines()[-1].endswith("stop it first: systemctl stop pacsref-OLDNAME")
    assert settings.exists()
