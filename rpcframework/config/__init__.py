"""Settings: the DIRAC-layout configuration tree, its loaders, reload, URL resolution and service settings.

See ``docs/configuration.md`` for the tree, the file formats, the environment overrides and the lookup order.
"""

from __future__ import annotations

from rpcframework.config.loaders import (
    ENV_CONFIG_FILES,
    ENV_DIRAC_CONFIG_FILES,
    ENV_JSON,
    ENV_OPTION_PREFIX,
    config_files_from_env,
    env_overrides,
    load_cfg_text,
    load_dict,
    load_file,
    load_sources,
    load_toml_text,
)
from rpcframework.config.settings import (
    KNOWN_OPTIONS,
    SecuritySettings,
    ServiceSettings,
    dirac_setup,
    read_security_settings,
    read_service_settings,
    virtual_organization,
)
from rpcframework.config.store import ConfigStore
from rpcframework.config.tree import ConfigOption, ConfigTree, SourceKind, ValueSource, parse_bool, split_list
from rpcframework.config.urls import (
    ServiceURL,
    ServiceURLs,
    parse_system_component,
    parse_url,
    parse_url_list,
    resolve_service_urls,
)

__all__ = [
    "ENV_CONFIG_FILES",
    "ENV_DIRAC_CONFIG_FILES",
    "ENV_JSON",
    "ENV_OPTION_PREFIX",
    "KNOWN_OPTIONS",
    "ConfigOption",
    "ConfigStore",
    "ConfigTree",
    "SecuritySettings",
    "ServiceSettings",
    "ServiceURL",
    "ServiceURLs",
    "SourceKind",
    "ValueSource",
    "config_files_from_env",
    "dirac_setup",
    "env_overrides",
    "load_cfg_text",
    "load_dict",
    "load_file",
    "load_sources",
    "load_toml_text",
    "parse_bool",
    "parse_system_component",
    "parse_url",
    "parse_url_list",
    "read_security_settings",
    "read_service_settings",
    "resolve_service_urls",
    "split_list",
    "virtual_organization",
]
