"""Addresses of the hosts named in an AE title table that does not resolve them itself.

The acceptance policy checks that a known calling AE title connects from the
host its table entry names. An entry may name an IP address (compared as is)
or a host name, which must be resolved, and ``socket.getaddrinfo`` blocks; the
reactor thread must never wait for DNS while it serves other associations.

The default table (:class:`pacsref.addin.FileAeTitles`) resolves each host
when an entry is loaded, added or updated and answers ``addresses(title)``
from memory; the server uses that. :class:`HostAddresses` covers a table
supplied by an add-in that has no such method: its host names are resolved

- at start-up, for every entry (:meth:`HostAddresses.resolve_now`, called by
  :func:`pacsref.server.context.build_server_context` before the reactor runs);
- on the server's thread pool the first time an association needs a name not
  resolved yet (:meth:`HostAddresses.resolve_later`); the A-ASSOCIATE response
  waits for it (Sta3 allows that), bounded by the ARTIM timeout;
- again after :meth:`HostAddresses.forget`.

Results are kept for the life of the server (a failed name as "no
addresses", so a bad entry does not cause a DNS query per association).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from pacsref.addin import call_with_timeout
from pacsref.association.policy import normalize_ip

log = Logger(namespace="pacsref.server.addresses")

__all__ = ["HostAddresses", "resolve_host"]


def resolve_host(host: str) -> frozenset[str]:
    """Every IP address of ``host`` (blocking); empty when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return frozenset()
    return frozenset(normalize_ip(str(info[4][0])) for info in infos)


class HostAddresses:
    """Host name -> IP addresses cache; lookups never block.

    Args:
        resolve: the blocking resolver; None means :func:`resolve_host` (looked up
            when used, so tests can replace it).
    """

    def __init__(self, resolve: Callable[[str], frozenset[str]] | None = None) -> None:
        self.resolve = resolve
        self._cache: dict[str, frozenset[str]] = {}
        self._waiting: dict[str, list[Deferred[None]]] = {}

    def _resolver(self) -> Callable[[str], frozenset[str]]:
        return self.resolve if self.resolve is not None else resolve_host

    def lookup(self, host: str) -> frozenset[str] | None:
        """The addresses of ``host``: itself for an IP literal, else the cached result or None."""
        key = host.strip().lower()
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        try:
            ipaddress.ip_address(key.strip("[]"))
        except ValueError:
            return None
        return frozenset({normalize_ip(key)})

    def remember(self, host: str, addresses: Iterable[str]) -> None:
        """Store the addresses of ``host`` (as resolved elsewhere, or by a test)."""
        self._cache[host.strip().lower()] = frozenset(normalize_ip(a) for a in addresses)

    def forget(self, host: str | None = None) -> None:
        """Drop one cached host (or all), so it is resolved again when next needed."""
        if host is None:
            self._cache.clear()
        else:
            self._cache.pop(host.strip().lower(), None)

    def resolve_now(self, hosts: Iterable[str]) -> None:
        """Resolve every host name among ``hosts``, blocking; for start-up only."""
        for host in hosts:
            if self.lookup(host) is None:
                addresses = self._resolver()(host)
                self.remember(host, addresses)
                if not addresses:
                    log.warn(
                        "AE title table: host {host!r} does not resolve; associations "
                        "from AE titles registered there will be refused",
                        host=host,
                    )

    def resolve_later(
        self, host: str, reactor: Any, threadpool: Any, timeout: float
    ) -> Deferred[None]:
        """Resolve ``host`` on ``threadpool``; the Deferred fires (never fails) when done.

        Concurrent requests for one name share a single resolution. A
        resolution that takes longer than ``timeout`` leaves the name
        unresolved (it will be tried again by the next association).
        """
        key = host.strip().lower()
        if self.lookup(key) is not None:
            return succeed(None)
        mine: Deferred[None] = Deferred()
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.append(mine)
            return mine
        self._waiting[key] = [mine]

        def done(result: frozenset[str] | Failure) -> None:
            if isinstance(result, Failure):
                log.warn(
                    "could not resolve host {host!r}: {error}",
                    host=host,
                    error=result.getErrorMessage(),
                )
            else:
                self.remember(key, result)
            for waiter in self._waiting.pop(key, []):
                waiter.callback(None)

        d = call_with_timeout(reactor, threadpool, timeout, self._resolver(), host, name="resolve")
        d.addBoth(done)
        return mine
