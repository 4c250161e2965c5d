"""Creating a server directory (pacsref.settings.create_server_directory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacsref.settings import (
    ServerLayout,
    ServerSettings,
    SettingsError,
    create_server_directory,
    load_settings,
)


def make_addins(tmp_path: Path) -> tuple[Path, Path]:
    """Make one single-module add-in and one package add-in (with a __pycache__)."""
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    module = shipped / "echo_addin.py"
    module.write_text("NAME = 'echo'\n", encoding="utf-8")
    package = shipped / "store_addin"
    (package / "__pycache__").mkdir(parents=True)
    (package / "__init__.py").write_text("NAME = 'store'\n", encoding="utf-8")
    (package / "handlers.py").write_text("", encoding="utf-8")
    (package / "__pycache__" / "handlers.cpython-311.pyc").write_bytes(b"\0")
    return module, package


def test_creates_the_contract_layout(tmp_path: Path) -> None:
    """settings.toml, addins/, tmp/, logs/ and data/ are created; the settings load back."""
    server = tmp_path / "servers" / "STORE"
    settings = ServerSettings(ae_title="STORE", port=104)
    create_server_directory(server, settings)
    assert sorted(entry.name for entry in server.iterdir()) == [
        "addins",
        "data",
        "logs",
        "settings.toml",
        "tmp",
    ]
    assert load_settings(server / "settings.toml") == settings


def test_copies_module_and_package_addins(tmp_path: Path) -> None:
    """Each shipped add-in lands in addins/ under its own name, without bytecode caches."""
    module, package = make_addins(tmp_path)
    server = tmp_path / "STORE"
    create_server_directory(server, ServerSettings(ae_title="STORE"), [module, package])
    addins = server / "addins"
    assert (addins / "echo_addin.py").read_text(encoding="utf-8") == "NAME = 'echo'\n"
    assert (addins / "store_addin" / "__init__.py").is_file()
    assert (addins / "store_addin" / "handlers.py").is_file()
    assert not (addins / "store_addin" / "__pycache__").exists()


def test_existing_empty_directory_is_fine(tmp_path: Path) -> None:
    """An installer may create the directory first; only settings.toml marks a server."""
    server = tmp_path / "STORE"
    server.mkdir()
    create_server_directory(server, ServerSettings(ae_title="STORE"))
    assert (server / "settings.toml").is_file()


def test_refuses_to_overwrite_existing_settings(tmp_path: Path) -> None:
    """An existing server is never reset: SettingsError names the file, which is untouched."""
    server = tmp_path / "STORE"
    create_server_directory(server, ServerSettings(ae_title="STORE", port=104))
    before = (server / "settings.toml").read_bytes()
    with pytest.raises(SettingsError) as info:
        create_server_directory(server, ServerSettings(ae_title="OTHER"))
    assert str(info.value).startswith(f"{server / 'settings.toml'}: already exists")
    assert (server / "settings.toml").read_bytes() == before


def test_missing_addin_source_creates_nothing(tmp_path: Path) -> None:
    """Bad add-in sources are found before anything is created on disk."""
    server = tmp_path / "STORE"
    missing = tmp_path / "no_such_addin.py"
    with pytest.raises(SettingsError, match=r"no_such_addin\.py: does not exist"):
        create_server_directory(server, ServerSettings(ae_title="STORE"), [missing])
    assert not server.exists()


def test_addins_with_the_same_name_are_refused(tmp_path: Path) -> None:
    """Two add-ins that would overwrite each other in addins/ are an error, not a silent loss."""
    first = tmp_path / "a" / "echo_addin.py"
    second = tmp_path / "b" / "echo_addin.py"
    for path in (first, second):
        path.parent.mkdir()
        path.write_text("", encoding="utf-8")
    with pytest.raises(SettingsError, match="has the same name as"):
        create_server_directory(tmp_path / "S", ServerSettings(ae_title="S"), [first, second])
    assert not (tmp_path / "S").exists()


def test_layout_names_the_paths(tmp_path: Path) -> None:
    """ServerLayout spells every path of the directory contract in one place."""
    layout = ServerLayout(tmp_path)
    assert (layout.settings_file, layout.addins_dir, layout.tmp_dir) == (
        tmp_path / "settings.toml",
        tmp_path / "addins",
        tmp_path / "tmp",
    )
    assert (layout.logs_dir, layout.data_dir) == (tmp_path / "logs", tmp_path / "data")
