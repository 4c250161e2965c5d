"""The conformance suite judged against DCMTK's storescp, a third-party reference SCP.

DCMTK 3.6.7's verdicts are pinned: the suite must recognise what DCMTK does
right and must catch what it does differently from PS3.8, with the detail
that says what happened. A newer DCMTK that changes behaviour shows up here.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

from conformance import CheckResult, Target, Verdict, run_suite, summary
from simulators.testservers import Listener

ROOT = Path(__file__).resolve().parents[2]

#: What DCMTK 3.6.7 storescp gets right.
DCMTK_PASSES = {
    "UL-ACCEPT",
    "UL-CTX-ABSTRACT",
    "UL-CTX-TS",
    "UL-CTX-TS-NOT-UID",
    "UL-ECHO",
    "UL-RELEASE",
    "UL-ABORT",
    "UL-PROTOCOL-VERSION",
    "UL-APP-CONTEXT",
    "UL-UNEXPECTED-PDU",
    "UL-MAXPDU-FRAG",
    "UL-ARTIM",
    "UL-ARTIM-TRICKLE",
    "UL-STILL-SERVING",
}

#: Where DCMTK 3.6.7 storescp departs from PS3.8, and the words that prove we saw why.
DCMTK_FAILS = {
    "UL-CALLED-AE": "accepted any called AE title",
    "UL-BAD-PDU-TYPE": "A-ABORT source 0",
    "UL-MALFORMED": "no A-ABORT or A-ASSOCIATE-RJ",
    "UL-PDATA-TOO-LONG": "A-ABORT source 0",
    "UL-ARTIM-TRICKLE-BODY": "connection still open",
}


def _target(listener: Listener, **overrides: Any) -> Target:
    """Short bounds: storescp's ARTIM is 2 s, so 5 s is a safe artim-wait."""
    base = Target(listener.host, listener.port, listener.ae_title, artim_wait=5.0, timeout=2.0)
    return dataclasses.replace(base, **overrides)


def test_full_suite_against_storescp(storescp: Listener) -> None:
    """Every check runs once, in about artim-wait seconds, with DCMTK's known verdicts."""
    reported: list[CheckResult] = []
    results = run_suite(_target(storescp), report=reported.append)
    assert reported == results
    verdicts = {r.id: r.verdict for r in results}
    assert set(verdicts) == DCMTK_PASSES | set(DCMTK_FAILS)
    details = {r.id: r.detail for r in results}
    for check_id in DCMTK_PASSES:
        assert verdicts[check_id] is Verdict.PASS, (check_id, details[check_id])
    for check_id, words in DCMTK_FAILS.items():
        assert verdicts[check_id] is Verdict.FAIL, (check_id, details[check_id])
        assert words in details[check_id], (check_id, details[check_id])
    assert summary(results) == f"{len(DCMTK_PASSES)} passed, {len(DCMTK_FAILS)} failed, 0 skipped"
    assert results[-1].id == "UL-STILL-SERVING"
    assert sum(r.elapsed for r in results if r.id.startswith("UL-ARTIM")) < 3 * 5.0


def test_accepts_any_called_ae_flag_expects_the_ac(storescp: Listener) -> None:
    """With accepts_any_called_ae, storescp's AC for a wrong called AE is a PASS."""
    [result] = run_suite(_target(storescp, accepts_any_called_ae=True), ["UL-CALLED-AE"])
    assert result.verdict is Verdict.PASS
    assert "accepted any called AE title" in result.detail


def test_cli_output_format_and_exit_status(storescp: Listener) -> None:
    """CLI: 'PASS <id> <title> [..] — <detail>' lines, then the summary; exit 1 on a FAIL."""
    base = [sys.executable, "-m", "conformance", "--host", storescp.host]
    base += ["--port", str(storescp.port), "--called-ae", "STORESCP", "--timeout", "2"]
    ok = subprocess.run(
        [*base, "--only", "UL-ACCEPT,UL-ECHO,UL-CALLED-AE", "--skip", "UL-CALLED-AE"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0].startswith("PASS UL-ACCEPT Verification/Implicit VR LE is accepted [PS3.8")
    assert " — context 1 result 0 (acceptance)" in lines[0]
    assert lines[1].startswith("PASS UL-ECHO ")
    assert lines[-1] == "2 passed, 0 failed, 0 skipped"

    failing = subprocess.run(
        [*base, "--only", "UL-CALLED-AE"], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert failing.returncode == 1
    assert failing.stdout.splitlines()[0].startswith("FAIL UL-CALLED-AE ")
    assert failing.stdout.splitlines()[-1] == "0 passed, 1 failed, 0 skipped"
