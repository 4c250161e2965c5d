"""The administrative interface: a Unix-domain socket of JSON ServiceMessage lines.

See ``docs/admin-protocol.md``. :mod:`~pacsref.admin.messages` declares every
message once; :mod:`~pacsref.admin.handlers` answers them;
:mod:`~pacsref.admin.protocol` frames them; :mod:`~pacsref.admin.service`
listens; :mod:`~pacsref.admin.client` is the client library.
"""

from pacsref.admin.client import (
    AdminClient,
    AdminClientProtocol,
    AdminConnectionError,
    AdminTimeoutError,
)
from pacsref.admin.messages import COMMANDS, NOTIFICATIONS, MessageError, ServiceMessage
from pacsref.admin.service import AdminService, AdminSocketError, admin_socket_path

__all__ = [
    "COMMANDS",
    "NOTIFICATIONS",
    "AdminClient",
    "AdminClientProtocol",
    "AdminConnectionError",
    "AdminService",
    "AdminSocketError",
    "AdminTimeoutError",
    "MessageError",
    "ServiceMessage",
    "admin_socket_path",
]
