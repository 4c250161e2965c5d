"""TOML 1.0 text for the scalar values a settings file holds.

The standard library reads TOML (``tomllib``) but cannot write it, and the project takes no new
dependencies, so :mod:`pacsref.settings.toml_io` writes the file by hand. The settings file only
holds top-level scalars, so the writer needs exactly this: a literal for a string, an integer, a
float or a boolean, each read back by ``tomllib`` as the same Python value. Error messages use the
same spelling, so a bad value is quoted the way the user typed it in the file.
"""

from __future__ import annotations

import json
import math

# Control characters must be escaped in a TOML basic string; these have a short form.
_SHORT_ESCAPES = {
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
    '"': '\\"',
    "\\": "\\\\",
}


def toml_string(text: str) -> str:
    """Return ``text`` as a TOML basic string (double-quoted) that ``tomllib`` reads back exactly.

    Quotation mark, backslash and every control character (U+0000-U+001F, U+007F) are escaped, as
    TOML requires; tab is escaped too so that it is visible to a human editor. Other characters,
    including non-ASCII ones, are written as they are because the file is UTF-8.
    """
    parts: list[str] = ['"']
    for char in text:
        escape = _SHORT_ESCAPES.get(char)
        if escape is not None:
            parts.append(escape)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            parts.append(f"\\u{ord(char):04X}")
        else:
            parts.append(char)
    parts.append('"')
    return "".join(parts)


def toml_float(number: float) -> str:
    """Return ``number`` as a TOML float that reads back as the same ``float``.

    ``repr`` gives the shortest text that round-trips and is valid TOML for finite values
    (``300.0``, ``1e-05``, ``1.5e+16``); TOML spells the special values ``inf``/``-inf``/``nan``.
    """
    if math.isnan(number):
        return "nan"
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    return repr(number)


def toml_scalar(value: str | bool | int | float) -> str:
    """Return the TOML literal for a string, boolean, integer or float.

    ``bool`` is tested first because it is a subclass of ``int`` in Python but a distinct type in
    TOML (``true``, not ``1``).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return toml_float(value)
    if isinstance(value, str):
        return toml_string(value)
    raise TypeError(f"TOML settings hold only str, bool, int and float, not {type(value).__name__}")


def describe_value(value: object, limit: int = 80) -> str:
    """Spell ``value`` for an error message: as TOML when it is a TOML scalar, else with ``repr``.

    Long values are shortened to ``limit`` characters so that one bad line cannot flood the
    report of every error in the file. Other values arrive as JSON (the admin socket), so they
    are spelled as JSON: ``null``, ``[1, 2]``, ``{"a": 1}`` rather than Python's ``None``.
    """
    if isinstance(value, str | bool | int | float):
        text = toml_scalar(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text
