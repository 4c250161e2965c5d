"""The test harness's twistd server takes another port when the one it chose is taken.

``free_loopback_port`` probes a free ephemeral port and closes it; until twistd binds it,
another socket can take it (a client's connection gets ephemeral ports from the same range).
A behave feature once failed all its scenarios that way in CI ("port 53019 is in use"). A
server whose port the harness chose moves to a new one and tries again; one given its port
by the test does not.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pacsref.testing import twistd as twistd_module
from pacsref.testing.net import LOOPBACK, free_loopback_port
from pacsref.testing.twistd import ServerStartError, TwistdServer


@pytest.fixture
def taken() -> Iterator[socket.socket]:
    """A port something else listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen()
        yield listener


@pytest.mark.parametrize("settings", [{}, {"client_timeout": "60"}], ids=["quick-start", "created"])
def test_a_chosen_port_taken_meanwhile_is_given_up_for_another(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    taken: socket.socket,
    settings: dict[str, str],
) -> None:
    ports = iter([taken.getsockname()[1]])
    monkeypatch.setattr(
        twistd_module,
        "free_loopback_port",
        lambda host: next(ports, None) or free_loopback_port(host),
    )
    server = TwistdServer("PACSREF", root=tmp_path, settings=settings)
    try:
        server.start()
        assert server.port != taken.getsockname()[1]
        assert f"port {taken.getsockname()[1]} is in use" in server.log_path.read_text()
        with socket.create_connection(server.address, timeout=5):
            pass
    finally:
        server.stop()


def test_a_port_the_test_gave_is_not_changed(tmp_path: Path, taken: socket.socket) -> None:
    port = taken.getsockname()[1]
    server = TwistdServer("PACSREF", root=tmp_path, port=port)
    with pytest.raises(ServerStartError, match=f"port {port} is in use"):
        server.start()
    assert server.port == port
