"""A DICOM Upper Layer (PS3.8) conformance suite that runs against any Verification SCP.

Usage from Python::

    from conformance import Target, run_suite
    results = run_suite(Target("127.0.0.1", 11112, "PACSREF", artim_wait=10))

and from a shell: ``python -m conformance --host H --port P --called-ae AE``.
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
