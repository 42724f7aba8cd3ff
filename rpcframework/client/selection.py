"""Which URL to try next: the least busy, random among equals, failover URLs last, temporary bans, host avoidance.

A :class:`URLSelector` belongs to one client and is shared by all the threads that use it. For one call the
networking code asks for a plan and walks it, reporting failures::

    plan = selector.attempt_order(max_attempts=retry.max_attempts)
    for url in plan:
        ...                      # on a failure before the arguments were sent: selector.ban(url); continue
        selector.succeeded(url)  # lifts a ban if a fallback URL worked
        break

Order within one plan, recomputed before each attempt so that a ban made during this call counts at once:

1. URLs this call has tried fewer times come first (each URL once per round);
2. primary URLs whose host is not banned, those with the fewest calls outstanding (started by this selector's
   client and not finished) first, equals in an order shuffled once per plan (spreads load like DISET). A host
   that stopped answering holds its calls, so it gets no new ones while the others have fewer: one dead host out
   of N cannot draw every thread of a client (the networking code reports :meth:`URLSelector.started` and
   :meth:`URLSelector.finished` around each attempt);
3. with more than 2 URLs, primary URLs on a host that has a banned URL (DISET avoids a banned *host*: a dead
   machine usually takes all its ports with it);
4. failover URLs in their configured order (never shuffled), clean hosts first;
5. banned URLs, least recently banned first.

Bans last ``ban_seconds`` per selector (so per client), or less when the caller says so: a refused connection (an
instance restarting: nothing listens for a moment) is found out again at no cost, so the client bans it for
:data:`QUICK_FAILURE_BAN_SECONDS` only and spreads its calls over every instance again soon after a rolling restart.
Unlike DISET, which clears every ban and sleeps when all URLs are banned, a plan always yields something: the URL
whose ban is oldest is the best remaining guess, and the pause between attempts is the
:class:`~rpcframework.client.policy.Retry` value's business, bounded by the deadline.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from urllib.parse import urlsplit

from rpcframework.errors import ConfigurationError

logger = logging.getLogger(__name__)

#: How long a URL that failed before the arguments were sent is avoided.
DEFAULT_BAN_SECONDS = 60.0
#: How long a URL is avoided after a failure that cost nothing to find (a refused connection).
QUICK_FAILURE_BAN_SECONDS = 5.0


def url_host(url: str) -> str | None:
    """The host part of ``dips://host:port/System/Component`` (the address, for a target ``<url>#<address>``);
    ``None`` when the URL has none."""
    try:
        parts = urlsplit(url)
        return parts.fragment or parts.hostname
    except ValueError:
        return None


class URLSelector:
    """Primary and failover URLs of one service, with per-selector temporary bans. Thread-safe."""

    def __init__(
        self,
        primary: Sequence[str],
        failover: Sequence[str] = (),
        *,
        ban_seconds: float = DEFAULT_BAN_SECONDS,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(primary, str) or isinstance(failover, str):
            raise ConfigurationError("URL lists must be sequences of strings, not a single string")
        primary_urls = tuple(dict.fromkeys(primary))
        failover_urls = tuple(url for url in dict.fromkeys(failover) if url not in primary_urls)
        if not primary_urls and not failover_urls:
            raise ConfigurationError("a service needs at least one URL")
        if ban_seconds < 0:
            raise ConfigurationError(f"ban_seconds must be >= 0, not {ban_seconds!r}")
        self.primary = primary_urls
        self.failover = failover_urls
        self.ban_seconds = float(ban_seconds)
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._lock = threading.Lock()
        # url -> monotonic time the ban was made; the ban holds until that time + ban_seconds.
        self._banned_at: dict[str, float] = {}
        self._ban_length: dict[str, float] = {}  # url -> seconds its current ban lasts
        # url -> attempts in progress (only kept with several URLs: with one there is nothing to choose).
        self._outstanding = dict.fromkeys(self.urls, 0) if len(self.urls) > 1 else {}

    @property
    def urls(self) -> tuple[str, ...]:
        return self.primary + self.failover

    def __repr__(self) -> str:
        return f"URLSelector(primary={list(self.primary)!r}, failover={list(self.failover)!r})"

    def ban(self, url: str, seconds: float | None = None) -> None:
        """Avoid ``url`` for ``ban_seconds`` (or ``seconds``, when shorter): it failed."""
        if url not in self.urls:
            return
        length = self.ban_seconds if seconds is None else min(max(seconds, 0.0), self.ban_seconds)
        with self._lock:
            self._banned_at[url] = self._clock()
            self._ban_length[url] = length
        logger.info("URL %s temporarily banned for %.0f s", url, length)

    def replace(self, primary: Sequence[str], failover: Sequence[str] = ()) -> None:
        """New URL lists (a host name resolved to other addresses): bans and outstanding counts of the URLs that
        stay are kept; plans already made finish with the URLs they had."""
        primary_urls = tuple(dict.fromkeys(primary))
        failover_urls = tuple(url for url in dict.fromkeys(failover) if url not in primary_urls)
        if not primary_urls and not failover_urls:
            return
        with self._lock:
            self.primary, self.failover = primary_urls, failover_urls
            urls = set(self.urls)
            for gone in [url for url in self._banned_at if url not in urls]:
                del self._banned_at[gone]
                self._ban_length.pop(gone, None)
            if len(urls) > 1:
                self._outstanding = {url: self._outstanding.get(url, 0) for url in self.urls}
            else:
                self._outstanding = {}

    def started(self, url: str) -> None:
        """An attempt on ``url`` begins (it counts as outstanding until :meth:`finished`)."""
        if url in self._outstanding:
            with self._lock:
                self._outstanding[url] += 1

    def finished(self, url: str) -> None:
        """The attempt on ``url`` that :meth:`started` is over, however it ended."""
        if url in self._outstanding:
            with self._lock:
                self._outstanding[url] = max(0, self._outstanding[url] - 1)

    def outstanding(self) -> dict[str, int]:
        """Attempts in progress per URL (empty for a service with one URL)."""
        with self._lock:
            return dict(self._outstanding)

    def succeeded(self, url: str) -> None:
        """``url`` worked: lift its ban, if any."""
        if url not in self._banned_at:  # the common case, without the lock (a dict lookup is atomic)
            return
        with self._lock:
            self._banned_at.pop(url, None)

    def banned(self) -> dict[str, float]:
        """Currently banned URLs mapped to the seconds their ban still lasts."""
        with self._lock:
            return {url: at + self._length(url) - self._clock() for url, at in self._active_bans().items()}

    def _length(self, url: str) -> float:
        return self._ban_length.get(url, self.ban_seconds)

    def _active_bans(self) -> dict[str, float]:
        """Drop expired bans and return the rest; call with the lock held."""
        now = self._clock()
        expired = [url for url, at in self._banned_at.items() if now >= at + self._length(url)]
        for url in expired:
            del self._banned_at[url]
            self._ban_length.pop(url, None)
        return dict(self._banned_at)

    def attempt_order(self, max_attempts: int | None = None) -> AttemptPlan:
        """A plan for one call: an iterator of URLs (one round over all URLs when ``max_attempts`` is None)."""
        limit = len(self.urls) if max_attempts is None else max_attempts
        if limit < 0:
            raise ConfigurationError(f"max_attempts must be >= 0, not {max_attempts!r}")
        if len(self.primary) < 2:
            return AttemptPlan(self, self.primary, limit)  # nothing to shuffle
        with self._lock:
            shuffled = list(self.primary)
            self._rng.shuffle(shuffled)
        return AttemptPlan(self, tuple(shuffled), limit)

    def _rank(
        self, url: str, position: int, bans: dict[str, float], banned_hosts: set[str | None]
    ) -> tuple[int, float, int, int]:
        """Sort key: (tier, ban time, outstanding, position) as described in the module docstring; call with the
        lock held."""
        if url in bans:
            return (4, bans[url], 0, position)
        is_failover = url in self.failover
        suspect = len(self.urls) > 2 and url_host(url) in banned_hosts
        tier = (2 if is_failover else 0) + (1 if suspect else 0)
        return (tier, 0.0, self._outstanding.get(url, 0), position)

    def _choose(self, order: Sequence[str], tries: dict[str, int]) -> str:
        positions = {url: index for index, url in enumerate(order)}
        with self._lock:
            bans = self._active_bans()
            banned_hosts = {url_host(url) for url in bans} - {None}
            return min(order, key=lambda url: (tries[url], *self._rank(url, positions[url], bans, banned_hosts)))


class AttemptPlan(Iterator[str]):
    """The URLs to try for one call, chosen lazily so that bans made during the call are honoured."""

    def __init__(self, selector: URLSelector, shuffled_primary: tuple[str, ...], limit: int) -> None:
        self._selector = selector
        self._order = (*shuffled_primary, *selector.failover)
        self._tries = dict.fromkeys(self._order, 0)
        self._limit = limit
        self.attempts = 0

    def __iter__(self) -> AttemptPlan:
        return self

    def __next__(self) -> str:
        if self.attempts >= self._limit:
            raise StopIteration
        order = self._order
        # One URL: no ranking to do, whatever its bans (the common case of a service with a single URL).
        url = order[0] if len(order) == 1 else self._selector._choose(order, self._tries)
        self._tries[url] += 1
        self.attempts += 1
        return url
