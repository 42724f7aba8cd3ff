"""Pieces shared by the ``serve``, ``call``, ``ping``, ``whoami`` and ``check-config`` sub-commands.

Configuration loading (``--config`` on top of ``RPCFRAMEWORK_CONFIG``/``DIRACSYSCONFIG`` and the environment),
the per-sub-command ``--log-level``, and turning call results into JSON for printing.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

from rpcframework.config import ConfigStore

__all__ = ["add_config_option", "add_log_level_option", "load_config", "to_json", "to_jsonable"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """Add the repeatable ``--config FILE`` (read with :func:`load_config`)."""
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="configuration file (.cfg or .toml), loaded after RPCFRAMEWORK_CONFIG/DIRACSYSCONFIG (repeatable)",
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
    """``value`` as JSON text for printing (through :func:`to_jsonable`), keys in their original order."""
    return json.dumps(to_jsonable(value), indent=indent, sort_keys=False, ensure_ascii=False)
