"""The method table of a handler class: what it exports, how arguments are checked, and its own auth rules.

:func:`compile_method_table` runs once per class, from ``RequestHandler.__init_subclass__``, so every mistake in
the ``export_``/``types_``/``kwtypes_``/``auth_``/``transfer_`` declarations surfaces when the class is defined, and
a call only does a dictionary lookup (DISET resolves ``export_<name>`` and ``types_<name>`` with ``getattr`` on every
call and reports a missing ``types_`` to the caller as a server error).

Attributes are read across the MRO, so a subclass inherits its ancestors' exports and may override any part of
them; setting ``export_<name> = None`` in a subclass removes an inherited method (for instance the ``echo``
built-in). The ``auth_`` rules are recorded as immutable tuples: authorization is decided elsewhere (deny by
default), and nothing downstream can mutate the class's declaration, the way DIRAC's ``getValidGroups`` does.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from rpcframework.server.typecheck import ArgumentCheck, HandlerDefinitionError, compile_argument_check

EXPORT_PREFIX: Final = "export_"
TRANSFER_PREFIX: Final = "transfer_"

#: ``transfer_<hook>`` attribute suffix -> the direction name used on the wire (``["FileTransfer", "FromClient"]``).
TRANSFER_HOOKS: Final[Mapping[str, str]] = types.MappingProxyType(
    {
        "fromClient": "FromClient",
        "toClient": "ToClient",
        "bulkFromClient": "BulkFromClient",
        "bulkToClient": "BulkToClient",
        "listBulk": "ListBulk",
    }
)

_MISSING: Final = object()


@dataclass(frozen=True, slots=True)
class ExportedMethod:
    """One RPC method: the function to call, its compiled argument check and the handler's ``auth_`` rule."""

    name: str
    function: Callable[..., Any]
    arguments: ArgumentCheck
    auth: tuple[str, ...] | None
    defined_in: str
    limit_key: str


@dataclass(frozen=True, slots=True)
class TransferHook:
    """One ``transfer_<hook>`` method, keyed by its wire direction, with its ``auth_transfer_<hook>`` rule."""

    direction: str
    function: Callable[..., Any]
    auth: tuple[str, ...] | None
    defined_in: str
    limit_key: str


@dataclass(frozen=True, slots=True)
class MethodTable:
    """Everything a service needs to route a call to a handler class; built once, read-only."""

    handler: str
    methods: Mapping[str, ExportedMethod]
    transfers: Mapping[str, TransferHook]

    def auth_rule(self, action: str, name: str) -> tuple[str, ...] | None:
        """The handler's own rule for ``("RPC", method)`` or ``("FileTransfer", direction)``; ``None`` if it has none.

        ``None`` is not "allowed": the authorization layer denies unless the configuration gives a rule.
        """
        if action == "RPC":
            method = self.methods.get(name)
            return method.auth if method is not None else None
        if action == "FileTransfer":
            hook = self.transfers.get(name)
            return hook.auth if hook is not None else None
        return None


def _defining_class(cls: type, attribute: str) -> str:
    for klass in cls.__mro__:
        if attribute in vars(klass):
            return klass.__qualname__
    return cls.__qualname__


def _as_function(raw: object, cls: type, attribute: str) -> Callable[..., Any]:
    if inspect.isfunction(raw):
        return raw
    raise HandlerDefinitionError(
        f"{cls.__qualname__}.{attribute} must be a plain method (def {attribute}(self, ...)), not {type(raw).__name__}"
    )


def _auth_rule(cls: type, attribute: str) -> tuple[str, ...] | None:
    raw = inspect.getattr_static(cls, attribute, None)
    if raw is None:
        return None
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list | tuple) and all(isinstance(token, str) for token in raw):
        return tuple(raw)
    raise HandlerDefinitionError(
        f"{cls.__qualname__}.{attribute} = {raw!r} must be a list of rule strings (properties, 'authenticated', "
        "'all', 'group:<g>', 'vo:<v>')"
    )


def _compile_export(cls: type, attribute: str, raw: object) -> ExportedMethod:
    method = attribute[len(EXPORT_PREFIX) :]
    if not method:
        raise HandlerDefinitionError(f"{cls.__qualname__}.{attribute}: an exported method needs a name")
    function = _as_function(raw, cls, attribute)
    types_decl = inspect.getattr_static(cls, f"types_{method}", _MISSING)
    if types_decl is _MISSING:
        raise HandlerDefinitionError(
            f"{cls.__qualname__}.{attribute} has no argument types: add types_{method} = [...] with one type per "
            "positional argument ([] when it takes none, None in a position to leave it unchecked)"
        )
    kwtypes_decl = inspect.getattr_static(cls, f"kwtypes_{method}", None)
    try:
        arguments = compile_argument_check(method, function, types_decl, kwtypes_decl)
    except HandlerDefinitionError as exc:
        raise HandlerDefinitionError(f"{cls.__qualname__}: {exc}") from None
    return ExportedMethod(
        name=method,
        function=function,
        arguments=arguments,
        auth=_auth_rule(cls, f"auth_{method}"),
        defined_in=_defining_class(cls, attribute),
        limit_key=f"RPC/{method}",
    )


def _compile_transfer(cls: type, attribute: str, raw: object) -> TransferHook:
    hook = attribute[len(TRANSFER_PREFIX) :]
    direction = TRANSFER_HOOKS.get(hook)
    if direction is None:
        known = ", ".join(f"transfer_{name}" for name in TRANSFER_HOOKS)
        raise HandlerDefinitionError(f"{cls.__qualname__}.{attribute} is not a transfer hook; the hooks are {known}")
    return TransferHook(
        direction=direction,
        function=_as_function(raw, cls, attribute),
        auth=_auth_rule(cls, f"auth_{attribute}"),
        defined_in=_defining_class(cls, attribute),
        limit_key=f"FileTransfer/{direction}",
    )


def compile_method_table(cls: type) -> MethodTable:
    """Build ``cls``'s method table from its (inherited) declarations; raises :class:`HandlerDefinitionError`."""
    methods: dict[str, ExportedMethod] = {}
    transfers: dict[str, TransferHook] = {}
    for attribute in dir(cls):
        if attribute.startswith(EXPORT_PREFIX):
            raw = inspect.getattr_static(cls, attribute)
            if raw is not None:
                exported = _compile_export(cls, attribute, raw)
                methods[exported.name] = exported
        elif attribute.startswith(TRANSFER_PREFIX):
            raw = inspect.getattr_static(cls, attribute)
            if raw is not None:
                hook = _compile_transfer(cls, attribute, raw)
                transfers[hook.direction] = hook
    return MethodTable(
        handler=cls.__qualname__,
        methods=types.MappingProxyType(methods),
        transfers=types.MappingProxyType(transfers),
    )
