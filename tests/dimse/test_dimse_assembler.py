"""MessageAssembler: PDVs -> DimseMessage with the data set spooled (PS3.7 6.3, PS3.8 E.2)."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from twisted.logger import LogLevel, formatEvent

from pacsref.dimse import (
    MAX_COMMAND_FRAGMENTS,
    MAX_COMMAND_SET_LENGTH,
    SPOOL_PREFIX,
    CommandField,
    DimseMessage,
    DimseProtocolError,
    MessageAssembler,
    encode_command,
    fragment_message,
)
from pacsref.dimse.spool import SpoolWriter
from pacsref.ul.events import PresentationDataValue as PDV

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"

ECHO_RQ = encode_command({0x0002: "1.2.840.10008.1.1", 0x0100: 0x0030, 0x0110: 1, 0x0800: 0x0101})
STORE_RQ = encode_command(
    {
        0x0002: CT_IMAGE,
        0x0100: 0x0001,
        0x0110: 5,
        0x0700: 0,
        0x0800: 0x0001,
        0x1000: "1.2.3.4",
    }
)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    """A dedicated spool directory."""
    directory = tmp_path / "spool"
    directory.mkdir()
    return directory


@pytest.fixture
def assembler(spool: Path) -> MessageAssembler:
    """An assembler with contexts 1 (Explicit LE) and 3 (Implicit LE) accepted."""
    return MessageAssembler(spool, {1: EXPLICIT_LE, 3: IMPLICIT_LE})


def pieces(data: bytes, size: int) -> Iterator[tuple[bytes, bool]]:
    """Split ``data`` into (chunk, is_last) pairs of at most ``size`` bytes."""
    chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    for index, chunk in enumerate(chunks):
        yield chunk, index == len(chunks) - 1


def feed_all(assembler: MessageAssembler, pdvs: list[PDV]) -> list[DimseMessage]:
    """Feed PDVs and collect the completed messages."""
    return [m for m in (assembler.feed(p) for p in pdvs) if m is not None]


def test_single_fragment_echo_is_returned_without_dataset(assembler: MessageAssembler) -> None:
    """A one-PDV C-ECHO-RQ completes immediately with no spool file."""
    message = assembler.feed(PDV(1, True, True, ECHO_RQ))

    assert message is not None
    assert message.command_field == CommandField.C_ECHO_RQ
    assert message.message_id == 1
    assert message.affected_sop_class_uid == "1.2.840.10008.1.1"
    assert message.dataset_path is None
    assert not message.has_dataset
    assert message.transfer_syntax == EXPLICIT_LE
    assert not assembler.in_progress


def test_many_fragment_command_and_dataset_are_reassembled_and_spooled(
    assembler: MessageAssembler, spool: Path
) -> None:
    """A command split in 7-byte PDVs and a 100 kB data set in 1000-byte PDVs reassemble exactly.

    The data set lands in one file inside spool_dir, named with the recognisable prefix.
    """
    dataset = os.urandom(100_000)
    pdvs = [PDV(3, True, last, chunk) for chunk, last in pieces(STORE_RQ, 7)]
    pdvs += [PDV(3, False, last, chunk) for chunk, last in pieces(dataset, 1000)]

    results = [assembler.feed(p) for p in pdvs]

    assert results[:-1] == [None] * (len(pdvs) - 1)
    message = results[-1]
    assert message is not None
    assert message.command_field == CommandField.C_STORE_RQ
    assert message.affected_sop_instance_uid == "1.2.3.4"
    assert message.context_id == 3
    assert message.transfer_syntax == IMPLICIT_LE
    assert message.dataset_path is not None
    assert message.dataset_path.parent == spool
    assert message.dataset_path.name.startswith(SPOOL_PREFIX)
    assert message.dataset_path.read_bytes() == dataset
    assert list(spool.iterdir()) == [message.dataset_path]


def test_dataset_is_written_fragment_by_fragment_not_buffered(
    assembler: MessageAssembler,
) -> None:
    """Before the last fragment the spool file already exists and grows (streamed, not held)."""
    assembler.feed(PDV(1, True, True, STORE_RQ))
    for _ in range(5):
        assembler.feed(PDV(1, False, False, b"x" * 100_000))
    path = assembler.spool_path

    assert path is not None and path.exists()
    assert path.stat().st_size >= 400_000  # at most one buffer's worth not yet flushed
    message = assembler.feed(PDV(1, False, True, b"end"))
    assert message is not None and message.dataset_path == path
    assert path.stat().st_size == 500_003


def test_consecutive_messages_reuse_the_assembler(assembler: MessageAssembler) -> None:
    """After a message completes the next one starts cleanly, on any accepted context."""
    first = assembler.feed(PDV(1, True, True, ECHO_RQ))
    assembler.feed(PDV(3, True, True, STORE_RQ))
    second = assembler.feed(PDV(3, False, True, b"\x08\x00"))
    third = assembler.feed(PDV(1, True, True, ECHO_RQ))

    assert first is not None and second is not None and third is not None
    assert second.dataset_path is not None and second.dataset_path.read_bytes() == b"\x08\x00"


def test_discard_deletes_the_spool_file(assembler: MessageAssembler) -> None:
    """DimseMessage.discard() removes the data set file and is idempotent."""
    assembler.feed(PDV(1, True, True, STORE_RQ))
    message = assembler.feed(PDV(1, False, True, b"data"))
    assert message is not None and message.dataset_path is not None
    path = message.dataset_path

    message.discard()
    message.discard()

    assert not path.exists()
    assert message.dataset_path is None


def test_discard_of_an_undeletable_spool_file_warns_once_and_never_raises(
    assembler: MessageAssembler,
    monkeypatch: pytest.MonkeyPatch,
    log_events: list[dict[str, Any]],
) -> None:
    """A spool file system gone read-only: discard() returns, the file is left behind with
    one warning naming it and the error (no traceback), and a second call stays silent."""
    assembler.feed(PDV(1, True, True, STORE_RQ))
    message = assembler.feed(PDV(1, False, True, b"data"))
    assert message is not None and message.dataset_path is not None
    path = message.dataset_path
    real_unlink = Path.unlink

    def read_only(self: Path, missing_ok: bool = False) -> None:
        if self == path:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", read_only)

    message.discard()
    message.discard()

    assert path.exists() and message.dataset_path is None
    [warning] = [e for e in log_events if e.get("kind") == "spool.undeletable"]
    assert warning["log_level"] is LogLevel.warn and "log_failure" not in warning
    assert warning["file"] == str(path) and warning["errno"] == errno.EROFS
    line = formatEvent(warning)
    assert str(path) in line and os.strerror(errno.EROFS) in line and "EROFS" in line
    assert [e for e in log_events if "log_failure" in e] == []


def test_held_spool_file_survives_discard_until_released(assembler: MessageAssembler) -> None:
    """A held spool file (a handler past its point of no return still moves it) is kept
    through discard(), and deleted by release_spool() if the handler left it."""
    assembler.feed(PDV(1, True, True, STORE_RQ))
    message = assembler.feed(PDV(1, False, True, b"data"))
    assert message is not None and message.dataset_path is not None
    path = message.dataset_path
    message.hold_spool()
    message.discard()
    assert path.exists() and message.dataset_path == path
    message.release_spool()
    assert not path.exists()
    assert message.dataset_path is None


def test_pdv_for_unaccepted_context_names_the_id(assembler: MessageAssembler) -> None:
    """A PDV on a context the association did not accept is a protocol error naming it."""
    with pytest.raises(DimseProtocolError, match=r"presentation context 5, which was not accepted"):
        assembler.feed(PDV(5, True, True, ECHO_RQ))


def test_dataset_pdv_without_announcing_command_is_refused(assembler: MessageAssembler) -> None:
    """A data set PDV when no command announced one (idle, or after 0x0101) is an error."""
    with pytest.raises(DimseProtocolError, match=r"no command announced a data set"):
        assembler.feed(PDV(1, False, True, b"data"))
    assembler.feed(PDV(1, True, True, ECHO_RQ))
    with pytest.raises(DimseProtocolError, match=r"no command announced a data set"):
        assembler.feed(PDV(1, False, True, b"data"))


def test_dataset_pdv_before_last_command_fragment_is_refused(
    assembler: MessageAssembler,
) -> None:
    """Data set fragments may only follow the complete command set (PS3.8 E.2)."""
    assembler.feed(PDV(1, True, False, STORE_RQ[:10]))

    with pytest.raises(DimseProtocolError, match=r"before the last command fragment"):
        assembler.feed(PDV(1, False, True, b"data"))


def test_command_pdv_during_dataset_is_refused_and_spool_removed(
    assembler: MessageAssembler, spool: Path
) -> None:
    """A new command while a data set is in progress is an error; the partial file goes."""
    assembler.feed(PDV(1, True, True, STORE_RQ))
    assembler.feed(PDV(1, False, False, b"partial"))

    with pytest.raises(
        DimseProtocolError, match=r"command PDV .* while the data set of a C-STORE-RQ"
    ):
        assembler.feed(PDV(1, True, True, ECHO_RQ))
    assert list(spool.iterdir()) == []
    assert not assembler.in_progress


def test_pdv_on_other_context_mid_message_is_refused(
    assembler: MessageAssembler, spool: Path
) -> None:
    """Fragments of one message must share its context (no interleaving, PS3.7 6.3.1)."""
    assembler.feed(PDV(1, True, True, STORE_RQ))
    assembler.feed(PDV(1, False, False, b"partial"))

    with pytest.raises(DimseProtocolError, match=r"context 3 while the message on .* context 1"):
        assembler.feed(PDV(3, False, True, b"rest"))
    assert list(spool.iterdir()) == []


def test_command_fragments_on_other_context_are_refused(assembler: MessageAssembler) -> None:
    """The context check also applies between command fragments."""
    assembler.feed(PDV(1, True, False, ECHO_RQ[:8]))

    with pytest.raises(DimseProtocolError, match=r"presentation context 3 while"):
        assembler.feed(PDV(3, True, True, ECHO_RQ[8:]))


def test_command_set_over_64_kib_is_refused(assembler: MessageAssembler) -> None:
    """Command fragments beyond MAX_COMMAND_SET_LENGTH are refused before buffering more."""
    chunk = b"\x00" * 16384
    with pytest.raises(DimseProtocolError, match=r"command set too large"):
        for _ in range(MAX_COMMAND_SET_LENGTH // len(chunk) + 1):
            assembler.feed(PDV(1, True, False, chunk))
    assert not assembler.in_progress


def test_command_set_in_too_many_fragments_is_refused(assembler: MessageAssembler) -> None:
    """Empty fragments add nothing to the length: their number is bounded instead."""
    with pytest.raises(DimseProtocolError, match=r"command set in too many fragments"):
        for _ in range(MAX_COMMAND_FRAGMENTS + 1):
            assembler.feed(PDV(1, True, False, b""))
    assert not assembler.in_progress


def test_undecodable_command_set_is_a_protocol_error(assembler: MessageAssembler) -> None:
    """A command set that is not valid Implicit VR LE group 0000 raises with the codec detail."""
    with pytest.raises(DimseProtocolError, match=r"undecodable command set: .*expected 2 for US"):
        assembler.feed(PDV(1, True, True, b"\x00\x00\x00\x01\x03\x00\x00\x00abc"))


def test_missing_elements_and_unknown_command_field_are_returned_not_raised(
    assembler: MessageAssembler,
) -> None:
    """Semantic problems are the caller's to answer with a status, not assembler errors."""
    unknown = assembler.feed(PDV(1, True, True, encode_command({0x0100: 0x0055, 0x0110: 2})))
    bare = assembler.feed(PDV(1, True, True, encode_command({0x0110: 3})))

    assert unknown is not None and unknown.command_field == 0x0055
    assert bare is not None and bare.command_field is None and bare.message_id == 3


