"""Command-line options for settings fields, generated from ``FIELD_SPECS``.

``server add`` and ``server edit`` take one option per settings field (``--max-clients 20``,
``--no-allow-anonymous``, ``--start-mode manual``, ``--no-delay``/``--nagle``), generated from
the one declaration of the fields so that a new field gets its option, its help and its checks
without touching the manager. argparse only converts the text to the field's type; the range
and the rest are judged by the settings model, whose errors name the field and what is
allowed. ``--set key=value`` stays for scripts that already use it, and for every field.
"""

from __future__ import annotations

import argparse
from typing import Any

from pacsref.server.create import parse_assignment
from pacsref.settings import FIELD_SPECS, FieldSpec, StartMode

__all__ = ["add_settings_options", "option_name", "settings_changes"]

#: Where the options put their values in the namespace: ``setting_<field>``.
_DEST_PREFIX = "setting_"


def option_name(field: str) -> str:
    """``max_clients`` -> ``--max-clients``."""
    return "--" + field.replace("_", "-")


#: Boolean fields whose generated ``--no-<field>`` reads badly: the name of their false option.
#: ``no_delay = false`` means Nagle's algorithm is on, so ``--nagle`` says it; the generated
#: ``--no-no-delay`` is still accepted (hidden) for scripts written before.
FALSE_OPTION_NAMES = {"no_delay": "--nagle"}


def _help(spec: FieldSpec) -> str:
    words = f"{spec.comment} Allowed: {spec.allowed}."
    if not spec.live:
        words += " Restart-only."
    return words.replace("%", "%%")  # argparse formats help with %


def _add_option(group: Any, spec: FieldSpec) -> None:
    dest = _DEST_PREFIX + spec.name
    help_text = _help(spec)
    kind = type(spec.default)
    if kind is bool and spec.name in FALSE_OPTION_NAMES:
        negative = FALSE_OPTION_NAMES[spec.name]
        group.add_argument(
            option_name(spec.name), dest=dest, action="store_const", const=True, help=help_text
        )
        group.add_argument(
            negative,
            dest=dest,
            action="store_const",
            const=False,
            help=f"{spec.name} = false: leave Nagle's algorithm on (the opposite of "
            f"{option_name(spec.name)})",
        )
        group.add_argument(
            "--no-" + option_name(spec.name)[2:],
            dest=dest,
            action="store_const",
            const=False,
            help=argparse.SUPPRESS,
        )
    elif kind is bool:
        group.add_argument(
            option_name(spec.name), dest=dest, action=argparse.BooleanOptionalAction, help=help_text
        )
    elif kind is StartMode:
        choices = [mode.value for mode in StartMode]
        group.add_argument(option_name(spec.name), dest=dest, choices=choices, help=help_text)
    elif kind in (int, float):
        metavar = "N" if kind is int else "SECONDS"
        group.add_argument(
            option_name(spec.name), dest=dest, type=kind, metavar=metavar, help=help_text
        )
    else:
        group.add_argument(option_name(spec.name), dest=dest, metavar="TEXT", help=help_text)


def add_settings_options(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    """Add ``--<field>`` for every settings field but ``skip``, and ``--set KEY=VALUE``."""
    group = parser.add_argument_group("settings (see settings.toml for each field's meaning)")
    for spec in FIELD_SPECS:
        if spec.name not in skip:
            _add_option(group, spec)
    group.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        type=parse_assignment,
        metavar="KEY=VALUE",
        help="any setting by its settings.toml name, the value read as TOML, e.g. "
        "--set artim_timeout=5 (repeatable; the options above win over it)",
    )


def settings_changes(args: argparse.Namespace) -> dict[str, object]:
    """The settings given on the command line: ``--set`` ones, then the per-field options."""
    values: dict[str, object] = dict(getattr(args, "assignments", []))
    for spec in FIELD_SPECS:
        value = getattr(args, _DEST_PREFIX + spec.name, None)
        if value is not None:
            values[spec.name] = value
    return values
