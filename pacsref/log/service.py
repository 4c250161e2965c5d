"""The service log: ``<server>/logs/service.log``, JSON lines, rotated daily.

Written only when the server's ``enable_service_log`` setting is on (the
framework's "Enable Service Log" check box); :class:`ServiceLogService` is
then part of the server's service tree and adds the observer to the global
``twisted.logger`` publisher while it runs.

What goes in, and why this way:

- every event logged under a ``pacsref.*`` namespace: connections,
  associations (accepted with their contexts, released, aborted), refusals
  with their reasons, add-in failures, pause/resume, and whatever add-ins log
  through ``request.log`` (namespace ``pacsref.addin.<name>``). Other
  libraries' events stay in the twistd log.
- one event per DIMSE request (command, message ID, status, calling AE,
  milliseconds). These are *not* published globally: per-message lines would
  flood the twistd log, and formatting events nobody reads would tax the
  C-ECHO hot path. The session emits them through :attr:`ServiceLog.actions`,
  a ``Logger`` whose observer is this log alone, and only when it is running.

One JSON object per line (not ``jsonFileLogObserver``'s RFC 7464 record
separators, and not ``eventAsJSON``'s dump of Twisted internals): ``time``
(ISO 8601, UTC), ``level``, ``namespace``, ``text`` (the formatted message),
then the event's own fields (``kind``, ``calling``, ``result``, ...), and
``failure`` with the traceback when there is one. ``jq`` and any JSON-lines
reader take it as is. Rotation is :class:`twisted.python.logfile.DailyLogFile`
(``service.log.YYYY_M_D`` at the first write of a new local day).
"""

from __future__ import annotations

import enum
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.logger import (
    ILogObserver,
    LogEvent,
    Logger,
    LogPublisher,
    formatEvent,
    globalLogPublisher,
)
from twisted.python.failure import Failure
from twisted.python.logfile import DailyLogFile
from zope.interface import implementer

__all__ = ["SERVICE_LOG_NAME", "ServiceLog", "ServiceLogService", "event_as_json_line"]

#: File name of the service log inside ``<server>/logs/``.
SERVICE_LOG_NAME = "service.log"
#: Only these namespaces are written (prefix match).
NAMESPACE_PREFIX = "pacsref"


def _jsonable(value: object) -> object:
    """``json.dumps`` fallback: enums by value, paths and everything else as text."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, set | frozenset):
        return sorted(str(v) for v in value)
    return str(value)


def event_as_json_line(event: LogEvent) -> str:
    """One service-log line (JSON object + newline) for a ``twisted.logger`` event."""
    when = event.get("log_time")
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(when, UTC).isoformat() if when is not None else None,
        "level": getattr(level, "name", str(level)),
        "namespace": event.get("log_namespace", ""),
        "text": formatEvent(event),
    }
    for key, value in event.items():
        if not key.startswith("log_") and key not in record:
            record[key] = value
    failure = event.get("log_failure")
    if isinstance(failure, Failure):
        record["failure"] = failure.getTraceback()
    return json.dumps(record, default=_jsonable, ensure_ascii=False) + "\n"


@implementer(ILogObserver)
class ServiceLog:
    """The service-log observer and its file.

    Args:
        directory: where ``service.log`` lives (``<server>/logs``); created on start.
        publisher: the publisher to observe; the global one in a server.
    """

    def __init__(self, directory: Path, publisher: LogPublisher | None = None) -> None:
        self.directory = Path(directory)
        self.publisher = publisher if publisher is not None else globalLogPublisher
        self.file: DailyLogFile | None = None
        #: Emits DIMSE action events to this log only; None while not running.
        self.actions: Logger | None = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        """The current log file."""
        return self.directory / SERVICE_LOG_NAME

    def start(self) -> None:
        """Open the file and start observing (idempotent)."""
        if self.file is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.file = DailyLogFile(SERVICE_LOG_NAME, str(self.directory))
        self.publisher.addObserver(self)
        self.actions = Logger(namespace="pacsref.dimse.action", observer=self._write)

    def stop(self) -> None:
        """Stop observing and close the file (idempotent)."""
        if self.file is None:
            return
        self.actions = None
        self.publisher.removeObserver(self)
        with self._lock:
            file, self.file = self.file, None
            file.close()

    def __call__(self, event: LogEvent) -> None:
        """Observer: write ``pacsref.*`` events, ignore the rest."""
        namespace = event.get("log_namespace")
        if isinstance(namespace, str) and namespace.startswith(NAMESPACE_PREFIX):
            self._write(event)

    def _write(self, event: LogEvent) -> None:
        # Called from the reactor thread and from add-in worker threads.
        line = event_as_json_line(event)
        with self._lock:
            if self.file is not None:
                self.file.write(line)


class ServiceLogService(Service):
    """Runs a :class:`ServiceLog` with the server: observer added on start, removed on stop."""

    name = "service-log"

    def __init__(self, service_log: ServiceLog) -> None:
        self.service_log = service_log

    def startService(self) -> None:
        super().startService()
        self.service_log.start()

    def stopService(self) -> None:
        super().stopService()
        self.service_log.stop()
