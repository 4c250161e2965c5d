"""Discovering the add-ins of one server: its ``addins/`` folder and installed entry points.

Like Twisted's ``getPlugins`` this finds add-ins by interface, but unlike it
(``twisted/plugin.py`` only ``log.err()``s a module that fails to import) it
never skips a broken add-in silently: every problem becomes an
:class:`~pacsref.addin.errors.AddinFailure` naming the module and the
exception, and strict mode refuses to start (STYLE.md principle 10).

Conventions for the ``addins/`` folder (documented for add-in authors):

* Each ``NAME.py`` module and each ``NAME/`` package (a directory with an
  ``__init__.py``) is imported. ``__pycache__``, dotfiles, ``_``-prefixed
  names, directories without ``__init__.py`` and non-``.py`` files are
  ignored, so shared helpers go in ``_helpers.py`` (import it with
  ``from . import _helpers``) or inside a package.
* The folder is imported as a synthetic package named
  ``pacsref_addins_<hash of the folder path>``, so two servers (or two tests)
  in one process never share a module, and relative imports work.
* An add-in is a **module-level instance** providing ``IAddin``
  (``addin = MyAddin()``). Classes are not instantiated: the module decides
  how its add-in is constructed and configured, and a base class imported for
  subclassing is never mistaken for an add-in. A module that yields no
  add-in is a failure, because a file dropped into ``addins/`` that does
  nothing is a mistake (typically a forgotten ``addin = MyAddin()``).
* Each add-in is checked with ``verifyObject`` against every interface it
  declares, must have a non-empty ``str`` name unique across the server, and
  its ``presentation_contexts()`` must return ``SupportedContext`` values.
* An add-in providing ``IAddInOptions`` is handed its validated options from
  ``<server dir>/addin-options/<name>.toml`` (``options_changed``) before it
  counts as loaded; a file with problems, or an add-in refusing its options,
  is a load failure listing every problem.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import sys
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import providedBy
from zope.interface.verify import verifyObject

from pacsref.addin.errors import AddinFailure, AddinLoadError
from pacsref.addin.interfaces import IAddin, IAddInOptions, IUserIdentityNegotiation
from pacsref.addin.options import as_schema, give_options
from pacsref.addin.options_file import OPTIONS_DIR_NAME, OptionsFile
from pacsref.association import SupportedContext
from pacsref.settings.errors import SettingsError

__all__ = ["ENTRY_POINT_GROUP", "LoadResult", "load_addins", "package_name_for"]

#: The entry-point group installed distributions register add-ins under, e.g.
#: ``[project.entry-points."pacsref.addins"] mine = "mypkg.addin:addin"``. The
#: object may be an add-in instance or a module, which is scanned like a file
#: in ``addins/``.
ENTRY_POINT_GROUP = "pacsref.addins"

_log = Logger()


@dataclass(slots=True)
class LoadResult:
    """What :func:`load_addins` found.

    Attributes:
        addins: the verified add-ins, folder first (sorted by file name), then
            entry points; names are unique.
        failures: everything that could not be loaded, in discovery order.
    """

    addins: list[object] = field(default_factory=list)
    failures: list[AddinFailure] = field(default_factory=list)


def package_name_for(addins_dir: Path) -> str:
    """The synthetic package name the modules of ``addins_dir`` are imported under."""
    digest = hashlib.sha256(str(addins_dir.resolve()).encode()).hexdigest()[:16]
    return f"pacsref_addins_{digest}"


def load_addins(
    addins_dir: Path,
    entry_point_group: str | None = ENTRY_POINT_GROUP,
    strict: bool = True,
    options_dir: Path | None = None,
    apply_options: bool = True,
) -> LoadResult:
    """Import every add-in of one server and verify it.

    Args:
        addins_dir: the server's ``addins/`` folder. A missing folder is a
            failure (a server directory always has one; its absence means a
            wrong ``--server-dir``).
        entry_point_group: also load installed distributions' add-ins from
            this group; None to load the folder only.
        strict: raise instead of returning failures.
        options_dir: where add-in option files are; default the ``addin-options``
            folder beside ``addins_dir`` (both in the server directory).
        apply_options: hand ``IAddInOptions`` add-ins their options; False lets a tool
            load add-ins whose option file it is about to repair.

    Raises:
        AddinLoadError: in strict mode, listing every failure.
    """
    result = LoadResult()
    found = list(_scan_folder(Path(addins_dir), result.failures))
    if entry_point_group is not None:
        found.extend(_scan_entry_points(entry_point_group, result.failures))
    result.addins = _unique_by_name(found, result.failures)
    if apply_options:
        folder = options_dir if options_dir is not None else addins_dir.parent / OPTIONS_DIR_NAME
        result.addins = _with_options(result.addins, Path(folder), result.failures)
    for failure in result.failures:
        _log.error("add-in {name} not loaded: {error}", name=failure.name, error=failure.error)
    for addin in result.addins:
        _log.info("add-in {name} loaded", name=addin.name)  # type: ignore[attr-defined]
    if strict and result.failures:
        raise AddinLoadError(result.failures)
    return result


def _error_text(exc: BaseException, where: str = "") -> str:
    text = f"{type(exc).__name__}: {exc}"
    return f"{text} ({where})" if where else text


def _scan_folder(addins_dir: Path, failures: list[AddinFailure]) -> Iterator[tuple[str, object]]:
    """Yield ``(source, add-in)`` for each add-in of the folder, recording failures."""
    if not addins_dir.is_dir():
        failures.append(
            AddinFailure(
                str(addins_dir),
                f"FileNotFoundError: add-in folder {str(addins_dir)!r} does not exist",
            )
        )
        return
    package = _synthetic_package(addins_dir)
    for name, path in _candidates(addins_dir):
        if not name.isidentifier():
            failures.append(AddinFailure(name, f"{path.name!r} is not a valid Python module name"))
            continue
        try:
            module = importlib.import_module(f"{package}.{name}")
        except (Exception, SystemExit) as exc:
            if not isinstance(exc, SettingsError):
                # A bug in the add-in: its traceback is what its author needs. A settings
                # problem (the security add-in's options file, say) names its file and
                # field already, and the failure is logged in one line where it is reported.
                _log.failure("importing add-in module {name} failed", Failure(), name=name)
            failures.append(AddinFailure(name, _error_text(exc, f"importing {path}")))
            continue
        yield from _scan_module(name, module, failures)


def _candidates(addins_dir: Path) -> list[tuple[str, Path]]:
    entries = []
    for path in sorted(addins_dir.iterdir()):
        if path.name.startswith((".", "_")):
            continue
        if path.is_dir():
            if (path / "__init__.py").is_file():
                entries.append((path.name, path))
        elif path.suffix == ".py" and path.is_file():
            entries.append((path.stem, path))
    return entries


def _synthetic_package(addins_dir: Path) -> str:
    """Install a fresh package whose ``__path__`` is ``addins_dir`` and return its name.

    Modules left from an earlier load of the same folder are dropped first, so
    loading again (a restart in the same process, a test) sees edited files.
    Objects from the earlier load keep working: they hold their own globals.
    """
    name = package_name_for(addins_dir)
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [str(addins_dir)]
    package = importlib.util.module_from_spec(spec)
    package.__doc__ = f"Add-ins of {addins_dir} (synthetic package, see pacsref.addin.loader)."
    sys.modules[name] = package
    # The path finder caches directory listings by mtime; a file written within
    # the same mtime tick (tests, a fast operator) would otherwise be missed.
    importlib.invalidate_caches()
    return name


def _scan_module(
    source: str, module: types.ModuleType, failures: list[AddinFailure]
) -> Iterator[tuple[str, object]]:
    """Yield the verified add-in instances among the module's top-level names."""
    seen: set[int] = set()
    classes: list[str] = []
    for attr, value in list(vars(module).items()):
        if isinstance(value, type):
            if IAddin.implementedBy(value):
                classes.append(attr)
            continue
        if not IAddin.providedBy(value) or id(value) in seen:
            continue
        seen.add(id(value))
        error = _verify(value)
        if error is None:
            yield source, value
        else:
            failures.append(
                AddinFailure(source, f"{error} (add-in {attr!r})", _verifies_identity(value))
            )
    if seen:
        return
    hint = (
        f"; it defines {', '.join(classes)} implementing IAddin but no instance: "
        f"add e.g. 'addin = {classes[0]}()'"
        if classes
        else "; helper modules belong in '_'-prefixed files"
    )
    failures.append(AddinFailure(source, f"module provides no object providing IAddin{hint}"))


