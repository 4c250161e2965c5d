"""The administrative protocol's messages: :class:`ServiceMessage` and the one table of them.

Every request is declared once in :data:`COMMANDS` (its name, the parameters
its ``data`` list carries with their kinds, and the name of the
:class:`~pacsref.admin.handlers.AdminCommands` method that answers it), in the
spirit of Twisted AMP's ``Command`` declarations; every notification once in
:data:`NOTIFICATIONS`. The protocol, the client library, the documentation
test and the handlers all read these tables, so a message cannot exist in one
place and be missing in another. ``docs/admin-protocol.md`` shows each with a
JSON example.

A :class:`ServiceMessage` travels as one JSON object per line with exactly the
seed's five fields: ``message``, ``service``, ``success``, ``error``, ``data``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pacsref.addin.aetitles import AeInfo, normalize_ae_title
from pacsref.addin.errors import AeTitleError

__all__ = [
    "COMMANDS",
    "MAX_LINE_LENGTH",
    "MAX_RESPONSE_LENGTH",
    "NOTIFICATIONS",
    "Command",
    "MessageError",
    "Notification",
    "Param",
    "ServiceMessage",
    "ae_info_to_dict",
    "decode_request",
    "is_notification",
    "notification_for",
]

#: Request lines longer than this (bytes, without the newline) are refused by the server.
MAX_LINE_LENGTH = 1024 * 1024
#: The longest line the server sends and the clients accept (bytes, without the newline).
#: Far above any realistic response (GetClients of a busy server is about 1.3 MB: 50 clients
#: with 100 presentation contexts each), yet a bound: a client must not buffer without limit.
#: The server answers a request whose response would be longer with ``success: false``
#: instead; notifications are far below it (one client, at most 128 presentation contexts).
MAX_RESPONSE_LENGTH = 64 * 1024 * 1024


class MessageError(ValueError):
    """A request that cannot be served as sent; its text goes into the response's ``error``.

    ``name`` is the request's message name when it could be read (a JSON object with a string
    ``message``) although something else is wrong, so that the response still answers it by
    name: a client matching responses to requests by name should not have to guess that an
    ``"Error"`` was meant for its ``GetStatus``.
    """

    def __init__(self, text: str, name: str = "") -> None:
        super().__init__(text)
        self.name = name


@dataclass
class ServiceMessage:
    """One message on the administrative socket, request, response or notification.

    Attributes:
        message: the message name (a :data:`COMMANDS` or :data:`NOTIFICATIONS` key).
        service: the AE title of the server it is for or from ("" in a request is fine).
        success: set by the server in responses; true in requests and notifications.
        error: why a response failed ("" on success).
        data: the message's values, JSON-ready, as the table declares them.
    """

    message: str
    service: str = ""
    success: bool = True
    error: str = ""
    data: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The five fields as a JSON-ready dict."""
        return {
            "message": self.message,
            "service": self.service,
            "success": self.success,
            "error": self.error,
            "data": list(self.data),
        }

    def to_json(self, ascii_only: bool = False) -> str:
        """One line of compact JSON (no newline inside: JSON escapes them in strings).

        ``ascii_only`` escapes every non-ASCII character, for a message that cannot be
        written as UTF-8: one whose error text repeats a lone surrogate from the request.
        """
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=ascii_only)

    def to_line(self) -> bytes:
        """:meth:`to_json` as UTF-8 bytes, escaped where UTF-8 cannot hold a character."""
        try:
            return self.to_json().encode("utf-8")
        except UnicodeEncodeError:
            return self.to_json(ascii_only=True).encode("ascii")

    @classmethod
    def from_json(cls, text: str | bytes) -> ServiceMessage:
        """Parse one line; raise :class:`MessageError` saying what is wrong with it."""
        try:
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            value = json.loads(text)
        except UnicodeDecodeError as exc:
            raise MessageError(f"malformed message: not UTF-8 ({exc.reason})") from None
        except json.JSONDecodeError as exc:
            raise MessageError(f"malformed JSON: {exc.msg} at character {exc.pos}") from None
        except ValueError as exc:  # e.g. an integer of more digits than Python converts
            raise MessageError(f"malformed JSON: {exc}") from None
        except RecursionError:
            raise MessageError("malformed JSON: nested too deeply") from None
        return cls.from_dict(value)

    @classmethod
    def from_dict(cls, value: object) -> ServiceMessage:
        """Build from a decoded JSON value; raise :class:`MessageError` for a wrong shape."""
        if not isinstance(value, dict):
            raise MessageError(f"a message must be a JSON object, not {_json_type(value)}")
        name = value.get("message")
        readable = name if isinstance(name, str) else ""
        unknown = sorted(set(value) - {"message", "service", "success", "error", "data"})
        if unknown:
            raise MessageError(f"unknown field(s) {', '.join(map(repr, unknown))}", readable)
        if not isinstance(name, str) or not name:
            raise MessageError('field "message" must be a non-empty string')
        checks: tuple[tuple[str, type, object], ...] = (
            ("service", str, ""),
            ("success", bool, True),
            ("error", str, ""),
            ("data", list, None),
        )
        for key, kind, _default in checks:
            if key in value and not isinstance(value[key], kind):
                raise MessageError(
                    f'field "{key}" must be {_TYPE_WORDS[kind]}, not {_json_type(value[key])}',
                    name,
                )
        return cls(
            message=name,
            service=value.get("service", ""),
            success=value.get("success", True),
            error=value.get("error", ""),
            data=list(value.get("data") or []),
        )


