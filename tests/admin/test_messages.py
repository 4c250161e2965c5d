"""ServiceMessage JSON and the message table's argument checks."""

from __future__ import annotations

import pytest

from pacsref.admin.handlers import AdminCommands
from pacsref.admin.messages import (
    COMMANDS,
    KINDS,
    MessageError,
    ServiceMessage,
    decode_request,
)


def test_round_trip_keeps_the_five_fields() -> None:
    message = ServiceMessage("AddAeTitle", "PACSREF", False, "nope", [{"a": 1}, "é"])
    line = message.to_json()
    assert "\n" not in line
    assert ServiceMessage.from_json(line) == message
    assert set(message.to_dict()) == {"message", "service", "success", "error", "data"}


def test_missing_optional_fields_take_defaults() -> None:
    assert ServiceMessage.from_json(b'{"message": "Pause"}') == ServiceMessage("Pause")


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (b"{nope", "malformed JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object, not a list"),
        (b'{"data": []}', '"message" must be a non-empty string'),
        (b'{"message": "Pause", "data": {}}', '"data" must be a list, not an object'),
        (b'{"message": "Pause", "success": "yes"}', '"success" must be true or false'),
        (b'{"message": "Pause", "extra": 1}', "unknown field(s) 'extra'"),
    ],
)
def test_bad_lines_say_what_is_wrong(line: bytes, words: str) -> None:
    with pytest.raises(MessageError, match=None) as caught:
        ServiceMessage.from_json(line)
    assert words in str(caught.value)


def test_every_command_has_a_handler_and_known_kinds() -> None:
    for command in COMMANDS.values():
        assert callable(getattr(AdminCommands, command.handler)), command.name
        assert all(param.kind in KINDS for param in command.params)


@pytest.mark.parametrize(
    ("message", "data", "words"),
    [
        ("Nope", [], "unknown message 'Nope'"),
        ("ClientConnect", [], "is a notification, not a request"),
        ("GetAeTitles", [1], "GetAeTitles takes 0 data item(s)"),
        ("RemoveAeTitle", [], "takes 1 data item(s): ae_title (an AE title string); got 0"),
        ("RemoveAeTitle", [5], "data[0] (ae_title): must be an AE title string, not a number"),
        ("RemoveAeTitle", ["A\\B"], "data[0] (ae_title)"),
        ("RemoveAeTitle", ["X" * 17], "data[0] (ae_title)"),
        ("AddAeTitle", ["X"], "must be an AeInfo object, not a string"),
        ("AddAeTitle", [{"ae_title": "X", "host": "h"}], "AeInfo lacks 'port'"),
        ("AddAeTitle", [{"ae_title": "X", "host": "h", "port": "104"}], "port must be"),
        ("AddAeTitle", [{"ae_title": "X", "host": "h", "port": 0}], "port"),
        ("AddAeTitle", [{"ae_title": "X", "host": "h", "port": 1, "x": 1}], "unknown AeInfo"),
        ("AddAeTitle", [{"ae_title": "X", "host": "bad host", "port": 1}], "host"),
        ("DisconnectClient", [True], "ClientInfo object or a client id"),
        ("DisconnectClient", [{"ip": "1.2.3.4"}], 'must have its "id"'),
        ("GetAssociation", ["3"], "client id (integer)"),
    ],
)
def test_decode_request_refuses(message: str, data: list[object], words: str) -> None:
    with pytest.raises(MessageError) as caught:
        decode_request(ServiceMessage(message, data=data))
    assert words in str(caught.value)


def test_decode_request_converts() -> None:
    command, args = decode_request(ServiceMessage("DisconnectClient", data=[{"id": 4}]))
    assert (command.name, args) == ("DisconnectClient", [4])
    _, [old, info] = decode_request(
        ServiceMessage("UpdateAeTitle", data=[" OLD ", {"ae_title": "NEW", "host": "h", "port": 5}])
    )
    assert old == "OLD" and info.ae_title == "NEW" and info.port == 5
