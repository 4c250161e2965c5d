"""Host name resolution for AE tables without their own address cache: never on the reactor."""

from __future__ import annotations

from pacsref.server.addresses import HostAddresses
from pacsref.testing.harness import ManualThreadPool, ThreadClock


def test_literals_need_no_resolution() -> None:
    """An IP literal is its own address (IPv4-mapped IPv6 shown as IPv4); a name is unknown."""
    addresses = HostAddresses(resolve=lambda host: frozenset({"10.0.0.1"}))
    assert addresses.lookup("10.0.0.9") == frozenset({"10.0.0.9"})
    assert addresses.lookup("::ffff:10.0.0.9") == frozenset({"10.0.0.9"})
    assert addresses.lookup("ct.example") is None


def test_resolve_now_caches_results_and_failures() -> None:
    """Start-up resolution stores every name, a name that does not resolve as no addresses."""
    calls: list[str] = []

    def resolve(host: str) -> frozenset[str]:
        calls.append(host)
        return frozenset({"10.0.0.1"}) if host == "ct.example" else frozenset()

    addresses = HostAddresses(resolve=resolve)
    addresses.resolve_now(["ct.example", "10.0.0.5", "gone.example", "CT.example"])
    assert calls == ["ct.example", "gone.example"]
    assert addresses.lookup("ct.EXAMPLE") == frozenset({"10.0.0.1"})
    assert addresses.lookup("gone.example") == frozenset()


def test_resolve_later_runs_on_the_pool_once_for_concurrent_askers() -> None:
    """Two associations waiting for one name share a single resolution on the thread pool."""
    clock, pool = ThreadClock(), ManualThreadPool()
    addresses = HostAddresses(resolve=lambda host: frozenset({"10.0.0.1"}))
    done: list[int] = []
    addresses.resolve_later("ct.example", clock, pool, 30).addCallback(lambda _: done.append(1))
    addresses.resolve_later("ct.example", clock, pool, 30).addCallback(lambda _: done.append(2))
    assert len(pool.pending) == 1 and done == []
    pool.run_all()
    assert done == [1, 2]
    assert addresses.lookup("ct.example") == frozenset({"10.0.0.1"})


def test_resolve_later_timeout_leaves_the_name_unresolved() -> None:
    """A resolution slower than its bound fires the waiters without caching anything."""
    clock, pool = ThreadClock(), ManualThreadPool()
    addresses = HostAddresses(resolve=lambda host: frozenset({"10.0.0.1"}))
    done: list[None] = []
    addresses.resolve_later("slow.example", clock, pool, 5).addCallback(done.append)
    clock.advance(5)
    assert done == [None]
    assert addresses.lookup("slow.example") is None
    pool.run_all()  # the late answer is discarded
    assert addresses.lookup("slow.example") is None
