"""docs/admin-protocol.md documents exactly the messages of the table; the overviews name them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pacsref.admin.messages import COMMANDS, NOTIFICATIONS, ServiceMessage

DOC = Path(__file__).resolve().parents[2] / "docs" / "admin-protocol.md"


def sections() -> dict[str, dict[str, list[str]]]:
    """Top-level section -> message heading -> the JSON example lines under it."""
    found: dict[str, dict[str, list[str]]] = {}
    top = ""
    current: list[str] = []
    in_json = False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            top = line[3:].strip()
            found.setdefault(top, {})
        elif line.startswith("### "):
            current = found[top].setdefault(line[4:].strip(), [])
        elif line.strip() == "```json":
            in_json = True
        elif line.strip() == "```":
            in_json = False
        elif in_json and top in ("Requests", "Notifications"):
            current.append(line)
    return found


def test_every_request_is_documented_and_nothing_else() -> None:
    assert set(sections()["Requests"]) == set(COMMANDS)


def test_every_notification_is_documented_and_nothing_else() -> None:
    assert set(sections()["Notifications"]) == set(NOTIFICATIONS)


def test_examples_are_service_messages_of_their_section() -> None:
    for top in ("Requests", "Notifications"):
        for name, lines in sections()[top].items():
            assert lines, f"{name} has no JSON example"
            for line in lines:
                assert ServiceMessage.from_json(line).message == name, line
            if top == "Requests":
                request, response = (ServiceMessage.from_json(x) for x in lines)
                assert response.success and response.service == "PACSREF"
                assert len(request.data) == len(COMMANDS[name].params), name


def test_request_examples_are_valid_requests() -> None:
    from pacsref.admin.messages import decode_request

    for name, lines in sections()["Requests"].items():
        command, _ = decode_request(ServiceMessage.from_json(lines[0]))
        assert command.name == name
    assert re.search(r"0700", DOC.read_text()) and "0600" in DOC.read_text()


@pytest.mark.parametrize("doc", ["README.md", "docs/architecture.md"])
def test_the_overviews_name_every_message(doc: str) -> None:
    """README and architecture list the messages in passing; a new one must reach them too."""
    text = (DOC.parents[1] / doc).read_text(encoding="utf-8")
    missing = [name for name in (*COMMANDS, *NOTIFICATIONS) if not re.search(rf"\b{name}\b", text)]
    assert missing == [], f"{doc} does not mention {', '.join(missing)}"
