"""``python -m simulators {echo,raw}``: DICOM peers that judge a server from the outside."""

from __future__ import annotations

import argparse
import sys

from simulators import echo, scenarios


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-command per simulator."""
    parser = argparse.ArgumentParser(
        prog="python -m simulators",
        description=(
            "DICOM network simulators that act on any DICOM server. 'echo' is a "
            "well-behaved Verification SCU (pynetdicom); 'raw' is a misbehaving peer "
            "that writes PDUs by hand to exercise a server's PS3.8 error paths."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True)
    echo.add_arguments(
        sub.add_parser(
            "echo",
            help="C-ECHO N times on one association",
            description=(
                "Associate (Verification SOP Class), send --count C-ECHO-RQs on one "
                "association, release. Prints one line per failure and a summary. "
                "Exit 0 if all succeeded and the release was answered with "
                "A-RELEASE-RP, 3 if the association was rejected "
                "(the A-ASSOCIATE-RJ is printed in PS3.8 words), 2 if the command line "
                "is wrong, 1 otherwise."
            ),
        )
    )
    scenarios.add_arguments(
        sub.add_parser(
            "raw",
            help="misbehave on purpose (raw sockets)",
            description=(
                "Provoke the server with one named misbehaviour and print what it did "
                "and when. Exit 0 if it reacted as PS3.8 asks within --timeout."
            ),
        )
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and dispatch to the chosen simulator."""
    args = build_parser().parse_args(argv)
    if args.command == "echo":
        return echo.main(args)
    return scenarios.main(args)


if __name__ == "__main__":
    sys.exit(main())
