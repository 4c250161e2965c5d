"""``twistd pacsref``: options and ``makeService`` (the twistd plugin's module).

- ``--server-dir DIR`` runs the server DIR describes;
- with ``--ae-title``/``--port``/``--ip-address`` as well, DIR is created
  first if it does not exist (defaults plus every shipped add-in);
- with no ``--server-dir``, the embedded default server in
  ``./pacsref-data/PACSREF`` is created if needed and run; it does not check
  the called AE title, so stock tools work against it with no set-up.

Start-up problems (bad settings, a temporary directory that cannot be created
or written, port taken, an IP that is not ours, Server Secure on without a
usable security add-in, an admin socket path that is too long, taken by a live
server or blocked by a file that is not a socket) end twistd with one line
naming the problem and exit status 1. They are all checked here, before twistd
daemonizes and the reactor starts: a failure in ``startService`` reaches a
daemon's parent only as twistd's 100-byte status-pipe message, and used to
leave the DICOM port open in a process that never exited.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from pacsref.addin import AeTableFileError
from pacsref.admin.service import AdminSocketError, admin_socket_path, prepare_socket_path
from pacsref.security import secure_startup_problem
from pacsref.server.context import build_server_context
from pacsref.server.create import DEFAULT_AE_TITLE, DEFAULT_SERVER_DIR, create_server
from pacsref.server.service import server_service
from pacsref.settings import SETTINGS_FILE_NAME, SettingsError


class Options(usage.Options):
    """Command line of ``twistd pacsref``."""

    synopsis = "[--server-dir DIR] [--ae-title AE] [--port P] [--ip-address IP]"
    longdesc = (
        "Run a pacsref DICOM server. With no --server-dir, an embedded default server "
        f"(AE title {DEFAULT_AE_TITLE}, port 11112, any called AE title answered) is created in "
        f"./{DEFAULT_SERVER_DIR} and run. --ae-title, --port and --ip-address are used only "
        "to create a server directory that does not exist yet; an existing one is run as its "
        "settings.toml says."
    )
    optParameters = [
        ["server-dir", "d", None, "server directory (holds settings.toml and addins/)"],
        ["ae-title", "a", None, "AE title for a new server directory"],
        ["port", "p", None, "DICOM port for a new server directory", int],
        ["ip-address", "i", None, "address to listen on, for a new server directory"],
    ]


def _fail(message: str) -> SystemExit:
    return SystemExit(f"pacsref: {message}")


def ensure_server_dir(options: Options) -> Path:
    """The server directory to run, created first when the options ask for it."""
    server_dir = Path(options["server-dir"] or DEFAULT_SERVER_DIR)
    if (server_dir / SETTINGS_FILE_NAME).exists():
        return server_dir
    if options["server-dir"] and not options["ae-title"]:
        raise _fail(
            f"{server_dir} is not a server directory (no {SETTINGS_FILE_NAME}); "
            "give --ae-title (and --port) to create it"
        )
    values: dict[str, object] = {"ae_title": options["ae-title"] or DEFAULT_AE_TITLE}
    if not options["server-dir"]:
        # The embedded default answers whatever called AE title a stock tool sends
        # (echoscu's default is ANY-SCP), as DCMTK's storescp and Orthanc do out of the box.
        values["check_called_ae_title"] = False
    if options["port"] is not None:
        values["port"] = options["port"]
    if options["ip-address"] is not None:
        values["ip_address"] = options["ip-address"]
    create_server(server_dir, values)
    return server_dir


def check_can_listen(ip_address: str, port: int) -> None:
    """Fail fast, in one line, when the address is not ours or the port is taken."""
    family = socket.AF_INET6 if ":" in ip_address else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((ip_address, port))
    except socket.gaierror as exc:  # "fe80::1%eth9": no interface of that name here
        where = "" if "%" not in ip_address else f" (is {ip_address.split('%')[1]!r} an interface?)"
        raise _fail(f"cannot listen on {ip_address}:{port}: {exc.strerror}{where}") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise _fail(f"cannot listen on {ip_address}:{port}: port {port} is in use") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise _fail(
                f"cannot listen on {ip_address}:{port}: {ip_address} is not an address of this host"
            ) from None
        raise _fail(f"cannot listen on {ip_address}:{port}: {exc.strerror}") from None
    finally:
        probe.close()


def makeService(options: Options, reactor: Any = None) -> IService:
    """Build the server's service tree (called by twistd)."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    try:
        server_dir = ensure_server_dir(options)
        server = build_server_context(server_dir, reactor)
    except (SettingsError, AeTableFileError) as exc:
        raise _fail(str(exc)) from None
    problem = secure_startup_problem(server.settings.server_secure, server.addins, server.failures)
    if problem is not None:
        raise _fail(problem)
    check_can_listen(server.settings.ip_address, server.settings.port)
    try:
        prepare_socket_path(admin_socket_path(server.server_dir, server.settings.ae_title))
    except AdminSocketError as exc:
        raise _fail(str(exc)) from None
    return server_service(server, reactor)
