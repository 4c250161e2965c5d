"""Steps of the User identity feature: the users add-in's accounts file, DCMTK's storescu.

The accounts file is written as an administrator would: each passcode hashed by the add-in's
own command (``python -m pacsref.shipped_addins.users hash``, the passcode on its
standard input). The modality is DCMTK's storescu, whose ``--user``/``--password``/
``--pos-response`` send a User Identity sub-item; its outcome is judged from its exit status
and the A-ASSOCIATE-RJ it prints, and the server's side from its log (``the server log says``
is tls_steps.py's step).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from behave import given, then, when
from pydicom.uid import generate_uid
from scenario_support import configured_server, running_server

from pacsref.testing.dcmtk import DcmtkResult, require_dcmtk, run_storescu
from pacsref.testing.twistd import TwistdServer
from tests.storage.dicomgen import ROOT, make_instance

HASH_COMMAND = [sys.executable, "-m", "pacsref.shipped_addins.users", "hash"]
ACCOUNTS_FILE = "user-accounts.toml"
STORESCU_TIMEOUT_S = 60.0


def _hash(passcode: str) -> str:
    # Run as an administrator would, with the installed pacsref: from the checkout's root (or
    # with it on PYTHONPATH, as child_env() puts it) python -m finds the checkout's pacsref,
    # which has no shipped_addins (addins/ becomes that package only when installed).
    done = subprocess.run(
        HASH_COMMAND,
        input=passcode + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tempfile.gettempdir(),
    )
    assert done.returncode == 0, f"the hash command failed: {done.stdout}{done.stderr}"
    return done.stdout.strip()


def _entry(username: str, passcode: str | None) -> str:
    # A username-only account says so (passcode = false): a missing passcode is an error.
    value = "false" if passcode is None else f'"{_hash(passcode)}"'
    return f'[users."{username}"]\npasscode = {value}\n\n'


def _append_account(server: TwistdServer, username: str, passcode: str | None) -> None:
    accounts = server.server_dir / ACCOUNTS_FILE
    with accounts.open("a", encoding="utf-8") as out:
        out.write(_entry(username, passcode))


def _created(context: Any) -> TwistdServer:
    server = configured_server(context)
    if not server.server_dir.exists():
        server.create()
    return server


@given('the accounts file lists "{username}" with passcode "{passcode}"')
def step_account(context: Any, username: str, passcode: str) -> None:
    """An account with a passcode, its hash from the add-in's command."""
    _append_account(_created(context), username, passcode)


@given('the accounts file lists "{username}" without passcode')
def step_account_without_passcode(context: Any, username: str) -> None:
    """An account entered with its username alone (a device that sends no passcode)."""
    _append_account(_created(context), username, None)


@given('the users option "{key}" is true')
def step_users_option(context: Any, key: str) -> None:
    """A boolean option of the users add-in, in ``addin-options/users.toml``."""
    options = _created(context).server_dir / "addin-options" / "users.toml"
    options.parent.mkdir(exist_ok=True)
    with options.open("a", encoding="utf-8") as out:
        out.write(f"{key} = true\n")


@when('the accounts file of the running server also lists "{username}" with passcode "{passcode}"')
def step_account_added(context: Any, username: str, passcode: str) -> None:
    """An edit while the server runs, saved by rename as editors do."""
    server = running_server(context)
    accounts = server.server_dir / ACCOUNTS_FILE
    edited = accounts.with_name(ACCOUNTS_FILE + ".new")
    edited.write_text(accounts.read_text() + _entry(username, passcode), encoding="utf-8")
    edited.replace(accounts)


def _image(context: Any) -> Path:
    image: Path | None = getattr(context, "user_identity_image", None)
    if image is None:
        folder = Path(tempfile.mkdtemp(prefix="pacsref-user-identity-"))
        context.add_cleanup(lambda: subprocess.run(["rm", "-rf", str(folder)], check=False))
        image = make_instance(
            folder / "ct.dcm", study_uid=generate_uid(ROOT), series_uid=generate_uid(ROOT)
        )
        context.user_identity_image = image
    return image


def _storescu(context: Any, *options: str) -> None:
    server = running_server(context)
    host, port = server.address
    context.storescu = run_storescu(
        host, port, server.ae_title, [_image(context)], options=options,
        timeout_s=STORESCU_TIMEOUT_S, storescu=require_dcmtk("storescu"),
    )  # fmt: skip


@when('DCMTK\'s storescu stores an image as user "{user}" with password "{password}"')
def step_store_as_user(context: Any, user: str, password: str) -> None:
    """Type 2, username and passcode, no positive response asked for."""
    _storescu(context, "--user", user, "--password", password)


@when(
    'DCMTK\'s storescu stores an image as user "{user}" with password "{password}", '
    "asking for a positive response"
)
def step_store_as_user_positive(context: Any, user: str, password: str) -> None:
    """Type 2 with ``--pos-response``: storescu gives up unless the AC carries the answer."""
    _storescu(context, "--user", user, "--password", password, "--pos-response")


@when('DCMTK\'s storescu stores an image as user "{user}"')
def step_store_as_username(context: Any, user: str) -> None:
    """Type 1, a username alone."""
    _storescu(context, "--user", user)


@when("DCMTK's storescu stores an image without a user identity")
def step_store_anonymous(context: Any) -> None:
    """No User Identity sub-item at all."""
    _storescu(context)


@then("DCMTK's storescu succeeds")
def step_storescu_succeeds(context: Any) -> None:
    """Exit status 0: associated and stored."""
    done: DcmtkResult = context.storescu
    assert done.ok, f"storescu exit status {done.returncode}:\n{done.output}"


@then("DCMTK's storescu is rejected with ({result:d}, {source:d}, {reason:d})")
def step_storescu_rejected(context: Any, result: int, source: int, reason: int) -> None:
    """The A-ASSOCIATE-RJ storescu printed, exactly."""
    done: DcmtkResult = context.storescu
    assert not done.ok, f"storescu succeeded:\n{done.output}"
    assert done.rejection == (result, source, reason), done.output


def _log(context: Any) -> str:
    server: TwistdServer = context.pacsref_server
    return server.log_path.read_text(encoding="utf-8", errors="replace")


@then('the server log never shows "{first}" or "{second}"')
def step_log_never_shows(context: Any, first: str, second: str) -> None:
    """Neither passcode is in the log, in any form a line could have taken."""
    log = _log(context)
    for secret in (first, second):
        assert secret not in log, f"the server log shows {secret!r}"
