"""``python -m pacsref.shipped_addins.users hash``: the operator's hash maker."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from addins.users.__main__ import main
from addins.users.passcodes import parse_hash

MODULE = "pacsref.shipped_addins.users"


class Terminal(io.StringIO):
    """Standard input that is a terminal (getpass is faked, so nothing is read from it)."""

    def isatty(self) -> bool:
        return True


def _fake_getpass(*answers: str) -> tuple[list[str], object]:
    prompts: list[str] = []
    replies: Iterator[str] = iter(answers)

    def read_secret(prompt: str) -> str:
        prompts.append(prompt)
        return next(replies)

    return prompts, read_secret


def _run(argv: list[str], stdin: io.IOBase, *answers: str) -> tuple[int, str, str, list[str]]:
    prompts, read_secret = _fake_getpass(*answers)
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, read_secret=read_secret, stdin=stdin, stdout=out, stderr=err)  # type: ignore[arg-type]
    return code, out.getvalue(), err.getvalue(), prompts


def test_on_a_terminal_the_passcode_is_asked_twice_and_hashed() -> None:
    """Two getpass prompts; the printed line is a hash string that verifies the passcode."""
    code, out, err, prompts = _run(["hash"], Terminal(), "pässword", "pässword")
    assert code == 0 and err == ""
    assert prompts == ["Passcode: ", "Passcode again: "]
    assert parse_hash(out.strip()).verify("pässword".encode())
    assert out.count("\n") == 1


def test_two_different_entries_print_nothing_and_exit_1() -> None:
    """A typing slip is caught before it becomes an account nobody can enter."""
    code, out, err, _ = _run(["hash"], Terminal(), "secret", "secrte")
    assert (code, out) == (1, "")
    assert "differ" in err


def test_an_empty_passcode_is_refused() -> None:
    """An empty passcode is no protection: exit 1, nothing printed."""
    code, out, err, _ = _run(["hash"], Terminal(), "", "")
    assert (code, out) == (1, "") and "empty" in err


@pytest.mark.parametrize(("data", "passcode"), [(b"s3cret\n", b"s3cret"), (b"a b\r\n", b"a b")])
def test_from_a_pipe_one_line_is_read_once(data: bytes, passcode: bytes) -> None:
    """Not a terminal: one line, without its line ending, and no prompt."""
    stdin = io.TextIOWrapper(io.BytesIO(data))
    code, out, _, prompts = _run(["hash"], stdin)
    assert code == 0 and prompts == []
    assert parse_hash(out.strip()).verify(passcode)
    assert not parse_hash(out.strip()).verify(data)


@pytest.mark.parametrize("argv", [[], ["hash", "extra"], ["unhash"], ["hash", "--cost", "3"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A missing or unknown command or argument: usage on stderr, exit 2."""
    code, out, _, prompts = _run(argv, Terminal())
    assert code == 2 and out == "" and prompts == []
    assert "usage:" in capsys.readouterr().err


def test_the_real_command_line(tmp_path: Path) -> None:
    """``python -m ...``: --help documents the command and its exit codes; a piped
    passcode is hashed; no command is a usage error (exit 2).

    Run where an administrator would, outside a source checkout: there ``python -m`` would
    find the checkout's ``pacsref`` first, which has no ``shipped_addins`` (``addins/``
    becomes that package only when installed)."""
    helped = subprocess.run(
        [sys.executable, "-m", MODULE, "hash", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert helped.returncode == 0
    assert f"usage: python -m {MODULE} hash" in helped.stdout
    assert "Exit status: 0 hash printed; 1 no usable passcode" in helped.stdout
    assert "2 usage error" in helped.stdout
    hashed = subprocess.run(
        [sys.executable, "-m", MODULE, "hash"], input=b"piped\n", capture_output=True, cwd=tmp_path
    )
    assert hashed.returncode == 0, hashed.stderr
    assert parse_hash(hashed.stdout.decode().strip()).verify(b"piped")
    bare = subprocess.run(
        [sys.executable, "-m", MODULE], capture_output=True, text=True, cwd=tmp_path
    )
    assert bare.returncode == 2 and "required: COMMAND" in bare.stderr
