"""The admin socket's place, modes, stale-file handling and the service tree wiring."""

from __future__ import annotations

import os
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet.selectreactor import SelectReactor
from twisted.internet.testing import MemoryReactor
from twisted.python.failure import Failure

from pacsref.admin.service import (
    MAX_SOCKET_PATH,
    AdminService,
    AdminSocketError,
    admin_socket_path,
    prepare_socket_path,
)
from pacsref.server.service import server_service
from pacsref.testing.harness import ServerHarness


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path (pytest's tmp_path may be too long for a socket)."""
    with tempfile.TemporaryDirectory(prefix="adm", dir="/tmp") as name:
        yield Path(name)


def test_socket_is_named_after_the_ae_title_in_the_server_dir(tmp_path: Path) -> None:
    assert admin_socket_path(tmp_path, "PACSREF") == tmp_path / "admin" / "PACSREF.sock"
    assert admin_socket_path(tmp_path, "A/B C").name == "A%2FB%20C.sock"


def test_too_long_path_is_refused_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / ("d" * MAX_SOCKET_PATH) / "PACSREF.sock"
    with pytest.raises(AdminSocketError) as caught:
        prepare_socket_path(path)
    text = str(caught.value)
    assert "\n" not in text and "more than a Unix socket allows (107)" in text
    assert not path.parent.exists()


def test_service_listens_with_mode_0600(short_dir: Path) -> None:
    harness = ServerHarness(short_dir / "PACSREF")
    reactor = MemoryReactor()
    service = AdminService(harness.factory.control, harness.server, reactor)
    assert service.path == short_dir / "PACSREF" / "admin" / "PACSREF.sock"
    service.startService()
    [(address, factory, _backlog, mode, _want_pid)] = reactor.unixServers
    assert (address, mode) == (str(service.path), 0o600)
    assert factory is service.factory
    assert stat.S_IMODE(service.path.parent.stat().st_mode) == 0o700
    service.stopService()
    assert service.factory is None


def test_real_socket_is_0600_in_a_0700_directory(short_dir: Path) -> None:
    directory = short_dir / "admin"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)  # an old, too open directory is tightened
    path = directory / "PACSREF.sock"
    harness = ServerHarness(short_dir / "PACSREF")
    reactor = SelectReactor()
    service = AdminService(harness.factory.control, harness.server, reactor, path=path)
    service.startService()
    try:
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        with pytest.raises(AdminSocketError, match="another server is already listening"):
            prepare_socket_path(path)
    finally:
        port = service.port
        service.port = None
        service.stopService()
        port.connectionLost(Failure(ConnectionError("test over")))  # no running reactor
    assert not path.exists()


def test_stale_socket_is_removed(short_dir: Path) -> None:
    path = short_dir / "admin" / "X.sock"
    path.parent.mkdir(mode=0o700)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, as after a killed server
    assert path.exists()
    prepare_socket_path(path)
    assert not path.exists()


def test_a_file_that_is_not_a_socket_is_left_and_refused(short_dir: Path) -> None:
    path = short_dir / "admin" / "X.sock"
    path.parent.mkdir(mode=0o700)
    path.write_text("mine")
    with pytest.raises(AdminSocketError, match="is not a socket"):
        prepare_socket_path(path)
    assert path.read_text() == "mine"


def test_server_service_has_the_admin_service_after_the_listener(tmp_path: Path) -> None:
    harness = ServerHarness(tmp_path / "PACSREF")
    names = [s.name for s in server_service(harness.server, MemoryReactor())]
    assert names.index("admin") > names.index("dicom")