_TYPE_WORDS: dict[type, str] = {str: "a string", bool: "true or false", list: "a list"}


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# -- parameter kinds --------------------------------------------------------------------------

_AE_FIELDS = ("ae_title", "host", "port", "description", "move_destination", "secure")


def ae_info_to_dict(info: AeInfo) -> dict[str, Any]:
    """An :class:`AeInfo` as the JSON object the protocol carries."""
    return asdict(info)


def _ae_info(value: object) -> AeInfo:
    if not isinstance(value, dict):
        raise MessageError(f"must be an AeInfo object, not {_json_type(value)}")
    unknown = sorted(set(value) - set(_AE_FIELDS))
    if unknown:
        raise MessageError(f"unknown AeInfo field(s) {', '.join(map(repr, unknown))}")
    missing = [k for k in ("ae_title", "host", "port") if k not in value]
    if missing:
        raise MessageError(f"AeInfo lacks {', '.join(map(repr, missing))}")
    if isinstance(value["port"], bool) or not isinstance(value["port"], int):
        raise MessageError(f"AeInfo port must be an integer 1-65535, not {value['port']!r}")
    try:
        return AeInfo(**value)
    except AeTitleError as exc:
        raise MessageError(str(exc)) from None


def _ae_title(value: object) -> str:
    if not isinstance(value, str):
        raise MessageError(f"must be an AE title string, not {_json_type(value)}")
    try:
        return normalize_ae_title(value)
    except AeTitleError as exc:
        raise MessageError(str(exc)) from None


