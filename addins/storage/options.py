"""The storage add-in's options: ``<server dir>/addin-options/storage.toml``.

Declared once in :data:`OPTIONS` through :mod:`pacsref.addin.options`, so the file, the admin
socket (GetAddInOptions/SetAddInOptions) and ``pacsref addins config`` validate alike. Every
problem is reported together, each naming the file, the key, the value and what is allowed,
and stops the add-in from loading (the server reports it by name), because storing under
options the operator did not mean is worse than not storing.

What applies live: the options read per C-STORE (``duplicates``,
``accept_unknown_storage_classes``, ``minimum_free_space_mib``, ``simulate_full_disk``,
``simulate_crash_after_rename``). ``durability`` and ``index_dsn``
shape the index connections opened at start (SQLite's ``synchronous`` pragma, the database
itself), so a change is saved and applies at the next start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pacsref.addin import (
    OPTIONS_DIR_NAME,
    AddInOption,
    AddInOptionsError,
    OptionsFile,
    OptionsSchema,
)

__all__ = [
    "DUPLICATE_POLICIES",
    "DURABILITY_MODES",
    "OPTIONS",
    "OPTIONS_FILE",
    "StorageOptions",
    "StorageOptionsError",
    "load_options",
    "options_file",
    "write_options",
]

ADDIN_NAME = "storage"

#: Where the options live, relative to the server directory.
OPTIONS_FILE = Path(OPTIONS_DIR_NAME) / f"{ADDIN_NAME}.toml"

DUPLICATE_POLICIES = ("keep-first", "overwrite", "refuse")
DURABILITY_MODES = ("fsync", "relaxed")

#: The error of an options file with problems (the framework's, under its historical name).
StorageOptionsError = AddInOptionsError


def _dsn_problem(value: str) -> str | None:
    if value and not value.startswith(("postgresql://", "postgres://")):
        return 'must be "" (SQLite) or a postgresql:// DSN'
    return None


# fmt: off
OPTIONS = OptionsSchema((
    AddInOption(
        "accept_unknown_storage_classes", "bool", False,
        "Also accept abstract syntaxes no add-in declares, as storage classes.",
    ),
    AddInOption(
        "duplicates", "choice", "keep-first",
        'A SOP Instance UID already stored: "keep-first" (answer success, keep the stored '
        'object), "overwrite" (replace it), or "refuse" (answer 0x0111 failure).',
        choices=DUPLICATE_POLICIES,
    ),
    AddInOption(
        "durability", "choice", "fsync",
        '"fsync": success only once the file and its directory entry are on disk and the '
        "index row is committed (a row lost with a power failure is rebuilt from the file by "
        '`pacsref server check --repair`). "relaxed": no fsync; faster, but a crash of the '
        "machine may lose objects already acknowledged.",
        choices=DURABILITY_MODES, live=False,
    ),
    AddInOption(
        "index_dsn", "str", "",
        '"" = SQLite at <server dir>/data/index.sqlite; "postgresql://..." = a shared '
        "PostgreSQL index.",
        live=False, check=_dsn_problem, allowed_text='"" or a postgresql:// DSN',
    ),
    AddInOption(
        "minimum_free_space_mib", "int", 256,
        "Refuse stores (0xA700) while the data directory's file system has less free space "
        "than this, keeping room for the index, the logs and the system; 0 = until it is full.",
        minimum=0,
    ),
    AddInOption(
        "simulate_full_disk", "bool", False,
        "Testing aid: every store fails as on a full disk (0xA700).",
    ),
    AddInOption(
        "simulate_crash_after_rename", "bool", False,
        "Testing aid: the server kills itself (SIGKILL) once the next stored file is in place "
        "and before its index row is committed, the window `pacsref server check --repair` "
        "closes.",
    ),
))
# fmt: on


@dataclass(frozen=True, slots=True)
class StorageOptions:
    """Validated options as the rest of the add-in reads them; the defaults match :data:`OPTIONS`.

    Attributes:
        accept_unknown_storage_classes: also accept abstract syntaxes no add-in declares
            (see docs/storage.md for how "storage class" is decided).
        duplicates: "keep-first", "overwrite" or "refuse".
        durability: "fsync" or "relaxed".
        index_dsn: "" for the embedded SQLite index, else a ``postgresql://`` DSN.
        minimum_free_space_mib: stores are refused while less than this many MiB are free
            on the data directory's file system (0: never, until the disk is full).
        simulate_full_disk: testing aid: every store fails as on a full disk (ENOSPC).
        simulate_crash_after_rename: testing aid: SIGKILL between a store's rename and its
            index commit.
    """

    accept_unknown_storage_classes: bool = False
    duplicates: str = "keep-first"
    durability: str = "fsync"
    index_dsn: str = ""
    minimum_free_space_mib: int = 256
    simulate_full_disk: bool = False
    simulate_crash_after_rename: bool = False

    @classmethod
    def from_values(cls, values: Mapping[str, object]) -> StorageOptions:
        """From validated :class:`~pacsref.addin.OptionValues`."""
        return cls(**values)  # type: ignore[arg-type]

    @property
    def durable(self) -> bool:
        """True when stores must be fsynced before success."""
        return self.durability == "fsync"

    def as_mapping(self) -> dict[str, object]:
        """The values by option name."""
        return {name: getattr(self, name) for name in OPTIONS.names}


def options_file(server_dir: Path) -> OptionsFile:
    """The options file of the server in ``server_dir``."""
    return OptionsFile(Path(server_dir) / OPTIONS_FILE, ADDIN_NAME, OPTIONS)


def load_options(server_dir: Path) -> StorageOptions:
    """Read and validate the options of the server in ``server_dir`` (defaults if no file).

    Raises:
        StorageOptionsError: listing every problem, each as ``file: key = value: why``.
    """
    return StorageOptions.from_values(options_file(server_dir).load())


def write_options(server_dir: Path, options: StorageOptions) -> Path:
    """Write ``options`` to the server's options file (creating ``addin-options/``)."""
    file = options_file(server_dir)
    return file.save(file.validate(options.as_mapping()))
