"""Bookkeeping for the connection guard: failures counted against a key, and token buckets per key.

Both tables are keyed by a string (an address, or an identity's DN), thread-safe, and bounded whatever peers do:
at most ``max_tracked`` keys are remembered, the least recently touched forgotten first.

* :class:`StrikeTable`: ``max_failures`` strikes within ``window`` seconds ban the key for ``duration`` seconds
  (a ban is the answer to traffic nobody sends by mistake: garbage, handshakes left hanging, refused calls);
* :class:`TokenBuckets`: each failure spends a token, tokens come back at ``rate`` per second up to ``burst``, and
  a key with no token left is *limited* until one is back (the answer where many callers share a key: a site's
  NAT, a portal). Good traffic spends nothing, so it keeps coming through at the refill rate at worst.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["MAX_KEY_LENGTH", "MAX_TRACKED", "StrikePolicy", "StrikeTable", "TokenBuckets"]

#: Keys remembered at once per table; beyond that the least recently touched are dropped.
MAX_TRACKED: Final = 65_536
#: Longer keys (a DN named by a peer) are cut, so a table's memory stays bounded by MAX_TRACKED times this.
MAX_KEY_LENGTH: Final = 1024


@dataclass(frozen=True, slots=True)
class StrikePolicy:
    """``max_failures`` strikes within ``window`` seconds ban for ``duration`` seconds."""

    max_failures: int
    window: float
    duration: float


class StrikeTable:
    """Strikes and temporary bans per key; ``clock`` is a monotonic clock in seconds."""

    def __init__(self, clock: Callable[[], float], max_tracked: int = MAX_TRACKED) -> None:
        self._clock = clock
        self._max_tracked = max_tracked
        self._lock = threading.Lock()
        # Insertion-ordered: the first entries are the least recently touched, dropped first.
        self._strikes: dict[str, collections.deque[float]] = {}
        self._banned_until: dict[str, float] = {}

    def __len__(self) -> int:
        """Keys remembered (with strikes or a ban)."""
        return len(self._strikes) + len(self._banned_until)

    def strike(self, key: str, policy: StrikePolicy) -> int | None:
        """Count a strike against ``key``; the strikes within the window when it has just been banned, else None."""
        key = key[:MAX_KEY_LENGTH]
        with self._lock:
            now = self._clock()
            history = self._strikes.pop(key, None)
            if history is None:
                history = collections.deque(maxlen=policy.max_failures)
            history.append(now)
            self._strikes[key] = history  # re-inserted: now the most recently touched
            recent = sum(1 for stamp in history if now - stamp <= policy.window)
            if recent >= policy.max_failures:
                del self._strikes[key]
                self._banned_until.pop(key, None)
                self._banned_until[key] = now + policy.duration
            self._forget_oldest()
        return recent if recent >= policy.max_failures else None

    @property
    def has_bans(self) -> bool:
        """Whether any key is (or was until lately) banned: a cheap test before building a key to look up."""
        return bool(self._banned_until)

    def banned_for(self, key: str) -> float | None:
        """Seconds left of ``key``'s ban, or ``None``. The check made for every connection or proposal: a table
        without bans answers without taking the lock."""
        if not self._banned_until:
            return None
        key = key[:MAX_KEY_LENGTH]
        with self._lock:
            until = self._banned_until.get(key)
            if until is None:
                return None
            left = until - self._clock()
            if left > 0:
                return left
            del self._banned_until[key]
            return None

    def bans(self) -> dict[str, float]:
        """Keys banned right now and the seconds each ban has left."""
        with self._lock:
            now = self._clock()
            return {key: until - now for key, until in self._banned_until.items() if until > now}

    def lift(self, key: str) -> bool:
        """Forget ``key``'s strikes and end its ban; ``True`` if it was banned."""
        key = key[:MAX_KEY_LENGTH]
        with self._lock:
            self._strikes.pop(key, None)
            return self._banned_until.pop(key, None) is not None

    def _forget_oldest(self) -> None:
        for table in (self._strikes, self._banned_until):
            while len(table) > self._max_tracked:
                del table[next(iter(table))]


class TokenBuckets:
    """One token bucket per key: failures spend tokens, time gives them back; thread-safe and bounded.

    Each bucket keeps the rate and burst it was last spent with, so a configuration reload applies from a key's
    next failure on."""

    def __init__(self, clock: Callable[[], float], max_tracked: int = MAX_TRACKED) -> None:
        self._clock = clock
        self._max_tracked = max_tracked
        self._lock = threading.Lock()
        # key -> (tokens, when they were counted, rate, burst); a key absent has a full bucket.
        self._buckets: dict[str, tuple[float, float, float, float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def allows(self, key: str) -> bool:
        """Whether ``key`` has a token left (nothing is spent: only a failure spends)."""
        if not self._buckets:
            return True
        with self._lock:
            return self._tokens(key[:MAX_KEY_LENGTH]) >= 1.0

    def spend(self, key: str, rate: float, burst: float) -> float:
        """Spend a token of ``key`` (down to ``-burst``: concurrent failures all count); the tokens left."""
        key = key[:MAX_KEY_LENGTH]
        with self._lock:
            entry = self._buckets.pop(key, None)
            tokens = burst if entry is None else min(entry[0] + (self._clock() - entry[1]) * rate, burst)
            tokens = max(tokens - 1.0, -burst)
            self._buckets[key] = (tokens, self._clock(), rate, burst)  # re-inserted: the most recently touched
            while len(self._buckets) > self._max_tracked:
                del self._buckets[next(iter(self._buckets))]
            return tokens

    def limited(self) -> dict[str, float]:
        """Keys without a token now, and the seconds until they have one again."""
        with self._lock:
            waits = {key: (1.0 - self._tokens(key)) / self._buckets[key][2] for key in list(self._buckets)}
        return {key: wait for key, wait in waits.items() if wait > 0}

    def lift(self, key: str) -> bool:
        """Give ``key`` a full bucket; ``True`` if it was limited."""
        with self._lock:
            entry = self._buckets.get(key[:MAX_KEY_LENGTH])
            limited = entry is not None and self._tokens(key[:MAX_KEY_LENGTH]) < 1.0
            self._buckets.pop(key[:MAX_KEY_LENGTH], None)
        return limited

    def _tokens(self, key: str) -> float:
        """``key``'s tokens now (the lock is held)."""
        entry = self._buckets.get(key)
        if entry is None:
            return float("inf")
        tokens, stamp, rate, burst = entry
        return min(tokens + (self._clock() - stamp) * rate, burst)
