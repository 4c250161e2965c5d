"""negotiate(): the acceptor's answer to an A-ASSOCIATE-RQ (PS3.8 9.3.2/9.3.3, PS3.7 Annex D)."""

from __future__ import annotations

import dataclasses

import pytest

from pacsref.association import (
    AcceptedContext,
    AcceptorConfig,
    ContextTable,
    SupportedContext,
    choose_transfer_syntax,
    negotiate,
)
from pacsref.ul.constants import (
    DICOM_APPLICATION_CONTEXT,
    IMPLICIT_VR_LITTLE_ENDIAN,
    ContextResult,
    RejectReason,
    RejectResult,
    RejectSource,
)

from .helpers import (
    BIG_ENDIAN,
    CONFIG,
    CT_STORAGE,
    EXPLICIT,
    IMPLICIT,
    JPEG_BASELINE,
    JPEG_LOSSLESS,
    MR_STORAGE,
    PEER_IMPL_UID,
    UNKNOWN_SOP,
    VERIFICATION,
    accept_of,
    reject_of,
    request,
    results_by_id,
    table,
)

# --- the simple accept ------------------------------------------------------------------------


def test_verification_is_accepted_and_titles_are_echoed() -> None:
    """A plain C-ECHO proposal is accepted; the AC echoes called/calling AE as received
    (PS3.8 9.3.3) and carries the DICOM application context name."""
    result = negotiate(request((1, VERIFICATION, [IMPLICIT])), table(), CONFIG)
    ac = accept_of(result)
    assert (ac.called_ae_title, ac.calling_ae_title) == ("PACSREF", "STORESCU")
    assert ac.application_context == DICOM_APPLICATION_CONTEXT
    assert results_by_id(ac) == {1: (ContextResult.ACCEPTANCE, IMPLICIT)}
    assert result.accepted and result.reason == "" and result.refused == ()
    assert result.accepted_contexts == {1: AcceptedContext(VERIFICATION, IMPLICIT, False, True)}


def test_negotiated_association_records_what_later_layers_need() -> None:
    """The NegotiatedAssociation carries titles, both PDU limits, peer identity and contexts."""
    result = negotiate(
        request((1, VERIFICATION, [IMPLICIT]), (3, CT_STORAGE, [IMPLICIT]), max_pdu=65536),
        table(),
        CONFIG,
    )
    assoc = result.association
    assert assoc is not None
    assert (assoc.calling_ae_title, assoc.called_ae_title, assoc.our_ae_title) == (
        "STORESCU",
        "PACSREF",
        "PACSREF",
    )
    assert (assoc.peer_max_pdu_length, assoc.our_max_pdu_length) == (65536, 32768)
    assert (assoc.peer_implementation_class_uid, assoc.peer_implementation_version_name) == (
        PEER_IMPL_UID,
        "PEER_9",
    )
    assert assoc.accepted_transfer_syntaxes() == {1: IMPLICIT}
    assert [r.context_id for r in assoc.refused] == [3]
    assert assoc.context(1) == AcceptedContext(VERIFICATION, IMPLICIT, False, True)
    assert assoc.context(3) is None


def test_negotiated_contexts_are_read_only() -> None:
    """A frozen association cannot gain or lose contexts after negotiation."""
    assoc = negotiate(request((1, VERIFICATION, [IMPLICIT])), table(), CONFIG).association
    assert assoc is not None
    with pytest.raises(TypeError):
        assoc.contexts[3] = AcceptedContext(CT_STORAGE, IMPLICIT)  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        assoc.our_max_pdu_length = 1  # type: ignore[misc]


def test_contexts_for_finds_every_context_of_a_sop_class() -> None:
    """One SOP class may be accepted on several contexts, one per transfer syntax."""
    t = table(SupportedContext(CT_STORAGE, (EXPLICIT, IMPLICIT, JPEG_BASELINE)))
    req = request(
        (1, CT_STORAGE, [JPEG_BASELINE]), (3, CT_STORAGE, [IMPLICIT]), (5, VERIFICATION, [IMPLICIT])
    )
    assoc = negotiate(req, t, CONFIG).association
    assert assoc is not None
    found = assoc.contexts_for(CT_STORAGE)
    assert {cid: c.transfer_syntax for cid, c in found.items()} == {1: JPEG_BASELINE, 3: IMPLICIT}


