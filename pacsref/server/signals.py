"""Pause and resume a running server with SIGUSR1 / SIGUSR2.

Until the administrative socket exists (the admin issue), an administrator
or a test pauses a twistd-launched server with ``kill -USR1 PID`` and resumes
it with ``kill -USR2 PID``. The handlers only schedule the change on the
reactor thread; nothing runs inside the signal handler itself.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from twisted.application.service import Service

from pacsref.server.control import ServerControl

#: Signal -> what it does, for --help text and docs.
SIGNALS = {signal.SIGUSR1: "pause", signal.SIGUSR2: "resume"}


class PauseSignalService(Service):
    """Installs the SIGUSR1/SIGUSR2 handlers while the server runs."""

    def __init__(self, control: ServerControl, reactor: Any) -> None:
        self.control = control
        self.reactor = reactor
        self._previous: dict[int, Any] = {}

    def startService(self) -> None:
        super().startService()
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._received)

    def stopService(self) -> None:
        super().stopService()
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _received(self, signum: int, frame: FrameType | None) -> None:
        action = self.control.pause if signum == signal.SIGUSR1 else self.control.resume
        self.reactor.callFromThread(action)
