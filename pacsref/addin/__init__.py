"""The add-in framework: interfaces, request values, discovery, base services, runner.

Everything an add-in author needs is importable from here; the submodules are
implementation detail (Klein's layout). An add-in is a module-level object
providing :class:`IAddin` plus the handler interfaces it serves, dropped into a
server's ``addins/`` folder (see :mod:`pacsref.addin.loader`).
"""

from pacsref.addin.aetitles import (
    AeFieldError,
    AeInfo,
    MemoryAeTitles,
    normalize_ae_title,
    resolve_addresses,
)
from pacsref.addin.aetitles_file import (
    AE_TITLES_FILE_NAME,
    AeTableFileError,
    AeTableProblem,
    FileAeTitles,
)
from pacsref.addin.deadline import AddinDeadline
from pacsref.addin.errors import (
    AddinFailure,
    AddinLoadError,
    AddinStatusError,
    AddinTimeout,
    AeTitleError,
    ServiceConflict,
    ServiceNotFound,
)
from pacsref.addin.interfaces import (
    IAbstractSyntaxFallback,
    IAddin,
    IAddInOptions,
    IAeTitles,
    IAssociationHook,
    IDicomRequest,
    IEchoHandler,
    IFindHandler,
    IGetHandler,
    IMessageNotification,
    IMoveHandler,
    INServiceHandler,
    ISecurity,
    IServiceRegistry,
    IStoreHandler,
    IUserIdentityNegotiation,
)
from pacsref.addin.loader import ENTRY_POINT_GROUP, LoadResult, load_addins, package_name_for
from pacsref.addin.options import (
    AddInOption,
    AddInOptionsError,
    OptionsSchema,
    OptionValues,
)
from pacsref.addin.options_file import OPTIONS_DIR_NAME, OptionsFile
from pacsref.addin.registry import BASE_SERVICES, ServiceRegistry, default_services
from pacsref.addin.requests import AssociationInfo, DimseRequest, StoreOutcome, SubOperation
from pacsref.addin.runner import (
    EXCEPTION_STATUSES,
    call_with_timeout,
    is_nonblocking,
    nonblocking,
    status_for_exception,
)
from pacsref.addin.status import CANCEL, PENDING, PENDING_WARNING, PROCESSING_FAILURE, SUCCESS
from pacsref.association import SupportedContext
from pacsref.ul.events import UserIdentity, UserIdentityType

__all__ = [
    "AE_TITLES_FILE_NAME",
    "BASE_SERVICES",
    "CANCEL",
    "ENTRY_POINT_GROUP",
    "EXCEPTION_STATUSES",
    "OPTIONS_DIR_NAME",
    "PENDING",
    "PENDING_WARNING",
    "PROCESSING_FAILURE",
    "SUCCESS",
    "AddInOption",
    "AddInOptionsError",
    "AddinDeadline",
    "AddinFailure",
    "AddinLoadError",
    "AddinStatusError",
    "AddinTimeout",
    "AeFieldError",
    "AeInfo",
    "AeTableFileError",
    "AeTableProblem",
    "AeTitleError",
    "AssociationInfo",
    "DimseRequest",
    "FileAeTitles",
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
    "LoadResult",
    "MemoryAeTitles",
    "OptionValues",
    "OptionsFile",
    "OptionsSchema",
    "ServiceConflict",
    "ServiceNotFound",
    "ServiceRegistry",
    "StoreOutcome",
    "SubOperation",
    "SupportedContext",
    "UserIdentity",
    "UserIdentityType",
    "call_with_timeout",
    "default_services",
    "is_nonblocking",
    "load_addins",
    "nonblocking",
    "normalize_ae_title",
    "package_name_for",
    "resolve_addresses",
    "status_for_exception",
]
