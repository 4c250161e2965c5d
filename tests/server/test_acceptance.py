"""The acceptance policy, pause/resume, limits and association hooks on the wire (in memory).

Each test drives the real factory and protocol through StringTransport and a
Clock (see :mod:`pacsref.testing.harness`) and checks the exact PDU a peer
receives, plus the notification and the registry state the server keeps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pacsref.addin import AeInfo
from pacsref.server.notifications import AssociationRefused
from pacsref.testing.harness import Connection, ServerHarness
from pacsref.ul import codec
from pacsref.ul.constants import PDUType
from pacsref.ul.events import (
    AssociateRequest,
    PresentationContextProposal,
    UserInformation,
)

from .helpers import IMPLICIT, VERIFICATION, associate_rq, echo_rq, responses

HOOK_SYNTAX = "1.2.826.0.1.3680043.9.7.9"


def _harness(tmp_path: Path, **settings: object) -> ServerHarness:
    values = {"artim_timeout": 10.0, "client_timeout": 60.0, "addin_timeout": 5.0, **settings}
    return ServerHarness(tmp_path / "PACSREF", settings=values)


def _associated(harness: ServerHarness, **kwargs: Any) -> Connection:
    conn = harness.connect(**{k: kwargs.pop(k) for k in ("host", "port") if k in kwargs})
    conn.send(associate_rq(**kwargs))
    kinds = [t for t, _ in conn.received()]
    assert kinds == [PDUType.A_ASSOCIATE_AC]
    return conn


def _rejected(conn: Connection, rq: bytes) -> tuple[int, int, int]:
    """Send ``rq``; the answer must be exactly one A-ASSOCIATE-RJ, sent at once."""
    conn.send(rq)
    [(pdu_type, body)] = conn.received()
    assert pdu_type is PDUType.A_ASSOCIATE_RJ
    return (body[1], body[2], body[3])


def _refusals(harness: ServerHarness) -> list[AssociationRefused]:
    return [e for e in harness.events if isinstance(e, AssociationRefused)]


def _rq_with(**fields: Any) -> bytes:
    values: dict[str, Any] = {
        "called_ae_title": "PACSREF",
        "calling_ae_title": "MODALITY",
        "presentation_contexts": (PresentationContextProposal(1, VERIFICATION, (IMPLICIT,)),),
        "user_information": UserInformation(16384, "1.2.826.0.1.3680043.9.1"),
        **fields,
    }
    return codec.encode_associate_rq(AssociateRequest(**values))


# -- one test per rule and refusal triple ----------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "setup", "rq", "triple", "rule"),
    [
        ({}, None, _rq_with(protocol_version=2), (1, 2, 2), "protocol-version"),
        ({}, None, _rq_with(application_context="1.2.3.4"), (1, 1, 2), "application-context"),
        ({}, None, associate_rq(called="NOTME"), (1, 1, 7), "called-ae-title"),
        ({}, "pause", associate_rq(), (2, 3, 1), "paused"),
        ({"max_clients": 1}, "fill", associate_rq(), (2, 3, 2), "max-clients"),
        ({"allow_anonymous": False}, None, associate_rq(), (1, 1, 3), "calling-ae-title"),
        ({}, "wrong-host", associate_rq(), (1, 1, 3), "calling-host"),
        (
            {"multiple_connections": False},
            "same-ae",
            associate_rq(),
            (2, 3, 2),
            "multiple-connections",
        ),
    ],
    ids=[
        "protocol-version",
        "application-context",
        "called-ae",
        "paused",
        "max-clients",
        "unknown-calling-ae",
        "calling-ae-wrong-host",
        "multiple-connections",
    ],
)
def test_each_refusal_on_the_wire(
    tmp_path: Path,
    settings: dict[str, object],
    setup: str | None,
    rq: bytes,
    triple: tuple[int, int, int],
    rule: str,
) -> None:
    """Every rule answers with its exact A-ASSOCIATE-RJ at once, and notifies it with the rule."""
    harness = _harness(tmp_path, **settings)
    if setup == "pause":
        harness.control.pause()
    elif setup in ("fill", "same-ae"):
        _associated(harness, port=50000)
    elif setup == "wrong-host":
        harness.server.ae_titles.add(AeInfo("MODALITY", "10.1.2.3", 104))
    conn = harness.connect()
    assert _rejected(conn, rq) == triple
    [refused] = _refusals(harness)
    assert refused.reject == triple and refused.rule == rule and refused.why
    assert refused.client is conn.client and conn.client.state == "ended"
    harness.clock.advance(10)  # ARTIM bounds the wait for the peer to close
    assert conn.closed


def test_a_graceful_stop_refuses_saying_the_server_is_stopping(tmp_path: Path) -> None:
    """The stop passes its own state to the policy: (2, 3, 1), reason "stopping"."""
    harness = _harness(tmp_path)
    harness.control.begin_stop(30.0)
    conn = harness.connect()
    assert _rejected(conn, associate_rq()) == (2, 3, 1)
    [refused] = _refusals(harness)
    assert refused.rule == "paused" and refused.why == "the server is stopping"


def test_refused_association_frees_its_place(tmp_path: Path) -> None:
    """A refused request gives back its Max Clients place at once, before the peer closes."""
    harness = _harness(tmp_path, max_clients=1)
    conn = harness.connect()
    assert _rejected(conn, associate_rq(called="NOTME")) == (1, 1, 7)
    _associated(harness, port=40001)


# -- pause / resume -----------------------------------------------------------------------


def test_pause_refuses_new_associations_existing_ones_carry_on(tmp_path: Path) -> None:
    """Paused: a new association gets (2, 3, 1); one already open still gets its C-ECHOs
    answered and can release; resume restores service."""
    harness = _harness(tmp_path)
    existing = _associated(harness)
    harness.control.pause()
    assert harness.control.paused
    assert _rejected(harness.connect(port=40001), associate_rq()) == (2, 3, 1)
    existing.send(echo_rq(message_id=2))
    assert responses(existing.received())[0][0x0900] == 0
    harness.control.resume()
    assert not harness.control.paused
    _associated(harness, port=40002)
    existing.send(codec.RELEASE_RQ)
    assert [t for t, _ in existing.received()] == [PDUType.A_RELEASE_RP]
    names = harness.event_names()
    assert names.index("ServerPaused") < names.index("AssociationRefused")
    assert names.index("AssociationRefused") < names.index("ServerResumed")


def test_pause_and_resume_are_idempotent(tmp_path: Path) -> None:
    """Pausing twice publishes one ServerPaused; resuming a running server does nothing."""
    harness = _harness(tmp_path)
    harness.control.resume()
    harness.control.pause()
    harness.control.pause()
    harness.control.resume()
    assert harness.event_names() == ["ServerPaused", "ServerResumed"]


# -- Max Clients ------------------------------------------------------------------------------


def test_max_clients_n_then_the_next_is_refused_promptly(tmp_path: Path) -> None:
    """Max Clients 3: three associations are accepted; the fourth connection is accepted
    at TCP level and its A-ASSOCIATE-RQ answered (2, 3, 2) at once, with no timer."""
    harness = _harness(tmp_path, max_clients=3)
    held = [_associated(harness, port=50000 + i) for i in range(3)]
    extra = harness.connect(port=50003)
    assert not extra.client.admitted
    assert _rejected(extra, associate_rq()) == (2, 3, 2)
    held[0].send(echo_rq())
    assert responses(held[0].received())[0][0x0900] == 0


def test_max_clients_counts_silent_connections(tmp_path: Path) -> None:
    """A connection that sent nothing yet holds a place: Max Clients bounds half-open peers,
    and ARTIM drops them, which frees the place."""
    harness = _harness(tmp_path, max_clients=1)
    silent = harness.connect(port=50000)
    assert _rejected(harness.connect(port=50001), associate_rq()) == (2, 3, 2)
    harness.clock.advance(10)
    assert silent.closed
    silent.lose()
    _associated(harness, port=50002)


def test_place_freed_by_release_is_reused(tmp_path: Path) -> None:
    """A place freed by a release (before the peer even closes its socket) goes to a
    connection that arrived over the limit, when its A-ASSOCIATE-RQ comes."""
    harness = _harness(tmp_path, max_clients=1)
    first = _associated(harness, port=50000)
    late = harness.connect(port=50001)
    assert not late.client.admitted
    first.send(codec.RELEASE_RQ)
    first.received()
    late.send(associate_rq())
    assert [t for t, _ in late.received()] == [PDUType.A_ASSOCIATE_AC]
    assert late.client.admitted


# -- Multiple Connections -------------------------------------------------------------------


def test_multiple_connections_off(tmp_path: Path) -> None:
    """Multiple Connections off: the same AE from the same IP is refused (2, 3, 2); from
    another IP, or another AE from the same IP, it is accepted; after the first association
    ends, the same AE may associate again."""
    harness = _harness(tmp_path, multiple_connections=False)
    first = _associated(harness, port=50000)
    assert _rejected(harness.connect(port=50001), associate_rq()) == (2, 3, 2)
    _associated(harness, host="127.0.0.2", port=50002)
    _associated(harness, port=50003, calling="OTHER")
    first.send(codec.RELEASE_RQ)
    first.received()
    _associated(harness, port=50004)


def test_multiple_connections_on_allows_the_same_ae_twice(tmp_path: Path) -> None:
    """Multiple Connections on (the default): the same AE may hold two associations."""
    harness = _harness(tmp_path)
    _associated(harness, port=50000)
    _associated(harness, port=50001)


# -- Allow Anonymous and the AE title table ---------------------------------------------------


def test_anonymous_off_unknown_calling_ae_refused(tmp_path: Path) -> None:
    """Allow Anonymous off: a calling AE title not in the table gets (1, 1, 3)."""
    harness = _harness(tmp_path, allow_anonymous=False)
    harness.server.ae_titles.add(AeInfo("KNOWN", "127.0.0.1", 104))
    assert _rejected(harness.connect(), associate_rq(calling="STRANGER")) == (1, 1, 3)
    assert "not in the AE title table" in _refusals(harness)[0].why


def test_anonymous_off_known_ae_from_its_host_accepted(tmp_path: Path) -> None:
    """Allow Anonymous off: a registered AE connecting from its registered IP is accepted."""
    harness = _harness(tmp_path, allow_anonymous=False)
    harness.server.ae_titles.add(AeInfo("MODALITY", "127.0.0.1", 104))
    _associated(harness)


def test_anonymous_off_known_ae_from_another_host_refused(tmp_path: Path) -> None:
    """Allow Anonymous off: a registered AE connecting from another IP gets (1, 1, 3)."""
    harness = _harness(tmp_path, allow_anonymous=False)
    harness.server.ae_titles.add(AeInfo("MODALITY", "127.0.0.1", 104))
    conn = harness.connect(host="127.0.0.2")
    assert _rejected(conn, associate_rq()) == (1, 1, 3)
    assert "127.0.0.2" in _refusals(harness)[0].why


def test_host_name_entry_is_compared_by_its_addresses(tmp_path: Path) -> None:
    """An entry naming ``localhost`` (resolved by the table when added) accepts 127.0.0.1
    and refuses 127.0.0.2."""
    harness = _harness(tmp_path, allow_anonymous=False)
    harness.server.ae_titles.add(AeInfo("MODALITY", "localhost", 104))
    _associated(harness)
    assert _rejected(harness.connect(host="127.0.0.2", port=40001), associate_rq()) == (1, 1, 3)


ADDIN_TABLE = """
from zope.interface import implementer
from pacsref.addin import IAddin, IAeTitles, AeInfo

