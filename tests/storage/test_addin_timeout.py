"""The add-in timeout against a durable store's point of no return (the rename).

Python cannot stop the pool thread a store runs on, so when the add-in timeout expires the
server answers 0x0110 and the thread runs on. Before the rename that answer must hold: the
store gives up and nothing is stored. After the rename the object will be stored, so the server
waits for the store's own outcome instead of telling the modality it failed. The pool is a
``ManualThreadPool``: the store "runs" when the test runs it, and time passes only with the
harness clock, here from inside the store (right before or right after its rename).
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pacsref.testing.harness import ManualThreadPool, ServerHarness
from tests.storage.dicomgen import ROOT, make_instance
from tests.storage.helpers import associate, dataset_bytes, send_store, storage, storage_harness

STATUS = 0x0900
TIMEOUT = 5.0


LISTENER = """
from zope.interface import implementer
from pacsref.addin import IAddin, IMessageNotification

SEEN = []

@implementer(IAddin, IMessageNotification)
class Listener:
    name = "listener"
    description = "records what it is told"
    def presentation_contexts(self):
        return ()
    def notify(self, message):
        SEEN.append(message)

listener = Listener()
"""


def _harness(tmp_path: Path, pool: ManualThreadPool) -> ServerHarness:
    return storage_harness(
        tmp_path / "PACSREF", 'durability = "fsync"\n',
        settings={"addin_timeout": TIMEOUT}, threadpool=pool,
        extra_addins={"listener.py": LISTENER},
    )  # fmt: skip


def _seen(harness: ServerHarness) -> list[Any]:
    """What the listener add-in was notified of (notifications run on the server's pool)."""
    harness.threadpool.run_all()
    listener = next(a for a in harness.server.addins if a.name == "listener")
    return sys.modules[type(listener).__module__].SEEN  # type: ignore[no-any-return]


def _instance(tmp_path: Path) -> tuple[str, bytes]:
    path = make_instance(
        tmp_path / "in" / "a.dcm", study_uid=generate_uid(ROOT), series_uid=generate_uid(ROOT),
        transfer_syntax=ExplicitVRLittleEndian,
    )  # fmt: skip
    return dcmread(path).SOPInstanceUID, dataset_bytes(path)


def _rows(server_dir: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(server_dir / "data" / "index.sqlite") as db:
        return db.execute("SELECT sop_instance_uid FROM instance").fetchall()


def _addin_module(harness: ServerHarness) -> Any:
    return sys.modules[type(storage(harness)).__module__]


def _advance_around_rename(
    harness: ServerHarness, monkeypatch: pytest.MonkeyPatch, *, before: bool
) -> list[str]:
    """Make the clock pass the add-in timeout right before or right after the store's rename."""
    module = _addin_module(harness)
    real_rename = module.durable_rename
    order: list[str] = []

    def rename(*args: Any) -> None:
        if before:
            harness.clock.advance(TIMEOUT + 1)
            order.append("timeout")
        real_rename(*args)
        order.append("rename")
        if not before:
            harness.clock.advance(TIMEOUT + 1)
            order.append("timeout")

    monkeypatch.setattr(module, "durable_rename", rename)
    return order


def test_timeout_before_the_store_runs_stores_nothing(tmp_path: Path) -> None:
    """The timeout expires while the store waits for a thread: 0x0110, nothing stored later."""
    pool = ManualThreadPool()
    harness = _harness(tmp_path, pool)
    uid, data = _instance(tmp_path)
    conn = associate(harness)
    assert send_store(conn, uid, data) == []  # the store waits for a pool thread
    harness.clock.advance(TIMEOUT + 1)
    [rsp] = [r for r in _responses(conn)]
    assert rsp[STATUS] == 0x0110
    pool.run_all()  # the thread gets to run the store after all
    assert _responses(conn) == []
    server_dir = tmp_path / "PACSREF"
    assert list((server_dir / "data").glob("*/*.dcm")) == []
    assert _rows(server_dir) == []


def test_timeout_just_before_the_rename_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store reached its point of no return after the timeout: it gives up, unrenamed."""
    pool = ManualThreadPool()
    harness = _harness(tmp_path, pool)
    module = _addin_module(harness)
    real_rename = module.durable_rename
    renamed: list[object] = []
    monkeypatch.setattr(module, "durable_rename", lambda *a: renamed.append(real_rename(*a)))
    real_find = module.sql.find_path

    def find_path_then_time_out(*args: Any) -> object:
        found = real_find(*args)
        # The timer fires between lookup and rename. Answering 0x0110 makes the server delete
        # the spool file, but on a real thread the rename may come before that deletion:
        # the spool file is put back to model that interleaving, so only the point of no
        # return can keep the store from happening.
        [spool] = list(spool_dir.glob("pacsref-dimse-*"))
        keep = spool.with_name("kept-" + spool.name)
        os.link(spool, keep)
        harness.clock.advance(TIMEOUT + 1)
        keep.replace(spool)
        return found

    monkeypatch.setattr(module.sql, "find_path", find_path_then_time_out)
    spool_dir = storage(harness)._spool_dir
    uid, data = _instance(tmp_path)
    conn = associate(harness)
    assert send_store(conn, uid, data) == []
    pool.run_all()
    [rsp] = _responses(conn)
    assert rsp[STATUS] == 0x0110
    assert renamed == []
    server_dir = tmp_path / "PACSREF"
    assert list((server_dir / "data").glob("*/*.dcm")) == []
    assert _rows(server_dir) == []


def test_timeout_after_the_rename_waits_for_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_lines: list[str]
) -> None:
    """Past the rename the object will be stored: the peer hears 0x0000, not 0x0110."""
    pool = ManualThreadPool()
    harness = _harness(tmp_path, pool)
    order = _advance_around_rename(harness, monkeypatch, before=False)
    uid, data = _instance(tmp_path)
    conn = associate(harness)
    assert send_store(conn, uid, data) == []
    pool.run_all()
    assert order == ["rename", "timeout"]
    [rsp] = _responses(conn)
    assert rsp[STATUS] == 0x0000
    server_dir = tmp_path / "PACSREF"
    [stored] = list((server_dir / "data").glob("*/*.dcm"))
    assert dataset_bytes(stored) == data
    assert _rows(server_dir) == [(uid,)]
    assert any("past its point of no return; waiting for its outcome" in line for line in log_lines)


def test_timeout_after_the_rename_still_reports_a_failed_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiting past the timeout delivers the store's outcome, a failure included."""
    pool = ManualThreadPool()
    harness = _harness(tmp_path, pool)
    _advance_around_rename(harness, monkeypatch, before=False)
    module = _addin_module(harness)

    def failing_record(*args: Any, **kw: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(module.sql, "record", failing_record)
    uid, data = _instance(tmp_path)
    conn = associate(harness)
    send_store(conn, uid, data)
    pool.run_all()
    [rsp] = _responses(conn)
    assert rsp[STATUS] == 0x0110
    assert "disk I/O error" in str(rsp.get(0x0902, ""))
    server_dir = tmp_path / "PACSREF"
    assert list((server_dir / "data").glob("*/*.dcm")) == []  # the file went with the row
    assert _rows(server_dir) == []


@pytest.mark.parametrize("when", ["before", "during-fsync", "after"])
def test_association_ending_around_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_lines: list[str], when: str
) -> None:
    """The peer goes away while its store runs. Before the point of no return (here: right
    after the duplicate lookup): nothing is stored. Past it, during the spool file's flush
    (the session must not delete the spool file it is about to rename) or after the rename:
    the store completes, indexed, and the notification subscribers hear of it."""
    pool = ManualThreadPool()
    harness = _harness(tmp_path, pool)
    module = _addin_module(harness)
    real_rename, real_find = module.durable_rename, module.sql.find_path
    real_make_durable = module.HeldSpool.make_durable
    conns: list[Any] = []

    def find_path(*args: Any) -> object:
        found = real_find(*args)
        if when == "before":
            conns[0].lose()
        return found

    def make_durable(held: Any) -> None:
        real_make_durable(held)
        if when == "during-fsync":
            conns[0].lose()

    def rename(*args: Any) -> None:
        real_rename(*args)
        if when == "after":
            conns[0].lose()

    monkeypatch.setattr(module.sql, "find_path", find_path)
    monkeypatch.setattr(module.HeldSpool, "make_durable", make_durable)
    monkeypatch.setattr(module, "durable_rename", rename)
    uid, data = _instance(tmp_path)
    conns.append(associate(harness))
    assert send_store(conns[0], uid, data) == []
    pool.run_all()
    harness.clock.advance(TIMEOUT * 2)
    server_dir = tmp_path / "PACSREF"
    stored = list((server_dir / "data").glob("*/*.dcm"))
    seen = _seen(harness)
    if when == "before":
        assert stored == [] and _rows(server_dir) == []
        assert [m.dataset for m in seen] == [None]
    else:
        assert len(stored) == 1 and _rows(server_dir) == [(uid,)]
        [message] = seen
        assert message.dataset is not None and message.dataset.SOPInstanceUID == uid
        assert any("its outcome is kept" in line for line in log_lines)
    assert not any("Processing failure" in line for line in log_lines)
    assert not any("did not finish within" in line for line in log_lines)  # no timer left


def _responses(conn: Any) -> list[dict[int, object]]:
    from tests.server.helpers import responses

    return responses(conn.received())
