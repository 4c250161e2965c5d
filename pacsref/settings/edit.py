"""Changing some fields of a saved ``settings.toml``, validated together with the rest of it.

``pacsref server edit`` (a stopped server) and the admin socket's UpdateSettings (a running one)
both come here, so that an edit is judged the same way whoever makes it: every problem of the
changes *and* of the file they land in is reported at once (a file broken by hand is not made
worse by an edit that ignores it), and the file is replaced atomically or not at all.

The AE title cannot be edited: it names the server's directory and its admin socket, which the
manager finds from it; a server under another AE title is a new server (``pacsref server add``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path

from pacsref.settings.errors import MISSING, SettingsError, SettingsProblem
from pacsref.settings.fields import FIELD_SPECS, validate_mapping
from pacsref.settings.model import ServerSettings, settings_from_mapping
from pacsref.settings.spool import check_temporary_directory
from pacsref.settings.toml_io import StrPath, load_settings, save_settings

__all__ = ["AE_TITLE_FIXED", "edit_settings_file", "edited_settings"]

#: Why ``ae_title`` is refused, completing "ae_title = "X" ..." in the error.
AE_TITLE_FIXED = (
    "cannot be changed: the AE title names the server directory and its admin socket; "
    "add a new server with `pacsref server add` instead"
)


def _document(path: Path) -> dict[str, object]:
    """The file as a TOML mapping; a file that cannot be read or parsed raises its own error."""
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        load_settings(path)  # raises the SettingsError that names file, line and reason
        raise  # pragma: no cover  (load_settings cannot succeed where we failed)


def _problems(
    mapping: Mapping[str, object], source: str, ignore_missing: set[str]
) -> tuple[dict[str, object], list[SettingsProblem]]:
    values, problems = validate_mapping(mapping, source)
    kept = [p for p in problems if not (p.value is MISSING and p.field in ignore_missing)]
    return values, kept


def edited_settings(
    path: StrPath, changes: Mapping[str, object], source: str = "changes"
) -> tuple[ServerSettings, tuple[str, ...]]:
    """The settings of ``path`` with ``changes`` applied, and the fields whose value changes.

    Nothing is written. Raises :class:`SettingsError` listing every problem: of the changes
    (lines starting with ``source``), of the rest of the file (lines starting with its path),
    an ``ae_title`` other than the file's, or no change given at all.
    """
    path = Path(path)
    if not changes:
        raise SettingsError.single(source, "give at least one setting to change", "field = value")
    document = _document(path)
    rest = {k: v for k, v in document.items() if k not in changes}
    names = {spec.name for spec in FIELD_SPECS}
    file_values, problems = _problems(rest, str(path), ignore_missing=set(changes))
    change_values, change_problems = _problems(changes, source, ignore_missing=names)
    problems += change_problems
    current_ae = document.get("ae_title")
    if "ae_title" in change_values:
        unchanged = {"ae_title": current_ae}
        if validate_mapping(unchanged, source)[0].get("ae_title") != change_values["ae_title"]:
            problems.append(
                SettingsProblem(source, "ae_title", changes["ae_title"], AE_TITLE_FIXED, "")
            )
    if problems:
        raise SettingsError(problems)
    before = {spec.name: spec.default for spec in FIELD_SPECS}
    before.update(validate_mapping(document, str(path))[0])
    after = settings_from_mapping({**file_values, **change_values}, source=source)
    mapping = after.as_mapping()
    changed = tuple(
        spec.name
        for spec in FIELD_SPECS
        if spec.name in change_values and _plain(before[spec.name]) != mapping[spec.name]
    )
    return after, changed


def _plain(value: object) -> object:
    """A field value as ``as_mapping`` spells it (a start mode as its string)."""
    return getattr(value, "value", value)


def edit_settings_file(
    path: StrPath,
    changes: Mapping[str, object],
    source: str = "changes",
    server_dir: Path | None = None,
) -> tuple[ServerSettings, tuple[str, ...]]:
    """Apply ``changes`` to the file at ``path`` (see :func:`edited_settings`) and save it.

    The file is rewritten atomically, commented as ``dumps_settings`` writes it, even when
    no value changes, so a hand-edited file comes back in the canonical layout. Blocking:
    servers call it on a worker thread.

    With ``server_dir`` (the caller runs on the server's machine), a ``temporary_directory``
    whose value changes must be usable there
    (:func:`~pacsref.settings.spool.check_temporary_directory`, which raises
    :class:`~pacsref.settings.spool.TemporaryDirectoryError`) before anything is saved: a
    path that only fails at the next start would be found long after whoever set it left.
    """
    settings, changed = edited_settings(path, changes, source)
    if server_dir is not None and "temporary_directory" in changed:
        check_temporary_directory(settings, server_dir)
    save_settings(settings, path)
    return settings, changed
