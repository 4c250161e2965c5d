"""Message notification: tell ``IMessageNotification`` add-ins about each request served.

Observers must never slow the peer (issue 6, requirement 5): the dispatcher calls
:meth:`MessageNotifier.notify` once the response is decided; the notifier waits until the
reactor has written that response (``callLater(0)`` runs after the current callback chain,
which is the one that sends it), then reads the stored data set and calls every subscriber on
the thread pool. Their exceptions are logged and dropped. With no subscriber installed it does
nothing at all, so the hot path pays one attribute test.

The data set is read from the stored file *as this request stored it*: by the time the pool
reads it, another association may have overwritten the same instance (``duplicates =
"overwrite"``), and both notifications would carry the second version. So the file is read
through a descriptor opened before that could happen: by the storage handler, under its
instance lock (``StoreOutcome.opened``, asked for with ``DimseRequest.keep_stored_open``), or
else here, on the reactor thread, as soon as the outcome is known.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from pydicom import Dataset, dcmread
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from pacsref.addin import DimseRequest, IMessageNotification

log = Logger(namespace="pacsref.notification")

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
        if stored is not None and opened is None:
            # Failing here is told when the read is tried again on the pool, by path.
            with contextlib.suppress(OSError):
                opened = stored.open("rb")
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
                _close(opened)
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