def _verify(addin: object) -> str | None:
    """Why ``addin`` is unusable, as ``"ExceptionType: message"``, or None if it is fine."""
    try:
        for interface in providedBy(addin):
            verifyObject(interface, addin)
        name = addin.name  # type: ignore[attr-defined]
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"IAddin.name must be a non-empty str, not {name!r}")
        for context in addin.presentation_contexts():  # type: ignore[attr-defined]
            if not isinstance(context, SupportedContext):
                raise TypeError(
                    f"presentation_contexts() must yield SupportedContext, not {context!r}"
                )
    except Exception as exc:
        return _error_text(exc)
    return None


def _verifies_identity(addin: object) -> bool:
    """Whether ``addin`` verifies user identities (:class:`IUserIdentityNegotiation`)."""
    return IUserIdentityNegotiation.providedBy(addin)


def _with_options(
    addins: list[object], options_dir: Path, failures: list[AddinFailure]
) -> list[object]:
    """The add-ins that took their options; the others become failures."""
    kept = []
    for addin in addins:
        if IAddInOptions.providedBy(addin):
            name = addin.name  # type: ignore[attr-defined]
            try:
                schema = as_schema(addin.options_declaration)  # type: ignore[attr-defined]
                values = OptionsFile.in_dir(options_dir, name, schema).load()
                give_options(addin, values)
            except Exception as exc:
                failures.append(AddinFailure(name, _error_text(exc), _verifies_identity(addin)))
                continue
        kept.append(addin)
    return kept


