"""The one deadline type: a point on a monotonic clock after which an operation gives up.

Used by every layer that waits: a client call's whole deadline (``Timeout.total``, ``client/policy.py``), each of
its socket operations (``client/inner.py``), the transports' connect, handshake and reads
(``transports/``). An immutable value (a named tuple: built in a few hundred nanoseconds, as a per-call object
must be); the clock is injectable so tests move time by hand.

``expires_at`` is ``None`` for "never". ``seconds`` is the span it was made with (``after``/``within``), kept only
to say it in the error message.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NamedTuple

from rpcframework.errors import ConfigurationError, DeadlineExceeded

__all__ = ["Clock", "Deadline", "check_seconds"]

Clock = Callable[[], float]


def check_seconds(name: str, value: float | None) -> None:
    """Raise :class:`ConfigurationError` unless ``value`` is None or a positive finite number (not a bool)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number of seconds or None, not {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive finite number of seconds, not {value!r}")


class Deadline(NamedTuple):
    """A point on a monotonic clock after which an operation must give up (``expires_at`` ``None``: never)."""

    expires_at: float | None
    clock: Clock = time.monotonic
    seconds: float | None = None

    @classmethod
    def after(cls, seconds: float | None, clock: Clock = time.monotonic) -> Deadline:
        """A deadline ``seconds`` from now (``None``: never); ``seconds`` must be positive and finite (a user's
        value: anything else raises :class:`ConfigurationError`)."""
        # The per-call case (a positive finite float) skips the full check; NaN fails ``0.0 < seconds`` too.
        if seconds.__class__ is not float or not 0.0 < seconds < math.inf:
            check_seconds("seconds", seconds)
        return cls(None if seconds is None else clock() + seconds, clock, seconds)

    @classmethod
    def within(cls, seconds: float | None, clock: Clock = time.monotonic) -> Deadline:
        """A deadline ``seconds`` from now for a socket timeout, unchecked: ``0`` (or less) has already passed,
        ``None`` never does."""
        return cls(None if seconds is None else clock() + seconds, clock, seconds)

    @classmethod
    def never(cls, clock: Clock = time.monotonic) -> Deadline:
        return cls(None, clock)

    def remaining(self) -> float | None:
        """Seconds left (never negative), or ``None`` when there is no deadline."""
        if self.expires_at is None:
            return None
        return max(0.0, self.expires_at - self.clock())

    def left(self) -> float | None:
        """Seconds left, possibly <= 0 (``None``: no limit): for callers that build their message only on expiry."""
        return None if self.expires_at is None else self.expires_at - self.clock()

    def time_left(self, what: str) -> float | None:
        """Seconds left (a socket timeout for the next step), raising :class:`DeadlineExceeded` naming ``what``
        once none are."""
        expires = self.expires_at
        if expires is None:
            return None
        left = expires - self.clock()
        if left <= 0:
            raise DeadlineExceeded(self.exceeded_message(what))
        return left

    def exceeded_message(self, what: str) -> str:
        if self.seconds is not None:
            return f"{what}: the {self.seconds:g} s deadline passed"
        return f"{what}: the deadline passed"

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.clock() >= self.expires_at

    def min(self, other: Deadline) -> Deadline:
        """The earlier of two deadlines (keeps this deadline's clock)."""
        if other.expires_at is None:
            return self
        if self.expires_at is None or other.expires_at < self.expires_at:
            return Deadline(other.expires_at, self.clock, other.seconds)
        return self

    def cap(self, seconds: float | None) -> Deadline:
        """This deadline, or ``seconds`` from now when that is earlier (for per-step limits like connect)."""
        return self.min(Deadline.after(seconds, self.clock))

    def check(self, what: str = "call") -> None:
        """Raise :class:`DeadlineExceeded` when the deadline has passed."""
        if self.expired:
            raise DeadlineExceeded(f"{what} deadline exceeded")
