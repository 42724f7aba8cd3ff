"""Options and helpers shared by the sub-commands that call a service: ``call``, ``ping``, ``whoami``, ``transfer``.

The client options (``--timeout``, ``--retries``, ``--backend``, credentials, ``--ca-dir``, ``--skip-ca-check``,
``--output``, ``--config``, ``--log-level``), turning them into
:class:`~rpcframework.client.options.ClientOptions`, and how an error envelope is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rpcframework.cli.common import add_config_option, add_log_level_option, load_config, say
from rpcframework.client import Timeout
from rpcframework.client.options import ClientOptions
from rpcframework.client.policy import DEFAULT_CONNECT_TIMEOUT
from rpcframework.errors import ConfigurationError
from rpcframework.returnvalues import DErrorReturn, error_from_exception

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "add_client_options",
    "cli_wording",
    "client_options",
    "local_error",
    "output_mode",
    "print_error",
]

DEFAULT_TIMEOUT = 30.0
DEFAULT_HANDSHAKE_TIMEOUT = DEFAULT_CONNECT_TIMEOUT


def add_client_options(parser: argparse.ArgumentParser, *, default_output: str | None) -> None:
    """Add the options every calling sub-command takes; ``default_output=None`` picks by whether stdout is a tty."""
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="deadline for the whole call (default: %(default)s)",
    )
    parser.add_argument(
        "--handshake-timeout",
        type=_seconds,
        default=DEFAULT_HANDSHAKE_TIMEOUT,
        metavar="SECONDS",
        help="how long a server may take to answer the TLS handshake; a server that accepts the connection but"
        " never answers is reported after this, not after --timeout (default: %(default)s)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        metavar="N",
        help="retries before the arguments are sent (default: 3 rounds over the URLs, 2 with more than 2 URLs)",
    )
    parser.add_argument(
        "--backend", choices=["pyopenssl", "m2crypto"], help="TLS back end for dips:// (default: pyopenssl)"
    )
    parser.add_argument(
        "--proxy",
        type=Path,
        metavar="FILE",
        help="proxy file (default: $X509_USER_PROXY, then /tmp/x509up_u<uid>, then the user certificate)",
    )
    parser.add_argument(
        "--cert",
        type=Path,
        metavar="FILE",
        help="certificate to present instead of a proxy, with --key: a user's, or a host's for --delegate-dn"
        " (default: none, a proxy is looked up)",
    )
    parser.add_argument("--key", type=Path, metavar="FILE", help="the key of --cert (default: none)")
    parser.add_argument(
        "--ca-dir",
        type=Path,
        metavar="DIR",
        help="hashed trusted-CA directory (default: /DIRAC/Security/CALocation, then $X509_CERT_DIR, then"
        " /etc/grid-security/certificates)",
    )
    parser.add_argument(
        "--skip-ca-check",
        action="store_true",
        help="do not verify the server's certificate, for development only (default: verify)",
    )
    parser.add_argument(
        "--delegate-dn",
        metavar="DN",
        help="call on behalf of this user (/DC=.../CN=name); only a host certificate (--cert/--key) with the"
        " TrustedHost property may (default: call as yourself)",
    )
    parser.add_argument(
        "--delegate-group",
        metavar="GROUP",
        help="the delegated user's group, with --delegate-dn (default: the user's default group)",
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
    would find), ``--ca-dir`` becomes ``caLocation`` (before ``/DIRAC/Security/CALocation`` and
    ``$X509_CERT_DIR``), ``--delegate-dn``/``--delegate-group`` become ``delegatedDN``/``delegatedGroup``. A context
    manager so callers need not change should an option ever need cleaning up.
    """
    if args.proxy is not None and (args.cert or args.key):
        raise ConfigurationError("give either --proxy or --cert/--key, not both")
    if (args.cert is None) != (args.key is None):
        raise ConfigurationError("give --cert and --key together")
    if args.delegate_group is not None and args.delegate_dn is None:
        raise ConfigurationError("--delegate-group needs --delegate-dn: a group alone names nobody")
    yield ClientOptions.build(
        _drop_none(
            timeout=Timeout(total=args.timeout, handshake=args.handshake_timeout),
            proxyLocation=_text(args.proxy),
            certLocation=_text(args.cert),
            keyLocation=_text(args.key),
            caLocation=_text(args.ca_dir),
            skipCACheck=True if args.skip_ca_check else None,
            delegatedDN=args.delegate_dn,
            delegatedGroup=args.delegate_group,
            backend=args.backend,
            retries=args.retries,
            config=load_config(args.config).snapshot(),
        )
    )


#: How the library names a setting in its messages -> the option that sets it on the command line.
_CLI_SETTING_NAMES = {"(from caLocation)": "(from --ca-dir)"}


def cli_wording(message: str) -> str:
    """A library message about local settings, with the setting the user gave on the command line named as such."""
    for library, cli in _CLI_SETTING_NAMES.items():
        message = message.replace(library, cli)
    return message


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _drop_none(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def output_mode(args: argparse.Namespace) -> str:
    """``--output``, or where it was not given, ``text`` on a terminal and ``json`` otherwise."""
    if args.output is not None:
        return str(args.output)
    return "text" if sys.stdout.isatty() else "json"


def local_error(exc: BaseException) -> DErrorReturn:
    """The ``S_ERROR`` envelope for a failure on this side, worded for the command line (:func:`cli_wording`)."""
    envelope = error_from_exception(exc)  # a new dict: ours to change
    envelope["Message"] = cli_wording(envelope["Message"])
    return envelope


def print_error(command: str, envelope: dict[str, Any]) -> None:
    """Print an ``S_ERROR`` envelope on stderr as ``rpcframework COMMAND: error: MESSAGE (Errno N)``; the message
    may come from the server, so its control characters are escaped."""
    errno = envelope.get("Errno")
    suffix = f" (Errno {errno!r})" if errno else ""
    say(f"rpcframework {command}: error: {envelope.get('Message', '')}{suffix}", file=sys.stderr)
