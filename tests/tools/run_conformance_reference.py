"""Run the PS3.8 conformance suite against a freshly started pacsref reference server.

``tox -e conformance`` calls this. The suite (``python -m conformance``) judges any SCP by host,
port and AE title; this wrapper supplies one: a new server directory in a temporary folder, a free
loopback port, and an ARTIM timeout short enough (5 s) that the ARTIM checks, bounded by
``--artim-wait 10``, finish quickly. The server is always stopped, and its log tail is printed when
a check fails, since the client side alone rarely explains a server's behaviour.

Usage::

    python tests/tools/run_conformance_reference.py [--set key=value ...] [-- suite options]

Exit status: the suite's (0 iff no check failed), or 2 if the server did not start.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

try:
    import pacsref  # noqa: F401  (installed, as under tox)
except ImportError:  # run as a script from a source tree that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pacsref.testing.twistd import ServerStartError, TwistdServer

AE_TITLE = "PACSREF"

#: Server settings for the run; ARTIM well below the suite's --artim-wait.
SETTINGS = {"artim_timeout": "5"}
ARTIM_WAIT_S = "10"

EXIT_NO_SERVER = 2


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Our options, and everything after ``--`` (or unknown) for the suite."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra server setting for the creation step (repeatable)",
    )
    ours, suite = parser.parse_known_args(argv)
    return ours, [arg for arg in suite if arg != "--"]


def main(argv: Sequence[str] | None = None) -> int:
    """Start the server, run the suite against it, stop the server; return the suite's status."""
    args, suite_args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = dict(SETTINGS)
    for assignment in args.set:
        key, _, value = assignment.partition("=")
        settings[key] = value
    with tempfile.TemporaryDirectory(prefix="pacsref-conformance-") as root:
        server = TwistdServer(AE_TITLE, root=root, settings=settings)
        try:
            server.start()
        except ServerStartError as error:
            print(f"conformance: the reference server did not start:\n{error}", file=sys.stderr)
            return EXIT_NO_SERVER
        try:
            host, port = server.address
            command = [
                sys.executable,
                "-m",
                "conformance",
                "--host",
                host,
                "--port",
                str(port),
                "--called-ae",
                AE_TITLE,
                "--artim-wait",
                ARTIM_WAIT_S,
                *suite_args,
            ]
            print("conformance:", " ".join(command), flush=True)
            status = subprocess.run(command, check=False).returncode
            if status != 0:
                print(f"--- last lines of {server.log_path} ---\n{server.log_tail(80)}")
            return status
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
