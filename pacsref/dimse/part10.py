"""The DICOM file header (PS3.10 7.1) that turns a spooled C-STORE data set into a Part-10 file.

The assembler writes this header into a C-STORE-RQ's spool file *before* the first data set
byte arrives: everything it holds (SOP Class and Instance UIDs from the command, the
presentation context's transfer syntax, our identity, the calling AE title) is known once the
command set is decoded. A storage SCP can then keep the spool file as the stored object with one
fsync and one rename, never a copy (DESIGN.md, "Storage and index").

The group is encoded by hand (Explicit VR Little Endian, PS3.10 7.1) rather than with pydicom:
it is ~200 bytes built once per C-STORE on the reactor thread, and a hand encoder costs a few
microseconds where building and writing a pydicom ``FileMetaDataset`` costs a hundred.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["PREAMBLE", "FileMetaIdentity", "encode_file_meta", "part10_header"]

#: 128-byte preamble (all zero: PS3.10 7.1 leaves it to the application) and the DICM prefix.
PREAMBLE = b"\x00" * 128 + b"DICM"


@dataclass(frozen=True, slots=True)
class FileMetaIdentity:
    """Who writes the file: our Implementation Class UID and Version Name, and the Source AE.

    Attributes:
        implementation_class_uid: (0002,0012), from the server settings.
        implementation_version_name: (0002,0013), from the server settings.
        source_ae_title: (0002,0016): the calling AE title of the association the
            object arrived on (PS3.10 7.1: "the DICOM AE Title of the AE which wrote
            this file's content").
    """

    implementation_class_uid: str
    implementation_version_name: str
    source_ae_title: str


def _element(tag_element: int, vr: bytes, value: bytes) -> bytes:
    """One explicit-VR LE element of group 0002 with a 2-byte length (UI, SH, AE)."""
    return struct.pack("<HH2sH", 0x0002, tag_element, vr, len(value)) + value


def _text(value: str, pad: bytes) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + pad if len(raw) % 2 else raw


def encode_file_meta(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, who: FileMetaIdentity
) -> bytes:
    """The File Meta Information group (0002,xxxx) including its group length, no preamble.

    UIDs are padded with NUL and texts with a space to even length (PS3.5 6.2). Values are
    written as given; validating them is the storage SCP's job (it refuses bad UIDs with a
    failure status before anything is kept).
    """
    body = b"".join(
        (
            struct.pack("<HH2sHI", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01",
            _element(0x0002, b"UI", _text(sop_class_uid, b"\x00")),
            _element(0x0003, b"UI", _text(sop_instance_uid, b"\x00")),
            _element(0x0010, b"UI", _text(transfer_syntax, b"\x00")),
            _element(0x0012, b"UI", _text(who.implementation_class_uid, b"\x00")),
            _element(0x0013, b"SH", _text(who.implementation_version_name, b" ")),
            _element(0x0016, b"AE", _text(who.source_ae_title.strip(), b" ")),
        )
    )
    return struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body)) + body


def part10_header(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, who: FileMetaIdentity
) -> bytes:
    """Preamble, ``DICM`` and the file meta group: what precedes the data set in a Part-10 file."""
    return PREAMBLE + encode_file_meta(sop_class_uid, sop_instance_uid, transfer_syntax, who)
