"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings
from twisted.logger import LogEvent, formatEvent, globalLogPublisher

# Hypothesis fails an example that takes longer than 200 ms by default: a timed assertion,
# which a loaded CI machine trips at random (seen on a round-trip test with the machine busy).
# Speed is measured by the benchmarks in bench/, never asserted here.
settings.register_profile("pacsref", deadline=None)
settings.load_profile("pacsref")


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """The formatted log events emitted during the test, in order."""
    lines: list[str] = []

    def observer(event: LogEvent) -> None:
        lines.append(formatEvent(event) or "")

    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


@pytest.fixture
def log_events() -> Iterator[list[dict[str, Any]]]:
    """The log events emitted during the test, in order, with their structured fields."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(events.append)
