"""twistd pacsref: options, server directory creation and start-up refusals."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import pytest
from twisted.application.service import IService
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from pacsref.server.create import main as create_main
from pacsref.server.create import shipped_addins
from pacsref.server.tap import Options, check_can_listen, ensure_server_dir, makeService
from pacsref.settings import load_settings
from pacsref.testing.net import free_loopback_port


@pytest.fixture(autouse=True)
def _root_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``$PACSREF_ROOT`` from the shell running the tests: the tests that want one set it."""
    monkeypatch.delenv("PACSREF_ROOT", raising=False)


def _options(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def test_quick_start_creates_directory_with_shipped_addins(tmp_path: Path) -> None:
    """--server-dir on a new directory with --ae-title/--port creates it, add-ins included."""
    server_dir = tmp_path / "STORE"
    port = free_loopback_port()
    service = makeService(
        _options(
            "--server-dir",
            str(server_dir),
            "--ae-title",
            "STORE",
            "--port",
            str(port),
            "--ip-address",
            "127.0.0.1",
        ),
        reactor=Clock(),
    )
    verifyObject(IService, service)
    settings = load_settings(server_dir / "settings.toml")
    assert (settings.ae_title, settings.port, settings.ip_address) == ("STORE", port, "127.0.0.1")
    assert (server_dir / "addins" / "verification.py").is_file()
    assert {p.name for p in shipped_addins()} <= {p.name for p in (server_dir / "addins").iterdir()}


def test_existing_directory_runs_as_its_settings_say(tmp_path: Path) -> None:
    """An existing server directory is run as is; --port then changes nothing."""
    server_dir = tmp_path / "A"
    port = str(free_loopback_port())
    argv = ["--server-dir", str(server_dir), "--ae-title", "A", "--port", port]
    assert create_main([*argv, "--ip-address", "127.0.0.1"]) == 0
    makeService(_options("--server-dir", str(server_dir), "--port", "5"), reactor=Clock())
    assert load_settings(server_dir / "settings.toml").port == int(port)


def test_missing_directory_without_ae_title_is_refused(tmp_path: Path) -> None:
    """--server-dir naming a non-server without --ae-title stops with one line."""
    with pytest.raises(SystemExit, match="is not a server directory"):
        makeService(_options("--server-dir", str(tmp_path / "nothing")), reactor=Clock())


def test_invalid_settings_stop_startup_naming_the_field(tmp_path: Path) -> None:
    """A bad value in settings.toml stops start-up with the file, field and rule."""
    server_dir = tmp_path / "B"
    create_main(["--server-dir", str(server_dir), "--ae-title", "B"])
    path = server_dir / "settings.toml"
    path.write_text(path.read_text().replace("port = 11112", "port = 70000"))
    with pytest.raises(SystemExit, match=r"settings.toml: port = 70000"):
        makeService(_options("--server-dir", str(server_dir)), reactor=Clock())


def test_port_in_use_is_one_line() -> None:
    """A port that is taken stops start-up with a one-line reason."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        with pytest.raises(SystemExit) as info:
            check_can_listen("127.0.0.1", port)
    finally:
        busy.close()
    message = str(info.value.code)
    assert message == f"pacsref: cannot listen on 127.0.0.1:{port}: port {port} is in use"


def test_ip_not_local_is_one_line() -> None:
    """An IP address that is not this host's stops start-up with a one-line reason."""
    with pytest.raises(SystemExit, match=r"192\.0\.2\.1 is not an address of this host"):
        check_can_listen("192.0.2.1", 11112)


def test_a_scoped_address_on_no_such_interface_is_one_line() -> None:
    """ip_address = "fe80::1%nosuch0" is a valid literal; the host has no such interface, and
    start-up says so in one line instead of Twisted's CannotListenError later."""
    with pytest.raises(SystemExit) as info:
        check_can_listen("fe80::1%nosuch0", 0)
    message = str(info.value.code)
    assert message.startswith("pacsref: cannot listen on fe80::1%nosuch0:0: "), message
    assert message.endswith("(is 'nosuch0' an interface?)"), message


def test_create_cli_set_values(tmp_path: Path) -> None:
    """python -m pacsref.server.create --set reads TOML values for any setting."""
    server_dir = tmp_path / "C"
    code = create_main(
        [
            "--server-dir",
            str(server_dir),
            "--ae-title",
            "C",
            "--set",
            "artim_timeout=5",
            "--set",
            "allow_anonymous=false",
        ]
    )
    assert code == 0
    settings = load_settings(server_dir / "settings.toml")
    assert settings.artim_timeout == 5 and settings.allow_anonymous is False


def test_create_cli_bad_value_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad --set value exits 2 with the settings error."""
    code = create_main(["--server-dir", str(tmp_path / "D"), "--ae-title", "D", "--set", "port=0"])
    assert code == 2
    assert "port" in capsys.readouterr().err


def test_create_cli_bad_values_are_one_usage_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Several bad values are bad usage: one line in the usage form, exit 2, nothing created."""
    server_dir = tmp_path / "D"
    argv = ["--server-dir", str(server_dir), "--ae-title", "D"]
    code = create_main([*argv, "--set", "port=0", "--set", "max_clients=-1"], prog="pacsref create")
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("pacsref: create: command line: port = 0 "), err
    assert "; command line: max_clients = -1 " in err
    assert err.endswith(" (see: pacsref create --help)\n"), err
    assert not server_dir.exists()


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["--ae-title", "E", "--set", "foo"],
            "pacsref: create: argument --set: --set expects key=value, got 'foo' "
            "(see: pacsref create --help)",
        ),
        (
            ["--ae-title", "E", "--port", "x"],
            "pacsref: create: argument --port: expected an integer, not 'x' "
            "(see: pacsref create --help)",
        ),
    ],
)
def test_create_cli_usage_error_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], line: str
) -> None:
    """pacsref create's usage errors are one line, as every other pacsref command's, exit 2."""
    with pytest.raises(SystemExit) as info:
        create_main(["--server-dir", str(tmp_path / "E"), *argv], prog="pacsref create")
    assert info.value.code == 2
    assert capsys.readouterr().err == line + "\n"


