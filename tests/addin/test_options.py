"""Add-in options: declaration, validation, the options file, command-line values, loading."""

from __future__ import annotations

import os
import textwrap
import tomllib
from pathlib import Path

import pytest

from pacsref.addin import (
    AddInOption,
    AddInOptionsError,
    OptionsFile,
    OptionsSchema,
    OptionValues,
    load_addins,
)
from pacsref.addin.options import as_schema, parse_assignment, parse_cli_value
from pacsref.addin.options_file import dumps_options
from tests.addin.helpers import write

SCHEMA = OptionsSchema((
    AddInOption("enabled", "bool", True, "Whether it works."),
    AddInOption("limit", "int", 10, "How many.", minimum=1, maximum=100),
    AddInOption("ratio", "float", 0.5, "How much.", minimum=0.0, live=False),
    AddInOption("label", "str", "x", "A label."),
    AddInOption("mode", "choice", "fast", "How.", choices=("fast", "safe")),
))  # fmt: skip


def validate(mapping: dict[str, object]) -> OptionValues:
    return SCHEMA.validate(mapping, addin="demo", source="demo.toml")


def test_defaults_are_every_option_and_immutable() -> None:
    """A missing file means every default; the values cannot be changed in place."""
    values = SCHEMA.defaults()
    assert dict(values) == {"enabled": True, "limit": 10, "ratio": 0.5, "label": "x",
                            "mode": "fast"}  # fmt: skip
    assert values.limit == 10 and values["mode"] == "fast"
    with pytest.raises(AttributeError):
        values.limit = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        values["limit"] = 3  # type: ignore[index]


def test_valid_values_are_normalised() -> None:
    """An int given for a float option becomes a float; given keys override the defaults."""
    values = validate({"ratio": 2, "mode": "safe"})
    assert values.ratio == 2.0 and isinstance(values.ratio, float)
    assert values.mode == "safe" and values.limit == 10


def test_every_problem_is_reported_together_with_file_addin_key_value_rule() -> None:
    """Wrong types, ranges, choices and unknown keys all come in one error, one a line."""
    with pytest.raises(AddInOptionsError) as caught:
        validate({"enabled": 1, "limit": 0, "mode": "slow", "lable": "y", "ratio": "a"})
    lines = str(caught.value).splitlines()
    assert lines == [
        "demo.toml: enabled = 1: must be a bool (true or false) (add-in demo)",
        "demo.toml: limit = 0: is out of range; must be a whole number from 1 to 100 (add-in demo)",
        'demo.toml: mode = \'slow\': must be one of "fast", "safe" (add-in demo)',
        "demo.toml: lable: unknown option (did you mean label?); known: enabled, limit, "
        "ratio, label, mode (add-in demo)",
        "demo.toml: ratio = 'a': must be a float (a number of at least 0.0) (add-in demo)",
    ]
    assert caught.value.keys == ("enabled", "limit", "mode", "lable", "ratio")


def test_bool_is_not_an_int_and_nan_is_refused() -> None:
    """TOML keeps true and 1 apart, and a non-finite float is no useful option value."""
    with pytest.raises(AddInOptionsError, match="limit = True: must be an int"):
        validate({"limit": True})
    with pytest.raises(AddInOptionsError, match="finite"):
        validate({"ratio": float("nan")})


def test_a_whole_number_too_large_for_a_float_is_out_of_range() -> None:
    """10**400 for a float option (JSON and TOML allow it) is refused like any value out of
    range, naming the option, not an OverflowError ("internal error" on the admin socket)."""
    with pytest.raises(AddInOptionsError, match=r"ratio = 1000+: is out of range; must be a"):
        validate({"ratio": 10**400})
    with pytest.raises(ValueError, match=r"option big: default 1000+: is out of range"):
        AddInOption("big", "float", 10**400, "d")


def test_a_whole_number_beyond_64_bits_is_out_of_range_even_without_a_maximum() -> None:
    """TOML 1.0 integers are 64-bit: a larger one (JSON and Python's TOML reader take it)
    would be saved into an options file other TOML readers refuse; the greatest one is kept."""
    option = AddInOption("reserve", "int", 0, "MiB.", minimum=0)
    assert option.convert(2**63 - 1) == 2**63 - 1
    for value in (2**63, 99999999999999999999999999):
        with pytest.raises(ValueError, match=r"is out of range \(TOML integers are 64-bit\)"):
            option.convert(value)
    assert AddInOption("delta", "int", 0, "d").convert(-(2**63)) == -(2**63)
    with pytest.raises(ValueError, match="64-bit"):
        AddInOption("delta", "int", 0, "d").convert(-(2**63) - 1)


def test_extra_check_and_allowed_text() -> None:
    """An option's own rule refuses with its own words."""
    option = AddInOption("dsn", "str", "", "Where.", check=lambda v: "bad" if v == "no" else None,
                         allowed_text='"" or a DSN')  # fmt: skip
    schema = OptionsSchema((option,))
    with pytest.raises(AddInOptionsError, match="dsn = 'no': bad"):
        schema.validate({"dsn": "no"}, addin="d", source="f")
    assert option.allowed == '"" or a DSN'


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "list"}, "kind 'list'"),
        ({"kind": "choice"}, "choices go with kind 'choice'"),
        ({"default": "x"}, "default 'x'"),
        ({"name": "not a key"}, "identifier"),
    ],
)
def test_malformed_declarations_are_refused_at_import(kwargs: dict, message: str) -> None:
    """The add-in's author sees a bad declaration at once, not the operator later."""
    fields = {"name": "n", "kind": "int", "default": 1, "description": "d", **kwargs}
    with pytest.raises(ValueError, match=message):
        AddInOption(**fields)


