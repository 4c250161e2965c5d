"""The one error type of :mod:`pacsref.settings`, and the problems it reports.

Settings are edited by hand, so an error must say where to look and how to fix it without
reading the code: every problem names the file (or other source), the field, the bad value and
what is allowed, e.g. ``/srv/X/settings.toml: port = 70000 is out of range; allowed: an integer
1-65535``. One :class:`SettingsError` carries *all* the problems found in a source, one per
line, so that a user fixes the file in one pass instead of one error per server start.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from pacsref.settings.tomltext import describe_value


class _Missing(enum.Enum):
    """Type of :data:`MISSING`; an enum so that type checkers can narrow on it."""

    MISSING = enum.auto()

    def __repr__(self) -> str:
        return "MISSING"


#: The ``value`` of a :class:`SettingsProblem` about a field that is absent or has no value.
MISSING = _Missing.MISSING


@dataclass(frozen=True, slots=True)
class SettingsProblem:
    """One thing wrong with a settings source, kept structured so tools and tests can inspect it.

    ``field`` is ``None`` for problems with the source as a whole (unreadable file, TOML syntax,
    directory already set up); ``line`` is set when the position in the file is known.
    """

    source: str
    field: str | None
    value: object
    reason: str
    allowed: str
    line: int | None = None

    def __str__(self) -> str:
        """Render the problem as one self-contained line (file, field, value, reason, allowed)."""
        if self.field is None:
            subject = ""
        elif self.value is MISSING:
            subject = f"{self.field} "
        else:
            subject = f"{self.field} = {describe_value(self.value)} "
        text = f"{self.source}: {subject}{self.reason}"
        if self.allowed:
            text += f"; allowed: {self.allowed}"
        return text


class SettingsError(ValueError):
    """Settings could not be read, validated or set up; ``str()`` lists every problem, one a line.

    A subclass of :class:`ValueError` because a bad setting is a bad value; callers that only
    want a message to show (the twistd plugin, the manager CLI) print ``str(error)``, callers
    that want details read :attr:`problems`.
    """

    def __init__(self, problems: Iterable[SettingsProblem]) -> None:
        self.problems: tuple[SettingsProblem, ...] = tuple(problems)
        if not self.problems:
            raise ValueError("SettingsError needs at least one problem")
        super().__init__("\n".join(str(problem) for problem in self.problems))

    def __reduce__(self) -> tuple[type[SettingsError], tuple[tuple[SettingsProblem, ...]]]:
        """Pickle by problems (the default would pass the message string to ``__init__``)."""
        return (type(self), (self.problems,))

    @classmethod
    def single(
        cls,
        source: str,
        reason: str,
        allowed: str = "",
        *,
        field: str | None = None,
        value: object = MISSING,
        line: int | None = None,
    ) -> SettingsError:
        """Build an error with one problem, for failures that are not about a field's value."""
        return cls([SettingsProblem(source, field, value, reason, allowed, line)])

    @property
    def fields(self) -> tuple[str, ...]:
        """Names of the fields with problems, in report order (handy for tests and UIs)."""
        return tuple(problem.field for problem in self.problems if problem.field is not None)
