"""The persistent AE title table: aetitles.toml format, validation, atomic saves, threads, DNS."""

from __future__ import annotations

import os
import pickle
import socket
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from zope.interface.verify import verifyObject

from pacsref.addin import (
    AE_TITLES_FILE_NAME,
    AeInfo,
    AeTableFileError,
    AeTitleError,
    FileAeTitles,
    IAeTitles,
)
from pacsref.addin.aetitles import FIELD_CHECKS
from pacsref.addin.aetitles_file import dumps_ae_table, loads_ae_table

PEER = AeInfo("PEER", "10.0.0.1", 104, "a modality")


@pytest.fixture(autouse=True)
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fake DNS: names under .example resolve to 192.0.2.x, all others fail; records each query."""
    asked: list[str] = []

    def getaddrinfo(host: str, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        asked.append(host)
        if not host.endswith(".example"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        address = f"192.0.2.{len(asked)}"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield asked


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """Where a server directory keeps its table."""
    return tmp_path / AE_TITLES_FILE_NAME


def write(path: Path, text: str) -> None:
    """Stand-in for an administrator editing the file by hand."""
    path.write_text(text, encoding="utf-8")


def test_provides_interface(path: Path) -> None:
    """The persistent table is a complete IAeTitles provider."""
    assert verifyObject(IAeTitles, FileAeTitles(path))


def test_missing_file_is_empty_and_created_on_first_write(path: Path) -> None:
    """No file means no peers; loading does not create it, the first change does."""
    table = FileAeTitles(path)
    assert table.list() == ()
    assert not path.exists()
    table.add(PEER)
    assert path.exists()


def test_in_server_dir_uses_aetitles_toml(tmp_path: Path) -> None:
    """The table of a server lives at <server dir>/aetitles.toml."""
    assert FileAeTitles.in_server_dir(tmp_path).path == tmp_path / "aetitles.toml"


def test_round_trip_keeps_every_field_and_the_order(path: Path) -> None:
    """What is added is read back equal by a fresh table, in the same order."""
    entries = [
        AeInfo("CT_ROOM3", "ct3.example", 104, 'CT "room 3"\nline two, café \\ tab\t'),
        AeInfo("ARCHIVE", "::1", 11112, move_destination=True, secure=True),
        PEER,
        AeInfo("MODALITY", "10.0.0.9", 4006, move_destination=False),
    ]
    table = FileAeTitles(path)
    for info in entries:
        table.add(info)
    assert FileAeTitles(path).list() == tuple(entries)
    assert loads_ae_table(dumps_ae_table(entries)) == tuple(entries)


def test_file_is_commented_toml_with_one_ae_table_per_entry(path: Path) -> None:
    """The file explains itself and holds [[ae]] tables with every field spelled out."""
    FileAeTitles(path).add(PEER)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# AE title table")
    assert "move_destination  true if C-MOVE may send to this peer" in text
    assert tomllib.loads(text) == {
        "ae": [
            {
                "ae_title": "PEER",
                "host": "10.0.0.1",
                "port": 104,
                "description": "a modality",
                "move_destination": True,
                "secure": False,
            }
        ]
    }


def test_file_field_order_is_ae_info_order() -> None:
    """The writer and the loader iterate the same fields as AeInfo declares."""
    assert tuple(FIELD_CHECKS) == tuple(AeInfo.__dataclass_fields__)


def test_optional_fields_take_defaults(path: Path) -> None:
    """A hand-written entry needs only ae_title, host and port."""
    write(path, '[[ae]]\nae_title = "  PEER "\nhost = "10.0.0.1"\nport = 104\n')
    assert FileAeTitles(path).list() == (AeInfo("PEER", "10.0.0.1", 104),)


def test_failed_save_leaves_file_and_table_intact(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash at the rename keeps the old file byte for byte, no temp file, no change in memory."""
    table = FileAeTitles(path)
    table.add(PEER)
    before = path.read_bytes()

    def crash(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(AeTitleError, match=r"cannot save .*No space left on device.*nothing was"):
        table.add(AeInfo("OTHER", "10.0.0.2", 104))
    with pytest.raises(AeTitleError, match="cannot save"):
        table.remove("PEER")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [AE_TITLES_FILE_NAME]
    assert table.list() == (PEER,)
    assert FileAeTitles(path).list() == (PEER,)


def test_failed_fsync_leaves_no_temp_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure before the rename (disk error on fsync) is cleaned up the same way."""
    table = FileAeTitles(path)

    def fail(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(AeTitleError, match="Input/output error"):
        table.add(PEER)
    assert list(path.parent.iterdir()) == []
    assert table.list() == ()


ENTRY = {"ae_title": '"PEER"', "host": '"10.0.0.1"', "port": "104"}


def entry_text(**fields: str) -> str:
    """One [[ae]] table: the valid ENTRY with ``fields`` (TOML literals) replaced or added."""
    merged = {**ENTRY, **fields}
    return "[[ae]]\n" + "".join(f"{key} = {value}\n" for key, value in merged.items())


@pytest.mark.parametrize(
    ("field", "literal", "reason"),
    [
        ("ae_title", '""', "must not be empty"),
        ("ae_title", '"    "', "must not consist only of spaces"),
        ("ae_title", '"ABCDEFGHIJKLMNOPQ"', "has 17 significant characters"),
        ("ae_title", '"BACK\\\\SLASH"', "backslash"),
        ("ae_title", '"TAB\\tAE"', "no control characters"),
        ("ae_title", '"CAFÉ"', "printable ASCII"),
        ("ae_title", "42", "must be a string"),
        ("host", '""', "must not be empty"),
        ("host", '"two words"', "not letters, digits and inner hyphens"),
        ("host", '"-pacs.example"', "not letters, digits and inner hyphens"),
        ("host", '"a..b"', "empty label"),
        ("host", '"300.1.1.1"', "numeric label"),
        ("host", "10", "must be a string"),
        ("port", "0", "is out of range"),
        ("port", "65536", "is out of range"),
        ("port", "-1", "is out of range"),
        ("port", '"104"', "is not an integer"),
        ("port", "104.0", "is not an integer"),
        ("port", "true", "is not an integer"),
        ("move_destination", '"yes"', "is not a boolean"),
        ("secure", "1", "is not a boolean"),
        ("description", "[1]", "must be a string"),
    ],
)
def test_invalid_field_is_reported_with_file_entry_field_value_and_allowed(
    path: Path, field: str, literal: str, reason: str
) -> None:
    """One line names the file, the [[ae]] entry, field = value, the rule and what is allowed."""
    write(path, entry_text() + "\n" + entry_text(**{"ae_title": '"SECOND"', field: literal}))
    with pytest.raises(AeTableFileError) as caught:
        FileAeTitles(path)
    (problem,) = caught.value.problems
    line = str(caught.value)
    assert line.startswith(f"{path}: [[ae]] entry 2")
    assert f" {field} = " in line and reason in line and "; allowed: " in line
    assert (problem.entry, problem.field) == (2, field)
    assert isinstance(caught.value, AeTitleError)


def test_every_problem_is_reported_at_once(path: Path) -> None:
    """Several bad fields and entries give one error listing them all, one per line."""
    write(
        path,
        entry_text(port="0", host='"bad_host"')
        + entry_text(ae_title='"OK"', prot="104")
        + entry_text(ae_title='"THREE"', port="70000"),
    )
    with pytest.raises(AeTableFileError) as caught:
        FileAeTitles(path)
    lines = str(caught.value).splitlines()
    assert len(lines) == 4
    assert 'entry 1 ("PEER"): host = "bad_host"' in lines[0]
    assert 'entry 1 ("PEER"): port = 0 is out of range' in lines[1]
    assert 'entry 2 ("OK"): prot is not a known field (did you mean port?)' in lines[2]
    assert 'entry 3 ("THREE"): port = 70000' in lines[3]


def test_missing_required_field_is_named(path: Path) -> None:
    """Leaving out host says which entry lacks it and what to put there."""
    write(path, '[[ae]]\nae_title = "PEER"\nport = 104\n')
    with pytest.raises(AeTableFileError, match=r'entry 1 \("PEER"\): host is missing; allowed'):
        FileAeTitles(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[ae]]\nae_title = "PEER\n', "invalid TOML syntax"),
        ('[ae]\nae_title = "PEER"\n', "ae = .* is not an array of tables"),
        ('title = "x"\n', 'title = "x" is not a known key; allowed: only \\[\\[ae\\]\\] tables'),
        ("ae = [1]\n", "entry 1: is 1, not a table"),
    ],
)
def test_malformed_document_is_reported(path: Path, text: str, message: str) -> None:
    """Syntax and shape errors name the file and say what the file should look like."""
    write(path, text)
    with pytest.raises(AeTableFileError, match=f"^{path}: .*{message}"):
        FileAeTitles(path)


def test_non_utf8_file_is_reported(path: Path) -> None:
    """A Latin-1 file is refused with the offending byte's position, not a traceback."""
    path.write_bytes(b'[[ae]]\nae_title = "PEER"\ndescription = "caf\xe9"\n')
    with pytest.raises(
        AeTableFileError, match=r"is not UTF-8 text \(bad byte at offset 43, line 3"
    ):
        FileAeTitles(path)


def test_file_error_pickles_with_its_problems(path: Path) -> None:
    """The load error keeps its structured problems through pickling."""
    write(path, entry_text(port="0"))
    with pytest.raises(AeTableFileError) as caught:
        FileAeTitles(path)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert copy.problems == caught.value.problems


@pytest.mark.parametrize("second", ['"PEER"', '"  PEER  "', '"peer"'])
def test_duplicates_in_file_are_refused(path: Path, second: str) -> None:
    """The same title twice, with padding or in another case, is one title: refused."""
    write(path, entry_text() + entry_text(ae_title=second))
    with pytest.raises(
        AeTableFileError, match=r'entry 2 .*duplicates \[\[ae\]\] entry 1 \("PEER"\)'
    ):
        FileAeTitles(path)


@pytest.mark.parametrize("title", ["PEER", "  PEER", "PEER  ", "peer", "Peer "])
def test_duplicate_add_is_refused_and_not_saved(path: Path, title: str) -> None:
    """Adding a title already present (modulo padding and case) fails; file and table unchanged."""
    table = FileAeTitles(path)
    table.add(PEER)
    before = path.read_bytes()
    with pytest.raises(AeTitleError, match="already exists"):
        table.add(AeInfo(title, "10.0.0.2", 105))
    assert path.read_bytes() == before
    assert table.list() == (PEER,)


def test_update_and_remove_are_saved(path: Path) -> None:
    """Renames keep their position on disk too; removals disappear from the file."""
    table = FileAeTitles(path)
    for title in ("A", "B", "C"):
        table.add(AeInfo(title, "10.0.0.1", 104))
    table.update("B", AeInfo("B2", "10.0.0.2", 105, secure=True))
    table.remove("A")
    assert FileAeTitles(path).list() == (
        AeInfo("B2", "10.0.0.2", 105, secure=True),
        AeInfo("C", "10.0.0.1", 104),
    )


def test_reload_sees_hand_edits(path: Path) -> None:
    """reload() replaces the table by what the file now says."""
    table = FileAeTitles(path)
    table.add(PEER)
    write(path, entry_text(ae_title='"EDITED"', port="4242"))
    assert table.get("PEER") == PEER  # not re-read behind the caller's back
    table.reload()
    assert table.list() == (AeInfo("EDITED", "10.0.0.1", 4242),)


def test_invalid_reload_keeps_the_table(path: Path) -> None:
    """A broken hand edit is reported by reload() and the working table stays in service."""
    table = FileAeTitles(path)
    table.add(PEER)
    write(path, entry_text(port="0"))
    with pytest.raises(AeTableFileError, match="port = 0"):
        table.reload()
    assert table.list() == (PEER,)


def test_change_after_hand_edit_keeps_the_edit(path: Path) -> None:
    """A change through the API first reads a hand-edited file, so the edit is not overwritten."""
    table = FileAeTitles(path)
    table.add(PEER)
    write(path, entry_text() + entry_text(ae_title='"HANDMADE"'))
    table.add(AeInfo("VIA_API", "10.0.0.3", 104))
    titles = ["PEER", "HANDMADE", "VIA_API"]
    assert [e.ae_title for e in FileAeTitles(path).list()] == titles
    assert [e.ae_title for e in table.list()] == titles


def test_concurrent_adds_lose_nothing(path: Path) -> None:
    """Threads adding at once all succeed, in memory and on disk."""
    table = FileAeTitles(path)
    threads_count, per_thread = 8, 20
    barrier = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        barrier.wait()
        try:
            for i in range(per_thread):
                table.add(AeInfo(f"T{n}_{i}", f"10.0.{n}.{i + 1}", 104))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    expected = {f"T{n}_{i}" for n in range(threads_count) for i in range(per_thread)}
    assert {e.ae_title for e in table.list()} == expected
    assert {e.ae_title for e in FileAeTitles(path).list()} == expected


def test_host_names_are_resolved_once_per_load_or_change(path: Path, dns: list[str]) -> None:
    """DNS is asked at load/add/update/reload, never by lookups; IP literals never reach it."""
    table = FileAeTitles(path)
    table.add(AeInfo("CT", "ct.example", 104))
    table.add(PEER)
    assert dns == ["ct.example"]
    for _ in range(100):
        assert table.addresses("CT") == frozenset({"192.0.2.1"})
        assert table.addresses("PEER") == frozenset({"10.0.0.1"})
    assert dns == ["ct.example"]
    table.update("CT", AeInfo("CT", "ct.example", 105))
    assert table.addresses("CT") == frozenset({"192.0.2.2"})
    FileAeTitles(path)
    table.reload()
    assert dns == ["ct.example"] * 4


def test_unresolvable_host_is_kept_with_no_addresses(path: Path) -> None:
    """A name that does not resolve is still a valid entry; it just matches no address."""
    table = FileAeTitles(path)
    table.add(AeInfo("GONE", "gone.invalid", 104))
    assert table.addresses("GONE") == frozenset()
    assert FileAeTitles(path).get("GONE") == AeInfo("GONE", "gone.invalid", 104)


def test_duplicate_is_reported_alongside_other_problems(path: Path) -> None:
    """A duplicate title is named even when the same entry has other bad fields."""
    write(path, entry_text() + entry_text(ae_title='"peer "', port="0"))
    with pytest.raises(AeTableFileError) as caught:
        FileAeTitles(path)
    assert [(p.entry, p.field) for p in caught.value.problems] == [(2, "ae_title"), (2, "port")]
    assert "differing only in letter case" in str(caught.value)
