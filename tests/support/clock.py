"""A clock for the code that takes one (``ConfigStore``, ``Deadline``, the guard, the URL selector, ...): tests move
it by hand instead of sleeping."""

from __future__ import annotations


class FakeClock:
    """A monotonic clock that only moves when a test says so (``advance`` or by setting ``now``)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