def test_create_cli_system_failure_is_one_line_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the system refuses is a failure (exit 1, docs/manager.md), without "[Errno N]"."""
    code = create_main(["--server-dir", "/proc/nope", "--ae-title", "F"], prog="pacsref create")
    err = capsys.readouterr().err
    assert code == 1
    assert err == "pacsref: cannot create server directory /proc/nope: No such file or directory\n"


def test_create_cli_existing_server_is_a_failure_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A directory that already is a server is a failure, not bad usage: one line, exit 1."""
    argv = ["--server-dir", str(tmp_path / "G"), "--ae-title", "G"]
    assert create_main(argv) == 0
    capsys.readouterr()
    assert create_main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists (the directory is already a server)" in err


def test_embedded_default_answers_any_called_ae(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no --server-dir, ./pacsref-data/PACSREF is created and does not check the called AE."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pacsref.server.tap.check_can_listen", lambda ip, port: None)
    makeService(_options(), reactor=Clock())
    settings = load_settings(tmp_path / "pacsref-data" / "PACSREF" / "settings.toml")
    assert (settings.ae_title, settings.port) == ("PACSREF", 11112)
    assert settings.check_called_ae_title is False and settings.allow_anonymous is True


@pytest.mark.parametrize("given", ["STORE", " STORE "])
def test_ae_title_without_server_dir_checks_the_called_ae(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    """--ae-title AE alone makes ./pacsref-data/AE (the manager's <root>/<AE>/), and like any
    server created with an AE title of its own it refuses other called AE titles (README)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pacsref.server.tap.check_can_listen", lambda ip, port: None)
    makeService(_options("--ae-title", given, "--port", "11113"), reactor=Clock())
    settings = load_settings(tmp_path / "pacsref-data" / "STORE" / "settings.toml")
    assert (settings.ae_title, settings.port) == ("STORE", 11113)
    assert settings.check_called_ae_title is True
    assert not (tmp_path / "pacsref-data" / "PACSREF").exists()


def test_ae_title_without_server_dir_runs_the_existing_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second start with the same --ae-title runs ./pacsref-data/AE as its settings say."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pacsref.server.tap.check_can_listen", lambda ip, port: None)
    makeService(_options("--ae-title", "STORE", "--port", "11113"), reactor=Clock())
    makeService(_options("--ae-title", "STORE", "--port", "5"), reactor=Clock())
    assert load_settings(tmp_path / "pacsref-data" / "STORE" / "settings.toml").port == 11113


def test_ae_title_without_server_dir_refuses_another_server_s_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """./pacsref-data/AE holding a server of another AE title is refused, not run under it."""
    monkeypatch.chdir(tmp_path)
    server_dir = Path("pacsref-data") / "STORE"
    assert create_main(["--server-dir", str(server_dir), "--ae-title", "OTHER"]) == 0
    with pytest.raises(SystemExit) as info:
        makeService(_options("--ae-title", "STORE"), reactor=Clock())
    assert str(info.value.code) == (
        f"pacsref: {tmp_path / server_dir} holds the server with AE title 'OTHER', not "
        "'STORE'; give --server-dir DIR to create or run a server elsewhere"
    )


def test_embedded_default_lives_under_pacsref_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With $PACSREF_ROOT set, the embedded default is $PACSREF_ROOT/PACSREF, where
    ``pacsref server list`` and ``check PACSREF`` look, not ./pacsref-data/PACSREF."""
    root = tmp_path / "srv"
    monkeypatch.setenv("PACSREF_ROOT", str(root))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pacsref.server.tap.check_can_listen", lambda ip, port: None)
    makeService(_options(), reactor=Clock())
    settings = load_settings(root / "PACSREF" / "settings.toml")
    assert (settings.ae_title, settings.check_called_ae_title) == ("PACSREF", False)
    assert not (tmp_path / "pacsref-data").exists()


def test_ae_title_without_server_dir_lives_under_pacsref_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--ae-title AE alone, with $PACSREF_ROOT set, is $PACSREF_ROOT/AE: the manager's
    <root>/<AE>/, run again there by the same command."""
    root = tmp_path / "srv"
    monkeypatch.setenv("PACSREF_ROOT", str(root))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pacsref.server.tap.check_can_listen", lambda ip, port: None)
    makeService(_options("--ae-title", "STORE", "--port", "11113"), reactor=Clock())
    makeService(_options("--ae-title", "STORE", "--port", "5"), reactor=Clock())
    settings = load_settings(root / "STORE" / "settings.toml")
    assert (settings.ae_title, settings.port, settings.check_called_ae_title) == (
        "STORE",
        11113,
        True,
    )
    assert not (tmp_path / "pacsref-data").exists()


@pytest.mark.parametrize(("argv", "name"), [((), "PACSREF"), (("--ae-title", "STORE"), "STORE")])
def test_empty_pacsref_root_means_the_default_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...], name: str
) -> None:
    """PACSREF_ROOT set but empty is unset (as the manager reads it): ./pacsref-data, not the
    working directory itself."""
    monkeypatch.setenv("PACSREF_ROOT", "")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pacsref.server.tap.check_can_listen", lambda ip, port: None)
    makeService(_options(*argv), reactor=Clock())
    assert load_settings(tmp_path / "pacsref-data" / name / "settings.toml").ae_title == name
    assert [path.name for path in tmp_path.iterdir()] == ["pacsref-data"]


@pytest.mark.parametrize(("argv", "name"), [((), "PACSREF"), (("--ae-title", "STORE"), "STORE")])
def test_relative_pacsref_root_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...], name: str
) -> None:
    """A relative $PACSREF_ROOT is taken from the working directory, as the manager takes it,
    so the server is where the manager run from the same directory looks."""
    from pacsref.manager.daemon import default_root

    monkeypatch.setenv("PACSREF_ROOT", "rel/root")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pacsref.server.tap.check_can_listen", lambda ip, port: None)
    makeService(_options(*argv), reactor=Clock())
    assert load_settings(tmp_path / "rel" / "root" / name / "settings.toml").ae_title == name
    assert (default_root() / name / "settings.toml").is_file()


def test_help_states_the_root_rule() -> None:
    """``twistd pacsref --help`` names the rule ($PACSREF_ROOT, else ./pacsref-data), not a
    fixed ./pacsref-data that $PACSREF_ROOT would make untrue."""
    text = str(Options())
    assert "$PACSREF_ROOT" in text and "./pacsref-data" in text
    assert "./pacsref-data/AE" not in text and "./pacsref-data/PACSREF" not in text


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("../X", "'../X' cannot be used as a server name: it contains '/'"),
        (".X", "'.X' cannot be used as a server name: it starts with '.'"),
        ("A\\B", 'ae_title = "A\\\\B" contains a backslash'),
    ],
)
def test_ae_title_that_cannot_name_a_directory_needs_server_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str, words: str
) -> None:
    """An AE title that is no single folder name (or no AE title) is refused in one line,
    before anything is created, so none reaches outside ./pacsref-data."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        makeService(_options("--ae-title", given), reactor=Clock())
    message = str(info.value.code)
    assert "\n" not in message and message.startswith("pacsref: ") and words in message, message
    assert list(tmp_path.iterdir()) == []


def _server(tmp_path: Path, name: str = "S", **settings: str) -> Path:
    server_dir = tmp_path / name
    argv = ["--server-dir", str(server_dir), "--ae-title", name, "--ip-address", "127.0.0.1"]
    argv += ["--port", str(free_loopback_port())]
    for key, value in settings.items():
        argv += ["--set", f"{key}={value}"]
    assert create_main(argv) == 0
    return server_dir


def _refusal(server_dir: Path) -> str:
    with pytest.raises(SystemExit) as info:
        makeService(_options("--server-dir", str(server_dir)), reactor=Clock())
    message = str(info.value.code)
    assert "\n" not in message and message.startswith("pacsref: "), message
    return message


#: An add-in providing IAeTitles (a base service only one add-in may provide); {name} is its name.
AE_TABLE_ADDIN = """
from zope.interface import implementer

from pacsref.addin import IAddin, IAeTitles
from pacsref.addin.aetitles import MemoryAeTitles


@implementer(IAddin, IAeTitles)
class Titles(MemoryAeTitles):
    name = "{name}"
    description = "an AE title table"

    def presentation_contexts(self):
        return ()


addin = Titles(())
"""


def test_two_addins_providing_the_same_base_service_are_one_line(tmp_path: Path) -> None:
    """Two add-ins providing IAeTitles stop start-up with one line naming the service and both
    add-ins (the server cannot guess which one the operator meant), not a traceback."""
    server_dir = _server(tmp_path)
    for name in ("titles_one", "titles_two"):
        (server_dir / "addins" / f"{name}.py").write_text(AE_TABLE_ADDIN.format(name=name))
    message = _refusal(server_dir)
    assert message == (
        "pacsref: IAeTitles is provided by both add-in 'titles_one' and add-in 'titles_two'; "
        "only one provider is allowed"
    )


def test_too_long_admin_socket_path_is_refused_before_the_reactor_starts(tmp_path: Path) -> None:
    """The admin socket path is checked in makeService, not when the DICOM port is open."""
    server_dir = _server(tmp_path / ("d" * 100))
    message = _refusal(server_dir)
    assert "admin socket path is" in message and "more than a Unix socket allows (107)" in message


def test_a_file_in_the_admin_socket_s_place_is_refused(tmp_path: Path) -> None:
    server_dir = _server(tmp_path)
    (server_dir / "admin").mkdir(mode=0o700, exist_ok=True)
    (server_dir / "admin" / "S.sock").write_text("not a socket")
    message = _refusal(server_dir)
    assert message.endswith("S.sock exists and is not a socket; remove it")
    assert (server_dir / "admin" / "S.sock").read_text() == "not a socket"


def test_a_live_admin_socket_of_another_server_is_refused() -> None:
    with tempfile.TemporaryDirectory(prefix="tap", dir="/tmp") as short:
        server_dir = _server(Path(short))
        path = server_dir / "admin" / "S.sock"
        path.parent.mkdir(mode=0o700, exist_ok=True)
        live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        live.bind(str(path))
        live.listen()
        try:
            assert _refusal(server_dir) == f"pacsref: another server is already listening on {path}"
        finally:
            live.close()


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("/proc/nope", "cannot create the directory /proc/nope (No such file or directory)"),
        ("/proc", "cannot write in the directory /proc ("),
    ],
)
def test_an_unusable_temporary_directory_is_one_line(
    tmp_path: Path, value: str, words: str
) -> None:
    """The Temporary Directory is created and written once at start, never a traceback."""
    server_dir = _server(tmp_path, temporary_directory=f'"{value}"')
    message = _refusal(server_dir)
    assert f'settings.toml: temporary_directory = "{value}" {words}' in message


def test_a_relative_server_directory_is_made_absolute_before_twistd_changes_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """twistd's --rundir changes the working directory after makeService and before the
    services start: the server directory (relative, or under a relative $PACSREF_ROOT) is
    absolute by then, so the admin socket is made beside the settings that were read."""
    monkeypatch.setenv("PACSREF_ROOT", "rel-root")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pacsref.server.tap.check_can_listen", lambda ip, port: None)
    assert ensure_server_dir(_options("--ae-title", "MR")) == tmp_path / "rel-root" / "MR"
    create_main(["--server-dir", "rel-dir", "--ae-title", "CT"])
    assert ensure_server_dir(_options("--server-dir", "rel-dir")) == tmp_path / "rel-dir"
