"""The per-instance lock across servers (``index.lock_instance``) on SQLite: nothing to do.

An embedded index has this process as its only writer, which already serialises an instance
itself; the PostgreSQL lock is tested in ``test_postgres.py``.
"""

from __future__ import annotations

from pathlib import Path

from tests.storage.test_parts import _module

index = _module("index")


class _NoStatements:
    """A cursor that fails any statement."""

    def execute(self, *args: object) -> None:
        raise AssertionError(f"statement on SQLite: {args!r}")


def test_instance_lock_is_a_no_op_on_sqlite(tmp_path: Path) -> None:
    config = index.IndexConfig("", tmp_path / "index.sqlite", False)
    index.lock_instance(_NoStatements(), config, "1.2.3")
    index.unlock_instance(_NoStatements(), config, "1.2.3")
