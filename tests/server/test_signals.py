"""SIGUSR1 pauses and SIGUSR2 resumes a running server (until the admin socket exists)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from pacsref.server.signals import PauseSignalService
from pacsref.testing.harness import ServerHarness


def test_usr1_pauses_usr2_resumes(tmp_path: Path) -> None:
    """The signals reach ServerControl through the reactor; handlers are restored on stop."""
    harness = ServerHarness(tmp_path / "PACSREF")
    service = PauseSignalService(harness.control, harness.clock)
    before = signal.getsignal(signal.SIGUSR1)
    service.startService()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert harness.control.paused
        os.kill(os.getpid(), signal.SIGUSR2)
        assert not harness.control.paused
    finally:
        service.stopService()
    assert signal.getsignal(signal.SIGUSR1) == before
