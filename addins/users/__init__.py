"""Users add-in: verifies User Identity usernames and passcodes against a file (PS3.7 D.3.3.7).

A site that wants DICOM users lists them in ``<server dir>/user-accounts.toml`` (format in
:mod:`.accounts`; passcodes only as scrypt hashes, :mod:`.passcodes`, made with
``python -m pacsref.shipped_addins.users hash``). See docs/user-identity.md.

Shipped, so it is in every new server; until its accounts file exists it is not configured
and abstains (answers None) on every identity, which the core treats as if no verifier were
loaded: a server that never asked for users is not changed by it. Once the file has been
read, it decides types 1 and 2:

* type 1 (username): accepted only for an account *without* a passcode; an account with a
  passcode is never entered with its username alone;
* type 2 (username and passcode): accepted only when the account has a passcode and it
  matches; a passcode sent for an account without one is refused, because accepting it
  would hide that the file or the peer is not set up as someone believes;
* an unknown user: refused (False), which still lets a later verifier (a directory) accept;
  abstaining would let a lone user table carry any unknown username in unverified;
* types 3-5 and undefined types: None, abstaining: not a user table's kind of identity.

It fails closed. A file that exists but cannot be used (not TOML, a bad entry, unreadable)
while no good version has been read, at start or when the first file to appear is broken,
does not fail the load: the add-in loads *broken*, one error names the file, user and field
of every problem, and every type 1 and 2 identity is refused until a good version is read
(types 3-5 still abstain). Failing the load instead would stop the server from starting
(the core refuses to start without a user identity verifier that did not load), although the
fault is in data an operator may be fixing while the server runs.
A broken edit after a good version keeps the accounts read before (:mod:`.accounts`).
A relative ``accounts_file`` the add-in cannot place, because it finds no server directory
(its folder, a symbolic link or not, is not ``<server dir>/addins/users``), counts as broken
in the same way when ``require_identity`` or ``accounts_file`` shows verification was meant.

Each refusal is logged once at info (``kind="users.refused"``) with the username and the
reason, never the passcode. With ``require_identity`` it also provides ``IAssociationHook``
and rejects (1, 2, 1) every request that reaches the hooks without a verified User Identity.
The accounts file is re-read when it changes (:class:`.accounts.AccountsTable`), on the pool
thread of the verification that notices it.
"""

from __future__ import annotations

import os
from pathlib import Path

from twisted.logger import Logger
from zope.interface import alsoProvides, implementer

from pacsref.addin import (
    AddInOption,
    AssociationInfo,
    IAddin,
    IAddInOptions,
    IAssociationHook,
    IUserIdentityNegotiation,
    OptionsSchema,
    OptionValues,
    UserIdentity,
    UserIdentityType,
    nonblocking,
)
from pacsref.ul.events import REJECT_USER_IDENTITY, AssociateReject

from .accounts import AccountsTable

__all__ = ["OPTIONS", "UsersAddin", "addin"]

log = Logger(namespace="pacsref.addin.users")

ADDIN_NAME = "users"
DEFAULT_ACCOUNTS_FILE = "user-accounts.toml"


def _path_problem(value: str) -> str | None:
    if not value.strip() or "\0" in value:
        return "must be a file name or path"
    return None


# fmt: off
OPTIONS = OptionsSchema((
    AddInOption(
        "accounts_file", "str", DEFAULT_ACCOUNTS_FILE,
        "The accounts file; relative paths are relative to the server directory. A new "
        "path is read at the next association that offers a username.",
        check=_path_problem, allowed_text="a path",
    ),
    AddInOption(
        "require_identity", "bool", False,
        "Also reject (1, 2, 1) every association request without a verified User Identity: "
        "none sent, or one no verifier judged (every verifier abstained).",
        live=False,
    ),
))
# fmt: on

#: This package's folder as the server imported it: ``<server dir>/addins/users`` in a server.
_PACKAGE_DIR = Path(os.path.abspath(__file__)).parent


def _server_dir_of_package() -> Path | None:
    """``<server dir>`` when this package sits in ``<server dir>/addins/``, else None.

    Found from the path the package was imported by, made absolute but *not* resolved:
    ``<server dir>/addins/users`` may be a symbolic link to a shared copy of the add-in, and
    following it would leave the server directory. (``os.path.abspath``, not
    ``Path.resolve``, which follows links.)
    """
    candidate = _PACKAGE_DIR.parent.parent
    return candidate if (candidate / "settings.toml").is_file() else None


