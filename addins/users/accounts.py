"""The accounts file of the users add-in, and the table that follows its edits.

The file (default ``<server dir>/user-accounts.toml``; until it exists the add-in abstains)::

    [users.alice]                               # a passcode (type 2), hashed by
    passcode = "scrypt$8192$8$1$<salt>$<hash>"  # python -m pacsref.shipped_addins.users hash

    [users."ct-room-1"]                         # no passcode: a username alone (type 1)
    passcode = false

Every account says which it is: ``passcode`` is a hash string, or ``false`` for an account
entered with its username alone. An account with no ``passcode`` key is a problem, not a
username-only account: a file read while it is being written (``[users."ct-room-1"]`` on
disk, its passcode line not yet) must not let ct-room-1 in by username alone. ``false`` in
the one key, rather than a second key such as ``username_only = true``, keeps every account
to exactly one line that can be neither missing nor contradicted by another. Even so, write
the file under a temporary name and rename it over the old one (as many editors save): a
reader then sees the old version or the new, never half of one.

Every problem is reported at once, each naming the file, the user and the field, as
``settings.toml`` problems are. No message quotes a passcode value: a value that is not a
hash may be a passcode someone wrote in plain text.

:class:`AccountsTable` re-reads the file when it changes, so edits apply without a restart.
What a file that cannot be used (not TOML, a bad entry, unreadable) does depends on what
was read before, and always fails closed, never open:

* no good version read yet (broken at start, or the first file to appear is broken): the
  table is *broken* and every username is refused until a good version is read. Someone
  wrote the file to turn verification on; abstaining instead would carry every identity in
  unverified and leave ``require_identity`` unenforced, the opposite of what they asked;
* a good version read before: its accounts stay in use. A broken edit must neither lock
  everyone out nor let everyone in, and the accounts last read are what the site meant;
* the file missing: never read, the table is not configured and abstains (most servers
  never have users); deleted after a good or a broken version, the state stays as it was,
  so deleting the file while the server runs never loosens anything.

The error is logged once per broken version of the file, not at every association.
"""

from __future__ import annotations

import json
import os
import re
import threading
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from twisted.logger import Logger

from .passcodes import (
    DEFAULT_N,
    DEFAULT_P,
    DEFAULT_R,
    KEY_BYTES,
    SALT_BYTES,
    PasscodeHash,
    parse_hash,
)

__all__ = [
    "Accounts",
    "AccountsFileError",
    "AccountsTable",
    "TableState",
    "dummy_hash",
    "parse_accounts",
    "read_accounts",
]

log = Logger(namespace="pacsref.addin.users")

#: Username -> its passcode hash, or None for an account entered with a username alone
#: (``passcode = false``).
Accounts = Mapping[str, PasscodeHash | None]

HASH_COMMAND = "python -m pacsref.shipped_addins.users hash"
_GIVE_PASSCODE = (
    f'give passcode = "scrypt$..." (from `{HASH_COMMAND}`), '
    "or passcode = false for a username-only account"
)
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

#: What identifies one version of the file: device, inode, mtime, ctime and size. The inode
#: is there because editors that save by rename can leave mtime and size as they were; the
#: ctime because ``chmod``, the fix for an unreadable file, changes nothing else.
Signature = tuple[int, int, int, int, int]


