"""``rpcframework describe`` and ``rpcframework stub``: what a service lets you call, and a typed client for it.

``describe URL`` asks the service's built-in ``describe`` and prints the methods *you* may call with their
parameters and types (a table on a terminal, JSON with ``--output json`` or when piped). ``stub URL`` writes a
Python module with a typed ``Client`` subclass, one method per remote method, that ``mypy --strict`` checks.
Exit status: 0 on success, 1 when the service cannot be reached or refuses, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from rpcframework.cli.call import _invoke
from rpcframework.cli.client_args import add_client_options, output_mode, print_error
from rpcframework.cli.common import to_jsonable
from rpcframework.cli.main import EXIT_ERROR, EXIT_OK, SubParsers
from rpcframework.cli.stub import ServiceDescription, parse_description, render_stub, safe_text
from rpcframework.errors import RPCFrameworkError

__all__ = ["default_class_name", "describe_url", "explain_argument_error", "format_description", "register"]

_URL_HELP = "dips://host:port/System/Component, or System/Component"


def register(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    """Add ``rpcframework describe`` and ``rpcframework stub``."""
    describe = subparsers.add_parser(
        "describe",
        help="list the methods of a service you may call, with their parameters",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    describe.add_argument("url", metavar="URL", help=_URL_HELP)
    add_client_options(describe, default_output=None)
    describe.set_defaults(handler=_describe)

    stub = subparsers.add_parser(
        "stub",
        help="write a typed Client subclass for a service (for editors and mypy)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stub.add_argument("url", metavar="URL", help=_URL_HELP)
    stub.add_argument("--class-name", metavar="NAME", help="the class name (default: <Component>Client)")
    stub.add_argument("-o", "--output-file", type=Path, metavar="FILE", help="write here (default: stdout)")
    add_client_options(stub, default_output="text")
    stub.set_defaults(handler=_stub)


def describe_url(args: argparse.Namespace) -> tuple[dict[str, Any], ServiceDescription | None]:
    """The ``describe`` envelope from the service named by ``args.url``, and its checked value when it is OK."""
    envelope = _invoke(args, "describe", [], {})
    if not envelope.get("OK"):
        return envelope, None
    return envelope, parse_description(envelope.get("Value"))


def default_class_name(url: str) -> str:
    """``dips://h:9135/DataManagement/Dispatcher`` -> ``DispatcherClient``."""
    component = url.rstrip("/").rsplit("/", 1)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9_]", "", component)
    if not cleaned or cleaned[0].isdigit():
        cleaned = "Service" + cleaned
    return f"{cleaned[0].upper()}{cleaned[1:]}Client"


def _params_text(params: Any, varargs: bool) -> str:
    parts = []
    keyword_marker = False
    for param in params:
        if param.keyword_only and not keyword_marker:
            parts.append("*")
            keyword_marker = True
        text = f"{param.name}: {param.type}"
        parts.append(text if param.required else f"[{text}]")
    if varargs:
        parts.append("*args")
    return ", ".join(parts)


def format_description(description: ServiceDescription) -> str:
    """The readable table: one line per method with its signature, then the first line of its docstring."""
    lines = [f"{description.service} (rpcframework {description.version})"]
    width = max((len(m.name) for m in description.methods), default=0)
    for method in description.methods:
        lines.append(f"  {method.name:<{width}}  ({_params_text(method.params, method.varargs)})")
        summary = method.doc.strip().splitlines()[0] if method.doc.strip() else ""
        if summary:
            lines.append(f"  {'':<{width}}    {safe_text(summary, 100)}")
    if description.transfers:
        lines.append(f"file transfers: {', '.join(description.transfers)}")
    if description.skipped:
        lines.append(f"({description.skipped} more with names not usable from Python; see --output json)")
    return "\n".join(lines)


#: Starts of the server's argument-check messages (DIRAC's texts and ours) after which describe can say more.
_ARGUMENT_ERRORS = (
    "Function ",
    "Type mismatch in parameter",
    "Error in parameter check",
)


def explain_argument_error(args: argparse.Namespace, method: str, envelope: dict[str, Any]) -> dict[str, Any]:
    """``envelope`` with ``; <method> expects (<params>)`` added when it is an argument error and the service
    describes ``method`` to this caller; otherwise unchanged (one more call, only after a failed one)."""
    message = envelope.get("Message")
    if envelope.get("OK") or not isinstance(message, str) or not message.startswith(_ARGUMENT_ERRORS):
        return envelope
    try:
        _, description = describe_url(args)
    except RPCFrameworkError:
        return envelope
    found = [m for m in description.methods if m.name == method] if description is not None else []
    if not found:
        return envelope
    explained = dict(envelope)
    explained["Message"] = f"{message}; {method} expects ({_params_text(found[0].params, found[0].varargs)})"
    return explained


def _describe(args: argparse.Namespace) -> int:
    envelope, description = describe_url(args)
    if description is None:
        print_error(args.command, envelope)
        return EXIT_ERROR
    if output_mode(args) == "json":
        # ASCII-escaped: a hostile service's C1 controls or bidi marks reach the terminal as \u escapes, not raw.
        print(json.dumps(to_jsonable(envelope["Value"]), indent=2, ensure_ascii=True))
    else:
        print(format_description(description))
    return EXIT_OK


def _stub(args: argparse.Namespace) -> int:
    class_name = args.class_name or default_class_name(args.url)
    if not (class_name.isidentifier() and class_name.isascii()):
        print(
            f"rpcframework stub: error: --class-name must be a Python identifier, not {class_name!r}", file=sys.stderr
        )
        return 2
    envelope, description = describe_url(args)
    if description is None:
        print_error(args.command, envelope)
        return EXIT_ERROR
    source = render_stub(description, class_name, args.url)
    if args.output_file is None:
        sys.stdout.write(source)
    else:
        args.output_file.write_text(source, encoding="utf-8")
        print(f"wrote {class_name} ({len(description.methods)} methods) to {args.output_file}", file=sys.stderr)
    return EXIT_OK
