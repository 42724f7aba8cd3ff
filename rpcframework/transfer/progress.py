"""Progress reporting for transfers: ``on_progress(done, total)`` called as data moves.

``done`` counts file bytes (a resumed download starts at its offset); ``total`` is the expected size, or ``None``
when unknown (bulk archives, a server that did not say). The callback runs in the thread that moves the data,
once per chunk (at most 1 MiB apart) and once at the end; an exception it raises aborts the transfer, which is
how a caller cancels one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

__all__ = ["Progress", "ProgressCallback"]

ProgressCallback: TypeAlias = Callable[[int, "int | None"], None]


class Progress:
    """Counts bytes and forwards them to an optional callback."""

    __slots__ = ("_callback", "done", "total")

    def __init__(self, callback: ProgressCallback | None = None, total: int | None = None, done: int = 0) -> None:
        self._callback = callback
        self.total = total if total is None or total >= 0 else None
        self.done = done

    def start(self, done: int) -> None:
        """Set the starting point (the granted resume offset) and report it."""
        self.done = done
        self._report()

    def advance(self, size: int) -> None:
        self.done += size
        self._report()

    def finish(self) -> None:
        """Report the final count; the total becomes exact when it was unknown."""
        if self.total is None:
            self.total = self.done
        self._report()

    def _report(self) -> None:
        if self._callback is not None:
            self._callback(self.done, self.total)
