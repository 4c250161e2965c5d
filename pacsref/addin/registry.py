"""The base-service registry: default providers that add-ins may replace.

At start-up the server registers a default for every base service (the seed's
"Register Base Services": ``IDicomRequest``, ``IAeTitles``), then lets the
loaded add-ins replace them. Handlers find the winners through
``DimseRequest.services``. A provider from an add-in is registered as not
replaceable, so two add-ins providing the same base service stop the server
with :class:`~pacsref.addin.errors.ServiceConflict` rather than letting load
order pick one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from twisted.logger import Logger
from zope.interface import implementer
from zope.interface.interfaces import IInterface
from zope.interface.verify import verifyObject

from pacsref.addin.aetitles import MemoryAeTitles
from pacsref.addin.errors import ServiceConflict, ServiceNotFound
from pacsref.addin.interfaces import IAeTitles, IDicomRequest, IServiceRegistry

__all__ = ["BASE_SERVICES", "ServiceRegistry", "default_services"]

#: The interfaces an add-in may replace by providing them. Order is the order
#: in which replacements are logged.
BASE_SERVICES: tuple[IInterface, ...] = (IDicomRequest, IAeTitles)


def default_services() -> dict[IInterface, object]:
    """Fresh default providers, one per base service that has a default yet.

    ``IDicomRequest``'s default (the requestor built on the server's own
    association code) is registered by the server once it exists, because it
    needs the reactor and the server settings.
    """
    return {IAeTitles: MemoryAeTitles()}


def _describe(provider: object) -> str:
    name = getattr(provider, "name", None)
    if isinstance(name, str):
        return f"add-in {name!r}"
    return type(provider).__qualname__


@implementer(IServiceRegistry)
class ServiceRegistry:
    """Maps a base-service interface to the one object providing it.

    Args:
        defaults: the initial providers, registered as replaceable; None means
            :func:`default_services`.
    """

    log = Logger()

    def __init__(self, defaults: Mapping[IInterface, object] | None = None) -> None:
        self._lock = threading.Lock()
        self._providers: dict[IInterface, tuple[object, bool]] = {}
        for interface, provider in (default_services() if defaults is None else defaults).items():
            self.register(interface, provider)

    def get(self, interface: IInterface) -> object:
        """The provider registered for ``interface``; :class:`ServiceNotFound` if none."""
        with self._lock:
            entry = self._providers.get(interface)
        if entry is None:
            raise ServiceNotFound(f"no provider is registered for {interface.__name__}")
        return entry[0]

    def register(self, interface: IInterface, provider: object, replaceable: bool = True) -> None:
        """Register ``provider`` for ``interface`` after checking it with ``verifyObject``."""
        verifyObject(interface, provider)
        with self._lock:
            current = self._providers.get(interface)
            if current is not None and not current[1]:
                raise ServiceConflict(
                    f"{interface.__name__} is provided by both {_describe(current[0])} "
                    f"and {_describe(provider)}; only one provider is allowed"
                )
            self._providers[interface] = (provider, replaceable)
        if current is not None:
            self.log.info(
                "{interface} provided by {winner} (replaces {loser})",
                interface=interface.__name__,
                winner=_describe(provider),
                loser=_describe(current[0]),
            )

    def register_addins(self, addins: Iterable[object]) -> None:
        """Let add-ins providing a base service replace its default.

        Each add-in providing one of :data:`BASE_SERVICES` is registered for it
        as not replaceable: the first one wins over the default (logged), a
        second one raises :class:`ServiceConflict` naming both.
        """
        addins = list(addins)
        for interface in BASE_SERVICES:
            for addin in addins:
                if interface.providedBy(addin):
                    self.register(interface, addin, replaceable=False)