@implementer(IAddin, IAeTitles)
class Table:
    name = "table"
    description = "an AE table without an address cache"
    def presentation_contexts(self):
        return ()
    def list(self):
        return (AeInfo("MODALITY", "scanner.example", 104),)
    def get(self, ae_title):
        return self.list()[0] if ae_title == "MODALITY" else None
    def add(self, info): raise NotImplementedError
    def update(self, old, info): raise NotImplementedError
    def remove(self, ae_title): raise NotImplementedError

table = Table()
"""


def test_addin_table_host_name_resolved_on_the_thread_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An add-in AE table (no address cache) naming a host: resolved once at start-up;
    a name not resolved yet makes the A-ASSOCIATE response wait while it is resolved on the
    thread pool (never on the reactor), then the association is accepted; the next one
    needs no resolution."""
    resolved: list[str] = []

    def fake_resolve(host: str) -> frozenset[str]:
        resolved.append(host)
        return frozenset({"127.0.0.1"})

    monkeypatch.setattr("pacsref.server.addresses.resolve_host", fake_resolve)
    harness = ServerHarness(
        tmp_path / "PACSREF",
        settings={"allow_anonymous": False},
        extra_addins={"table_addin.py": ADDIN_TABLE},
    )
    assert resolved == ["scanner.example"]  # at start-up, before any reactor
    _associated(harness)
    harness.server.addresses.forget()  # e.g. after the table changed
    conn = harness.connect(port=40001)
    conn.send(associate_rq())
    assert conn.received() == []  # waiting for the thread pool
    harness.threadpool.run_all()
    assert [t for t, _ in conn.received()] == [PDUType.A_ASSOCIATE_AC]
    assert resolved == ["scanner.example"] * 2
    _associated(harness, port=40002)
    assert resolved == ["scanner.example"] * 2


