"""AE title validation and the in-memory IAeTitles provider."""

from __future__ import annotations

import pickle
import socket
from collections.abc import Iterator

import pytest
from twisted.logger import capturedLogs, formatEvent
from zope.interface.verify import verifyObject

from pacsref.addin import (
    AeFieldError,
    AeInfo,
    AeTitleError,
    IAeTitles,
    MemoryAeTitles,
    normalize_ae_title,
    resolve_addresses,
)


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Keep tests off the network: every host name lookup fails, and is recorded."""
    asked: list[str] = []

    def fail(host: str, *args: object, **kwargs: object) -> list[object]:
        asked.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    yield asked


def test_memory_ae_titles_provides_interface() -> None:
    """The default table is a complete IAeTitles provider."""
    assert verifyObject(IAeTitles, MemoryAeTitles())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("STORESCU", "STORESCU"),
        ("  PADDED  ", "PADDED"),
        ("A" * 16, "A" * 16),
        (" " + "B" * 16 + " ", "B" * 16),
        ("with space", "with space"),
        ("lower", "lower"),
    ],
)
def test_valid_titles_lose_only_insignificant_spaces(raw: str, expected: str) -> None:
    """Leading/trailing spaces are dropped; inner spaces and case are kept (PS3.5 VR AE)."""
    assert normalize_ae_title(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty"),
        ("    ", "only of spaces"),
        ("A" * 17, "at most 16"),
        ("BACK\\SLASH", "backslash"),
        ("TAB\tAE", "control"),
        ("NEW\nLINE", "control"),
        ("NUL\x00", "control"),
        ("DEL\x7f", "control"),
        ("CAFÉ", "printable ASCII"),
        (42, "must be a string"),
        (None, "must be a string"),
    ],
)
def test_invalid_titles_are_refused_with_a_reason(raw: object, message: str) -> None:
    """Each broken PS3.5 rule raises AeTitleError naming that rule."""
    with pytest.raises(AeTitleError, match=message):
        normalize_ae_title(raw)


@pytest.mark.parametrize("port", [0, 65536, -1, "104", True, 104.0, None])
def test_invalid_port_is_refused(port: object) -> None:
    """Ports are integers 1-65535; strings, bools and floats are not quietly converted."""
    with pytest.raises(AeTitleError, match="port"):
        AeInfo("PEER", "host", port)  # type: ignore[arg-type]


@pytest.mark.parametrize("host", ["", "   ", "two words", "tab\there", None])
def test_invalid_host_is_refused(host: object) -> None:
    """A host must be non-empty and free of whitespace and control characters."""
    with pytest.raises(AeTitleError, match="host"):
        AeInfo("PEER", host, 104)  # type: ignore[arg-type]


def test_ae_info_normalises_title_and_host() -> None:
    """Entries differing only by padding are equal, so they collide as duplicates."""
    assert AeInfo(" PEER ", " 10.0.0.1 ", 104) == AeInfo("PEER", "10.0.0.1", 104)
    assert AeInfo("PEER", "h", 1).port == 1
    assert AeInfo("PEER", "h", 65535).port == 65535


def test_ae_title_error_is_a_value_error() -> None:
    """Callers that validate input with `except ValueError` catch AE title errors too."""
    assert issubclass(AeTitleError, ValueError)


def test_add_get_list_remove() -> None:
    """The table round-trips entries and looks titles up ignoring padding."""
    table = MemoryAeTitles()
    peer = table.add(AeInfo("PEER", "10.0.0.1", 104, "a modality"))
    assert table.get("  PEER ") == peer
    assert table.get("peer") is None  # case sensitive
    assert table.get("\\bad") is None  # an invalid title is simply unknown
    assert table.list() == (peer,)
    assert table.remove("PEER ") == peer
    assert table.list() == ()


def test_duplicate_add_is_refused() -> None:
    """Adding a title already present (modulo padding) fails and keeps the original."""
    table = MemoryAeTitles([AeInfo("PEER", "10.0.0.1", 104)])
    with pytest.raises(AeTitleError, match="already exists"):
        table.add(AeInfo(" PEER", "10.0.0.2", 105))
    assert table.get("PEER") == AeInfo("PEER", "10.0.0.1", 104)


def test_case_variants_are_refused_but_lookup_is_exact() -> None:
    """'peer' next to 'PEER' is refused as a duplicate; get() still matches case exactly."""
    table = MemoryAeTitles([AeInfo("PEER", "h", 1)])
    with pytest.raises(AeTitleError, match=r"already exists as 'PEER'.*letter case"):
        table.add(AeInfo("peer", "h", 2))
    assert table.get("peer") is None
    assert [e.ae_title for e in table.list()] == ["PEER"]


def test_update_may_change_only_the_case_of_its_own_title() -> None:
    """Renaming PEER to Peer is not a collision with itself, only with other entries."""
    table = MemoryAeTitles([AeInfo("PEER", "h", 1), AeInfo("OTHER", "h", 2)])
    table.update("PEER", AeInfo("Peer", "h", 1))
    assert [e.ae_title for e in table.list()] == ["Peer", "OTHER"]
    with pytest.raises(AeTitleError, match="cannot rename AE title 'Peer' to 'other'"):
        table.update("Peer", AeInfo("other", "h", 1))


def test_update_renames_in_place() -> None:
    """Update may rename an entry; it keeps its position in the listing."""
    table = MemoryAeTitles([AeInfo("A", "h", 1), AeInfo("B", "h", 2), AeInfo("C", "h", 3)])
    table.update("B", AeInfo("B2", "h", 22))
    assert [e.ae_title for e in table.list()] == ["A", "B2", "C"]
    assert table.get("B") is None
    table.update("B2", AeInfo("B2", "other", 23))
    assert table.get("B2") == AeInfo("B2", "other", 23)


def test_update_refuses_unknown_and_collisions() -> None:
    """Updating an unknown title, or renaming onto an existing one, is refused."""
    table = MemoryAeTitles([AeInfo("A", "h", 1), AeInfo("B", "h", 2)])
    with pytest.raises(AeTitleError, match="does not exist"):
        table.update("X", AeInfo("X", "h", 1))
    with pytest.raises(AeTitleError, match="already exists"):
        table.update("A", AeInfo("B", "h", 1))
    assert [e.ae_title for e in table.list()] == ["A", "B"]


def test_remove_unknown_is_refused() -> None:
    """Removing a title that is not in the table says so."""
    with pytest.raises(AeTitleError, match="'GHOST' does not exist"):
        MemoryAeTitles().remove("GHOST")


def test_list_is_a_snapshot() -> None:
    """A listing taken before a change does not change with the table."""
    table = MemoryAeTitles([AeInfo("A", "h", 1)])
    before = table.list()
    table.add(AeInfo("B", "h", 2))
    assert len(before) == 1


def test_non_ae_info_is_refused() -> None:
    """Only AeInfo values enter the table, so every entry is validated."""
    with pytest.raises(AeTitleError, match="expected an AeInfo"):
        MemoryAeTitles().add(("PEER", "h", 104))  # type: ignore[arg-type]


def test_new_fields_default_so_old_callers_keep_working() -> None:
    """Positional (title, host, port, description) still works; C-MOVE flags take defaults."""
    info = AeInfo("PEER", "10.0.0.1", 104, "a modality")
    assert (info.move_destination, info.secure) == (True, False)
    assert AeInfo("PEER", "h", 1, secure=True, move_destination=False).secure is True


@pytest.mark.parametrize("flag", ["move_destination", "secure"])
@pytest.mark.parametrize("value", [1, "true", None])
def test_flags_must_be_booleans(flag: str, value: object) -> None:
    """Flags are real booleans: 1 or "true" would hide a typo in a hand-edited file."""
    with pytest.raises(AeFieldError, match=f"{flag} = .* is not a boolean; allowed: true or false"):
        AeInfo("PEER", "h", 1, **{flag: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "10.0.0.1",
        "::1",
        "fe80::1%eth0",
        "pacs.example.org",
        "pacs.example.org.",
        "1pacs.example",
        "a-b.c-d",
        "x" * 63 + ".example",
    ],
)
def test_valid_hosts_are_accepted(host: str) -> None:
    """IP literals (v4, v6, scoped v6) and RFC 1123 host names, FQDN dot included."""
    assert AeInfo("PEER", host, 104).host == host


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("-lead.example", "not letters, digits and inner hyphens"),
        ("trail-.example", "not letters, digits and inner hyphens"),
        ("under_score.example", "not letters, digits and inner hyphens"),
        ("a..b", "empty label"),
        (".lead", "empty label"),
        ("x" * 64 + ".example", "label of 64 characters"),
        (".".join(["abcdefg"] * 32), "at most 253"),
        ("256.1.1.1", "numeric label"),
        ("10.0.0", "numeric label"),
        ("[::1]", "without the brackets"),
        (104, "must be a string"),
    ],
)
def test_invalid_hosts_name_the_rule(host: object, reason: str) -> None:
    """Each broken host name rule is named, with the entry, the value and what is allowed."""
    with pytest.raises(AeFieldError, match="host") as caught:
        AeInfo("PEER", host, 104)  # type: ignore[arg-type]
    assert reason in str(caught.value)
    assert str(caught.value).startswith("AE title 'PEER': host = ")
    assert "allowed: an IPv4 or IPv6 address, or a host name" in str(caught.value)
    assert (caught.value.field, caught.value.value, caught.value.ae_title) == ("host", host, "PEER")


def test_field_error_pickles_with_its_parts() -> None:
    """The structured error survives pickling (e.g. across a process pool) unchanged."""
    error = AeFieldError("port", 0, "is out of range", "PEER")
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.field, copy.ae_title) == (str(error), "port", "PEER")


def test_ip_literals_resolve_to_themselves_without_dns(no_dns: list[str]) -> None:
    """An IP address needs no lookup; it is returned in canonical form."""
    assert resolve_addresses(AeInfo("PEER", "0:0::1", 104)) == frozenset({"::1"})
    assert resolve_addresses(AeInfo("PEER", "10.0.0.1", 104)) == frozenset({"10.0.0.1"})
    assert no_dns == []


def test_unresolvable_host_gives_empty_set_and_warning(no_dns: list[str]) -> None:
    """A name DNS does not know is kept, recognises nobody, and says so in the log."""
    with capturedLogs() as events:
        assert resolve_addresses(AeInfo("CT1", "ct1.invalid", 104)) == frozenset()
    text = [formatEvent(event) for event in events]
    assert any("'ct1.invalid' does not resolve" in line and "CT1" in line for line in text)
    assert no_dns == ["ct1.invalid"]


def test_memory_table_caches_addresses_per_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """addresses() answers from the cache filled at add/update; refresh re-resolves."""
    calls: list[str] = []

    def resolver(info: AeInfo) -> frozenset[str]:
        calls.append(info.host)
        return frozenset({f"10.0.0.{len(calls)}"})

    table = MemoryAeTitles([AeInfo("PEER", "peer.example", 104)], resolver=resolver)
    assert table.addresses(" PEER ") == table.addresses("PEER") == frozenset({"10.0.0.1"})
    assert table.addresses("GHOST") is None and table.addresses("\\") is None
    table.update("PEER", AeInfo("PEER2", "peer.example", 104))
    assert table.addresses("PEER2") == frozenset({"10.0.0.2"})
    table.refresh_addresses()
    assert table.addresses("PEER2") == frozenset({"10.0.0.3"})
    assert calls == ["peer.example"] * 3


def test_host_addresses_is_the_cache_keyed_by_host() -> None:
    """The acceptance policy can ask by host name (any case); unknown hosts give None."""
    table = MemoryAeTitles(
        [AeInfo("CT", "CT.Example", 104), AeInfo("MR", "10.0.0.7", 104)],
        resolver=lambda info: frozenset({"192.0.2.5"}) if info.ae_title == "CT" else frozenset(),
    )
    assert table.host_addresses(" ct.example ") == frozenset({"192.0.2.5"})
    assert table.host_addresses("10.0.0.7") == frozenset()
    assert table.host_addresses("other.example") is None
