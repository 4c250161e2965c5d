"""Many raw associations at once: a waiting room full of modalities.

Max Clients is only tested by a crowd: N associations held open while one
more knocks, or a burst of connections arriving together. pynetdicom's AE
spends two threads per association, so a crowd of 500 is built from
:class:`~simulators.misbehaving.RawPeer` sockets instead: connect them all,
send every A-ASSOCIATE-RQ, then read every answer. Each answer is timed from
its own request, so "rejected promptly" is measured per connection.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from simulators.misbehaving import (
    A_RELEASE_RP,
    P_DATA_TF,
    Abort,
    AssociateAC,
    AssociateRJ,
    PDUDecodeError,
    RawPeer,
    associate_rq,
    release_rq,
)

Reply = AssociateAC | AssociateRJ | Abort | None


@dataclass
class Attempt:
    """One connection of a crowd: the peer, what the server answered, and how fast.

    ``reply`` is None when the server closed without a word (a bare close);
    ``error`` says what went wrong when there was no answer at all (refused
    connection, timeout, undecodable reply).
    """

    peer: RawPeer
    calling_ae: str
    reply: Reply = None
    #: Seconds from sending the A-ASSOCIATE-RQ to reading the answer.
    elapsed: float = 0.0
    error: str | None = None

    @property
    def accepted(self) -> bool:
        """True if the server answered A-ASSOCIATE-AC."""
        return isinstance(self.reply, AssociateAC)

    @property
    def rejection(self) -> tuple[int, int, int] | None:
        """The A-ASSOCIATE-RJ (result, source, reason), if that was the answer."""
        return self.reply.triple if isinstance(self.reply, AssociateRJ) else None

    def outcome(self) -> str:
        """A short tally key: ``accepted``, ``rejected (2, 3, 2)``, ``bare close``..."""
        if self.error is not None:
            return self.error.split(":", 1)[0]
        if isinstance(self.reply, AssociateAC):
            return "accepted"
        if isinstance(self.reply, AssociateRJ):
            return f"rejected {self.reply.triple}"
        if isinstance(self.reply, Abort):
            return f"aborted ({self.reply.source}, {self.reply.reason})"
        return "bare close"


def _calling_titles(calling_ae: str | Sequence[str], count: int) -> list[str]:
    """One calling AE title per connection: the same one, or one each from a list."""
    if isinstance(calling_ae, str):
        return [calling_ae] * count
    if len(calling_ae) < count:
        raise ValueError(f"{count} connections need {count} calling AE titles")
    return list(calling_ae[:count])


def open_associations(
    host: str,
    port: int,
    called_ae: str,
    calling_ae: str | Sequence[str],
    count: int,
    *,
    timeout: float = 10.0,
    bind_address: str | None = None,
) -> list[Attempt]:
    """Connect ``count`` peers, then send each an A-ASSOCIATE-RQ, then read each answer.

    All requests are on the wire before the first answer is read, so the
    server sees a burst, as when a department's modalities start together.
    ``calling_ae`` is one title for all or a list with one per connection.
    Accepted associations stay open: end them with :func:`release_all`.
    If anything raises (e.g. ValueError for a calling AE title that cannot be
    encoded), every connection opened so far is closed first: the caller never
    gets those attempts, so nothing else could close them.
    """
    attempts: list[Attempt] = []
    try:
        for title in _calling_titles(calling_ae, count):
            peer = RawPeer(host, port, timeout=timeout, bind_address=bind_address)
            attempt = Attempt(peer, title)
            try:
                peer.connect()
            except OSError as exc:
                attempt.error = f"connection failed: {exc}"
            attempts.append(attempt)
        started: dict[int, float] = {}
        for index, attempt in enumerate(attempts):
            if attempt.error is None:
                started[index] = _send_request(attempt, called_ae)
        for index, attempt in enumerate(attempts):
            if index in started:
                _read_answer(attempt, started[index])
    except BaseException:
        for attempt in attempts:
            attempt.peer.close()
        raise
    return attempts


def _send_request(attempt: Attempt, called_ae: str) -> float:
    """Send the attempt's A-ASSOCIATE-RQ; return when it went out."""
    try:
        attempt.peer.send_bytes(associate_rq(called_ae, attempt.calling_ae))
    except OSError as exc:
        attempt.error = f"send failed: {exc}"
    return time.monotonic()


def _read_answer(attempt: Attempt, sent_at: float) -> None:
    """Read and time the answer to the attempt's request."""
    if attempt.error is not None:
        return
    try:
        attempt.reply = attempt.peer.read_association_reply()
    except TimeoutError:
        attempt.error = f"no answer: nothing within {attempt.peer.timeout:g} s"
    except (OSError, PDUDecodeError) as exc:
        attempt.error = f"bad answer: {exc}"
    attempt.elapsed = time.monotonic() - sent_at


def request_one(
    host: str,
    port: int,
    called_ae: str,
    calling_ae: str,
    *,
    timeout: float = 10.0,
    bind_address: str | None = None,
) -> Attempt:
    """A single timed association request (e.g. the one after the crowd)."""
    return open_associations(
        host, port, called_ae, calling_ae, 1, timeout=timeout, bind_address=bind_address
    )[0]


def tally(attempts: Iterable[Attempt]) -> Counter[str]:
    """How many attempts ended each way, e.g. ``{"accepted": 5, "rejected (2, 3, 2)": 15}``."""
    return Counter(attempt.outcome() for attempt in attempts)


def release_all(attempts: Iterable[Attempt], timeout: float = 5.0) -> int:
    """Release every accepted association and close every socket; return how many released.

    Only an A-RELEASE-RP counts: an A-ABORT, a close or silence in answer to
    the A-RELEASE-RQ is a server misbehaving on release, and a caller that
    checks the count must see it. ``timeout`` bounds the wait for each answer,
    whatever timeout the peers were opened with.

    Never raises: it is the cleanup of a test, and a server that misbehaves on
    release is reported by the count, not by an exception that hides the
    original failure.
    """
    released = 0
    for attempt in attempts:
        if attempt.accepted and attempt.peer.sock is not None:
            with contextlib.suppress(OSError, TimeoutError, PDUDecodeError):
                released += _release(attempt.peer, timeout)
        attempt.peer.close()
    return released


def _release(peer: RawPeer, timeout: float) -> bool:
    """Send A-RELEASE-RQ; True if A-RELEASE-RP comes within ``timeout``.

    P-DATA-TF may still arrive before it (PS3.8 Table 9-10, Sta7 Evt10 DT-2),
    so those are read past; any other PDU, or a close, ends the wait unreleased.
    Raises TimeoutError if nothing decisive comes in time.
    """
    deadline = time.monotonic() + timeout
    peer.send_bytes(release_rq())
    while (got := peer.recv_pdu(max(0.0, deadline - time.monotonic()))) is not None:
        if got[0] != P_DATA_TF:
            return got[0] == A_RELEASE_RP
    return False
