"""The fields of a server's settings: defaults, rules and the words used to explain them.

Each field is described once, by a :class:`FieldSpec`: its rule (a check that returns the
normalised value or says what is wrong), the sentence telling a human what is allowed, and the
comment written above it in ``settings.toml``. Validation, error messages and the commented file
are all driven from :data:`FIELD_SPECS`, so they cannot drift apart. The fields mirror the
"Add New Server" dialog of the PACS framework guide (Settings and Advanced tabs).
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# The announced Max PDU Length default lives with negotiation (AcceptorConfig uses it too); see
# the reasoning for 131072 there. settings depends on association, never the reverse. The
# "as" form re-exports it explicitly (pacsref.settings.model and pacsref.settings import it here).
from pacsref.association.negotiation import DEFAULT_MAX_PDU_LENGTH as DEFAULT_MAX_PDU_LENGTH
from pacsref.settings.errors import MISSING, SettingsProblem


class StartMode(enum.StrEnum):
    """How the server is started; the framework guide's service start modes.

    ``automatic``: started when the host starts; ``manual``: started on request; ``disabled``:
    refuses to start. A :class:`~enum.StrEnum` so the TOML spelling is the value itself.
    """

    AUTOMATIC = "automatic"
    MANUAL = "manual"
    DISABLED = "disabled"


# Defaults (see docs/CONTRACTS.md for the identity values).
DEFAULT_IMPLEMENTATION_CLASS_UID = "2.25.301404248454960653866452990530993571449"
DEFAULT_DESCRIPTION = ""
DEFAULT_IMPLEMENTATION_VERSION_NAME = "PACSREF_010"
DEFAULT_IP_ADDRESS = "0.0.0.0"
DEFAULT_TEMPORARY_DIRECTORY = ""  # "" means <server dir>/tmp
DEFAULT_PORT = 11112
DEFAULT_MAX_CLIENTS = 100
DEFAULT_SERVER_SECURE = False
DEFAULT_ALLOW_ANONYMOUS = True
DEFAULT_ENABLE_SERVICE_LOG = False
DEFAULT_MULTIPLE_CONNECTIONS = True
DEFAULT_CHECK_CALLED_AE_TITLE = True
DEFAULT_SERVICE_DISPLAY_NAME = ""  # "" means "Dicom Server [<AE>]"
DEFAULT_CLIENT_TIMEOUT = 300.0
DEFAULT_RECONNECT_TIMEOUT = 30.0
DEFAULT_ADDIN_TIMEOUT = 60.0
DEFAULT_ARTIM_TIMEOUT = 30.0
DEFAULT_STOP_TIMEOUT = 10.0
DEFAULT_NO_DELAY = True
# 0 = leave SO_RCVBUF/SO_SNDBUF to the operating system. The seed's 29696 (a Windows Sockets
# figure) is still accepted, but on Linux setting either option switches off the kernel's buffer
# autotuning and caps the TCP window: storing 400 x 512 KiB over loopback took 1.58 s with
# 29696 and 1.18 s with large buffers (bench/README.md, "Socket buffers").
DEFAULT_RECEIVE_BUFFER = 0
DEFAULT_SEND_BUFFER = 0
DEFAULT_START_MODE = StartMode.MANUAL
DEFAULT_COPY_DATASET_IMAGE = False

# Limits.
MAX_AE_TITLE_LENGTH = 16
MAX_UID_LENGTH = 64
MAX_VERSION_NAME_LENGTH = 16
MIN_MAX_PDU_LENGTH = 4096
MAX_MAX_PDU_LENGTH = 2**32 - 1  # PS3.8: the Maximum Length sub-item is a 32-bit unsigned value
MIN_SOCKET_BUFFER = 1024
MAX_SOCKET_BUFFER = 16 * 1024 * 1024
MAX_MAX_CLIENTS = 100_000
# Longer timeouts are almost certainly a unit mistake, and huge ones overflow OS timers.
MAX_TIMEOUT_SECONDS = 365 * 24 * 3600.0
# Shorter ones expire before any peer can answer (a loopback round trip alone takes tens of
# microseconds): an ARTIM of 1e-9 would drop every connection unread, an add-in timeout of
# 1e-9 fail every request. Rejected when the settings are read, not found out in production.
MIN_TIMEOUT_SECONDS = 0.001

Check = Callable[[object], object]


class Invalid(Exception):
    """Raised by a field check; ``reason`` completes "<field> = <value> ..." in the message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_TYPE_NAMES: dict[type, str] = {bool: "boolean", int: "integer", float: "float", str: "string"}


