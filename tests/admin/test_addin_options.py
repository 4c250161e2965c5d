"""GetAddInOptions / SetAddInOptions over an in-memory admin connection."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet.defer import maybeDeferred
from zope.interface import implementer

from pacsref.addin import AddinFailure, AddInOption, IAddin, IAddInOptions, OptionsSchema
from pacsref.addin.aetitles import MemoryAeTitles
from pacsref.addin.options import give_options, options_in_use
from pacsref.admin.handlers import AdminCommands
from pacsref.admin.protocol import AdminFactory
from pacsref.server.clients import ClientRegistry
from pacsref.server.control import ServerControl
from pacsref.server.notifications import Notifier
from tests.admin.helpers import Connection


@implementer(IAddin, IAddInOptions)
class Tunable:
    """An add-in with one live and one restart-only option; refuses ``level = 4``."""

    name = "tunable"
    description = "has options"
    options_declaration = OptionsSchema((
        AddInOption("level", "int", 1, "Level.", minimum=0, maximum=9),
        AddInOption("mode", "choice", "a", "Mode.", choices=("a", "b"), live=False),
    ))  # fmt: skip

    def __init__(self) -> None:
        self.told: list[dict[str, Any]] = []

    def presentation_contexts(self) -> tuple[()]:
        return ()

    def options_changed(self, new_options: Any) -> None:
        if new_options["level"] == 4:
            raise ValueError("four is unlucky")
        self.told.append(dict(new_options))


def connect(tmp_path: Path, addin: Tunable, **kwargs: Any) -> Connection:
    notifier = Notifier()
    control = ServerControl(ClientRegistry(notifier), notifier, "PACSREF")
    commands = AdminCommands(
        control,
        MemoryAeTitles([], resolver=lambda info: frozenset()),
        kwargs.pop("run_in_thread", lambda f, *a: maybeDeferred(f, *a)),
        addins=[addin, SimpleNamespace(name="plain", description="no options")],
        failures=[AddinFailure("broken", "ImportError: no module named x")],
        **{"addin_options_dir": tmp_path / "addin-options", **kwargs},
    )
    return Connection(AdminFactory(commands, "PACSREF"))


@pytest.fixture
def addin() -> Tunable:
    return Tunable()


def test_get_lists_declared_options_with_file_values(tmp_path: Path, addin: Tunable) -> None:
    """Without a file every value is the default; the objects carry live and choices."""
    reply = connect(tmp_path, addin).request("GetAddInOptions", "tunable")
    assert reply["success"], reply
    level, mode = reply["data"][0]
    assert level["value"] == 1 and level["live"] is True and level["maximum"] == 9
    assert mode == {"name": "mode", "kind": "choice", "default": "a", "value": "a",
                    "description": "Mode.", "live": False, "allowed": 'one of "a", "b"',
                    "choices": ["a", "b"]}  # fmt: skip


def test_set_validates_tells_the_addin_saves_and_reports_restart_keys(
    tmp_path: Path, addin: Tunable
) -> None:
    """A change is told to the add-in, written to its file, and restart-only keys listed."""
    conn = connect(tmp_path, addin)
    reply = conn.request("SetAddInOptions", "tunable", {"level": 3, "mode": "b"})
    assert reply["success"], reply
    assert reply["data"] == [{"level": 3, "mode": "b"}, ["mode"]]
    assert addin.told == [{"level": 3, "mode": "b"}]
    text = (tmp_path / "addin-options" / "tunable.toml").read_text()
    assert "level = 3\n" in text and 'mode = "b"\n' in text
    again = conn.request("SetAddInOptions", "tunable", {"level": 5})
    assert again["data"] == [{"level": 5, "mode": "b"}, []]
    assert conn.request("GetAddInOptions", "tunable")["data"][0][0]["value"] == 5


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (["nope", {"level": 1}], "no add-in named 'nope'; loaded: tunable, plain"),
        (["broken", {"level": 1}], "add-in 'broken' is not loaded: ImportError"),
        (["plain", {"level": 1}], "add-in 'plain' declares no options"),
        (["tunable", {"levle": 1}], "levle: unknown option (did you mean level?)"),
        (["tunable", {"level": 10, "mode": "c"}], "level = 10: is out of range"),
        (["tunable", {"level": 4}], "add-in 'tunable' refused the options: ValueError: four"),
        (["tunable", {}], "names no option to change"),
        (["tunable", ["level"]], "must be an object of option name -> value"),
        (["", {"level": 1}], "must be an add-in name"),
    ],
)
def test_bad_requests_fail_with_a_specific_error_and_save_nothing(
    tmp_path: Path, addin: Tunable, data: list[Any], error: str
) -> None:
    reply = connect(tmp_path, addin).request("SetAddInOptions", *data)
    assert not reply["success"] and error in reply["error"], reply
    assert not (tmp_path / "addin-options" / "tunable.toml").exists()
    assert addin.told == []


def test_every_value_problem_is_in_one_line(tmp_path: Path, addin: Tunable) -> None:
    reply = connect(tmp_path, addin).request(
        "SetAddInOptions", "tunable", {"level": 10, "mode": "c"}
    )
    assert "level = 10" in reply["error"] and "mode = 'c'" in reply["error"]
    assert "\n" not in reply["error"] and "(add-in tunable)" in reply["error"]


def test_a_change_can_repair_a_bad_file(tmp_path: Path, addin: Tunable) -> None:
    """GetAddInOptions reports a bad file; setting the bad key to a good value fixes it."""
    path = tmp_path / "addin-options" / "tunable.toml"
    path.parent.mkdir()
    path.write_text("level = 99\n")
    conn = connect(tmp_path, addin)
    reply = conn.request("GetAddInOptions", "tunable")
    assert not reply["success"] and f"{path}: level = 99" in reply["error"]
    assert conn.request("SetAddInOptions", "tunable", {"level": 2})["success"]
    assert "level = 2\n" in path.read_text()


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        (
            {"level": 10},
            "SetAddInOptions data[1] (changes): level = 10: is out of range; must be a whole "
            "number from 0 to 9 (add-in tunable)",
        ),
        (
            {"levle": 1},
            "SetAddInOptions data[1] (changes): levle: unknown option (did you mean level?); "
            "known: level, mode (add-in tunable)",
        ),
    ],
    ids=["bad-value", "unknown-key"],
)
def test_a_bad_value_sent_in_the_request_is_blamed_on_the_request_not_the_file(
    tmp_path: Path, addin: Tunable, changes: dict[str, Any], error: str
) -> None:
    """The value came from the admin request: the error names the request's field, the
    add-in, the key, the value and the rule, and not the options file (which may not even
    exist), so the administrator is not sent to fix a file with nothing wrong in it."""
    path = tmp_path / "addin-options" / "tunable.toml"
    path.parent.mkdir()
    path.write_text('mode = "b"\n')
    reply = connect(tmp_path, addin).request("SetAddInOptions", "tunable", changes)
    assert (reply["success"], reply["error"]) == (False, error), reply
    assert path.read_text() == 'mode = "b"\n'
    assert addin.told == []


def test_problems_in_the_file_and_in_the_request_each_name_their_own_source(
    tmp_path: Path, addin: Tunable
) -> None:
    """A bad file and a bad request value are told at once, the file's problem naming the
    file and the request's naming the request."""
    path = tmp_path / "addin-options" / "tunable.toml"
    path.parent.mkdir()
    path.write_text('mode = "z"\n')
    reply = connect(tmp_path, addin).request("SetAddInOptions", "tunable", {"level": -1})
    assert reply["error"] == (
        f'{path}: mode = \'z\': must be one of "a", "b" (add-in tunable); '
        "SetAddInOptions data[1] (changes): level = -1: is out of range; must be a whole "
        "number from 0 to 9 (add-in tunable)"
    )


