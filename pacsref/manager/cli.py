"""The ``pacsref`` command.

The core commands and the service manager (see docs/manager.md)::

    pacsref [--root ROOT] server add|edit|delete|list|start|stop|pause|resume|status|unit
    pacsref [--root ROOT] server start-all|stop-all
    pacsref [--root ROOT] ae list|add|update|remove SERVER ...
    pacsref [--root ROOT] clients list|disconnect|watch SERVER [ID]
    pacsref [--root ROOT] addins list SERVER | addins config SERVER NAME [KEY=VALUE ...]
    pacsref create --server-dir DIR --ae-title AE [--port P] [--set key=value]
    pacsref echo --host H --port P --called-ae AE [--calling-ae X]
        [--tls --cert CERT --key KEY --ca CA [--passphrase-file F]]
    pacsref server check NAME [--root ROOT] [--repair]
    pacsref --version

``pacsref echo`` issues the C-ECHO through the server framework's own
``IDicomRequest`` requestor, so it also checks that code against any peer.

Exit status: 0 done, 1 failed (one line ``pacsref: <reason>`` on standard error), 2 bad usage
(one line too), 3 ``server status`` of a server that is not running, 130 interrupted (Ctrl-C;
one line saying what had been done, e.g. a SIGTERM already sent).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NoReturn

from pacsref.manager import addins as addins_commands
from pacsref.manager import ae as ae_commands
from pacsref.manager import clients as clients_commands
from pacsref.manager import servers as server_commands_module
from pacsref.manager.daemon import ManagerError, check_server_name, os_reason
from pacsref.manager.daemon import default_root as default_root
from pacsref.server import create as create_command

#: Exit status of a command line that could not be understood (argparse's, and the convention).
USAGE_EXIT = 2

#: Exit status after Ctrl-C: 128 + SIGINT, what a shell reports for a command SIGINT ended.
INTERRUPTED_EXIT = 130

#: Where the innermost (sub)command's parser leaves itself in the parsed namespace.
_PARSER_ATTR = "_manager_parser"

_ARGPARSE_TYPES = {"int": "an integer", "float": "a number"}


class ManagerArgumentParser(argparse.ArgumentParser):
    """argparse with its errors as one line ``pacsref: <reason>``, exit status 2.

    argparse's own two-line usage dump breaks the promise that every failure is one line a
    script can log; the usage is one ``--help`` away, which the line points to.
    """

    def error(self, message: str) -> NoReturn:
        message = re.sub(
            r"invalid (int|float) value: (.*)",
            lambda m: f"expected {_ARGPARSE_TYPES[m.group(1)]}, not {m.group(2)}",
            message,
        )
        where = self.prog.removeprefix("pacsref").strip()
        prefix = f"{where}: " if where else ""
        self.exit(USAGE_EXIT, f"pacsref: {prefix}{message} (see: {self.prog} --help)\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Parse, remembering the innermost subcommand's parser in the namespace.

        argparse hands arguments a subcommand does not know up to the top parser, whose error
        would then name neither the subcommand nor its ``--help``: :func:`main` reports them
        with the parser this leaves behind. Subcommands parse first, so the innermost one
        sets the attribute and the outer ones keep it.
        """
        parsed, extras = super().parse_known_args(args, namespace)
        if getattr(parsed, _PARSER_ATTR, None) is None:
            setattr(parsed, _PARSER_ATTR, self)
        return parsed, extras


class _OneLineLog:
    """Twisted log events (the add-in loader's, the AE table's) as one line each on stderr.

    Before logging begins, Twisted prints critical events, tracebacks included, to standard
    error; a command's user wants the one line saying which add-in failed and why. Events that
    only carry a traceback are dropped: the loader logs a one-line error for each of them.
    """

    def __call__(self, event: dict[str, Any]) -> None:
        from twisted.logger import LogLevel, formatEvent

        level = event.get("log_level")
        if level is None or level < LogLevel.warn or "log_failure" in event:
            return
        text = " ".join(formatEvent(event).split())
        if event.get("log_namespace", "").startswith("twisted.logger"):
            return  # e.g. "logging begun twice" when main() runs more than once in one process
        print(f"pacsref: warning: {text}", file=sys.stderr, flush=True)