class AccountsFileError(ValueError):
    """The accounts file cannot be used; ``str()`` lists every problem, one a line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


def _key(name: str) -> str:
    """``name`` as TOML writes it in a dotted key: bare when it may be, else quoted."""
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _entry(source: str, name: str, entry: object, problems: list[str]) -> PasscodeHash | None:
    where = f"{source}: users.{_key(name)}"
    if not isinstance(entry, dict):
        # The value is not shown: `alice = "secret"` would put a passcode in the log.
        problems.append(f"{where}: must be a table ([users.{_key(name)}]), not a {_toml(entry)}")
        return None
    if not name:
        problems.append(f"{where}: a username must not be empty")
    for key in entry:
        if key != "passcode":
            problems.append(f"{where}.{_key(key)}: unknown key; an account has only passcode")
    if "passcode" not in entry:
        # Never "no passcode": that may be a file read before its passcode line was written.
        problems.append(f"{where}.passcode: missing; {_GIVE_PASSCODE}")
        return None
    passcode = entry["passcode"]
    if passcode is False:
        return None
    if not isinstance(passcode, str):
        kind = "true" if passcode is True else f"a {_toml(passcode)}"
        problems.append(f"{where}.passcode: must be a quoted hash string or false, not {kind}")
        return None
    try:
        return parse_hash(passcode)
    except ValueError as exc:
        problems.append(
            f"{where}.passcode: not a passcode hash ({exc}); make one with `{HASH_COMMAND}`"
        )
        return None


def _toml(value: object) -> str:
    """The TOML kind of ``value``, for messages that must not quote it."""
    kinds = {str: "string", bool: "boolean", int: "integer", float: "float", list: "array"}
    return kinds.get(type(value), type(value).__name__)


def parse_accounts(text: str, source: str) -> Accounts:
    """The accounts ``text`` holds; ``source`` names the file in problems.

    Raises:
        AccountsFileError: every problem found.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AccountsFileError([f"{source}: cannot be read as TOML: {exc}"]) from None
    problems = [
        f"{source}: {_key(key)}: unknown key; the file holds only [users.NAME] tables"
        for key in document
        if key != "users"
    ]
    users = document.get("users", {})
    if not isinstance(users, dict):
        problems.append(f"{source}: users: must be a table of [users.NAME] tables")
        users = {}
    accounts = {name: _entry(source, name, entry, problems) for name, entry in users.items()}
    if problems:
        raise AccountsFileError(problems)
    return MappingProxyType(accounts)


#: The dummy while the table has no hash to take the parameters of (see :func:`dummy_hash`).
DEFAULT_DUMMY = PasscodeHash(
    DEFAULT_N, DEFAULT_R, DEFAULT_P, salt=bytes(SALT_BYTES), key=bytes(KEY_BYTES)
)


def dummy_hash(accounts: Accounts) -> PasscodeHash:
    """What to check a passcode against when no account's hash is to be checked.

    A refusal of an unknown user (or of a passcode sent to an account without one) checks
    it all the same, so that it takes as long as a wrong passcode and the time of an answer
    does not tell which usernames exist. It therefore takes the parameters of the most
    expensive hash in ``accounts`` (most work, N * r * p, then most memory), not the current
    defaults: accounts hashed before the defaults were raised, or by hand with other
    parameters, would otherwise answer at another speed than an unknown name. The defaults
    when there is no hash. Salt and key are all zeros: no passcode derives an all-zero key
    (short of a 2**-256 chance), and building the dummy costs nothing.
    """
    hashes = [stored for stored in accounts.values() if stored is not None]
    if not hashes:
        return DEFAULT_DUMMY
    top = max(hashes, key=lambda h: (h.n * h.r * h.p, h.n * h.r))
    return PasscodeHash(top.n, top.r, top.p, salt=bytes(len(top.salt)), key=bytes(len(top.key)))


def read_accounts(path: Path) -> tuple[Accounts, Signature]:
    """Parse the file at ``path``, with the signature of the version read (blocking I/O).

    Raises:
        FileNotFoundError: there is no such file.
        AccountsFileError: it cannot be read or has problems.
    """
    try:
        with open(path, "rb") as file:
            # The signature of the open file, not a second stat: it must describe what was read.
            signature = _signature(os.fstat(file.fileno()))
            data = file.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise AccountsFileError([f"{path}: cannot be read: {exc.strerror or exc}"]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AccountsFileError([f"{path}: is not UTF-8 text: {exc.reason}"]) from None
    return parse_accounts(text, str(path)), signature


def _signature(stat: os.stat_result) -> Signature:
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)


class TableState(NamedTuple):
    """What an :class:`AccountsTable` knows, replaced whole so a reader needs no lock.

    ========================  =================  ==========================================
    ``accounts``              ``broken``         meaning
    ========================  =================  ==========================================
    None                      None               not configured: no file yet; abstain
    None                      why                broken: no good version yet; refuse all
    the accounts              None               configured: judge with them
    the accounts              why                the latest version cannot be used (or is
                                                 gone): judge with the accounts read before
    ========================  =================  ==========================================
    """

    #: The accounts of the last version read without problems; None until one has been.
    accounts: Accounts | None
    #: Why the file's latest version cannot be used, every problem on one line; None when
    #: it could, or when no file has been seen yet.
    broken: str | None
    #: The dummy hash for ``accounts`` (:func:`dummy_hash`), made once per version read.
    dummy: PasscodeHash = DEFAULT_DUMMY


