"""The public surface of pacsref.addin and the request values handed to add-ins."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from zope.interface import Interface

import pacsref.addin
from pacsref.addin import AssociationInfo, interfaces
from tests.addin.helpers import make_request

#: Where each public name is implemented; pins the exports by identity (Klein's test_exports).
EXPORTS = {
    "pacsref.addin.aetitles": [
        "AeFieldError",
        "AeInfo",
        "MemoryAeTitles",
        "normalize_ae_title",
        "resolve_addresses",
    ],
    "pacsref.addin.aetitles_file": [
        "AE_TITLES_FILE_NAME",
        "AeTableFileError",
        "AeTableProblem",
        "FileAeTitles",
    ],
    "pacsref.addin.errors": [
        "AddinFailure",
        "AddinLoadError",
        "AddinStatusError",
        "AddinTimeout",
        "AeTitleError",
        "ServiceConflict",
        "ServiceNotFound",
    ],
    "pacsref.addin.interfaces": [
        "IAbstractSyntaxFallback",
        "IAddInOptions",
        "IAddin",
        "IAeTitles",
        "IAssociationHook",
        "IDicomRequest",
        "IEchoHandler",
        "IFindHandler",
        "IGetHandler",
        "IMessageNotification",
        "IMoveHandler",
        "INServiceHandler",
        "ISecurity",
        "IServiceRegistry",
        "IStoreHandler",
        "IUserIdentityNegotiation",
    ],
    "pacsref.addin.deadline": ["AddinDeadline"],
    "pacsref.addin.loader": ["ENTRY_POINT_GROUP", "LoadResult", "load_addins", "package_name_for"],
    "pacsref.addin.options": ["AddInOption", "AddInOptionsError", "OptionValues", "OptionsSchema"],
    "pacsref.addin.options_file": ["OPTIONS_DIR_NAME", "OptionsFile"],
    "pacsref.addin.registry": ["BASE_SERVICES", "ServiceRegistry", "default_services"],
    "pacsref.addin.requests": ["AssociationInfo", "DimseRequest", "StoreOutcome", "SubOperation"],
    "pacsref.addin.runner": [
        "EXCEPTION_STATUSES",
        "call_with_timeout",
        "is_nonblocking",
        "nonblocking",
        "status_for_exception",
    ],
    "pacsref.addin.status": [
        "CANCEL",
        "PENDING",
        "PENDING_WARNING",
        "PROCESSING_FAILURE",
        "SUCCESS",
    ],
    "pacsref.association": ["SupportedContext"],
    "pacsref.ul.events": ["UserIdentity", "UserIdentityType"],
}


def test_exports_are_pinned() -> None:
    """__all__ is exactly the documented names, each the object its module defines."""
    expected = sorted(name for names in EXPORTS.values() for name in names)
    assert sorted(pacsref.addin.__all__) == expected
    for module_name, names in EXPORTS.items():
        module = importlib.import_module(module_name)
        for name in names:
            assert getattr(pacsref.addin, name) is getattr(module, name), name


def test_every_interface_member_is_documented() -> None:
    """Each interface, attribute and method carries a docstring (Klein _isession.py style)."""
    for name in interfaces.__all__:
        interface = getattr(interfaces, name)
        assert interface.isOrExtends(Interface)
        assert (interface.__doc__ or "").strip(), name
        for member in interface.names():
            assert (interface[member].getDoc() or "").strip(), f"{name}.{member}"


def test_handler_methods_take_only_the_request() -> None:
    """Every handle_* method takes exactly one argument, the DimseRequest."""
    for name in interfaces.__all__:
        interface = getattr(interfaces, name)
        for member in interface.names():
            if member.startswith("handle_"):
                assert interface[member].getSignatureInfo()["positional"] == ("request",)


def test_request_shortcuts_reach_association() -> None:
    """Handlers read calling/called AE and peer address straight off the request."""
    request = make_request()
    assert (request.calling_ae, request.called_ae) == ("ECHOSCU", "PACSREF")
    assert request.peer == ("127.0.0.1", 40000)
    assert request.log.namespace == "pacsref.addin.test"


def test_request_is_immutable() -> None:
    """A request is shared between reactor and worker thread, so it cannot change."""
    request = make_request()
    with pytest.raises(AttributeError):
        request.message_id = 8  # type: ignore[misc]


@pytest.mark.parametrize(
    "overrides",
    [{"message_id": -1}, {"message_id": 0x10000}, {"context_id": 2}, {"context_id": 257}],
)
def test_request_validates_ids(overrides: dict[str, int]) -> None:
    """Message IDs are 16-bit and context IDs odd 1-255, checked at construction."""
    with pytest.raises(ValueError):
        make_request(**overrides)


def test_request_equality_ignores_log_and_services() -> None:
    """Two requests for the same message compare equal whatever logger/registry they carry."""
    assert make_request(dataset_path=Path("x")) == make_request(dataset_path=Path("x"))


def test_association_info_peer() -> None:
    """AssociationInfo.peer is the (host, port) pair."""
    assert AssociationInfo("A", "B", "10.0.0.9", 104).peer == ("10.0.0.9", 104)
