"""The PostgreSQL server the storage tests may use, and the rules for when there is none.

``.ci/run`` starts a throwaway PostgreSQL and sets PACSREF_TEST_POSTGRES_DSN; tox passes it
through and installs the ``postgres`` extra (psycopg). Without either, a test that needs them
skips, saying so; under ``CI=true`` it fails instead (like the DCMTK rule,
:func:`pacsref.testing.dcmtk.in_ci`), so a CI run never passes with the PostgreSQL path
untested.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from pacsref.testing.dcmtk import in_ci

DSN = os.environ.get("PACSREF_TEST_POSTGRES_DSN", "")


def psycopg_or_skip() -> Any:
    """psycopg, when a server is configured; else skip (fail under ``CI=true``)."""
    if not DSN:
        reason = "PostgreSQL index not tested: set PACSREF_TEST_POSTGRES_DSN to run it"
        if in_ci():
            pytest.fail(reason + " (.ci/run starts one)")
        pytest.skip(reason)
    try:
        import psycopg
    except ImportError:
        reason = "psycopg missing: install the postgres extra (pip install .[postgres])"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    return psycopg


@contextlib.contextmanager
def new_database(psycopg: Any) -> Iterator[str]:
    """A DSN naming a new, empty database, dropped afterwards (a check sees only its rows)."""
    name = f"pacsref_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(DSN, autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(DSN)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(DSN, autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
