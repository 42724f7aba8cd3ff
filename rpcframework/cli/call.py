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
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rpcframework.cli.common import add_config_option, add_log_level_option, load_config, to_json, to_jsonable
from rpcframework.cli.main import EXIT_ERROR, EXIT_OK, SubParsers
from rpcframework.client import ClientOptions, RPCClient, build_rpc_stub
from rpcframework.config import load_dict
from rpcframework.errors import ConfigurationError, RPCFrameworkError
from rpcframework.returnvalues import DReturn, error_from_exception
from rpcframework.security.locations import check_credentials

__all__ = ["parse_arg", "parse_kw", "register"]

DEFAULT_TIMEOUT = 30.0


def register(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    call = subparsers.add_parser(
        "call",
        help="call METHOD on a service and print the result envelope",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    call.add_argument("url", metavar="URL", help="dips://host:port/System/Component, or System/Component")
    call.add_argument("method", metavar="METHOD")
    call.add_argument("args", nargs="*", metavar="ARG", help="positional argument: JSON, else a plain string")
    call.add_argument(
        "--kw",
        action="append",
        default=[],
        type=parse_kw,
        metavar="NAME=JSON",
        help="keyword argument (repeatable; the value must be valid JSON)",
    )
    call.add_argument("--stub", action="store_true", help="include the rpcStub in the output")
    _add_client_options(call, default_output=None)
    call.set_defaults(handler=_call)

    for name, what in (("ping", "service health (the built-in ping)"), ("whoami", "who the service says you are")):
        parser = subparsers.add_parser(name, help=what, description=f"rpcframework {name}: {what}.")
        parser.add_argument("url", metavar="URL", help="dips://host:port/System/Component, or System/Component")
        _add_client_options(parser, default_output="text")
        parser.set_defaults(handler=_ping if name == "ping" else _whoami)


def _add_client_options(parser: argparse.ArgumentParser, *, default_output: str | None) -> None:
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="deadline for the whole call (default: %(default)s)",
    )
    parser.add_argument("--retries", type=int, metavar="N", help="retries before the arguments are sent")
    parser.add_argument("--backend", choices=["pyopenssl", "m2crypto"], help="TLS back end (default: pyopenssl)")
    parser.add_argument("--proxy", type=Path, metavar="FILE", help="proxy file (default: X509_USER_PROXY, ...)")
    parser.add_argument("--cert", type=Path, metavar="FILE", help="user certificate instead of a proxy (with --key)")
    parser.add_argument("--key", type=Path, metavar="FILE", help="key of --cert")
    parser.add_argument("--ca-dir", type=Path, metavar="DIR", help="hashed trusted-CA directory")
    parser.add_argument(
        "--skip-ca-check", action="store_true", help="do not verify the server's certificate (development only)"
    )
    parser.add_argument(
        "--output",
        choices=["json", "text"],
        default=default_output,
        help="json or text (default: " + ("text" if default_output else "text on a terminal, else json") + ")",
    )
    add_config_option(parser)
    add_log_level_option(parser)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from exc
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


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
    tree = load_config(args.config).snapshot()
    if args.ca_dir is not None:
        # The client takes its CA directory from /DIRAC/Security/CALocation before X509_CERT_DIR.
        tree = tree.merge(load_dict({"DIRAC": {"Security": {"CALocation": str(args.ca_dir)}}}, "--ca-dir"))
    with _credential_file(args) as proxy:
        options = ClientOptions.build(
            _drop_none(
                timeout=args.timeout,
                proxyLocation=proxy,
                skipCACheck=True if args.skip_ca_check else None,
                backend=args.backend,
                retries=args.retries,
                config=tree,
            )
        )
        client = RPCClient(args.url, options)
        try:
            yield client
        finally:
            client.close()


def _drop_none(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


@contextlib.contextmanager
def _credential_file(args: argparse.Namespace) -> Iterator[str | None]:
    """The file to present: ``--proxy``; or ``--cert``/``--key`` joined into one private temporary file.

    The client's only explicit-credential option is a proxy location (a file holding certificate and key), and the
    default lookup would prefer ``/tmp/x509up_u<uid>`` to ``X509_USER_CERT``; joining the pair is the way to make
    sure the certificate the user named is the one presented.
    """
    if args.proxy is not None and (args.cert or args.key):
        raise ConfigurationError("give either --proxy or --cert/--key, not both")
    if (args.cert is None) != (args.key is None):
        raise ConfigurationError("give --cert and --key together")
    if args.cert is None:
        yield None if args.proxy is None else str(args.proxy)
        return
    try:
        data = args.cert.read_bytes() + b"\n" + args.key.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    with tempfile.TemporaryDirectory(prefix="rpcframework-cli-") as directory:
        path = Path(directory) / "credential.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        yield str(path)


def _invoke(args: argparse.Namespace, method: str, call_args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The result envelope (with ``rpcStub`` when ``--stub``), failures to call included as ``S_ERROR``."""
    stub: Any = None
    try:
        with _client(args) as client:
            try:
                result: DReturn = client.call(method, tuple(call_args), kwargs, timeout=args.timeout)
            except RPCFrameworkError as exc:
                result = error_from_exception(exc)
            base = client.base
            stub = build_rpc_stub(base.service, base.stub_options(args.timeout), method, tuple(call_args), kwargs)
            identity = _local_identity(client)
    except RPCFrameworkError as exc:
        result, identity = error_from_exception(exc), None
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


def _output_mode(args: argparse.Namespace) -> str:
    if args.output is not None:
        return str(args.output)
    return "text" if sys.stdout.isatty() else "json"


def _print_error(command: str, envelope: dict[str, Any]) -> None:
    errno = envelope.get("Errno")
    suffix = f" (Errno {errno})" if errno else ""
    print(f"rpcframework {command}: error: {envelope.get('Message', '')}{suffix}", file=sys.stderr)


def _finish(args: argparse.Namespace, envelope: dict[str, Any], text: Any) -> int:
    """Print ``envelope`` as JSON, or ``text(value)`` in text mode; the exit status for its outcome."""
    ok = bool(envelope.get("OK"))
    if _output_mode(args) == "json":
        print(to_json(envelope))
    elif ok:
        text(envelope.get("Value"))
        if "rpcStub" in envelope:
            print(f"rpcStub: {json.dumps(to_jsonable(envelope['rpcStub']))}")
    else:
        _print_error(args.command, envelope)
    return EXIT_OK if ok else EXIT_ERROR


def _print_value(value: Any) -> None:
    if isinstance(value, str):
        print(value)
    else:
        print(to_json(value))


def _call(args: argparse.Namespace) -> int:
    call_args = [parse_arg(text) for text in args.args]
    kwargs = dict(args.kw)
    return _finish(args, _invoke(args, args.method, call_args, kwargs), _print_value)


def _ping(args: argparse.Namespace) -> int:
    envelope = _invoke(args, "ping", [], {})

    def show(value: Any) -> None:
        info = value if isinstance(value, dict) else {}
        print(f"{args.url}: up, service {info.get('name', '?')} (rpcframework {info.get('version', '?')})")
        if "service uptime" in info:
            print(f"service uptime: {info['service uptime']} s")
        if "load" in info:
            print(f"load: {info['load']}")
        print(f"caller DN: {getattr(args, 'local_identity', None) or 'anonymous (dip://, no certificate)'}")

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
            print(f"{key + ':':<{width}} {shown}")

    return _finish(args, envelope, show)
