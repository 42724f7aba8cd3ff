"""Shell completion for ``rpcframework`` with :mod:`argcomplete` (in the ``cli`` extra; without it, no completion).

Sub-commands and options complete from the parser itself. ``rpcframework call URL <TAB>`` completes the method
names the service's ``describe`` lists for you (one call with the command line's own credentials and options, at
most :data:`METHOD_COMPLETION_TIMEOUT` seconds; nothing is completed when the service cannot be asked). Enable it
once per shell with ``eval "$(register-python-argcomplete rpcframework)"`` (see ``docs/cli.md``).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
from typing import Any, Final

__all__ = ["METHOD_COMPLETION_TIMEOUT", "complete_methods", "enable_completion"]

logger = logging.getLogger(__name__)

#: How long a <TAB> may wait for the service (an interactive shell must not hang).
METHOD_COMPLETION_TIMEOUT: Final = 5.0


def complete_methods(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """argcomplete completer for ``call``'s METHOD: the described methods starting with ``prefix``."""
    from rpcframework.cli.describe import describe_url  # imports the networking client: only when completing
    from rpcframework.errors import RPCFrameworkError

    if not getattr(parsed_args, "url", None):
        return []
    parsed_args.timeout = min(float(getattr(parsed_args, "timeout", None) or METHOD_COMPLETION_TIMEOUT), 5.0)
    parsed_args.stub = False
    try:
        _, description = describe_url(parsed_args)
    except (RPCFrameworkError, OSError, ValueError) as exc:
        logger.debug("no method completion for %s: %r", parsed_args.url, exc)
        return []
    if description is None:
        return []
    return [method.name for method in description.methods if method.name.startswith(prefix)]


def enable_completion(parser: argparse.ArgumentParser) -> None:
    """Answer a completion request from the shell (and exit) when argcomplete is installed; otherwise do nothing."""
    if importlib.util.find_spec("argcomplete") is None:
        return
    import argcomplete

    argcomplete.autocomplete(parser)
