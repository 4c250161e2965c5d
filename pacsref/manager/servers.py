"""``pacsref server ...``: add, list, start, stop, pause, resume, status, start/stop-all, unit."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from pacsref.manager import daemon
from pacsref.manager.daemon import ManagerError, Server, find_server
from pacsref.server.create import parse_assignment, shipped_addins
from pacsref.settings import (
    SettingsError,
    StartMode,
    create_server_directory,
    settings_from_mapping,
)


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the manager's ``server`` subcommands to the existing ``server`` group."""
    add = commands.add_parser("add", parents=[common], help="create a server directory")
    add.add_argument("name", help="the server's AE title (also its directory name)")
    add.add_argument("--port", type=int, help="DICOM port (default 11112)")
    add.add_argument("--ip-address", help="address to listen on (default 0.0.0.0)")
    add.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        type=parse_assignment,
        metavar="KEY=VALUE",
        help="any other setting, e.g. --set artim_timeout=5 (repeatable)",
    )
    add.add_argument("--addins", help="shipped add-ins to copy, comma-separated (default: all)")
    add.set_defaults(handler=_add)
    listing = commands.add_parser("list", parents=[common], help="servers, ports, states, pids")
    listing.set_defaults(handler=_list)
    for name, handler, text in (
        ("start", _start, "start a server as a twistd daemon"),
        ("stop", _stop, "stop a running server (SIGTERM, graceful)"),
        ("pause", _pause, "stop accepting new associations"),
        ("resume", _resume, "accept associations again"),
        ("status", _status, "print the server's GetStatus"),
        ("unit", _unit, "print a systemd unit for the server"),
    ):
        sub = commands.add_parser(name, parents=[common], help=text)
        sub.add_argument("name", help="the server's directory name")
        sub.set_defaults(handler=handler)
    commands.add_parser(
        "start-all", parents=[common], help="start every Start Mode automatic server"
    ).set_defaults(handler=_start_all)
    commands.add_parser(
        "stop-all", parents=[common], help="stop every running server"
    ).set_defaults(handler=_stop_all)


def addin_names() -> dict[str, Path]:
    """Shipped add-ins by name (module or package name)."""
    return {path.stem: path for path in shipped_addins()}


def _add(root: Path, args: argparse.Namespace) -> int:
    known = addin_names()
    if args.addins is None:
        chosen = list(known.values())
    else:
        names = [n.strip() for n in args.addins.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ManagerError(
                f"unknown add-in(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        chosen = [known[n] for n in names]
    values: dict[str, object] = {"ae_title": args.name}
    if args.port is not None:
        values["port"] = args.port
    if args.ip_address is not None:
        values["ip_address"] = args.ip_address
    values.update(dict(args.assignments))
    directory = root / args.name
    try:
        settings = settings_from_mapping(values, source="command line")
        create_server_directory(directory, settings, chosen)
    except (SettingsError, OSError) as exc:
        raise ManagerError(" ".join(str(exc).split())) from None
    print(f"added server {args.name} in {directory}")
    return 0


def _list(root: Path, args: argparse.Namespace) -> int:
    print(f"{'NAME':<17} {'AE':<17} {'PORT':>5}  {'STATE':<8} PID")
    for server in daemon.all_servers(root):
        pid = server.pid()
        print(
            f"{server.name:<17} {server.settings.ae_title:<17} {server.settings.port:>5}  "
            f"{server.state():<8} {pid if pid is not None else '-'}"
        )
    return 0


def _start(root: Path, args: argparse.Namespace) -> int:
    server = find_server(root, args.name)
    pid = daemon.start(server)
    where = f"{server.settings.ip_address}:{server.settings.port}"
    print(f"started {server.name} (pid {pid}) on {where}")
    return 0


def _stop(root: Path, args: argparse.Namespace) -> int:
    server = find_server(root, args.name)
    pid = daemon.stop(server)
    print(f"stopped {server.name} (pid {pid})")
    return 0


def _pause(root: Path, args: argparse.Namespace) -> int:
    find_server(root, args.name).call("Pause")
    print(f"paused {args.name}")
    return 0


def _resume(root: Path, args: argparse.Namespace) -> int:
    find_server(root, args.name).call("Resume")
    print(f"resumed {args.name}")
    return 0


def _status(root: Path, args: argparse.Namespace) -> int:
    server = find_server(root, args.name)
    data = server.call("GetStatus")
    status = data[0] if data else {}
    print(f"{server.name}: pid {server.pid()} " + json.dumps(status, sort_keys=True))
    return 0


def _each(root: Path, servers: list[Server], action: str) -> int:
    failed = 0
    for server in servers:
        try:
            pid = daemon.start(server) if action == "start" else daemon.stop(server)
        except ManagerError as exc:
            print(f"pacsref: {exc}")
            failed += 1
        else:
            print(f"{action}ed {server.name} (pid {pid})".replace("stoped", "stopped"))
    if failed:
        raise ManagerError(f"{failed} server(s) failed to {action}")
    return 0


def _start_all(root: Path, args: argparse.Namespace) -> int:
    chosen = [
        s
        for s in daemon.all_servers(root)
        if s.settings.start_mode is StartMode.AUTOMATIC and s.pid() is None
    ]
    return _each(root, chosen, "start")


def _stop_all(root: Path, args: argparse.Namespace) -> int:
    return _each(root, [s for s in daemon.all_servers(root) if s.pid() is not None], "stop")


def unit_text(server: Server) -> str:
    """A systemd unit running ``server`` in the foreground (Type=simple)."""
    directory = server.directory.resolve()
    command = " ".join(
        f'"{arg}"' if " " in arg or ";" in arg else arg
        for arg in daemon.twistd_command(server, daemon=False)
    )
    lines = [
        "[Unit]",
        f"Description=pacsref DICOM server {server.settings.ae_title}",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"WorkingDirectory={directory}",
    ]
    extra = daemon._pythonpath()
    if extra is not None:
        lines.append(f"Environment={shlex.quote('PYTHONPATH=' + extra)}")
    lines += [
        f"ExecStart={command}",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=30",
        "Restart=on-failure",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def _unit(root: Path, args: argparse.Namespace) -> int:
    print(unit_text(find_server(root, args.name)), end="")
    return 0
