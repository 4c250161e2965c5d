"""``pacsref clients list|disconnect SERVER [ID]`` over the admin socket."""

from __future__ import annotations

import argparse
from pathlib import Path

from pacsref.manager.daemon import find_server


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser("clients", help="clients connected to a running server")
    sub = group.add_subparsers(dest="clients_command", required=True)
    listing = sub.add_parser("list", parents=[common], help="list connected clients")
    listing.add_argument("name", help="the server")
    listing.set_defaults(handler=_list)
    disconnect = sub.add_parser("disconnect", parents=[common], help="disconnect a client")
    disconnect.add_argument("name", help="the server")
    disconnect.add_argument("id", type=int, help="the client's id (from clients list)")
    disconnect.set_defaults(handler=_disconnect)


def _list(root: Path, args: argparse.Namespace) -> int:
    data = find_server(root, args.name).call("GetClients")
    print(f"{'ID':>4}  {'PEER':<21} {'CALLING':<17} {'STATE':<11} CONNECTED")
    for client in data[0] if data else []:
        peer = f"{client.get('ip', '')}:{client.get('port', '')}"
        print(
            f"{client.get('id', ''):>4}  {peer:<21} {client.get('ae_title', '') or '-':<17} "
            f"{client.get('state', ''):<11} {client.get('connected_time', '')}"
        )
    return 0


def _disconnect(root: Path, args: argparse.Namespace) -> int:
    find_server(root, args.name).call("DisconnectClient", args.id)
    print(f"disconnected client {args.id} from {args.name}")
    return 0
