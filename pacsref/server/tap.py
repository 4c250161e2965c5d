"""``twistd pacsref``: options and ``makeService`` (the twistd plugin's module).

- ``--server-dir DIR`` runs the server DIR describes;
- with ``--ae-title``/``--port``/``--ip-address`` as well, DIR is created
  first if it does not exist (defaults plus every shipped add-in);
- with no ``--server-dir`` and no ``--ae-title``, the embedded default server
  in ``<root>/PACSREF`` is created if needed and run; it does not check the
  called AE title, so stock tools work against it with no set-up;
- with ``--ae-title AE`` but no ``--server-dir``, the server is ``<root>/AE``,
  so ``pacsref`` finds it; like any server created with an AE title of its own
  it refuses other called AE titles.

``<root>`` is the manager's: ``$PACSREF_ROOT`` if set and not empty, else
``./pacsref-data`` (:func:`pacsref.server.create.server_root`, read when the
service is made).

Start-up problems (bad settings, a temporary directory that cannot be created
or written, port taken, an IP that is not ours, Server Secure on without a
usable security add-in, two add-ins providing the same base service, an admin
socket path that is too long, taken by a live server or blocked by a file that
is not a socket) end twistd with one line naming the problem and exit status
1. They are all checked here, before twistd daemonizes and the reactor starts:
a failure in ``startService`` reaches a daemon's parent only as twistd's
100-byte status-pipe message, and used to leave the DICOM port open in a
process that never exited.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from pacsref.addin import AeTableFileError, ServiceConflict
from pacsref.admin.service import AdminSocketError, admin_socket_path, prepare_socket_path
from pacsref.security import secure_startup_problem
from pacsref.server.context import build_server_context
from pacsref.server.create import (
    DEFAULT_AE_TITLE,
    FALLBACK_ROOT,
    ROOT_ENV,
    SERVER_NAME_ALLOWED,
    create_server,
    default_server_dir,
    server_name_problem,
    server_root,
)
from pacsref.server.identity import identity_startup_problem
from pacsref.server.service import server_service
from pacsref.settings import SETTINGS_FILE_NAME, SettingsError, load_settings, settings_from_mapping

#: The root rule in the words of ``--help`` (:func:`server_root`; the help is fixed at import,
#: the root is read when the service is made, so the help states the rule, not its value).
ROOT_HELP = f"${ROOT_ENV} if set and not empty, else ./{FALLBACK_ROOT}"


class Options(usage.Options):
    """Command line of ``twistd pacsref``."""

    synopsis = "[--server-dir DIR] [--ae-title AE] [--port P] [--ip-address IP]"
    longdesc = (
        "Run a pacsref DICOM server. With neither --server-dir nor --ae-title, an embedded "
        f"default server (AE title {DEFAULT_AE_TITLE}, port 11112, any called AE title "
        f"answered) is created in ROOT/{DEFAULT_AE_TITLE} and run; with --ae-title AE but no "
        "--server-dir, the server is ROOT/AE and answers only its own AE title. ROOT is "
        f"the pacsref manager's root: {ROOT_HELP}. "
        "--ae-title, --port and --ip-address are used only to create a server directory that "
        "does not exist yet; an existing one is run as its settings.toml says."
    )
    optParameters = [
        ["server-dir", "d", None, "server directory (holds settings.toml and addins/)"],
        [
            "ae-title",
            "a",
            None,
            "AE title for a new server directory (without --server-dir: ROOT/AE, ROOT being "
            f"{ROOT_HELP})",
        ],
        ["port", "p", None, "DICOM port for a new server directory", int],
        ["ip-address", "i", None, "address to listen on, for a new server directory"],
    ]


def _fail(message: str) -> SystemExit:
    return SystemExit(f"pacsref: {message}")


def _named_server_dir(ae_title: str) -> tuple[Path, str]:
    """``<root>/<AE>`` for ``--ae-title AE`` without ``--server-dir``, and the AE title.

    The AE title is checked (and stripped of its padding spaces, PS3.5) first, so the directory
    is named after the title the server will really have; one that cannot be a single folder
    name (``/``, a leading ``.``) is refused, as the manager refuses it as a server name.
    """
    title = settings_from_mapping({"ae_title": ae_title}, source="command line").ae_title
    why = server_name_problem(title)
    if why is not None:
        raise _fail(
            f"{title!r} cannot be used as a server name: {why}; {SERVER_NAME_ALLOWED}; "
            "give --server-dir DIR to run a server with this AE title"
        )
    return server_root() / title, title


def ensure_server_dir(options: Options) -> Path:
    """The server directory to run, created first when the options ask for it.

    Made absolute here, from the directory twistd was started in: twistd changes to
    ``--rundir`` afterwards (before the services start), and a relative directory (or
    ``$PACSREF_ROOT``) read again after that would put the admin socket elsewhere than the
    settings it was read with.
    """
    ae_title: str | None = options["ae-title"] or None
    if options["server-dir"]:
        server_dir = Path(options["server-dir"])
    elif ae_title is not None:
        server_dir, ae_title = _named_server_dir(ae_title)
    else:
        server_dir = default_server_dir()
    server_dir = server_dir.absolute()
    settings_file = server_dir / SETTINGS_FILE_NAME
    if settings_file.exists():
        if not options["server-dir"] and ae_title is not None:
            # The directory was chosen by its name alone: running what it holds under another
            # AE title (a hand-made copy, a case-insensitive file system) would answer as a
            # server the operator did not ask for.
            found = load_settings(settings_file).ae_title
            if found != ae_title:
                raise _fail(
                    f"{server_dir} holds the server with AE title {found!r}, not {ae_title!r}; "
                    "give --server-dir DIR to create or run a server elsewhere"
                )
        return server_dir
    if options["server-dir"] and ae_title is None:
        raise _fail(
            f"{server_dir} is not a server directory (no {SETTINGS_FILE_NAME}); "
            "give --ae-title (and --port) to create it"
        )
    values: dict[str, object] = {"ae_title": ae_title or DEFAULT_AE_TITLE}
    if ae_title is None:
        # The embedded default answers whatever called AE title a stock tool sends
        # (echoscu's default is ANY-SCP), as DCMTK's storescp and Orthanc do out of the box.
        # A server given an AE title of its own keeps the default check (README).
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
    except (SettingsError, AeTableFileError, ServiceConflict) as exc:
        # ServiceConflict: two add-ins provide the same base service (both IAeTitles, say); its
        # message names the service and both add-ins, all the operator needs to remove one.
        raise _fail(str(exc)) from None
    problem = secure_startup_problem(server.settings.server_secure, server.addins, server.failures)
    if problem is None:
        problem = identity_startup_problem(server.failures)
    if problem is not None:
        raise _fail(problem)
    check_can_listen(server.settings.ip_address, server.settings.port)
    try:
        prepare_socket_path(admin_socket_path(server.server_dir, server.settings.ae_title))
    except AdminSocketError as exc:
        raise _fail(str(exc)) from None
    return server_service(server, reactor)
