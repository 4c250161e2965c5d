"""Reading and writing settings.toml: syntax errors, round trips, atomic saves."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pacsref.settings import (
    FIELD_NAMES,
    FIELD_SPECS,
    ServerSettings,
    SettingsError,
    StartMode,
    dumps_settings,
    load_settings,
    loads_settings,
    save_settings,
)
from pacsref.settings.fields import MAX_TIMEOUT_SECONDS, MIN_TIMEOUT_SECONDS
from pacsref.settings.tomltext import toml_string

TRICKY_TEXT = 'quote " backslash \\ newline \n tab \t cr \r nul \0 del \x7f bell \x07 ünï €'

NON_DEFAULT = ServerSettings(
    ae_title="STORE_SCP",
    implementation_class_uid="1.2.826.0.1.3680043.10.99",
    description=TRICKY_TEXT,
    implementation_version_name="MY \"VER' 1",
    ip_address="::1",
    temporary_directory="C:\\spool\\dicom",
    port=104,
    max_clients=7,
    server_secure=True,
    allow_anonymous=False,
    enable_service_log=True,
    multiple_connections=False,
    service_display_name="Archive ✓ [main]",
    max_pdu_length=0,
    client_timeout=0.0,
    reconnect_timeout=0.1,
    addin_timeout=0.0015,
    artim_timeout=12345.678,
    no_delay=False,
    receive_buffer=1024,
    send_buffer=16 * 1024 * 1024,
    start_mode=StartMode.AUTOMATIC,
    copy_dataset_image=True,
)


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("settings", [ServerSettings(ae_title="STORE"), NON_DEFAULT])
def test_save_then_load_round_trips_exactly(tmp_path: Path, settings: ServerSettings) -> None:
    """What save_settings writes, load_settings reads back as an equal object."""
    path = tmp_path / "settings.toml"
    save_settings(settings, path)
    loaded = load_settings(path)
    assert loaded == settings
    assert loaded.as_mapping() == settings.as_mapping()
    assert [type(value) for value in loaded.as_mapping().values()] == [
        type(value) for value in settings.as_mapping().values()
    ]


@pytest.mark.parametrize("mode", list(StartMode))
def test_every_start_mode_round_trips(mode: StartMode) -> None:
    """Each start mode is written with its TOML spelling and read back as the enum."""
    settings = ServerSettings(ae_title="A", start_mode=mode)
    assert f'start_mode = "{mode.value}"' in dumps_settings(settings)
    assert loads_settings(dumps_settings(settings)).start_mode is mode


@given(
    text=st.text(),
    seconds=st.floats(min_value=MIN_TIMEOUT_SECONDS, max_value=MAX_TIMEOUT_SECONDS),
    port=st.integers(1, 65535),
)
def test_round_trip_of_arbitrary_text_and_numbers(text: str, seconds: float, port: int) -> None:
    """Any string (control characters included) and any allowed float/int survive the file."""
    settings = ServerSettings(
        ae_title="A", description=text, service_display_name=text, addin_timeout=seconds, port=port
    )
    assert loads_settings(dumps_settings(settings)) == settings


@given(st.text())
def test_toml_string_is_read_back_by_tomllib(text: str) -> None:
    """The hand-written string escaping agrees with the standard TOML reader."""
    assert tomllib.loads(f"key = {toml_string(text)}") == {"key": text}


def test_loading_accepts_tables_free_variants_of_the_same_values(tmp_path: Path) -> None:
    """Equivalent TOML spellings (underscores, hex, integer seconds, comments) load the same."""
    path = tmp_path / "settings.toml"
    path.write_text(
        "# hand edited\nae_title = 'STORE'  # literal string\nport = 0x68\n"
        "max_pdu_length = 32_768\nclient_timeout = 60\n",
        encoding="utf-8",
    )
    assert load_settings(path) == ServerSettings(
        ae_title="STORE", port=104, max_pdu_length=32768, client_timeout=60.0
    )


# --------------------------------------------------------------------------- the written text


def test_saved_file_is_commented_and_grouped_by_tab() -> None:
    """Each key has one comment line above it, under Settings/Advanced tab headings."""
    lines = dumps_settings(ServerSettings(ae_title="STORE")).splitlines()
    keys = [line.split(" = ")[0] for line in lines if line and not line.startswith("#")]
    assert tuple(keys) == FIELD_NAMES
    for spec in FIELD_SPECS:
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{spec.name} = "))
        assert lines[index - 1].startswith(f"# {spec.comment}")
        assert spec.allowed in lines[index - 1]
    settings_tab = lines.index("# ===== Settings tab =====")
    advanced_tab = lines.index("# ===== Advanced tab =====")
    ae_line = lines.index('ae_title = "STORE"')
    display_line = next(i for i, line in enumerate(lines) if line.startswith("service_display"))
    assert settings_tab < ae_line < advanced_tab < display_line


def test_saved_file_shows_defaults_and_requirement() -> None:
    """Comments tell the editor each default, and that ae_title is required."""
    text = dumps_settings(ServerSettings(ae_title="STORE"))
    assert "Default: 11112." in text
    assert 'Default: "manual".' in text
    assert "Required." in text


# --------------------------------------------------------------------------- reading errors


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    """A syntax error (here an unquoted string) is reported with the file and line number."""
    path = tmp_path / "settings.toml"
    path.write_text('ae_title = "STORE"\n\nport = 104\ndescription = my server\n', "utf-8")
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    (problem,) = info.value.problems
    assert problem.line == 4
    assert str(info.value).startswith(f"{path}: invalid TOML syntax: ")
    assert "line 4" in str(info.value)
    assert "strings in double quotes" in str(info.value)


def test_syntax_error_at_end_of_document_gets_last_line(tmp_path: Path) -> None:
    """tomllib reports some errors only "at end of document"; the last line is given."""
    path = tmp_path / "settings.toml"
    path.write_text('ae_title = "STORE"\nport =', "utf-8")
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert info.value.problems[0].line == 2


def test_duplicate_key_is_a_syntax_error(tmp_path: Path) -> None:
    """Adding a second 'port =' line instead of editing the first is reported, not merged."""
    path = tmp_path / "settings.toml"
    path.write_text('ae_title = "STORE"\nport = 104\nport = 105\nno_delay = true\n', "utf-8")
    with pytest.raises(SettingsError, match="line 3"):
        load_settings(path)


def test_missing_file_is_a_settings_error(tmp_path: Path) -> None:
    """Even an absent file raises SettingsError (naming it), so callers catch one type."""
    path = tmp_path / "nope" / "settings.toml"
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert str(info.value).startswith(f"{path}: cannot be read (")


def test_non_utf8_file_reports_line(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 (e.g. a Latin-1 save) are reported with their line."""
    path = tmp_path / "settings.toml"
    path.write_bytes(b'ae_title = "STORE"\ndescription = "caf\xe9"\n')
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert info.value.problems[0].line == 2
    assert "is not UTF-8 text" in str(info.value)