_UNCONFIGURED = TableState(None, None)


class AccountsTable:
    """The accounts of one file, re-read whenever its signature changes.

    Thread-safe: verifications on several pool threads call :meth:`refresh` at once, and
    the reactor thread may :meth:`retarget` it (and read :attr:`state`) meanwhile.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._state = _UNCONFIGURED
        self._signature: Signature | None = None
        #: The path and version that last failed to read, so it is read and reported once.
        self._failed: tuple[Path, Signature | None] | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> TableState:
        """The state as last read, without looking at the file (so it never blocks)."""
        return self._state

    @property
    def broken(self) -> str | None:
        """Why the file's latest version cannot be used, or None (see :class:`TableState`)."""
        return self._state.broken

    def load_at_start(self) -> bool:
        """The first read; False when there is no file (the table stays unconfigured).

        A file that cannot be used does not raise: the table is broken, refuses everyone
        (:class:`TableState`), and one error names the file, the user and the field of each
        problem. Raising would fail the add-in's load, and a server that starts without its
        verifier carries every identity unverified: failing open.
        """
        with self._lock:
            try:
                signature: Signature | None = _signature(os.stat(self.path))
            except OSError:
                signature = None
            try:
                accounts, self._signature = read_accounts(self.path)
            except FileNotFoundError:
                self._failed = (self.path, None)
                return False
            except AccountsFileError as exc:
                self._failed = (self.path, signature)
                self._broken(_one_line(exc))
                return True
            self._state = TableState(accounts, None, dummy_hash(accounts))
        log.info("users: {count} account(s) from {path}", count=len(accounts), path=str(self.path))
        return True

    def retarget(self, path: Path) -> None:
        """Read ``path`` from now on; the accounts in use stay until it has been read."""
        with self._lock:
            if path != self.path:
                self.path = path
                self._signature = None

    def refresh(self) -> TableState:
        """The state, first re-reading the file if it changed (blocking: a stat, maybe a read)."""
        with self._lock:
            try:
                signature: Signature | None = _signature(os.stat(self.path))
            except OSError:
                signature = None
            changed = signature is None or signature != self._signature
            if changed and (self.path, signature) != self._failed:
                self._reload(signature)
            return self._state

    def current(self) -> Accounts | None:
        """The accounts, first re-read if the file changed (blocking: a stat, maybe a read).

        None while no version of the file has been read without problems: the table is not
        configured, or broken (:attr:`broken`).
        """
        return self.refresh().accounts

    def _reload(self, signature: Signature | None) -> None:
        """Take the file's new version, or keep the state in use and say why.

        Called once per version of the file (``refresh`` skips a version that failed), so
        a broken edit is reported once, not at every association.
        """
        try:
            accounts, read = read_accounts(self.path)
        except (OSError, AccountsFileError) as exc:
            self._failed = (self.path, signature)
            missing = isinstance(exc, FileNotFoundError)
            why = f"{self.path}: no such file" if missing else _one_line(exc)
            if self._state.accounts is not None:
                self._state = self._state._replace(broken=why)
                self._not_reloaded(
                    f"keeping the {len(self._state.accounts)} account(s) read before", why
                )
            elif missing and self._state.broken is None:
                # Not configured, and still no file (a new accounts_file that does not exist).
                self._not_reloaded("still verifying nobody (no accounts read yet)", why)
            else:
                self._broken(why)
            return
        self._signature, self._failed = read, None
        self._state = TableState(accounts, None, dummy_hash(accounts))
        log.info(
            "users: reloaded {count} account(s) from {path}",
            count=len(accounts),
            path=str(self.path),
            kind="users.reloaded",
        )

    def _not_reloaded(self, kept: str, why: str) -> None:
        log.error(
            "users: accounts file not reloaded, {kept}: {why}",
            kept=kept,
            why=why,
            path=str(self.path),
            kind="users.reload-failed",
        )

    def _broken(self, why: str) -> None:
        """Enter (or stay in) the broken state, and say so once for this version."""
        self._state = TableState(None, why)
        log.error(
            "users: the accounts file {path} cannot be used and no good version has been "
            "read: every username (User Identity types 1 and 2) is refused until it is "
            "fixed: {why}",
            why=why,
            path=str(self.path),
            kind="users.accounts-broken",
        )


def _one_line(exc: Exception) -> str:
    """Every problem of ``exc`` on one log line."""
    return str(exc).replace("\n", "; ")
