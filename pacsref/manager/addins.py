"""``pacsref addins list|config SERVER ...``: a server's add-ins and their options.

Works whether the server runs or not, because an operator configures a server before its
first start as often as while it serves. Running (its pidfile names a live process, or its
admin socket answers, as under systemd): everything goes over the admin socket (GetAddIns,
GetAddInOptions, SetAddInOptions), so the running add-in is told and validates the change.
Stopped: the add-ins are loaded from the server's ``addins/`` folder in this process, the
change is offered to the add-in the same way, and the options file is written directly;
the server reads it when it starts.
"""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path
from typing import Any

from pacsref.addin import (
    OPTIONS_DIR_NAME,
    AddInOptionsError,
    IAddInOptions,
    OptionsFile,
    load_addins,
)
from pacsref.addin.options import OptionProblem, as_schema, parse_assignment, parse_cli_value
from pacsref.admin.client import AdminConnectionError
from pacsref.manager.daemon import ManagerError, Server, call_running, find_server, running
from pacsref.settings import ADDINS_DIR_NAME
from pacsref.settings.tomltext import toml_scalar

__all__ = ["register"]

#: Where the values given as ``KEY=VALUE`` come from, in the problems that name them.
COMMAND_LINE = "command line"


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser("addins", help="a server's add-ins and their options")
    sub = group.add_subparsers(dest="addins_command", required=True, metavar="COMMAND")
    listing = sub.add_parser(
        "list", parents=[common], help="each add-in: loaded or failed, and its options"
    )
    listing.add_argument("name", help="the server")
    listing.set_defaults(handler=_list)
    config = sub.add_parser(
        "config", parents=[common], help="show an add-in's options, or change them"
    )
    config.add_argument("name", help="the server")
    config.add_argument("addin", help="the add-in's name")
    config.add_argument(
        "assignments",
        nargs="*",
        type=_assignment,
        metavar="KEY=VALUE",
        help="new values, read as TOML",
    )
    config.set_defaults(handler=_config)


# -- where the answers come from ------------------------------------------------------------


_running = running
_call = call_running


def _name(addin: object) -> str:
    return str(getattr(addin, "name", ""))


def _one_line(exc: AddInOptionsError) -> str:
    return "; ".join(str(p) for p in exc.problems) or str(exc)


