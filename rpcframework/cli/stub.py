"""A service's ``describe`` answer, checked, and turned into the source of a typed :class:`~rpcframework.Client`.

The answer comes from a peer, so nothing in it is trusted: :func:`parse_description` keeps only well-formed
entries (names that are Python identifiers, known portable types, bounded sizes), and :func:`render_stub` writes
peer text into the source only as names it has checked or as string literals it has escaped. The result is parsed
with :mod:`ast` before it is returned, so a hostile answer gives a refused stub or an inert one, never code.
"""

from __future__ import annotations

import ast
import itertools
import keyword
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from rpcframework.client.client import Client
from rpcframework.errors import ProtocolError

__all__ = ["MethodDescription", "Parameter", "ServiceDescription", "parse_description", "render_stub"]

#: Portable type name (see ``rpcframework.server.describe``) -> the annotation the stub uses.
ANNOTATIONS: Final[Mapping[str, str]] = {
    "bool": "bool",
    "int": "int",
    "float": "float",
    "str": "str",
    "bytes": "bytes",
    "list": "list[Any]",
    "tuple": "tuple[Any, ...]",
    "dict": "dict[Any, Any]",
    "set": "set[Any]",
    "datetime": "datetime.datetime",
    "date": "datetime.date",
    "none": "None",
    "any": "Any",
}
MAX_METHODS: Final = 1000
MAX_PARAMS: Final = 100
MAX_DOC: Final = 4000
# C0/C1 controls (terminal escapes) and the bidirectional/zero-width marks of "Trojan Source" (CVE-2021-42574).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str  # a portable name, "int | none" or "any"
    required: bool
    keyword_only: bool


@dataclass(frozen=True)
class MethodDescription:
    name: str
    doc: str
    params: tuple[Parameter, ...]
    varargs: bool


@dataclass(frozen=True)
class ServiceDescription:
    service: str
    version: str
    methods: tuple[MethodDescription, ...]
    transfers: tuple[str, ...]
    skipped: int  # entries dropped because they were malformed or not usable from Python


def safe_text(text: object, limit: int = 200) -> str:
    """Peer text made harmless on a terminal: control characters escaped (newlines kept), cut to ``limit``."""
    raw = text if isinstance(text, str) else repr(text)
    raw = raw[:limit] + ("..." if len(raw) > limit else "")
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", raw)


def _is_name(value: object) -> bool:
    return isinstance(value, str) and value.isidentifier() and value.isascii() and not keyword.iskeyword(value)


def _portable(value: object) -> str:
    """A checked portable type ("int | none"); anything unknown or malformed is ``any``."""
    if not isinstance(value, str) or len(value) > 200:
        return "any"
    names = [part.strip() for part in value.split("|")]
    if not names or any(name not in ANNOTATIONS for name in names) or "any" in names:
        return "any"
    return " | ".join(dict.fromkeys(names))


def _parse_params(raw: object) -> tuple[Parameter, ...] | None:
    if not isinstance(raw, list) or len(raw) > MAX_PARAMS:
        return None
    params: list[Parameter] = []
    for entry in raw:
        if not isinstance(entry, dict) or not _is_name(entry.get("name")) or entry["name"] == "self":
            return None
        kind = entry.get("kind")
        if kind not in ("positional", "keyword"):
            return None
        params.append(
            Parameter(entry["name"], _portable(entry.get("type")), entry.get("required") is True, kind == "keyword")
        )
    names = [p.name for p in params]
    positional = [p for p in params if not p.keyword_only]
    # Python's own rules: unique names, required positional parameters before optional ones, positional first.
    if len(set(names)) != len(names) or params[: len(positional)] != positional:
        return None
    if any(later.required and not earlier.required for earlier, later in itertools.pairwise(positional)):
        return None
    return tuple(params)


def _parse_method(raw: object) -> MethodDescription | None:
    if not isinstance(raw, dict):
        return None
    name = raw.get("name")
    if not isinstance(name, str) or not _is_name(name) or name.startswith("_") or name in Client._rpc_reserved:
        return None  # still callable as client.remote(name); not as a typed method
    params = _parse_params(raw.get("params", []))
    if params is None:
        return None
    doc = raw.get("doc")
    return MethodDescription(name, doc[:MAX_DOC] if isinstance(doc, str) else "", params, raw.get("varargs") is True)


