"""The settings tree: an immutable snapshot of DIRAC-style configuration with per-value sources.

A :class:`ConfigTree` holds sections and options addressed by DIRAC paths (``/Systems/DataManagement/URLs/Dispatcher``).
Every option value is a string, exactly as in a DIRAC ``.cfg`` file; typed getters interpret it (DIRAC lists are
comma-separated with whitespace trimmed, booleans are ``yes/no/true/false``). Every option remembers the
:class:`ValueSource` it came from so that ``rpcframework check-config`` can say where each value was set.

Trees are built by the loaders in :mod:`rpcframework.config.loaders` and combined with :meth:`ConfigTree.merge`;
a tree is never modified after construction, so one snapshot can be shared by every thread of a server.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from rpcframework.errors import ConfigurationError

_ABSENT = object()  # not yet in a snapshot's cache (a built value may be None)

T = TypeVar("T")

_TRUE_WORDS = frozenset({"yes", "y", "true", "1", "on"})
_FALSE_WORDS = frozenset({"no", "n", "false", "0", "off"})


class SourceKind(enum.Enum):
    """Where a value came from."""

    CFG_FILE = "cfg file"
    TOML_FILE = "toml file"
    DICT = "dict"
    ENV = "environment"
    DEFAULT = "default"


@dataclass(frozen=True)
class ValueSource:
    """The origin of one value: its kind and a location (file path, variable name, or a label)."""

    kind: SourceKind
    location: str = ""

    def __str__(self) -> str:
        return f"{self.kind.value} {self.location}".strip()


DEFAULT_SOURCE = ValueSource(SourceKind.DEFAULT, "built-in default")


@dataclass(frozen=True)
class ConfigOption:
    """One option: its string value, the original items when the source gave a list, and its source."""

    value: str
    source: ValueSource
    items: tuple[str, ...] | None = None

    def as_list(self) -> tuple[str, ...]:
        """DIRAC list semantics: split on commas, trim whitespace, drop empty items."""
        if self.items is not None:
            return self.items
        return split_list(self.value)


def split_list(value: str) -> tuple[str, ...]:
    """Split a DIRAC comma-separated list (``"a, b,,c "`` -> ``("a", "b", "c")``)."""
    return tuple(item.strip() for item in value.split(",") if item.strip())


def parse_bool(value: str, *, where: str = "") -> bool:
    """Interpret DIRAC's boolean words; anything else is a :class:`ConfigurationError` rather than a silent False."""
    word = value.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ConfigurationError(f"{where or 'value'}: expected yes/no/true/false, got {value!r}")


def split_path(path: str) -> tuple[str, ...]:
    """``"/Systems//X/"`` -> ``("Systems", "X")``; the root is ``()``."""
    return tuple(part.strip() for part in path.split("/") if part.strip())


def join_path(parts: tuple[str, ...] | list[str]) -> str:
    """``("Systems", "X")`` -> ``"/Systems/X"``; the inverse of :func:`split_path`."""
    return "/" + "/".join(parts)


# A section maps names to options or nested sections; insertion order is the order of the source.
Node = dict[str, "ConfigOption | Node"]


