"""The administrative socket of one server: ``<server dir>/admin/<AE title>.sock``.

Decision: the socket lives in the server directory, not under
``$XDG_RUNTIME_DIR``: that directory is already per server and owned by the
server's user, it exists for servers started by systemd or cron (where
``XDG_RUNTIME_DIR`` is often unset), and the service manager finds it from the
root folder alone. The ``admin`` directory is created (and re-set) mode 0700
and the socket is bound mode 0600, stated explicitly (``listenUNIX`` defaults
to 0666). The file name is the AE title with every character other than
letters, digits, ``-``, ``_`` and ``.`` percent-encoded (an AE title may hold
``/`` or spaces).

A socket path longer than a Unix socket address can hold (107 bytes on Linux)
is refused with one line naming it. A socket file left by a killed server is
found by connecting to it: refused means stale and it is removed; accepted
means another server is serving it, and this one refuses to start.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path
from typing import Any
from urllib.parse import quote

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from pacsref.addin.options_file import OPTIONS_DIR_NAME
from pacsref.admin.handlers import AdminCommands
from pacsref.admin.protocol import AdminFactory
from pacsref.settings import SETTINGS_FILE_NAME

log = Logger(namespace="pacsref.admin")

__all__ = [
    "MAX_SOCKET_PATH",
    "AdminService",
    "AdminSocketError",
    "admin_socket_path",
    "prepare_socket_path",
]

#: sizeof(sockaddr_un.sun_path) on Linux is 108, one of which is the terminating NUL.
MAX_SOCKET_PATH = 107


class AdminSocketError(RuntimeError):
    """The administrative socket cannot be created; the text is one line for the operator."""


def admin_socket_path(server_dir: Path, ae_title: str) -> Path:
    """Where the server ``ae_title`` in ``server_dir`` listens for administration."""
    return Path(server_dir) / "admin" / f"{quote(ae_title.strip(), safe='-_.')}.sock"


def prepare_socket_path(path: Path) -> None:
    """Check ``path``'s length, make its directory 0700, and remove a stale socket there.

    Raises :class:`AdminSocketError` when the path is too long, the directory
    belongs to someone else, a non-socket file is in the way, or a live server
    answers on it.
    """
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH:
        raise AdminSocketError(
            f"admin socket path is {size} bytes, more than a Unix socket allows "
            f"({MAX_SOCKET_PATH}): {path}; use a shorter server root folder"
        )
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.stat()
        if info.st_uid != os.geteuid():
            raise AdminSocketError(f"admin directory {directory} belongs to another user")
        os.chmod(directory, 0o700)  # mkdir obeys the umask, and an old directory may be wider
    except OSError as exc:
        raise AdminSocketError(
            f"cannot prepare admin directory {directory}: {exc.strerror or exc}"
        ) from None
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise AdminSocketError(f"cannot check admin socket {path}: {exc.strerror or exc}") from None
    if not stat.S_ISSOCK(mode):
        raise AdminSocketError(f"{path} exists and is not a socket; remove it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(os.fspath(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise AdminSocketError(f"cannot check admin socket {path}: {exc}") from None
        log.info("removing stale admin socket {path}", path=str(path))
        path.unlink(missing_ok=True)
    else:
        raise AdminSocketError(f"another server is already listening on {path}")
    finally:
        probe.close()


class AdminService(Service):
    """Listens on the server's administrative socket while the server runs.

    Args:
        control: the server's :class:`~pacsref.server.control.ServerControl`.
        server: its :class:`~pacsref.server.context.ServerContext`.
        reactor: provides ``listenUNIX`` (and runs worker-thread results).
        path: the socket path; default :func:`admin_socket_path`.
        live_settings: the server's :class:`~pacsref.server.live_settings.LiveSettings`,
            for UpdateSettings (without it, UpdateSettings is refused).
    """

    def __init__(
        self,
        control: Any,
        server: Any,
        reactor: Any,
        path: Path | None = None,
        live_settings: Any = None,
    ) -> None:
        self.setName("admin")
        self.control = control
        self.server = server
        self.reactor = reactor
        ae_title = server.settings.ae_title
        self.path = path or admin_socket_path(server.server_dir, ae_title)
        self.port: Any = None
        self.factory: AdminFactory | None = None
        self.live_settings = live_settings

    def _run_in_thread(self, function: Any, *args: Any) -> Any:
        return deferToThreadPool(self.reactor, self.server.threadpool, function, *args)

    def _host_changed(self, host: str) -> None:
        # Tables that cache addresses themselves (MemoryAeTitles) resolved in add/update;
        # for the others, the server's HostAddresses cache is refreshed for that host.
        titles = self.server.ae_titles
        if callable(getattr(titles, "addresses", None)):
            return
        addresses = self.server.addresses
        addresses.forget(host)
        addresses.resolve_later(host, self.reactor, self.server.threadpool, 10.0)

    def startService(self) -> None:
        prepare_socket_path(self.path)
        commands = AdminCommands(
            self.control,
            self.server.ae_titles,
            self._run_in_thread,
            settings=self.server.settings,
            addins=self.server.addins,
            failures=self.server.failures,
            host_changed=self._host_changed,
            live_settings=self.live_settings,
            settings_file=Path(self.server.server_dir) / SETTINGS_FILE_NAME,
            addin_options_dir=Path(self.server.server_dir) / OPTIONS_DIR_NAME,
        )
        self.factory = AdminFactory(commands, self.server.settings.ae_title, self.reactor)
        self.port = self.reactor.listenUNIX(os.fspath(self.path), self.factory, mode=0o600)
        super().startService()
        log.info("admin socket listening at {path}", path=str(self.path))

    def stopService(self) -> Any:
        """Stop listening, then close the admin connections once their output is written.

        The server's root stops this service after the DICOM listener's drain, so the
        stop's last notifications (ServerStopping, the aborts' ClientDisconnected) are
        already in the connections' buffers; the returned Deferred holds the reactor's
        shutdown until they have been sent (bounded), which would otherwise drop them.
        """
        super().stopService()
        waits: list[Deferred[Any]] = []
        if self.port is not None:
            port, self.port = self.port, None
            waits.append(maybeDeferred(port.stopListening))
        if self.factory is not None:
            factory, self.factory = self.factory, None
            factory.close()
            factory.commands.close()
            waits.append(factory.close_connections(self.reactor))
        return DeferredList(waits) if waits else None
