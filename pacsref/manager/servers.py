"""``pacsref server ...``: add, edit, delete, list, start, stop, pause, resume, status, unit, ...

Deleting unregisters without losing anything, as in the seed: ``settings.toml`` becomes
``settings.toml.deleted``, so the directory (data, logs, add-ins) stays where it was while the
scan of ``<root>/*/settings.toml`` no longer finds it; renaming the file back restores it.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

from pacsref.manager import daemon
from pacsref.manager.daemon import (
    BrokenServer,
    ManagerError,
    Server,
    check_server_name,
    command_hint,
    find_server,
    load_server,
    os_reason,
    warn,
)
from pacsref.manager.settings_options import add_settings_options, settings_changes
from pacsref.server.create import shipped_addins
from pacsref.settings import (
    SETTINGS_FILE_NAME,
    ServerSettings,
    SettingsError,
    StartMode,
    create_server_directory,
    settings_from_mapping,
    spool,
)
from pacsref.settings.edit import edit_settings_file, edited_settings

#: What ``server delete`` renames ``settings.toml`` to.
DELETED_SUFFIX = ".deleted"

#: ``--addins none``: a server with no add-in at all (an empty ``--addins ''`` is refused).
NO_ADDINS = "none"

#: Exit status of ``server status`` for a server that is not running (systemctl's and LSB's).
NOT_RUNNING_EXIT = 3


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the manager's ``server`` subcommands to the existing ``server`` group."""
    add = commands.add_parser("add", parents=[common], help="create a server directory")
    add.add_argument("name", help="the server's AE title (also its directory name)")
    add.add_argument(
        "--addins",
        metavar="NAME,...",
        help="shipped add-ins to copy, comma-separated (default: all; 'none' for no add-in)",
    )
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
        ("status", _status, "print the server's state and GetStatus (exit 3: not running)"),
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


def _chosen_addins(text: str | None) -> list[Path]:
    """The shipped add-ins ``--addins`` names; all of them when it is not given."""
    known = addin_names()
    if text is None:
        return list(known.values())
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == [NO_ADDINS]:
        return []
    if not names:
        # An empty list is more likely an unset shell variable than a wish for a server that
        # answers nothing; the explicit word makes that wish visible.
        raise ManagerError(
            f"--addins names no add-in; give NAME,... (known: {', '.join(sorted(known))}), "
            f"or --addins {NO_ADDINS} for a server without add-ins"
        )
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ManagerError(
            f"unknown add-in(s) {', '.join(unknown)}; known: {', '.join(sorted(known))} "
            f"(or {NO_ADDINS})"
        )
    return [known[n] for n in names]


def check_temporary_directory(settings: ServerSettings, server_dir: Path) -> None:
    """Refuse a ``temporary_directory`` the server could not spool into, before it is saved.

    The rule is :func:`pacsref.settings.spool.check_temporary_directory`, shared with the
    server's UpdateSettings so that a direct admin client is held to it too; here its refusal
    becomes the manager's one ``pacsref:`` line.
    """
    try:
        spool.check_temporary_directory(settings, server_dir)
    except spool.TemporaryDirectoryError as exc:
        raise ManagerError(str(exc)) from None


