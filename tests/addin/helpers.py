"""Shared fixtures for the add-in tests: add-in sources to drop in a folder, fake pools."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.python.failure import Failure

from pacsref.addin import AssociationInfo, DimseRequest, ServiceRegistry


def addin_source(name: str, *, extra: str = "") -> str:
    """Source of a well-formed echo add-in module named ``name``."""
    return textwrap.dedent(
        f"""
        from zope.interface import implementer

        from pacsref.addin import IAddin, IEchoHandler, SupportedContext

        @implementer(IAddin, IEchoHandler)
        class EchoAddin:
            name = {name!r}
            description = "test add-in"

            def presentation_contexts(self):
                return (SupportedContext("1.2.840.10008.1.1", ("1.2.840.10008.1.2",)),)

            def handle_echo(self, request):
                return 0

        addin = EchoAddin()
        """
    ) + textwrap.dedent(extra)


def write(path: Path, source: str) -> Path:
    """Write ``source`` at ``path``, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def make_request(**overrides: Any) -> DimseRequest:
    """A C-ECHO-RQ as the dispatcher would build it, with ``overrides`` applied."""
    values: dict[str, Any] = {
        "association": AssociationInfo("ECHOSCU", "PACSREF", "127.0.0.1", 40000),
        "context_id": 1,
        "abstract_syntax": "1.2.840.10008.1.1",
        "transfer_syntax": "1.2.840.10008.1.2",
        "command": {0x0002: "1.2.840.10008.1.1", 0x0100: 0x0030, 0x0110: 7, 0x0800: 0x0101},
        "dataset_path": None,
        "message_id": 7,
        "affected_sop_class_uid": "1.2.840.10008.1.1",
        "affected_sop_instance_uid": "",
        "log": Logger(namespace="pacsref.addin.test"),
        "services": ServiceRegistry(),
    }
    values.update(overrides)
    return DimseRequest(**values)


class ThreadlessReactor(Clock):
    """A ``Clock`` that also has ``callFromThread``, running the call at once.

    Enough reactor for ``deferToThreadPool`` with :class:`ManualThreadPool`: no
    real thread exists, so "from a thread" is simply "now".
    """

    def callFromThread(self, f: Callable[..., object], *args: object, **kw: object) -> None:
        f(*args, **kw)


class ManualThreadPool:
    """A thread pool whose queued work runs only when the test says so.

    Models a blocked worker thread without a thread: until :meth:`run_next`,
    the add-in call is "still running".
    """

    def __init__(self) -> None:
        self.queue: list[tuple[Callable[[bool, object], object], Callable[..., Any], tuple]] = []

    def callInThreadWithCallback(
        self, onResult: Callable[[bool, object], object], func: Callable[..., Any], *args: Any
    ) -> None:
        self.queue.append((onResult, func, args))

    def run_next(self) -> None:
        """Run the oldest queued call and report its outcome as ThreadPool does."""
        on_result, func, args = self.queue.pop(0)
        try:
            result: object = func(*args)
        except BaseException:
            on_result(False, Failure())
        else:
            on_result(True, result)
