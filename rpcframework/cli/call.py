"""``rpcframework call``, ``ping`` and ``whoami``: call a service from the command line.

``URL`` is a full ``dips://host:port/System/Component`` (or ``dip://``) URL, or ``System/Component`` resolved
through the configuration. Each ``ARG`` is parsed as JSON, or taken as a plain string where it is not valid JSON
(``5`` is a number, ``'"5"'`` and ``abc`` are strings); ``--kw NAME=JSON`` adds a keyword argument (strict JSON).

Output: the result envelope as JSON (``--output json``, the default when stdout is not a terminal) or a readable
form (``--output text``, the default on a terminal; always the default for ``ping`` and ``whoami``). Exit status:
0 for ``S_OK``, 1 for ``S_ERROR`` (including a failure to connect), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from typing import Any

from rpcframework.cli.client_args import add_client_options, client_options, local_error, output_mode, print_error
from rpcframework.cli.common import say, to_json, to_jsonable
from rpcframework.cli.completion import complete_methods
from rpcframework.cli.main import EXIT_ERROR, EXIT_OK, SubParsers
from rpcframework.client import RPCClient
from rpcframework.client.stub import build_rpc_stub
from rpcframework.errors import RPCFrameworkError
from rpcframework.returnvalues import DReturn
from rpcframework.security.locations import check_credentials

__all__ = ["parse_arg", "parse_kw", "register"]


def register(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    """Add ``rpcframework call``, ``ping`` and ``whoami``."""
    call = subparsers.add_parser(
        "call",
        help="call METHOD on a service and print the result envelope",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    call.add_argument("url", metavar="URL", help="dips://host:port/System/Component, or System/Component")
    method = call.add_argument("method", metavar="METHOD", help="remote method (<TAB> completes the described ones)")
    method.completer = complete_methods  # type: ignore[attr-defined]  # read by argcomplete
    call.add_argument("args", nargs="*", metavar="ARG", help="positional argument: JSON, else a plain string")
    call.add_argument(
        "--kw",
        action="append",
        default=[],
        type=parse_kw,
        metavar="NAME=JSON",
        help="keyword argument (repeatable; the value must be valid JSON; default: none)",
    )
    call.add_argument("--stub", action="store_true", help="include the rpcStub in the output")
    add_client_options(call, default_output=None)
    call.set_defaults(handler=_call)

    for name, what in (("ping", "service health (the built-in ping)"), ("whoami", "who the service says you are")):
        parser = subparsers.add_parser(name, help=what, description=f"rpcframework {name}: {what}.")
        parser.add_argument("url", metavar="URL", help="dips://host:port/System/Component, or System/Component")
        add_client_options(parser, default_output="text")
        parser.set_defaults(handler=_ping if name == "ping" else _whoami)


def parse_arg(text: str) -> Any:
    """A positional argument: its JSON value, or the text itself where it is not valid JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_kw(text: str) -> tuple[str, Any]:
    """``NAME=JSON`` -> ``(name, value)``; anything else is a usage error (exit status 2)."""
    name, sep, raw = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=JSON with NAME a Python identifier, got {text!r}")
    try:
        return name, json.loads(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{name}: not valid JSON ({exc}); quote strings: {name}='\"text\"'") from exc


# -- making the call --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _client(args: argparse.Namespace) -> Iterator[RPCClient]:
    """An :class:`RPCClient` built from the command-line options; temporary files removed afterwards."""
    with client_options(args) as options:
        client = RPCClient(args.url, options)
        try:
            yield client
        finally:
            client.close()


def _invoke(args: argparse.Namespace, method: str, call_args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The result envelope (with ``rpcStub`` when ``--stub``), failures to call included as ``S_ERROR``."""
    stub: Any = None
    try:
        with _client(args) as client:
            try:
                result: DReturn = client.call(method, tuple(call_args), kwargs, timeout=args.timeout)
            except RPCFrameworkError as exc:
                result = local_error(exc)
            base = client.base
            stub = build_rpc_stub(base.service, base.stub_options(args.timeout), method, tuple(call_args), kwargs)
            identity = _local_identity(client)
    except RPCFrameworkError as exc:
        result, identity = local_error(exc), None
    envelope: dict[str, Any] = dict(result)
    envelope.pop("rpcStub", None)
    if getattr(args, "stub", False) and stub is not None:
        envelope["rpcStub"] = stub
    if identity is not None:
        args.local_identity = identity
    return envelope


def _local_identity(client: RPCClient) -> str | None:
    """The DN our credential presents (for a proxy, the user's), for ``ping``'s output."""
    tls = client.base.tls
    if tls is None or tls.cert_file is None:
        return None
    try:
        return check_credentials(tls.cert_file, tls.key_file).dn
    except RPCFrameworkError:
        return None


# -- output -----------------------------------------------------------------------------------------------------


def _finish(args: argparse.Namespace, envelope: dict[str, Any], text: Any) -> int:
    """Print ``envelope`` as JSON, or ``text(value)`` in text mode; the exit status for its outcome."""
    ok = bool(envelope.get("OK"))
    if output_mode(args) == "json":
        print(to_json(envelope))
    elif ok:
        text(envelope.get("Value"))
        if "rpcStub" in envelope:
            print(f"rpcStub: {json.dumps(to_jsonable(envelope['rpcStub']))}")
    else:
        print_error(args.command, envelope)
    return EXIT_OK if ok else EXIT_ERROR


def _print_value(value: Any) -> None:
    say(value if isinstance(value, str) else to_json(value))


def _call(args: argparse.Namespace) -> int:
    call_args = [parse_arg(text) for text in args.args]
    kwargs = dict(args.kw)
    envelope = _invoke(args, args.method, call_args, kwargs)
    if not envelope.get("OK"):
        from rpcframework.cli.describe import explain_argument_error  # it imports this module

        envelope = explain_argument_error(args, args.method, envelope)
    return _finish(args, envelope, _print_value)


def _ping(args: argparse.Namespace) -> int:
    envelope = _invoke(args, "ping", [], {})

    def show(value: Any) -> None:
        info = value if isinstance(value, dict) else {}
        say(f"{args.url}: up, service {info.get('name', '?')} (rpcframework {info.get('version', '?')})")
        if "service uptime" in info:
            say(f"service uptime: {info['service uptime']} s")
        if "load" in info:
            say(f"load: {info['load']}")
        say(f"caller DN: {getattr(args, 'local_identity', None) or 'anonymous (dip://, no certificate)'}")

    return _finish(args, envelope, show)


_WHOAMI_FIRST = ("DN", "username", "group", "properties", "VO", "isProxy", "isLimitedProxy", "secondsLeft")


def _whoami(args: argparse.Namespace) -> int:
    envelope = _invoke(args, "whoami", [], {})

    def show(value: Any) -> None:
        creds = value if isinstance(value, dict) else {}
        if not creds:
            print("anonymous (the service saw no certificate)")
            return
        keys = [k for k in _WHOAMI_FIRST if k in creds] + sorted(k for k in creds if k not in _WHOAMI_FIRST)
        width = max(len(k) for k in keys) + 1
        for key in keys:
            item = creds[key]
            shown = ", ".join(map(str, item)) if isinstance(item, list | tuple) else json.dumps(to_jsonable(item))
            if isinstance(item, str):
                shown = item
            say(f"{key + ':':<{width}} {shown}")

    return _finish(args, envelope, show)
