"""Interoperability with DCMTK's echoscu, the de-facto reference Verification SCU.

DCMTK is an independent implementation of PS3.7/PS3.8: a server that only ever talked to its own
client code could share that code's misreadings of the standard. These tests run the real
``twistd``-launched server and drive it with ``/usr/bin/echoscu``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pacsref.testing.dcmtk import require_dcmtk, run_echoscu
from pacsref.testing.twistd import TwistdServer

pytestmark = pytest.mark.interop

AE_TITLE = "PACSREF"


@pytest.fixture(scope="module")
def echoscu() -> str:
    """DCMTK's echoscu; requested before the server, so a missing DCMTK skips without a start."""
    return require_dcmtk("echoscu")


@pytest.fixture(scope="module")
def server(echoscu: str) -> Iterator[TwistdServer]:
    """One fresh pacsref server (embedded defaults, loopback) shared by this module's tests."""
    with TwistdServer(AE_TITLE) as running:
        yield running


def test_echoscu_succeeds(echoscu: str, server: TwistdServer) -> None:
    """A C-ECHO from DCMTK's echoscu to the server's AE title succeeds: exit code 0."""
    host, port = server.address
    outcome = run_echoscu(host, port, AE_TITLE, "ECHOSCU", echoscu=echoscu, timeout_s=30)
    assert outcome.returncode == 0, outcome.output
    assert outcome.rejection is None


def test_echoscu_repeats_on_one_association(echoscu: str, server: TwistdServer) -> None:
    """DCMTK's ``--repeat 100`` sends 100 C-ECHOs on one association; all succeed."""
    host, port = server.address
    outcome = run_echoscu(host, port, AE_TITLE, repeat=100, echoscu=echoscu, timeout_s=60)
    assert outcome.returncode == 0, outcome.output


def test_echoscu_wrong_called_ae_is_rejected(echoscu: str, server: TwistdServer) -> None:
    """A wrong called AE title is refused with A-ASSOCIATE-RJ (1, 1, 7), as DCMTK reports it.

    PS3.8 Table 9-21: result 1 "rejected-permanent", source 1 "DICOM UL service-user", reason 7
    "called-AE-title-not-recognized". DCMTK 3.6.7 prints "Association Rejected" and
    "Reason: Called AE Title Not Recognized" and exits non-zero.
    """
    host, port = server.address
    outcome = run_echoscu(host, port, "NOT" + AE_TITLE, echoscu=echoscu, timeout_s=30)
    assert outcome.returncode != 0
    assert "Association Rejected" in outcome.output, outcome.output
    assert "Called AE Title Not Recognized" in outcome.output, outcome.output
    assert outcome.rejection == (1, 1, 7), outcome.output
