"""AE title entries and the in-memory :class:`IAeTitles` table the persistent one builds on.

An :class:`AeInfo` validates itself on construction (as h11's events do), so a
bad title is refused where it is typed, by the admin interface or the
``aetitles.toml`` file, not when a C-MOVE later tries to connect to it. Each
broken rule raises :class:`AeFieldError`, which keeps the field, the value and
what is allowed, so the file loader can report every problem with its place.
:class:`MemoryAeTitles` adds the table rules (no duplicates, known titles for
update/remove) and caches the IP addresses each entry's host stands for;
:class:`~pacsref.addin.aetitles_file.FileAeTitles` adds persistence.

Case: titles are stored and looked up exactly as written (PS3.5 6.2 does not
fold case; DCMTK's dcmqrscp compares them with ``strcmp``, dcm4che keys them in
a ``TreeMap<String, ...>``), but two titles that differ *only* in letter case
are refused as duplicates: Orthanc matches AE titles case-insensitively by
default (``StrictAetComparison`` false), so such a pair would be ambiguous to
part of the peers on the network, and it is almost always a typing slip.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from twisted.logger import Logger
from zope.interface import implementer

from pacsref.addin.errors import AeTitleError
from pacsref.addin.interfaces import IAeTitles
from pacsref.settings.tomltext import describe_value

__all__ = ["AeFieldError", "AeInfo", "MemoryAeTitles", "normalize_ae_title", "resolve_addresses"]

_log = Logger(namespace="pacsref.aetitles")

#: PS3.5 6.2: an AE value holds at most 16 characters.
MAX_AE_TITLE_LENGTH = 16
#: RFC 1035 2.3.4 / RFC 1123 2.1: label and whole-name limits of a host name.
MAX_LABEL_LENGTH = 63
MAX_HOST_LENGTH = 253

#: What each field accepts, in the words error messages and the file header use.
FIELD_ALLOWED: Mapping[str, str] = {
    "ae_title": "1-16 printable ASCII characters without backslash, not all spaces "
    "(leading and trailing spaces are ignored)",
    "host": "an IPv4 or IPv6 address, or a host name of dot-separated labels of 1-63 "
    "letters, digits and hyphens, no hyphen first or last, 253 characters at most",
    "port": "an integer 1-65535",
    "description": "any text",
    "move_destination": "true or false",
    "secure": "true or false",
}

_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\Z")

#: Turns an entry into the IP addresses its host stands for (see :func:`resolve_addresses`).
Resolver = Callable[["AeInfo"], frozenset[str]]


class AeFieldError(AeTitleError):
    """One field of an AE entry breaks a rule; the parts stay inspectable for files and UIs.

    ``str()`` is one operator-ready line in the style of :mod:`pacsref.settings`:
    ``AE title 'CT1': port = 70000 is out of range; allowed: an integer 1-65535``.
    """

    def __init__(self, field: str, value: object, reason: str, ae_title: str | None = None):
        self.field = field
        self.value = value
        self.reason = reason
        self.allowed = FIELD_ALLOWED[field]
        self.ae_title = ae_title
        subject = "" if ae_title is None else f"AE title {ae_title!r}: "
        super().__init__(
            f"{subject}{field} = {describe_value(value)} {reason}; allowed: {self.allowed}"
        )

    def __reduce__(self) -> tuple[type[AeFieldError], tuple[str, object, str, str | None]]:
        """Pickle by parts (the default would pass the message as ``field``)."""
        return (type(self), (self.field, self.value, self.reason, self.ae_title))

    def for_title(self, ae_title: str) -> AeFieldError:
        """The same problem, naming the entry it belongs to."""
        return AeFieldError(self.field, self.value, self.reason, ae_title)


def normalize_ae_title(ae_title: object) -> str:
    """Validate an AE title and return it without its insignificant spaces.

    PS3.5 6.2 (VR AE): at most 16 characters of the default character
    repertoire (printable ASCII) without backslash, leading and trailing
    spaces not significant, a value of only spaces not allowed. The length is
    counted after removing the insignificant spaces, since only the stripped
    title is ever stored or sent. Case is kept: AE titles are case sensitive.

    Raises:
        AeFieldError: naming the value and the rule it breaks.
    """

    def bad(reason: str) -> AeFieldError:
        return AeFieldError("ae_title", ae_title, reason)

    if not isinstance(ae_title, str):
        raise bad(f"must be a string, not {type(ae_title).__name__}")
    if not ae_title:
        raise bad("must not be empty")
    stripped = ae_title.strip(" ")
    if not stripped:
        raise bad("must not consist only of spaces")
    if len(stripped) > MAX_AE_TITLE_LENGTH:
        raise bad(
            f"has {len(stripped)} significant characters, at most {MAX_AE_TITLE_LENGTH} are allowed"
        )
    if "\\" in stripped:
        raise bad("must not contain a backslash (the DICOM value separator)")
    for char in stripped:
        if not 0x20 <= ord(char) <= 0x7E:
            raise bad(
                f"contains {char!a}: only printable ASCII characters are allowed "
                "(no control characters)"
            )
    return stripped


def _check_host(value: object) -> str:
    """An IP literal or an RFC 1123 host name, stripped of surrounding whitespace.

    Checked here rather than at connect time so that a typo in the table is
    reported when it is made, not as a failed C-MOVE hours later.
    """

    def bad(reason: str) -> AeFieldError:
        return AeFieldError("host", value, reason)

    if not isinstance(value, str):
        raise bad(f"must be a string, not {type(value).__name__}")
    host = value.strip()
    if not host:
        raise bad("must not be empty")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return host
    if host.startswith("[") and host.endswith("]"):
        raise bad("is bracketed; write an IPv6 address without the brackets")
    name = host[:-1] if host.endswith(".") else host  # a trailing dot only marks a FQDN
    if len(name) > MAX_HOST_LENGTH:
        raise bad(f"has {len(name)} characters, at most {MAX_HOST_LENGTH} are allowed")
    labels = name.split(".")
    for label in labels:
        if not label:
            raise bad("has an empty label (a leading dot or two dots in a row)")
        if len(label) > MAX_LABEL_LENGTH:
            raise bad(f"has a label of {len(label)} characters, at most {MAX_LABEL_LENGTH}")
        if not _LABEL_RE.match(label):
            raise bad(f"has the label {label!a}, which is not letters, digits and inner hyphens")
    if labels[-1].isdigit():
        # RFC 1123 2.1: a top-level label is never all-numeric, so this is a mistyped IPv4.
        raise bad("is not a valid IP address, and a host name cannot end in a numeric label")
    return host


def _check_port(value: object) -> int:
    """TCP port 1-65535; ``True`` and ``"104"`` are refused rather than quietly converted."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise AeFieldError("port", value, "is not an integer")
    if not 1 <= value <= 65535:
        raise AeFieldError("port", value, "is out of range")
    return int(value)