def test_a_request_value_that_overrides_a_bad_one_in_the_file_is_judged_alone(
    tmp_path: Path, addin: Tunable
) -> None:
    """The file's bad value for a key the request also sets is replaced, not reported:
    only the request's own bad value is, named as the request's."""
    path = tmp_path / "addin-options" / "tunable.toml"
    path.parent.mkdir()
    path.write_text("level = 99\n")
    reply = connect(tmp_path, addin).request("SetAddInOptions", "tunable", {"level": 10})
    assert reply["error"] == (
        "SetAddInOptions data[1] (changes): level = 10: is out of range; must be a whole "
        "number from 0 to 9 (add-in tunable)"
    )


def test_a_file_that_is_not_toml_is_left_alone_and_the_requests_problems_are_told_too(
    tmp_path: Path, addin: Tunable
) -> None:
    """The whole file is refused (rewriting it would drop what else it holds), and the
    request's own bad value is in the same answer, so fixing the file is not followed by
    a second refusal; a good request gets the file's problem alone."""
    path = tmp_path / "addin-options" / "tunable.toml"
    path.parent.mkdir()
    path.write_text("level = \n")
    conn = connect(tmp_path, addin)
    reply = conn.request("SetAddInOptions", "tunable", {"level": 10})
    assert reply["error"].startswith(f"{path}: cannot be read as TOML: "), reply
    assert reply["error"].endswith(
        "(add-in tunable); SetAddInOptions data[1] (changes): level = 10: is out of range; "
        "must be a whole number from 0 to 9 (add-in tunable)"
    ), reply
    reply = conn.request("SetAddInOptions", "tunable", {"level": 2})
    assert reply["error"].startswith(f"{path}: cannot be read as TOML: "), reply
    assert "SetAddInOptions data[1]" not in reply["error"] and "\n" not in reply["error"]
    assert path.read_text() == "level = \n" and addin.told == []


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (OSError(28, "No space left on device"), "No space left"),
        (UnicodeEncodeError("utf-8", "x", 0, 1, "surrogates not allowed"), "surrogates"),
    ],
    ids=["full-disk", "not-an-oserror"],
)
def test_failed_save_gives_the_addin_its_old_values_back(
    tmp_path: Path, addin: Tunable, error: Exception, words: str
) -> None:
    """Whatever stops the file's save, the add-in is not left with values the file lacks."""
    failing = {"save": False}

    def run_in_thread(function: Any, *args: Any) -> Any:
        def broken_save(*_: Any) -> None:
            raise error

        broken = failing["save"] and getattr(function, "__name__", "") == "save"
        return maybeDeferred(broken_save if broken else function, *args)

    conn = connect(tmp_path, addin, run_in_thread=run_in_thread)
    assert conn.request("SetAddInOptions", "tunable", {"level": 2})["success"]
    failing["save"] = True
    reply = conn.request("SetAddInOptions", "tunable", {"level": 7})
    assert not reply["success"]
    assert reply["error"].startswith("cannot save ") and words in reply["error"]
    assert addin.told[-2:] == [{"level": 7, "mode": "a"}, {"level": 2, "mode": "a"}]
    assert "level = 2\n" in (tmp_path / "addin-options" / "tunable.toml").read_text()


