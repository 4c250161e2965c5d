"""A workaround for a pynetdicom 3.0.4 requestor race, shared by the simulators and tests.

pynetdicom's association has a reactor thread that can take a DIMSE response off the queue
before ``send_c_echo`` does (pynetdicom issues #435, #875). The caller then waits out its
DIMSE timeout and aborts although the server answered. Against a fast SCP it hits about one
echo in 3,600. :func:`reactor_parked` parks that thread while a block of requests runs (it only
serves peer-initiated requests, which a Verification SCP never sends).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from pynetdicom.association import Association


class _HeldCheckpoint(threading.Event):
    """Stands in for pynetdicom's reactor checkpoint: while held, ``set()`` does nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.held = True
        self.parked = threading.Event()

    def set(self) -> None:
        if not self.held:
            super().set()

    def wait(self, timeout: float | None = None) -> bool:
        self.parked.set()
        return super().wait(timeout)


@contextlib.contextmanager
def reactor_parked(assoc: Association) -> Iterator[None]:
    """Keep pynetdicom's association reactor thread parked while the block sends requests.

    pynetdicom 3.0.4's requestor has a race (pynetdicom issues #435, #875): its reactor thread
    can take a response off the DIMSE queue before ``send_c_echo`` does, logs "Received unexpected
    C-ECHO service message", and ``send_c_echo`` then waits out the DIMSE timeout and aborts.
    Against a fast server it hit about 1 echo in 3,600 here (a 1,000-echo run failed about one
    time in four) while the server had answered every request. Parking the reactor (it only
    serves peer-initiated requests, of which a Verification SCP sends none) removes the race.
    This touches pynetdicom internals, so it does nothing if they are not as expected.
    """
    original = getattr(assoc, "_reactor_checkpoint", None)
    if not isinstance(original, threading.Event):
        yield
        return
    held = _HeldCheckpoint()
    assoc._reactor_checkpoint = held
    try:
        held.parked.wait(timeout=5)  # the reactor picks it up on its next 1 ms loop
        yield
    finally:
        assoc._reactor_checkpoint = original
        original.set()
        held.held = False
        held.set()
