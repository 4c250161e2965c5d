"""The suite's selection and reporting rules, and a pynetdicom target that is always available."""

from __future__ import annotations

import pytest

from conformance import CHECKS, Phase, Target, Verdict, run_suite, select
from simulators.netutil import LOOPBACK, free_loopback_port
from simulators.testservers import Listener


def test_every_check_cites_a_ps38_clause() -> None:
    """Each declared check names the clause it tests, and ids are unique."""
    assert len({c.id for c in CHECKS}) == len(CHECKS)
    for item in CHECKS:
        assert "PS3.8" in item.clause, item.id


def test_select_orders_by_phase_and_refuses_unknown_ids() -> None:
    """Timers come after the quick checks, UL-STILL-SERVING last; a typo is an error."""
    chosen = select()
    assert chosen[-1].id == "UL-STILL-SERVING"
    phases = [c.phase.value for c in chosen]
    assert phases == sorted(phases)
    assert [c.id for c in select(["UL-ECHO", "UL-ACCEPT"])] == ["UL-ACCEPT", "UL-ECHO"]
    assert "UL-ECHO" not in {c.id for c in select(skip=["UL-ECHO"])}
    assert {c.phase for c in select()} == set(Phase)
    with pytest.raises(ValueError, match="UL-NOPE"):
        select(["UL-NOPE"])


def test_unreachable_target_fails_every_check_without_hanging() -> None:
    """A refused connection is a FAIL that says so, not a crash or a wait."""
    target = Target(LOOPBACK, free_loopback_port(), "NOBODY", artim_wait=2, timeout=2)
    results = run_suite(target, ["UL-ACCEPT", "UL-ARTIM", "UL-STILL-SERVING"])
    assert [r.verdict for r in results] == [Verdict.FAIL] * 3
    assert "cannot connect" in results[0].detail


def test_quick_checks_against_pynetdicom(echo_scp: Listener) -> None:
    """pynetdicom's SCP passes the association, echo and fragmentation checks, and refuses
    a context whose transfer syntax is not a UID (result 4) as DCMTK does."""
    target = Target(echo_scp.host, echo_scp.port, "ECHOSCP", artim_wait=5, timeout=3)
    ids = ["UL-ACCEPT", "UL-CTX-ABSTRACT", "UL-CTX-TS-NOT-UID", "UL-ECHO", "UL-MAXPDU-FRAG"]
    ids.append("UL-ARTIM")
    ids.append("UL-STILL-SERVING")
    results = run_suite(target, ids)
    assert {r.id: r.verdict for r in results} == dict.fromkeys(ids, Verdict.PASS)
