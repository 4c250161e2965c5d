"""Discovery of add-ins in a server's addins/ folder and in entry points."""

from __future__ import annotations

import importlib.metadata
import sys
import types
from pathlib import Path

import pytest
from zope.interface import implementer

from pacsref.addin import (
    AddinFailure,
    AddinLoadError,
    IAddin,
    IEchoHandler,
    load_addins,
    package_name_for,
)
from tests.addin.helpers import addin_source, write

SHIPPED_ADDINS = Path(__file__).resolve().parents[2] / "addins"


def load(folder: Path, **kwargs: object):
    """Non-strict folder-only load, so a test sees addins and failures together."""
    kwargs.setdefault("entry_point_group", None)
    kwargs.setdefault("strict", False)
    return load_addins(folder, **kwargs)  # type: ignore[arg-type]


def names(result) -> list[str]:
    return [addin.name for addin in result.addins]


def failure_for(result, name: str) -> AddinFailure:
    matches = [f for f in result.failures if f.name == name]
    assert len(matches) == 1, result.failures
    return matches[0]


def test_empty_folder_loads_nothing_and_reports_nothing(tmp_path: Path) -> None:
    """An empty addins/ folder is valid: no add-ins, no failures, strict mode passes."""
    result = load_addins(tmp_path, entry_point_group=None, strict=True)
    assert result.addins == []
    assert result.failures == []


def test_missing_folder_is_a_failure(tmp_path: Path) -> None:
    """A server directory without addins/ points at a wrong --server-dir: reported, not ignored."""
    result = load(tmp_path / "nope")
    assert [f.error.split(":")[0] for f in result.failures] == ["FileNotFoundError"]


def test_good_module_is_loaded_and_verified(tmp_path: Path) -> None:
    """A module with a module-level IAddin instance yields that instance."""
    write(tmp_path / "echo.py", addin_source("echo"))
    result = load(tmp_path)
    assert result.failures == []
    assert names(result) == ["echo"]
    assert IEchoHandler.providedBy(result.addins[0])
    assert type(result.addins[0]).__module__ == f"{package_name_for(tmp_path)}.echo"


def test_package_with_relative_import_is_loaded(tmp_path: Path) -> None:
    """A package's relative imports resolve inside the synthetic per-folder package."""
    write(tmp_path / "pkg" / "__init__.py", "from ._impl import addin\n")
    write(tmp_path / "pkg" / "_impl.py", addin_source("pkg", extra="from . import _util\n"))
    write(tmp_path / "pkg" / "_util.py", "VALUE = 1\n")
    result = load(tmp_path)
    assert result.failures == []
    assert names(result) == ["pkg"]


def test_module_may_import_underscored_sibling(tmp_path: Path) -> None:
    """Helpers in '_'-prefixed files are skipped by the scan but importable relatively."""
    write(tmp_path / "_common.py", "NAME = 'shared'\n")
    write(tmp_path / "user.py", addin_source("user", extra="from ._common import NAME\n"))
    result = load(tmp_path)
    assert (names(result), result.failures) == (["user"], [])


def test_syntax_error_is_a_named_failure(tmp_path: Path) -> None:
    """A module that does not compile is reported by module name with SyntaxError."""
    write(tmp_path / "broken.py", "def oops(:\n")
    write(tmp_path / "echo.py", addin_source("echo"))
    result = load(tmp_path)
    assert names(result) == ["echo"]
    assert failure_for(result, "broken").error.startswith("SyntaxError: ")


def test_import_error_is_a_named_failure(tmp_path: Path) -> None:
    """A module whose import raises is reported with the exception type and message."""
    write(tmp_path / "needs.py", "import pacsref_no_such_module_xyz\n")
    error = failure_for(load(tmp_path), "needs").error
    assert error.startswith("ModuleNotFoundError: ")
    assert "pacsref_no_such_module_xyz" in error
    assert "needs.py" in error


def test_system_exit_at_import_is_a_failure_not_an_exit(tmp_path: Path) -> None:
    """An add-in calling sys.exit() at import cannot take the server down."""
    write(tmp_path / "quitter.py", "import sys\nsys.exit(3)\n")
    assert failure_for(load(tmp_path), "quitter").error.startswith("SystemExit: ")


def test_addin_failing_verify_object_is_a_failure(tmp_path: Path) -> None:
    """An object claiming IEchoHandler without handle_echo fails verifyObject, loudly."""
    source = addin_source("liar").replace("def handle_echo", "def handle_something_else")
    write(tmp_path / "liar.py", source)
    result = load(tmp_path)
    assert result.addins == []
    error = failure_for(result, "liar").error
    assert error.startswith("BrokenImplementation: ")
    assert "handle_echo" in error


