"""The base-service registry and add-in replacement of default services."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from pacsref.addin import (
    AeInfo,
    IAddin,
    IAeTitles,
    IDicomRequest,
    IServiceRegistry,
    MemoryAeTitles,
    ServiceConflict,
    ServiceNotFound,
    ServiceRegistry,
    default_services,
)


@implementer(IAddin, IAeTitles)
class LdapAeTitles(MemoryAeTitles):
    """An add-in providing its own AE title table."""

    description = "AE titles from a directory"

    def __init__(self, name: str = "ldap-aetitles") -> None:
        super().__init__()
        self.name = name

    def presentation_contexts(self) -> tuple[()]:
        return ()


@implementer(IAddin, IDicomRequest)
class FakeRequestor:
    """An add-in replacing the SCU requestor."""

    name = "fake-requestor"
    description = "answers every echo with success"

    def presentation_contexts(self) -> tuple[()]:
        return ()

    def echo(self, ae: str | AeInfo, timeout: float | None = None) -> Deferred[int]:
        return succeed(0)


def test_registry_provides_interface() -> None:
    """ServiceRegistry is a complete IServiceRegistry provider."""
    assert verifyObject(IServiceRegistry, ServiceRegistry())


def test_every_default_provider_verifies() -> None:
    """Each default base service provides the interface it is registered for."""
    for interface, provider in default_services().items():
        assert verifyObject(interface, provider)


def test_defaults_are_registered() -> None:
    """A new registry serves the default AE title table."""
    assert isinstance(ServiceRegistry().get(IAeTitles), MemoryAeTitles)


def test_defaults_are_fresh_per_registry() -> None:
    """Two servers in one process never share an AE title table."""
    assert ServiceRegistry().get(IAeTitles) is not ServiceRegistry().get(IAeTitles)


def test_unknown_service_raises_service_not_found() -> None:
    """Looking up an unregistered interface names it in a LookupError."""
    with pytest.raises(ServiceNotFound, match="IDicomRequest"):
        ServiceRegistry(defaults={}).get(IDicomRequest)
    assert issubclass(ServiceNotFound, LookupError)


def test_register_verifies_provider() -> None:
    """A provider that does not implement the interface is refused at registration."""
    with pytest.raises(Invalid):
        ServiceRegistry().register(IAeTitles, object())


def test_replaceable_registration_is_replaced() -> None:
    """Registering over a replaceable provider replaces it."""
    registry = ServiceRegistry()
    mine = MemoryAeTitles([AeInfo("PEER", "h", 1)])
    registry.register(IAeTitles, mine)
    assert registry.get(IAeTitles) is mine


def test_addin_replaces_default_and_logs_winner(log_lines: list[str]) -> None:
    """An add-in providing IAeTitles wins over the default, and the log says so."""
    registry = ServiceRegistry()
    addin = LdapAeTitles()
    registry.register_addins([addin])
    assert registry.get(IAeTitles) is addin
    assert any(
        "IAeTitles provided by add-in 'ldap-aetitles'" in line and "MemoryAeTitles" in line
        for line in log_lines
    )


def test_addin_provides_dicom_request_without_default() -> None:
    """An IDicomRequest add-in is registered even before a default exists."""
    registry = ServiceRegistry()
    requestor = FakeRequestor()
    registry.register_addins([requestor, object()])
    assert registry.get(IDicomRequest) is requestor
    assert isinstance(registry.get(IAeTitles), MemoryAeTitles)


def test_two_addins_for_one_service_conflict() -> None:
    """Two add-ins providing IAeTitles stop start-up, naming both."""
    registry = ServiceRegistry()
    with pytest.raises(ServiceConflict, match=r"'first'.*'second'"):
        registry.register_addins([LdapAeTitles("first"), LdapAeTitles("second")])


def test_addin_registration_is_final() -> None:
    """A provider registered as not replaceable cannot be silently overridden later."""
    registry = ServiceRegistry()
    registry.register(IAeTitles, LdapAeTitles(), replaceable=False)
    with pytest.raises(ServiceConflict):
        registry.register(IAeTitles, MemoryAeTitles())
