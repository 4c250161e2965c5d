"""``pacsref addins list|config SERVER ...``: a server's add-ins and their options.

Works whether the server runs or not, because an operator configures a server before its
first start as often as while it serves. Running (its pidfile names a live process, or its
admin socket answers, as under systemd): everything goes over the admin socket (GetAddIns,
GetAddInOptions, SetAddInOptions), so the running add-in is told and validates the change.
Stopped: the add-ins are loaded from the server's ``addins/`` folder in this process, the
change is offered to the add-in the same way, and the options file is replaced atomically;
the server reads it when it starts.

A change (``config SERVER NAME KEY=VALUE``) holds the server's lock
(:func:`~pacsref.manager.daemon.exclusive`) from telling whether the server runs until the
file is saved or the server has answered, as ``server edit`` does: no start can slip in
between (to read a file still being judged, or to start a server whose file is then
rewritten behind it), and a second change meanwhile is refused instead of saving over the
first one's.
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
from pacsref.admin.addin_options import REQUEST_SOURCE
from pacsref.admin.client import AdminConnectionError
from pacsref.admin.messages import ServiceMessage
from pacsref.manager.daemon import (
    ManagerError,
    Server,
    call_running,
    exclusive,
    find_server,
    running,
)
from pacsref.settings import ADDINS_DIR_NAME
from pacsref.settings.tomltext import toml_scalar

__all__ = ["register"]

#: Where the values given as ``KEY=VALUE`` come from, in the problems that name them.
COMMAND_LINE = "command line"

#: What the server's lock file says a change of options is doing (as for ``server edit``).
_EDITING = "being edited"


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
            reply = _ask(server, "GetAddInOptions", addin["name"])
            if reply.success:
                _print_options(list(reply.data[0]), indent="    ")
            elif _blames_options_file(reply.error, addin["name"]):
                # Edited by hand since the start: the add-in runs on the values it read
                # then; the listing goes on, and says what the next start would refuse.
                print(f"    options file: {reply.error}")
            elif not reply.error.endswith("declares no options"):
                raise ManagerError(f"server {server.name}: GetAddInOptions failed: {reply.error}")
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


def _ask(server: Server, message: str, *data: Any) -> ServiceMessage:
    """The running server's response to ``message``, refusals included (for the caller to
    word); ManagerError when it cannot be asked at all."""
    try:
        with server.admin() as admin:
            return admin.call(message, *data)
    except (AdminConnectionError, OSError) as exc:
        raise ManagerError(f"server {server.name}: {exc}") from None


def _blames_options_file(error: str, name: str) -> bool:
    """Whether a refusal of GetAddInOptions is the add-in's options file's fault.

    Each problem the server tells starts with where it is; the options file is
    ``<server dir>/addin-options/<add-in>.toml`` (the server may name its folder by another
    path than this process does, through a symbolic link, so only the last two parts count).
    """
    source = Path(error.split(": ", 1)[0])
    return source.name == f"{name}.toml" and source.parent.name == OPTIONS_DIR_NAME


def _declared_kinds(server: Server, name: str) -> dict[str, str | None]:
    """Each option the running add-in declares, with its kind: what reading ``KEY=VALUE``
    needs.

    Asked with GetAddInOptions. That refuses to show the values while the options file holds
    a bad one (edited by hand since the start), which is just when a change is needed to
    repair it; the declarations then come from the add-in's code in the server's folder,
    which is what the server loaded, and the server still judges the values it is sent.
    """
    reply = _ask(server, "GetAddInOptions", name)
    if reply.success:
        return {option["name"]: option.get("kind") for option in reply.data[0]}
    if not _blames_options_file(reply.error, name):
        raise ManagerError(f"server {server.name}: GetAddInOptions failed: {reply.error}")
    _, file = _Directory(server, apply_options=False).file_of(name)
    return {option.name: option.kind for option in file.schema.options}


def _assignment(text: str) -> tuple[str, str]:
    """argparse type of ``KEY=VALUE``: a word without ``=`` is bad usage (exit status 2)."""
    try:
        return parse_assignment(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _unknown_keys(addin: str, keys: list[str], known: list[str]) -> None:
    """Refuse keys the running add-in does not declare, before anything is sent.

    Worded as the add-in options schema words an unknown key, blamed on the command line as
    a stopped server's ``config`` blames it (the server would name its request's field).
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


def _as_typed(error: str) -> str | None:
    """The server's refusal of the values sent, each problem blamed on the command line.

    The server blames a value sent in SetAddInOptions on the request's field
    (:data:`~pacsref.admin.addin_options.REQUEST_SOURCE`); the user typed it on the command
    line, and a stopped server's ``config`` says so for the same mistake. The rest of each
    problem (key, value, rule, add-in), and problems of the options file, stay as the server
    words them. None for a refusal that blames no value sent (an add-in that refuses the
    values, a file that cannot be saved): it is told as any other refusal of the server.
    """
    sent = f"{REQUEST_SOURCE}: "
    if not (error.startswith(sent) or f"; {sent}" in error):
        return None
    typed = error.replace(f"; {sent}", f"; {COMMAND_LINE}: ")
    return f"{COMMAND_LINE}: {typed.removeprefix(sent)}" if typed.startswith(sent) else typed


def _set_over_socket(
    server: Server, name: str, assignments: dict[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """Send the changes to the running add-in; its new values and the keys that wait for a
    restart. A bad value is refused in the words a stopped server uses (:func:`_as_typed`)."""
    kinds = _declared_kinds(server, name)
    _unknown_keys(name, list(assignments), list(kinds))
    changes = {key: parse_cli_value(kinds.get(key), text) for key, text in assignments.items()}
    reply = _ask(server, "SetAddInOptions", name, changes)
    if reply.success:
        values, restart = reply.data
        return values, restart
    typed = _as_typed(reply.error)
    if typed is not None:
        raise ManagerError(typed)
    raise ManagerError(f"server {server.name}: SetAddInOptions failed: {reply.error}")


def _config(root: Path, args: argparse.Namespace) -> int:
    server = find_server(root, args.name)
    assignments = dict(args.assignments)
    if not assignments:
        if _running(server):
            options = _call(server, "GetAddInOptions", args.addin)[0]
        else:
            options = _Directory(server, apply_options=False).options(args.addin)
        _print_options(options)
        return 0
    with exclusive(server, _EDITING):
        running = _running(server)
        if running:
            values, restart = _set_over_socket(server, args.addin, assignments)
        else:
            directory = _Directory(server, apply_options=False)
            values, restart = directory.set(args.addin, assignments)
    for key in assignments:
        if key in values:
            print(f"{key} = {toml_scalar(values[key])}")
    if not running:
        print(f"saved; {server.name} is stopped: applies when it starts")
    elif restart:
        print(f"saved; applies at the next start: {', '.join(restart)}")
    return 0
