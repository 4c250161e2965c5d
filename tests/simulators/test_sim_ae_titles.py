"""AE titles that cannot go on the wire: refused by the parser, never a traceback or a leak."""

from __future__ import annotations

import socket

import pytest

from simulators import echo, scenarios
from simulators.__main__ import build_parser, main
from simulators.crowd import open_associations
from simulators.netutil import LOOPBACK, free_loopback_port

INVALID = {
    "too long": "A" * 17,
    "empty": "",
    "all spaces": "    ",
    "backslash": "A\\B",
    "not ASCII": "ÄRZTE",
    "control character": "A\tB",
}


@pytest.mark.parametrize("title", INVALID.values(), ids=INVALID.keys())
@pytest.mark.parametrize("option", ["--called-ae", "--calling-ae"])
@pytest.mark.parametrize("command", [["echo"], ["raw", "--scenario", "associate"]])
def test_cli_refuses_an_invalid_ae_title(
    command: list[str], option: str, title: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse exits 2 with a message naming the option and the AE title rule."""
    port = free_loopback_port()  # nothing listens: had the title got through, it fails fast
    argv = [*command, "--host", LOOPBACK, "--port", str(port), "--called-ae", "SERVER"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--timeout", "2", option, title])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: {title!r} is not a valid AE title: " in err
    assert "1-16 printable ASCII characters, without a backslash, and not all spaces" in err


@pytest.mark.parametrize("title", ["A" * 16, "X", " PADDED ", "CT-1_A.B"])
def test_cli_accepts_a_valid_ae_title(title: str) -> None:
    """16 characters, one, padded with spaces, punctuation: all fine."""
    argv = ["echo", "--host", LOOPBACK, "--port", "104", "--called-ae", title]
    assert build_parser().parse_args([*argv, "--calling-ae", title]).calling_ae == title


def test_echo_main_turns_a_value_error_into_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    """A title that bypassed the parser (set in code) is one line and exit 1, not a traceback."""
    port = str(free_loopback_port())
    args = build_parser().parse_args(
        ["echo", "--host", LOOPBACK, "--port", port, "--called-ae", "S"]
    )
    args.calling_ae = "A" * 17
    assert echo.main(args) == 1
    assert capsys.readouterr().out.startswith("ValueError: ")


def test_scenarios_main_turns_a_value_error_into_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The raw peer's PDU encoder refuses a 17-character title: exit 1, not a traceback."""
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen()
        port = str(listener.getsockname()[1])
        argv = ["raw", "--scenario", "associate", "--host", LOOPBACK, "--port", port]
        args = build_parser().parse_args([*argv, "--called-ae", "S", "--timeout", "2"])
        args.calling_ae = "A" * 17
        assert scenarios.main(args) == 1
    assert "ValueError: AE title longer than 16 bytes" in capsys.readouterr().out


def test_open_associations_closes_its_sockets_when_a_title_fails() -> None:
    """The second title cannot be encoded: the ValueError comes only after both peers have
    connected, and both connections must be closed, not left to the garbage collector."""
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen()
        host, port = listener.getsockname()
        with pytest.raises(ValueError, match="longer than 16 bytes") as raised:
            open_associations(host, port, "SERVER", ["GOOD", "B" * 17], 2, timeout=5)
        # ``raised`` keeps the traceback, so the frame and its peers: only a close ends them.
        for _ in range(2):
            accepted, _ = listener.accept()
            with accepted:
                accepted.settimeout(5)  # a peer left open makes recv raise TimeoutError
                while accepted.recv(4096):  # the first peer's A-ASSOCIATE-RQ, then EOF
                    pass
        assert raised.value is not None
