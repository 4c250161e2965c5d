"""``python -m pacsref.shipped_addins.users hash``: a passcode hash for the accounts file.

The passcode is read twice from the terminal without echo (getpass), or once from standard
input when that is not a terminal (a script, a password manager's pipe), and never taken
from the command line, where other users could read it in the process list.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from typing import BinaryIO, TextIO

from .passcodes import hash_passcode

PROG = "python -m pacsref.shipped_addins.users"
#: The longest passcode a User Identity sub-item can carry (PS3.7 D.3.3.7.1).
MAX_PASSCODE_BYTES = 0xFFFF

_EPILOG = """\
Put the printed line in the accounts file (default <server dir>/user-accounts.toml):

  [users.alice]
  passcode = "scrypt$..."

(An account entered with its username alone has passcode = false instead.)

Exit status: 0 hash printed; 1 no usable passcode (the two entries differ, it is empty,
longer than 65535 bytes, or input ended); 2 usage error.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Tools of the pacsref users add-in (docs/user-identity.md).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "hash",
        help="print the scrypt hash of a passcode",
        description="Print the scrypt hash of a passcode for the accounts file.\n\n"
        "The passcode is read twice from the terminal without echo, or once (one line,\n"
        "without its line ending) from standard input when that is not a terminal.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def _read_passcode(
    read_secret: Callable[[str], str], stdin: TextIO, stderr: TextIO
) -> bytes | None:
    """The passcode as UTF-8 bytes (what a requestor sends), or None after saying why not."""
    try:
        if stdin.isatty():
            first = read_secret("Passcode: ")
            if first != read_secret("Passcode again: "):
                print("the two passcodes differ; nothing printed", file=stderr)
                return None
            passcode = first.encode("utf-8")
        else:
            raw: BinaryIO | None = getattr(stdin, "buffer", None)
            line = raw.readline() if raw is not None else stdin.readline().encode("utf-8")
            passcode = line.removesuffix(b"\n").removesuffix(b"\r")
    except EOFError:
        print("no passcode read: input ended", file=stderr)
        return None
    if not passcode:
        print("the passcode is empty; nothing printed", file=stderr)
        return None
    if len(passcode) > MAX_PASSCODE_BYTES:
        print(f"the passcode is longer than {MAX_PASSCODE_BYTES} bytes", file=stderr)
        return None
    return passcode


def main(
    argv: Sequence[str] | None = None,
    *,
    read_secret: Callable[[str], str] = getpass.getpass,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the command line; returns the exit status (tests pass a fake ``read_secret``)."""
    try:
        _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    passcode = _read_passcode(read_secret, stdin, stderr)
    if passcode is None:
        return 1
    print(hash_passcode(passcode), file=stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
