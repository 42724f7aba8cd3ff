# PYTHON_ARGCOMPLETE_OK
"""The ``rpcframework`` command: a thin argparse front over one module per sub-command.

Each sub-command is a module ``rpcframework.cli.<name>`` exposing ``register(subparsers)``, which adds its parser and
sets ``handler`` (``Callable[[argparse.Namespace], int]``) as a default. Adding a command is one entry in
:data:`COMMANDS`. Library errors become exit status 1 with the message on stderr; usage errors are status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Protocol, cast

from rpcframework.cli.common import say
from rpcframework.cli.completion import enable_completion
from rpcframework.cli.helptext import plain_parser
from rpcframework.errors import RPCFrameworkError

__all__ = ["COMMANDS", "Handler", "build_parser", "main"]

#: Sub-command modules under ``rpcframework.cli``, in help order. Imported lazily so one broken or slow command
#: does not cost the others.
COMMANDS: tuple[str, ...] = ("ca", "serve", "call", "describe", "transfer", "check_config")

Handler = Callable[[argparse.Namespace], int]
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

SubParsers = argparse._SubParsersAction  # the type argparse gives add_subparsers() results


class CommandModule(Protocol):
    def register(self, subparsers: SubParsers[argparse.ArgumentParser]) -> None: ...


def build_parser() -> argparse.ArgumentParser:
    """The ``rpcframework`` parser with every sub-command in :data:`COMMANDS` registered."""
    parser = argparse.ArgumentParser(
        prog="rpcframework", description="Secure DISET-compatible RPC: services, clients and credentials."
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="logging threshold for messages on stderr (default: %(default)s)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = cast(CommandModule, importlib.import_module(f"rpcframework.cli.{name}"))
        module.register(subparsers)
    plain_parser(parser)  # the modules' docstrings are reStructuredText; --help is for a terminal
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 error, 2 usage) instead of exiting."""
    parser = build_parser()
    enable_completion(parser)  # answers a shell's <TAB> and exits; a no-op otherwise
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors; callers get the status back
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    handler = cast(Handler, args.handler)
    try:
        return handler(args)
    except (RPCFrameworkError, OSError) as exc:
        # A message may quote a peer (a refusal, a protocol error): its control characters are escaped.
        say(f"rpcframework {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover - `python -m rpcframework.cli.main`
    sys.exit(main())
