"""The admin service over a harness server: AE title changes on the (manual) thread pool."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet.testing import StringTransport

from pacsref.admin.service import AdminService
from pacsref.testing.harness import ServerHarness, ThreadClock


class UnixReactor(ThreadClock):
    """ThreadClock (callFromThread runs at once) that records listenUNIX."""

    def __init__(self) -> None:
        super().__init__()
        self.unix: list[tuple[str, Any, int]] = []

    def listenUNIX(self, path: str, factory: Any, backlog: int = 50, mode: int = 0o666) -> Any:
        self.unix.append((path, factory, mode))
        return SimpleNamespace(stopListening=lambda: None)


@pytest.fixture
def harness() -> Iterator[ServerHarness]:
    with tempfile.TemporaryDirectory(prefix="adm", dir="/tmp") as name:
        yield ServerHarness(Path(name) / "PACSREF")


def test_add_ae_title_runs_on_the_thread_pool_and_persists(harness: ServerHarness) -> None:
    reactor = UnixReactor()
    service = AdminService(harness.control, harness.server, reactor)
    service.startService()
    [(_path, factory, mode)] = reactor.unix
    assert mode == 0o600
    admin = factory.buildProtocol(None)
    transport = StringTransport()
    admin.makeConnection(transport)
    info = {"ae_title": "WS1", "host": "127.0.0.1", "port": 11112}
    admin.dataReceived(json.dumps({"message": "AddAeTitle", "data": [info]}).encode() + b"\n")
    assert transport.value() == b""  # waiting for the worker thread
    harness.threadpool.run_all()
    reply = json.loads(transport.value())
    assert reply["success"] and reply["data"][0]["ae_title"] == "WS1", reply
    assert harness.server.ae_titles.get("WS1") is not None
    assert "WS1" in (harness.server.server_dir / "aetitles.toml").read_text()
    service.stopService()


def test_host_change_refreshes_the_address_cache_of_a_non_caching_table() -> None:
    calls: list[Any] = []
    addresses = SimpleNamespace(
        forget=lambda host: calls.append(("forget", host)),
        resolve_later=lambda host, *rest: calls.append(("resolve", host)),
    )
    server = SimpleNamespace(
        settings=SimpleNamespace(ae_title="X"),
        server_dir=Path("/nonexistent"),
        ae_titles=SimpleNamespace(list=lambda: ()),  # no ``addresses``: does not cache
        addresses=addresses,
        threadpool=None,
    )
    service = AdminService(None, server, UnixReactor())
    service._host_changed("ws1.example")
    assert calls == [("forget", "ws1.example"), ("resolve", "ws1.example")]
    server.ae_titles = SimpleNamespace(addresses=lambda title: None)  # caches itself
    calls.clear()
    service._host_changed("ws1.example")
    assert calls == []
