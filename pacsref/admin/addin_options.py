"""GetAddInOptions and SetAddInOptions: an add-in's options over the admin socket.

The options file is the truth: GetAddInOptions reads it (so it shows what the next start will
use, also for options that apply only then), and SetAddInOptions changes it in the order that
keeps the add-in and the file in agreement: validate, tell the add-in (which may refuse:
nothing is saved), then save atomically; if saving fails the add-in is handed its old values
back. File I/O runs on a worker thread; the add-in is told on the reactor thread, as
:class:`~pacsref.addin.IAddInOptions` promises. One change at a time per server (a lock), so
two admin clients cannot interleave one's read of a file with the other's write.

A refused value names where it came from: one sent in the request is blamed on the request's
field (:data:`REQUEST_SOURCE`), one read from the file on the file, so an administrator is
not sent to fix a file that holds nothing wrong (``pacsref addins config`` on a stopped
server does the same with "command line").
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock
from twisted.logger import Logger
from twisted.python.failure import Failure

from pacsref.addin.interfaces import IAddInOptions
from pacsref.addin.options import (
    AddInOptionsError,
    OptionProblem,
    OptionValues,
    as_schema,
    give_options,
    options_in_use,
)
from pacsref.addin.options_file import OptionsFile
from pacsref.admin.messages import MessageError

log = Logger(namespace="pacsref.admin")

__all__ = ["REQUEST_SOURCE", "AddInOptionsCommands"]

#: Where the values of a SetAddInOptions request come from, in the problems that name them:
#: the request and its field, as the protocol's other refusals of a data item say.
REQUEST_SOURCE = "SetAddInOptions data[1] (changes)"


def _one_line(exc: AddInOptionsError) -> str:
    return "; ".join(str(p) for p in exc.problems) or str(exc)


def _as_message_error(failure: Failure) -> None:
    """Turn a refusal of the values into the response's error text; other failures go on."""
    failure.trap(AddInOptionsError)
    raise MessageError(_one_line(failure.value))  # type: ignore[arg-type]


class AddInOptionsCommands:
    """The two requests for one server's add-ins.

    Args:
        addins: the loaded add-ins (those with options provide ``IAddInOptions``).
        failures: the add-ins that did not load (``name``, ``error``), to say why.
        options_dir: ``<server dir>/addin-options``.
        run_in_thread: runs a blocking call off the reactor thread, returning a Deferred.
    """

    def __init__(
        self,
        addins: list[Any],
        failures: list[Any],
        options_dir: Path,
        run_in_thread: Callable[..., Deferred[Any]],
    ) -> None:
        self.addins = addins
        self.failures = failures
        self.options_dir = Path(options_dir)
        self.run_in_thread = run_in_thread
        self._lock = DeferredLock()

    def _find(self, name: str) -> tuple[Any, OptionsFile]:
        """The add-in ``name`` and its options file, or the MessageError saying why not."""
        addin = next((a for a in self.addins if a.name == name), None)
        if addin is None:
            failed = next((f for f in self.failures if f.name == name), None)
            if failed is not None:
                raise MessageError(f"add-in {name!r} is not loaded: {failed.error}")
            known = ", ".join(str(a.name) for a in self.addins) or "none"
            raise MessageError(f"no add-in named {name!r}; loaded: {known}")
        if not IAddInOptions.providedBy(addin):
            raise MessageError(f"add-in {name!r} declares no options")
        schema = as_schema(addin.options_declaration)
        return addin, OptionsFile.in_dir(self.options_dir, name, schema)

    def get(self, name: str) -> Deferred[list[Any]]:
        """Response data: [list of option objects with their values in the file]."""
        _, file = self._find(name)
        d = self.run_in_thread(file.load)
        d.addCallback(lambda values: [file.schema.describe(values)])
        d.addErrback(_as_message_error)
        return d

    def set(self, name: str, changes: Mapping[str, object]) -> Deferred[list[Any]]:
        """Response data: [every option's new value, keys that apply at the next start]."""
        addin, file = self._find(name)
        return self._lock.run(self._set, addin, file, dict(changes))

    def _set(self, addin: Any, file: OptionsFile, changes: dict[str, object]) -> Deferred[Any]:
        d = self.run_in_thread(file.read_raw)
        d.addCallbacks(self._apply, self._unreadable, (addin, file, changes), None, (file, changes))
        d.addErrback(_as_message_error)
        return d

    @staticmethod
    def _unreadable(failure: Failure, file: OptionsFile, changes: dict[str, object]) -> None:
        """A file that is not TOML (or not readable) is refused as a whole and left for a hand
        edit: rewriting it would drop whatever else it holds. The request's own problems are
        told with it, so that the next attempt does not fail on them in turn."""
        failure.trap(AddInOptionsError)
        try:
            file.schema.validate(changes, addin=file.addin, source=REQUEST_SOURCE)
        except AddInOptionsError as exc:
            raise AddInOptionsError(f"{failure.value}; {_one_line(exc)}") from None
        failure.raiseException()

    @staticmethod
    def _validate(
        file: OptionsFile, raw: dict[str, object], changes: dict[str, object]
    ) -> OptionValues:
        """The changes over the file's other values, each problem naming where it is.

        The file's values and the request's are judged apart, so that a bad value sent in
        the request is not blamed on the file (nor a bad one in the file on the request),
        and together, so that every problem is told at once.

        Raises:
            AddInOptionsError: every problem, the file's first, then the request's.
        """
        problems: list[OptionProblem] = []
        try:
            base: OptionValues | None = file.validate(
                {k: v for k, v in raw.items() if k not in changes}
            )
        except AddInOptionsError as exc:
            problems += exc.problems
            base = None
        try:
            new = file.schema.validate(changes, addin=file.addin, source=REQUEST_SOURCE, base=base)
        except AddInOptionsError as exc:
            problems += exc.problems
        if problems:
            raise AddInOptionsError.of(problems)
        return new

    def _apply(
        self, raw: dict[str, object], addin: Any, file: OptionsFile, changes: dict[str, object]
    ) -> Deferred[list[Any]]:
        # The changes go over the file's own keys, so a change can also repair a bad file.
        new = self._validate(file, raw, changes)
        try:
            current: OptionValues | None = file.validate(raw)
        except AddInOptionsError:
            current = None
        changed = new.changed_from(current) if current is not None else tuple(changes)
        # What to put back if the save fails: what the add-in runs on now. Its file may not
        # say (broken by hand since the add-in took its values), so it is remembered.
        running = options_in_use(addin) or current
        try:
            give_options(addin, new)
        except Exception as exc:
            raise MessageError(
                f"add-in {file.addin!r} refused the options: {type(exc).__name__}: {exc}"
            ) from None

        def not_saved(failure: Failure) -> None:
            # Whatever stopped the save, the add-in must not keep values the file lacks.
            if running is not None:
                with contextlib.suppress(Exception):
                    give_options(addin, running)
            if not failure.check(OSError):
                log.failure("saving {path} failed", failure, path=str(file.path))
            raise MessageError(f"cannot save {file.path}: {failure.getErrorMessage()}")

        saved = self.run_in_thread(file.save, new)
        saved.addCallbacks(lambda _: [dict(new), file.schema.restart_keys(changed)], not_saved)
        return saved