_logging_begun = False


def _begin_logging() -> None:
    global _logging_begun
    if _logging_begun:
        return
    from twisted.logger import globalLogBeginner

    globalLogBeginner.beginLoggingTo([_OneLineLog()], discardBuffer=True, redirectStandardIO=False)
    _logging_begun = True


def _version() -> str:
    try:
        return version("pacsref")
    except PackageNotFoundError:
        return "0+source"


def _echo_main(args: argparse.Namespace) -> int:
    """C-ECHO the peer and translate the outcome into an exit status (0 = success)."""
    from twisted.internet import reactor as default_reactor

    from pacsref.addin import AeInfo, AeTitleError
    from pacsref.server.requestor import DicomRequestor
    from pacsref.settings import ServerSettings, SettingsError

    def usage(problem: str) -> int:
        print(f"pacsref echo: {problem}", file=sys.stderr)
        return 2

    given = [f"--{n.replace('_', '-')}" for n in ("cert", "key", "ca", "passphrase_file")
             if getattr(args, n)]  # fmt: skip
    if given and not args.tls:  # meant TLS: never fall back to plain TCP silently
        return usage(f"{', '.join(given)} need --tls")
    if not 1 <= args.port <= 65535:
        return usage(f"--port {args.port}: not a TCP port (1-65535)")
    if not args.timeout > 0 or args.timeout == float("inf"):
        return usage(f"--timeout {args.timeout:g}: must be a positive number of seconds")
    try:
        settings = ServerSettings(ae_title=args.calling_ae, reconnect_timeout=args.timeout)
    except SettingsError as exc:
        return usage(f"--calling-ae: {'; '.join(str(exc).splitlines())}")
    try:
        peer = AeInfo(args.called_ae, args.host, args.port, secure=args.tls)
    except AeTitleError as exc:
        return usage(f"--called-ae/--host: {exc}")
    result: dict[str, Any] = {}
    requestor = DicomRequestor(default_reactor, settings)
    if args.tls:
        problem = _tls_for(requestor, args)
        if problem is not None:
            return usage(problem)
    d = requestor.echo(peer, timeout=args.timeout)
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


def _tls_for(requestor: Any, args: argparse.Namespace) -> str | None:
    """Give ``requestor`` TLS from --cert/--key/--ca; the problem in one line, or None.

    The same code path as a server's outbound TLS (BCP 195 options, the peer's
    certificate checked against --host with service_identity).
    """
    from pacsref.security import SecureTransport, StaticSecurity, TLSConfigurationError

    missing = [f"--{name}" for name in ("cert", "key", "ca") if not getattr(args, name)]
    if missing:
        return f"--tls needs {', '.join(missing)}"
    passphrase = None
    if args.passphrase_file:
        try:
            lines = Path(args.passphrase_file).read_bytes().splitlines()
        except OSError as exc:
            return f"--passphrase-file {args.passphrase_file}: {exc.strerror or exc}"
        passphrase = lines[0] if lines else b""
    security = StaticSecurity(
        certificate=Path(args.cert),
        private_key=Path(args.key),
        trust_roots=(Path(args.ca),),
        passphrase=passphrase,
    )
    try:
        requestor.security = SecureTransport.build(security)
    except (TLSConfigurationError, OSError) as exc:
        return str(exc)
    return None


