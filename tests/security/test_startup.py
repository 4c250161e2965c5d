"""``twistd pacsref`` and Server Secure: refuse to start without TLS, listen with TLS with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock

from pacsref.security import ServerTLSOptions
from pacsref.server.create import create_server
from pacsref.server.tap import Options, makeService
from pacsref.testing.net import free_loopback_port
from pacsref.testing.tls import TestPKI, write_security_options


def _server(tmp_path: Path, secure: bool = True) -> Path:
    server_dir = tmp_path / "SECURE"
    create_server(
        server_dir,
        {
            "ae_title": "SECURE",
            "server_secure": secure,
            "port": free_loopback_port(),
            "ip_address": "127.0.0.1",
        },
    )
    return server_dir


def _make(server_dir: Path, reactor: object | None = None) -> object:
    options = Options()
    options.parseOptions(["--server-dir", str(server_dir)])
    return makeService(options, reactor=reactor or MemoryReactorClock())


def test_secure_without_security_options_refuses_to_start(tmp_path: Path) -> None:
    """Server Secure on, security add-in inactive: start-up stops with one line saying so."""
    with pytest.raises(SystemExit) as stopped:
        _make(_server(tmp_path))
    message = str(stopped.value)
    assert message.startswith("pacsref: Server Secure is on but no add-in provides ISecurity")
    assert "addin-options/security.toml" in message
    assert "\n" not in message


def test_secure_with_broken_options_names_the_problem(tmp_path: Path) -> None:
    """A broken security.toml: the one line carries the add-in's own error."""
    server_dir = _server(tmp_path)
    options = server_dir / "addin-options" / "security.toml"
    options.parent.mkdir()
    options.write_text('certificate = "missing.pem"\nprivate_key = "missing.key"\n')
    with pytest.raises(SystemExit) as stopped:
        _make(server_dir)
    message = str(stopped.value)
    assert "add-in security failed to load" in message
    assert "require_client_certificate = true needs trusted_ca" in message
    assert "\n" not in message


def test_secure_server_listens_with_tls(tmp_path: Path) -> None:
    """With the security options, the listener is listenSSL with our explicit TLS options."""
    server_dir = _server(tmp_path)
    write_security_options(server_dir, TestPKI(tmp_path / "pki"))
    reactor = MemoryReactorClock()
    service = _make(server_dir, reactor)
    service.getServiceNamed("dicom").startService()  # type: ignore[attr-defined]
    assert not reactor.tcpServers
    [(_port, _factory, creator, _backlog, interface)] = reactor.sslServers
    assert isinstance(creator, ServerTLSOptions) and creator.require_peer_certificate
    assert interface == "127.0.0.1"


def test_plain_server_with_active_security_stays_plain(tmp_path: Path) -> None:
    """Security options alone do not make a server secure: Server Secure decides."""
    server_dir = _server(tmp_path, secure=False)
    write_security_options(server_dir, TestPKI(tmp_path / "pki"))
    reactor = MemoryReactorClock()
    service = _make(server_dir, reactor)
    service.getServiceNamed("dicom").startService()  # type: ignore[attr-defined]
    assert reactor.tcpServers and not reactor.sslServers
