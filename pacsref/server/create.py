"""Create a server directory with defaults and every shipped add-in.

Used by the twistd plugin's quick start (``--server-dir DIR --ae-title AE
--port P`` on a directory that does not exist yet) and by tests that need
settings other than the defaults before the server starts::

    python -m pacsref.server.create --server-dir DIR --ae-title AE --port P \
        [--ip-address IP] [--set key=value ...]

``--set`` values are read as TOML values (``30``, ``true``, ``"text"``);
anything that is not valid TOML is taken as a string.

It also states where servers live when no directory is given (:func:`server_root`:
``$PACSREF_ROOT`` if set and not empty, else ``./pacsref-data``), for the twistd plugin and
the manager alike.

Exit status as the rest of ``pacsref`` (docs/manager.md): 0 created; 1 failed
(the directory already holds a server, or the system refused: one line
``pacsref: <reason>``); 2 bad usage, an invalid setting value included (one
line ``pacsref: create: <what is wrong> (see: pacsref create --help)``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from importlib import import_module
from pathlib import Path

from pacsref.settings import SettingsError, create_server_directory, settings_from_mapping

DEFAULT_AE_TITLE = "PACSREF"
#: The environment variable naming the root, the folder that holds one directory per server.
ROOT_ENV = "PACSREF_ROOT"
#: The root when ``$PACSREF_ROOT`` is unset or empty, relative to the working directory.
FALLBACK_ROOT = Path("pacsref-data")

#: What a server name may be, completing "... cannot be used as a server name: <why>; ...".
SERVER_NAME_ALLOWED = (
    "a server name is its directory under the root: one path component, "
    "not empty, no '/', no NUL, not starting with '.', no leading or trailing spaces"
)


def server_root(environ: Mapping[str, str] | None = None) -> Path:
    """The root: ``$PACSREF_ROOT`` if set and not empty, else ``./pacsref-data``.

    The one statement of the rule, shared by the twistd plugin (where its embedded default and
    ``--ae-title AE`` without ``--server-dir`` go) and the manager (where it looks for servers),
    so a server twistd makes is one ``pacsref`` finds. It lives here, not in the manager, because
    the plugin must not import the manager package. A relative value is left relative: it means
    the working directory of the process that reads it. ``environ`` is another process's
    environment (the manager asking what a running twistd saw); by default this one's.
    """
    if environ is None:
        environ = os.environ
    return Path(environ.get(ROOT_ENV) or FALLBACK_ROOT)


def default_server_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The embedded default server's directory, ``<root>/PACSREF`` (see :func:`server_root`).

    A function, not a constant: the root is read from the environment when it is needed.
    """
    return server_root(environ) / DEFAULT_AE_TITLE


