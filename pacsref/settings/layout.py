"""The on-disk layout of one server directory, and creating it (docs/CONTRACTS.md).

``<root>/<AE>/`` holds ``settings.toml`` and the ``addins/``, ``tmp/``, ``logs/`` and ``data/``
directories. Creating a server writes the settings last, so a directory that has
``settings.toml`` is complete; that file is also what marks a directory as a server, which is
why creation refuses to overwrite it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pacsref.settings.errors import MISSING, SettingsError, SettingsProblem
from pacsref.settings.model import (
    ADDINS_DIR_NAME,
    DATA_DIR_NAME,
    LOGS_DIR_NAME,
    SETTINGS_FILE_NAME,
    TMP_DIR_NAME,
    ServerSettings,
)
from pacsref.settings.toml_io import StrPath, save_settings

# Build artefacts that must not be copied along with an add-in package.
_IGNORED_IN_ADDINS = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")


@dataclass(frozen=True, slots=True)
class ServerLayout:
    """Paths inside one server directory, so no module spells them on its own."""

    root: Path

    @property
    def settings_file(self) -> Path:
        return self.root / SETTINGS_FILE_NAME

    @property
    def addins_dir(self) -> Path:
        return self.root / ADDINS_DIR_NAME

    @property
    def tmp_dir(self) -> Path:
        """The *default* temporary directory; see
        :meth:`ServerSettings.effective_temporary_directory` for the configured one."""
        return self.root / TMP_DIR_NAME

    @property
    def logs_dir(self) -> Path:
        return self.root / LOGS_DIR_NAME

    @property
    def data_dir(self) -> Path:
        return self.root / DATA_DIR_NAME


def _check_addin_sources(sources: list[Path], target: str) -> list[SettingsProblem]:
    """Find add-in sources that are missing or would overwrite each other in ``addins/``."""
    problems: list[SettingsProblem] = []
    seen: dict[str, Path] = {}
    for source in sources:
        if not source.exists():
            problems.append(
                SettingsProblem(str(source), None, MISSING, "does not exist",
                                "an add-in module file or package directory")
            )  # fmt: skip
        elif source.name in seen:
            problems.append(
                SettingsProblem(str(source), None, MISSING,
                                f"has the same name as {seen[source.name]} in {target}",
                                "add-ins with distinct file or directory names")
            )  # fmt: skip
        else:
            seen[source.name] = source
    return problems


def create_server_directory(
    server_dir: StrPath,
    settings: ServerSettings,
    shipped_addins: Iterable[StrPath] = (),
) -> None:
    """Create a server directory: subdirectories, copies of the add-ins, then ``settings.toml``.

    ``server_dir`` may already exist (e.g. made empty by an installer) but must not contain
    ``settings.toml``: an existing server is never silently reset (:class:`SettingsError`).
    Each of ``shipped_addins`` (a module file or a package directory) is copied into
    ``addins/`` under its own name, without ``__pycache__``. All sources are checked before
    anything is created. The directory is *not* tied to ``settings.ae_title``: the caller
    chooses ``<root>/<AE>`` (AE titles may hold characters a file system rejects).
    """
    layout = ServerLayout(Path(server_dir))
    sources = [Path(source) for source in shipped_addins]
    if layout.settings_file.exists() or layout.settings_file.is_symlink():
        raise SettingsError.single(
            str(layout.settings_file),
            "already exists (the directory is already a server)",
            "a new or empty server directory; edit or delete the existing settings instead",
        )
    problems = _check_addin_sources(sources, str(layout.addins_dir))
    if problems:
        raise SettingsError(problems)

    layout.root.mkdir(parents=True, exist_ok=True)
    for directory in (layout.addins_dir, layout.tmp_dir, layout.logs_dir, layout.data_dir):
        directory.mkdir(exist_ok=True)
    for source in sources:
        destination = layout.addins_dir / source.name
        if source.is_dir():
            shutil.copytree(source, destination, ignore=_IGNORED_IN_ADDINS, dirs_exist_ok=True)
        else:
            shutil.copy2(source, destination)
    save_settings(settings, layout.settings_file)