def _wildcard(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_unspecified


def _addresses_overlap(first: str, second: str) -> bool:
    """Whether two listening addresses can collide on one port (equal, or one is a wildcard)."""
    try:
        a, b = ipaddress.ip_address(first), ipaddress.ip_address(second)
    except ValueError:
        return first == second
    return a == b or _wildcard(a) or _wildcard(b)


def warn_port_conflicts(root: Path, name: str, settings: ServerSettings) -> None:
    """Warn (stderr) about registered servers of ``root`` listening where ``settings`` would.

    A warning, not a refusal: servers that share a port are legitimate when they never run
    together (a spare, a test copy), but usually the port was copied by mistake and the second
    start fails long after the add.
    """
    for other in daemon.all_servers(root):
        if other.name == name or other.settings.port != settings.port:
            continue
        if _addresses_overlap(other.settings.ip_address, settings.ip_address):
            print(
                f"pacsref: warning: server {other.name} also uses port {settings.port} on "
                f"{other.settings.ip_address}; the two cannot run at the same time",
                file=sys.stderr,
            )


class _Created:
    """What ``server add`` is about to create under ``directory``, to take it back on failure.

    A failed add (a full disk while the add-ins are copied) must not leave a half-made
    directory behind, eating the space and looking like a server to whoever looks next. The
    directory may exist already (made empty by an installer, as ``create_server_directory``
    allows): then only the entries this add makes go, never what was there before.
    """

    def __init__(self, directory: Path) -> None:
        self.top = directory
        while not self.top.parent.exists() and self.top.parent != self.top:
            self.top = self.top.parent  # the root itself may be made by this add
        self.before: set[Path] | None = None
        if directory.exists():
            self.top = directory
            self.before = {directory, *directory.rglob("*")}

    def remove(self) -> Path | None:
        """Remove what was created; the first path that could not be removed, or None."""
        if self.before is None:
            shutil.rmtree(self.top, ignore_errors=True)
            return self.top if self.top.exists() or self.top.is_symlink() else None
        made = sorted(set(self.top.rglob("*")) - self.before, key=lambda p: len(p.parts))
        for path in made:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return next((p for p in made if p.exists() or p.is_symlink()), None)


def _create_failure(exc: OSError, directory: Path) -> str:
    """The reason ``create_server_directory`` failed, in one line.

    ``shutil.copytree`` gathers one ``(source, destination, why)`` per file it could not copy
    into :class:`shutil.Error` (no ``strerror``): on a full disk, every add-in file. The first
    says what is wrong and where; the count says how much more.
    """
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
        entries = [e for e in exc.args[0] if isinstance(e, tuple) and len(e) == 3]
        if entries:
            _, destination, why = entries[0]
            number = re.match(r"\[Errno (\d+)\]", str(why))
            reason = os.strerror(int(number.group(1))) if number else str(why)
            more = f" and {len(entries) - 1} more file(s)" if len(entries) > 1 else ""
            return f"{reason} ({destination}{more})"
    where = f" ({exc.filename})" if exc.filename and Path(exc.filename) != directory else ""
    return f"{os_reason(exc)}{where}"


def _add(root: Path, args: argparse.Namespace) -> int:
    check_server_name(args.name)
    chosen = _chosen_addins(args.addins)
    values: dict[str, object] = {"ae_title": args.name, **settings_changes(args)}
    directory = root / args.name
    deleted = directory / (SETTINGS_FILE_NAME + DELETED_SUFFIX)
    if deleted.exists():
        restore = shlex.join(["mv", str(deleted), str(directory / SETTINGS_FILE_NAME)])
        raise ManagerError(
            f"{directory} holds the deleted server {args.name}; restore it with "
            f"`{restore}`, or move the directory away first"
        )
    try:
        settings = settings_from_mapping(values, source="command line")
    except SettingsError as exc:
        raise ManagerError(" ".join(str(exc).split())) from None
    check_temporary_directory(settings, directory)
    created = _Created(directory)
    try:
        create_server_directory(directory, settings, chosen)
    except SettingsError as exc:
        raise ManagerError(" ".join(str(exc).split())) from None
    except OSError as exc:
        left = created.remove()
        raise ManagerError(
            f"cannot create server directory {directory}: {_create_failure(exc, directory)}"
            + (f" (and could not remove the partial {left})" if left else "")
        ) from None
    print(f"added server {args.name} in {directory}")
    warn_port_conflicts(root, args.name, settings)
    return 0


def _edit(root: Path, args: argparse.Namespace) -> int:
    """Validate the changes with the whole file, then save them (stopped) or send them.

    A broken ``settings.toml`` (a bad hand edit) is edited too: the changes may be what
    repairs it, and every problem left is reported at once. Running, the server is found by
    its pidfile or admin socket, and judges the change against the same file itself.

    All of it holds the server's lock (:func:`daemon.exclusive`), as start, stop and delete
    do: the file is read, judged and saved (or the running server told) with no other edit
    saving in between, which would be undone, and no start or stop in between, which would
    make "stopped" (save the file) or "running" (send UpdateSettings) wrong by the time it
    acts. The file itself is replaced atomically (``edit_settings_file``: a temporary file,
    fsync, rename), so whatever reads it unlocked (twistd, ``list``) sees the old or the new.
    """
    server = load_server(root, args.name)
    changes = settings_changes(args)
    if not changes:
        raise ManagerError(
            "no change given; name settings with their options (pacsref server edit --help) "
            "or --set key=value"
        )
    with daemon.exclusive(server, "being edited"):
        return _edit_locked(root, server, changes)


def _edit_locked(root: Path, server: Server | BrokenServer, changes: dict[str, object]) -> int:
    """:func:`_edit` once the server's lock is held."""
    settings_file = server.directory / SETTINGS_FILE_NAME
    stopped = not daemon.running(server)  # a systemd-run server has no pidfile, only its socket
    try:
        settings: ServerSettings | None = edited_settings(
            settings_file, changes, source="command line"
        )[0]
    except SettingsError as exc:
        if stopped:
            raise ManagerError("; ".join(str(exc).splitlines())) from None
        settings = None  # a running server judges the changes itself and says why (below)
    if settings is not None and "temporary_directory" in changes:
        check_temporary_directory(settings, server.directory)
    if settings is not None and ("port" in changes or "ip_address" in changes):
        warn_port_conflicts(root, server.name, settings)
    if stopped:
        try:
            _, changed = edit_settings_file(settings_file, changes, source="command line")
        except SettingsError as exc:
            raise ManagerError("; ".join(str(exc).splitlines())) from None
        except OSError as exc:
            raise ManagerError(f"cannot save {settings_file}: {os_reason(exc)}") from None
        print(f"edited {server.name} (stopped): " + (", ".join(changed) or "no value changed"))
        return 0
    live, restart = server.call("UpdateSettings", changes)[:2]
    print(f"edited {server.name}: applied live: {', '.join(live) or 'nothing'}")
    if restart:
        stop = command_hint("server", "stop", server.name)
        start = command_hint("server", "start", server.name)
        print(
            f"{server.name}: saved, applies at next restart: {', '.join(restart)} "
            f"({stop} && {start})"
        )
    return 0


def _delete(root: Path, args: argparse.Namespace) -> int:
    """Unregister a stopped server, one whose ``settings.toml`` is broken too.

    A broken file is no reason to keep a server one no longer wants (nor to make its owner
    repair values only to throw them away), and deleting only renames that file. Whether it
    runs is told as for any server, by its pidfile's live twistd or its admin socket: it may
    run from the settings it read before the file broke. Its problem comes first as a
    warning, as for ``stop``.
    """
    server = load_server(root, args.name)
    if isinstance(server, BrokenServer):
        warn(server.reason)
    with daemon.exclusive(server, "being deleted"):  # no start may slip in meanwhile
        daemon.discard_stale_pidfile(server)
        return _unregister(server)


def _unregister(server: Server | BrokenServer) -> int:
    other = None if daemon.running(server) else daemon.answering_socket(server.directory)
    if other is not None:
        raise ManagerError(
            f"server {server.name} is running (its admin socket {other} answers, not the one "
            "its settings.toml names: run by systemd since an edit?); stop it first: "
            f"systemctl stop pacsref-{server.name}"
        )
    if daemon.running(server):
        pid = server.pid()
        if pid is not None:
            how, stop = f"pid {pid}", command_hint("server", "stop", server.name)
        else:  # no pidfile: the foreground server of a systemd unit
            how = "its admin socket answers: run by systemd?"
            stop = f"systemctl stop pacsref-{server.name}"
        if isinstance(server, BrokenServer):
            how += "; it runs with the settings it read before its settings.toml broke"
        raise ManagerError(f"server {server.name} is running ({how}); stop it first: {stop}")
    settings_file = server.directory / SETTINGS_FILE_NAME
    deleted = settings_file.with_name(SETTINGS_FILE_NAME + DELETED_SUFFIX)
    if deleted.exists():
        raise ManagerError(f"{deleted} is in the way (an older deleted server); move it first")
    try:
        settings_file.rename(deleted)
    except OSError as exc:
        raise ManagerError(f"cannot unregister {server.name}: {os_reason(exc)}") from None
    print(
        f"deleted server {server.name}; its directory {server.directory} remains "
        f"(restore: {shlex.join(['mv', str(deleted), str(settings_file)])})"
    )
    return 0


def _list(root: Path, args: argparse.Namespace) -> int:
    """The table on stdout; for each broken server a ``broken`` row and its reason on stderr."""
    print(f"{'NAME':<17} {'AE':<17} {'PORT':>5}  {'STATE':<8} PID")
    for server in daemon.scan(root):
        pid = server.pid()
        shown = pid if pid is not None else "-"
        if isinstance(server, BrokenServer):
            print(f"{server.name:<17} {'?':<17} {'?':>5}  {'broken':<8} {shown}")
            print(f"pacsref: warning: {server.reason}", file=sys.stderr)
            continue
        print(
            f"{server.name:<17} {server.settings.ae_title:<17} {server.settings.port:>5}  "
            f"{server.state():<8} {shown}"
        )
    return 0


def _start(root: Path, args: argparse.Namespace) -> int:
    server = find_server(root, args.name)
    pid = daemon.start(server)
    where = f"{server.settings.ip_address}:{server.settings.port}"
    print(f"started {server.name} (pid {pid}) on {where}")
    return 0


def _reachable(root: Path, name: str) -> Server | BrokenServer:
    """The server ``name``, broken or not, for the commands that need only its pidfile or
    admin socket (stop, pause, resume, status), as ``stop-all`` does; a broken one's problem
    comes first as a warning, so the file gets repaired."""
    server = load_server(root, name)
    if isinstance(server, BrokenServer):
        warn(server.reason)
    return server


def _stop(root: Path, args: argparse.Namespace) -> int:
    server = _reachable(root, args.name)
    pid = daemon.stop(server)
    print(f"stopped {server.name} (pid {pid})")
    return 0


def _pause(root: Path, args: argparse.Namespace) -> int:
    _reachable(root, args.name).call("Pause")
    print(f"paused {args.name}")
    return 0


def _resume(root: Path, args: argparse.Namespace) -> int:
    _reachable(root, args.name).call("Resume")
    print(f"resumed {args.name}")
    return 0


def _status(root: Path, args: argparse.Namespace) -> int:
    """``NAME: pid PID {GetStatus JSON}``, or ``NAME: stopped`` and exit status 3.

    "Not running" is an answer, not a failure (the command worked), but a script must tell it
    from "running" without parsing: hence its own exit status, the one systemctl uses.
    """
    server = _reachable(root, args.name)
    if not daemon.running(server):
        print(f"{server.name}: stopped")
        return NOT_RUNNING_EXIT
    pid = server.pid()
    data = server.call("GetStatus")
    status = data[0] if data else {}
    # A server run in the foreground (systemd's unit) has no pidfile: "pid -".
    shown = pid if pid is not None else "-"
    print(f"{server.name}: pid {shown} " + json.dumps(status, sort_keys=True))
    return 0


_PAST = {"start": "started", "stop": "stopped"}


def _each(servers: list[Server | BrokenServer], action: str) -> int:
    """Start or stop each server, going on after a failure; ManagerError if any failed.

    A broken server is only reached here when it must be acted on: stopping one that runs
    needs just its pidfile, starting one is a failure to report.
    """
    failed = 0
    for server in servers:
        try:
            if action == "stop":
                pid = daemon.stop(server)
            elif isinstance(server, BrokenServer):
                raise ManagerError(f"server {server.name} cannot be started: {server.reason}")
            else:
                pid = daemon.start(server)
        except ManagerError as exc:
            print(f"pacsref: {exc}", file=sys.stderr)
            failed += 1
        else:
            print(f"{_PAST[action]} {server.name} (pid {pid})")
    if failed:
        raise ManagerError(f"{failed} server(s) failed to {action}")
    return 0


def _start_all(root: Path, args: argparse.Namespace) -> int:
    """Every stopped automatic server; a broken one counts as failed unless its file still
    says it is not automatic (then start-all would not have started it anyway)."""
    chosen: list[Server | BrokenServer] = []
    for server in daemon.scan(root):
        if server.pid() is not None:
            continue
        if isinstance(server, BrokenServer):
            if server.start_mode() in (None, StartMode.AUTOMATIC):
                chosen.append(server)
        elif server.settings.start_mode is StartMode.AUTOMATIC:
            chosen.append(server)
    return _each(chosen, "start")


def _stop_all(root: Path, args: argparse.Namespace) -> int:
    return _each([s for s in daemon.scan(root) if s.pid() is not None], "stop")


def systemd_escape(text: str, *, exec_line: bool = False) -> str:
    """``text`` as a systemd unit setting takes it literally (systemd.unit(5), .service(5)).

    ``%`` starts a specifier in every setting the unit writes (``Description``,
    ``WorkingDirectory``, ``Environment``, ``ExecStart``): ``%%`` is a ``%``. Only the
    arguments of a command line expand ``$VAR`` (not its program): there ``$$`` is a ``$``.
    An AE title may hold both (PS3.5), and the root folder any character.
    """
    text = text.replace("%", "%%")
    return text.replace("$", "$$") if exec_line else text


def systemd_word(text: str, *, exec_line: bool = False) -> str:
    """One argument of a systemd command line or ``Environment=`` assignment.

    systemd splits these on whitespace, honours double and single quotes and reads C-style
    backslash escapes; a word holding any of those, or ``;`` (which separates commands), is
    double-quoted with ``\\`` and ``\"`` escaped.
    """
    text = systemd_escape(text, exec_line=exec_line)
    if text and not any(c.isspace() or c in "\"';\\" for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unit_text(server: Server) -> str:
    """A systemd unit running ``server`` in the foreground (Type=simple)."""
    directory = server.directory.resolve()
    program, *arguments = daemon.twistd_command(server, daemon=False)
    # systemd expands $VAR in the arguments only, never in the program's path.
    command = " ".join(
        [systemd_word(program), *(systemd_word(arg, exec_line=True) for arg in arguments)]
    )
    lines = [
        "[Unit]",
        f"Description={systemd_escape(f'pacsref DICOM server {server.settings.ae_title}')}",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"WorkingDirectory={systemd_escape(str(directory))}",
    ]
    extra = daemon._pythonpath()
    if extra is not None:
        lines.append(f"Environment={systemd_word('PYTHONPATH=' + extra)}")
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
