"""The service log: structured JSON lines of what a server did, for its administrator.

See :mod:`pacsref.log.service`. Components log with ``twisted.logger`` under
``pacsref.*`` namespaces and a ``kind`` field naming the event
(``connection``, ``association.accepted``, ``association.refused``, ``dimse``,
``addin.failure``, ...); the service log writes those events, and only those,
when the server's Enable Service Log setting is on.
"""

from pacsref.log.service import (
    SERVICE_LOG_NAME,
    ServiceLog,
    ServiceLogService,
    event_as_json_line,
)

__all__ = ["SERVICE_LOG_NAME", "ServiceLog", "ServiceLogService", "event_as_json_line"]
