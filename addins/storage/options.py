"""The storage add-in's options: ``<server dir>/addin-options/storage.toml``.

Server-specific, read once when the server loads the add-in; a later issue formalises add-in
options, so the format is deliberately plain TOML with five keys. Every problem is reported
together, each naming the file, the key, the value and what is allowed, and stops the add-in
from loading (the server reports it by name), because storing under options the operator did
not mean is worse than not storing.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DUPLICATE_POLICIES",
    "DURABILITY_MODES",
    "OPTIONS_FILE",
    "StorageOptions",
    "StorageOptionsError",
    "load_options",
    "write_options",
]

#: Where the options live, relative to the server directory.
OPTIONS_FILE = Path("addin-options") / "storage.toml"

DUPLICATE_POLICIES = ("keep-first", "overwrite", "refuse")
DURABILITY_MODES = ("fsync", "relaxed")

_TEMPLATE = '''\
# Options of the storage add-in (C-STORE SCP). See docs/storage.md.
accept_unknown_storage_classes = {accept_unknown_storage_classes}
# A SOP Instance UID already stored: "keep-first" (answer 0xB000 warning, keep the stored
# object), "overwrite" (replace it, 0x0000), or "refuse" (answer 0xA900 failure).
duplicates = "{duplicates}"
# "fsync": success only once file, directory and index are on disk. "relaxed": no fsync;
# faster, but a crash of the machine may lose objects already acknowledged.
durability = "{durability}"
# "" = SQLite at <server dir>/data/index.sqlite; "postgresql://..." = a shared PostgreSQL index.
index_dsn = "{index_dsn}"
'''


class StorageOptionsError(ValueError):
    """The options file is unreadable or holds invalid values; the message lists every problem."""


@dataclass(frozen=True, slots=True)
class StorageOptions:
    """Validated options; the defaults are what a missing file means.

    Attributes:
        accept_unknown_storage_classes: also accept abstract syntaxes no add-in declares
            (see docs/storage.md for how "storage class" is decided).
        duplicates: "keep-first", "overwrite" or "refuse".
        durability: "fsync" or "relaxed".
        index_dsn: "" for the embedded SQLite index, else a ``postgresql://`` DSN.
        simulate_full_disk: testing aid: every store fails as on a full disk (ENOSPC).
    """

    accept_unknown_storage_classes: bool = False
    duplicates: str = "keep-first"
    durability: str = "fsync"
    index_dsn: str = ""
    simulate_full_disk: bool = False

    @property
    def durable(self) -> bool:
        """True when stores must be fsynced before success."""
        return self.durability == "fsync"

    def to_toml(self) -> str:
        """The options as a commented file (what ``write_options`` writes)."""
        text = _TEMPLATE.format(
            accept_unknown_storage_classes=str(self.accept_unknown_storage_classes).lower(),
            duplicates=self.duplicates,
            durability=self.durability,
            index_dsn=self.index_dsn.replace("\\", "\\\\").replace('"', '\\"'),
        )
        if self.simulate_full_disk:
            text += "simulate_full_disk = true\n"
        return text


_TYPES: dict[str, type] = {
    "accept_unknown_storage_classes": bool,
    "duplicates": str,
    "durability": str,
    "index_dsn": str,
    "simulate_full_disk": bool,
}
_CHOICES = {"duplicates": DUPLICATE_POLICIES, "durability": DURABILITY_MODES}


def load_options(server_dir: Path) -> StorageOptions:
    """Read and validate the options of the server in ``server_dir`` (defaults if no file).

    Raises:
        StorageOptionsError: listing every problem, each as ``file: key = value: why``.
    """
    path = Path(server_dir) / OPTIONS_FILE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return StorageOptions()
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise StorageOptionsError(f"{path}: cannot be read as TOML: {exc}") from None
    problems = []
    for key, value in raw.items():
        expected = _TYPES.get(key)
        if expected is None:
            problems.append(f"{path}: {key}: unknown option (known: {', '.join(_TYPES)})")
        elif type(value) is not expected:
            problems.append(
                f"{path}: {key} = {value!r}: must be a {expected.__name__}"
                f" ({'true or false' if expected is bool else 'quoted text'})"
            )
        elif key in _CHOICES and value not in _CHOICES[key]:
            allowed = ", ".join(f'"{c}"' for c in _CHOICES[key])
            problems.append(f"{path}: {key} = {value!r}: must be one of {allowed}")
        elif key == "index_dsn" and value and not value.startswith(("postgresql://", "postgres://")):
            problems.append(
                f"{path}: index_dsn = {value!r}: must be \"\" (SQLite) or a postgresql:// DSN"
            )
    if problems:
        raise StorageOptionsError("\n".join(problems))
    return StorageOptions(**raw)


def write_options(server_dir: Path, options: StorageOptions) -> Path:
    """Write ``options`` to the server's options file (creating ``addin-options/``)."""
    path = Path(server_dir) / OPTIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(options.to_toml(), encoding="utf-8")
    return path