def test_abort_deletes_partial_spool_and_resets(assembler: MessageAssembler, spool: Path) -> None:
    """abort() mid data set closes and deletes the file; the next message assembles normally."""
    assembler.feed(PDV(1, True, True, STORE_RQ))
    assembler.feed(PDV(1, False, False, b"half"))
    assert len(list(spool.iterdir())) == 1

    assembler.abort()
    assembler.abort()

    assert list(spool.iterdir()) == []
    assert not assembler.in_progress
    assert assembler.feed(PDV(1, True, True, ECHO_RQ)) is not None


def test_abort_during_command_fragments_discards_them(assembler: MessageAssembler) -> None:
    """abort() also forgets buffered command fragments."""
    assembler.feed(PDV(1, True, False, ECHO_RQ[:8]))

    assembler.abort()

    assert assembler.feed(PDV(1, True, True, ECHO_RQ)) is not None


class FailingWrites:
    """Stands in for the spool file object on a file system that fails writes."""

    def __init__(self, real: object, error: int = errno.ENOSPC) -> None:
        self.real = real
        self.error = error
        self.writes = 0

    def write(self, data: bytes) -> int:
        self.writes += 1
        raise OSError(self.error, os.strerror(self.error))

    def flush(self) -> None:
        raise OSError(self.error, os.strerror(self.error))

    def close(self) -> None:
        self.real.close()  # type: ignore[attr-defined]

    def abandon(self) -> None:
        self.real.abandon()  # type: ignore[attr-defined]


