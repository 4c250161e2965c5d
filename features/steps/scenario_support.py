"""Shared helpers of the step libraries: the scenario's server, its answers, its cleanups.

Not a step library itself (behave loads every module here; this one registers no steps). The
step modules import it by name: behave puts this directory on ``sys.path`` while it loads them.

Everything a scenario accumulates lives on behave's ``context`` (the server, the peers it holds,
the latest answer), never in module globals, so scenarios cannot leak into each other.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pacsref.testing.twistd import TwistdServer

#: ``features/support``: files scenarios install into a server (e.g. add-ins).
SUPPORT_DIR = Path(__file__).resolve().parent.parent / "support"

#: A-ASSOCIATE-RJ names an administrator reads -> (result, source, reason), PS3.8 Table 9-21.
REJECTIONS = {
    "no reason given": (1, 1, 1),
    "application context name not supported": (1, 1, 2),
    "calling AE title not recognized": (1, 1, 3),
    "called AE title not recognized": (1, 1, 7),
    "protocol version not supported": (1, 2, 2),
    "temporary congestion": (2, 3, 1),
    "local limit exceeded": (2, 3, 2),
}

_OUTCOME = re.compile(r"(?P<name>.+?) \((?P<r>\d), (?P<s>\d), (?P<reason>\d)\)$")


@dataclass(frozen=True)
class Answer:
    """How the server answered the scenario's latest association request.

    Every client (pynetdicom, DCMTK's echoscu, a raw peer) reduces its outcome
    to this, so the Then steps read the same whoever asked.
    """

    client: str
    accepted: bool
    rejection: tuple[int, int, int] | None
    #: Seconds from the request to the answer; None when the client cannot tell.
    elapsed: float | None
    detail: str


def configured_server(context: Any) -> TwistdServer:
    """The scenario's server, which must not have started yet (its settings are fixed then)."""
    server: TwistdServer | None = getattr(context, "pacsref_server", None)
    if server is None:
        raise AssertionError("this scenario has no server: tag it @fixture.pacsref.server")
    if server.running:
        raise AssertionError("the server is already running: give its settings before using it")
    return server


def running_server(context: Any) -> TwistdServer:
    """The scenario's server, started now if it is not yet running.

    Before the first start the server directory is created (with the settings
    the Given steps chose), then the files the Given steps asked for are put
    in it: the AE title table and any add-ins.
    """
    server: TwistdServer | None = getattr(context, "pacsref_server", None)
    if server is None:
        raise AssertionError("this scenario has no server: tag it @fixture.pacsref.server")
    if server.running:
        return server
    if not server.server_dir.exists():
        create_in_process(server)
    entries: list[dict[str, object]] = getattr(context, "ae_table", [])
    if entries:
        (server.server_dir / "aetitles.toml").write_text(ae_table_toml(entries))
    for source, text in getattr(context, "addin_files", {}).items():
        (server.server_dir / "addins" / source).write_text(text)
    return server.start()


def create_in_process(server: TwistdServer) -> None:
    """Create the server directory as :meth:`TwistdServer.create` does, without a subprocess.

    Same command line, same module (``pacsref.server.create``), run in this process: it spares
    every scenario an interpreter start-up (about 0.3 s), and this process imports the same
    pacsref as the server it starts.
    """
    from pacsref.server.create import main as create_main

    host, port = server.address
    argv = ["--server-dir", str(server.server_dir), "--ae-title", server.ae_title]
    argv += ["--port", str(port), "--ip-address", host]
    for key, value in server.settings.items():
        argv += ["--set", f"{key}={value}"]
    status = create_main(argv)
    if status != 0:
        raise AssertionError(f"creating {server.server_dir} failed: {argv} (exit status {status})")


def ae_table_toml(entries: list[dict[str, object]]) -> str:
    """``aetitles.toml`` text: one ``[[ae]]`` table per entry (keys as given)."""
    lines = ["# Written by a behave scenario before the server's first start."]
    for entry in entries:
        lines.append("\n[[ae]]")
        for key, value in entry.items():
            shown = str(value).lower() if isinstance(value, bool) else value
            lines.append(f'{key} = "{shown}"' if isinstance(value, str) else f"{key} = {shown}")
    return "\n".join(lines) + "\n"


def support_file(name: str) -> str:
    """The text of ``features/support/NAME``."""
    return (SUPPORT_DIR / name).read_text()


def server_pid(server: TwistdServer) -> int:
    """The twistd process's id: signals are how a scenario pauses the server for now."""
    return server.pid


def signal_server(server: TwistdServer, signum: signal.Signals) -> None:
    """Send ``signum`` to the twistd process (SIGUSR1 pauses, SIGUSR2 resumes)."""
    os.kill(server_pid(server), signum)


def on_cleanup(context: Any, cleanup: Callable[[], object]) -> None:
    """Run ``cleanup`` when the scenario ends, passed or failed (behave's own cleanup stack)."""
    context.add_cleanup(cleanup)


def expected_rejection(name: str, result: int, source: int, reason: int) -> tuple[int, int, int]:
    """The triple a feature names, checked against PS3.8 Table 9-21 so the words cannot lie."""
    expected = (result, source, reason)
    if REJECTIONS.get(name) != expected:
        raise AssertionError(
            f"the feature says {name!r} is {expected}, PS3.8 Table 9-21 says {REJECTIONS.get(name)}"
        )
    return expected


def parse_outcome(text: str) -> str | tuple[int, int, int]:
    """A table cell: ``success`` (or ``accepted``), or ``<rejection name> (r, s, reason)``."""
    if text in ("success", "accepted"):
        return "success"
    match = _OUTCOME.match(text)
    if match is None:
        raise AssertionError(f"outcome {text!r}: expected 'success' or 'NAME (r, s, reason)'")
    return expected_rejection(match["name"], int(match["r"]), int(match["s"]), int(match["reason"]))


def judge(expected: str, answer: Answer, bound: float | None = None) -> str | None:
    """Why ``answer`` is not the ``expected`` table cell (or too slow); None if it is."""
    wanted = parse_outcome(expected)
    if wanted == "success":
        if not answer.accepted or answer.rejection is not None:
            return f"expected {expected}, {answer.client} saw: {answer.detail}"
    elif answer.rejection != wanted:
        seen = "acceptance" if answer.accepted else f"rejection {answer.rejection}"
        return f"expected {expected}, {answer.client} saw {seen}: {answer.detail}"
    if bound is not None and (answer.elapsed is None or answer.elapsed > bound):
        return f"{expected}, but after {answer.elapsed} s, not within {bound:g} s"
    return None


def latest_answer(context: Any) -> Answer:
    """The answer of the scenario's latest association request."""
    answer: Answer | None = getattr(context, "answer", None)
    if answer is None:
        raise AssertionError("no association was requested yet in this scenario")
    return answer
