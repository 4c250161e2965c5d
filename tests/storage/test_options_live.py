"""The storage add-in's options through IAddInOptions: declared, live where they can be."""

from __future__ import annotations

from pathlib import Path

from zope.interface.verify import verifyObject

from pacsref.addin import IAddInOptions
from tests.storage.helpers import associate, send_store, storage, storage_harness
from tests.storage.test_store import STATUS, _instance


def test_duplicates_applies_live_and_durability_waits_for_a_restart(tmp_path: Path) -> None:
    """Changed while serving: the duplicates policy is used at once; the index keeps its
    durability (and DSN) until the next start, as the declaration says."""
    harness = storage_harness(tmp_path / "PACSREF")
    addin = storage(harness)
    verifyObject(IAddInOptions, addin)
    schema = addin.options_declaration
    assert [o.name for o in schema.options if not o.live] == ["durability", "index_dsn"]
    uid, data = _instance(tmp_path, "a.dcm")
    conn = associate(harness)
    assert send_store(conn, uid, data)[0][STATUS] == 0x0000
    new = schema.validate({"duplicates": "refuse", "durability": "relaxed"}, addin="storage",
                          source="test")  # fmt: skip
    addin.options_changed(new)
    assert send_store(conn, uid, data, message_id=2)[0][STATUS] == 0x0111
    assert addin.options.duplicates == "refuse"
    assert addin.options.durability == "fsync" and addin.config.durable
