"""Fixtures for the simulator tests: pynetdicom's AE as an in-process Verification SCP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulators.testservers import Listener, pynetdicom_echo_scp


@pytest.fixture
def echo_scp() -> Iterator[Listener]:
    """A Verification SCP (AE ECHOSCP) on a free loopback port, shut down afterwards."""
    with pynetdicom_echo_scp("ECHOSCP", acse_timeout=2.0) as listener:
        yield listener


@pytest.fixture
def strict_echo_scp() -> Iterator[Listener]:
    """A Verification SCP that rejects any called AE title but its own (ECHOSCP)."""
    with pynetdicom_echo_scp("ECHOSCP", require_called_aet=True, acse_timeout=2.0) as listener:
        yield listener
