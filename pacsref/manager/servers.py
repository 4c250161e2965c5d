"""``pacsref server ...``: add, edit, delete, list, start, stop, pause, resume, status, unit, ...

Deleting unregisters without losing anything, as in the seed: ``settings.toml`` becomes
``settings.toml.deleted``, so the directory (data, logs, add-ins) stays where it was while the
scan of ``<root>/*/settings.toml`` no longer finds it; renaming the file back restores it.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
from pathlib import Path

from pacsref.manager import daemon
from pacsref.manager.daemon import ManagerError, Server, find_server
from pacsref.manager.settings_options import add_settings_options, settings_changes
from pacsref.server.create import shipped_addins
from pacsref.settings import (
    SETTINGS_FILE_NAME,
    SettingsError,
    StartMode,
    create_server_directory,
    settings_from_mapping,
)
from pacsref.settings.edit import edit_settings_file

#: What ``server delete`` renames ``settings.toml`` to.
DELETED_SUFFIX = ".deleted"


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the manager's ``server`` subcommands to the existing ``server`` group."""
    add = commands.add_parser("add", parents=[common], help="create a server directory")
    add.add_argument("name", help="the server's AE title (also its directory name)")
    add.add_argument("--addins", help="shipped add-ins to copy, comma-separated (default: all)")
    add_settings_options(add, skip=("ae_title",))
    add.set_defaults(handler=_add)
    edit = commands.add_parser(
        "edit",
        parents=[common],
        help="change a server's settings (a running one applies the live ones at once)",
    )
    edit.add_argument("name", help="the server's directory name")
    add_settings_options(edit, skip=("ae_title",))
    edit.set_defaults(handler=_edit)
    delete = commands.add_parser(
        "delete",
        parents=[common],
        help="unregister a stopped server (its directory and data stay)",
    )
    delete.add_argument("name", help="the server's directory name")
    delete.set_defaults(handler=_delete)
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
    values: dict[str, object] = {"ae_title": args.name, **settings_changes(args)}
    directory = root / args.name
    deleted = directory / (SETTINGS_FILE_NAME + DELETED_SUFFIX)
    if deleted.exists():
        raise ManagerError(
            f"{directory} holds the deleted server {args.name}; restore it with "
            f"`mv {deleted} {directory / SETTINGS_FILE_NAME}`, or move the directory away first"
        )
    try:
        settings = settings_from_mapping(values, source="command line")
        create_server_directory(directory, settings, chosen)
    except (SettingsError, OSError) as exc:
        raise ManagerError(" ".join(str(exc).split())) from None
    print(f"added server {args.name} in {directory}")
    return 0


def _edit(root: Path, args: argparse.Namespace) -> int:
    server = find_server(root, args.name)
    changes = settings_changes(args)
    if not changes:
        raise ManagerError(
            "no change given; name settings with their options (pacsref server edit --help) "
            "or --set key=value"
        )
    if server.pid() is None:
        try:
            _, changed = edit_settings_file(
                server.directory / SETTINGS_FILE_NAME, changes, source="command line"
            )
        except (SettingsError, OSError) as exc:
            raise ManagerError("; ".join(str(exc).splitlines())) from None
        print(f"edited {server.name} (stopped): " + (", ".join(changed) or "no value changed"))
        return 0
    live, restart = server.call("UpdateSettings", changes)[:2]
    print(f"edited {server.name}: applied live: {', '.join(live) or 'nothing'}")
    if restart:
        print(
            f"{server.name}: saved, applies at next restart: {', '.join(restart)} "
            f"(pacsref server stop {server.name} && pacsref server start {server.name})"
        )
    return 0


def _delete(root: Path, args: argparse.Namespace) -> int:
    server = find_server(root, args.name)
    pid = server.pid()
    if pid is not None:
        raise ManagerError(
            f"server {server.name} is running (pid {pid}); stop it first: "
            f"pacsref server stop {server.name}"
        )
    settings_file = server.directory / SETTINGS_FILE_NAME
    deleted = settings_file.with_name(SETTINGS_FILE_NAME + DELETED_SUFFIX)
    if deleted.exists():
        raise ManagerError(f"{deleted} is in the way (an older deleted server); move it first")
    try:
        settings_file.rename(deleted)
    except OSError as exc:
        raise ManagerError(f"cannot unregister {server.name}: {exc}") from None
    print(
        f"deleted server {server.name}; its directory {server.directory} remains "
        f"(restore: mv {deleted} {settings_file})"
    )
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
        f"TimeoutStopSec={math.ceil(server.settings.stop_timeout + daemon.STOP_TIMEOUT_S)}",
        "Restart=on-failure",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def _unit(root: Path, args: argparse.Namespace) -> int:
    print(unit_text(find_server(root, args.name)), end="")
    return 0
