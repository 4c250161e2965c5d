"""``pacsref addins list|config``: against a stopped server directory and a running daemon."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.manager.test_manager import add, kill_by_pidfile, run


def test_stopped_server_lists_addins_with_options(tmp_path: Path, capsys) -> None:
    """A stopped server's add-ins are loaded from its folder; storage shows its options."""
    add(capsys, tmp_path, "QUIET")
    status, out, err = run(capsys, tmp_path, "addins", "list", "QUIET")
    assert status == 0, err
    lines = out.splitlines()
    assert any(line.split()[:2] == ["storage", "loaded"] for line in lines)
    assert '    duplicates = "keep-first"  (default "keep-first"; live)' in out
    assert '    durability = "fsync"  (default "fsync"; at next start)' in out


def test_stopped_server_config_writes_the_file(tmp_path: Path, capsys) -> None:
    """KEY=VALUE is validated and written to addin-options/<name>.toml; bare strings work."""
    add(capsys, tmp_path, "CONF")
    status, out, err = run(
        capsys, tmp_path, "addins", "config", "CONF", "storage", "duplicates=refuse",
        "accept_unknown_storage_classes=true",
    )  # fmt: skip
    assert status == 0, err
    assert 'duplicates = "refuse"' in out and "applies when it starts" in out
    text = (tmp_path / "CONF" / "addin-options" / "storage.toml").read_text()
    assert 'duplicates = "refuse"\n' in text and "accept_unknown_storage_classes = true\n" in text
    status, out, _ = run(capsys, tmp_path, "addins", "config", "CONF", "storage")
    assert status == 0 and 'duplicates = "refuse"  (default "keep-first"; live)' in out


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["storage", "duplicates=twice"], "duplicates = 'twice': must be one of"),
        (["storage", "dupes=refuse"], "dupes: unknown option (did you mean duplicates?)"),
        (["verification"], "add-in 'verification' declares no options"),
        (["nope"], "has no add-in 'nope'"),
    ],
)
def test_stopped_server_config_errors(tmp_path: Path, capsys, argv: list[str], error: str) -> None:
    """Every refusal is one line ``pacsref: <reason>`` and exit status 1; nothing is written."""
    add(capsys, tmp_path, "BAD")
    status, _, err = run(capsys, tmp_path, "addins", "config", "BAD", *argv)
    assert status == 1 and err.startswith("pacsref: ") and error in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "BAD" / "addin-options" / "storage.toml").exists()


def test_bad_options_file_shows_as_a_failed_addin_and_can_be_repaired(
    tmp_path: Path, capsys
) -> None:
    """A hand-broken file fails the add-in in the listing; config KEY=VALUE repairs it."""
    add(capsys, tmp_path, "FIX")
    path = tmp_path / "FIX" / "addin-options" / "storage.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text('duplicates = "twice"\n')
    _, out, _ = run(capsys, tmp_path, "addins", "list", "FIX")
    row = next(line for line in out.splitlines() if line.startswith("storage"))
    assert row.split()[:2] == ["storage", "failed"] and "duplicates = 'twice'" in row
    status, _, err = run(
        capsys, tmp_path, "addins", "config", "FIX", "storage", "duplicates=refuse"
    )
    assert status == 0, err
    _, out, _ = run(capsys, tmp_path, "addins", "list", "FIX")
    assert '    duplicates = "refuse"' in out


def test_running_server_config_goes_over_the_socket(tmp_path: Path, capsys) -> None:
    """Running: list and config use the admin socket; restart-only keys are reported."""
    add(capsys, tmp_path, "LIVEOPT")
    try:
        status, _, err = run(capsys, tmp_path, "server", "start", "LIVEOPT")
        assert status == 0, err
        status, out, err = run(capsys, tmp_path, "addins", "list", "LIVEOPT")
        assert status == 0, err
        assert '    duplicates = "keep-first"  (default "keep-first"; live)' in out
        status, out, err = run(
            capsys, tmp_path, "addins", "config", "LIVEOPT", "storage",
            "duplicates=overwrite", "durability=relaxed",
        )  # fmt: skip
        assert status == 0, err
        assert 'duplicates = "overwrite"' in out
        assert "saved; applies at the next start: durability" in out
        text = (tmp_path / "LIVEOPT" / "addin-options" / "storage.toml").read_text()
        assert 'duplicates = "overwrite"\n' in text and 'durability = "relaxed"\n' in text
        status, out, _ = run(capsys, tmp_path, "addins", "config", "LIVEOPT", "storage")
        assert 'durability = "relaxed"  (default "fsync"; at next start)' in out
        status, _, err = run(capsys, tmp_path, "addins", "config", "LIVEOPT", "storage", "x=1")
        # Refused before it is sent, naming the command line: the server would blame its file.
        assert status == 1 and err.startswith("pacsref: command line: x: unknown option"), err
        assert "storage.toml" not in err and len(err.splitlines()) == 1
        assert run(capsys, tmp_path, "server", "stop", "LIVEOPT")[0] == 0
    finally:
        kill_by_pidfile(tmp_path / "LIVEOPT")


def test_running_server_with_a_hand_broken_options_file_can_be_repaired(
    tmp_path: Path, capsys
) -> None:
    """A file broken by hand while the server runs does not stop the listing, and a change
    over the admin socket repairs it (the server refuses to show the file's values, so the
    declarations the change needs come from the add-in's code); a file that is not TOML at
    all is refused, naming the file, and left as it is."""
    add(capsys, tmp_path, "HANDFIX")
    path = tmp_path / "HANDFIX" / "addin-options" / "storage.toml"
    try:
        assert run(capsys, tmp_path, "server", "start", "HANDFIX")[0] == 0
        path.parent.mkdir(exist_ok=True)
        path.write_text('duplicates = "twice"\nminimum_free_space_mib = 0\n')
        status, out, err = run(capsys, tmp_path, "addins", "list", "HANDFIX")
        assert status == 0, err
        line = next(x for x in out.splitlines() if x.startswith("    options file: "))
        assert "storage.toml: duplicates = 'twice'" in line, out
        assert any(x.split()[:2] == ["verification", "loaded"] for x in out.splitlines())
        status, out, err = run(capsys, tmp_path, "addins", "config", "HANDFIX", "storage")
        assert status == 1 and "duplicates = 'twice'" in err, (out, err)
        status, out, err = run(
            capsys, tmp_path, "addins", "config", "HANDFIX", "storage", "duplicates=refuse"
        )
        assert status == 0, err
        assert 'duplicates = "refuse"' in out
        assert 'duplicates = "refuse"\n' in path.read_text()
        assert "minimum_free_space_mib = 0\n" in path.read_text()  # the file's other values stay
        status, out, err = run(capsys, tmp_path, "addins", "config", "HANDFIX", "storage")
        assert status == 0 and 'duplicates = "refuse"  (default "keep-first"; live)' in out, err
        # An unknown key is still refused before anything is sent, naming the command line.
        path.write_text('duplicates = "twice"\n')
        status, _, err = run(capsys, tmp_path, "addins", "config", "HANDFIX", "storage", "dup=1")
        assert status == 1 and err.startswith("pacsref: command line: dup: unknown option"), err
        path.write_text("duplicates = \n")
        status, _, err = run(
            capsys, tmp_path, "addins", "config", "HANDFIX", "storage", "duplicates=refuse"
        )
        assert status == 1 and "storage.toml: cannot be read as TOML" in err, err
        assert path.read_text() == "duplicates = \n"
        assert run(capsys, tmp_path, "server", "stop", "HANDFIX")[0] == 0
    finally:
        kill_by_pidfile(tmp_path / "HANDFIX")