def test_duplicate_names_and_bad_declarations_are_refused() -> None:
    option = AddInOption("n", "int", 1, "d")
    with pytest.raises(ValueError, match="declared twice: n"):
        OptionsSchema((option, option))
    assert as_schema([option]) == OptionsSchema((option,))
    with pytest.raises(TypeError):
        as_schema("n")


def test_describe_is_json_ready() -> None:
    """GetAddInOptions objects carry name, kind, default, value, description, live, choices."""
    described = SCHEMA.describe(validate({"mode": "safe"}))
    mode = described[-1]
    assert mode == {"name": "mode", "kind": "choice", "default": "fast", "value": "safe",
                    "description": "How.", "live": True, "allowed": 'one of "fast", "safe"',
                    "choices": ["fast", "safe"]}  # fmt: skip
    assert described[1]["minimum"] == 1 and described[1]["maximum"] == 100
    assert SCHEMA.restart_keys(["ratio", "mode", "nope"]) == ["ratio"]


def test_file_round_trip_with_a_comment_per_option(tmp_path: Path) -> None:
    """The file is written atomically with every option under its comment and reads back."""
    file = OptionsFile.in_dir(tmp_path / "addin-options", "demo", SCHEMA)
    assert file.load() == SCHEMA.defaults()
    values = validate({"label": 'a "quoted" \\ value', "limit": 42})
    assert file.save(values) == tmp_path / "addin-options" / "demo.toml"
    assert file.load() == values
    text = file.path.read_text()
    assert (
        "# How much. Allowed: a number of at least 0.0. Default: 0.5. Applies at the next" in text
    )
    assert "limit = 42\n" in text
    assert not [p for p in file.path.parent.iterdir() if p.name.startswith(".")]
    assert tomllib.loads(dumps_options("demo", SCHEMA, values)) == dict(values)


def test_file_problems_name_the_file(tmp_path: Path) -> None:
    """Bad TOML and bad values both name the file (and the add-in)."""
    file = OptionsFile.in_dir(tmp_path, "demo", SCHEMA)
    file.path.write_text("limit = \n")
    with pytest.raises(AddInOptionsError, match=f"{file.path}: cannot be read as TOML"):
        file.load()
    file.path.write_text("limit = 500\n")
    with pytest.raises(AddInOptionsError, match=f"{file.path}: limit = 500: is out of range"):
        file.load()


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("mode", "safe", "safe"),
        ("mode", '"safe"', "safe"),
        ("label", "123", "123"),
        ("label", "postgresql://h/db", "postgresql://h/db"),
        ("limit", "5", 5),
        ("enabled", "false", False),
        ("ratio", "2.5", 2.5),
        ("limit", "many", "many"),
    ],
)
def test_command_line_values_are_toml_with_bare_strings(key: str, text: str, value: object) -> None:
    """KEY=VALUE values are TOML; str/choice options take bare text as it was typed."""
    option = SCHEMA.get(key)
    assert parse_cli_value(option.kind if option else None, text) == value


def test_parse_assignment() -> None:
    assert parse_assignment(" mode = safe ") == ("mode", "safe")
    with pytest.raises(ValueError, match="not KEY=VALUE"):
        parse_assignment("mode")


OPTIONS_ADDIN = textwrap.dedent(
    """
    from zope.interface import implementer

    from pacsref.addin import AddInOption, IAddin, IAddInOptions

    @implementer(IAddin, IAddInOptions)
    class Configurable:
        name = "conf"
        description = "has options"
        options_declaration = (AddInOption("level", "int", 1, "Level.", maximum=5),)
        told = []

        def presentation_contexts(self):
            return ()

        def options_changed(self, new_options):
            if new_options["level"] == 4:
                raise ValueError("four is unlucky")
            self.told.append(dict(new_options))

    addin = Configurable()
    """
)


def test_loader_hands_each_addin_its_options(tmp_path: Path) -> None:
    """At load the add-in is told the values of <server dir>/addin-options/<name>.toml."""
    write(tmp_path / "addins" / "conf.py", OPTIONS_ADDIN)
    result = load_addins(tmp_path / "addins", entry_point_group=None, strict=False)
    assert result.addins[0].told == [{"level": 1}]
    (tmp_path / "addin-options").mkdir()
    (tmp_path / "addin-options" / "conf.toml").write_text("level = 3\n")
    result = load_addins(tmp_path / "addins", entry_point_group=None, strict=False)
    assert result.addins[0].told == [{"level": 3}]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("level = 9\n", "conf.toml: level = 9: is out of range"),
        ("level = 4\n", "ValueError: four is unlucky"),
    ],
)
def test_bad_options_stop_the_addin_from_loading(tmp_path: Path, text: str, error: str) -> None:
    """An invalid file, or an add-in refusing its options, is a load failure saying why."""
    write(tmp_path / "addins" / "conf.py", OPTIONS_ADDIN)
    (tmp_path / "addin-options").mkdir()
    (tmp_path / "addin-options" / "conf.toml").write_text(text)
    result = load_addins(tmp_path / "addins", entry_point_group=None, strict=False)
    assert result.addins == []
    [failure] = result.failures
    assert failure.name == "conf" and error in failure.error
    loaded = load_addins(tmp_path / "addins", entry_point_group=None, apply_options=False)
    assert [a.name for a in loaded.addins] == ["conf"]
    assert os.path.exists(tmp_path / "addin-options" / "conf.toml")
