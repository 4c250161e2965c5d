"""Letting open associations finish when the server stops, up to a deadline.

A C-STORE cut in the middle makes the modality send the image again (or lose it, if the
operator gave up), so a stop first lets what is running finish: the listener has already
stopped accepting, new A-ASSOCIATE-RQs on connections that are already open are refused with
(2, 3, 1) like a paused server's (announced as ServerStopping, not ServerPaused: see
:meth:`pacsref.server.control.ServerControl.begin_stop`), and the stop waits until no client
is left. Whatever is still
connected at the deadline (``stop_timeout``; an idle association would otherwise hold the stop
for ever, since only the requestor may release) gets an A-ABORT, and the stop goes on once
those connections are gone or :data:`ABORT_GRACE_S` has passed, whichever is first. A
connection still there then (a peer that stopped reading keeps its A-ABORT and our close
queued) is cut, dropping what it has not taken, so that its ClientDisconnected reaches the
administrators' connections before they are closed; the stop waits at most
:data:`CUT_GRACE_S` more for that.

Time comes from the injected clock, so tests drive it with ``twisted.internet.task.Clock``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from pacsref.server.clients import ClientRegistry

log = Logger(namespace="pacsref.server")

__all__ = ["ABORT_GRACE_S", "CUT_GRACE_S", "STOP_REASON", "drain"]

#: After the A-ABORTs, how long to wait for those connections to close before going on anyway.
ABORT_GRACE_S = 2.0
#: After cutting what is left, how long to wait for their ClientDisconnected (a cut connection
#: is lost on the reactor's next turn; this only bounds a transport that never says so).
CUT_GRACE_S = 0.5
#: The reason aborted clients are given (ClientDisconnected, the log).
STOP_REASON = "server stopping: stop_timeout passed"


class _Drain:
    def __init__(self, clients: ClientRegistry, clock: IReactorTime, deadline: float) -> None:
        self.clients = clients
        self.clock = clock
        self.deadline = deadline
        self.aborted = 0
        self.done: Deferred[int] = Deferred()
        self._timer: IDelayedCall | None = None
        self._unsubscribe = clients.notifier.subscribe(self._event)

    def start(self) -> Deferred[int]:
        waiting = len(self.clients)
        if not waiting:
            self._finish()
            return self.done
        log.info(
            "stopping: waiting up to {deadline:g} s for {count} client(s) to finish",
            kind="server.draining",
            deadline=self.deadline,
            count=waiting,
        )
        self._timer = self.clock.callLater(self.deadline, self._deadline_passed)
        return self.done

    def _event(self, event: Any) -> None:
        if getattr(event, "name", "") == "ClientDisconnected" and not len(self.clients):
            self._finish()

    def _deadline_passed(self) -> None:
        left = self.clients.list()
        self.aborted = len(left)
        log.warn(
            "stopping: {count} client(s) still connected after {deadline:g} s; aborting them",
            kind="server.draining.abort",
            count=len(left),
            deadline=self.deadline,
        )
        self._timer = self.clock.callLater(ABORT_GRACE_S, self._grace_passed)
        for client in left:
            self.clients.disconnect(client.id, STOP_REASON)

    def _grace_passed(self) -> None:
        left = self.clients.list()
        if not left:
            self._finish()
            return
        log.warn(
            "stopping: {count} aborted client(s) did not close within {grace:g} s; cutting them",
            kind="server.draining.cut",
            count=len(left),
            grace=ABORT_GRACE_S,
        )
        self._timer = self.clock.callLater(CUT_GRACE_S, self._finish)
        for client in left:
            self.clients.cut(client.id)

    def _finish(self) -> None:
        if self.done.called:
            return
        self._unsubscribe()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.done.callback(self.aborted)


def drain(clients: ClientRegistry, clock: IReactorTime, deadline: float) -> Deferred[int]:
    """Fire once no client is connected, aborting those left after ``deadline`` seconds.

    The result is how many clients had to be aborted (0 when all finished in time).
    """
    return _Drain(clients, clock, deadline).start()
