"""pacsref's own requestor (IDicomRequest) against DCMTK's storescp as the SCP.

The requestor role of our upper layer is judged by a server nobody here
wrote: ``pacsref echo`` issues the C-ECHO through the default IDicomRequest.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from pacsref.testing.dcmtk import require_dcmtk
from pacsref.testing.net import free_loopback_port, wait_for_port

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def storescp() -> Iterator[int]:
    """DCMTK storescp (AE STORESCP) on a free loopback port, stopped after the module."""
    binary = require_dcmtk("storescp")
    port = free_loopback_port()
    process = subprocess.Popen(
        [binary, "--aetitle", "STORESCP", "--acse-timeout", "5", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for_port("127.0.0.1", port, 10), "storescp did not start listening"
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _echo(port: int, called: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pacsref.manager.cli",
            "echo",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--called-ae",
            called,
            "--timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_requestor_echoes_dcmtk_storescp(storescp: int) -> None:
    """IDicomRequest.echo associates with DCMTK storescp and gets status 0x0000."""
    result = _echo(storescp, "STORESCP")
    assert result.returncode == 0, result.stderr
    assert "status 0x0000" in result.stdout


def test_requestor_reports_connection_refused() -> None:
    """A peer that is not listening fails cleanly with the reason and exit status 1."""
    result = _echo(free_loopback_port(), "NOBODY")
    assert result.returncode == 1
    assert "refused" in result.stderr.lower()
