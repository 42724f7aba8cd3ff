"""Options and helpers shared by the sub-commands that call a service: ``call``, ``ping``, ``whoami``, ``transfer``.

The client options (``--timeout``, ``--retries``, ``--backend``, credentials, ``--ca-dir``, ``--skip-ca-check``,
``--output``, ``--config``, ``--log-level``), turning them into :class:`~rpcframework.client.ClientOptions`, and how
an error envelope is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rpcframework.cli.common import add_config_option, add_log_level_option, load_config
from rpcframework.client import ClientOptions
from rpcframework.errors import ConfigurationError

__all__ = ["DEFAULT_TIMEOUT", "add_client_options", "client_options", "output_mode", "print_error"]

DEFAULT_TIMEOUT = 30.0


def add_client_options(parser: argparse.ArgumentParser, *, default_output: str | None) -> None:
    """Add the options every calling sub-command takes; ``default_output=None`` picks by whether stdout is a tty."""
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


@contextlib.contextmanager
def client_options(args: argparse.Namespace) -> Iterator[ClientOptions]:
    """The :class:`ClientOptions` the command-line options describe.

    ``--cert``/``--key`` become ``certLocation``/``keyLocation`` (presented instead of any proxy the default lookup
    would find) and ``--ca-dir`` becomes ``caLocation`` (before ``/DIRAC/Security/CALocation`` and
    ``$X509_CERT_DIR``). A context manager so callers need not change should an option ever need cleaning up.
    """
    if args.proxy is not None and (args.cert or args.key):
        raise ConfigurationError("give either --proxy or --cert/--key, not both")
    if (args.cert is None) != (args.key is None):
        raise ConfigurationError("give --cert and --key together")
    yield ClientOptions.build(
        _drop_none(
            timeout=args.timeout,
            proxyLocation=_text(args.proxy),
            certLocation=_text(args.cert),
            keyLocation=_text(args.key),
            caLocation=_text(args.ca_dir),
            skipCACheck=True if args.skip_ca_check else None,
            backend=args.backend,
            retries=args.retries,
            config=load_config(args.config).snapshot(),
        )
    )


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _drop_none(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def output_mode(args: argparse.Namespace) -> str:
    """``--output``, or where it was not given, ``text`` on a terminal and ``json`` otherwise."""
    if args.output is not None:
        return str(args.output)
    return "text" if sys.stdout.isatty() else "json"


def print_error(command: str, envelope: dict[str, Any]) -> None:
    """Print an ``S_ERROR`` envelope on stderr as ``rpcframework COMMAND: error: MESSAGE (Errno N)``."""
    errno = envelope.get("Errno")
    suffix = f" (Errno {errno})" if errno else ""
    print(f"rpcframework {command}: error: {envelope.get('Message', '')}{suffix}", file=sys.stderr)
