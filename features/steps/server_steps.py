"""Steps about the server under test: its AE title, its settings, its running state.

They only *configure* the server the ``@fixture.pacsref.server`` fixture provides; it starts when
a client step first needs it (see :func:`running_server`), so every Given can come first.
"""

from __future__ import annotations

from typing import Any

from behave import given

from pacsref.testing.twistd import TwistdServer


def configured_server(context: Any) -> TwistdServer:
    """The scenario's server, which must not have started yet (its settings are fixed then)."""
    server: TwistdServer | None = getattr(context, "pacsref_server", None)
    if server is None:
        raise AssertionError("this scenario has no server: tag it @fixture.pacsref.server")
    if server.running:
        raise AssertionError("the server is already running: give its settings before using it")
    return server


@given('a pacsref server with AE title "{ae_title}"')
def step_server_with_ae_title(context: Any, ae_title: str) -> None:
    """A fresh server directory named after the AE title, on embedded defaults."""
    configured_server(context).ae_title = ae_title


@given('the server setting "{key}" is "{value}"')
def step_server_setting(context: Any, key: str, value: str) -> None:
    """Override one setting before the first start (the creation step writes it)."""
    configured_server(context).settings[key] = value


@given("the server is running")
def step_server_is_running(context: Any) -> None:
    """Start the server now, e.g. to check start-up itself; client steps do this anyway."""
    configured_server(context).start()
