"""Options and helpers shared by the sub-commands that call a service: ``call``, ``ping``, ``whoami``, ``transfer``.

The client options (``--timeout``, ``--retries``, ``--backend``, credentials, ``--ca-dir``, ``--skip-ca-check``,
``--output``, ``--config``, ``--log-level``), turning them into :class:`~rpcframework.client.ClientOptions`, and how
an error envelope is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rpcframework.cli.common import add_config_option, add_log_level_option, load_config
from rpcframework.client import ClientOptions
from rpcframework.config import load_dict
from rpcframework.errors import ConfigurationError

__all__ = ["DEFAULT_TIMEOUT", "add_client_options", "client_options", "credential_file", "output_mode", "print_error"]

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
    """The :class:`ClientOptions` the command-line options describe; temporary credential files removed afterwards."""
    tree = load_config(args.config).snapshot()
    if args.ca_dir is not None:
        # The client takes its CA directory from /DIRAC/Security/CALocation before X509_CERT_DIR.
        tree = tree.merge(load_dict({"DIRAC": {"Security": {"CALocation": str(args.ca_dir)}}}, "--ca-dir"))
    with credential_file(args) as proxy:
        yield ClientOptions.build(
            _drop_none(
                timeout=args.timeout,
                proxyLocation=proxy,
                skipCACheck=True if args.skip_ca_check else None,
                backend=args.backend,
                retries=args.retries,
                config=tree,
            )
        )


def _drop_none(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


@contextlib.contextmanager
def credential_file(args: argparse.Namespace) -> Iterator[str | None]:
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