def _check_description(value: object) -> str:
    """Free text, but writable to the UTF-8 table file (no lone surrogates)."""
    if not isinstance(value, str):
        raise AeFieldError("description", value, f"must be a string, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise AeFieldError("description", value, "cannot be written as UTF-8") from None
    return value


def _flag_check(name: str) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        if not isinstance(value, bool):
            raise AeFieldError(name, value, "is not a boolean")
        return value

    return check


#: Validator of each AeInfo field, in file order; each returns the stored value or raises.
FIELD_CHECKS: Mapping[str, Callable[[object], object]] = {
    "ae_title": normalize_ae_title,
    "host": _check_host,
    "port": _check_port,
    "description": _check_description,
    "move_destination": _flag_check("move_destination"),
    "secure": _flag_check("secure"),
}


@dataclass(frozen=True, slots=True)
class AeInfo:
    """One known peer: its AE title, where to reach it and how.

    The title is stored normalised (see :func:`normalize_ae_title`), so two
    entries that differ only by padding compare equal.

    Attributes:
        ae_title: the AE title, 1-16 significant characters.
        host: IP address or host name the peer is reached at (C-MOVE
            destinations, IDicomRequest) and, for the acceptance policy, the
            address it must connect from (see :func:`resolve_addresses`).
        port: TCP port of the peer's DICOM listener, 1-65535.
        description: free text for the operator.
        move_destination: C-MOVE may send to this peer. Default true, since
            most registered peers (workstations, archives) listen; set it false
            for an SCU-only modality so that a C-MOVE naming it is refused
            instead of trying to connect (or leaking data) to it.
        secure: connect to the peer with DICOM TLS (PS3.15 B.1). Default false,
            because TLS needs certificates set up on both sides.
    """

    ae_title: str
    host: str
    port: int
    description: str = ""
    move_destination: bool = True
    secure: bool = False

    def __post_init__(self) -> None:
        title = normalize_ae_title(self.ae_title)
        object.__setattr__(self, "ae_title", title)
        for name, check in FIELD_CHECKS.items():
            if name == "ae_title":
                continue
            try:
                value = check(getattr(self, name))
            except AeFieldError as exc:
                raise exc.for_title(title) from None
            object.__setattr__(self, name, value)


def resolve_addresses(info: AeInfo) -> frozenset[str]:
    """The IP addresses ``info.host`` stands for: an IP literal itself, a host name via DNS.

    Tables call this when an entry is loaded, added or updated and keep the
    result (:meth:`MemoryAeTitles.addresses`), so that checking a calling AE's
    address costs no DNS query per association. A name that does not resolve
    yields an empty set and a logged warning instead of an error: the entry is
    kept (the name may resolve after a refresh), but nobody is recognised as
    connecting from it. Literals are returned in ``ipaddress`` canonical form.
    """
    try:
        return frozenset({str(ipaddress.ip_address(info.host))})
    except ValueError:
        pass
    try:
        results = socket.getaddrinfo(info.host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        _log.warn(
            "AE title {ae_title!r}: host {host!r} does not resolve ({error}); "
            "associations from it will not be recognised until it does",
            ae_title=info.ae_title,
            host=info.host,
            error=exc,
        )
        return frozenset()
    return frozenset(str(sockaddr[0]) for *_, sockaddr in results)


#: A table version: title -> (entry, its resolved addresses), in table order. Never
#: changed in place, only replaced whole, so readers need no lock.
_Table = dict[str, tuple["AeInfo", frozenset[str]]]


def _refuse_duplicate(table: _Table, title: str, old: str | None = None) -> None:
    """Refuse ``title`` when another entry (not ``old``) has it, ignoring letter case."""
    folded = title.upper()
    for key in table:
        if key == old or key.upper() != folded:
            continue
        prefix = "" if old is None else f"cannot rename AE title {old!r} to {title!r}: "
        if key == title:
            raise AeTitleError(f"{prefix}AE title {title!r} already exists")
        raise AeTitleError(
            f"{prefix}AE title {title!r} already exists as {key!r} (titles differing only "
            "in letter case are refused: many peers compare AE titles case-insensitively)"
        )


@implementer(IAeTitles)
class MemoryAeTitles:
    """The AE title table held in memory: the rules, the lock and the address cache.

    Add-in handlers (worker threads) and the admin interface (reactor thread)
    use the table concurrently. Writers serialise on a lock; readers take none:
    every change builds a new table and swaps it in, so ``get`` (asked on every
    association) never waits for a writer's DNS lookup or fsync. Entries keep
    their insertion order, which is the order GetAeTitles shows.

    Subclasses hook persistence into :meth:`_writable_table` (catch up with the
    store before a change) and :meth:`_commit` (store the change first).
    """

    def __init__(self, entries: Iterable[AeInfo] = (), resolver: Resolver = resolve_addresses):
        self._lock = threading.Lock()
        self._resolver = resolver
        self._table: _Table = {}
        for info in entries:
            self.add(info)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} with {len(self._table)} entries>"

    def list(self) -> tuple[AeInfo, ...]:
        """Every entry, as a snapshot tuple."""
        return tuple(info for info, _ in self._table.values())

    def get(self, ae_title: str) -> AeInfo | None:
        """The entry for ``ae_title`` (spaces insignificant), or None if unknown or invalid."""
        found = self._lookup(ae_title)
        return None if found is None else found[0]

    def addresses(self, ae_title: str) -> frozenset[str] | None:
        """Cached IP addresses of entry ``ae_title`` (empty if its host did not resolve).

        None when the title is unknown. The acceptance policy compares the
        connecting peer's IP against this set.
        """
        found = self._lookup(ae_title)
        return None if found is None else found[1]

    def host_addresses(self, host: str) -> frozenset[str] | None:
        """Cached addresses of ``host`` (case-insensitive), None when no entry names it.

        The same cache keyed by host, the shape of
        ``pacsref.association.policy.PolicyView.host_addresses``.
        """
        key = host.strip().lower()
        for info, addresses in self._table.values():
            if info.host.lower() == key:
                return addresses
        return None

    def add(self, info: AeInfo) -> AeInfo:
        """Add ``info``; raise :class:`AeTitleError` if its title is already present."""
        info = _check_info(info)
        addresses = self._resolver(info)  # outside the lock: DNS may be slow
        with self._lock:
            table = self._writable_table()
            _refuse_duplicate(table, info.ae_title)
            self._commit({**table, info.ae_title: (info, addresses)})
        return info

    def update(self, old_ae_title: str, info: AeInfo) -> AeInfo:
        """Replace entry ``old_ae_title`` by ``info``, keeping its position in the table."""
        info = _check_info(info)
        old = normalize_ae_title(old_ae_title)
        addresses = self._resolver(info)
        with self._lock:
            table = self._writable_table()
            if old not in table:
                raise AeTitleError(f"AE title {old!r} does not exist")
            _refuse_duplicate(table, info.ae_title, old)
            new = (info, addresses)
            items = ((info.ae_title, new) if k == old else (k, v) for k, v in table.items())
            self._commit(dict(items))
        return info

    def remove(self, ae_title: str) -> AeInfo:
        """Remove and return the entry ``ae_title``; raise :class:`AeTitleError` if unknown."""
        key = normalize_ae_title(ae_title)
        with self._lock:
            table = self._writable_table()
            if key not in table:
                raise AeTitleError(f"AE title {key!r} does not exist")
            self._commit({k: v for k, v in table.items() if k != key})
        return table[key][0]

    def refresh_addresses(self) -> None:
        """Resolve every host again (DNS changes, a name that now resolves); entries unchanged."""
        before = self._table
        fresh = {key: (info, self._resolver(info)) for key, (info, _) in before.items()}
        with self._lock:  # an entry changed meanwhile was resolved by that change: keep it
            self._table = {
                key: fresh[key] if key in fresh and fresh[key][0] == value[0] else value
                for key, value in self._table.items()
            }

    def _lookup(self, ae_title: str) -> tuple[AeInfo, frozenset[str]] | None:
        try:
            key = normalize_ae_title(ae_title)
        except AeTitleError:
            return None
        return self._table.get(key)

    def _writable_table(self) -> _Table:
        """The table a change applies to; called with the lock held."""
        return self._table

    def _commit(self, table: _Table) -> None:
        """Make ``table`` current; called with the lock held. Raising leaves things as they were."""
        self._table = table


def _check_info(info: object) -> AeInfo:
    # The admin interface decodes JSON into AeInfo; anything else reaching the
    # table is a programming error, but still one the operator should read.
    if not isinstance(info, AeInfo):
        raise AeTitleError(f"expected an AeInfo, not {type(info).__name__}")
    return info
