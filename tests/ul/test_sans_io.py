"""pacsref.ul stays sans-IO: it imports no networking, timer or threading code."""

from __future__ import annotations

import ast
from pathlib import Path

import pacsref.ul

FORBIDDEN = {"twisted", "socket", "threading", "time", "asyncio", "select", "selectors"}


def test_ul_imports_no_io() -> None:
    """No module of pacsref.ul imports twisted, socket, threading, time or an event loop."""
    package = Path(pacsref.ul.__file__).parent
    offenders = []
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
