"""Exceptions of the add-in framework, each named for what went wrong.

They live apart from the modules that raise them so that add-ins, the server
and the admin interface can catch them without importing the loader, the
registry or the runner (Klein keeps its session exceptions beside its
interfaces for the same reason).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "AddinFailure",
    "AddinLoadError",
    "AddinStatusError",
    "AddinTimeout",
    "AeTitleError",
    "ServiceConflict",
    "ServiceNotFound",
]


class AeTitleError(ValueError):
    """An AE title entry is invalid, duplicated or unknown.

    The message is meant for the operator as-is (the admin interface returns it
    in ``ServiceMessage.error``), so it names the offending value and the rule.
    A ``ValueError`` because callers validating input catch that already.
    """


@dataclass(frozen=True, slots=True)
class AddinFailure:
    """One add-in that could not be loaded.

    Attributes:
        name: what failed: the module or package name in the ``addins/``
            folder, ``entry point NAME`` for an installed distribution, or the
            add-in's own name for a duplicate.
        error: ``"ExceptionType: message"`` plus where it came from; the full
            traceback goes to the log, this line goes to the admin interface.
        verifies_identity: the add-in got as far as being an object, and it provides
            ``IUserIdentityNegotiation``: the server must not start without it, since
            users it would refuse would then get in unverified.
    """

    name: str
    error: str
    verifies_identity: bool = False

    def __str__(self) -> str:
        return f"{self.name}: {self.error}"


class AddinLoadError(Exception):
    """Strict loading found broken add-ins; the server must not start.

    Twisted's ``getPlugins`` only logs a plugin that fails to import and
    carries on, so a typo in an add-in silently removes a service. In strict
    mode we refuse instead, listing every failure at once so the operator
    fixes them in one pass.

    Attributes:
        failures: every :class:`AddinFailure` found, in load order.
    """

    def __init__(self, failures: Sequence[AddinFailure]) -> None:
        self.failures: tuple[AddinFailure, ...] = tuple(failures)
        lines = "\n".join(f"  - {failure}" for failure in self.failures)
        super().__init__(f"{len(self.failures)} add-in(s) failed to load:\n{lines}")


class AddinTimeout(Exception):
    """An add-in call did not finish within the add-in timeout.

    The thread running it is *not* stopped (Python cannot kill a thread); its
    eventual result is discarded and logged. The association carries on with
    a failure status for this message.

    Attributes:
        name: the add-in callable that overran.
        timeout: the limit it overran, in seconds.
    """

    def __init__(self, name: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        super().__init__(f"add-in call {name} did not finish within {timeout:g} s")


class AddinStatusError(Exception):
    """Raised by an add-in to answer with a DIMSE failure or warning status of its choice.

    For example ``AddinStatusError(0xA700, "disk full")`` makes a C-STORE SCP
    answer *Refused: Out of Resources* (PS3.4 B.2.3) instead of the generic
    *Processing failure* any other exception maps to. ``comment`` goes into the
    response's Error Comment (0000,0902), which holds at most 64 characters
    (PS3.7 Annex E), so the dispatcher truncates it.

    Attributes:
        status: the DIMSE status (PS3.7 Annex C); never success (0x0000) or
            pending (0xFF00/0xFF01), which are not errors.
        comment: a short human explanation.
    """

    def __init__(self, status: int, comment: str = "") -> None:
        if isinstance(status, bool) or not isinstance(status, int) or not 0 <= status <= 0xFFFF:
            raise ValueError(f"DIMSE status {status!r} is not a 16-bit unsigned integer")
        if status in (0x0000, 0xFF00, 0xFF01):
            raise ValueError(f"status 0x{status:04X} is success or pending, not an error")
        self.status = status
        self.comment = comment
        super().__init__(f"status 0x{status:04X}" + (f": {comment}" if comment else ""))


class ServiceNotFound(LookupError):
    """No provider is registered for the requested base service interface."""


class ServiceConflict(Exception):
    """Two providers claim a service that only one may provide.

    Raised when a registration would replace a provider registered as not
    replaceable, typically because two add-ins both provide ``IAeTitles``:
    the server cannot guess which one the operator meant.
    """
