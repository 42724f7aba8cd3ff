"""A clock for the code that takes one (``ConfigStore``, ``Deadline``, the guard, the URL selector, ...): tests move
it by hand instead of sleeping."""

from __future__ import annotations

from typing import Any


class FakeClock:
    """A monotonic clock that only moves when a test says so (``advance`` or by setting ``now``)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def age_pool(pool: Any, seconds: float) -> None:
    """Move a client connection pool (``RPCClient.pool``, ``AsyncRPCClient.pool``) and its idle connections
    ``seconds`` back in time, as if they had been idle that much longer.

    The pools read ``time.monotonic`` directly (their timestamps come from the connections), so a test cannot hand
    them a clock; shifting their timestamps is the same as advancing one, without sleeping.
    """
    pool._last_maintenance -= seconds
    for connections in pool._idle.values():
        for conn in connections:
            conn.created -= seconds
            conn.last_used -= seconds
            if conn.last_ping:
                conn.last_ping -= seconds