def test_vanished_spool_directory_delivers_the_message_as_spool_failed(
    assembler: MessageAssembler, spool: Path
) -> None:
    """No spool file can be created: the data set is dropped, the message carries the error."""
    shutil.rmtree(spool)

    assert assembler.feed(PDV(1, True, True, STORE_RQ)) is None
    assert assembler.feed(PDV(1, False, False, b"a" * 100)) is None
    message = assembler.feed(PDV(1, False, True, b"b" * 10))

    assert message is not None and not assembler.in_progress
    assert message.dataset_path is None
    failure = message.spool_failure
    assert failure is not None
    assert failure.path == str(spool)
    assert failure.errno == errno.ENOENT
    assert not failure.disk_full
    assert "No such file" in str(failure)


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_write_error_deletes_the_spool_file_and_discards_the_rest(
    assembler: MessageAssembler, spool: Path, monkeypatch: pytest.MonkeyPatch, error: int
) -> None:
    """A write error mid data set: the partial file goes at once, later PDVs are dropped."""
    assembler.feed(PDV(1, True, True, STORE_RQ))
    assert assembler.feed(PDV(1, False, False, b"first")) is None
    path = assembler.spool_path
    assert path is not None and path.exists()
    failing = FailingWrites(assembler._spool, error)
    monkeypatch.setattr(assembler, "_spool", failing)

    assert assembler.feed(PDV(1, False, False, b"second")) is None
    assert list(spool.iterdir()) == []  # deleted at the failure, not at the end
    assert assembler.feed(PDV(1, False, False, b"third")) is None
    message = assembler.feed(PDV(1, False, True, b"last"))

    assert failing.writes == 1  # nothing written after the failure
    assert message is not None and message.command_field == CommandField.C_STORE_RQ
    assert message.message_id == 5 and message.dataset_path is None
    failure = message.spool_failure
    assert failure is not None and failure.path == str(path) and failure.errno == error
    assert failure.disk_full == (error != errno.EIO)
    assert failure.error_comment.startswith(
        "spool disk full: " if error != errno.EIO else "spool write failed: "
    )
    assert list(spool.iterdir()) == []


