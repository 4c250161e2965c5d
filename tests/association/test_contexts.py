"""SupportedContext validation and ContextTable merging."""

from __future__ import annotations

import pytest

from pacsref.association import ContextTable, SupportedContext, uid_label

from .helpers import CT_STORAGE, EXPLICIT, IMPLICIT, JPEG_BASELINE, JPEG_LOSSLESS, VERIFICATION


def test_supported_context_defaults_to_scp_only() -> None:
    """A declaration without roles means we serve the SOP class as SCP (PS3.7 D.3.3.4 default)."""
    ctx = SupportedContext(VERIFICATION, (IMPLICIT,))
    assert (ctx.scp_role, ctx.scu_role) == (True, False)


def test_supported_context_normalises_transfer_syntaxes_to_a_deduplicated_tuple() -> None:
    """A list is accepted, stored as a tuple, and repeats are dropped keeping first position."""
    ctx = SupportedContext(CT_STORAGE, [EXPLICIT, IMPLICIT, EXPLICIT])  # type: ignore[arg-type]
    assert ctx.transfer_syntaxes == (EXPLICIT, IMPLICIT)
    assert hash(ctx) == hash(SupportedContext(CT_STORAGE, (EXPLICIT, IMPLICIT)))


@pytest.mark.parametrize(
    ("syntax", "transfer_syntaxes", "scp", "scu"),
    [
        ("not-a-uid", (IMPLICIT,), True, False),
        (CT_STORAGE, (), True, False),
        (CT_STORAGE, ("1.2.x",), True, False),
        (CT_STORAGE, (IMPLICIT,), False, False),
    ],
    ids=["bad-abstract-syntax", "no-transfer-syntax", "bad-transfer-syntax", "no-role"],
)
def test_supported_context_rejects_unusable_declarations(
    syntax: str, transfer_syntaxes: tuple[str, ...], scp: bool, scu: bool
) -> None:
    """A declaration that could never be negotiated fails when the add-in is loaded."""
    with pytest.raises(ValueError):
        SupportedContext(syntax, transfer_syntaxes, scp_role=scp, scu_role=scu)


def test_table_merges_transfer_syntaxes_keeping_first_seen_preference() -> None:
    """Two add-ins declaring one SOP class: the first one's order leads, the second adds."""
    table = ContextTable(
        [
            SupportedContext(CT_STORAGE, (EXPLICIT, IMPLICIT)),
            SupportedContext(CT_STORAGE, (JPEG_LOSSLESS, IMPLICIT, JPEG_BASELINE)),
        ]
    )
    assert table[CT_STORAGE].transfer_syntaxes == (EXPLICIT, IMPLICIT, JPEG_LOSSLESS, JPEG_BASELINE)
    assert len(table) == 1


def test_table_merges_roles_with_or() -> None:
    """A storage SCP add-in and a C-GET (SCU) add-in together give both roles."""
    table = ContextTable(
        [
            SupportedContext(CT_STORAGE, (IMPLICIT,), scp_role=True, scu_role=False),
            SupportedContext(CT_STORAGE, (IMPLICIT,), scp_role=False, scu_role=True),
        ]
    )
    assert (table[CT_STORAGE].scp_role, table[CT_STORAGE].scu_role) == (True, True)


def test_table_lookup_and_iteration() -> None:
    """Lookup by abstract syntax; unknown ones are absent; iteration keeps declaration order."""
    table = ContextTable(
        [SupportedContext(VERIFICATION, (IMPLICIT,)), SupportedContext(CT_STORAGE, (IMPLICIT,))]
    )
    assert table.get("1.2.3") is None
    assert "1.2.3" not in table
    assert VERIFICATION in table
    assert table.abstract_syntaxes == (VERIFICATION, CT_STORAGE)
    assert [c.abstract_syntax for c in table] == [VERIFICATION, CT_STORAGE]
    with pytest.raises(KeyError):
        table["1.2.3"]


def test_merging_different_abstract_syntaxes_is_an_error() -> None:
    """merged_with is only meaningful for one SOP class."""
    with pytest.raises(ValueError):
        SupportedContext(VERIFICATION, (IMPLICIT,)).merged_with(
            SupportedContext(CT_STORAGE, (IMPLICIT,))
        )


def test_uid_label_names_registered_uids() -> None:
    """Log lines name well-known UIDs and fall back to the UID (or its repr if malformed)."""
    assert uid_label(CT_STORAGE) == f"CT Image Storage ({CT_STORAGE})"
    assert uid_label("1.2.3.4") == "1.2.3.4"
    assert uid_label("bogus") == "'bogus'"
