"""The ``describe`` built-in: what a service exports, as far as the caller may call it.

Every answer is built from the compiled :class:`~rpcframework.server.methods.MethodTable` and filtered through the
service's own authorization decision for *this* caller (``RequestContext.may_call``, which the
:class:`~rpcframework.server.service.Service` wires to the same rule selection and ``authorize`` that admit a
call). A caller learns nothing it could not learn by trying each name: a method it may not call is absent, not
marked as forbidden. Without ``may_call`` (a handler run outside a service), nothing is listed.

Types are *portable* names (``int``, ``str``, ``list``, ``datetime`` ... see :data:`PORTABLE_TYPE_NAMES`), never a
Python ``repr``: a class the table does not know is ``any``, so no module path of the server reaches a peer.
The shape (all JSON-friendly, stable keys)::

    {"service": "DataManagement/Dispatcher", "version": "0.1.0",
     "methods": [{"name": "next_file", "doc": "...", "varargs": False,
                  "params": [{"name": "project_id", "type": "int", "required": True, "kind": "positional"}, ...]}],
     "transfers": ["FromClient", ...]}
"""

from __future__ import annotations

import datetime
import difflib
import inspect
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from rpcframework.server.methods import ExportedMethod, MethodTable

#: ``(action, name) -> bool``: ``("RPC", "next_file")`` or ``("FileTransfer", "FromClient")``.
MayCall = Callable[[str, str], bool]

#: Python type -> the portable name ``describe`` uses (also what ``rpcframework stub`` maps back to hints).
PORTABLE_TYPE_NAMES: Final[Mapping[type, str]] = types.MappingProxyType(
    {
        bool: "bool",
        int: "int",
        float: "float",
        str: "str",
        bytes: "bytes",
        list: "list",
        tuple: "tuple",
        dict: "dict",
        set: "set",
        datetime.datetime: "datetime",
        datetime.date: "date",
        type(None): "none",
    }
)
ANY_TYPE: Final = "any"
#: Bounds on what one answer carries, whatever a handler's author wrote.
MAX_DOC_CHARS: Final = 4000
#: How much of an unknown (peer-sent) method name an error message quotes.
MAX_QUOTED_NAME: Final = 80


def portable_type(spec: object) -> str:
    """A compiled ``types_`` spec as ``"int"``, ``"int | str"`` or ``"any"`` (unchecked or unknown classes)."""
    if spec is None:
        return ANY_TYPE
    if isinstance(spec, types.UnionType):
        return portable_type(spec.__args__)
    if isinstance(spec, tuple):
        names = [portable_type(item) for item in spec]
        if ANY_TYPE in names:
            return ANY_TYPE
        return " | ".join(dict.fromkeys(names))
    if isinstance(spec, type):
        return PORTABLE_TYPE_NAMES.get(spec, ANY_TYPE)
    return ANY_TYPE


def _positional_params(method: ExportedMethod) -> tuple[list[inspect.Parameter], bool]:
    parameters = list(inspect.signature(method.function).parameters.values())[1:]  # without self
    positional = [
        p for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)
    return positional, varargs


def describe_method(method: ExportedMethod) -> dict[str, Any]:
    """One method: its parameters in call order (positional, then keyword-only), types, which are required, doc."""
    check = method.arguments
    spec_by_index = {position.index: position.spec for position in check.positions}
    positional, varargs = _positional_params(method)
    params: list[dict[str, Any]] = []
    for index, parameter in enumerate(positional):
        params.append(
            {
                "name": parameter.name,
                "type": portable_type(spec_by_index.get(index)),
                "required": index < check.min_args,
                "kind": "positional",
            }
        )
    for name, keyword in check.keywords.items():
        if keyword.position is None:
            params.append(
                {
                    "name": name,
                    "type": portable_type(keyword.spec),
                    "required": name in check.required_keywords,
                    "kind": "keyword",
                }
            )
    doc = inspect.getdoc(method.function) or ""
    return {"name": method.name, "doc": doc[:MAX_DOC_CHARS], "varargs": varargs, "params": params}


def callable_methods(table: MethodTable, may_call: MayCall | None) -> list[str]:
    """The names of ``table``'s methods the caller may call, sorted; none without ``may_call``."""
    if may_call is None:
        return []
    return sorted(name for name in table.methods if may_call("RPC", name))


def describe_service(service: str, version: str, table: MethodTable, may_call: MayCall | None) -> dict[str, Any]:
    """The ``describe`` answer for one caller (see the module docstring for the shape)."""
    methods = [describe_method(table.methods[name]) for name in callable_methods(table, may_call)]
    transfers = sorted(d for d in table.transfers if may_call is not None and may_call("FileTransfer", d))
    return {"service": service, "version": version, "methods": methods, "transfers": transfers}


def quote_name(name: object) -> str:
    """A peer-sent name made safe to echo: control and non-ASCII characters escaped, cut to 80 characters."""
    text = name if isinstance(name, str) else repr(name)
    escaped = text[: MAX_QUOTED_NAME * 4].encode("ascii", "backslashreplace").decode("ascii")
    escaped = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in escaped)
    return escaped if len(escaped) <= MAX_QUOTED_NAME else escaped[: MAX_QUOTED_NAME - 3] + "..."


def suggest(name: object, candidates: Iterable[str], allowed: Callable[[str], bool], *, limit: int = 3) -> list[str]:
    """The ``candidates`` closest to ``name`` that ``allowed`` admits (at most ``limit``).

    Only the first 80 characters of a peer-sent name are compared, and only the few closest names are put to
    ``allowed`` (an authorization check each), so a flood of unknown names costs little more than the lookups.
    """
    if not isinstance(name, str) or not name:
        return []
    # The 10 closest at most are put to ``allowed``: bounded work per unknown name, whatever the table's size.
    close = difflib.get_close_matches(name[:MAX_QUOTED_NAME], list(candidates), n=max(10, limit), cutoff=0.6)
    return [candidate for candidate in close if allowed(candidate)][:limit]


def unknown_method_message(name: object, candidates: Iterable[str], may_call: MayCall | None) -> str:
    """DIRAC's ``"Unknown method <name>"`` (the name escaped and cut), plus the closest methods this caller may
    call, if any (none without ``may_call``)."""
    message = f"Unknown method {quote_name(name)}"
    if may_call is None:
        return message
    close = suggest(name, candidates, lambda method: may_call("RPC", method))
    if close:
        message += f"; did you mean {' or '.join(close)}?"
    return message
