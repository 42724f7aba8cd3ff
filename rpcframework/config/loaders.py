"""Loading settings trees from DIRAC ``.cfg`` files, TOML files, dicts and the environment.

Environment scheme (documented in ``docs/configuration.md``):

``RPCFRAMEWORK_CONFIG``
    Comma-separated configuration files, loaded in order (later files override earlier ones). When unset,
    ``DIRACSYSCONFIG`` (same syntax, as in DIRAC) is used. A file ending in ``.toml`` is TOML; anything else is a
    DIRAC ``.cfg`` file.
``RPCFRAMEWORK_CFG_JSON``
    A JSON object with the same tree, applied over the files.
``RPCFRAMEWORK_CFG__<Seg>__<Seg>...=<value>``
    One option per variable; ``__`` separates path segments and case is kept:
    ``RPCFRAMEWORK_CFG__Systems__DataManagement__URLs__Dispatcher=dips://h1:9135/DataManagement/Dispatcher``
    sets ``/Systems/DataManagement/URLs/Dispatcher``. Applied last, in sorted variable-name order.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from diraccfg import CFG

from rpcframework.config.cfg_errors import cfg_error
from rpcframework.config.tree import ConfigOption, ConfigTree, Node, SourceKind, ValueSource, split_list
from rpcframework.errors import ConfigurationError

ENV_CONFIG_FILES = "RPCFRAMEWORK_CONFIG"
ENV_DIRAC_CONFIG_FILES = "DIRACSYSCONFIG"
ENV_JSON = "RPCFRAMEWORK_CFG_JSON"
ENV_OPTION_PREFIX = "RPCFRAMEWORK_CFG__"
ENV_SEPARATOR = "__"


def load_cfg_text(text: str, location: str = "<string>") -> ConfigTree:
    """Parse DIRAC ``.cfg`` text with diraccfg; a syntax error names ``location``, the line and what is wrong."""
    try:
        cfg = CFG().loadFromBuffer(text)
    except Exception as exc:  # diraccfg raises KeyError, ValueError, SyntaxError... for malformed text
        raise ConfigurationError(f"{location}:{cfg_error(text, exc)}") from None
    return ConfigTree.from_dict(cfg.getAsDict(), ValueSource(SourceKind.CFG_FILE, location))


def load_toml_text(text: str, location: str = "<string>") -> ConfigTree:
    """Parse TOML text holding the same tree as a ``.cfg`` file (tables are sections)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{location}: cannot parse TOML: {exc}") from None
    return ConfigTree.from_dict(data, ValueSource(SourceKind.TOML_FILE, location))


def file_kind(path: str | os.PathLike[str]) -> SourceKind:
    """TOML for ``*.toml``; DIRAC cfg for everything else (``.cfg`` is DIRAC's only convention)."""
    return SourceKind.TOML_FILE if str(path).lower().endswith(".toml") else SourceKind.CFG_FILE


def load_file(path: str | os.PathLike[str]) -> ConfigTree:
    """Load one file, choosing the parser by its suffix."""
    location = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read configuration file {location}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{location}: not UTF-8 text: {exc}") from None
    if file_kind(path) is SourceKind.TOML_FILE:
        return load_toml_text(text, location)
    return load_cfg_text(text, location)


def load_dict(data: Mapping[str, Any], label: str = "<dict>") -> ConfigTree:
    """A tree from nested mappings (sections) and values (options); ``label`` names the source in reports."""
    return ConfigTree.from_dict(data, ValueSource(SourceKind.DICT, label))


def config_files_from_env(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The files named by ``RPCFRAMEWORK_CONFIG``, else by ``DIRACSYSCONFIG`` (both comma-separated)."""
    env = os.environ if environ is None else environ
    for name in (ENV_CONFIG_FILES, ENV_DIRAC_CONFIG_FILES):
        value = env.get(name, "")
        if value.strip():
            return split_list(value)
    return ()


def env_overrides(environ: Mapping[str, str] | None = None) -> ConfigTree:
    """The tree set by ``RPCFRAMEWORK_CFG_JSON`` and then the ``RPCFRAMEWORK_CFG__*`` variables."""
    env = os.environ if environ is None else environ
    tree = ConfigTree()
    raw_json = env.get(ENV_JSON, "")
    if raw_json.strip():
        try:
            data = json.loads(raw_json)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{ENV_JSON}: invalid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigurationError(f"{ENV_JSON}: expected a JSON object, got {type(data).__name__}")
        tree = ConfigTree.from_dict(data, ValueSource(SourceKind.ENV, ENV_JSON))
    root: Node = {}
    for name in sorted(env):
        if name.startswith(ENV_OPTION_PREFIX):
            _set_option(root, _env_path(name), ConfigOption(env[name], ValueSource(SourceKind.ENV, name)))
    return tree.merge(ConfigTree(root))


def _env_path(name: str) -> tuple[str, ...]:
    parts = tuple(name[len(ENV_OPTION_PREFIX) :].split(ENV_SEPARATOR))
    if not parts or any(not p for p in parts):
        raise ConfigurationError(
            f"environment variable {name}: expected {ENV_OPTION_PREFIX}<Section>__<Option>, e.g. "
            f"{ENV_OPTION_PREFIX}DIRAC__Setup=Production (empty path segment)"
        )
    return parts


def _set_option(root: Node, parts: Sequence[str], option: ConfigOption) -> None:
    node = root
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = option


def load_sources(files: Sequence[str | os.PathLike[str]], environ: Mapping[str, str] | None = None) -> ConfigTree:
    """Files in order, then the environment overrides: the standard lookup order."""
    trees = [load_file(f) for f in files]
    return ConfigTree().merge(*trees, env_overrides(environ))
