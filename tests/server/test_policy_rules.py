"""The acceptance policy as a pure function: each rule, each A-ASSOCIATE-RJ, and their order.

:func:`pacsref.association.policy.decide` takes plain values, so every rule is
pinned here without a server; ``test_acceptance.py`` checks the same rules on
the wire.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pacsref.association.policy import (
    PolicyView,
    Refusal,
    Rule,
    decide,
    normalize_ip,
    same_address,
)
from pacsref.ul.events import AssociateRequest, PresentationContextProposal, UserInformation


@dataclass(frozen=True)
class Settings:
    ae_title: str = "PACSREF"
    check_called_ae_title: bool = True
    allow_anonymous: bool = True
    max_clients: int = 10
    multiple_connections: bool = True


@dataclass(frozen=True)
class Entry:
    ae_title: str
    host: str


def _rq(
    called: str = "PACSREF",
    calling: str = "MODALITY",
    context: str = "1.2.840.10008.3.1.1.1",
) -> AssociateRequest:
    return AssociateRequest(
        called_ae_title=called,
        calling_ae_title=calling,
        presentation_contexts=(PresentationContextProposal(1, "1.2.840.10008.1.1", ("1.2",)),),
        user_information=UserInformation(16384, "1.2.3"),
        application_context=context,
    )


def _view(
    table: dict[str, str] | None = None,
    resolved: dict[str, frozenset[str]] | None = None,
    associated: set[tuple[str, str]] | None = None,
    **kwargs: object,
) -> PolicyView:
    settings = Settings(**{k: v for k, v in kwargs.items() if k in Settings.__annotations__})
    rest = {k: v for k, v in kwargs.items() if k not in Settings.__annotations__}
    entries = {title: Entry(title, host) for title, host in (table or {}).items()}
    return PolicyView(
        settings=settings,
        ae_lookup=entries.get,
        entry_addresses=lambda e: (resolved or {}).get(e.host),
        associated_from=lambda ae, ip: (ae, ip) in (associated or set()),
        **rest,  # type: ignore[arg-type]
    )


def _triple(refusal: Refusal | None) -> tuple[int, int, int] | None:
    if refusal is None:
        return None
    r = refusal.reject
    return (int(r.result), int(r.source), int(r.reason))


def test_default_server_accepts() -> None:
    """A well-formed request to a fresh server (anonymous allowed) passes the policy."""
    assert decide(_rq(), "10.0.0.1", _view()) is None


@pytest.mark.parametrize(
    ("request_", "view", "triple", "rule"),
    [
        (_rq(context="1.2.3.4"), _view(), (1, 1, 2), Rule.APPLICATION_CONTEXT),
        (_rq(called="OTHER"), _view(), (1, 1, 7), Rule.CALLED_AE),
        (_rq(), _view(paused=True), (2, 3, 1), Rule.PAUSED),
        (_rq(), _view(max_clients=3, associated_count=3), (2, 3, 2), Rule.MAX_CLIENTS),
        (_rq(), _view(allow_anonymous=False), (1, 1, 3), Rule.CALLING_AE),
        (_rq(), _view(table={"MODALITY": "10.9.9.9"}), (1, 1, 3), Rule.CALLING_HOST),
        (_rq(), _view(table={"MODALITY": "ct.example"}), (1, 1, 3), Rule.CALLING_HOST_UNRESOLVED),
        (
            _rq(),
            _view(multiple_connections=False, associated={("MODALITY", "10.0.0.1")}),
            (2, 3, 2),
            Rule.MULTIPLE_CONNECTIONS,
        ),
    ],
    ids=[
        "application-context-1-1-2",
        "called-ae-1-1-7",
        "paused-2-3-1",
        "max-clients-2-3-2",
        "unknown-calling-ae-1-1-3",
        "calling-ae-wrong-host-1-1-3",
        "calling-host-unresolved-1-1-3",
        "multiple-connections-2-3-2",
    ],
)
def test_each_rule_gives_its_reject(
    request_: AssociateRequest, view: PolicyView, triple: tuple[int, int, int], rule: Rule
) -> None:
    """Each rule refuses with its PS3.8 9.3.4 triple and names itself and the reason."""
    refusal = decide(request_, "10.0.0.1", view)
    assert _triple(refusal) == triple
    assert refusal is not None and refusal.rule is rule and refusal.why


def test_a_stopping_server_says_stopping_not_paused() -> None:
    """A graceful stop refuses like a pause, but the reason must not send the administrator
    looking for who paused the server (and a Resume would not help)."""
    for view in (_view(stopping=True), _view(stopping=True, paused=True)):
        refusal = decide(_rq(), "10.0.0.1", view)
        assert _triple(refusal) == (2, 3, 1)
        assert refusal is not None and refusal.rule is Rule.PAUSED
        assert refusal.why == "the server is stopping"
    paused = decide(_rq(), "10.0.0.1", _view(paused=True))
    assert paused is not None and paused.why == "the server is paused"


def test_called_ae_not_checked_when_setting_off() -> None:
    """check_called_ae_title off: any called AE title passes."""
    assert decide(_rq(called="ANY-SCP"), "10.0.0.1", _view(check_called_ae_title=False)) is None


def test_max_clients_counts_other_connections_only() -> None:
    """With Max Clients 3, two other connections leave room; three do not."""
    assert decide(_rq(), "10.0.0.1", _view(max_clients=3, associated_count=2)) is None
    assert _triple(decide(_rq(), "10.0.0.1", _view(max_clients=3, associated_count=3))) == (
        2,
        3,
        2,
    )


def test_known_calling_ae_from_its_host_accepted_with_anonymous_off() -> None:
    """Anonymous off: a calling AE in the table, connecting from its registered IP, passes."""
    view = _view(allow_anonymous=False, table={"MODALITY": "10.0.0.1"})
    assert decide(_rq(), "10.0.0.1", view) is None


def test_known_calling_ae_checked_by_resolved_host_name() -> None:
    """A host name in the table is compared through its resolved addresses."""
    view = _view(
        allow_anonymous=False,
        table={"MODALITY": "ct.example"},
        resolved={"ct.example": frozenset({"10.0.0.1", "fd00::1"})},
    )
    assert decide(_rq(), "10.0.0.1", view) is None
    assert _triple(decide(_rq(), "10.0.0.2", view)) == (1, 1, 3)


def test_known_calling_ae_from_wrong_host_refused_even_with_anonymous_on() -> None:
    """The table binds a title to its host: anonymous access does not let others borrow it."""
    view = _view(allow_anonymous=True, table={"MODALITY": "10.0.0.1"})
    assert decide(_rq(calling="STRANGER"), "10.0.0.2", view) is None
    refusal = decide(_rq(), "10.0.0.2", view)
    assert refusal is not None and refusal.rule is Rule.CALLING_HOST


def test_ipv4_mapped_peer_matches_ipv4_entry() -> None:
    """A peer seen as ::ffff:10.0.0.1 (dual-stack listener) matches an entry 10.0.0.1."""
    view = _view(allow_anonymous=False, table={"MODALITY": "10.0.0.1"})
    assert decide(_rq(), "::ffff:10.0.0.1", view) is None
    assert normalize_ip("::ffff:10.0.0.1") == "10.0.0.1"
    assert same_address("fd00::1", "FD00:0:0::1", None) is True


def test_multiple_connections_rule_is_per_ae_and_ip() -> None:
    """Multiple Connections off refuses the same AE from the same IP only."""
    view = _view(multiple_connections=False, associated={("MODALITY", "10.0.0.1")})
    assert decide(_rq(), "10.0.0.2", view) is None
    assert decide(_rq(calling="OTHER"), "10.0.0.1", view) is None
    allowed = _view(multiple_connections=True, associated={("MODALITY", "10.0.0.1")})
    assert decide(_rq(), "10.0.0.1", allowed) is None


@pytest.mark.parametrize(
    ("request_", "view", "rule"),
    [
        # application context before called AE
        (_rq(called="OTHER", context="1.2.3"), _view(), Rule.APPLICATION_CONTEXT),
        # called AE (permanent) before paused (transient)
        (_rq(called="OTHER"), _view(paused=True), Rule.CALLED_AE),
        # paused before max clients
        (_rq(), _view(paused=True, max_clients=1, associated_count=5), Rule.PAUSED),
        # max clients before the calling AE: an overloaded server consults no table
        (_rq(), _view(max_clients=1, associated_count=1, allow_anonymous=False), Rule.MAX_CLIENTS),
        # calling AE before multiple connections
        (
            _rq(),
            _view(
                allow_anonymous=False,
                multiple_connections=False,
                associated={("MODALITY", "10.0.0.1")},
            ),
            Rule.CALLING_AE,
        ),
    ],
    ids=["context>called", "called>paused", "paused>max", "max>calling", "calling>multiple"],
)
def test_rule_order(request_: AssociateRequest, view: PolicyView, rule: Rule) -> None:
    """When several rules apply, the earlier one in the documented order answers."""
    refusal = decide(request_, "10.0.0.1", view)
    assert refusal is not None and refusal.rule is rule


def test_overloaded_server_does_not_consult_the_table() -> None:
    """At Max Clients the AE table is not asked (load shedding costs nothing)."""
    asked: list[str] = []

    def lookup(title: str) -> None:
        asked.append(title)

    view = PolicyView(settings=Settings(max_clients=1), associated_count=1, ae_lookup=lookup)
    assert decide(_rq(), "10.0.0.1", view) is not None
    assert asked == []
