"""The ``pacsref`` command.

This first cut offers what the core provides; the service manager (server
add/edit/start/stop, AE titles, clients) grows here with the admin issue::

    pacsref create --server-dir DIR --ae-title AE [--port P] [--set key=value]
    pacsref echo --host H --port P --called-ae AE [--calling-ae X]
    pacsref --version

``pacsref echo`` issues the C-ECHO through the server framework's own
``IDicomRequest`` requestor, so it also checks that code against any peer.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pacsref.server import create as create_command


def _version() -> str:
    try:
        return version("pacsref")
    except PackageNotFoundError:
        return "0+source"


def _echo_main(args: argparse.Namespace) -> int:
    """C-ECHO the peer and translate the outcome into an exit status (0 = success)."""
    from twisted.internet import reactor as default_reactor

    from pacsref.addin import AeInfo
    from pacsref.server.requestor import DicomRequestor
    from pacsref.settings import ServerSettings

    settings = ServerSettings(ae_title=args.calling_ae, reconnect_timeout=args.timeout)
    result: dict[str, Any] = {}
    requestor = DicomRequestor(default_reactor, settings)
    d = requestor.echo(AeInfo(args.called_ae, args.host, args.port), timeout=args.timeout)
    d.addCallbacks(
        lambda status: result.update(status=status),
        lambda failure: result.update(error=failure.getErrorMessage() or repr(failure.value)),
    )
    d.addBoth(lambda _: default_reactor.stop())  # type: ignore[attr-defined]
    default_reactor.run()  # type: ignore[attr-defined]
    if "error" in result:
        print(f"pacsref echo: {result['error']}", file=sys.stderr)
        return 1
    status = result["status"]
    print(f"C-ECHO {args.called_ae}@{args.host}:{args.port}: status 0x{status:04X}")
    return 0 if status == 0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pacsref`` console script."""
    parser = argparse.ArgumentParser(prog="pacsref", description="pacsref service manager")
    parser.add_argument("--version", action="version", version=f"pacsref {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "create",
        help="create a server directory (see: pacsref create --help)",
        add_help=False,
    )
    echo = commands.add_parser("echo", help="C-ECHO a DICOM peer with pacsref's own requestor")
    echo.add_argument("--host", required=True)
    echo.add_argument("--port", type=int, required=True)
    echo.add_argument("--called-ae", required=True, help="the peer's AE title")
    echo.add_argument("--calling-ae", default="PACSREF", help="our AE title (default PACSREF)")
    echo.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["create"]:
        return create_command.main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "echo":
        return _echo_main(args)
    parser.error(f"unknown command {args.command}")  # pragma: no cover
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
