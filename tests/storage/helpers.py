"""An in-memory pacsref with its storage add-in, driven synchronously (no threads, no sockets).

The storage add-in stores on the adbapi pool's threads; here that pool runs each job at once
on the test's thread, and the reactor is the harness Clock, so a C-STORE-RSP is on the "wire"
as soon as the last data PDV was fed in.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from pacsref.dimse import encode_command
from pacsref.testing.harness import Connection, ServerHarness, SyncPool, SyncReactor
from pacsref.ul import codec
from pacsref.ul.constants import PDUType
from pacsref.ul.events import DataTransfer, PresentationContextProposal, PresentationDataValue
from tests.server.helpers import associate_rq, responses

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"


#: TOML put before every harness's storage options; a test module sets it to run its tests
#: with each durability (``durability = "relaxed"`` stores small data sets inline).
DURABILITY_OPTION = ""

#: Whether a durable store of a small data set may run on the reactor thread, as it does on a
#: local disk (``addins/storage/inline.py``). Off by default, so that a test of the pool's
#: store sees it; a test module sets it to run its tests both ways.
DURABLE_INLINE = False


def storage_harness(
    server_dir: Path,
    options: str = "",
    settings: dict[str, object] | None = None,
    extra_addins: dict[str, str] | None = None,
    threadpool: Any = None,
    durable_inline: bool | None = None,
) -> ServerHarness:
    """A harness whose storage add-in has ``options`` (TOML text) and is started.

    ``threadpool`` runs the index pool's jobs: by default each at once (``SyncPool``); a
    ``ManualThreadPool`` holds them until the test runs them, so time can pass meanwhile.
    ``durable_inline``: whether durable stores may be inline (default :data:`DURABLE_INLINE`),
    whatever file system the test's directory is on.
    """
    options = DURABILITY_OPTION + options
    options_file = server_dir / "addin-options" / "storage.toml"
    addins = dict(extra_addins or {})
    if options:
        # Written through the add-in folder hook, before the add-ins are imported.
        addins["../addin-options/storage.toml"] = options
        options_file.parent.mkdir(parents=True)
    harness = ServerHarness(server_dir, settings=settings, extra_addins=addins)
    reactor = SyncReactor()
    harness.clock = reactor
    harness.server.threadpool = harness.threadpool  # type: ignore[assignment]
    from pacsref.server.factory import DicomServerFactory

    harness.factory = DicomServerFactory(harness.server, reactor)
    addin = storage(harness)
    addin.start(reactor=reactor, threadpool=threadpool or SyncPool())
    inline = DURABLE_INLINE if durable_inline is None else durable_inline
    addin._durable_gate = type(addin._durable_gate)("ext4" if inline else None)
    return harness


def storage(harness: ServerHarness) -> Any:
    """The harness server's storage add-in."""
    return next(a for a in harness.server.addins if a.name == "storage")


def dataset_bytes(path: Path) -> bytes:
    """The data set of a Part-10 file: everything after its file meta group."""
    data = path.read_bytes()
    (group_length,) = struct.unpack("<I", data[140:144])
    return data[144 + group_length :]


def associate(
    harness: ServerHarness, abstract_syntax: str = CT_IMAGE, ts: str = EXPLICIT
) -> Connection:
    """An association with one context (ID 1) for ``abstract_syntax``."""
    conn = harness.connect()
    proposal = PresentationContextProposal(1, abstract_syntax, (ts,))
    conn.send(associate_rq(calling="MODALITY", contexts=(proposal,)))
    [(pdu_type, body)] = conn.received()
    assert pdu_type is PDUType.A_ASSOCIATE_AC, body
    return conn


def send_store(
    conn: Connection,
    sop_instance_uid: str,
    data: bytes,
    *,
    sop_class_uid: str = CT_IMAGE,
    message_id: int = 1,
    chunk: int = 4000,
    complete: bool = True,
) -> list[dict[int, object]]:
    """Send a C-STORE-RQ with ``data`` in PDVs of ``chunk`` bytes; return the responses."""
    command = encode_command({
        0x0002: sop_class_uid, 0x0100: 0x0001, 0x0110: message_id, 0x0700: 0,
        0x0800: 0x0000, 0x1000: sop_instance_uid,
    })  # fmt: skip
    conn.send(codec.encode_p_data(DataTransfer((PresentationDataValue(1, True, True, command),))))
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] or [b""]
    if not complete:
        pieces = pieces[: max(1, len(pieces) // 2)]
    for n, piece in enumerate(pieces):
        last = complete and n == len(pieces) - 1
        pdv = PresentationDataValue(1, False, last, piece)
        conn.send(codec.encode_p_data(DataTransfer((pdv,))))
    return responses(conn.received())
