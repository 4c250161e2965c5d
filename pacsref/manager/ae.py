"""``pacsref ae list|add|update|remove SERVER ...``: a server's AE title table.

A running server (its pidfile names a live process, or its admin socket answers, as under
systemd) is asked over the admin socket, so the table it uses changes at once. A stopped
server's table is its ``aetitles.toml``, edited here through the same class the server loads
it with (:class:`~pacsref.addin.aetitles_file.FileAeTitles`), so the entries are judged by the
same rules and the file is written atomically; the server reads it when it starts. An
administrator registers the modalities before the first start as often as afterwards.

``add``, ``update`` and ``remove`` hold the server's lock
(:func:`~pacsref.manager.daemon.exclusive`) from telling whether it runs until the file is
saved or the server has answered, as ``server edit`` does: no start can slip in between (to
read a file still being judged, or to start a server whose file is then rewritten behind it
by an edit that found it stopped), and a second edit meanwhile is refused instead of saving
over the first one's change.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from pacsref.addin import AeInfo, AeTitleError
from pacsref.addin.aetitles import resolve_addresses
from pacsref.addin.aetitles_file import FileAeTitles
from pacsref.manager.daemon import (
    ManagerError,
    Server,
    call_running,
    exclusive,
    find_server,
    running,
)

_SERVER_HELP = "the server (its directory name under the root)"
_FLAGS = "move_destination", "secure"
#: What the server's lock file says an ``add``, ``update`` or ``remove`` is doing (as for
#: ``server edit``: it is the same file, and the same kind of change).
_EDITING = "being edited"


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser(
        "ae", help="the AE titles a server knows (running: live; stopped: its aetitles.toml)"
    )
    sub = group.add_subparsers(dest="ae_command", required=True, metavar="COMMAND")
    listing = sub.add_parser("list", parents=[common], help="list AE titles")
    listing.add_argument("name", help=_SERVER_HELP)
    listing.set_defaults(handler=_list)
    add = sub.add_parser("add", parents=[common], help="add an AE title")
    add.add_argument("name", help=_SERVER_HELP)
    add.add_argument("ae_title", help="the peer's AE title (1-16 characters, no backslash)")
    add.add_argument("--host", required=True, help="the peer's IP address or host name")
    add.add_argument(
        "--port", type=int, required=True, metavar="PORT", help="the peer's DICOM port, 1-65535"
    )
    _options(add)
    add.set_defaults(handler=_add)
    update = sub.add_parser("update", parents=[common], help="change an AE title's entry")
    update.add_argument("name", help=_SERVER_HELP)
    update.add_argument("ae_title", help="the entry to change")
    update.add_argument("--new-ae-title", metavar="AE", help="rename the entry")
    update.add_argument("--host", help="the peer's IP address or host name")
    update.add_argument("--port", type=int, metavar="PORT", help="the peer's DICOM port, 1-65535")
    _options(update)
    update.set_defaults(handler=_update)
    remove = sub.add_parser("remove", parents=[common], help="remove an AE title")
    remove.add_argument("name", help=_SERVER_HELP)
    remove.add_argument("ae_title", help="the entry to remove")
    remove.set_defaults(handler=_remove)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--description", metavar="TEXT", help="free text for the administrator")
    parser.add_argument(
        "--move-destination",
        action=argparse.BooleanOptionalAction,
        help="C-MOVE may send to this peer (default: yes; --no-move-destination for a "
        "modality that only sends)",
    )
    parser.add_argument(
        "--secure",
        action=argparse.BooleanOptionalAction,
        help="connect to this peer with DICOM TLS (default: no)",
    )


def _print(info: dict[str, Any]) -> None:
    flags = [f for f in _FLAGS if info.get(f)]
    print(
        f"{info.get('ae_title', ''):<17} {info.get('host', '')}:{info.get('port', '')}"
        f"  {','.join(flags) or '-'}  {info.get('description', '')}".rstrip()
    )


def _fields(args: argparse.Namespace, info: dict[str, Any]) -> dict[str, Any]:
    for key in ("host", "port", "description", *_FLAGS):
        value = getattr(args, key, None)
        if value is not None:
            info[key] = value
    return info


def _unresolved(info: AeInfo) -> frozenset[str]:
    """No DNS for the entries the command does not touch: only the server needs addresses."""
    return frozenset()


def _table(server: Server) -> FileAeTitles:
    """The stopped server's ``aetitles.toml`` (a missing file is an empty table)."""
    try:
        return FileAeTitles.in_server_dir(server.directory, resolver=_unresolved)
    except AeTitleError as exc:
        raise ManagerError(f"server {server.name}: {' '.join(str(exc).split())}") from None