def test_peer_other_items_are_kept_for_add_ins() -> None:
    """Uninterpreted sub-items (e.g. user identity, 0x58) are not answered but are kept."""
    items = ((0x58, b"\x01\x00\x00\x04user\x00\x00"),)
    result = negotiate(request((1, VERIFICATION, [IMPLICIT]), other_items=items), table(), CONFIG)
    assert result.association is not None and result.association.peer_other_items == items
    assert accept_of(result).user_information.other_items == ()


# --- association-level rejections ---------------------------------------------------------------


def test_unknown_application_context_is_rejected() -> None:
    """Another application context name -> RJ (1 permanent, 1 service-user, 2) (PS3.8 9.3.4)."""
    result = negotiate(
        request((1, VERIFICATION, [IMPLICIT]), application_context="1.2.3.4"), table(), CONFIG
    )
    rj = reject_of(result)
    assert (rj.result, rj.source, rj.reason) == (
        RejectResult.PERMANENT,
        RejectSource.SERVICE_USER,
        RejectReason.USER_APPLICATION_CONTEXT_NOT_SUPPORTED,
    )
    assert "1.2.3.4" in result.reason
    assert result.association is None and result.accepted_contexts == {}


def test_protocol_version_without_bit_zero_is_rejected() -> None:
    """Only bit 0 is tested (PS3.8 9.3.2): without it -> RJ (1, 2 ACSE, 2 protocol version)."""
    rj = reject_of(
        negotiate(request((1, VERIFICATION, [IMPLICIT]), protocol_version=2), table(), CONFIG)
    )
    assert (rj.result, rj.source, rj.reason) == (1, 2, 2)


def test_protocol_version_with_extra_bits_is_accepted() -> None:
    """Other version bits are ignored (PS3.8 9.3.2), so 0x0003 still negotiates version 1."""
    assert negotiate(
        request((1, VERIFICATION, [IMPLICIT]), protocol_version=3), table(), CONFIG
    ).accepted


@pytest.mark.parametrize("peer_max", [1, 2, 6])
def test_tiny_peer_max_pdu_is_rejected_cleanly(peer_max: int) -> None:
    """A nonzero peer Max PDU below 7 cannot carry one PDV byte -> RJ (1, 1, 1) saying so."""
    result = negotiate(request((1, VERIFICATION, [IMPLICIT]), max_pdu=peer_max), table(), CONFIG)
    rj = reject_of(result)
    assert (rj.result, rj.source, rj.reason) == (1, 1, 1)
    assert "max PDU" in result.reason and str(peer_max) in result.reason


@pytest.mark.parametrize("peer_max", [0, 7, 16384])
def test_usable_peer_max_pdu_is_recorded(peer_max: int) -> None:
    """0 (unlimited, PS3.8 D.1) and anything from 7 up is accepted and kept for sending."""
    result = negotiate(request((1, VERIFICATION, [IMPLICIT]), max_pdu=peer_max), table(), CONFIG)
    assert result.association is not None
    assert result.association.peer_max_pdu_length == peer_max


def test_no_accepted_context_rejects_the_association() -> None:
    """When every context is refused we reject (1, 1, 1), as DCMTK's DcmSCP does, and still
    report why each context was refused."""
    result = negotiate(
        request((1, UNKNOWN_SOP, [IMPLICIT]), (3, VERIFICATION, [JPEG_BASELINE])), table(), CONFIG
    )
    rj = reject_of(result)
    assert (rj.result, rj.source, rj.reason) == (1, 1, 1)
    assert "none of the 2" in result.reason
    # The reason (logged, and sent in AssociationRefused) names each refusal.
    assert "context 1 (" in result.reason and "abstract-syntax-not-supported" in result.reason
    assert "context 3 (" in result.reason and "transfer-syntaxes-not-supported" in result.reason
    assert [(r.context_id, r.result) for r in result.refused] == [
        (1, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED),
        (3, ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED),
    ]
    lines = result.log_lines()
    assert "rejected-permanent" in lines[0] and len(lines) == 3


def test_request_without_contexts_is_rejected() -> None:
    """A request proposing nothing cannot do anything -> RJ (1, 1, 1)."""
    result = negotiate(request(), table(), CONFIG)
    assert (reject_of(result).reason, result.reason) == (1, "no presentation context was proposed")


# --- presentation contexts -------------------------------------------------------------------