def _client_id(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise MessageError(f"must be a client id (integer), not {_json_type(value)}")


def _client(value: object) -> int:
    if isinstance(value, dict):
        if "id" not in value:
            raise MessageError('a ClientInfo object must have its "id"')
        return _client_id(value["id"])
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise MessageError(f"must be a ClientInfo object or a client id, not {_json_type(value)}")


def _addin_name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MessageError(f"must be an add-in name (non-empty string), not {_json_type(value)}")
    return value.strip()


def _option_values(value: object) -> dict[str, Any]:
    """Only the shape; each value is judged against the add-in's declaration by the handler."""
    if not isinstance(value, dict):
        raise MessageError(f"must be an object of option name -> value, not {_json_type(value)}")
    if not value:
        raise MessageError("names no option to change")
    return dict(value)


def _settings_object(value: object) -> dict[str, Any]:
    """Only the shape; the values are judged with the rest of settings.toml by the handler."""
    if not isinstance(value, dict):
        raise MessageError(f"must be a settings object, not {_json_type(value)}")
    if not value:
        raise MessageError("names no setting to change")
    return dict(value)


#: Parameter kind -> (what it is in words, converter from JSON to the handler's argument).
KINDS: dict[str, tuple[str, Callable[[object], Any]]] = {
    "AeInfo": ("an AeInfo object", _ae_info),
    "AeTitle": ("an AE title string", _ae_title),
    "ClientId": ("a client id (integer)", _client_id),
    "ClientInfo|ClientId": ("a ClientInfo object or a client id", _client),
    "AddInName": ("an add-in name", _addin_name),
    "OptionValues": ("an object of option name -> value", _option_values),
    "SettingsObject": ("an object of settings field -> new value", _settings_object),
}


@dataclass(frozen=True)
class Param:
    """One entry of a request's ``data`` list: its name (for messages) and kind (:data:`KINDS`)."""

    name: str
    kind: str


@dataclass(frozen=True)
class Command:
    """One request: name, the ``data`` it takes, the handler method, what it answers."""

    name: str
    params: tuple[Param, ...]
    handler: str
    response: str
    description: str


@dataclass(frozen=True)
class Notification:
    """One notification pushed to every connected admin client."""

    name: str
    data: str
    description: str


def _command(
    name: str, params: tuple[Param, ...], handler: str, response: str, text: str
) -> Command:
    return Command(name, params, handler, response, text)


#: Every request, declared once.
COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        _command(
            "GetAeTitles", (), "get_ae_titles", "data[0] list of AeInfo", "List the AE title table."
        ),
        _command(
            "AddAeTitle",
            (Param("info", "AeInfo"),),
            "add_ae_title",
            "data[0] the AeInfo as stored",
            "Add an AE title.",
        ),
        _command(
            "UpdateAeTitle",
            (Param("old_ae_title", "AeTitle"), Param("info", "AeInfo")),
            "update_ae_title",
            "data[0] old AE title, data[1] the AeInfo as stored",
            "Replace an AE title entry (may rename it).",
        ),
        _command(
            "RemoveAeTitle",
            (Param("ae_title", "AeTitle"),),
            "remove_ae_title",
            "data[0] the AE title removed",
            "Remove an AE title.",
        ),
        _command(
            "DisconnectClient",
            (Param("client", "ClientInfo|ClientId"),),
            "disconnect_client",
            "data[0] the client id",
            "A-ABORT and close one client's connection.",
        ),
        _command(
            "GetClients",
            (),
            "get_clients",
            "data[0] list of ClientInfo",
            "List the connected clients.",
        ),
        _command(
            "GetAssociation",
            (Param("client_id", "ClientId"),),
            "get_association",
            "data[0] the client's association",
            "View one client's association.",
        ),
        _command(
            "Pause", (), "pause", 'data[0] "paused"', "Refuse new associations; open ones carry on."
        ),
        _command("Resume", (), "resume", 'data[0] "running"', "Accept new associations again."),
        _command(
            "GetStatus", (), "get_status", "data[0] status object", "State, uptime and counters."
        ),
        _command(
            "GetAddIns",
            (),
            "get_addins",
            "data[0] list of add-ins, data[1] list of load failures",
            "The loaded add-ins and those that failed to load.",
        ),
        _command(
            "GetAddInOptions",
            (Param("addin", "AddInName"),),
            "get_addin_options",
            "data[0] list of option objects",
            "An add-in's declared options with their current values.",
        ),
        _command(
            "SetAddInOptions",
            (Param("addin", "AddInName"), Param("changes", "OptionValues")),
            "set_addin_options",
            "data[0] every option's new value, data[1] options that apply at the next start",
            "Validate, tell the add-in, and save an add-in's options.",
        ),
        _command(
            "GetSettings", (), "get_settings", "data[0] settings object", "The server's settings."
        ),
        _command(
            "UpdateSettings",
            (Param("changes", "SettingsObject"),),
            "update_settings",
            "data[0] fields applied live, data[1] fields saved for the next restart",
            "Save settings changes; apply the live ones at once.",
        ),
    )
}

