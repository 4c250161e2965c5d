"""The typed settings of one server: :class:`ServerSettings` and :func:`settings_from_mapping`.

A :class:`ServerSettings` is always valid: it checks (and normalises) itself on construction,
so a bad value is caught where it is made, whichever way it was made (TOML file, CLI options,
``replace``). It is frozen so that running code can share one instance without defensive copies;
a change is a new instance (:meth:`ServerSettings.replace`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from pacsref.settings.errors import SettingsError
from pacsref.settings.fields import (
    DEFAULT_ADDIN_TIMEOUT,
    DEFAULT_ALLOW_ANONYMOUS,
    DEFAULT_ARTIM_TIMEOUT,
    DEFAULT_CHECK_CALLED_AE_TITLE,
    DEFAULT_CLIENT_TIMEOUT,
    DEFAULT_COPY_DATASET_IMAGE,
    DEFAULT_DESCRIPTION,
    DEFAULT_ENABLE_SERVICE_LOG,
    DEFAULT_IMPLEMENTATION_CLASS_UID,
    DEFAULT_IMPLEMENTATION_VERSION_NAME,
    DEFAULT_IP_ADDRESS,
    DEFAULT_MAX_CLIENTS,
    DEFAULT_MAX_PDU_LENGTH,
    DEFAULT_MULTIPLE_CONNECTIONS,
    DEFAULT_NO_DELAY,
    DEFAULT_PORT,
    DEFAULT_RECEIVE_BUFFER,
    DEFAULT_RECONNECT_TIMEOUT,
    DEFAULT_SEND_BUFFER,
    DEFAULT_SERVER_SECURE,
    DEFAULT_SERVICE_DISPLAY_NAME,
    DEFAULT_START_MODE,
    DEFAULT_STOP_TIMEOUT,
    DEFAULT_TEMPORARY_DIRECTORY,
    StartMode,
    validate_mapping,
)

#: Names inside a server directory ``<root>/<AE>/`` (docs/CONTRACTS.md).
SETTINGS_FILE_NAME = "settings.toml"
ADDINS_DIR_NAME = "addins"
TMP_DIR_NAME = "tmp"
LOGS_DIR_NAME = "logs"
DATA_DIR_NAME = "data"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """Settings of one DICOM server, as on the framework's "Add New Server" dialog.

    Keyword-only because 23 positional fields would be an accident waiting to happen. See
    :data:`pacsref.settings.fields.FIELD_SPECS` for each field's rule; notable conventions:

    * ``ae_title`` is stored without its (insignificant) leading/trailing spaces.
    * ``temporary_directory == ""`` means ``<server dir>/tmp``; use
      :meth:`effective_temporary_directory`.
    * ``service_display_name == ""`` means ``Dicom Server [<AE>]``; use
      :attr:`effective_service_display_name`.
    * ``max_pdu_length == 0`` means "no limit" (PS3.8); otherwise 4096..2**32-1.
    * ``client_timeout == 0`` disables the idle timeout; :attr:`effective_client_timeout` is
      then ``None``. Timeouts are floats in seconds.
    """

    # Settings tab
    ae_title: str
    implementation_class_uid: str = DEFAULT_IMPLEMENTATION_CLASS_UID
    description: str = DEFAULT_DESCRIPTION
    implementation_version_name: str = DEFAULT_IMPLEMENTATION_VERSION_NAME
    ip_address: str = DEFAULT_IP_ADDRESS
    temporary_directory: str = DEFAULT_TEMPORARY_DIRECTORY
    port: int = DEFAULT_PORT
    max_clients: int = DEFAULT_MAX_CLIENTS
    server_secure: bool = DEFAULT_SERVER_SECURE
    allow_anonymous: bool = DEFAULT_ALLOW_ANONYMOUS
    enable_service_log: bool = DEFAULT_ENABLE_SERVICE_LOG
    multiple_connections: bool = DEFAULT_MULTIPLE_CONNECTIONS
    check_called_ae_title: bool = DEFAULT_CHECK_CALLED_AE_TITLE
    # Advanced tab
    service_display_name: str = DEFAULT_SERVICE_DISPLAY_NAME
    max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH
    client_timeout: float = DEFAULT_CLIENT_TIMEOUT
    reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT
    addin_timeout: float = DEFAULT_ADDIN_TIMEOUT
    artim_timeout: float = DEFAULT_ARTIM_TIMEOUT
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    no_delay: bool = DEFAULT_NO_DELAY
    receive_buffer: int = DEFAULT_RECEIVE_BUFFER
    send_buffer: int = DEFAULT_SEND_BUFFER
    start_mode: StartMode = DEFAULT_START_MODE
    copy_dataset_image: bool = DEFAULT_COPY_DATASET_IMAGE

    def __post_init__(self) -> None:
        """Validate every field and store the normalised values (stripped AE, float seconds).

        All problems are reported together, as for a file. ``object.__setattr__`` is the
        documented way to normalise a frozen dataclass during initialisation.
        """
        current = {field.name: getattr(self, field.name) for field in fields(self)}
        values, problems = validate_mapping(current, source=type(self).__name__)
        if problems:
            raise SettingsError(problems)
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def as_mapping(self) -> dict[str, str | int | float | bool]:
        """Return the fields as plain TOML scalars (``start_mode`` as its string), in order."""
        result: dict[str, str | int | float | bool] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            result[field.name] = value.value if isinstance(value, StartMode) else value
        return result

    def replace(self, **changes: object) -> ServerSettings:
        """Return a validated copy with ``changes`` applied; unknown names are errors too."""
        merged: dict[str, object] = {**self.as_mapping(), **changes}
        return settings_from_mapping(merged, source=f"{type(self).__name__}.replace()")

    @property
    def effective_service_display_name(self) -> str:
        """The display name to show: the configured one, else ``Dicom Server [<AE title>]``."""
        return self.service_display_name or f"Dicom Server [{self.ae_title}]"

    @property
    def effective_client_timeout(self) -> float | None:
        """The idle timeout in seconds, or ``None`` when disabled (``client_timeout = 0``)."""
        return self.client_timeout or None

    @property
    def effective_max_pdu_length(self) -> int | None:
        """The Maximum Length we announce, or ``None`` for "no limit" (``max_pdu_length = 0``)."""
        return self.max_pdu_length or None

    def effective_temporary_directory(self, server_dir: Path) -> Path:
        """The spool directory to use: ``temporary_directory`` resolved against ``server_dir``.

        Relative paths are relative to the server directory (not the process's working
        directory, which a daemon does not control); ``""`` means ``<server_dir>/tmp``.
        """
        configured = Path(self.temporary_directory or TMP_DIR_NAME)
        return configured if configured.is_absolute() else Path(server_dir) / configured


def settings_from_mapping(
    mapping: Mapping[str, object], source: str = "<mapping>"
) -> ServerSettings:
    """Build validated settings from a flat mapping (parsed TOML, CLI options, ...).

    Missing keys take their defaults (``ae_title`` is required). Values must already have the
    right Python type: ``"104"`` is not a port and ``None`` is not "unset" -- callers that
    collect optional CLI options leave unset ones out. Every problem is reported in one
    :class:`SettingsError` whose lines start with ``source``.
    """
    values, problems = validate_mapping(mapping, source)
    if problems:
        raise SettingsError(problems)
    return ServerSettings(**values)  # type: ignore[arg-type]  # checked by validate_mapping