def test_mixed_accept_and_reject() -> None:
    """Each context is decided on its own: accepted, abstract syntax (3), transfer syntaxes (4);
    the AC answers every proposal, in request order."""
    t = table(SupportedContext(CT_STORAGE, (EXPLICIT, IMPLICIT)))
    req = request(
        (1, VERIFICATION, [IMPLICIT]),
        (3, UNKNOWN_SOP, [EXPLICIT, IMPLICIT]),
        (5, CT_STORAGE, [JPEG_BASELINE]),
        (7, CT_STORAGE, [IMPLICIT, EXPLICIT]),
    )
    result = negotiate(req, t, CONFIG)
    ac = accept_of(result)
    assert [r.context_id for r in ac.presentation_contexts] == [1, 3, 5, 7]
    assert results_by_id(ac) == {
        1: (ContextResult.ACCEPTANCE, IMPLICIT),
        3: (ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, EXPLICIT),
        5: (ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, JPEG_BASELINE),
        7: (ContextResult.ACCEPTANCE, EXPLICIT),
    }
    assert set(result.accepted_contexts) == {1, 7}
    refusals = {r.context_id: r for r in result.refused}
    assert "no installed add-in" in refusals[3].reason
    assert (
        "JPEG Baseline" in refusals[5].reason and "Explicit VR Little Endian" in refusals[5].reason
    )
    assert "transfer-syntaxes-not-supported (4)" in refusals[5].describe()


@pytest.mark.parametrize(
    ("ours", "proposed", "chosen"),
    [
        ((EXPLICIT, IMPLICIT), (IMPLICIT, EXPLICIT), EXPLICIT),
        ((IMPLICIT, EXPLICIT), (EXPLICIT, IMPLICIT), IMPLICIT),
        ((JPEG_LOSSLESS, EXPLICIT, IMPLICIT), (IMPLICIT, EXPLICIT, JPEG_LOSSLESS), JPEG_LOSSLESS),
        ((EXPLICIT, IMPLICIT), (BIG_ENDIAN, IMPLICIT), IMPLICIT),
    ],
    ids=["explicit-over-implicit", "implicit-over-explicit", "lossless-first", "only-overlap"],
)
def test_our_transfer_syntax_preference_wins(
    ours: tuple[str, ...], proposed: tuple[str, ...], chosen: str
) -> None:
    """Among the proposed transfer syntaxes, the first in OUR order is accepted (PS3.8 9.3.3.2
    lets the acceptor choose; the request order carries no preference)."""
    t = table(SupportedContext(CT_STORAGE, ours))
    result = negotiate(request((1, CT_STORAGE, proposed)), t, CONFIG)
    assert results_by_id(accept_of(result)) == {1: (ContextResult.ACCEPTANCE, chosen)}
    assert choose_transfer_syntax(ours, proposed) == chosen


def test_rejected_context_echoes_first_proposed_transfer_syntax() -> None:
    """The TS sub-item of a refused context is not significant (PS3.8 Table 9-18) but must be
    present: it is the first proposed transfer syntax."""
    ac = accept_of(
        negotiate(
            request((1, VERIFICATION, [IMPLICIT]), (3, MR_STORAGE, [JPEG_LOSSLESS, IMPLICIT])),
            table(),
            CONFIG,
        )
    )
    assert results_by_id(ac)[3] == (ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, JPEG_LOSSLESS)


@pytest.mark.parametrize("proposed", [(), ("not a uid",)], ids=["none", "malformed"])
def test_rejected_context_without_usable_ts_gets_implicit_vr_le(proposed: tuple[str, ...]) -> None:
    """With no proposed TS, or a malformed one, the placeholder is implicit VR little endian;
    a known SOP class with no proposed TS is refused with result 4."""
    result = negotiate(
        request((1, VERIFICATION, [IMPLICIT]), (3, CT_STORAGE, proposed)),
        table(SupportedContext(CT_STORAGE, (IMPLICIT,))),
        CONFIG,
    )
    assert results_by_id(accept_of(result))[3] == (
        ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED,
        IMPLICIT_VR_LITTLE_ENDIAN,
    )


def test_duplicate_context_id_later_proposal_is_refused_and_not_answered() -> None:
    """A repeated context ID: the first proposal is answered; the later one is refused with
    result 2 (no-reason) in the log list but left out of the AC, which stays unambiguous."""
    result = negotiate(
        request(
            (1, VERIFICATION, [IMPLICIT]),
            (3, CT_STORAGE, [IMPLICIT]),
            (1, VERIFICATION, [EXPLICIT]),
        ),
        table(),
        CONFIG,
    )
    ac = accept_of(result)
    assert [r.context_id for r in ac.presentation_contexts] == [1, 3]
    assert results_by_id(ac)[1] == (ContextResult.ACCEPTANCE, IMPLICIT)
    assert result.accepted_contexts[1].transfer_syntax == IMPLICIT
    dup = [r for r in result.refused if r.result == ContextResult.NO_REASON]
    assert [(r.context_id, r.abstract_syntax) for r in dup] == [(1, VERIFICATION)]
    assert "duplicate" in dup[0].reason


