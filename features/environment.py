"""behave hooks: fixtures by tag, and the DCMTK policy.

Fixtures are chosen by tag, as in behave's own suite: a scenario tagged ``@fixture.pacsref.server``
gets a fresh pacsref server (a real ``twistd`` process on a free loopback port, in a temporary
directory), stopped after the scenario. The server starts lazily, when a step first needs it, so
that the Given steps can set its AE title and settings before its first start.
``@fixture.pacsref.servers`` gives named servers in one root folder (on a Feature, shared by its
scenarios); ``@fixture.pacsref.root`` a root folder for ``pacsref`` commands, whose daemons are
killed afterwards.

Scenarios tagged ``@wip`` specify behaviour not built yet and are skipped unless asked for.
Scenarios tagged ``@dcmtk`` need DCMTK's command-line tools. Without them they are skipped with
the install command as the reason; under ``CI=true`` they fail instead, because a skip there would
hide that the reference peer never ran.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from behave import fixture
from behave.fixture import use_fixture_by_tag
from behave.model import Scenario

from pacsref.testing.dcmtk import dcmtk_tool, in_ci, missing_reason
from pacsref.testing.fleet import ManagedRoot, ServerFleet
from pacsref.testing.twistd import TwistdServer


@fixture(name="fixture.pacsref.server")
def pacsref_server(context: Any) -> Iterator[TwistdServer]:
    """A pacsref server for one scenario; not started until a step needs it."""
    server = TwistdServer(start_timeout_s=float(context.config.userdata.get("start_timeout", 30)))
    context.pacsref_server = server
    try:
        yield server
    finally:
        server.stop()


@fixture(name="fixture.pacsref.servers")
def pacsref_servers(context: Any) -> Iterator[ServerFleet]:
    """Named servers side by side in one root folder; on a Feature, shared by its scenarios.

    A Background step names them and their settings (admin_steps.py); they start then, in
    parallel, and are all stopped when the feature (or scenario) ends, passed or failed.
    """
    fleet = ServerFleet(start_timeout_s=float(context.config.userdata.get("start_timeout", 30)))
    context.pacsref_fleet = fleet
    try:
        yield fleet
    finally:
        fleet.stop()


@fixture(name="fixture.pacsref.root")
def pacsref_root(context: Any) -> Iterator[ManagedRoot]:
    """A temporary ``--root`` for ``pacsref`` commands; the daemons they start are killed after."""
    root = ManagedRoot()
    context.pacsref_root = root
    try:
        yield root
    finally:
        root.cleanup()


FIXTURE_REGISTRY = {
    "fixture.pacsref.server": pacsref_server,
    "fixture.pacsref.servers": pacsref_servers,
    "fixture.pacsref.root": pacsref_root,
}


def before_all(context: Any) -> None:
    """Find DCMTK once; say up front, not per scenario, when its scenarios will be skipped."""
    context.dcmtk = dcmtk_tool("echoscu")
    if context.dcmtk is None:
        policy = "they FAIL because CI=true" if in_ci() else "they are skipped"
        print(f"{missing_reason('echoscu')}: scenarios tagged @dcmtk: {policy}", file=sys.stderr)


def before_tag(context: Any, tag: str) -> None:
    """Set up the fixture a ``@fixture.*`` tag names; unknown fixture tags are an error."""
    if tag.startswith("fixture."):
        use_fixture_by_tag(tag, context, FIXTURE_REGISTRY)


def before_scenario(context: Any, scenario: Scenario) -> None:
    """Skip ``@wip`` scenarios unless asked for; skip (CI: fail) ``@dcmtk`` ones without DCMTK.

    ``@wip`` marks a scenario that specifies server behaviour not built yet: it must not turn
    the default run red, and it must not be weakened to pass. ``behave --wip`` (or
    ``-D wip=true``) runs them.
    """
    if "wip" in scenario.effective_tags and not (
        context.config.wip or context.config.userdata.getbool("wip")
    ):
        scenario.skip(reason="@wip: specifies server behaviour that is not built yet")
        return
    if "dcmtk" in scenario.effective_tags and context.dcmtk is None:
        if in_ci():
            raise RuntimeError(missing_reason("echoscu"))
        scenario.skip(reason=missing_reason("echoscu"))


def after_scenario(context: Any, scenario: Scenario) -> None:
    """On failure, show the server's log: the client side alone rarely explains a refusal."""
    server: TwistdServer | None = getattr(context, "pacsref_server", None)
    if scenario.status == "failed" and server is not None and server.root is not None:
        tail = server.log_tail()
        if tail:
            print(f"--- last lines of {server.log_path} ---\n{tail}", file=sys.stderr)
    fleet: ServerFleet | None = getattr(context, "pacsref_fleet", None)
    if scenario.status == "failed" and fleet is not None:
        print(fleet.log_tails(), file=sys.stderr)
