"""``pacsref clients list|disconnect|watch SERVER [ID]`` over the admin socket."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pacsref.admin.client import AdminClient, AdminConnectionError
from pacsref.admin.messages import ServiceMessage
from pacsref.manager.daemon import ManagerError, find_server, running


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser("clients", help="clients connected to a running server")
    sub = group.add_subparsers(dest="clients_command", required=True, metavar="COMMAND")
    listing = sub.add_parser("list", parents=[common], help="list connected clients")
    listing.add_argument("name", help="the server")
    listing.set_defaults(handler=_list)
    disconnect = sub.add_parser("disconnect", parents=[common], help="disconnect a client")
    disconnect.add_argument("name", help="the server")
    disconnect.add_argument("id", type=int, help="the client's id (from clients list)")
    disconnect.set_defaults(handler=_disconnect)
    watch = sub.add_parser(
        "watch", parents=[common], help="print the server's notifications live (Ctrl-C stops)"
    )
    watch.add_argument("name", help="the server")
    watch.add_argument(
        "--json", action="store_true", help="print each notification's ServiceMessage line as is"
    )
    watch.set_defaults(handler=_watch)


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


def _peer(client: dict[str, Any]) -> str:
    return f"#{client.get('id', '?')} {client.get('ip', '')}:{client.get('port', '')}"


def _calling(client: dict[str, Any], fallback: str = "") -> str:
    return str(client.get("ae_title") or fallback or "-")


def _connected(data: list[Any]) -> str:
    return _peer(data[0])


def _associated(data: list[Any]) -> str:
    client = data[0]
    return f"{_peer(client)} {_calling(client)} -> {client.get('called_ae_title', '')}"


def _disconnected(data: list[Any]) -> str:
    client, reason = data[0], data[1]
    return f"{_peer(client)} {_calling(client)} ({reason or 'closed'})"


def _action(data: list[Any]) -> str:
    action, calling, client_id = data[0], data[1], data[2]
    return f"#{client_id} {calling or '-'} {action}"


def _timed_out(data: list[Any]) -> str:
    client, timeout = data[0], data[1]
    return f"{_peer(client)} {_calling(client)} idle for {timeout:g} s, aborted"


def _refused(data: list[Any]) -> str:
    refusal = data[0]
    client = refusal.get("client") or {}
    calling = _calling(client, refusal.get("calling_ae_title", ""))
    return (
        f"{_peer(client)} {calling} -> {refusal.get('called_ae_title', '')}: "
        f"{refusal.get('reject_text', refusal.get('reject'))} ({refusal.get('why', '')})"
    )


def _no_data(text: str) -> Callable[[list[Any]], str]:
    """A formatter for a data-less notification; data where none is expected is a new shape."""

    def describe(data: list[Any]) -> str:
        if data:
            raise ValueError("unexpected data")
        return text

    return describe


def _stopping(data: list[Any]) -> str:
    timeout, clients = data[0], data[1]
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError("stop_timeout is not a number")
    return (
        f"new associations are refused (2, 3, 1); {clients} client(s) have {timeout:g} s to finish"
    )


#: One formatter per notification name. Kept as a table (rather than a chain of ifs) so that a
#: test can check it covers every entry of :data:`~pacsref.admin.messages.NOTIFICATIONS`: a
#: notification added to the protocol without a line here would otherwise only show up as raw
#: JSON in front of an administrator.
FORMATTERS: dict[str, Callable[[list[Any]], str]] = {
    "ClientConnect": _connected,
    "ClientAssociated": _associated,
    "ClientDisconnected": _disconnected,
    "ClientAction": _action,
    "ClientTimedOut": _timed_out,
    "AssociationRefused": _refused,
    "ServerPaused": _no_data("new associations are refused (2, 3, 1)"),
    "ServerResumed": _no_data("new associations are accepted again"),
    "ServerStopping": _stopping,
}


def describe(note: ServiceMessage) -> str:
    """The key fields of a notification in words, for an administrator following the server.

    Unknown or oddly shaped notifications fall back to their raw data rather than failing:
    a watcher that dies on a server newer than itself would hide exactly what it is for.
    """
    formatter = FORMATTERS.get(note.message)
    if formatter is not None:
        try:
            return formatter(note.data)
        except (IndexError, KeyError, TypeError, AttributeError, ValueError):
            pass
    return json.dumps(note.data, separators=(",", ":"))


def format_notification(note: ServiceMessage, at: float | None = None) -> str:
    """One line: local time, the notification's name, its key fields."""
    stamp = time.strftime("%H:%M:%S", time.localtime(at))
    return f"{stamp} {note.message:<18} {describe(note)}".rstrip()


def _watch(root: Path, args: argparse.Namespace) -> int:
    """Print notifications until Ctrl-C (exit 0) or until the server goes away (exit 1).

    A GetStatus first: once it is answered the server has registered this connection, so
    nothing that happens after the "watching" line on stderr can be missed (a test, or an
    administrator, may act as soon as it appears). That call is bounded; the wait for
    notifications is not, since a quiet server is not a broken one.
    """
    server = find_server(root, args.name)
    if not running(server):  # pidfile or admin socket: a systemd-run server has no pidfile
        raise ManagerError(f"server {args.name} is not running")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with AdminClient(sock=sock, timeout=10.0) as admin:
            try:
                sock.connect(str(server.socket_path))
                status = admin.call("GetStatus")
            except (AdminConnectionError, OSError) as exc:
                raise ManagerError(f"server {args.name}: {exc}") from None
            state = status.data[0].get("state", "?") if status.success and status.data else "?"
            print(f"watching {args.name} ({state}); Ctrl-C to stop", file=sys.stderr, flush=True)
            sock.settimeout(None)
            for note in admin.notifications():
                line = note.to_json() if args.json else format_notification(note)
                print(line, flush=True)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # The reader went away (``| head``): an end, not an error. Point stdout at devnull so
        # the interpreter's final flush does not complain about the pipe a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        raise ManagerError(f"server {args.name}: admin connection failed: {exc}") from None
    raise ManagerError(f"server {args.name} closed the admin connection (stopped?)")
