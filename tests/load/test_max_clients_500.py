"""Load: a server with Max Clients 500 holds 500 associations and refuses the 501st at once.

Issue 3, item 9. The crowd is raw sockets (:mod:`simulators.crowd`): 500 pynetdicom
associations would be 1,000 threads in this process. All 500 connect first, then all send
their A-ASSOCIATE-RQ, then all answers are read, so the server sees a burst, not a queue.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest

from pacsref.testing.twistd import TwistdServer
from simulators.crowd import Attempt, open_associations, release_all, request_one, tally
from simulators.misbehaving import AssociateAC

pytestmark = pytest.mark.load

MAX_CLIENTS = 500
#: Descriptors needed here: one socket per association, plus the test's own files. The
#: server inherits the limit from this process (TwistdServer starts it as a child).
FDS_NEEDED = 2 * MAX_CLIENTS + 256


@pytest.fixture(scope="module")
def file_limit() -> Iterator[None]:
    """Raise the soft limit on open files as far as needed (and the hard limit allows)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FDS_NEEDED if hard == resource.RLIM_INFINITY else min(FDS_NEEDED, hard)
    if wanted < FDS_NEEDED:
        pytest.skip(f"the hard limit on open files ({hard}) is below {FDS_NEEDED}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def server(file_limit: None) -> Iterator[TwistdServer]:
    """pacsref with Max Clients 500 and timers that cannot fire during the test."""
    settings = {"max_clients": str(MAX_CLIENTS), "client_timeout": "120", "artim_timeout": "60"}
    with TwistdServer(settings=settings, start_timeout_s=60) as running:
        yield running


def test_500_held_the_501st_refused_at_once_and_the_500_still_served(
    server: TwistdServer,
) -> None:
    """All 500 accepted; the 501st gets (2, 3, 2) within a second; echoes on held ones are
    answered; all 500 release cleanly; afterwards a new association is accepted again."""
    host, port = server.address
    titles = [f"LOAD_{number:03d}" for number in range(MAX_CLIENTS)]
    crowd: list[Attempt] = []
    try:
        crowd = open_associations(host, port, "PACSREF", titles, MAX_CLIENTS, timeout=30)
        assert tally(crowd) == {"accepted": MAX_CLIENTS}, dict(tally(crowd))

        extra = request_one(host, port, "PACSREF", "LOAD_EXTRA", timeout=5)
        extra.peer.close()
        assert extra.rejection == (2, 3, 2), extra.outcome()
        assert extra.elapsed < 1.0, f"the 501st waited {extra.elapsed:.3f} s for its refusal"

        for attempt in (crowd[0], crowd[MAX_CLIENTS // 2], crowd[-1]):
            assert isinstance(attempt.reply, AssociateAC)
            context_id = attempt.reply.contexts[0].context_id
            assert attempt.peer.echo(context_id, message_id=7) == 0x0000
    finally:
        released = release_all(crowd, timeout=10)
    assert released == MAX_CLIENTS

    again = request_one(host, port, "PACSREF", "LOAD_AFTER", timeout=5)
    try:
        assert again.accepted, again.outcome()
    finally:
        release_all([again])
