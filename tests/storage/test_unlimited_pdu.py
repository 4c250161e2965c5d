"""A whole data set in one P-DATA-TF, as a peer may send it when we announce no maximum.

With ``max_pdu_length = 0`` (no limit, PS3.8 D.1) pynetdicom's SCU sends a data set as one
PDU. The upper layer passes such a PDU on in pieces as it arrives (``pacsref.ul.framing``,
``STREAM_ABOVE``), so the data set still goes to its spool file as it comes and is never held
in memory whole; the object stored is byte for byte what was sent.
"""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pacsref.dimse import encode_command
from pacsref.ul import codec
from pacsref.ul.events import DataTransfer, PresentationDataValue
from pacsref.ul.framing import STREAM_ABOVE
from tests.server.helpers import responses
from tests.storage.dicomgen import ROOT, make_instance
from tests.storage.helpers import CT_IMAGE, associate, dataset_bytes, storage_harness

READ = 65536  # what Twisted's TCP transport reads at a time


def test_a_data_set_in_one_pdu_is_stored_without_holding_the_pdu(tmp_path: Path) -> None:
    server_dir = tmp_path / "PACSREF"
    harness = storage_harness(server_dir, settings={"max_pdu_length": 0})
    path = make_instance(
        tmp_path / "in" / "big.dcm", study_uid=generate_uid(ROOT), series_uid=generate_uid(ROOT),
        rows=1024, cols=1024, transfer_syntax=ExplicitVRLittleEndian,
    )  # fmt: skip
    uid, data = dcmread(path).SOPInstanceUID, dataset_bytes(path)
    assert len(data) > 2 * STREAM_ABOVE
    conn = associate(harness)
    command = encode_command({
        0x0002: CT_IMAGE, 0x0100: 0x0001, 0x0110: 1, 0x0700: 0, 0x0800: 0x0000, 0x1000: uid,
    })  # fmt: skip
    pdu = codec.encode_p_data(
        DataTransfer((
            PresentationDataValue(1, True, True, command),
            PresentationDataValue(1, False, True, data),
        ))
    )  # fmt: skip
    most = 0
    for start in range(0, len(pdu), READ):
        conn.send(pdu[start : start + READ])
        most = max(most, conn.protocol.ul.buffered)
    assert most < 64, most  # at most a PDV header waits; the PDU is never held
    [response] = responses(conn.received())
    assert response[0x0900] == 0x0000
    [stored] = sorted((server_dir / "data").glob("*/*.dcm"))
    assert dataset_bytes(stored) == data
