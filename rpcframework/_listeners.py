"""A list of callbacks that a long-lived object (a configuration store, a TLS context cache) tells about changes.

Thread-safe; a callback that raises is logged and never stops the others or the notifier.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Generic, ParamSpec

__all__ = ["Listeners"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")


class Listeners(Generic[P]):
    """Callbacks taking ``P``; :meth:`add` returns the function that removes the callback again."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._items: list[Callable[P, object]] = []
        self._lock = threading.Lock()

    def add(self, listener: Callable[P, object]) -> Callable[[], None]:
        with self._lock:
            self._items.append(listener)

        def remove() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._items.remove(listener)

        return remove

    def snapshot(self) -> list[Callable[P, object]]:
        """The callbacks now (to call later, outside a lock of the caller's)."""
        with self._lock:
            return list(self._items)

    def notify(self, *args: P.args, **kwargs: P.kwargs) -> None:
        call_all(self.snapshot(), self._what, *args, **kwargs)

    def __bool__(self) -> bool:
        return bool(self._items)


def call_all(listeners: list[Callable[P, object]], what: str, *args: P.args, **kwargs: P.kwargs) -> None:
    """Call each of ``listeners``; one that raises is logged as a failed ``what``."""
    for listener in listeners:
        try:
            listener(*args, **kwargs)
        except Exception:
            logger.exception("%s %r failed", what, listener)
