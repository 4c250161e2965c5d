"""``pacsref ae list|add|update|remove SERVER ...`` over the admin socket."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pacsref.manager.daemon import ManagerError, find_server


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser("ae", help="the AE titles a running server knows")
    sub = group.add_subparsers(dest="ae_command", required=True)
    listing = sub.add_parser("list", parents=[common], help="list AE titles")
    listing.add_argument("name", help="the server")
    listing.set_defaults(handler=_list)
    add = sub.add_parser("add", parents=[common], help="add an AE title")
    add.add_argument("name", help="the server")
    add.add_argument("ae_title")
    add.add_argument("--host", required=True)
    add.add_argument("--port", type=int, required=True)
    _options(add)
    add.set_defaults(handler=_add)
    update = sub.add_parser("update", parents=[common], help="change an AE title's entry")
    update.add_argument("name", help="the server")
    update.add_argument("ae_title", help="the entry to change")
    update.add_argument("--new-ae-title", help="rename the entry")
    update.add_argument("--host")
    update.add_argument("--port", type=int)
    _options(update)
    update.set_defaults(handler=_update)
    remove = sub.add_parser("remove", parents=[common], help="remove an AE title")
    remove.add_argument("name", help="the server")
    remove.add_argument("ae_title")
    remove.set_defaults(handler=_remove)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--description")
    parser.add_argument("--move-destination", action=argparse.BooleanOptionalAction)
    parser.add_argument("--secure", action=argparse.BooleanOptionalAction)


def _print(info: dict[str, Any]) -> None:
    flags = [f for f in ("move_destination", "secure") if info.get(f)]
    print(
        f"{info.get('ae_title', ''):<17} {info.get('host', '')}:{info.get('port', '')}"
        f"  {','.join(flags) or '-'}  {info.get('description', '')}".rstrip()
    )


def _list(root: Path, args: argparse.Namespace) -> int:
    data = find_server(root, args.name).call("GetAeTitles")
    for info in data[0] if data else []:
        _print(info)
    return 0


def _fields(args: argparse.Namespace, info: dict[str, Any]) -> dict[str, Any]:
    for key in ("host", "port", "description", "move_destination", "secure"):
        value = getattr(args, key, None)
        if value is not None:
            info[key] = value
    return info


def _add(root: Path, args: argparse.Namespace) -> int:
    info = _fields(args, {"ae_title": args.ae_title})
    data = find_server(root, args.name).call("AddAeTitle", info)
    _print(data[0] if data else info)
    return 0


def _update(root: Path, args: argparse.Namespace) -> int:
    server = find_server(root, args.name)
    known = server.call("GetAeTitles")
    entries = {str(e.get("ae_title", "")).strip(): e for e in (known[0] if known else [])}
    current = entries.get(args.ae_title.strip())
    if current is None:
        raise ManagerError(f"server {args.name} has no AE title {args.ae_title!r}")
    info = _fields(args, dict(current))
    if args.new_ae_title:
        info["ae_title"] = args.new_ae_title
    data = server.call("UpdateAeTitle", args.ae_title, info)
    _print(data[1] if len(data) > 1 else info)
    return 0


def _remove(root: Path, args: argparse.Namespace) -> int:
    find_server(root, args.name).call("RemoveAeTitle", args.ae_title)
    print(f"removed {args.ae_title} from {args.name}")
    return 0
