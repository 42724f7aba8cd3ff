"""Pieces shared by the ``serve``, ``call``, ``ping``, ``whoami`` and ``check-config`` sub-commands.

Configuration loading (``--config`` on top of ``RPCFRAMEWORK_CONFIG``/``DIRACSYSCONFIG`` and the environment),
the per-sub-command ``--log-level``, turning call results into JSON for printing, and making text from a peer
harmless on a terminal: whatever a server sends, the CLI never writes a raw control character (an ESC starting an
ANSI or OSC sequence, a C1 control, a bidirectional override) to stdout or stderr, in text or in JSON mode.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from rpcframework.config import ConfigStore

__all__ = [
    "add_config_option",
    "add_log_level_option",
    "escape_controls",
    "load_config",
    "say",
    "to_json",
    "to_jsonable",
]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# C0 controls but tab and newline, DEL and the C1 controls (terminal escapes: CSI, OSC, ...), and the invisible and
# bidirectional marks of "Trojan Source" (CVE-2021-42574), including the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# What JSON text written with ensure_ascii=False may still hold raw (json.dumps escapes the C0 controls itself).
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """Add the repeatable ``--config FILE`` (read with :func:`load_config`)."""
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="configuration file (.cfg or .toml), loaded after the files RPCFRAMEWORK_CONFIG/DIRACSYSCONFIG name"
        " (repeatable; default: only those)",
    )


def add_log_level_option(parser: argparse.ArgumentParser) -> None:
    """Add the sub-command's ``--log-level``, which overrides the top-level one when given."""
    # SUPPRESS: the sub-command's --log-level only replaces the top-level one when it is given.
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=argparse.SUPPRESS,
        help="logging threshold for messages on stderr (default: WARNING)",
    )


def load_config(files: Sequence[str]) -> ConfigStore:
    """The configuration every sub-command sees: environment-named files, then ``files``, then env overrides."""
    return ConfigStore.from_environment(files)


def to_jsonable(value: Any) -> Any:
    """A JSON-ready copy of a decoded result: dates as ISO text, bytes as base64, tuples and sets as lists."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(item) for item in value]
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    return repr(value)


def to_json(value: Any, *, indent: int | None = 2) -> str:
    """``value`` as JSON text for printing (through :func:`to_jsonable`), keys in their original order.

    Non-ASCII text stays readable; control characters and bidirectional marks are ``\\u`` escapes, so the text is
    safe on a terminal and still the same JSON value."""
    text = json.dumps(to_jsonable(value), indent=indent, sort_keys=False, ensure_ascii=False)
    return _JSON_UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def escape_controls(text: str) -> str:
    """``text`` with every control character but tab and newline written as a visible escape (``\\x1b``,
    ``\\u202e``): nothing a peer sent can move the cursor, retitle the window or reorder what is shown."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def say(text: str, *, file: TextIO | None = None) -> None:
    """Print one line that may hold text from a peer, its control characters escaped."""
    print(escape_controls(text), file=file if file is not None else sys.stdout)
