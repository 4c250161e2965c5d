"""The echo simulator against pynetdicom's AE acting as an in-process Verification SCP."""

from __future__ import annotations

import pytest

from simulators.__main__ import main
from simulators.echo import EXIT_REJECTED, run_echoes
from simulators.netutil import LOOPBACK, free_loopback_port
from simulators.testservers import Listener


def test_run_echoes_all_succeed_on_one_association(echo_scp: Listener) -> None:
    """N C-ECHOs on one association all return Success and are counted with a rate."""
    result = run_echoes(echo_scp.host, echo_scp.port, echo_scp.ae_title, count=5, timeout=5)
    assert result.ok
    assert (result.count, result.succeeded, result.failures) == (5, 5, [])
    assert result.rejection is None
    assert result.rate > 0
    assert result.summary().startswith("5 echoes, 5 succeeded, rate ")


def test_cli_prints_summary_and_exits_zero(
    echo_scp: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m simulators echo`` prints only the summary line when nothing fails."""
    argv = ["echo", "--host", echo_scp.host, "--port", str(echo_scp.port)]
    argv += ["--called-ae", "ECHOSCP", "--count", "3", "--max-pdu", "4096", "--timeout", "5"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("3 echoes, 3 succeeded, rate ")


def test_rejection_is_reported_in_ps38_words_with_exit_3(
    strict_echo_scp: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong called AE title yields the RJ triple (1, 1, 7) in words and exit status 3
    (2 is argparse's usage error)."""
    result = run_echoes(strict_echo_scp.host, strict_echo_scp.port, "WRONGAE", timeout=5)
    assert result.rejection is not None
    assert result.rejection.triple == (1, 1, 7)
    assert not result.ok

    argv = ["echo", "--host", LOOPBACK, "--port", str(strict_echo_scp.port)]
    assert main([*argv, "--called-ae", "WRONGAE", "--timeout", "5"]) == EXIT_REJECTED == 3
    out = capsys.readouterr().out
    assert "rejected-permanent" in out
    assert "DICOM UL service-user" in out
    assert "called-AE-title-not-recognized" in out


def test_no_server_is_a_failure_not_a_rejection(capsys: pytest.CaptureFixture[str]) -> None:
    """A refused connection counts every echo as failed and exits 1."""
    port = free_loopback_port()
    result = run_echoes(LOOPBACK, port, "NOBODY", count=2, timeout=2)
    assert result.rejection is None
    assert result.association_error is not None
    assert result.succeeded == 0
    argv = ["echo", "--host", LOOPBACK, "--port", str(port), "--called-ae", "NOBODY"]
    assert main([*argv, "--count", "2", "--timeout", "2"]) == 1
    assert capsys.readouterr().out.splitlines()[-1].startswith("2 echoes, 0 succeeded")
