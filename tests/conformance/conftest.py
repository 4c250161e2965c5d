"""Fixtures for the conformance suite tests: DCMTK's storescp and pynetdicom's AE as targets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.testservers import Listener, dcmtk_storescp, find_dcmtk, pynetdicom_echo_scp

#: storescp's ARTIM (--acse-timeout) in these tests; UL-ARTIM-TRICKLE needs it
#: under 5 s (see docs/conformance-dcmtk-storescp.md) and the suite's bound above it.
DCMTK_ACSE_TIMEOUT = 2


@pytest.fixture(scope="module")
def storescp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    """DCMTK storescp (--fork, ARTIM 2 s) on a free loopback port.

    Skipped with a visible reason when DCMTK is not installed, except on CI
    (CI=true), where a missing DCMTK must fail rather than pass silently.
    """
    if find_dcmtk("storescp") is None:
        reason = "DCMTK storescp not found (/usr/bin/storescp or a PATH entry saying 'dcmtk')"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true requires it")
        pytest.skip(reason)
    out: Path = tmp_path_factory.mktemp("storescp")
    with dcmtk_storescp(out, "STORESCP", acse_timeout=DCMTK_ACSE_TIMEOUT) as listener:
        yield listener


@pytest.fixture
def echo_scp() -> Iterator[Listener]:
    """pynetdicom's AE as a Verification SCP in this process (ARTIM 2 s)."""
    with pynetdicom_echo_scp("ECHOSCP", acse_timeout=2.0) as listener:
        yield listener
