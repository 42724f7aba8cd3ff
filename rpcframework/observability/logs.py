"""JSON logs: one JSON object per log record, through ``python-json-logger`` (``rpcframework[metrics]``).

Every record carries ``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``; audit records (the
``rpcframework.audit`` logger) add their fields as keys (``peer_dn``, ``service``, ``method``, ``outcome``,
``duration_ms``...; see :mod:`rpcframework.server.audit`), so a log pipeline needs no parsing. Exceptions come as
``exc_info`` text. ``python-json-logger`` is used rather than a hand-written formatter: it handles every value type
a record may carry, extras and exceptions, and is the formatter most log shippers document.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

__all__ = ["json_formatter", "use_json_logs"]

_FIELDS = ("asctime", "levelname", "name", "message")
_RENAMED = {"asctime": "time", "levelname": "level", "name": "logger"}


def json_formatter() -> logging.Formatter:
    """A formatter writing one JSON object per record (see the module docstring for the keys)."""
    try:
        from pythonjsonlogger.json import JsonFormatter
    except ImportError as exc:
        raise ImportError("JSON logs need python-json-logger: pip install 'rpcframework[metrics]'") from exc

    class _UTCJsonFormatter(JsonFormatter):
        def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            return f"{text}.{int(record.msecs):03d}Z"

    return _UTCJsonFormatter(list(_FIELDS), rename_fields=dict(_RENAMED))


def use_json_logs(handlers: Iterable[logging.Handler] | None = None) -> None:
    """Give ``handlers`` (default: the root logger's) the JSON formatter."""
    formatter = json_formatter()
    for handler in logging.getLogger().handlers if handlers is None else handlers:
        handler.setFormatter(formatter)
