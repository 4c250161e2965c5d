"""Behaviour of the settings model and its validation (pacsref.settings)."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest

from pacsref.settings import (
    DEFAULT_IMPLEMENTATION_CLASS_UID,
    DEFAULT_IMPLEMENTATION_VERSION_NAME,
    FIELD_NAMES,
    FIELD_SPECS,
    MISSING,
    ServerSettings,
    SettingsError,
    StartMode,
    load_settings,
    settings_from_mapping,
)
from pacsref.settings.fields import FIELDS_BY_NAME


def write_settings(tmp_path: Path, text: str) -> Path:
    """Write ``text`` as a settings file and return its path."""
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- defaults


def test_defaults_match_the_documented_values() -> None:
    """Only the AE title is required; every other field has the documented default."""
    settings = ServerSettings(ae_title="STORE")
    assert settings.implementation_class_uid == DEFAULT_IMPLEMENTATION_CLASS_UID
    assert settings.implementation_class_uid == "2.25.301404248454960653866452990530993571449"
    assert settings.implementation_version_name == DEFAULT_IMPLEMENTATION_VERSION_NAME
    assert settings.implementation_version_name == "PACSREF_010"
    assert (settings.description, settings.ip_address, settings.temporary_directory) == (
        "",
        "0.0.0.0",
        "",
    )
    assert (settings.port, settings.max_clients) == (11112, 100)
    assert settings.server_secure is False
    assert settings.allow_anonymous is True
    assert settings.enable_service_log is False
    assert settings.multiple_connections is True
    assert settings.service_display_name == ""
    assert settings.max_pdu_length == 131072
    assert (settings.client_timeout, settings.reconnect_timeout) == (300.0, 30.0)
    assert (settings.addin_timeout, settings.artim_timeout) == (60.0, 30.0)
    assert settings.no_delay is True
    assert (settings.receive_buffer, settings.send_buffer) == (0, 0)  # the OS decides
    assert settings.start_mode is StartMode.MANUAL
    assert settings.copy_dataset_image is False


def test_minimal_file_gives_defaults(tmp_path: Path) -> None:
    """A file with only ae_title loads as the defaults; left-out keys are not errors."""
    path = write_settings(tmp_path, 'ae_title = "STORE"\n')
    assert load_settings(path) == ServerSettings(ae_title="STORE")


def test_field_specs_describe_exactly_the_dataclass_fields() -> None:
    """Specs (rules, comments) and dataclass agree on names, order and defaults."""
    dataclass_fields = dataclasses.fields(ServerSettings)
    assert tuple(field.name for field in dataclass_fields) == FIELD_NAMES
    for spec, field in zip(FIELD_SPECS, dataclass_fields, strict=True):
        expected = MISSING if field.default is dataclasses.MISSING else field.default
        assert spec.default == expected, spec.name


def test_settings_are_frozen_and_slotted() -> None:
    """Running code shares one instance, so it must not be mutable (and is compact)."""
    settings = ServerSettings(ae_title="STORE")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 104  # type: ignore[misc]
    assert not hasattr(settings, "__dict__")


def test_fields_are_keyword_only() -> None:
    """Positional construction is refused: 23 positional fields invite silent mix-ups."""
    with pytest.raises(TypeError):
        ServerSettings("STORE")  # type: ignore[call-arg]


def test_start_mode_is_a_string_enum() -> None:
    """StartMode values are the TOML spellings, so they compare equal to plain strings."""
    assert [mode.value for mode in StartMode] == ["automatic", "manual", "disabled"]
    automatic: str = StartMode.AUTOMATIC
    assert automatic == "automatic" and str(StartMode.AUTOMATIC) == "automatic"
    settings = settings_from_mapping({"ae_title": "A", "start_mode": "disabled"})
    assert settings.start_mode is StartMode.DISABLED


# --------------------------------------------------------------------------- normalisation


def test_ae_title_outer_spaces_are_stripped() -> None:
    """Leading/trailing spaces of an AE title are insignificant (PS3.5), so they are dropped."""
    assert ServerSettings(ae_title="  STORE  ").ae_title == "STORE"
    padded = "STORE" + " " * 15  # 20 characters, but only 5 significant
    assert ServerSettings(ae_title=padded).ae_title == "STORE"
    assert ServerSettings(ae_title=" MY AE ").ae_title == "MY AE"  # inner space kept


def test_ae_title_stripped_when_loaded(tmp_path: Path) -> None:
    """A padded AE title in the file is loaded stripped."""
    path = write_settings(tmp_path, 'ae_title = "  STORE "\n')
    assert load_settings(path).ae_title == "STORE"


def test_integer_seconds_become_floats() -> None:
    """Timeouts may be written as integers in TOML but are always floats in the model."""
    settings = settings_from_mapping({"ae_title": "A", "client_timeout": 0, "addin_timeout": 5})
    assert settings.client_timeout == 0.0 and isinstance(settings.client_timeout, float)
    assert settings.addin_timeout == 5.0 and isinstance(settings.addin_timeout, float)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("port", 1),
        ("port", 65535),
        ("max_clients", 100_000),
        ("max_pdu_length", 0),
        ("max_pdu_length", 4096),
        ("max_pdu_length", 2**32 - 1),
        ("receive_buffer", 1024),
        ("send_buffer", 16 * 1024 * 1024),
        ("client_timeout", 0.0),
        ("artim_timeout", 0.001),
        ("ip_address", "::"),
        ("ip_address", "::1"),
        ("ip_address", "fe80::1%eth0"),
        ("ip_address", "127.0.0.1"),
        ("ae_title", "A" * 16),
        ("ae_title", "!~ #$%&'()*+,-./"),
        ("implementation_class_uid", "0.1.2"),
        ("implementation_class_uid", "1." + "2" * 62),
        ("implementation_version_name", "V" * 16),
        ("description", 'any "text" \\ with\nnewlines and ünïcödé'),
        ("temporary_directory", "/var/spool/pacs"),
    ],
)
def test_boundary_values_are_accepted(field: str, value: object) -> None:
    """Values at the edges of each allowed range are valid."""
    settings = settings_from_mapping({"ae_title": "A", field: value})
    assert getattr(settings, field) == (value if field != "ae_title" else str(value).strip())


# --------------------------------------------------------------------------- effective values


def test_display_name_defaults_to_dicom_server_ae() -> None:
    """An empty display name means "Dicom Server [<AE title>]", as in the framework guide."""
    assert ServerSettings(ae_title=" STORE ").effective_service_display_name == (
        "Dicom Server [STORE]"
    )
    custom = ServerSettings(ae_title="STORE", service_display_name="Archive")
    assert custom.effective_service_display_name == "Archive"


def test_temporary_directory_resolves_against_server_dir(tmp_path: Path) -> None:
    """Empty means <server>/tmp; relative paths are under the server dir; absolute are kept."""
    server = tmp_path / "STORE"
    settings = ServerSettings(ae_title="STORE")
    assert settings.effective_temporary_directory(server) == server / "tmp"
    relative = settings.replace(temporary_directory="spool/dimse")
    assert relative.effective_temporary_directory(server) == server / "spool" / "dimse"
    absolute = settings.replace(temporary_directory=str(tmp_path / "elsewhere"))
    assert absolute.effective_temporary_directory(server) == tmp_path / "elsewhere"


def test_zero_means_disabled_or_unlimited() -> None:
    """client_timeout 0 disables the timeout and max_pdu_length 0 means no limit (None)."""
    settings = ServerSettings(ae_title="A", client_timeout=0, max_pdu_length=0)
    assert settings.effective_client_timeout is None
    assert settings.effective_max_pdu_length is None
    default = ServerSettings(ae_title="A")
    assert default.effective_client_timeout == 300.0
    assert default.effective_max_pdu_length == 131072


# --------------------------------------------------------------------------- replace


def test_replace_returns_validated_copy() -> None:
    """replace() leaves the original alone and validates the copy."""
    original = ServerSettings(ae_title="STORE")
    changed = original.replace(port=104, start_mode="automatic", ae_title=" FIND ")
    assert (changed.port, changed.start_mode, changed.ae_title) == (
        104,
        StartMode.AUTOMATIC,
        "FIND",
    )
    assert original.port == 11112
    with pytest.raises(SettingsError) as info:
        original.replace(port=0, max_clients=-1)
    assert info.value.fields == ("port", "max_clients")
    assert str(info.value).startswith("ServerSettings.replace(): port = 0 is out of range")


def test_replace_rejects_unknown_names() -> None:
    """A misspelt keyword is a SettingsError, not silently ignored."""
    with pytest.raises(SettingsError, match="prot = 104 is not a known setting"):
        ServerSettings(ae_title="STORE").replace(prot=104)


def test_direct_construction_is_validated() -> None:
    """ServerSettings(...) itself rejects bad values, naming the class as the source."""
    with pytest.raises(SettingsError) as info:
        ServerSettings(ae_title="STORE", port=True)
    assert str(info.value) == (
        "ServerSettings: port = true has the wrong type (boolean); allowed: an integer 1-65535"
    )


def test_strings_that_cannot_be_written_are_rejected() -> None:
    """Lone surrogates cannot be stored in a UTF-8 file, so they are refused up front."""
    with pytest.raises(SettingsError, match=r"description = .* cannot be written as UTF-8"):
        ServerSettings(ae_title="STORE", description="bad \ud800")


# --------------------------------------------------------------------------- invalid values

# (field, TOML literal as written in the file, reason) -- the literal is also how the message
# quotes the value.
INVALID = [
    ("ae_title", '""', "is empty or all spaces"),
    ("ae_title", '"    "', "is empty or all spaces"),
    ("ae_title", '"ABCDEFGHIJKLMNOPQ"', "is too long (17 characters)"),
    ("ae_title", '"A\\\\B"', "contains a backslash"),
    ("ae_title", '"A\\tB"', "contains '\\t', which is not a printable ASCII character"),
    ("ae_title", '"ÄE"', "contains '\\xc4', which is not a printable ASCII character"),
    ("ae_title", "1", "has the wrong type (integer)"),
    ("implementation_class_uid", '""', "is empty"),
    ("implementation_class_uid", '"1.2..3"', "has an empty component"),
    ("implementation_class_uid", '"1.2."', "has an empty component"),
    ("implementation_class_uid", '"1.02.3"', "has a component with a leading zero (02)"),
    ("implementation_class_uid", '"1.2.a"', "contains a character other than digits and dots"),
    ("implementation_class_uid", '"' + "1." * 32 + '1"', "is too long (65 characters)"),
    ("implementation_class_uid", "1.2", "has the wrong type (float)"),
    ("description", "1", "has the wrong type (integer)"),
    ("implementation_version_name", '""', "is empty or all spaces"),
    ("implementation_version_name", '"ABCDEFGHIJKLMNOPQ"', "is too long (17 characters)"),
    ("implementation_version_name", '"V\\\\1"', "contains a backslash"),
    ("ip_address", '"localhost"', "is not an IPv4 or IPv6 address"),
    ("ip_address", '"256.0.0.1"', "is not an IPv4 or IPv6 address"),
    ("ip_address", '"0.0.0.0 "', "is not an IPv4 or IPv6 address"),
    ("ip_address", "false", "has the wrong type (boolean)"),
    ("temporary_directory", '"a\\u0000b"', "contains a NUL character"),
    ("temporary_directory", "false", "has the wrong type (boolean)"),
    ("port", "70000", "is out of range"),
    ("port", "0", "is out of range"),
    ("port", "65536", "is out of range"),
    ("port", "-1", "is out of range"),
    ("port", "true", "has the wrong type (boolean)"),
    ("port", '"104"', "has the wrong type (string)"),
    ("port", "104.0", "has the wrong type (float)"),
    ("max_clients", "0", "is out of range"),
    ("max_clients", "100001", "is out of range"),
    ("max_clients", "false", "has the wrong type (boolean)"),
    ("server_secure", "1", "has the wrong type (integer)"),
    ("allow_anonymous", '"yes"', "has the wrong type (string)"),
    ("enable_service_log", "0", "has the wrong type (integer)"),
    ("multiple_connections", '"true"', "has the wrong type (string)"),
    ("service_display_name", "7", "has the wrong type (integer)"),
    ("max_pdu_length", "1", "is out of range"),
    ("max_pdu_length", "4095", "is out of range"),
    ("max_pdu_length", "4294967296", "is out of range"),
    ("max_pdu_length", "-1", "is out of range"),
    ("max_pdu_length", "true", "has the wrong type (boolean)"),
    ("client_timeout", "-1", "is out of range"),
    ("client_timeout", "-0.5", "is out of range"),
    ("client_timeout", "nan", "is not a number"),
    ("client_timeout", "inf", "is out of range"),
    ("client_timeout", "31536001", "is out of range"),
    ("client_timeout", "true", "has the wrong type (boolean)"),
    ("client_timeout", '"300"', "has the wrong type (string)"),
    ("reconnect_timeout", "0", "is out of range"),
    ("reconnect_timeout", "1e-09", "is out of range"),
    ("addin_timeout", "0.0009", "is out of range"),
    ("client_timeout", "0.0001", "is out of range"),
    ("reconnect_timeout", "0.0", "is out of range"),
    ("addin_timeout", "-60", "is out of range"),
    ("artim_timeout", "0", "is out of range"),
    ("artim_timeout", "false", "has the wrong type (boolean)"),
    ("no_delay", "1", "has the wrong type (integer)"),
    ("receive_buffer", "1023", "is out of range"),
    ("receive_buffer", "16777217", "is out of range"),
    ("receive_buffer", "29696.0", "has the wrong type (float)"),
    ("send_buffer", "1", "is out of range"),
    ("send_buffer", "-1", "is out of range"),
    ("send_buffer", "true", "has the wrong type (boolean)"),
    ("start_mode", '"Manual"', "is not a start mode (write it in lower case)"),
    ("start_mode", '"auto"', "is not a start mode"),
    ("start_mode", "1", "has the wrong type (integer)"),
    ("copy_dataset_image", '"no"', "has the wrong type (string)"),
]


@pytest.mark.parametrize(("field", "literal", "reason"), INVALID)
def test_invalid_value_message_names_file_field_value_and_allowed(
    tmp_path: Path, field: str, literal: str, reason: str
) -> None:
    """Each bad value is reported as '<file>: <field> = <value> <reason>; allowed: <rule>'."""
    lines = [f"{field} = {literal}"]
    if field != "ae_title":
        lines.insert(0, 'ae_title = "STORE"')
    path = write_settings(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    allowed = FIELDS_BY_NAME[field].allowed
    assert str(info.value) == f"{path}: {field} = {literal} {reason}; allowed: {allowed}"
    (problem,) = info.value.problems
    assert (problem.source, problem.field, problem.allowed) == (str(path), field, allowed)


def test_documented_example_message() -> None:
    """The message format is exactly the one promised in the brief."""
    with pytest.raises(SettingsError) as info:
        settings_from_mapping({"ae_title": "X", "port": 70000}, source="/srv/X/settings.toml")
    assert str(info.value) == (
        "/srv/X/settings.toml: port = 70000 is out of range; allowed: an integer 1-65535"
    )


def test_settings_error_is_a_value_error() -> None:
    """Callers that catch ValueError also catch bad settings."""
    assert issubclass(SettingsError, ValueError)


def test_settings_error_survives_pickling() -> None:
    """Errors may cross process boundaries (e.g. a manager's worker); problems are kept."""
    with pytest.raises(SettingsError) as info:
        settings_from_mapping({"port": 0}, source="x.toml")
    copy = pickle.loads(pickle.dumps(info.value))
    assert copy.problems == info.value.problems
    assert str(copy) == str(info.value)


def test_non_toml_values_from_mappings_are_rejected() -> None:
    """CLI-style mappings must carry typed values: None and "104" are not a port."""
    with pytest.raises(SettingsError) as info:
        settings_from_mapping({"ae_title": "X", "port": None, "max_clients": "5"}, source="cli")
    assert str(info.value).splitlines() == [
        "cli: port = null has the wrong type (null); allowed: an integer 1-65535",
        'cli: max_clients = "5" has the wrong type (string); allowed: an integer 1-100000',
    ]


def test_missing_ae_title_is_reported(tmp_path: Path) -> None:
    """ae_title has no default, so leaving it out is an error naming the field."""
    path = write_settings(tmp_path, "port = 104\n")
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert str(info.value) == (
        f"{path}: ae_title is missing (required); allowed: {FIELDS_BY_NAME['ae_title'].allowed}"
    )


def test_all_errors_are_reported_together(tmp_path: Path) -> None:
    """Every problem in the file is listed, one per line, in file order, missing ones last."""
    path = write_settings(
        tmp_path,
        "port = 70000\nmax_clients = true\nprot = 104\nclient_timeout = -1\nno_delay = 1\n",
    )
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 6
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert info.value.fields == (
        "port",
        "max_clients",
        "prot",
        "client_timeout",
        "no_delay",
        "ae_title",
    )
    assert "port = 70000 is out of range" in lines[0]
    assert "ae_title is missing" in lines[-1]


# --------------------------------------------------------------------------- unknown keys


def test_unknown_key_is_named_with_suggestion_and_known_keys(tmp_path: Path) -> None:
    """A typo is an error that names the key, suggests the field and lists the known ones."""
    path = write_settings(tmp_path, 'ae_title = "STORE"\nprot = 104\n')
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    message = str(info.value)
    assert message.startswith(f"{path}: prot = 104 is not a known setting (did you mean port?)")
    assert "allowed: the keys " + ", ".join(FIELD_NAMES) in message


def test_cli_spelling_of_a_key_gets_a_hint(tmp_path: Path) -> None:
    """'ae-title' (the CLI spelling) is unknown in the file but the hint says what to write."""
    path = write_settings(tmp_path, 'ae-title = "STORE"\n')
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert 'ae-title = "STORE" is not a known setting (did you mean ae_title?)' in str(info.value)
    assert info.value.fields == ("ae-title", "ae_title")


def test_tables_are_unknown_keys_with_flat_file_hint(tmp_path: Path) -> None:
    """Grouping keys under a [table] is not supported; the message says the file is flat."""
    path = write_settings(tmp_path, 'ae_title = "STORE"\n[advanced]\nno_delay = false\n')
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert info.value.fields == ("advanced",)
    assert "settings.toml is flat" in str(info.value)


def test_array_value_is_a_wrong_type(tmp_path: Path) -> None:
    """Arrays are not scalars; the type is named in TOML words."""
    path = write_settings(tmp_path, 'ae_title = "STORE"\nport = [104]\n')
    with pytest.raises(SettingsError, match=r"port = \[104\] has the wrong type \(array\)"):
        load_settings(path)


@pytest.mark.parametrize(
    ("value", "spelled", "kind"),
    [
        (None, "null", "null"),
        ([1, "a"], '[1, "a"]', "array"),
        ({"a": 1}, '{"a": 1}', "table (object)"),
        (b"x", "b'x'", "unsupported value"),
    ],
)
def test_wrong_types_are_named_in_toml_and_json_words(value, spelled, kind) -> None:
    """UpdateSettings sends JSON: its values are named as JSON/TOML name them, not Python."""
    with pytest.raises(SettingsError) as info:
        settings_from_mapping({"ae_title": "X", "max_clients": value}, source="UpdateSettings")
    assert str(info.value) == (
        f"UpdateSettings: max_clients = {spelled} has the wrong type ({kind}); "
        "allowed: an integer 1-100000"
    )