def _scan_entry_points(group: str, failures: list[AddinFailure]) -> Iterator[tuple[str, object]]:
    for entry_point in importlib.metadata.entry_points(group=group):
        source = f"entry point {entry_point.name}"
        try:
            obj = entry_point.load()
        except (Exception, SystemExit) as exc:
            _log.failure("loading add-in {source} failed", Failure(), source=source)
            failures.append(AddinFailure(source, _error_text(exc, entry_point.value)))
            continue
        if isinstance(obj, types.ModuleType):
            yield from _scan_module(source, obj, failures)
        elif IAddin.providedBy(obj):
            error = _verify(obj)
            if error is None:
                yield source, obj
            else:
                failures.append(
                    AddinFailure(source, f"{error} ({entry_point.value})", _verifies_identity(obj))
                )
        else:
            failures.append(
                AddinFailure(
                    source,
                    f"{entry_point.value} is {obj!r}, which does not provide IAddin "
                    "(entry points must name an add-in instance or a module)",
                )
            )


def _unique_by_name(
    found: Iterable[tuple[str, object]], failures: list[AddinFailure]
) -> list[object]:
    """Drop every add-in whose name is shared, reporting one failure per name.

    Neither copy is kept: which one the operator meant cannot be known, and
    letting file order decide would change behaviour on a rename. The *same*
    object reached twice (a module re-exporting another's add-in) is one add-in.
    """
    by_name: dict[str, list[tuple[str, object]]] = {}
    seen: set[int] = set()
    for source, addin in found:
        if id(addin) in seen:
            continue
        seen.add(id(addin))
        by_name.setdefault(addin.name, []).append((source, addin))  # type: ignore[attr-defined]
    unique = []
    for name, entries in by_name.items():
        if len(entries) == 1:
            unique.append(entries[0][1])
        else:
            sources = ", ".join(source for source, _ in entries)
            failures.append(
                AddinFailure(
                    name,
                    f"duplicate add-in name {name!r}, provided by {sources}",
                    any(_verifies_identity(addin) for _, addin in entries),
                )
            )
    return unique