def test_error_on_the_last_pdv_delivers_at_once(
    assembler: MessageAssembler, spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure on the last PDV (or its flush) completes the message there."""
    assembler.feed(PDV(1, True, True, STORE_RQ))
    monkeypatch.setattr(assembler, "_spool", FailingWrites(assembler._spool))

    message = assembler.feed(PDV(1, False, True, b"only"))

    assert message is not None and message.spool_failure is not None
    assert not assembler.in_progress
    assert list(spool.iterdir()) == []


def test_next_message_after_a_spool_failure_is_spooled_normally(
    assembler: MessageAssembler, spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once space returns the next data set is spooled into a fresh file."""
    assembler.feed(PDV(1, True, True, STORE_RQ))
    monkeypatch.setattr(assembler, "_spool", FailingWrites(assembler._spool))
    failed = assembler.feed(PDV(1, False, True, b"lost"))
    assert failed is not None and failed.spool_failure is not None

    assembler.feed(PDV(1, True, True, STORE_RQ))
    message = assembler.feed(PDV(1, False, True, b"kept"))

    assert message is not None and message.spool_failure is None
    assert message.dataset_path is not None
    assert message.dataset_path.read_bytes() == b"kept"
    message.discard()


def test_part10_header_write_error_is_a_spool_failure(
    spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC on the Part-10 header (written with the command) is handled the same way."""
    from pacsref.dimse import FileMetaIdentity

    assembler = MessageAssembler(
        spool, {1: EXPLICIT_LE}, part10=FileMetaIdentity("1.2.3", "PACSREF", "MODALITY")
    )

    def full_disk_spool(fd: int) -> FailingWrites:
        return FailingWrites(SpoolWriter(fd))

    monkeypatch.setattr("pacsref.dimse.assembler.SpoolWriter", full_disk_spool)
    assert assembler.feed(PDV(1, True, True, STORE_RQ)) is None
    assert list(spool.iterdir()) == []
    message = assembler.feed(PDV(1, False, True, b"data"))

    assert message is not None and message.spool_failure is not None
    assert message.dataset_offset == 0
    assert message.spool_failure.errno == errno.ENOSPC


def test_command_pdv_after_a_spool_failure_is_still_a_protocol_error(
    assembler: MessageAssembler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dropping a failed data set does not relax the fragment rules."""
    assembler.feed(PDV(1, True, True, STORE_RQ))
    monkeypatch.setattr(assembler, "_spool", FailingWrites(assembler._spool))
    assembler.feed(PDV(1, False, False, b"lost"))

    with pytest.raises(DimseProtocolError, match=r"command PDV .* while the data set"):
        assembler.feed(PDV(1, True, True, ECHO_RQ))
    assert not assembler.in_progress


def test_pynetdicom_store_message_assembles(assembler: MessageAssembler) -> None:
    """PDVs produced by pynetdicom's encode_msg (max PDU 100) assemble to the same message."""
    primitive = C_STORE()
    primitive.MessageID = 9
    primitive.AffectedSOPClassUID = CT_IMAGE
    primitive.AffectedSOPInstanceUID = "1.2.3.4.5.6"
    primitive.Priority = 0
    dataset = bytes(range(256)) * 10
    primitive.DataSet = BytesIO(dataset)
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    pdvs = []
    for pdata in message.encode_msg(1, 100):
        for context_id, value in pdata.presentation_data_value_list:
            pdvs.append(PDV(context_id, bool(value[0] & 1), bool(value[0] & 2), value[1:]))

    (result,) = feed_all(assembler, pdvs)

    assert result.message_id == 9
    assert result.affected_sop_instance_uid == "1.2.3.4.5.6"
    assert result.dataset_path is not None and result.dataset_path.read_bytes() == dataset


@pytest.mark.parametrize("peer_max", [7, 8, 50, 1000, 16384, 0])
def test_fragmenter_output_reassembles_to_the_original(
    assembler: MessageAssembler, peer_max: int
) -> None:
    """fragment_message -> assembler gives back the same command and data set bytes."""
    dataset = os.urandom(5000)

    (result,) = feed_all(assembler, list(fragment_message(3, STORE_RQ, dataset, peer_max)))

    assert encode_command(result.command) == STORE_RQ
    assert result.dataset_path is not None and result.dataset_path.read_bytes() == dataset


def test_fragmenter_stream_output_reassembles(assembler: MessageAssembler, tmp_path: Path) -> None:
    """A file-like data set fragmented from disk reassembles byte for byte."""
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(70_001))

    with source.open("rb") as stream:
        (result,) = feed_all(assembler, list(fragment_message(1, STORE_RQ, stream, 4096)))

    assert result.dataset_path is not None
    assert result.dataset_path.read_bytes() == source.read_bytes()