def test_unresolvable_host_name_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host name that does not resolve (nor after a retry): the calling AE is refused
    (1, 1, 3), whatever Allow Anonymous says."""
    monkeypatch.setattr("pacsref.server.addresses.resolve_host", lambda host: frozenset())
    harness = ServerHarness(tmp_path / "PACSREF", extra_addins={"table_addin.py": ADDIN_TABLE})
    harness.server.addresses.forget()
    conn = harness.connect()
    conn.send(associate_rq())
    harness.threadpool.run_all()
    [(pdu_type, body)] = conn.received()
    assert pdu_type is PDUType.A_ASSOCIATE_RJ and body[1:] == bytes([1, 1, 3])


# -- association hooks ------------------------------------------------------------------------

HOOKS = f'''
from zope.interface import implementer
from pacsref.addin import IAddin, IAssociationHook, IEchoHandler, SupportedContext, nonblocking
from pacsref.ul.events import REJECT_CALLING_AE

calls = []

@implementer(IAddin, IAssociationHook, IEchoHandler)
class Gate:
    name = "gate"
    description = "refuses BANNED inline; asks the thread pool about SLOW; raises for BROKEN"
    def presentation_contexts(self):
        return (SupportedContext("{HOOK_SYNTAX}", ("1.2.840.10008.1.2",)),)
    def handle_echo(self, request):
        return 0
    def association_requested(self, info):
        calls.append(("requested", info.calling_ae))
        if info.calling_ae == "BANNED":
            return REJECT_CALLING_AE
        if info.calling_ae == "BROKEN":
            raise RuntimeError("hook exploded")
        if info.calling_ae == "WEIRD":
            return "yes please"
        return None
    def association_established(self, info):
        calls.append(("established", info.calling_ae))
    def association_released(self, info):
        calls.append(("released", info.calling_ae))
    def association_aborted(self, info):
        calls.append(("aborted", info.calling_ae))

gate = Gate()
'''


def _hook_harness(tmp_path: Path) -> tuple[ServerHarness, list[tuple[str, str]]]:
    harness = ServerHarness(
        tmp_path / "PACSREF",
        settings={"addin_timeout": 5.0},
        extra_addins={"gate.py": HOOKS},
    )
    [gate] = [a for a in harness.server.addins if a.name == "gate"]
    calls: list[tuple[str, str]] = type(gate).association_requested.__globals__["calls"]
    return harness, calls


def test_hook_runs_on_the_thread_pool_and_the_response_waits(tmp_path: Path) -> None:
    """A blocking hook: no A-ASSOCIATE response until it returns; None accepts, then the
    observer methods hear of the establishment and release."""
    harness, calls = _hook_harness(tmp_path)
    conn = harness.connect()
    conn.send(associate_rq())
    assert conn.received() == []
    harness.threadpool.run_all()
    assert [t for t, _ in conn.received()] == [PDUType.A_ASSOCIATE_AC]
    conn.send(codec.RELEASE_RQ)
    harness.threadpool.run_all()
    assert calls == [
        ("requested", "MODALITY"),
        ("established", "MODALITY"),
        ("released", "MODALITY"),
    ]


@pytest.mark.parametrize(
    ("calling", "triple", "why"),
    [
        ("BANNED", (1, 1, 3), "refused"),
        ("BROKEN", (1, 1, 1), "hook exploded"),
        ("WEIRD", (1, 1, 1), "no valid answer"),
    ],
)
def test_hook_refusals(
    tmp_path: Path, calling: str, triple: tuple[int, int, int], why: str
) -> None:
    """A hook's AssociateReject is sent as is; a hook that raises or answers nonsense
    refuses with (1, 1, 1); either way the refusal is notified with rule 'addin'."""
    harness, _ = _hook_harness(tmp_path)
    conn = harness.connect()
    conn.send(associate_rq(calling=calling))
    harness.threadpool.run_all()
    [(pdu_type, body)] = conn.received()
    assert pdu_type is PDUType.A_ASSOCIATE_RJ and tuple(body[1:]) == triple
    [refused] = _refusals(harness)
    assert refused.rule == "addin" and why in refused.why


def test_hook_timeout_refuses_1_1_1(tmp_path: Path) -> None:
    """A hook that does not answer within the add-in timeout: (1, 1, 1), and its late answer
    is ignored."""
    harness, _ = _hook_harness(tmp_path)
    conn = harness.connect()
    conn.send(associate_rq())
    harness.clock.advance(5)
    [(pdu_type, body)] = conn.received()
    assert pdu_type is PDUType.A_ASSOCIATE_RJ and body[1:] == bytes([1, 1, 1])
    harness.threadpool.run_all()
    assert conn.received() == []


def test_peer_leaving_while_hook_runs_is_harmless(
    tmp_path: Path, log_events: list[dict[str, Any]]
) -> None:
    """The peer closes while the hook is pending: nothing is sent, nothing leaks, the hook
    (still waiting for a pool thread) is not called, and no add-in failure is logged."""
    harness, calls = _hook_harness(tmp_path)
    conn = harness.connect()
    conn.send(associate_rq())
    conn.lose()
    harness.threadpool.run_all()
    assert conn.received() == []
    assert len(harness.control.clients) == 0
    assert harness.control.clients.admitted_count == 0
    assert calls == []
    assert not [e for e in log_events if e.get("kind") == "addin.failure"]


@pytest.mark.parametrize(
    ("meanwhile", "answer", "why"),
    [
        ("pause", (2, 3, 1), "the server is paused (since the request arrived, while add-ins"),
        ("stop", (2, 3, 1), "the server is stopping (since the request arrived, while add-ins"),
        ("pause and resume", None, ""),
    ],
)
def test_a_pause_while_the_hooks_run_refuses_the_request(
    tmp_path: Path, meanwhile: str, answer: tuple[int, int, int] | None, why: str
) -> None:
    """A Pause (or a graceful stop) that comes while a slow hook decides is not followed by
    an A-ASSOCIATE-AC: the request gets the (2, 3, 1) it would get if it came now. Resumed
    before the hook answered, the server accepts it."""
    harness, calls = _hook_harness(tmp_path)
    conn = harness.connect()
    conn.send(associate_rq())
    assert conn.received() == []
    if meanwhile == "stop":
        harness.control.begin_stop(30.0)
    else:
        harness.control.pause()
        if meanwhile == "pause and resume":
            harness.control.resume()
    harness.threadpool.run_all()
    [(pdu_type, body)] = conn.received()
    if answer is None:
        assert pdu_type is PDUType.A_ASSOCIATE_AC
        return
    assert pdu_type is PDUType.A_ASSOCIATE_RJ and tuple(body[1:]) == answer
    [refused] = _refusals(harness)
    assert refused.rule == "paused" and refused.why.startswith(why), refused.why
    assert ("established", "MODALITY") not in calls
