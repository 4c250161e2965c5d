"""Conformance suites that run against any Verification SCP: the DICOM Upper Layer (PS3.8)
suite, and the association policy suite (who may associate, how many, how often, when).

Usage from Python::

    from conformance import Target, run_suite
    results = run_suite(Target("127.0.0.1", 11112, "PACSREF", artim_wait=10))

    from conformance.expectations import parse_expectations
    expect = parse_expectations(["allow-anonymous=false,max-clients=3,known-ae=CT@127.0.0.1"])
    results = run_suite(Target("127.0.0.1", 11112, "PACSREF", expect=expect), suite="policy")

and from a shell: ``python -m conformance --host H --port P --called-ae AE`` (add
``--suite policy --expect KEY=VALUE,...`` for the policy suite).
The suite speaks through raw sockets (:mod:`simulators.misbehaving`) and
pynetdicom's AE, never through pacsref, so it can judge pacsref.
"""

from conformance.registry import CHECKS, Check, CheckResult, Phase, Target, Verdict
from conformance.suite import run_check, run_suite, select, summary

__all__ = [
    "CHECKS",
    "Check",
    "CheckResult",
    "Phase",
    "Target",
    "Verdict",
    "run_check",
    "run_suite",
    "select",
    "summary",
]