class _Directory:
    """A stopped server's add-ins, loaded from its folder in this process."""

    def __init__(self, server: Server, apply_options: bool) -> None:
        self.server = server
        self.options_dir = server.directory / OPTIONS_DIR_NAME
        self.result = load_addins(
            server.directory / ADDINS_DIR_NAME,
            strict=False,
            options_dir=self.options_dir,
            apply_options=apply_options,
        )

    def file_of(self, name: str) -> tuple[Any, OptionsFile]:
        addin: Any = next((a for a in self.result.addins if _name(a) == name), None)
        if addin is None:
            failed = next((f for f in self.result.failures if f.name == name), None)
            if failed is not None:
                raise ManagerError(f"add-in {name!r} does not load: {failed.error}")
            known = ", ".join(_name(a) for a in self.result.addins) or "none"
            raise ManagerError(f"server {self.server.name} has no add-in {name!r} (has: {known})")
        if not IAddInOptions.providedBy(addin):
            raise ManagerError(f"add-in {name!r} declares no options")
        schema = as_schema(addin.options_declaration)
        return addin, OptionsFile.in_dir(self.options_dir, name, schema)

    def options(self, name: str) -> list[dict[str, Any]]:
        _, file = self.file_of(name)
        try:
            return file.schema.describe(file.load())
        except AddInOptionsError as exc:
            raise ManagerError(_one_line(exc)) from None

    def set(self, name: str, assignments: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
        """Validate the changes over the file's other values and save them.

        The file's values and the command line's are judged apart, so that each problem
        names where it is (an unknown key typed here is not the file's fault), and together,
        so that every problem is told at once and a change can repair a bad value.
        """
        addin, file = self.file_of(name)
        changes = {}
        for key, text in assignments.items():
            option = file.schema.get(key)
            changes[key] = parse_cli_value(option.kind if option else None, text)
        try:
            raw = file.read_raw()
        except AddInOptionsError as exc:
            raise ManagerError(_one_line(exc)) from None
        problems: list[OptionProblem] = []
        try:
            base = file.validate({k: v for k, v in raw.items() if k not in changes})
        except AddInOptionsError as exc:
            problems += exc.problems
            base = None
        try:
            new = file.schema.validate(changes, addin=name, source=COMMAND_LINE, base=base)
        except AddInOptionsError as exc:
            problems += exc.problems
        if problems:
            raise ManagerError(_one_line(AddInOptionsError.of(problems)))
        try:
            addin.options_changed(new)
        except Exception as exc:
            raise ManagerError(
                f"add-in {name!r} refused the options: {type(exc).__name__}: {exc}"
            ) from None
        try:
            file.save(new)
        except OSError as exc:
            raise ManagerError(f"cannot save {file.path}: {exc}") from None
        return dict(new), []


# -- commands -------------------------------------------------------------------------------


def _print_options(options: list[dict[str, Any]], indent: str = "") -> None:
    for option in options:
        when = "live" if option.get("live", True) else "at next start"
        print(
            f"{indent}{option['name']} = {toml_scalar(option['value'])}"
            f"  (default {toml_scalar(option['default'])}; {when})"
            f"  {option.get('description', '')}".rstrip()
        )


def _print_addin(name: str, state: str, text: str) -> None:
    first, *rest = (text or "").splitlines() or [""]
    print(f"{name:<16} {state:<7} {first}".rstrip())
    for line in rest:
        print(f"{'':<24} {line}")


def _list(root: Path, args: argparse.Namespace) -> int:
    server = find_server(root, args.name)
    if _running(server):
        loaded, failed = [*_call(server, "GetAddIns"), [], []][:2]
        for addin in loaded:
            _print_addin(addin["name"], "loaded", addin.get("description", ""))
            reply = _options_over_socket(server, addin["name"])
            _print_options(reply or [], indent="    ")
        for failure in failed:
            _print_addin(failure["name"], "failed", failure.get("error", ""))
        return 0
    directory = _Directory(server, apply_options=True)
    for addin in directory.result.addins:
        _print_addin(_name(addin), "loaded", str(getattr(addin, "description", "")))
        if IAddInOptions.providedBy(addin):
            _print_options(directory.options(_name(addin)), indent="    ")
    for failure in directory.result.failures:
        _print_addin(failure.name, "failed", failure.error)
    return 0


def _options_over_socket(server: Server, name: str) -> list[dict[str, Any]] | None:
    """The add-in's options, or None when it declares none (the one refusal expected here)."""
    try:
        with server.admin() as admin:
            reply = admin.call("GetAddInOptions", name)
    except (AdminConnectionError, OSError) as exc:
        raise ManagerError(f"server {server.name}: {exc}") from None
    if reply.success:
        return list(reply.data[0])
    if reply.error.endswith("declares no options"):
        return None
    raise ManagerError(f"server {server.name}: GetAddInOptions failed: {reply.error}")


def _assignment(text: str) -> tuple[str, str]:
    """argparse type of ``KEY=VALUE``: a word without ``=`` is bad usage (exit status 2)."""
    try:
        return parse_assignment(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _unknown_keys(addin: str, keys: list[str], known: list[str]) -> None:
    """Refuse keys the running add-in does not declare, before anything is sent.

    The server would blame them on the options file, where they are not; worded as the
    add-in options schema words an unknown key.
    """
    problems = []
    for key in keys:
        if key in known:
            continue
        guesses = difflib.get_close_matches(key.strip().lower().replace("-", "_"), known, 1)
        hint = f" (did you mean {guesses[0]}?)" if guesses else ""
        reason = f"unknown option{hint}; known: {', '.join(known) or 'none'}"
        problems.append(OptionProblem(COMMAND_LINE, addin, key, None, reason, unknown=True))
    if problems:
        raise ManagerError(_one_line(AddInOptionsError.of(problems)))


def _config(root: Path, args: argparse.Namespace) -> int:
    server = find_server(root, args.name)
    assignments = dict(args.assignments)
    running = _running(server)
    if not assignments:
        if running:
            options = _call(server, "GetAddInOptions", args.addin)[0]
        else:
            options = _Directory(server, apply_options=False).options(args.addin)
        _print_options(options)
        return 0
    if running:
        declared = {o["name"]: o for o in _call(server, "GetAddInOptions", args.addin)[0]}
        _unknown_keys(args.addin, list(assignments), list(declared))
        changes = {
            key: parse_cli_value(declared.get(key, {}).get("kind"), text)
            for key, text in assignments.items()
        }
        values, restart = _call(server, "SetAddInOptions", args.addin, changes)
    else:
        values, restart = _Directory(server, apply_options=False).set(args.addin, assignments)
    for key in assignments:
        if key in values:
            print(f"{key} = {toml_scalar(values[key])}")
    if not running:
        print(f"saved; {server.name} is stopped: applies when it starts")
    elif restart:
        print(f"saved; applies at the next start: {', '.join(restart)}")
    return 0