def test_addin_without_required_attribute_is_a_failure(tmp_path: Path) -> None:
    """IAddin's attributes are verified too: no description, no add-in."""
    write(tmp_path / "mute.py", addin_source("mute").replace('description = "test add-in"', ""))
    assert "description" in failure_for(load(tmp_path), "mute").error


@pytest.mark.parametrize(
    ("replacement", "expected"),
    [
        ('name = ""', "non-empty str"),
        ("name = 42", "non-empty str"),
    ],
)
def test_addin_name_must_be_a_non_empty_string(
    tmp_path: Path, replacement: str, expected: str
) -> None:
    """The name keys logs and the admin interface, so it must be a real string."""
    write(tmp_path / "bad.py", addin_source("bad").replace("name = 'bad'", replacement))
    assert expected in failure_for(load(tmp_path), "bad").error


def test_presentation_contexts_must_be_supported_contexts(tmp_path: Path) -> None:
    """Declarations are checked at load time, not when the first association arrives."""
    source = addin_source("ctx").replace(
        'return (SupportedContext("1.2.840.10008.1.1", ("1.2.840.10008.1.2",)),)',
        'return [("1.2.840.10008.1.1", "1.2.840.10008.1.2")]',
    )
    write(tmp_path / "ctx.py", source)
    assert "SupportedContext" in failure_for(load(tmp_path), "ctx").error


def test_presentation_contexts_raising_is_a_failure(tmp_path: Path) -> None:
    """An exception from presentation_contexts() is reported with its type."""
    source = addin_source("boom").replace(
        'return (SupportedContext("1.2.840.10008.1.1", ("1.2.840.10008.1.2",)),)',
        'raise RuntimeError("no contexts today")',
    )
    write(tmp_path / "boom.py", source)
    assert failure_for(load(tmp_path), "boom").error.startswith("RuntimeError: no contexts today")


def test_module_without_addin_is_a_failure(tmp_path: Path) -> None:
    """A dropped-in file that contributes nothing is a mistake worth reporting."""
    write(tmp_path / "helper.py", "X = 1\n")
    error = failure_for(load(tmp_path), "helper").error
    assert "no object providing IAddin" in error


def test_class_without_instance_failure_hints_the_fix(tmp_path: Path) -> None:
    """Classes are not instantiated; the failure says which instance to add."""
    write(tmp_path / "classy.py", addin_source("classy").replace("addin = EchoAddin()", ""))
    error = failure_for(load(tmp_path), "classy").error
    assert "addin = EchoAddin()" in error


def test_same_instance_under_two_names_counts_once(tmp_path: Path) -> None:
    """A module that re-exports its add-in under a second name is still one add-in."""
    write(tmp_path / "alias.py", addin_source("alias", extra="also = addin\n"))
    result = load(tmp_path)
    assert (names(result), result.failures) == (["alias"], [])


def test_duplicate_names_load_neither(tmp_path: Path) -> None:
    """Two add-ins named alike are both refused, with one failure naming both sources."""
    write(tmp_path / "one.py", addin_source("same"))
    write(tmp_path / "two.py", addin_source("same"))
    write(tmp_path / "other.py", addin_source("other"))
    result = load(tmp_path)
    assert names(result) == ["other"]
    error = failure_for(result, "same").error
    assert "duplicate" in error
    assert "one" in error
    assert "two" in error


def test_ignored_entries(tmp_path: Path) -> None:
    """__pycache__, dotfiles, _-prefixed files, non-.py files and plain dirs are not imported."""
    write(tmp_path / "__pycache__" / "junk.py", "raise RuntimeError\n")
    write(tmp_path / ".hidden.py", "raise RuntimeError\n")
    write(tmp_path / "_private.py", "raise RuntimeError\n")
    write(tmp_path / "README.txt", "not python\n")
    write(tmp_path / "data" / "x.py", "raise RuntimeError\n")
    write(tmp_path / "__init__.py", '"""docstring only"""\n')
    result = load(tmp_path)
    assert (result.addins, result.failures) == ([], [])


def test_invalid_module_name_is_a_failure(tmp_path: Path) -> None:
    """A file whose name is not an identifier cannot be imported; say so."""
    write(tmp_path / "my-addin.py", addin_source("dash"))
    assert "not a valid Python module name" in failure_for(load(tmp_path), "my-addin").error


