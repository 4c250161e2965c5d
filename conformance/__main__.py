"""``python -m conformance``: run a conformance suite against a server and report.

``--suite ul`` (the default) is the PS3.8 upper layer suite; ``--suite policy`` is the
association policy suite, whose expectations come from ``--expect``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from conformance.expectations import EXPECTATION_HELP, parse_expectations
from conformance.registry import SUITES, CheckResult, Target, Verdict
from conformance.suite import run_suite, select, summary


def _ids(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The command line; the epilog lists every check with the clause it tests."""
    epilog = ""
    for suite in SUITES:
        epilog += f"checks of --suite {suite}:\n"
        epilog += "".join(f"  {c.id:<34} {c.title} [{c.clause}]\n" for c in select(suite=suite))
    epilog += "expectations (--expect KEY=VALUE,...; policy suite):\n"
    epilog += "".join(f"  {key:<28} {text}\n" for key, text in EXPECTATION_HELP.items())
    parser = argparse.ArgumentParser(
        prog="python -m conformance",
        description=(
            "Run a DICOM conformance suite against any SCP that supports the "
            "Verification SOP Class: the Upper Layer (PS3.8) suite, or the association "
            "policy suite judged against the configuration given with --expect. Prints "
            "one line per check 'PASS|FAIL|SKIP <id> <title> [<clause>] — <detail>' and "
            "a summary line. Exit status 0 iff no check failed."
        ),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--suite", choices=SUITES, default="ul", help="which suite to run (default: %(default)s)"
    )
    parser.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="KEY=VALUE,...",
        help="the server's configuration, for the policy suite (repeatable; keys below)",
    )
    parser.add_argument("--host", required=True, help="server host name or IP address")
    parser.add_argument("--port", required=True, type=int, help="server TCP port")
    parser.add_argument("--called-ae", required=True, help="the server's AE title")
    parser.add_argument(
        "--calling-ae", default="CONFORMANCE", help="our AE title (default: %(default)s)"
    )
    parser.add_argument(
        "--artim-wait",
        type=float,
        default=40.0,
        metavar="SECONDS",
        help="bound for the ARTIM checks; set above the server's ARTIM (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="bound for every other wait for a reply or a close (default: %(default)s)",
    )
    parser.add_argument(
        "--trickle-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between bytes in UL-ARTIM-TRICKLE (default: %(default)s)",
    )
    parser.add_argument(
        "--accepts-any-called-ae",
        action="store_true",
        help="the server is meant to accept any called AE title (UL-CALLED-AE expects an AC)",
    )
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="run the ARTIM checks after the others, for servers that serve one "
        "connection at a time (the suite then takes about 2 x --artim-wait longer)",
    )
    parser.add_argument("--only", type=_ids, default=None, metavar="ID,...", help="run only these")
    parser.add_argument("--skip", type=_ids, default=[], metavar="ID,...", help="skip these")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the suite, print each result as it is known, then the summary line."""
    args = build_parser().parse_args(argv)
    # pynetdicom (UL-STILL-SERVING) logs failures itself; our lines already say what happened.
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    try:
        expect = parse_expectations(args.expect)
    except ValueError as exc:
        print(f"error: --expect: {exc}", file=sys.stderr)
        return 2
    target = Target(
        host=args.host,
        port=args.port,
        called_ae=args.called_ae,
        calling_ae=args.calling_ae,
        artim_wait=args.artim_wait,
        timeout=args.timeout,
        trickle_interval=args.trickle_interval,
        accepts_any_called_ae=args.accepts_any_called_ae,
        concurrent=not args.sequential,
        expect=expect,
    )

    def report(result: CheckResult) -> None:
        print(result.line(), flush=True)

    start = time.monotonic()
    try:
        if args.suite == "policy":
            print(f"expectations: {expect.describe()}", flush=True)
        results = run_suite(target, args.only, skip=args.skip, report=report, suite=args.suite)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"suite finished in {time.monotonic() - start:.1f} s")
    print(summary(results))
    return 1 if any(r.verdict is Verdict.FAIL for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
