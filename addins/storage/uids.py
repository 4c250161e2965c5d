"""UID checks and the storage layout: nothing from a peer becomes a path unchecked.

A stored object's path is ``<data>/<hh>/<SOP Instance UID>.dcm`` where ``hh`` is the first two
hex digits of the SHA-1 of the SOP Instance UID. Why by SOP Instance UID alone: the path is
known from the command before the data set is parsed, a duplicate lands on the same path (so
"overwrite" is one atomic rename and never leaves two files for one instance), and ``check`` can
tell a misplaced file from its name. One level of 256 buckets, all created when the add-in
starts, means a store never creates a directory (a mkdir plus an fsync of its parent cost about
1 ms each on the disks we measured, more than the rest of a small store); a million objects
make ~4,000 files per bucket, which ext4 and XFS index as a tree. The UID is checked first
(PS3.5 9.1: digits and dots, at most 64 characters, no empty component), so it can never hold
``/``, ``..`` or a NUL and the path always stays under the data root. A leading zero in a
component (also forbidden by PS3.5 9.1) is tolerated: real modalities send such UIDs, and they
are harmless in a path.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

__all__ = ["BUCKETS", "STORED_SUFFIX", "stored_name", "stored_path", "uid_problem"]

#: File name suffix of stored objects.
STORED_SUFFIX = ".dcm"

_DIGITS = frozenset("0123456789")
#: A valid UID in one C call (ASCII digits only); four checks per C-STORE are on the hot path.
_VALID_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")


def uid_problem(value: object) -> str | None:
    """Why ``value`` is not a valid UID (PS3.5 9.1), or None if it is one.

    A trailing NUL (the UI padding byte, PS3.5 6.2) is removed by the decoders before
    this is called; a value still holding one is invalid.
    """
    if isinstance(value, str) and len(value) <= 64 and _VALID_UID.fullmatch(value):
        return None
    if not isinstance(value, str) or not value:
        return "is empty"
    if len(value) > 64:
        return f"is {len(value)} characters long (at most 64)"
    if not set(value) <= _DIGITS | {"."}:  # first: "../x" is foreign text, not a bad number
        return "holds characters other than digits and dots"
    for component in value.split("."):
        if not component:
            return "has an empty component"
    return None


#: The bucket directories under the data root.
BUCKETS = tuple(f"{i:02x}" for i in range(256))


def stored_name(sop_instance_uid: str) -> str:
    """``<hh>/<uid>.dcm``: the stored file's path under the data root, as the index keeps it.

    The UID must have passed :func:`uid_problem`. A string, so that a store builds one
    ``Path`` from it rather than two and then takes it apart again for the index row.
    """
    digest = hashlib.sha1(sop_instance_uid.encode("ascii"), usedforsecurity=False).hexdigest()
    return f"{digest[:2]}/{sop_instance_uid}{STORED_SUFFIX}"


def stored_path(data_root: Path, sop_instance_uid: str) -> Path:
    """Where ``sop_instance_uid`` is stored; the UID must have passed :func:`uid_problem`."""
    return data_root / stored_name(sop_instance_uid)