def server_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a server's directory under a root (None if it can).

    The name is joined to the root as a path, so ``..``, ``a/b`` or ``/tmp/x`` would put (or
    look for) a server outside the root, or in a subdirectory the scan of ``<root>/*`` never
    finds. AE titles may legally contain ``/`` (PS3.5, AE VR), but such a server cannot be
    given a directory named after it; a leading ``.`` is refused too, since ``.`` and ``..``
    are the root itself and its parent, and hidden entries are where editors and tools keep
    their own files. Leading and trailing spaces of an AE title are not significant (PS3.5),
    so the server added as ``' CT'`` would answer and name its admin socket as ``CT`` while its
    directory is ``' CT'``: two names for one server, and ``CT`` unknown to every command.
    """
    why = None
    if not name:
        why = "it is empty"
    elif not name.strip():
        why = "it is only spaces"
    elif name != name.strip():
        why = (
            "it begins or ends with a space (an AE title's leading and trailing spaces are "
            f"not significant, so the server would answer as {name.strip()!r})"
        )
    elif "/" in name:
        why = "it contains '/' (an AE title with '/' cannot name a server directory)"
    elif "\0" in name:
        why = "it contains a NUL character"
    elif name.startswith("."):
        why = "it starts with '.'"
    return why


def shipped_addins_dir() -> Path:
    """The folder of add-ins that ship with pacsref (top-level ``addins/``).

    Installed, it is the package ``pacsref.shipped_addins``; in a source
    checkout it is ``addins/`` beside the ``pacsref`` package.
    """
    try:
        module = import_module("pacsref.shipped_addins")
        return Path(module.__path__[0])
    except ImportError:
        return Path(__file__).resolve().parents[2] / "addins"


def shipped_addins() -> list[Path]:
    """Every shipped add-in module or package, ready to copy into a server."""
    folder = shipped_addins_dir()
    return sorted(
        path
        for path in folder.iterdir()
        if not path.name.startswith(("_", "."))
        and (path.suffix == ".py" or (path / "__init__.py").is_file())
    )


def create_server(server_dir: Path, values: Mapping[str, object]) -> None:
    """Create ``server_dir`` with settings ``values`` and all shipped add-ins.

    Raises:
        SettingsError: a value is invalid, or the directory already holds a server.
    """
    settings = settings_from_mapping(dict(values), source="command line")
    create_server_directory(server_dir, settings, shipped_addins())


def parse_assignment(text: str) -> tuple[str, object]:
    """``key=value`` with a TOML value, or the raw text when it is not TOML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"--set expects key=value, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip().replace("-", "_"), value


def _one_line(error: SettingsError) -> str:
    """A settings error's problems (one a line) on the single line a script can log."""
    return "; ".join(str(error).splitlines())


def main(argv: Sequence[str] | None = None, prog: str = "python -m pacsref.server.create") -> int:
    """Entry point of ``python -m pacsref.server.create``, and of ``pacsref create``.

    ``prog`` lets ``pacsref create --help`` and its usage errors name the command the user
    typed rather than the module behind it.
    """
    # Imported here: pacsref.manager.cli imports this module to run ``pacsref create``, and the
    # twistd plugin, which imports create_server, needs none of the manager.
    from pacsref.manager.cli import USAGE_EXIT, ManagerArgumentParser
    from pacsref.manager.daemon import os_reason

    parser = ManagerArgumentParser(
        prog=prog,
        description="Create a pacsref server directory with default settings and every "
        "shipped add-in in its addins/ folder.",
        epilog="exit status: 0 created, 1 failed, 2 bad usage (an invalid setting included)",
    )
    parser.add_argument("--server-dir", type=Path, required=True, help="directory to create")
    parser.add_argument("--ae-title", required=True, help="the server's AE title")
    parser.add_argument("--port", type=int, help="DICOM port (default 11112)")
    parser.add_argument("--ip-address", help="address to listen on (default 0.0.0.0)")
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        type=parse_assignment,
        metavar="KEY=VALUE",
        help="any other setting, e.g. --set artim_timeout=5 (repeatable)",
    )
    args = parser.parse_args(argv)
    values: dict[str, object] = {"ae_title": args.ae_title}
    if args.port is not None:
        values["port"] = args.port
    if args.ip_address is not None:
        values["ip_address"] = args.ip_address
    values.update(dict(args.assignments))
    try:
        settings = settings_from_mapping(values, source="command line")
    except SettingsError as exc:
        # A value the settings refuse is the command line's fault: bad usage, in the parser's
        # own words and status, but returned like the failures below rather than raised.
        command = prog.removeprefix("pacsref").strip()
        prefix = f"{command}: " if command else ""
        print(f"pacsref: {prefix}{_one_line(exc)} (see: {prog} --help)", file=sys.stderr)
        return USAGE_EXIT
    try:
        create_server_directory(args.server_dir, settings, shipped_addins())
    except SettingsError as exc:  # already a server, or a shipped add-in is missing
        print(f"pacsref: {_one_line(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:
        named = exc.filename and Path(exc.filename) != args.server_dir
        where = f" ({exc.filename})" if named else ""
        print(
            f"pacsref: cannot create server directory {args.server_dir}: {os_reason(exc)}{where}",
            file=sys.stderr,
        )
        return 1
    print(f"created {args.server_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
