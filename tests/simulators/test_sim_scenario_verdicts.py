"""``raw --scenario`` verdicts that name exact PS3.8 numbers: an answer with others fails.

wrong-called-ae wants A-ASSOCIATE-RJ (1, 1, 7) (PS3.8 9.3.4, Table 9-21);
bad-pdu-type wants A-ABORT (2, 1), Table 9-10 Sta6+Evt19 AA-8, the same pair
the conformance check UL-BAD-PDU-TYPE demands.
"""

from __future__ import annotations

import pytest

from simulators.__main__ import main
from simulators.pdus import Abort
from simulators.testservers import Listener, pynetdicom_echo_scp
from tests.simulators.scripted_scp import Script, scripted_scp

EXPECTED_RJ = (
    "expected A-ASSOCIATE-RJ result 1 (rejected-permanent), source 1 (DICOM UL service-user), "
    "reason 7 (called-AE-title-not-recognized)"
)


def _raw(port: int, called_ae: str, scenario: str) -> list[str]:
    """argv of ``python -m simulators raw --scenario ...`` against a loopback port."""
    argv = ["raw", "--scenario", scenario, "--host", "127.0.0.1", "--port", str(port)]
    return [*argv, "--called-ae", called_ae, "--timeout", "5"]


def test_wrong_called_ae_fails_on_another_rejection(capsys: pytest.CaptureFixture[str]) -> None:
    """A server that ignores the called AE title but refuses the calling one answers (1, 1, 3):
    that proves nothing about the called AE title, so exit 1, saying what came instead."""
    with pynetdicom_echo_scp("ECHOSCP", acse_timeout=2.0, require_calling_aet=["KNOWN"]) as scp:
        assert main(_raw(scp.port, scp.ae_title, "wrong-called-ae")) == 1
    out = capsys.readouterr().out
    assert "called 'NO-SUCH-AE': A-ASSOCIATE-RJ result 1" in out
    assert "reason 3 (calling-AE-title-not-recognized)" in out
    assert EXPECTED_RJ in out


def test_wrong_called_ae_fails_when_accepted(
    echo_scp: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    """pynetdicom by default accepts any called AE title: exit 1."""
    assert main(_raw(echo_scp.port, echo_scp.ae_title, "wrong-called-ae")) == 1
    out = capsys.readouterr().out
    assert "called 'NO-SUCH-AE': accepted (A-ASSOCIATE-AC)" in out
    assert EXPECTED_RJ in out


@pytest.mark.parametrize(("source", "reason"), [(2, 0), (0, 0), (2, 2)])
def test_bad_pdu_type_fails_on_any_abort_but_2_1(
    source: int, reason: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """An A-ABORT of another source or reason than (2, 1) is not AA-8: exit 1, with what came."""
    with scripted_scp(Script(unknown_pdu_abort=(source, reason))) as scp:
        assert main(_raw(scp.port, "SCRIPTED", "bad-pdu-type")) == 1
    out = capsys.readouterr().out
    assert f"expected {Abort(2, 1)} (PS3.8 Table 9-10, AA-8), came {Abort(source, reason)}" in out


def test_bad_pdu_type_passes_on_abort_2_1(capsys: pytest.CaptureFixture[str]) -> None:
    """A-ABORT source 2 (service provider), reason 1 (unrecognized-PDU): exit 0."""
    with scripted_scp(Script(unknown_pdu_abort=(2, 1))) as scp:
        assert main(_raw(scp.port, "SCRIPTED", "bad-pdu-type")) == 0
    out = capsys.readouterr().out
    assert f"server: {Abort(2, 1)} after " in out
    assert "expected" not in out


def test_bad_pdu_type_fails_pynetdicom_as_the_conformance_check_does(
    echo_scp: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    """pynetdicom aborts with (2, 0); UL-BAD-PDU-TYPE fails it (docs/conformance-pynetdicom-
    echoscp.md), and so does the scenario."""
    assert main(_raw(echo_scp.port, echo_scp.ae_title, "bad-pdu-type")) == 1
    assert f"came {Abort(2, 0)}" in capsys.readouterr().out