class ConfigTree:
    """An immutable snapshot of the settings tree.

    Build one with :func:`rpcframework.config.loaders.load_file`, :meth:`from_dict` or :meth:`merge`.
    """

    __slots__ = ("_cache", "_cache_lock", "_root")

    def __init__(self, root: Node | None = None) -> None:
        self._root: Node = root if root is not None else {}
        # Derived objects (the registry, compiled rules) are built once per snapshot and cached here.
        self._cache: dict[str, object] = {}
        self._cache_lock = threading.Lock()

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: ValueSource | None = None) -> ConfigTree:
        """Build a tree from nested mappings; scalars become strings, sequences become DIRAC lists."""
        src = source or ValueSource(SourceKind.DICT, "<dict>")
        return cls(_node_from_mapping(data, src, ()))

    def merge(self, *others: ConfigTree) -> ConfigTree:
        """A new tree where options of later trees replace earlier ones; sections merge recursively."""
        root = _copy_node(self._root)
        for other in others:
            _merge_into(root, other._root)
        return ConfigTree(root)

    # -- navigation ---------------------------------------------------------------------------------------------
    def _find(self, path: str) -> ConfigOption | Node | None:
        node: ConfigOption | Node = self._root
        for part in split_path(path):
            if not isinstance(node, dict):
                return None
            child = node.get(part)
            if child is None:
                return None
            node = child
        return node

    def option(self, path: str) -> ConfigOption | None:
        """The option at ``path`` with its source, or None when absent (or a section)."""
        found = self._find(path)
        return found if isinstance(found, ConfigOption) else None

    def has_section(self, path: str) -> bool:
        return isinstance(self._find(path), dict)

    def has_option(self, path: str) -> bool:
        return self.option(path) is not None

    @overload
    def get(self, path: str) -> str | None: ...
    @overload
    def get(self, path: str, default: str) -> str: ...
    @overload
    def get(self, path: str, default: T) -> str | T: ...
    def get(self, path: str, default: object = None) -> object:
        """The raw string at ``path``, or ``default`` when the option is absent."""
        opt = self.option(path)
        return default if opt is None else opt.value

    def get_with_source(self, path: str, default: str | None = None) -> tuple[str | None, ValueSource]:
        """The value and where it came from; a missing option reports ``default`` with a DEFAULT source."""
        opt = self.option(path)
        if opt is None:
            return default, DEFAULT_SOURCE
        return opt.value, opt.source

    def get_str(self, path: str, default: str = "") -> str:
        """The value with surrounding whitespace removed; an empty value counts as absent (as in DIRAC)."""
        opt = self.option(path)
        if opt is None or not opt.value.strip():
            return default
        return opt.value.strip()

    def get_int(self, path: str, default: int) -> int:
        opt = self.option(path)
        if opt is None or not opt.value.strip():
            return default
        try:
            return int(opt.value.strip())
        except ValueError:
            raise ConfigurationError(f"{path}: expected an integer, got {opt.value!r} (from {opt.source})") from None

    def get_bool(self, path: str, default: bool) -> bool:
        opt = self.option(path)
        if opt is None or not opt.value.strip():
            return default
        return parse_bool(opt.value, where=f"{path} (from {opt.source})")

    def get_list(self, path: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        """A DIRAC list: comma-separated, whitespace trimmed, empty items dropped."""
        opt = self.option(path)
        if opt is None:
            return default
        return opt.as_list()

    def get_section(self, path: str) -> ConfigTree:
        """The sub-tree at ``path`` (an empty tree when absent); paths inside it are relative to ``path``."""
        found = self._find(path)
        if isinstance(found, dict):
            return ConfigTree(found)
        if found is not None:
            raise ConfigurationError(f"{join_path(split_path(path))} is an option, not a section")
        return ConfigTree()

    def sections(self, path: str = "/") -> tuple[str, ...]:
        """Names of the sub-sections of ``path``, in source order."""
        found = self._find(path)
        if not isinstance(found, dict):
            return ()
        return tuple(name for name, child in found.items() if isinstance(child, dict))

    def options(self, path: str = "/") -> tuple[str, ...]:
        """Names of the options directly in ``path``, in source order."""
        found = self._find(path)
        if not isinstance(found, dict):
            return ()
        return tuple(name for name, child in found.items() if isinstance(child, ConfigOption))

    def items(self) -> Iterator[tuple[str, str, ValueSource]]:
        """Every option as ``(path, value, source)``, depth first in source order (for ``check-config``)."""
        yield from _walk(self._root, ())

    def as_dict(self) -> dict[str, Any]:
        """Nested plain dicts of strings (the shape diraccfg's ``getAsDict`` gives)."""
        return _node_to_dict(self._root)

    # -- per-snapshot cache -------------------------------------------------------------------------------------
    def cached(self, key: str, factory: Callable[[ConfigTree], T]) -> T:
        """Build ``factory(self)`` once per snapshot (e.g. the registry's indexes) and return it thereafter."""
        # Built values are never replaced: once present, one dict read (atomic) answers without the lock, which a
        # new connection would otherwise take several times (registry, guard and service settings).
        found = self._cache.get(key, _ABSENT)
        if found is not _ABSENT:
            return found  # type: ignore[return-value]
        with self._cache_lock:
            if key not in self._cache:
                self._cache[key] = factory(self)
            return self._cache[key]  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"ConfigTree({sum(1 for _ in self.items())} options)"


def _scalar_to_str(value: object, where: str) -> str:
    if isinstance(value, bool):
        # DIRAC writes booleans as yes/no; keep that spelling so dumps look like .cfg files.
        return "yes" if value else "no"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ConfigurationError(f"{where}: unsupported value type {type(value).__name__}")


def _node_from_mapping(data: Mapping[str, Any], source: ValueSource, at: tuple[str, ...]) -> Node:
    node: Node = {}
    for key, value in data.items():
        name = str(key).strip()
        where = join_path((*at, name))
        if not name or "/" in name:
            raise ConfigurationError(f"{where}: invalid name {key!r} (names cannot be empty or contain '/')")
        if isinstance(value, Mapping):
            node[name] = _node_from_mapping(value, source, (*at, name))
        elif isinstance(value, (list, tuple)):
            items = tuple(_scalar_to_str(v, where).strip() for v in value)
            items = tuple(i for i in items if i)
            node[name] = ConfigOption(", ".join(items), source, items)
        elif value is None:
            continue
        else:
            node[name] = ConfigOption(_scalar_to_str(value, where), source)
    return node


def _copy_node(node: Node) -> Node:
    return {k: (_copy_node(v) if isinstance(v, dict) else v) for k, v in node.items()}


def _merge_into(target: Node, extra: Node) -> None:
    for name, child in extra.items():
        current = target.get(name)
        if isinstance(child, dict):
            if isinstance(current, dict):
                _merge_into(current, child)
            else:
                target[name] = _copy_node(child)
        else:
            target[name] = child


def _walk(node: Node, at: tuple[str, ...]) -> Iterator[tuple[str, str, ValueSource]]:
    for name, child in node.items():
        if isinstance(child, dict):
            yield from _walk(child, (*at, name))
        else:
            yield join_path((*at, name)), child.value, child.source


def _node_to_dict(node: Node) -> dict[str, Any]:
    return {k: (_node_to_dict(v) if isinstance(v, dict) else v.value) for k, v in node.items()}
