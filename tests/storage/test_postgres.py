"""The storage index on PostgreSQL: runs only when a server is given in PACSREF_TEST_POSTGRES_DSN.

CI does not start PostgreSQL (docs/storage.md); set e.g.
``PACSREF_TEST_POSTGRES_DSN=postgresql://user:pw@127.0.0.1:5432/db`` and install the
``postgres`` extra to run it. The database must be empty or hold a pacsref index.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.storage.dicomgen import ROOT, make_instance
from tests.storage.helpers import associate, dataset_bytes, send_store, storage_harness

DSN = os.environ.get("PACSREF_TEST_POSTGRES_DSN", "")

pytestmark = pytest.mark.skipif(
    not DSN, reason="PostgreSQL index not tested: set PACSREF_TEST_POSTGRES_DSN to run it"
)


def test_store_indexes_into_postgresql(tmp_path: Path) -> None:
    """With index_dsn set, a store is indexed in PostgreSQL and check agrees."""
    pytest.importorskip("psycopg", reason="install the postgres extra: pip install .[postgres]")
    harness = storage_harness(tmp_path / "PACSREF", options=f'index_dsn = "{DSN}"\n')
    path = make_instance(tmp_path / "a.dcm", study_uid=generate_uid(ROOT),
                         series_uid=generate_uid(ROOT))  # fmt: skip
    uid = dcmread(path).SOPInstanceUID
    assert send_store(associate(harness), uid, dataset_bytes(path))[0][0x0900] == 0
    import psycopg

    with psycopg.connect(DSN) as db:
        rows = db.execute("SELECT calling_ae FROM instance WHERE sop_instance_uid = %s", (uid,))
        assert rows.fetchall() == [("MODALITY",)]
