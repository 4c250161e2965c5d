"""Typed settings of one pacsref server, stored as a human-editable ``settings.toml``.

One model (:class:`ServerSettings`, always valid), one error (:class:`SettingsError`, listing
every problem with file, field, value and what is allowed), and the file/directory helpers
around them. The fields follow the PACS framework's "Add New Server" dialog.

Submodules: :mod:`.fields` (rules, defaults), :mod:`.model` (the dataclass),
:mod:`.toml_io` (read/write TOML), :mod:`.layout` (server directory), :mod:`.errors`.
"""

from pacsref.settings.errors import MISSING, SettingsError, SettingsProblem
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
    DEFAULT_TEMPORARY_DIRECTORY,
    FIELD_NAMES,
    FIELD_SPECS,
    FieldSpec,
    StartMode,
)
from pacsref.settings.layout import ServerLayout, create_server_directory
from pacsref.settings.model import (
    ADDINS_DIR_NAME,
    DATA_DIR_NAME,
    LOGS_DIR_NAME,
    SETTINGS_FILE_NAME,
    TMP_DIR_NAME,
    ServerSettings,
    settings_from_mapping,
)
from pacsref.settings.toml_io import (
    atomic_write_bytes,
    dumps_settings,
    load_settings,
    loads_settings,
    save_settings,
)

__all__ = [
    "ADDINS_DIR_NAME",
    "DATA_DIR_NAME",
    "DEFAULT_ADDIN_TIMEOUT",
    "DEFAULT_ALLOW_ANONYMOUS",
    "DEFAULT_ARTIM_TIMEOUT",
    "DEFAULT_CHECK_CALLED_AE_TITLE",
    "DEFAULT_CLIENT_TIMEOUT",
    "DEFAULT_COPY_DATASET_IMAGE",
    "DEFAULT_DESCRIPTION",
    "DEFAULT_ENABLE_SERVICE_LOG",
    "DEFAULT_IMPLEMENTATION_CLASS_UID",
    "DEFAULT_IMPLEMENTATION_VERSION_NAME",
    "DEFAULT_IP_ADDRESS",
    "DEFAULT_MAX_CLIENTS",
    "DEFAULT_MAX_PDU_LENGTH",
    "DEFAULT_MULTIPLE_CONNECTIONS",
    "DEFAULT_NO_DELAY",
    "DEFAULT_PORT",
    "DEFAULT_RECEIVE_BUFFER",
    "DEFAULT_RECONNECT_TIMEOUT",
    "DEFAULT_SEND_BUFFER",
    "DEFAULT_SERVER_SECURE",
    "DEFAULT_SERVICE_DISPLAY_NAME",
    "DEFAULT_START_MODE",
    "DEFAULT_TEMPORARY_DIRECTORY",
    "FIELD_NAMES",
    "FIELD_SPECS",
    "LOGS_DIR_NAME",
    "MISSING",
    "SETTINGS_FILE_NAME",
    "TMP_DIR_NAME",
    "FieldSpec",
    "ServerLayout",
    "ServerSettings",
    "SettingsError",
    "SettingsProblem",
    "StartMode",
    "atomic_write_bytes",
    "create_server_directory",
    "dumps_settings",
    "load_settings",
    "loads_settings",
    "save_settings",
    "settings_from_mapping",
]