def test_duplicate_of_a_refused_context_does_not_get_accepted() -> None:
    """Only the first proposal with an ID counts, even if the duplicate would be acceptable."""
    result = negotiate(
        request(
            (3, VERIFICATION, [IMPLICIT]),
            (1, UNKNOWN_SOP, [IMPLICIT]),
            (1, VERIFICATION, [IMPLICIT]),
        ),
        table(),
        CONFIG,
    )
    assert results_by_id(accept_of(result))[1][0] == ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED
    assert set(result.accepted_contexts) == {3}


# --- user information ------------------------------------------------------------------------


@pytest.mark.parametrize("our_max", [0, 16384, 1 << 20])
def test_ac_announces_our_max_pdu_and_implementation(our_max: int) -> None:
    """The AC's Max PDU Length, Implementation Class UID and Version Name come from the config
    (PS3.8 D.1, PS3.7 D.3.3.2); 0 announces no limit."""
    config = dataclasses.replace(CONFIG, max_pdu_length=our_max)
    result = negotiate(request((1, VERIFICATION, [IMPLICIT])), table(), config)
    info = accept_of(result).user_information
    assert (
        info.max_pdu_length,
        info.implementation_class_uid,
        info.implementation_version_name,
    ) == (
        our_max,
        "1.2.3.999",
        "TEST_1",
    )
    assert result.association is not None and result.association.our_max_pdu_length == our_max


@pytest.mark.parametrize(
    ("proposed", "answered"),
    [(None, None), ((1, 1), (1, 1)), ((5, 3), (1, 1)), ((0, 0), (1, 1))],
    ids=["absent", "1-1", "5-3", "unlimited"],
)
def test_async_operations_window_answered_synchronously(
    proposed: tuple[int, int] | None, answered: tuple[int, int] | None
) -> None:
    """A proposed Asynchronous Operations Window is answered (1, 1), since we perform operations
    one at a time; without a proposal the sub-item is omitted (PS3.7 D.3.3.3)."""
    result = negotiate(
        request((1, VERIFICATION, [IMPLICIT]), async_operations=proposed), table(), CONFIG
    )
    assert accept_of(result).user_information.async_operations == answered


def test_acceptor_config_defaults_follow_the_contracts() -> None:
    """Defaults are pacsref's identity (docs/CONTRACTS.md) and a 128 KiB max PDU."""
    config = AcceptorConfig("PACSREF")
    assert config.implementation_class_uid == "2.25.301404248454960653866452990530993571449"
    assert config.implementation_version_name == "PACSREF_010"
    assert config.max_pdu_length == 131072


@pytest.mark.parametrize(
    "changes",
    [
        {"implementation_class_uid": "abc"},
        {"implementation_version_name": "X" * 17},
        {"max_pdu_length": 6},
        {"max_pdu_length": -1},
        {"ae_title": ""},
        {"ae_title": "A" * 17},
        {"ae_title": "BAD\\AE"},
    ],
)
def test_acceptor_config_rejects_bad_values(changes: dict[str, object]) -> None:
    """Misconfiguration fails when the config is built, not on the first association."""
    with pytest.raises(ValueError):
        dataclasses.replace(CONFIG, **changes)  # type: ignore[arg-type]


def test_log_lines_for_an_accepted_association_list_refusals() -> None:
    """log_lines() gives the verdict then one line per refused context, naming the SOP class."""
    result = negotiate(
        request((1, VERIFICATION, [IMPLICIT]), (3, MR_STORAGE, [IMPLICIT])), table(), CONFIG
    )
    lines = result.log_lines()
    assert lines[0] == "association accepted with 1 context(s)"
    assert (
        lines[1].startswith("context 3 (MR Image Storage (")
        and "abstract-syntax-not-supported" in lines[1]
    )


def test_context_table_is_consulted_not_mutated() -> None:
    """negotiate is a pure function: the same inputs give the same answer, twice."""
    t: ContextTable = table(SupportedContext(CT_STORAGE, (IMPLICIT,)))
    req = request((1, VERIFICATION, [IMPLICIT]), (3, CT_STORAGE, [EXPLICIT]))
    assert negotiate(req, t, CONFIG) == negotiate(req, t, CONFIG)
