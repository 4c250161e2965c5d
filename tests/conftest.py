"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from twisted.logger import LogEvent, formatEvent, globalLogPublisher


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
