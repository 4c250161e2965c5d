"""A harness server with the shipped users add-in (``addins/users/``) set up.

``ServerHarness`` copies every shipped add-in into the new server, so the add-in under test
is the real package, imported from the server's ``addins/`` folder as the server imports it.
The option and accounts files are written into the server directory before the harness
creates the rest of it (``create_server`` accepts a directory without ``settings.toml``).
"""

from __future__ import annotations

import os
import shutil
import sys
import types
from pathlib import Path
from typing import Any
from unittest import mock

from addins.users.passcodes import hash_passcode
from pacsref.addin import AssociationInfo
from pacsref.server.create import shipped_addins_dir
from pacsref.testing import harness as harness_module
from pacsref.testing.harness import ServerHarness
from pacsref.ul.events import UserIdentity
from tests.server.helpers import association_answer as answer  # noqa: F401  (re-exported)


def cheap_hash(passcode: bytes) -> str:
    """A valid hash at the lowest cost the format allows, so tests stay fast."""
    return hash_passcode(passcode, n=16, r=1, p=1)


#: alice and "dr smith" have passcodes; "ct-room-1" enters with a username alone.
ACCOUNTS = f"""
[users.alice]
passcode = "{cheap_hash(b"secret")}"

[users."dr smith"]
passcode = "{cheap_hash("päss".encode())}"

[users."ct-room-1"]
passcode = false
"""

#: A second verifier after the users add-in (load order is file order), standing for a
#: directory: records what it is asked, accepts the username "ldap-user" and the JSON Web
#: Token "ok", and abstains on everything else.
RECORDER = """
from zope.interface import implementer
from pacsref.addin import IAddin, IUserIdentityNegotiation, nonblocking

asked = []

@implementer(IAddin, IUserIdentityNegotiation)
class Recorder:
    name = "recorder"
    description = "records the identities it is asked about"
    def presentation_contexts(self):
        return ()
    @nonblocking
    def verify_user_identity(self, info, identity):
        asked.append((identity.identity_type, identity.username))
        if identity.username == "ldap-user" or identity.primary_field == b"ok":
            return True
        return None

recorder = Recorder()
"""


def options_text(**options: object) -> str:
    """``addin-options/users.toml`` holding ``options`` (TOML scalars)."""
    lines = []
    for key, value in options.items():
        text = ("true" if value else "false") if isinstance(value, bool) else f'"{value}"'
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def users_server(
    tmp_path: Path,
    accounts: str | None = ACCOUNTS,
    *,
    options: dict[str, object] | None = None,
    extra_addins: dict[str, str] | None = None,
    extra_files: dict[str, str] | None = None,
    linked: bool = False,
) -> ServerHarness:
    """A harness server with the shipped add-ins, the users add-in among them.

    ``accounts`` is the text of ``user-accounts.toml``; None leaves the file out (the
    add-in is then not configured). ``options`` go to ``addin-options/users.toml`` (None:
    no such file, every option at its default). ``extra_files`` maps paths relative to the
    server directory to their text. ``linked``: once the server is created, its
    ``addins/users`` is replaced by a symbolic link to the shipped folder (a site sharing
    one copy of the add-in), before the server loads it.
    """
    server_dir = tmp_path / "PACSREF"
    server_dir.mkdir()
    for name, text in (extra_files or {}).items():
        (server_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (server_dir / name).write_text(text)
    if options is not None:
        (server_dir / "addin-options").mkdir()
        (server_dir / "addin-options" / "users.toml").write_text(options_text(**options))
    if accounts is not None:
        (server_dir / "user-accounts.toml").write_text(accounts)
    settings = {"addin_timeout": 5.0}
    if not linked:
        return ServerHarness(server_dir, settings=settings, extra_addins=extra_addins)
    real_create = harness_module.create_server

    def create_then_link(directory: Path, values: Any) -> None:
        real_create(directory, values)
        copy = directory / "addins" / "users"
        shutil.rmtree(copy)
        copy.symlink_to(shipped_addins_dir() / "users", target_is_directory=True)

    with mock.patch.object(harness_module, "create_server", create_then_link):
        return ServerHarness(server_dir, settings=settings, extra_addins=extra_addins)


def users_addin(harness: ServerHarness) -> Any:
    """The users add-in the harness server loaded."""
    [found] = [a for a in harness.server.addins if a.name == "users"]
    return found


def addin_module(harness: ServerHarness) -> types.ModuleType:
    """The module of the loaded users add-in (the server's copy, not the shipped one)."""
    return sys.modules[type(users_addin(harness)).__module__]


def info(identity: UserIdentity | None = None) -> AssociationInfo:
    """What a verifier is told about an association, for calling it directly."""
    return AssociationInfo("MODALITY", "PACSREF", "127.0.0.1", 40000, user_identity=identity)


def rewrite(path: Path, text: str) -> None:
    """Write ``text`` and move the mtime a second on, so the change is seen without sleeping
    whatever the file system's timestamp granularity."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    later = max(before + 1_000_000_000, path.stat().st_mtime_ns)
    os.utime(path, ns=(later, later))


def of_kind(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The log events with ``kind``."""
    return [event for event in events if event.get("kind") == kind]
