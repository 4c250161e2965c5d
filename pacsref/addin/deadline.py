"""Who decides a request's outcome when the add-in timeout races the add-in's commit.

Python cannot stop a thread: when the add-in timeout expires the handler keeps running and the
server answers 0x0110 *Processing failure*. That answer is true only while the handler has
changed nothing. Once it has done what it cannot undo (a storage SCP renamed the data set into
place and is committing its index row), a failure would tell the modality that an object the
archive now holds was not stored. So both sides ask one :class:`AddinDeadline`, under one lock,
and whichever asks first decides:

- the handler, at its point of no return (:meth:`DimseRequest.point_of_no_return
  <pacsref.addin.requests.DimseRequest.point_of_no_return>`): True, go on; the server will
  wait for your outcome however long it takes. False: the timeout has expired and the peer is
  being told the request failed, so change nothing and return;
- the server, when the timeout expires (:meth:`AddinDeadline.expire`): True, answer the
  failure; False, the handler is past its point of no return, so keep waiting for its outcome.

A handler that never calls it keeps the old behaviour: the timeout always wins.
"""

from __future__ import annotations

import threading

__all__ = ["AddinDeadline"]

_OPEN, _COMMITTED, _EXPIRED = "open", "committed", "expired"


class AddinDeadline:
    """The one decision, taken once, between "the handler commits" and "the timeout expires"."""

    __slots__ = ("_lock", "_state")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = _OPEN

    def commit(self) -> bool:
        """From the handler: True if it may do what cannot be undone, False if too late."""
        with self._lock:
            if self._state == _OPEN:
                self._state = _COMMITTED
            return self._state == _COMMITTED

    def expire(self) -> bool:
        """From the timer: True if the request now fails, False if the handler committed."""
        with self._lock:
            if self._state == _OPEN:
                self._state = _EXPIRED
            return self._state == _EXPIRED

    @property
    def committed(self) -> bool:
        """Whether the handler passed its point of no return before any timeout."""
        return self._state == _COMMITTED

    def __repr__(self) -> str:
        return f"<AddinDeadline {self._state}>"