def test_failed_save_over_a_file_broken_by_hand_puts_back_what_the_addin_ran_on(
    tmp_path: Path, addin: Tunable
) -> None:
    """The file was broken by hand after the add-in took its values (as the loader gives
    them); a request repairs it, the save fails: the add-in gets back the values it ran on,
    which the file no longer says (before, it kept the request's values)."""
    loaded = addin.options_declaration.validate({"level": 3}, addin="tunable", source="test")
    give_options(addin, loaded)  # as the loader does
    options = tmp_path / "addin-options"
    options.mkdir()
    (options / "tunable.toml").write_text('mode = "zzz"\nlevel = 3\n')

    def run_in_thread(function: Any, *args: Any) -> Any:
        def broken_save(*_: Any) -> None:
            raise OSError(28, "No space left on device")

        broken = getattr(function, "__name__", "") == "save"
        return maybeDeferred(broken_save if broken else function, *args)

    conn = connect(tmp_path, addin, run_in_thread=run_in_thread)
    reply = conn.request("SetAddInOptions", "tunable", {"mode": "b"})
    assert not reply["success"] and "No space left" in reply["error"]
    assert addin.told[-2:] == [{"level": 3, "mode": "b"}, {"level": 3, "mode": "a"}]
    assert options_in_use(addin) == {"level": 3, "mode": "a"}
    assert 'mode = "zzz"' in (options / "tunable.toml").read_text()


def test_a_str_option_refuses_text_utf8_cannot_hold() -> None:
    """A lone surrogate would pass validation, then fail the options file's save."""
    option = AddInOption("label", "str", "", "Label.")
    assert option.convert("ok \u00e9") == "ok \u00e9"
    with pytest.raises(ValueError, match="cannot be written as UTF-8"):
        option.convert("ok\ud800")


def test_without_an_options_folder_both_requests_are_refused(
    tmp_path: Path, addin: Tunable
) -> None:
    conn = connect(tmp_path, addin, addin_options_dir=None)
    reply = conn.request("GetAddInOptions", "tunable")
    assert not reply["success"] and "no add-in options folder" in reply["error"]


@implementer(IAddin, IAddInOptions)
class Ratio:
    """An add-in with one float option."""

    name = "ratio"
    description = "has a float option"
    options_declaration = OptionsSchema((
        AddInOption("ratio", "float", 0.5, "Ratio.", minimum=0.0, maximum=1.0),
    ))  # fmt: skip

    def presentation_contexts(self) -> tuple[()]:
        return ()

    def options_changed(self, new_options: Any) -> None:
        pass


def test_a_huge_whole_number_for_a_float_option_is_refused_naming_it(tmp_path: Path) -> None:
    """Not "internal error: int too large to convert to float" with a traceback in the log."""
    from twisted.logger import globalLogPublisher

    conn = connect(tmp_path, Ratio())  # type: ignore[arg-type]
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        [reply] = conn.send_line(
            b'{"message":"SetAddInOptions","data":["ratio",{"ratio":1' + b"0" * 400 + b"}]}"
        )
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert (reply["message"], reply["success"]) == ("SetAddInOptions", False)
    refusal = ": ratio = 1" + "0" * 400 + ": is out of range; must be a number from 0.0 to 1.0"
    assert refusal in reply["error"]
    assert [e for e in events if e.get("log_failure")] == []
    assert not (tmp_path / "addin-options" / "ratio.toml").exists()