def _on_file(server: Server, action: Any) -> Any:
    """Run ``action(table)`` on the stopped server's table, its refusals as ManagerError."""
    table = _table(server)
    try:
        return action(table)
    except (AeTitleError, TypeError) as exc:
        raise ManagerError(f"server {server.name}: {' '.join(str(exc).split())}") from None


def _info(server: Server, fields: dict[str, Any]) -> AeInfo:
    """The entry to save, judged as the server judges it; its host looked up once, so a name
    that does not resolve is warned about now (the entry is still saved, as the server does)."""
    try:
        info = AeInfo(**fields)
    except AeTitleError as exc:
        raise ManagerError(f"server {server.name}: {exc}") from None
    resolve_addresses(info)
    return info


def _list(root: Path, args: argparse.Namespace) -> int:
    server = find_server(root, args.name)
    if running(server):
        data = call_running(server, "GetAeTitles")
        entries = data[0] if data else []
    else:
        entries = [dataclasses.asdict(i) for i in _on_file(server, lambda t: t.list())]
    for info in entries:
        _print(info)
    return 0


def _add(root: Path, args: argparse.Namespace) -> int:
    server = find_server(root, args.name)
    info = _fields(args, {"ae_title": args.ae_title})
    with exclusive(server, _EDITING):
        if running(server):
            data = call_running(server, "AddAeTitle", info)
            _print(data[0] if data else info)
        else:
            entry = _info(server, info)
            _print(dataclasses.asdict(_on_file(server, lambda t: t.add(entry))))
    return 0


def _update(root: Path, args: argparse.Namespace) -> int:
    changes = _fields(args, {})
    if args.new_ae_title:
        changes["ae_title"] = args.new_ae_title
    if not changes:
        raise ManagerError(
            "no change given; name what changes: --new-ae-title, --host, --port, "
            "--description, --[no-]move-destination, --[no-]secure"
        )
    server = find_server(root, args.name)
    with exclusive(server, _EDITING):  # the entry read is the one changed: no edit between
        _update_locked(server, args, changes)
    return 0


def _update_locked(server: Server, args: argparse.Namespace, changes: dict[str, Any]) -> None:
    """:func:`_update` once the server's lock is held."""
    live = running(server)
    if live:
        known = call_running(server, "GetAeTitles")
        entries = {str(e.get("ae_title", "")).strip(): e for e in (known[0] if known else [])}
    else:
        listed = _on_file(server, lambda t: t.list())
        entries = {i.ae_title: dataclasses.asdict(i) for i in listed}
    current = entries.get(args.ae_title.strip())
    if current is None:
        raise ManagerError(f"server {server.name} has no AE title {args.ae_title!r}")
    info = {**current, **changes}
    if live:
        data = call_running(server, "UpdateAeTitle", args.ae_title, info)
        _print(data[1] if len(data) > 1 else info)
    else:
        entry = _info(server, info)
        _print(dataclasses.asdict(_on_file(server, lambda t: t.update(args.ae_title, entry))))


def _remove(root: Path, args: argparse.Namespace) -> int:
    server = find_server(root, args.name)
    with exclusive(server, _EDITING):
        if running(server):
            call_running(server, "RemoveAeTitle", args.ae_title)
        else:
            _on_file(server, lambda t: t.remove(args.ae_title))
    print(f"removed {args.ae_title} from {args.name}")
    return 0
