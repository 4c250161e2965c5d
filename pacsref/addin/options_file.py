"""``<server dir>/addin-options/<add-in>.toml``: an add-in's option values on disk.

The file is flat ``key = value`` TOML with one comment per option (what it does, what is
allowed, the default, whether a change applies live), written like ``settings.toml``: by hand
(the stdlib cannot write TOML) and atomically (temporary file, fsync, rename, fsync of the
directory; :func:`pacsref.settings.atomic_write_bytes`), so a crash or a full disk leaves the
old file or the new one, never a truncated file that would stop the add-in from loading. A
missing file means every default: a fresh server needs no option files.
"""

from __future__ import annotations

import textwrap
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pacsref.addin.options import (
    AddInOption,
    AddInOptionsError,
    OptionsSchema,
    OptionValue,
    OptionValues,
)
from pacsref.settings import atomic_write_bytes
from pacsref.settings.tomltext import toml_scalar

__all__ = ["OPTIONS_DIR_NAME", "OptionsFile", "dumps_options", "options_path"]

#: The folder of a server directory holding one ``<add-in name>.toml`` per add-in.
OPTIONS_DIR_NAME = "addin-options"

_HEADER = """\
# Options of the {addin} add-in. Edit with any text editor while the server is stopped, or
# use `pacsref addins config SERVER {addin} KEY=VALUE` (also while it runs). A key left out
# takes its default; unknown keys are errors. Strings go in double quotes.
"""


def options_path(options_dir: Path, addin: str) -> Path:
    """Where the options of ``addin`` live in ``options_dir``."""
    return Path(options_dir) / f"{addin}.toml"


def _comment(option: AddInOption) -> str:
    """What the option does, what is allowed, its default and when a change applies."""
    when = "Applies at once." if option.live else "Applies at the next start."
    text = (
        f"{option.description} Allowed: {option.allowed}. "
        f"Default: {toml_scalar(option.default)}. {when}"
    )
    return "\n".join(textwrap.wrap(text, width=96, initial_indent="# ", subsequent_indent="# "))


def dumps_options(addin: str, schema: OptionsSchema, values: Mapping[str, OptionValue]) -> str:
    """The commented TOML text of ``values``; every option is written, defaults included."""
    lines = [_HEADER.format(addin=addin)]
    for option in schema.options:
        lines.append(_comment(option))
        lines.append(f"{option.name} = {toml_scalar(values[option.name])}\n")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class OptionsFile:
    """The options file of one add-in, with the schema that validates it."""

    path: Path
    addin: str
    schema: OptionsSchema

    @classmethod
    def in_dir(cls, options_dir: Path, addin: str, schema: OptionsSchema) -> OptionsFile:
        return cls(options_path(options_dir, addin), addin, schema)

    def read_raw(self) -> dict[str, object]:
        """The file's key/value pairs, unvalidated ({} when there is no file).

        Raises:
            AddInOptionsError: the file is unreadable or not TOML.
        """
        try:
            text = self.path.read_bytes().decode("utf-8-sig")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise AddInOptionsError(f"{self.path}: cannot be read: {exc}") from None
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise AddInOptionsError(
                f"{self.path}: cannot be read as TOML: {exc} (add-in {self.addin})"
            ) from None

    def load(self) -> OptionValues:
        """The validated values of the file; defaults for keys it leaves out (blocking I/O).

        Raises:
            AddInOptionsError: listing every problem, each with file, key, value and rule.
        """
        return self.validate(self.read_raw())

    def validate(
        self, mapping: Mapping[str, object], base: Mapping[str, OptionValue] | None = None
    ) -> OptionValues:
        """``mapping`` over ``base`` checked against the schema, problems naming this file."""
        return self.schema.validate(mapping, addin=self.addin, source=str(self.path), base=base)

    def save(self, values: Mapping[str, OptionValue]) -> Path:
        """Write ``values`` atomically, creating the options folder (blocking I/O)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, dumps_options(self.addin, self.schema, values).encode())
        return self.path