def _check_main(args: argparse.Namespace) -> int:
    """Verify (and with --repair repair) that a server's index and stored files agree.

    Uses the storage add-in *of that server* (its ``addins/`` copy and its options), so the
    check reads the index exactly as the server writes it. Exit status 0 when they agree
    (after repair, if repairing), 1 when they do not, 2 when the check cannot run.
    """
    from pacsref.addin import load_addins

    try:
        check_server_name(args.name)
    except ManagerError as exc:
        print(f"pacsref server check: {exc}", file=sys.stderr)
        return 2
    server_dir = Path(getattr(args, "root", None) or default_root()) / args.name
    if not (server_dir / "settings.toml").is_file():
        print(f"pacsref server check: {server_dir} is not a server directory", file=sys.stderr)
        return 2
    result = load_addins(server_dir / "addins", entry_point_group=None, strict=False)
    checkers = [a for a in result.addins if callable(getattr(a, "check", None))]
    if not checkers:
        problems = "; ".join(f"{f.name}: {f.error}" for f in result.failures) or "none installed"
        print(f"pacsref server check: no storage add-in to check ({problems})", file=sys.stderr)
        return 2
    clean = True
    for checker in checkers:
        try:
            report = checker.check(repair=args.repair)
        except Exception as exc:  # a broken index or data directory: say so, no traceback
            print(
                f"pacsref server check: {checker.name} in {server_dir} cannot be checked: "
                f"{type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
            return 2
        for line in report.lines():
            print(f"{checker.name}: {line}")
        clean = clean and report.clean
    return 0 if clean else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pacsref`` console script.

    Ctrl-C ends any command with one line and exit status 130, never a traceback: the line
    says what had already been done when it is known (``server stop``: the SIGTERM went out
    and the server goes on stopping). ``clients watch`` ends on Ctrl-C by design (status 0).
    """
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:
        done = str(exc)
        print(f"pacsref: interrupted{'; ' + done if done else ''}", file=sys.stderr)
        return INTERRUPTED_EXIT


def _main(argv: Sequence[str] | None) -> int:
    parser = ManagerArgumentParser(
        prog="pacsref",
        description="pacsref service manager",
        epilog="exit status: 0 done, 1 failed, 2 bad usage, 3 (server status) not running, "
        "130 interrupted (Ctrl-C)",
    )
    parser.add_argument("--version", action="version", version=f"pacsref {_version()}")
    root_help = "directory holding the servers (default: $PACSREF_ROOT or ./pacsref-data)"
    parser.add_argument("--root", default=argparse.SUPPRESS, help=root_help)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", default=argparse.SUPPRESS, help=root_help)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
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
    echo.add_argument(
        "--tls", action="store_true", help="DICOM TLS (BCP 195; needs --cert, --key, --ca)"
    )
    echo.add_argument("--cert", help="our PEM certificate chain, leaf first (with --tls)")
    echo.add_argument("--key", help="its PEM private key (with --tls)")
    echo.add_argument("--passphrase-file", help="file holding the key's passphrase")
    echo.add_argument("--ca", help="PEM CA certificate(s) the peer's certificate must chain to")
    server = commands.add_parser("server", help="act on a server directory")
    server_commands = server.add_subparsers(dest="server_command", required=True, metavar="COMMAND")
    check = server_commands.add_parser(
        "check", help="verify that a server's index and stored files agree (and repair)"
    )
    check.add_argument("name", help="the server's directory name (its AE title)")
    check.add_argument("--root", default=argparse.SUPPRESS, help=root_help)
    check.add_argument(
        "--repair",
        action="store_true",
        help="drop index rows whose file is missing (and the series, studies and patients "
        "left empty), and series, studies and patients with nothing under them; re-index "
        "files that have no row, are not the size their row records or were modified after "
        "it (files that are not whole data sets are reported)",
    )
    server_commands_module.register(server_commands, common)
    ae_commands.register(commands, common)
    clients_commands.register(commands, common)
    addins_commands.register(commands, common)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["create"]:
        return create_command.main(argv[1:], prog="pacsref create")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        innermost = getattr(args, _PARSER_ATTR, None) or parser
        innermost.error(f"unrecognized arguments: {' '.join(unknown)}")
    handler = getattr(args, "handler", None)
    if handler is not None:
        _begin_logging()
        try:
            return int(handler(Path(getattr(args, "root", None) or default_root()), args))
        except ManagerError as exc:
            print(f"pacsref: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:
            # Each command words its own expected failures; this is the net for the rest,
            # still one line naming what the system refused and on which file.
            where = f" ({exc.filename})" if exc.filename else ""
            print(f"pacsref: {os_reason(exc)}{where}", file=sys.stderr)
            return 1
    if args.command == "echo":
        return _echo_main(args)
    if args.command == "server":
        return _check_main(args)
    parser.error(f"unknown command {args.command}")  # pragma: no cover
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
