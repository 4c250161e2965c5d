"""The manager's answers to the review: names, paths, OS errors, broken servers, usage errors.

Each test runs ``pacsref`` in-process on a root folder of its own; none starts a daemon.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pacsref.manager.cli import main
from pacsref.manager.settings_options import FALSE_OPTION_NAMES
from pacsref.settings import load_settings

from .test_manager import add, run


def one_line(err: str) -> str:
    """The single ``pacsref: ...`` line a failure must print, without a traceback."""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pacsref: "), err
    return lines[0]


# -- 1. server names are one safe path component ------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../ESCAPE", "contains '/'"),
        ("..", "starts with '.'"),
        (".", "starts with '.'"),
        ("a/b", "contains '/'"),
        (".hidden", "starts with '.'"),
        ("", "is empty"),
        ("A\0B", "NUL"),
    ],
)
def test_add_refuses_a_name_that_is_not_one_path_component(
    tmp_path: Path, capsys, name: str, why: str
) -> None:
    """Nothing is created outside the root, or in a subdirectory list would never show."""
    root = tmp_path / "root"
    root.mkdir()
    status, _, err = run(capsys, root, "server", "add", name, "--port", "11999")
    line = one_line(err)
    assert status == 1 and "cannot be used as a server name" in line and why in line
    assert "one path component" in line
    assert sorted(tmp_path.iterdir()) == [root] and list(root.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["server", "start"],
        ["server", "edit", "--max-clients", "3"],
        ["server", "delete"],
        ["server", "status"],
        ["server", "unit"],
        ["ae", "list"],
        ["clients", "list"],
        ["addins", "list"],
    ],
)
def test_every_command_taking_a_name_refuses_an_unsafe_one(tmp_path: Path, capsys, argv) -> None:
    """A server in the root's parent is not reachable as ``..`` (or as ``../NAME``)."""
    add(capsys, tmp_path / "root", "ESCAPE")
    root = tmp_path / "root" / "inner"
    root.mkdir()
    words = [*argv[:2], "../ESCAPE", *argv[2:]]
    status, _, err = run(capsys, root, *words)
    assert status == 1 and "cannot be used as a server name" in one_line(err)


def test_server_check_refuses_an_unsafe_name(tmp_path: Path, capsys) -> None:
    status = main(["server", "check", "../X", "--root", str(tmp_path)])
    assert status == 2 and "cannot be used as a server name" in capsys.readouterr().err


# -- 2. temporary_directory is checked on the machine that runs the server -----------------


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/proc/nope", "cannot create /proc/nope"),
        ("/etc/hostname", "is not a directory"),
    ],
)
def test_add_refuses_a_temporary_directory_it_cannot_spool_into(
    tmp_path: Path, capsys, path: str, reason: str
) -> None:
    status, _, err = run(capsys, tmp_path, "server", "add", "NEWX", "--temporary-directory", path)
    line = one_line(err)
    assert status == 1 and f"cannot use temporary_directory {path!r}" in line and reason in line
    assert not (tmp_path / "NEWX").exists()