def test_strict_mode_raises_listing_every_failure(tmp_path: Path) -> None:
    """Strict loading refuses to start and names all broken add-ins at once."""
    write(tmp_path / "broken.py", "def oops(:\n")
    write(tmp_path / "needs.py", "import pacsref_no_such_module_xyz\n")
    write(tmp_path / "echo.py", addin_source("echo"))
    with pytest.raises(AddinLoadError) as caught:
        load_addins(tmp_path, entry_point_group=None)
    assert [f.name for f in caught.value.failures] == ["broken", "needs"]
    assert "broken: SyntaxError" in str(caught.value)
    assert "needs: ModuleNotFoundError" in str(caught.value)


def test_two_folders_with_same_file_name_do_not_collide(tmp_path: Path) -> None:
    """Each folder gets its own synthetic package, so two servers' echo.py stay apart."""
    first = write(tmp_path / "A" / "addins" / "echo.py", addin_source("first")).parent
    second = write(tmp_path / "B" / "addins" / "echo.py", addin_source("second")).parent
    one = load(first)
    two = load(second)
    assert (names(one), names(two)) == (["first"], ["second"])
    assert package_name_for(first) != package_name_for(second)
    assert sys.modules[f"{package_name_for(first)}.echo"].addin is one.addins[0]
    assert sys.modules[f"{package_name_for(second)}.echo"].addin is two.addins[0]


def test_loading_again_sees_edited_files(tmp_path: Path) -> None:
    """A reload in the same process re-imports the folder instead of reusing stale modules."""
    write(tmp_path / "echo.py", addin_source("before"))
    assert names(load(tmp_path)) == ["before"]
    write(tmp_path / "echo.py", addin_source("after-edit"))
    write(tmp_path / "new.py", addin_source("new"))
    assert names(load(tmp_path)) == ["after-edit", "new"]


def test_shipped_addins_folder_loads_cleanly() -> None:
    """The shipped addins/ folder loads strictly with only public pacsref imports."""
    result = load_addins(SHIPPED_ADDINS, entry_point_group=None, strict=True)
    assert "verification" in names(result)


# -- entry points ----------------------------------------------------------


@implementer(IAddin)
class _EntryPointAddin:
    name = "from-entry-point"
    description = "installed by a distribution"

    def presentation_contexts(self) -> tuple[()]:
        return ()


def _fake_entry_points(monkeypatch: pytest.MonkeyPatch, *values: tuple[str, str]) -> list[str]:
    """Make importlib.metadata.entry_points return ``values`` (name, value) for any group."""
    asked: list[str] = []

    def entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        asked.append(group)
        return [importlib.metadata.EntryPoint(name, value, group) for name, value in values]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    module = types.ModuleType("pacsref_test_ep_module")
    module.addin = _EntryPointAddin()  # type: ignore[attr-defined]
    module.not_an_addin = object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return asked


def test_entry_point_instance_is_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry point naming an add-in instance adds it, after the folder's add-ins."""
    asked = _fake_entry_points(monkeypatch, ("mine", "pacsref_test_ep_module:addin"))
    write(tmp_path / "echo.py", addin_source("echo"))
    result = load_addins(tmp_path, strict=True)
    assert asked == ["pacsref.addins"]
    assert names(result) == ["echo", "from-entry-point"]


def test_entry_point_module_is_scanned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry point naming a module is scanned like a file in addins/."""
    _fake_entry_points(monkeypatch, ("mod", "pacsref_test_ep_module"))
    assert names(load(tmp_path, entry_point_group="custom.group")) == ["from-entry-point"]


def test_entry_point_failures_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unimportable or non-add-in entry points are failures naming the entry point."""
    _fake_entry_points(
        monkeypatch,
        ("gone", "pacsref_no_such_module_xyz:addin"),
        ("wrong", "pacsref_test_ep_module:not_an_addin"),
    )
    result = load(tmp_path, entry_point_group="pacsref.addins")
    assert result.addins == []
    assert failure_for(result, "entry point gone").error.startswith("ModuleNotFoundError")
    assert "does not provide IAddin" in failure_for(result, "entry point wrong").error


def test_entry_point_and_folder_duplicate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder add-in and an installed one with the same name are a duplicate too."""
    _fake_entry_points(monkeypatch, ("mine", "pacsref_test_ep_module:addin"))
    write(tmp_path / "local.py", addin_source("from-entry-point"))
    result = load(tmp_path, entry_point_group="pacsref.addins")
    assert result.addins == []
    assert "entry point mine" in failure_for(result, "from-entry-point").error


def test_no_entry_point_group_skips_entry_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """entry_point_group=None loads the folder only."""
    asked = _fake_entry_points(monkeypatch, ("mine", "pacsref_test_ep_module:addin"))
    load(tmp_path, entry_point_group=None)
    assert asked == []
