"""Every package in the source tree ships in the wheel.

pyproject.toml lists packages explicitly (the shipped add-ins are mapped from
``addins/`` to ``pacsref.shipped_addins``); a package missing from that list
works from a checkout but not after ``pip install .``, which is how tox and
users run pacsref. This test catches that before CI does.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _source_packages() -> set[str]:
    found = set()
    for top in ("pacsref", "simulators", "conformance"):
        for init in (ROOT / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(ROOT).parts))
    for init in (ROOT / "addins").rglob("__init__.py"):
        parts = init.parent.relative_to(ROOT / "addins").parts
        found.add(".".join(("pacsref", "shipped_addins", *parts)))
    return {name for name in found if "__pycache__" not in name}


def test_every_package_is_in_pyproject() -> None:
    """Every directory with an __init__.py in pacsref/, addins/, simulators/, conformance/ ships."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    assert _source_packages() - listed == set()