def _type_name(value: object) -> str:
    """Name a value's type in TOML/JSON words, the languages the user wrote it in.

    Values come from ``settings.toml`` and from JSON over the admin socket (UpdateSettings),
    so a Python name such as ``NoneType`` or ``dict`` would describe our code, not their input.
    """
    if value is None:
        return "null"
    for kind, name in _TYPE_NAMES.items():
        if isinstance(value, kind):
            return name
    if isinstance(value, Mapping):
        return "table (object)"
    if isinstance(value, list | tuple):
        return "array"
    return "unsupported value"


def _wrong_type(value: object) -> Invalid:
    return Invalid(f"has the wrong type ({_type_name(value)})")


def _as_str(value: object) -> str:
    """Accept a string that can be stored in a UTF-8 file (no lone surrogates)."""
    if not isinstance(value, str):
        raise _wrong_type(value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Invalid("contains characters that cannot be written as UTF-8") from exc
    return str(value)


def _as_int(value: object) -> int:
    """Accept an integer but not a boolean: ``True`` is an ``int`` in Python, not in TOML."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(value)
    return int(value)


def _as_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise _wrong_type(value)
    return value


def _check_dicom_text(text: str) -> None:
    """Require printable ASCII without backslash (the DICOM AE/SH repertoire), naming the culprit.

    Backslash is the DICOM value delimiter, so it would split the value in two on the wire.
    """
    if "\\" in text:
        raise Invalid("contains a backslash")
    for char in text:
        if not 0x20 <= ord(char) <= 0x7E:
            raise Invalid(f"contains {char!a}, which is not a printable ASCII character")


def check_ae_title(value: object) -> str:
    """AE title: DICOM AE value representation; padding spaces are not significant (PS3.5)."""
    text = _as_str(value)
    _check_dicom_text(text)
    stripped = text.strip(" ")
    if not stripped:
        raise Invalid("is empty or all spaces")
    if len(stripped) > MAX_AE_TITLE_LENGTH:
        raise Invalid(f"is too long ({len(stripped)} characters)")
    return stripped


def check_uid(value: object) -> str:
    """UID: the PS3.5 section 9.1 syntax; anything else is rejected by strict peers."""
    text = _as_str(value)
    if not text:
        raise Invalid("is empty")
    if len(text) > MAX_UID_LENGTH:
        raise Invalid(f"is too long ({len(text)} characters)")
    if not set(text) <= set("0123456789."):
        raise Invalid("contains a character other than digits and dots")
    for component in text.split("."):
        if not component:
            raise Invalid("has an empty component")
        if len(component) > 1 and component.startswith("0"):
            raise Invalid(f"has a component with a leading zero ({component})")
    return text


def check_version_name(value: object) -> str:
    """Implementation Version Name: 1-16 characters of the SH repertoire (PS3.7 D.3.3.2.3)."""
    text = _as_str(value)
    _check_dicom_text(text)
    if not text.strip(" "):
        raise Invalid("is empty or all spaces")
    if len(text) > MAX_VERSION_NAME_LENGTH:
        raise Invalid(f"is too long ({len(text)} characters)")
    return text


def check_text(value: object) -> str:
    """Free text (description, display name): any string that can be written to the file."""
    return _as_str(value)


def check_ip_address(value: object) -> str:
    """An address literal the listening socket can bind to; host names are not accepted."""
    text = _as_str(value)
    try:
        ipaddress.ip_address(text)
    except ValueError as exc:
        raise Invalid("is not an IPv4 or IPv6 address") from exc
    return text


def check_directory(value: object) -> str:
    """A path, or "" for the default; NUL is the one character no file system accepts."""
    text = _as_str(value)
    if "\0" in text:
        raise Invalid("contains a NUL character")
    return text


def check_bool(value: object) -> bool:
    return _as_bool(value)


def int_range(low: int, high: int, *, also: int | None = None) -> Check:
    """Build a check for an integer in ``low..high`` (inclusive), or exactly ``also``."""

    def check(value: object) -> int:
        number = _as_int(value)
        if number != also and not low <= number <= high:
            raise Invalid("is out of range")
        return number

    return check


def seconds(*, allow_zero: bool) -> Check:
    """Build a check for a duration in seconds: an integer or float, finite, at least
    :data:`MIN_TIMEOUT_SECONDS` (or 0 when ``allow_zero``)."""

    def check(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong_type(value)
        try:
            number = float(value)
        except OverflowError as exc:
            raise Invalid("is out of range") from exc
        if math.isnan(number):
            raise Invalid("is not a number")
        if number == 0 and allow_zero:
            return 0.0
        if not MIN_TIMEOUT_SECONDS <= number <= MAX_TIMEOUT_SECONDS:
            raise Invalid("is out of range")
        return number

    return check


def check_start_mode(value: object) -> StartMode:
    """One of the :class:`StartMode` values, spelled exactly (lower case)."""
    text = _as_str(value)
    try:
        return StartMode(text)
    except ValueError as exc:
        hint = " (write it in lower case)" if text.strip().lower() in set(StartMode) else ""
        raise Invalid(f"is not a start mode{hint}") from exc


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """Everything known about one settings field except its Python type (that is in the model).

    ``default`` is :data:`~pacsref.settings.errors.MISSING` for required fields; ``group`` is
    the heading it is written under in ``settings.toml``; ``comment`` explains the field to a
    human editor; ``allowed`` completes "allowed: ..." in error messages. ``live`` says whether
    a running server can take a new value without a restart: false for what is fixed when the
    server starts (its listening socket, TLS, spool directory, announced PDU size, service log),
    so that an edit never half-applies (docs/manager.md, "Live and restart-only settings").
    """

    name: str
    group: str
    comment: str
    allowed: str
    check: Check
    default: object = MISSING
    live: bool = False


_SETTINGS = "Settings tab"
_ADVANCED = "Advanced tab"
_TIMEOUTS = "Advanced tab: timeouts"
_SOCKET = "Advanced tab: socket options"
_START = "Advanced tab: start mode"
_TRUE_FALSE = "true or false"
_SECONDS = f"a number of seconds from {MIN_TIMEOUT_SECONDS:g} to {MAX_TIMEOUT_SECONDS:.0f}"
_BUFFER = (
    f"0 (the operating system's default, tuned automatically) or an integer "
    f"{MIN_SOCKET_BUFFER}-{MAX_SOCKET_BUFFER} (bytes)"
)
_DICOM_TEXT = "printable ASCII characters, no backslash"

#: Every field, in the order of the framework's dialog and of ``settings.toml``.
# fmt: off
FIELD_SPECS: tuple[FieldSpec, ...] = (
    FieldSpec("ae_title", _SETTINGS, "Server AE title; calling peers must address it by this.",
              f"1-{MAX_AE_TITLE_LENGTH} {_DICOM_TEXT}, not all spaces (outer spaces are ignored)",
              check_ae_title),
    FieldSpec("implementation_class_uid", _SETTINGS,
              "Implementation Class UID announced in A-ASSOCIATE-RQ/AC.",
              f"a UID: 1-{MAX_UID_LENGTH} digits and dots, no empty component, no leading zero "
              "in a multi-digit component",
              check_uid, DEFAULT_IMPLEMENTATION_CLASS_UID, live=True),
    FieldSpec("description", _SETTINGS, "Free-text description of this server.", "any text",
              check_text, DEFAULT_DESCRIPTION, live=True),
    FieldSpec("implementation_version_name", _SETTINGS,
              "Implementation Version Name announced in A-ASSOCIATE-RQ/AC.",
              f"1-{MAX_VERSION_NAME_LENGTH} {_DICOM_TEXT}, not all spaces",
              check_version_name, DEFAULT_IMPLEMENTATION_VERSION_NAME, live=True),
    FieldSpec("ip_address", _SETTINGS, 'Address to listen on; "0.0.0.0" = all IPv4, "::" = all.',
              'an IPv4 or IPv6 address literal, e.g. "0.0.0.0" or "::1"',
              check_ip_address, DEFAULT_IP_ADDRESS),
    FieldSpec("temporary_directory", _SETTINGS,
              'Spool directory for DIMSE data; relative = under the server directory, "" = tmp/.',
              'a directory path, or "" for <server dir>/tmp', check_directory,
              DEFAULT_TEMPORARY_DIRECTORY),
    FieldSpec("port", _SETTINGS, "TCP port to listen on.", "an integer 1-65535",
              int_range(1, 65535), DEFAULT_PORT),
    FieldSpec("max_clients", _SETTINGS, "Most associations (clients) served at the same time.",
              f"an integer 1-{MAX_MAX_CLIENTS}", int_range(1, MAX_MAX_CLIENTS),
              DEFAULT_MAX_CLIENTS, live=True),
    FieldSpec("server_secure", _SETTINGS, "Serve DICOM over TLS (needs a security add-in).",
              _TRUE_FALSE, check_bool, DEFAULT_SERVER_SECURE),
    FieldSpec("allow_anonymous", _SETTINGS,
              "Accept calling AE titles that are not configured; C-MOVE targets still need one.",
              _TRUE_FALSE, check_bool, DEFAULT_ALLOW_ANONYMOUS, live=True),
    FieldSpec("enable_service_log", _SETTINGS, "Write the service log (logs/, JSON lines).",
              _TRUE_FALSE, check_bool, DEFAULT_ENABLE_SERVICE_LOG),
    FieldSpec("multiple_connections", _SETTINGS,
              "Allow one AE title to connect several times from the same IP address.",
              _TRUE_FALSE, check_bool, DEFAULT_MULTIPLE_CONNECTIONS, live=True),
    FieldSpec("check_called_ae_title", _SETTINGS,
              "Refuse associations addressed to another AE title (A-ASSOCIATE-RJ 1, 1, 7).",
              _TRUE_FALSE, check_bool, DEFAULT_CHECK_CALLED_AE_TITLE, live=True),
    FieldSpec("service_display_name", _ADVANCED,
              'Name shown by service managers; "" = "Dicom Server [<AE title>]".', "any text",
              check_text, DEFAULT_SERVICE_DISPLAY_NAME, live=True),
    FieldSpec("max_pdu_length", _ADVANCED,
              "Maximum PDU length we announce (receive); 0 = no limit (PS3.8). 131072 lets "
              "DCMTK peers send 128 KiB PDUs (4 per 512 KiB image, not 32 as with 16384).",
              f"0 (no limit) or an integer {MIN_MAX_PDU_LENGTH}-{MAX_MAX_PDU_LENGTH}",
              int_range(MIN_MAX_PDU_LENGTH, MAX_MAX_PDU_LENGTH, also=0), DEFAULT_MAX_PDU_LENGTH),
    FieldSpec("client_timeout", _TIMEOUTS,
              "Seconds without data from a client before it is disconnected; 0 = never.",
              f"0 (disabled) or {_SECONDS}", seconds(allow_zero=True), DEFAULT_CLIENT_TIMEOUT,
              live=True),
    FieldSpec("reconnect_timeout", _TIMEOUTS,
              "Seconds allowed to connect back to a client (e.g. C-MOVE sub-operations).",
              _SECONDS, seconds(allow_zero=False), DEFAULT_RECONNECT_TIMEOUT, live=True),
    FieldSpec("addin_timeout", _TIMEOUTS, "Seconds an add-in may take to process one request.",
              _SECONDS, seconds(allow_zero=False), DEFAULT_ADDIN_TIMEOUT, live=True),
    FieldSpec("artim_timeout", _TIMEOUTS,
              "PS3.8 ARTIM timer: seconds to wait for A-ASSOCIATE-RQ or for the peer to close.",
              _SECONDS, seconds(allow_zero=False), DEFAULT_ARTIM_TIMEOUT, live=True),
    FieldSpec("stop_timeout", _TIMEOUTS,
              "Seconds a stopping server lets open associations finish before it aborts them.",
              f"0 (abort at once) or {_SECONDS}", seconds(allow_zero=True), DEFAULT_STOP_TIMEOUT,
              live=True),
    FieldSpec("no_delay", _SOCKET, "Set TCP_NODELAY (disable Nagle's packet combining).",
              _TRUE_FALSE, check_bool, DEFAULT_NO_DELAY, live=True),
    FieldSpec("receive_buffer", _SOCKET, "Socket receive buffer size (SO_RCVBUF) in bytes.",
              _BUFFER, int_range(MIN_SOCKET_BUFFER, MAX_SOCKET_BUFFER, also=0),
              DEFAULT_RECEIVE_BUFFER, live=True),
    FieldSpec("send_buffer", _SOCKET, "Socket send buffer size (SO_SNDBUF) in bytes.",
              _BUFFER, int_range(MIN_SOCKET_BUFFER, MAX_SOCKET_BUFFER, also=0),
              DEFAULT_SEND_BUFFER, live=True),
    FieldSpec("start_mode", _START,
              "automatic = start with the host; manual = on request; disabled = never.",
              ", ".join(f'"{mode.value}"' for mode in StartMode), check_start_mode,
              DEFAULT_START_MODE, live=True),
    FieldSpec("copy_dataset_image", _START,
              "Copy the whole dataset (with pixels) into message notifications; slower.",
              _TRUE_FALSE, check_bool, DEFAULT_COPY_DATASET_IMAGE, live=True),
)
# fmt: on

FIELDS_BY_NAME: dict[str, FieldSpec] = {spec.name: spec for spec in FIELD_SPECS}
FIELD_NAMES: tuple[str, ...] = tuple(FIELDS_BY_NAME)
#: Fields a running server applies without a restart, and those that wait for the next start.
LIVE_FIELDS: frozenset[str] = frozenset(spec.name for spec in FIELD_SPECS if spec.live)
RESTART_FIELDS: frozenset[str] = frozenset(FIELD_NAMES) - LIVE_FIELDS


def _unknown_key_problem(key: object, value: object, source: str) -> SettingsProblem:
    """Explain an unknown key, suggesting the field the user probably meant."""
    name = str(key)
    reason = "is not a known setting"
    normalised = name.strip().lower().replace("-", "_").replace(" ", "_")
    guesses = (
        [normalised]
        if normalised in FIELDS_BY_NAME
        else difflib.get_close_matches(normalised, FIELD_NAMES, n=1)
    )
    if guesses:
        reason += f" (did you mean {guesses[0]}?)"
    if isinstance(value, Mapping):
        reason += " (settings.toml is flat: write every key at the top, without [tables])"
    return SettingsProblem(source, name, value, reason, "the keys " + ", ".join(FIELD_NAMES))


def validate_mapping(
    mapping: Mapping[str, object], source: str
) -> tuple[dict[str, object], list[SettingsProblem]]:
    """Check every entry of ``mapping``; return the normalised values and *all* problems.

    Problems are reported in the mapping's order (the file's order for TOML), then missing
    required fields. Fields absent from ``mapping`` are simply absent from the result, so the
    model's defaults apply.
    """
    values: dict[str, object] = {}
    problems: list[SettingsProblem] = []
    for key, value in mapping.items():
        spec = FIELDS_BY_NAME.get(key) if isinstance(key, str) else None
        if spec is None:
            problems.append(_unknown_key_problem(key, value, source))
            continue
        try:
            values[spec.name] = spec.check(value)
        except Invalid as exc:
            problems.append(SettingsProblem(source, spec.name, value, exc.reason, spec.allowed))
    for spec in FIELD_SPECS:
        if spec.default is MISSING and spec.name not in mapping:
            problems.append(
                SettingsProblem(source, spec.name, MISSING, "is missing (required)", spec.allowed)
            )
    return values, problems
