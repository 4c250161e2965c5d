"""What one thread hand-off costs on this machine: a reactor -> pool thread -> reactor round trip.

    python bench/handoff_floor.py [--count 2000] [--rounds 3]

A durable store cannot run on the reactor thread (it waits for the disk), so each one goes to a
thread of the index pool and its result comes back to the reactor: one round trip per object,
as ``twisted.internet.threads.deferToThreadPool`` makes it for ``adbapi``. This times that round
trip for a job that does nothing, with the reactor otherwise idle, as it is while a single
association waits for its response: the part of a durable store's time that neither the disk
nor the add-in's code decides, and which the inline relaxed store does not pay. Waking a thread
that sleeps on another CPU costs far more on a virtual machine (an inter-processor interrupt
the hypervisor delivers) than on bare metal, so compare figures from one machine only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Generator
from typing import Any

from twisted.internet import defer, reactor, threads
from twisted.python.threadpool import ThreadPool


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="round trips per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pool = ThreadPool(1, 8, name="handoff")
    pool.start()
    medians: list[float] = []
    means: list[float] = []

    @defer.inlineCallbacks
    def measure() -> Generator[Any, Any, None]:
        try:
            for _ in range(args.rounds):
                times = []
                for _ in range(args.count):
                    started = time.perf_counter()
                    yield threads.deferToThreadPool(reactor, pool, lambda: None)
                    times.append(time.perf_counter() - started)
                medians.append(statistics.median(times) * 1e6)
                means.append(statistics.mean(times) * 1e6)
        finally:
            reactor.stop()  # type: ignore[attr-defined]

    reactor.callWhenRunning(measure)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    pool.stop()
    print(
        "reactor -> pool thread -> reactor, an empty job: median per round "
        + ", ".join(f"{m:.0f}" for m in medians)
        + " us; mean "
        + ", ".join(f"{m:.0f}" for m in means)
        + f" us ({args.count} round trips x {args.rounds})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
