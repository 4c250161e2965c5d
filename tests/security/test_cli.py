"""``pacsref echo --tls``: what it needs, said in one line before any connection is tried."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacsref.manager.cli import main
from pacsref.testing.tls import TestPKI

ECHO = ["echo", "--host", "127.0.0.1", "--port", "9", "--called-ae", "X"]


def test_tls_needs_certificate_key_and_ca(capsys: pytest.CaptureFixture[str]) -> None:
    """--tls without --cert, --key and --ca exits 2 naming what is missing."""
    assert main([*ECHO, "--tls"]) == 2
    assert "--tls needs --cert, --key, --ca" in capsys.readouterr().err


def test_tls_with_unusable_files_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key that does not match the certificate is reported before connecting."""
    pki = TestPKI(tmp_path)
    other = pki.issue("other", common_name="OTHER")
    argv = [*ECHO, "--tls", "--cert", str(pki.server.certificate)]
    argv += ["--key", str(other.private_key), "--ca", str(pki.ca_file)]
    assert main(argv) == 2
    assert "does not match the first certificate" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--port", "70000"], "--port 70000: not a TCP port (1-65535)"),
        (["--timeout", "-1"], "--timeout -1: must be a positive number of seconds"),
        (["--calling-ae", "TOOLONGAETITLE_XXXX"], "--calling-ae: "),
        (["--called-ae", "A\\B"], "--called-ae/--host: "),
        (
            ["--tls", "--cert", "c", "--key", "k", "--ca", "a", "--passphrase-file", "/nope"],
            "--passphrase-file /nope: No such file or directory",
        ),
        (["--cert", "c", "--ca", "a"], "--cert, --ca need --tls"),
    ],
)
def test_bad_echo_arguments_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], extra: list[str], words: str
) -> None:
    """No traceback: the option and what is wrong with it, before anything is sent."""
    assert main([*ECHO, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pacsref echo: ") and words in err and err.count("\n") == 1, err