#: Every notification, declared once (built from :mod:`pacsref.server.notifications` events).
NOTIFICATIONS: dict[str, Notification] = {
    n.name: n
    for n in (
        Notification("ClientConnect", "data[0] ClientInfo", "A TCP connection was accepted."),
        Notification("ClientAssociated", "data[0] ClientInfo", "An association was accepted."),
        Notification(
            "ClientDisconnected",
            "data[0] ClientInfo, data[1] reason",
            "A client's connection is gone.",
        ),
        Notification(
            "ClientAction",
            "data[0] action, data[1] AE title, data[2] client id",
            "A client's DIMSE request was served.",
        ),
        Notification(
            "AssociationRefused", "data[0] refusal object", "An A-ASSOCIATE-RQ was refused."
        ),
        Notification(
            "ClientTimedOut",
            "data[0] ClientInfo, data[1] timeout",
            "An idle client is being aborted.",
        ),
        Notification("ServerPaused", "(none)", "The server was paused."),
        Notification("ServerResumed", "(none)", "The server was resumed."),
        Notification(
            "ServerStopping",
            "data[0] stop_timeout (seconds), data[1] open clients",
            "A graceful stop began: new associations are refused, open ones may finish.",
        ),
    )
}


def is_notification(message: ServiceMessage) -> bool:
    """True for a pushed notification, False for a response.

    By name, with one exception: a request that names a notification is refused with a
    response under that same name, and ``success: false``, which no notification has.
    """
    return message.message in NOTIFICATIONS and message.success


def decode_request(request: ServiceMessage) -> tuple[Command, list[Any]]:
    """The command ``request`` names and its converted arguments, or :class:`MessageError`."""
    command = COMMANDS.get(request.message)
    if command is None:
        if request.message in NOTIFICATIONS:
            raise MessageError(f"{request.message!r} is a notification, not a request")
        raise MessageError(f"unknown message {request.message!r}; known: {', '.join(COMMANDS)}")
    want = len(command.params)
    if len(request.data) != want:
        names = ", ".join(f"{p.name} ({KINDS[p.kind][0]})" for p in command.params) or "nothing"
        raise MessageError(
            f"{command.name} takes {want} data item(s): {names}; got {len(request.data)}"
        )
    args = []
    for index, (param, value) in enumerate(zip(command.params, request.data, strict=True)):
        try:
            args.append(KINDS[param.kind][1](value))
        except MessageError as exc:
            raise MessageError(f"{command.name} data[{index}] ({param.name}): {exc}") from None
    return command, args


def notification_for(event: Any, service: str = "") -> ServiceMessage | None:
    """The notification message for a :mod:`pacsref.server.notifications` event, or None."""
    name = getattr(event, "name", "")
    if name not in NOTIFICATIONS:
        return None
    if name in ("ClientConnect", "ClientAssociated"):
        data: list[Any] = [event.client.to_dict()]
    elif name == "ClientDisconnected":
        data = [event.client.to_dict(), event.reason]
    elif name == "ClientAction":
        data = [event.action, event.ae_title, event.client_id]
    elif name == "ClientTimedOut":
        data = [event.client.to_dict(), event.timeout]
    elif name == "ServerStopping":
        data = [event.deadline, event.clients]
    elif name == "AssociationRefused":
        snapshot = event.to_dict()
        snapshot.pop("event", None)
        data = [snapshot]
    else:
        data = []
    return ServiceMessage(name, service, True, "", data)