def parse_description(value: object) -> ServiceDescription:
    """Check a ``describe`` answer's value; raise :class:`ProtocolError` when its shape is not one at all."""
    if not isinstance(value, dict) or not isinstance(value.get("methods"), list):
        raise ProtocolError("the service's describe answer is not a description (no 'methods' list)")
    raw_methods = value["methods"][:MAX_METHODS]
    methods = [method for method in map(_parse_method, raw_methods) if method is not None]
    unique = {method.name: method for method in methods}
    transfers = value.get("transfers")
    return ServiceDescription(
        service=safe_text(value.get("service", ""), 200),
        version=safe_text(value.get("version", ""), 50),
        methods=tuple(unique[name] for name in sorted(unique)),
        transfers=tuple(safe_text(t, 30) for t in transfers[:10]) if isinstance(transfers, list) else (),
        skipped=len(value["methods"]) - len(unique),
    )


def _annotation(portable: str) -> str:
    return " | ".join(ANNOTATIONS[name] for name in portable.split(" | "))


def _docstring(text: str, indent: str) -> str:
    cleaned = _CONTROL.sub("", text).replace("\\", "\\\\").replace('"""', '\\"\\"\\"').strip()
    if not cleaned:
        return ""
    if cleaned.endswith('"'):
        cleaned += " "
    body = f"\n{indent}".join(line.rstrip() for line in cleaned.splitlines())
    closing = f"\n{indent}" if "\n" in cleaned else ""
    return f'{indent}"""{body}{closing}"""\n'


def _signature(method: MethodDescription) -> str:
    parts = ["self"]
    keyword_marker_needed = True
    for param in method.params:
        if param.keyword_only and keyword_marker_needed:
            parts.append("*args: Any" if method.varargs else "*")
            keyword_marker_needed = False
        hint = _annotation(param.type)
        parts.append(f"{param.name}: {hint}" if param.required else f"{param.name}: {hint} | Unset = UNSET")
    if method.varargs and keyword_marker_needed:
        parts.append("*args: Any")
    return ", ".join(parts)


def _render_method(method: MethodDescription) -> str:
    positional = [p.name for p in method.params if not p.keyword_only]
    keywords = [p.name for p in method.params if p.keyword_only]
    args = f"[{', '.join(positional)}{', *args' if method.varargs else ''}]"
    kwargs = "{" + ", ".join(f"{name!r}: {name}" for name in keywords) + "}"
    return (
        f"    def {method.name}({_signature(method)}) -> DReturn:\n"
        + _docstring(method.doc, "        ")
        + f"        return call_remote(self, {method.name!r}, {args}, {kwargs})\n"
    )


def render_stub(description: ServiceDescription, class_name: str, server_url: str) -> str:
    """The module source of ``class <class_name>(Client)`` for ``description``; checked with :func:`ast.parse`."""
    if not _is_name(class_name):
        raise ValueError(f"--class-name must be a Python identifier, not {class_name!r}")
    names = tuple(method.name for method in description.methods)
    header = _docstring(
        f"Typed client for {description.service} (rpcframework {description.version}), written by "
        "`rpcframework stub`.\n\nIt lists the methods the generating caller could call; regenerate it rather "
        "than edit it.\n",
        "",
    )
    lines = [
        header,
        "from __future__ import annotations\n",
        "import datetime  # noqa: F401  (used by the annotations of some services)",
        "from typing import Any  # noqa: F401\n",
        "from rpcframework import Client",
        "from rpcframework.client.generated import UNSET, Unset, call_remote  # noqa: F401",
        "from rpcframework.returnvalues import DReturn\n\n",
        f"class {class_name}(Client):",
        f"    serverURL = {server_url!r}",
        f"    remoteMethods = {names!r}\n",
    ]
    if description.skipped:
        lines.append(f"    # {description.skipped} described method(s) have no typed method here: call them with")
        lines.append("    # client.remote(name)(...) (names that are not Python identifiers, or that Client uses).\n")
    source = "\n".join(lines) + "\n" + "\n".join(_render_method(method) for method in description.methods)
    ast.parse(source)
    return source
