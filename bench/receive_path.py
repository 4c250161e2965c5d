"""CPU per received C-STORE on the receive path alone: upper layer and DIMSE assembler, no sockets.

    python bench/receive_path.py [--objects 100] [--size 524288] [--read 65536] [--runs 5]
                                 [--pdu 16384]

The bytes storescu would send for ``--objects`` C-STORE-RQs of ``--size`` bytes each (P-DATA-TF
PDUs of ``--pdu`` bytes: storescu sends PDUs as long as the server announces, up to 131,072)
are cut into reads of ``--read`` bytes, as the
reactor delivers them, and fed to an established :class:`~pacsref.ul.machine.UpperLayer`; every
PDV goes to a :class:`~pacsref.dimse.assembler.MessageAssembler` spooling into a temporary
directory, and each completed message's spool file is deleted. The figure is process CPU time
per object and per PDU, best and median of ``--runs``: no network, no thread, no index, so it
moves only when the receive path's own code does, which makes it the measure to compare two
versions of that code by (the end-to-end benchmarks spread by 30-50 % on a shared machine).

The upper layer is put into Sta6 directly (with context 1 accepted and our maximum PDU length),
as tests/ul/test_fuzz.py does, rather than through an association negotiation that would
measure nothing of interest here.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pacsref.dimse.assembler import MessageAssembler
from pacsref.dimse.command import encode_command
from pacsref.ul.constants import Role
from pacsref.ul.effects import Indicate
from pacsref.ul.events import DataTransfer
from pacsref.ul.machine import UpperLayer
from pacsref.ul.states import State

MAX_PDU = 16384
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _pdu(context_id: int, control: int, data: bytes) -> bytes:
    item = struct.pack(">LBB", len(data) + 2, context_id, control) + data
    return struct.pack(">BxL", 4, len(item)) + item


def stream(objects: int, size: int, max_pdu: int = MAX_PDU) -> tuple[bytes, int]:
    """The P-DATA-TF bytes of ``objects`` C-STORE-RQs of ``size`` bytes in PDUs of at most
    ``max_pdu`` bytes after their header; (bytes, PDU count)."""
    out = bytearray()
    pdus = 0
    chunk = max_pdu - 6  # PDV item header 6 (the 6-byte PDU header is not counted, PS3.8 9.3.5)
    for n in range(objects):
        command = encode_command({
            0x0002: CT_IMAGE, 0x0100: 0x0001, 0x0110: n % 65535 + 1, 0x0700: 0,
            0x0800: 0x0000, 0x1000: f"1.2.826.0.1.3680043.9.7.9.{n}",
        })  # fmt: skip
        out += _pdu(1, 3, command)
        pdus += 1
        left = size
        while left > 0:
            piece = min(chunk, left)
            left -= piece
            out += _pdu(1, 2 if left == 0 else 0, b"\0" * piece)
            pdus += 1
    return bytes(out), pdus


def run_once(reads: list[bytes], spool_dir: Path, max_pdu: int = MAX_PDU) -> tuple[float, int]:
    """CPU seconds to receive ``reads``; messages completed."""
    ul = UpperLayer(Role.ACCEPTOR)
    ul.state = State.Sta6  # what accepting the association would leave (see the docstring)
    ul._accepted_ids = frozenset({1})
    ul._framer.max_pdata_length = max_pdu
    assembler = MessageAssembler(spool_dir, {1: EXPLICIT_LE})
    messages = 0
    started = time.process_time()
    for data in reads:
        for effect in ul.receive_data(data):
            if type(effect) is Indicate and type(effect.primitive) is DataTransfer:
                for pdv in effect.primitive.values:
                    message = assembler.feed(pdv)
                    if message is not None:
                        messages += 1
                        message.discard()
    return time.process_time() - started, messages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=100)
    parser.add_argument("--size", type=int, default=512 * 1024, help="data set bytes each")
    parser.add_argument("--read", type=int, default=65536, help="bytes per reactor read")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pdu", type=int, default=MAX_PDU,
                        help="P-DATA-TF length the sender uses (default 16384; DCMTK's "
                        "storescu sends up to 131072 if the server announces that)")  # fmt: skip
    args = parser.parse_args()
    data, pdus = stream(args.objects, args.size, args.pdu)
    reads = [data[i : i + args.read] for i in range(0, len(data), args.read)]
    spool_dir = Path(tempfile.mkdtemp(prefix="pacsref-receive-"))
    try:
        times = []
        for _ in range(args.runs):
            seconds, messages = run_once(reads, spool_dir, args.pdu)
            if messages != args.objects:
                raise SystemExit(f"receive_path: {messages} of {args.objects} messages completed")
            times.append(seconds)
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
    for label, seconds in (("best", min(times)), ("median", statistics.median(times))):
        print(f"{label}: {seconds / args.objects * 1e6:.0f} us CPU per object, "
              f"{seconds / pdus * 1e6:.1f} us per PDU")  # fmt: skip
    print(f"({args.objects} objects of {args.size} bytes, {pdus} PDUs of at most {args.pdu} bytes, "
          f"reads of {args.read} "
          f"bytes, {args.runs} runs)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