def test_a_usable_temporary_directory_is_accepted_and_nothing_is_left_behind(
    tmp_path: Path, capsys
) -> None:
    """The check creates what it needs to find out, and removes it: the server makes it."""
    add(capsys, tmp_path, "SPOOL", "--temporary-directory", str(tmp_path / "a" / "b"))
    assert not (tmp_path / "a").exists()
    status, _, err = run(
        capsys, tmp_path, "server", "edit", "SPOOL", "--temporary-directory", "/proc/nope"
    )
    assert status == 1 and "cannot create /proc/nope" in one_line(err)
    assert load_settings(tmp_path / "SPOOL" / "settings.toml").temporary_directory == str(
        tmp_path / "a" / "b"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in any directory")
def test_add_refuses_a_read_only_temporary_directory(tmp_path: Path, capsys) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    status, _, err = run(
        capsys, tmp_path, "server", "add", "RO", "--temporary-directory", str(locked)
    )
    assert status == 1 and "cannot write in" in one_line(err)


# -- 3. add-ins that fail to load: one line each, no traceback -----------------------------


def test_addins_list_of_a_stopped_server_prints_no_traceback(tmp_path: Path, capsys) -> None:
    add(capsys, tmp_path, "ADX", "--addins", "verification")
    (tmp_path / "ADX" / "addins" / "broken.py").write_text("import nonexistent_module_xyz\n")
    status, out, err = run(capsys, tmp_path, "addins", "list", "ADX")
    assert status == 0
    assert any(line.startswith("broken") and "failed" in line for line in out.splitlines())
    assert "Traceback" not in err and "Traceback" not in out
    assert err.splitlines() == [
        "pacsref: warning: add-in broken not loaded: ModuleNotFoundError: No module named "
        f"'nonexistent_module_xyz' (importing {tmp_path / 'ADX' / 'addins' / 'broken.py'})"
    ]


# -- 4. OS errors say what could not be done -----------------------------------------------


def test_add_under_a_root_that_cannot_hold_it_says_what_failed(capsys) -> None:
    status, _, err = run(capsys, Path("/proc"), "server", "add", "Q")
    line = one_line(err)
    assert status == 1
    assert line == "pacsref: cannot create server directory /proc/Q: No such file or directory"


def test_delete_failure_gives_the_reason_without_errno(tmp_path: Path, capsys, monkeypatch) -> None:
    add(capsys, tmp_path, "KEEP")

    def refuse(self: Path, target: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "rename", refuse)
    status, _, err = run(capsys, tmp_path, "server", "delete", "KEEP")
    assert status == 1 and one_line(err) == "pacsref: cannot unregister KEEP: Permission denied"


def test_an_unexpected_os_error_is_one_line_naming_the_file(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """The last net in main(): no traceback, the system's words and the file."""
    from pacsref.manager import servers

    def fail(root: Path, args: object) -> int:
        raise FileNotFoundError(2, "No such file or directory", "/nowhere/x")

    monkeypatch.setattr(servers, "_list", fail)
    status, _, err = run(capsys, tmp_path, "server", "list")
    assert status == 1 and one_line(err) == "pacsref: No such file or directory (/nowhere/x)"


# -- 5. a server whose settings are broken is shown, and start-all fails for it ----------


def _break(root: Path, name: str, text: str) -> None:
    path = root / name / "settings.toml"
    path.write_text(path.read_text() + text)


def test_list_shows_a_broken_server_with_its_reason(tmp_path: Path, capsys) -> None:
    add(capsys, tmp_path, "GOOD")
    add(capsys, tmp_path, "BAD")
    _break(tmp_path, "BAD", "port = = 3\n")
    status, out, err = run(capsys, tmp_path, "server", "list")
    assert status == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["BAD"] == ["BAD", "?", "?", "broken", "-"]
    assert rows["GOOD"][3] == "stopped"
    [warning] = err.splitlines()
    assert warning.startswith(f"pacsref: warning: {tmp_path / 'BAD' / 'settings.toml'}: invalid")


def test_start_all_fails_for_a_broken_server_whose_start_mode_is_unknown(
    tmp_path: Path, capsys
) -> None:
    """Unreadable: it may be automatic, so start-all cannot pass it over with exit 0."""
    add(capsys, tmp_path, "BAD", "--start-mode", "automatic")
    _break(tmp_path, "BAD", "port = = 3\n")
    add(capsys, tmp_path, "MANUAL_BROKEN")
    _break(tmp_path, "MANUAL_BROKEN", "max_clients = 0\n")  # a duplicate key: TOML error too
    add(capsys, tmp_path, "LATER")
    path = tmp_path / "LATER" / "settings.toml"
    path.write_text(path.read_text().replace("max_clients = 100", "max_clients = 0"))
    status, out, err = run(capsys, tmp_path, "server", "start-all")
    assert status == 1 and out == ""
    lines = err.splitlines()
    assert lines[-1] == "pacsref: 2 server(s) failed to start"
    assert any(line.startswith("pacsref: server BAD cannot be started: ") for line in lines)
    assert not any("LATER" in line for line in lines)  # still says manual: not start-all's


# -- 6. usage errors are one line, exit 2; status of a stopped server is exit 3 ----------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["clients", "disconnect", "ONE", "abc"], "argument id: expected an integer, not 'abc'"),
        (
            ["ae", "add", "ONE", "X", "--host", "h", "--port", "abc"],
            "argument --port: expected an integer, not 'abc'",
        ),
        (["server", "add", "X", "--max-clients", "many"], "expected an integer, not 'many'"),
        (["server", "frobnicate"], "invalid choice: 'frobnicate'"),
        (["ae", "add", "ONE"], "the following arguments are required"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(tmp_path: Path, capsys, argv, words: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--root", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert info.value.code == 2
    line = one_line(err)
    assert words in line and line.endswith("--help)")


# -- 7. the smaller points -----------------------------------------------------------------


def test_ae_update_without_a_change_is_refused(tmp_path: Path, capsys) -> None:
    add(capsys, tmp_path, "ONE")
    assert (
        run(capsys, tmp_path, "ae", "add", "ONE", "WS2", "--host", "127.0.0.1", "--port", "104")[0]
        == 0
    )
    status, _, err = run(capsys, tmp_path, "ae", "update", "ONE", "WS2")
    assert status == 1 and "no change given" in one_line(err) and "--new-ae-title" in err


def test_ae_add_help_describes_every_argument(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["ae", "add", "--help"])
    out = capsys.readouterr().out
    for words in (
        "the peer's AE title",
        "IP address or host name",
        "DICOM port, 1-65535",
        "free text",
        "C-MOVE may send",
        "DICOM TLS",
    ):
        assert words in out, words


def test_hints_are_shell_quoted(tmp_path: Path, capsys) -> None:
    """A hint with a name holding a space pastes into a shell as one word."""
    add(capsys, tmp_path, "WARD 3", "--start-mode", "disabled")
    status, _, err = run(capsys, tmp_path, "server", "start", "WARD 3")
    assert status == 1
    assert one_line(err).endswith(
        "allow it first: pacsref server edit 'WARD 3' --start-mode manual"
    )
    status, out, _ = run(capsys, tmp_path, "server", "delete", "WARD 3")
    assert status == 0 and f"'{tmp_path}/WARD 3/settings.toml.deleted'" in out


def test_a_port_already_used_by_another_server_is_a_warning(tmp_path: Path, capsys) -> None:
    port = add(capsys, tmp_path, "ONE")  # on 127.0.0.1
    status, out, err = run(capsys, tmp_path, "server", "add", "THREE", "--port", str(port))
    assert status == 0 and "added server THREE" in out
    assert err == (
        f"pacsref: warning: server ONE also uses port {port} on 127.0.0.1; "
        "the two cannot run at the same time\n"
    )
    status, _, err = run(
        capsys, tmp_path, "server", "add", "FOUR", "--port", str(port), "--ip-address", "127.0.0.2"
    )
    assert status == 0 and err.count("warning") == 1 and "THREE" in err and "ONE" not in err


def test_empty_addins_is_refused_and_none_means_none(tmp_path: Path, capsys) -> None:
    status, _, err = run(capsys, tmp_path, "server", "add", "E", "--addins", "")
    assert status == 1 and "--addins none" in one_line(err)
    assert not (tmp_path / "E").exists()
    add(capsys, tmp_path, "N", "--addins", "none")
    assert list((tmp_path / "N" / "addins").iterdir()) == []


def test_no_delay_pair_reads_well_and_the_old_spelling_still_works(tmp_path: Path, capsys) -> None:
    assert FALSE_OPTION_NAMES == {"no_delay": "--nagle"}
    add(capsys, tmp_path, "NAGLE", "--nagle")
    settings_file = tmp_path / "NAGLE" / "settings.toml"
    assert load_settings(settings_file).no_delay is False
    assert run(capsys, tmp_path, "server", "edit", "NAGLE", "--no-delay")[0] == 0
    assert load_settings(settings_file).no_delay is True
    assert run(capsys, tmp_path, "server", "edit", "NAGLE", "--no-no-delay")[0] == 0
    assert load_settings(settings_file).no_delay is False
    with pytest.raises(SystemExit):
        main(["server", "add", "--help"])
    assert "--nagle" in capsys.readouterr().out


# -- 8. AE titles of a stopped server: its aetitles.toml ------------------------------------


def test_ae_commands_edit_a_stopped_servers_file(tmp_path: Path, capsys) -> None:
    add(capsys, tmp_path, "STOPPED")
    status, out, err = run(
        capsys, tmp_path, "ae", "add", "STOPPED", "CT1", "--host", "127.0.0.1", "--port", "104",
        "--description", "CT one",
    )  # fmt: skip
    assert status == 0, err
    assert out == "CT1               127.0.0.1:104  move_destination  CT one\n"
    status, out, err = run(
        capsys, tmp_path, "ae", "update", "STOPPED", "CT1", "--new-ae-title", "CT2", "--secure"
    )
    assert status == 0, err
    assert run(capsys, tmp_path, "ae", "list", "STOPPED")[1] == (
        "CT2               127.0.0.1:104  move_destination,secure  CT one\n"
    )
    assert 'ae_title = "CT2"' in (tmp_path / "STOPPED" / "aetitles.toml").read_text()
    status, _, err = run(
        capsys, tmp_path, "ae", "add", "STOPPED", "CT2", "--host", "127.0.0.1", "--port", "1"
    )
    assert status == 1 and one_line(err) == "pacsref: server STOPPED: AE title 'CT2' already exists"
    status, _, err = run(
        capsys, tmp_path, "ae", "add", "STOPPED", "X" * 17, "--host", "127.0.0.1", "--port", "1"
    )
    assert status == 1 and "at most 16 are allowed" in one_line(err)
    status, _, err = run(capsys, tmp_path, "ae", "update", "STOPPED", "CT2", "--port", "70000")
    assert status == 1 and "port" in one_line(err)
    assert run(capsys, tmp_path, "ae", "remove", "STOPPED", "CT2")[:2] == (
        0,
        "removed CT2 from STOPPED\n",
    )
    status, _, err = run(capsys, tmp_path, "ae", "remove", "STOPPED", "CT2")
    assert status == 1 and one_line(err) == "pacsref: server STOPPED: AE title 'CT2' does not exist"
    assert run(capsys, tmp_path, "ae", "list", "STOPPED")[:2] == (0, "")


def test_edit_of_a_running_server_checks_the_temporary_directory_before_sending(
    tmp_path: Path, capsys
) -> None:
    """The check runs on this machine before UpdateSettings: no socket is needed to refuse."""
    add(capsys, tmp_path, "RUN")
    (tmp_path / "RUN" / "twistd.pid").write_text(str(os.getpid()))  # counts as running
    status, _, err = run(
        capsys, tmp_path, "server", "edit", "RUN", "--temporary-directory", "/proc/nope"
    )
    assert status == 1 and "cannot use temporary_directory '/proc/nope'" in one_line(err)


def test_server_check_of_a_corrupt_index_is_one_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not a traceback with status 1 (which means "disagree"): "cannot check", naming why."""
    root = tmp_path / "root"
    add(capsys, root, "BROKEN")
    index = root / "BROKEN" / "data" / "index.sqlite"
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_bytes(b"this is not an SQLite database, it is a text file" * 100)
    status, out, err = run(capsys, root, "server", "check", "BROKEN")
    assert status == 2 and out == "", (out, err)
    assert err.startswith(f"pacsref server check: storage in {root / 'BROKEN'} cannot be checked: ")
    assert "DatabaseError: file is not a database" in err and len(err.splitlines()) == 1, err


def test_server_check_without_repair_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plain check of a server that never started does not create (nor migrate) its
    index; a repair does."""
    root = tmp_path / "root"
    add(capsys, root, "FRESH")
    data = root / "FRESH" / "data"
    status, out, err = run(capsys, root, "server", "check", "FRESH")
    assert status == 0 and "storage: 0 indexed instance(s), 0 stored file(s)" in out, err
    assert not (data / "index.sqlite").exists()
    status, out, _ = run(capsys, root, "server", "check", "FRESH", "--repair")
    assert status == 0 and (data / "index.sqlite").is_file()
