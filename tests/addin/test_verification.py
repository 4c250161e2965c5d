"""The shipped Verification SOP Class add-in (addins/verification.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from zope.interface.verify import verifyObject

from pacsref.addin import IAddin, IEchoHandler, SupportedContext, load_addins
from tests.addin.helpers import make_request

SOURCE = Path(__file__).resolve().parents[2] / "addins" / "verification.py"


@pytest.fixture(scope="module")
def addin() -> object:
    """The verification add-in as a server loads it: from a folder, not as a package."""
    result = load_addins(SOURCE.parent, entry_point_group=None, strict=True)
    [found] = [a for a in result.addins if a.name == "verification"]
    return found


def test_provides_addin_and_echo_handler(addin: object) -> None:
    """The module-level instance is a verified IAddin and IEchoHandler."""
    assert verifyObject(IAddin, addin)
    assert verifyObject(IEchoHandler, addin)


def test_declares_verification_with_four_transfer_syntaxes(addin: object) -> None:
    """One SCP context for 1.2.840.10008.1.1 with the four uncompressed/deflated syntaxes."""
    assert tuple(addin.presentation_contexts()) == (  # type: ignore[attr-defined]
        SupportedContext(
            "1.2.840.10008.1.1",
            (
                "1.2.840.10008.1.2.1",
                "1.2.840.10008.1.2",
                "1.2.840.10008.1.2.2",
                "1.2.840.10008.1.2.1.99",
            ),
            scp_role=True,
            scu_role=False,
        ),
    )


def test_echo_answers_success(addin: object) -> None:
    """Every C-ECHO gets status 0x0000."""
    assert addin.handle_echo(make_request()) == 0x0000  # type: ignore[attr-defined]


def test_imports_only_public_pacsref_api() -> None:
    """A shipped add-in is self-contained: outside the stdlib/zope it uses only pacsref.addin."""
    tree = ast.parse(SOURCE.read_text())
    modules = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert modules <= {"__future__", "zope.interface", "pacsref.addin"}
