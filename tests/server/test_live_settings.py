"""Live settings: the running server takes live values at once and keeps restart-only ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.logger import globalLogPublisher

from pacsref.addin import IDicomRequest
from pacsref.server.live_settings import (
    LiveSettings,
    diff_settings,
    live_settings_for,
    running_settings,
)
from pacsref.settings import FIELD_SPECS, LIVE_FIELDS, RESTART_FIELDS, ServerSettings
from pacsref.testing.harness import ServerHarness
from pacsref.ul import codec
from pacsref.ul.constants import PDUType

from .helpers import associate_rq, echo_rq, responses


@pytest.fixture
def harness(tmp_path: Path) -> ServerHarness:
    return ServerHarness(tmp_path / "PACSREF", settings={"artim_timeout": 10.0})


def test_every_field_is_classified_and_the_socket_ones_need_a_restart() -> None:
    """Each field is live or restart-only; what the listener and start-up fix needs a restart."""
    assert {spec.name for spec in FIELD_SPECS} == LIVE_FIELDS | RESTART_FIELDS
    assert not LIVE_FIELDS & RESTART_FIELDS
    for name in ("ae_title", "port", "ip_address", "server_secure", "temporary_directory",
                 "max_pdu_length", "enable_service_log"):  # fmt: skip
        assert name in RESTART_FIELDS
    for name in ("max_clients", "artim_timeout", "client_timeout", "allow_anonymous"):
        assert name in LIVE_FIELDS


def test_running_settings_take_live_values_and_keep_restart_ones() -> None:
    """The merged settings have the new max_clients but the old port: never half applied."""
    old = ServerSettings(ae_title="A", port=104, max_clients=10)
    new = old.replace(port=105, max_clients=20, artim_timeout=5)
    change = diff_settings(old, new)
    assert change.live == ("max_clients", "artim_timeout") and change.restart == ("port",)
    running = running_settings(old, new)
    assert (running.port, running.max_clients, running.artim_timeout) == (104, 20, 5.0)


def _associate(harness: ServerHarness, port: int = 40000) -> Any:
    conn = harness.connect(port=port)
    conn.send(associate_rq())
    [(pdu_type, body)] = conn.received()
    return conn, pdu_type, body


def test_max_clients_and_identity_apply_to_new_associations(harness: ServerHarness) -> None:
    """A lowered max_clients refuses the next one; an open association keeps going."""
    live = live_settings_for(harness.factory)
    first, pdu_type, _ = _associate(harness)
    assert pdu_type is PDUType.A_ASSOCIATE_AC
    new = harness.server.settings.replace(
        max_clients=1, implementation_version_name="NEWNAME", max_pdu_length=32768
    )
    change = live.apply(new)
    assert change.live == ("implementation_version_name", "max_clients")
    assert change.restart == ("max_pdu_length",)
    assert harness.server.settings.max_pdu_length == 131072  # restart-only: old value runs
    _, pdu_type, body = _associate(harness, port=40001)
    assert pdu_type is PDUType.A_ASSOCIATE_RJ and body == bytes([0, 2, 3, 2])
    first.send(echo_rq(message_id=3))
    [rsp] = responses(first.received())
    assert rsp[0x0900] == 0
    first.send(codec.RELEASE_RQ)
    first.lose()
    _, pdu_type, body = _associate(harness, port=40002)
    assert pdu_type is PDUType.A_ASSOCIATE_AC
    ac = codec.decode_associate_ac(body)
    assert ac.user_information.implementation_version_name == "NEWNAME"
    assert ac.user_information.max_pdu_length == 131072


def test_artim_change_applies_to_the_next_timer(harness: ServerHarness) -> None:
    """A connection accepted after the change is closed by the new ARTIM timeout."""
    live = live_settings_for(harness.factory)
    live.apply(harness.server.settings.replace(artim_timeout=2))
    conn = harness.connect()
    harness.clock.advance(2.5)
    assert conn.closed


def test_caches_are_updated_and_one_line_is_logged(harness: ServerHarness) -> None:
    """The requestor and the message notifier see the change; kind=settings.changed is logged."""
    live = live_settings_for(harness.factory)
    seen: list[ServerSettings] = []
    live.subscribe(seen.append)
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        live.apply(harness.server.settings.replace(reconnect_timeout=3, copy_dataset_image=True))
    finally:
        globalLogPublisher.removeObserver(events.append)
    requestor: Any = harness.server.registry.get(IDicomRequest)
    assert requestor.settings.reconnect_timeout == 3.0
    assert harness.factory.dispatcher.notifier.copy_dataset_image is True
    assert seen == [harness.server.settings]
    [line] = [e for e in events if e.get("kind") == "settings.changed"]
    assert line["live"] == ["reconnect_timeout", "copy_dataset_image"] and line["restart"] == []


def test_no_difference_changes_nothing(harness: ServerHarness) -> None:
    """Applying the running settings again swaps nothing and calls no subscriber."""
    live = LiveSettings(harness.server)
    calls: list[object] = []
    live.subscribe(calls.append)
    before = harness.server.settings
    change = live.apply(before.replace())
    assert (change.live, change.restart) == ((), ()) and not calls
    assert harness.server.settings is before
