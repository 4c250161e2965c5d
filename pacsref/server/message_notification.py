"""Message notification: tell ``IMessageNotification`` add-ins about each request served.

Observers must never slow the peer (issue 6, requirement 5): the dispatcher calls
:meth:`MessageNotifier.notify` once the response is decided; the notifier waits until the
reactor has written that response (``callLater(0)`` runs after the current callback chain,
which is the one that sends it), then reads the stored data set and calls every subscriber on
the thread pool. Their exceptions are logged and dropped. With no subscriber installed it does
nothing at all, so the hot path pays one attribute test.

The data set is read from the stored file *as this request stored it*: by the time the pool
reads it, another association may have overwritten the same instance (``duplicates =
"overwrite"``), and both notifications would carry the second version. So a store handler
that may replace a stored file hands it over opened, under its instance lock, when asked
(``DimseRequest.keep_stored_open``, ``StoreOutcome.opened``), and the data set is read
through that descriptor. Each notification waiting for the pool then holds one; past
:data:`MAX_PINNED` of them the server stops asking, and those stores are read by path, as
before, so that a slow subscriber cannot run the server out of descriptors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from pydicom import Dataset, dcmread
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from pacsref.addin import DimseRequest, IMessageNotification

log = Logger(namespace="pacsref.notification")

#: Stored files held open, at most, for notifications the pool has not delivered yet (give or
#: take the stores under way when the count was read): each is a descriptor, and a server's
#: limit is often 1024.
MAX_PINNED = 128

__all__ = ["MessageNotifier", "read_stored_dataset"]


def read_stored_dataset(source: Path | BinaryIO, with_pixels: bool) -> Dataset:
    """The stored object's data set (from its path or an open file); Pixel Data (and what
    follows it) left out unless asked.

    ``stop_before_pixels`` keeps a 600 MB multi-frame object from being loaded just to tell
    an audit add-in its Patient ID (the server setting ``copy_dataset_image`` opts in).
    """
    return dcmread(source, stop_before_pixels=not with_pixels)


def _close(opened: BinaryIO | None) -> None:
    if opened is not None:
        with contextlib.suppress(OSError):
            opened.close()


class MessageNotifier:
    """Fans out served requests to the add-ins providing :class:`IMessageNotification`.

    Args:
        subscribers: the add-ins to notify, in load order.
        reactor: provides ``callLater`` and ``callFromThread``.
        threadpool: where the reads and the subscribers run.
        copy_dataset_image: include Pixel Data in ``DimseRequest.dataset``.
    """

    def __init__(
        self,
        subscribers: Sequence[Any],
        reactor: Any,
        threadpool: Any,
        copy_dataset_image: bool = False,
    ) -> None:
        self.subscribers = [s for s in subscribers if IMessageNotification.providedBy(s)]
        self.reactor = reactor
        self.threadpool = threadpool
        self.copy_dataset_image = copy_dataset_image
        self._pinned = 0
        self._pinned_lock = threading.Lock()

    def wants_pinned(self) -> bool:
        """Whether a store handler should hand over the file it stores opened (see module)."""
        return bool(self.subscribers) and self._pinned < MAX_PINNED

    def notify(
        self,
        request: DimseRequest,
        stored: Path | None,
        status: int | None,
        opened: BinaryIO | None = None,
    ) -> None:
        """Schedule the notification of ``request`` answered with ``status`` (and its stored
        file, if any, read from ``opened`` when the handler opened it; closed either way)."""
        if not self.subscribers or stored is None:
            _close(opened)
            opened = None
        if not self.subscribers:
            return
        if opened is not None:
            with self._pinned_lock:
                self._pinned += 1
        self.reactor.callLater(
            0, self._start, dataclasses.replace(request, status=status), stored, opened
        )

    def _start(self, request: DimseRequest, stored: Path | None, opened: BinaryIO | None) -> None:
        d = deferToThreadPool(self.reactor, self.threadpool, self._deliver, request, stored, opened)
        d.addErrback(self._failed, request)

    def _deliver(
        self, request: DimseRequest, stored: Path | None, opened: BinaryIO | None = None
    ) -> None:
        """Runs on the thread pool: read the data set once, then call each subscriber."""
        if stored is not None:
            try:
                dataset = read_stored_dataset(
                    opened if opened is not None else stored, self.copy_dataset_image
                )
            finally:
                if opened is not None:
                    _close(opened)
                    with self._pinned_lock:
                        self._pinned -= 1
            request = dataclasses.replace(request, dataset=dataset, dataset_path=stored)
        for subscriber in self.subscribers:
            try:
                subscriber.notify(request)
            except Exception:
                log.failure(
                    "message notification add-in {addin} failed on message {id}",
                    Failure(),
                    addin=getattr(subscriber, "name", repr(subscriber)),
                    id=request.message_id,
                )

    @staticmethod
    def _failed(failure: Failure, request: DimseRequest) -> None:
        log.failure("message notification for message {id} failed", failure, id=request.message_id)