def test_utf8_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    """Editors that prepend a BOM do not break the file."""
    path = tmp_path / "settings.toml"
    path.write_bytes(b'\xef\xbb\xbfae_title = "STORE"\n')
    assert load_settings(path).ae_title == "STORE"


# --------------------------------------------------------------------------- atomic save


def test_save_leaves_no_temporary_files(tmp_path: Path) -> None:
    """Creating and then overwriting the file leaves only settings.toml in the directory."""
    path = tmp_path / "settings.toml"
    save_settings(ServerSettings(ae_title="ONE"), path)
    save_settings(ServerSettings(ae_title="TWO"), path)
    assert os.listdir(tmp_path) == ["settings.toml"]
    assert load_settings(path).ae_title == "TWO"


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_save_keeps_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """If the write or the rename fails, the old file is untouched and no temp file remains."""
    path = tmp_path / "settings.toml"
    save_settings(ServerSettings(ae_title="OLD"), path)
    before = path.read_bytes()

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match="No space left"):
        save_settings(NON_DEFAULT, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["settings.toml"]


def test_failed_first_save_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed save of a new file leaves neither a partial settings.toml nor a temp file."""

    def fail(*args: object) -> None:
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        save_settings(ServerSettings(ae_title="NEW"), tmp_path / "settings.toml")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_save_keeps_permissions_of_existing_file(tmp_path: Path) -> None:
    """Replacing the file does not silently change who may read it."""
    path = tmp_path / "settings.toml"
    save_settings(ServerSettings(ae_title="ONE"), path)
    path.chmod(0o640)
    save_settings(ServerSettings(ae_title="TWO"), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_saving_through_a_symbolic_link_replaces_the_file_it_points_at(tmp_path: Path) -> None:
    """settings.toml kept under /etc and linked into the server directory: the link stays,
    the file it points at holds the new values."""
    real = tmp_path / "etc" / "settings.toml"
    real.parent.mkdir()
    save_settings(ServerSettings(ae_title="LINKED"), real)
    link = tmp_path / "server" / "settings.toml"
    link.parent.mkdir()
    link.symlink_to(real)
    save_settings(ServerSettings(ae_title="LINKED", port=2000), link)
    assert link.is_symlink() and link.resolve() == real
    assert load_settings(real).port == 2000
    assert [p.name for p in link.parent.iterdir()] == ["settings.toml"]
