"""AE title validation and the default in-memory IAeTitles provider."""

from __future__ import annotations

import pytest
from zope.interface.verify import verifyObject

from pacsref.addin import AeInfo, AeTitleError, IAeTitles, MemoryAeTitles, normalize_ae_title


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


def test_case_variants_are_distinct_titles() -> None:
    """AE titles are case sensitive, so 'peer' and 'PEER' may both exist."""
    table = MemoryAeTitles([AeInfo("PEER", "h", 1), AeInfo("peer", "h", 2)])
    assert len(table.list()) == 2


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
