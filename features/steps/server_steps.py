"""Steps about the server under test: its AE title, settings, AE title table, add-ins, pause.

The Given steps only *configure* the server the ``@fixture.pacsref.server`` fixture provides; it
starts when a client step first needs it (see :func:`scenario_support.running_server`), so every
Given can come first.
"""

from __future__ import annotations

import signal
import time
from typing import Any

from behave import given, when
from scenario_support import (
    configured_server,
    running_server,
    signal_server,
    support_file,
)

from pacsref.testing.twistd import TwistdServer
from simulators.crowd import request_one

#: How long pausing or resuming may take to show on the wire.
CONTROL_DEADLINE_S = 5.0

#: A-ASSOCIATE-RJ temporary-congestion: what a paused server answers (PS3.8 Table 9-21).
CONGESTION = (2, 3, 1)

#: The slow add-in (features/support) and the line the step rewrites with the delay.
SLOW_ADDIN = "slow_echo_addin.py"
SLOW_ADDIN_DELAY_LINE = "DELAY_S = 5.0"


@given('a pacsref server with AE title "{ae_title}"')
def step_server_with_ae_title(context: Any, ae_title: str) -> None:
    """A fresh server directory named after the AE title, on embedded defaults."""
    configured_server(context).ae_title = ae_title


@given('the server setting "{key}" is "{value}"')
def step_server_setting(context: Any, key: str, value: str) -> None:
    """Override one setting before the first start (the creation step writes it)."""
    configured_server(context).settings[key] = value


@given("the server settings are")
def step_server_settings_table(context: Any) -> None:
    """Override several settings at once, from a two-column table (setting, value)."""
    server = configured_server(context)
    for row in context.table:
        server.settings[row["setting"]] = row["value"]


@given('the AE title table lists "{ae_title}" at {host} port {port:d}')
def step_ae_table_entry(context: Any, ae_title: str, host: str, port: int) -> None:
    """An ``[[ae]]`` entry in ``aetitles.toml``, written before the server first starts."""
    configured_server(context)
    entries = getattr(context, "ae_table", None)
    if entries is None:
        entries = context.ae_table = []
    entries.append(
        {"ae_title": ae_title, "host": host, "port": port, "description": "behave scenario"}
    )


@given("the server has the slow add-in, taking {delay:g} s per C-ECHO")
def step_slow_addin(context: Any, delay: float) -> None:
    """Drop ``features/support/slow_echo_addin.py`` into the server's add-ins, with its delay.

    It serves C-ECHO on a private SOP class and takes ``delay`` seconds to answer: an add-in
    stuck on a slow disk or database, as the add-in timeout must handle it.
    """
    configured_server(context)
    text = support_file(SLOW_ADDIN)
    assert SLOW_ADDIN_DELAY_LINE in text, f"{SLOW_ADDIN} lost its {SLOW_ADDIN_DELAY_LINE!r} line"
    files = getattr(context, "addin_files", None)
    if files is None:
        files = context.addin_files = {}
    files[SLOW_ADDIN] = text.replace(SLOW_ADDIN_DELAY_LINE, f"DELAY_S = {delay!r}")


@given("the server is running")
def step_server_is_running(context: Any) -> None:
    """Start the server now, e.g. to check start-up itself; client steps do this anyway."""
    configured_server(context)
    running_server(context)


def probe_triple(server: TwistdServer) -> tuple[int, int, int] | None:
    """Ask for one association as a probe; its RJ triple, or None if it was accepted."""
    host, port = server.address
    probe = request_one(host, port, server.ae_title, "CONTROL_PROBE", timeout=CONTROL_DEADLINE_S)
    try:
        if probe.error is not None:
            raise AssertionError(f"probe association: {probe.error}")
        return probe.rejection
    finally:
        if probe.accepted:
            probe.peer.finish(CONTROL_DEADLINE_S)
        probe.peer.close()


def wait_until(server: TwistdServer, paused: bool) -> None:
    """Probe until a new association is refused (2, 3, 1), or no longer so after resume.

    Signals are handled between reactor iterations, so the effect is near immediate; the
    probes are the real condition. Each probe is a full round trip (and an accepted one is
    released and its close awaited), which paces the loop without sleeping.
    """
    deadline = time.monotonic() + CONTROL_DEADLINE_S
    seen: list[tuple[int, int, int] | None] = []
    while time.monotonic() < deadline:
        triple = probe_triple(server)
        seen.append(triple)
        if (triple == CONGESTION) == paused:
            return
        if not server.running:
            break
    state = "paused" if paused else "resumed"
    raise AssertionError(
        f"the server did not become {state} within {CONTROL_DEADLINE_S:g} s "
        f"(last probe answers: {seen[-5:]}; None = accepted); running: {server.running}"
    )


@when("the administrator pauses the server")
def step_pause(context: Any) -> None:
    """Pause (SIGUSR1 until the admin socket exists) and wait until it shows on the wire."""
    server = running_server(context)
    signal_server(server, signal.SIGUSR1)
    wait_until(server, paused=True)


@when("the administrator resumes the server")
def step_resume(context: Any) -> None:
    """Resume (SIGUSR2 until the admin socket exists) and wait until associations are accepted."""
    server = running_server(context)
    signal_server(server, signal.SIGUSR2)
    wait_until(server, paused=False)