@implementer(IAddin, IAddInOptions, IUserIdentityNegotiation)
class UsersAddin:
    """The user table; whether it is also a hook is settled when its options first arrive.

    Args:
        server_dir: where relative ``accounts_file`` paths start; None outside a server.
    """

    name = ADDIN_NAME
    options_declaration = OPTIONS

    def __init__(self, server_dir: Path | None) -> None:
        self.server_dir = server_dir
        self.table: AccountsTable | None = None
        #: Set when verification was asked for but there is no table to do it with (a
        #: relative accounts file and no server directory): why every username is refused.
        self.unusable: str | None = None
        self._options: OptionValues | None = None
        self._required = False

    @property
    def description(self) -> str:
        """What it verifies against, and whether its accounts file is broken, as of now.

        A property, so ``pacsref addins list`` and GetAddIns show a broken file while it is
        broken. It reads the table's last state and never the file: it is asked on the
        reactor thread.
        """
        if self.table is None:
            text = "User Identity verification from a user table"
            if self.unusable is not None:
                text += f"; {self.unusable}: every username is refused"
            return text + self._required_text()
        accounts, broken, _ = self.table.state
        if accounts is None and broken is None:  # as the security add-in says it
            then = (
                "every request is rejected (require_identity)"
                if self._required
                else "identities are carried unverified"
            )
            return f"User Identity verification, inactive (no {self.table.path}): {then}"
        text = f"User Identity verification from {self.table.path}"
        if broken is not None and accounts is None:
            text += "; the accounts file is broken: every username is refused until it is fixed"
        elif broken is not None and accounts is not None:
            text += (
                "; the accounts file's latest version is broken: "
                f"using the {len(accounts)} account(s) read before"
            )
        return text + self._required_text()

    def _required_text(self) -> str:
        return "; requests without a verified User Identity are rejected" if self._required else ""

    def presentation_contexts(self) -> tuple[()]:
        """None: user identity belongs to the association, not to a SOP class."""
        return ()

    # -- IAddInOptions ------------------------------------------------------------------------

    def options_changed(self, new_options: OptionValues) -> None:
        """At load: read the accounts file (never failing the load); later: only note a path.

        The load happens before the reactor runs, so reading there blocks nobody. A file that
        cannot be used leaves the table broken, refusing every username: raising instead
        would fail the load, and the server refuses to start without a user identity
        verifier that did not load. A mistake in the options still does that. A later
        change arrives on the reactor thread, where nothing may block, so a new
        ``accounts_file`` is only recorded and read by the next verification;
        ``require_identity`` decides whether the server routes association hooks to this
        add-in, which it settles once, so it waits for the next start (``live=False``).
        Without a server directory (:meth:`_no_server_dir`) there is no table to retarget,
        and a new ``accounts_file`` waits for the next start as well.
        """
        first = self._options is None
        if first:
            self._start(new_options)
        elif self.table is not None:
            path = self._accounts_path(str(new_options["accounts_file"]))
            if path is None:
                raise ValueError("a relative accounts_file needs a server directory")
            self.table.retarget(path)
        self._options = new_options

    def _start(self, options: OptionValues) -> None:
        self._required = bool(options["require_identity"])
        if self._required:
            # First, and whatever follows: neither a broken table nor a missing server
            # directory may loosen it.
            alsoProvides(self, IAssociationHook)
        path = self._accounts_path(str(options["accounts_file"]))
        if path is None:
            self._no_server_dir(options)
            return
        self.table = AccountsTable(path)
        if not self.table.load_at_start():
            self._no_accounts(self.table.path, options, self._required)

    def _no_server_dir(self, options: OptionValues) -> None:
        """No server directory to find a relative accounts file in: fail closed if meant.

        Loaded from the shipped folder itself (a check, a test) with the default options,
        there is nothing to verify and it abstains. With ``require_identity`` on or an
        ``accounts_file`` given, someone meant usernames to be checked: the table is taken
        as broken (every type 1 and 2 refused, and with ``require_identity`` the hook
        rejects the rest), and an error says why; the file is not looked for relative to
        the working directory, which is nobody's choice.
        """
        meant = self._required or options["accounts_file"] != DEFAULT_ACCOUNTS_FILE
        if not meant:
            log.info("users: not in a server directory; this add-in abstains")
            return
        self.unusable = (
            f"no server directory to find the accounts file {options['accounts_file']!r} in"
        )
        log.error(
            "users: {package} is not in <server dir>/addins/ ({missing} missing) and the "
            "accounts file {accounts_file!r} is a relative path: every username (User "
            "Identity types 1 and 2) is refused{required}; give an absolute accounts_file, "
            "or install the add-in in the server's addins/ folder",
            package=str(_PACKAGE_DIR),
            missing=str(_PACKAGE_DIR.parent.parent / "settings.toml"),
            accounts_file=str(options["accounts_file"]),
            required=(
                ", and every request without a verified User Identity rejected"
                if self._required
                else ""
            ),
            kind="users.accounts-broken",
        )

    @staticmethod
    def _no_accounts(path: Path, options: OptionValues, required: bool) -> None:
        """Say, once, that the table is not configured: a warning only if someone meant it to be.

        The add-in ships in every server, most of which never have users; for them a missing
        file is the normal state, and a warning at every start (and every ``pacsref addins``
        command) would teach operators to ignore warnings.
        """
        meant = required or options["accounts_file"] != DEFAULT_ACCOUNTS_FILE
        consequence = (
            "every association is rejected (require_identity) until it exists"
            if required
            else "this add-in abstains, leaving User Identity unverified, until it exists"
        )
        (log.warn if meant else log.info)(
            "users: no accounts file {path}; {consequence}",
            path=str(path),
            consequence=consequence,
            kind="users.no-accounts",
        )

    def _accounts_path(self, value: str) -> Path | None:
        """``value`` resolved against the server directory; None when there is none."""
        path = Path(value).expanduser()
        if path.is_absolute():
            return path
        return None if self.server_dir is None else self.server_dir / path

    # -- IUserIdentityNegotiation -------------------------------------------------------------

    def verify_user_identity(self, info: AssociationInfo, identity: UserIdentity) -> bool | None:
        """True or False for a username (type 1) or username and passcode (type 2); None
        (abstain) for other types and while there is no accounts file. While the file is
        broken and no good version has been read, False for every type 1 and 2: fail closed.

        Runs on the thread pool: it may re-read the accounts file, and a passcode check
        costs tens of milliseconds of CPU by design (:mod:`.passcodes`).
        """
        if identity.identity_type == UserIdentityType.USERNAME:
            passcode = None
        elif identity.identity_type == UserIdentityType.USERNAME_AND_PASSCODE:
            passcode = identity.secondary_field
        else:
            return None
        username = identity.username or ""
        if self.table is None:
            if self.unusable is None:
                return None  # outside a server directory, and nothing meant to be verified
            return self._refused(info, username, self.unusable)
        accounts, broken, dummy = self.table.refresh()
        if accounts is None:
            if broken is None:
                return None  # not configured: no accounts file yet
            return self._refused(
                info, username, f"the accounts file {self.table.path} cannot be used"
            )
        if username not in accounts:
            if passcode is not None:
                dummy.verify(passcode)  # as long as a wrong passcode: accounts.dummy_hash
            return self._refused(info, username, "no such account")
        stored = accounts[username]
        if passcode is None:
            if stored is None:
                return True
            return self._refused(info, username, "the account has a passcode, none was sent")
        if stored is None:
            dummy.verify(passcode)
            return self._refused(info, username, "a passcode was sent for an account without one")
        if stored.verify(passcode):
            return True
        return self._refused(info, username, "wrong passcode")

    @staticmethod
    def _refused(info: AssociationInfo, username: str, reason: str) -> bool:
        log.info(
            "users: refused user {username!r} from {calling} in association {id}: {reason}",
            username=username,
            reason=reason,
            calling=info.calling_ae,
            id=info.association_id,
            kind="users.refused",
        )
        return False

    # -- IAssociationHook (only with require_identity) ----------------------------------------

    @nonblocking
    def association_requested(self, info: AssociationInfo) -> AssociateReject | None:
        """Reject (1, 2, 1) a request that reaches the hooks without a verified User Identity.

        A refused identity never gets here (the core rejects it first); an accepted one has
        ``user_verified``. What is left: no identity sent, or one every verifier abstained
        on (a Kerberos ticket nobody checks, or this table not configured yet), which
        proves as little as none. Nonblocking: it only reads two fields of ``info``.
        """
        if info.user_verified:
            return None
        identity = info.user_identity
        reason = (
            "no User Identity sent"
            if identity is None
            else f"{identity.describe()} not verified: every verifier abstained"
        )
        log.info(
            "users: refused a request from {calling} in association {id}: {reason} "
            "(require_identity)",
            username=None if identity is None else identity.username,
            reason=reason,
            calling=info.calling_ae,
            id=info.association_id,
            kind="users.refused",
        )
        return REJECT_USER_IDENTITY

    @nonblocking
    def association_established(self, info: AssociationInfo) -> None:
        """Nothing to observe."""

    @nonblocking
    def association_released(self, info: AssociationInfo) -> None:
        """Nothing to observe."""

    @nonblocking
    def association_aborted(self, info: AssociationInfo) -> None:
        """Nothing to observe."""


#: The instance the loader picks up.
addin = UsersAddin(_server_dir_of_package())
