"""The asyncio client's connections to one service, for one event loop: idle ones kept for reuse, busy ones counted.

Like the blocking pool (:mod:`rpcframework.client.pool`): only connections whose server negotiated ``reuse`` are
kept; LIFO per URL; aged out after ``idle_timeout`` (or earlier, when the server announced a shorter idle limit);
kept alive with ``dka`` pings after ``keepalive_lapse``; maintenance runs on use, at most every
``maintenance_interval``, with no background task. A connection taken from the pool is first checked for what
arrived while it was idle (the loop buffered it): one the server closed is dropped, one that received anything but
keepalives is dropped with a warning.

What the blocking pool has no need for: a bound on the calls in progress per URL (``max_connections``). Tasks are
cheap, so a portal that fans a page out to 500 calls would otherwise open 500 connections (and 500 TLS handshakes)
to one server; beyond the bound a call waits, within its deadline, for one of the busy connections to come back.

Everything here runs on the loop's thread: no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Final

from rpcframework.client.aio.connection import AsyncConnection
from rpcframework.client.pool import PoolSettings
from rpcframework.errors import ConfigurationError, DeadlineExceeded, ProtocolError, RPCFrameworkError
from rpcframework.transports.aio import ExpiryWatch

__all__ = ["AsyncConnectionPool", "AsyncPoolSettings"]

logger = logging.getLogger(__name__)

#: Bound on the connections one maintenance pass pings (the rest wait for the next pass).
_MAX_PINGS_PER_PASS: Final = 64


@dataclass(frozen=True, kw_only=True)
class AsyncPoolSettings(PoolSettings):
    """Pool tuning for :class:`~rpcframework.client.aio.AsyncClient`: :class:`~rpcframework.client.PoolSettings`
    plus ``max_connections``, the calls in progress per URL (``None``: no bound)."""

    max_connections: int | None = 100
    max_idle: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        limit = self.max_connections
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ConfigurationError(f"max_connections must be an int >= 1 or None, not {limit!r}")


class AsyncConnectionPool:
    """Idle reusable connections and busy-connection slots, by URL, for one event loop."""

    def __init__(
        self, settings: AsyncPoolSettings | None = None, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self.settings = settings or AsyncPoolSettings()
        #: The event loop whose connections these are (``None``: not said).
        self.loop = loop
        self._idle: dict[str, list[AsyncConnection]] = {}
        self._waiting: dict[str, deque[asyncio.Future[AsyncConnection | None]]] = {}
        self._busy: dict[str, int] = {}
        self._closed = False
        self._last_maintenance = time.monotonic()
        self._idle_limit = self.settings.idle_timeout or math.inf
        #: The deadlines of this loop's calls in their event-mode wait (one timer for all of them).
        self.deadlines = ExpiryWatch(loop) if loop is not None else None

    def __repr__(self) -> str:
        counts = {url: len(conns) for url, conns in self._idle.items() if conns}
        return f"<AsyncConnectionPool idle={counts}>"

    @property
    def closed(self) -> bool:
        return self._closed

    def idle_count(self, url: str | None = None) -> int:
        if url is not None:
            return len(self._idle.get(url, ()))
        return sum(len(conns) for conns in self._idle.values())

    def busy_count(self, url: str) -> int:
        """Calls in progress to ``url`` (each holds a slot from :meth:`take_slot` until :meth:`release_slot`)."""
        return self._busy.get(url, 0)

    # -- slots -------------------------------------------------------------------------------------------------------

    async def take_slot(self, url: str, timeout: float | None) -> AsyncConnection | None:
        """Wait (up to ``timeout`` s) until fewer than ``max_connections`` calls to ``url`` are in progress, and
        count this one; give the slot back with :meth:`release_slot` (or :meth:`finish`). Waiting calls get slots
        in their order. Returns the connection that came with the slot, when a call that ended handed over its
        ready connection too (:meth:`finish`), else ``None``."""
        if self._free_slot(url):
            self._busy[url] = self._busy.get(url, 0) + 1
            return None
        waiter: asyncio.Future[AsyncConnection | None] = asyncio.get_running_loop().create_future()
        queue = self._waiting.setdefault(url, deque())
        queue.append(waiter)
        watch = self.deadlines
        try:
            if timeout is None:
                return await waiter
            if watch is not None:
                watch.add(waiter, timeout, _slot_expired)  # one timer for every wait of the loop
                return await waiter  # the slot is handed over: the busy count already includes this call
            async with asyncio.timeout(timeout):
                return await waiter
        except (_SlotTimeout, TimeoutError) as exc:
            self._pass_on(url, waiter)  # handed a slot as the time ran out: pass it on
            limit = self.settings.max_connections
            raise DeadlineExceeded(
                f"waiting for a connection to {url}: {limit} calls were in progress for the whole deadline"
                " (raise AsyncPoolSettings.max_connections, or give the call more time)"
            ) from exc
        except BaseException:
            self._pass_on(url, waiter)  # handed a slot, then cancelled: pass it on
            raise
        finally:
            if watch is not None:
                watch.remove(waiter)
            if not waiter.done() or waiter.cancelled() or waiter.exception() is not None:
                _discard(queue, waiter)
            if not queue and self._waiting.get(url) is queue:
                del self._waiting[url]

    def _pass_on(self, url: str, waiter: asyncio.Future[AsyncConnection | None]) -> None:
        """A waiting call gives up: what it was handed (a slot, with or without a connection) goes to the next."""
        if not waiter.done() or waiter.cancelled() or waiter.exception() is not None:
            return
        conn = waiter.result()
        if conn is None:
            self.release_slot(url)
        else:
            self.finish(conn)

    def finish(self, conn: AsyncConnection) -> None:
        """A call on ``conn`` ended cleanly: hand the connection with its slot to the first call waiting for a slot
        when it is ready for the next call at once, else give both back (:meth:`release`, :meth:`release_slot`)."""
        url = conn.url
        queue = self._waiting.get(url)
        if queue and not self._closed and conn.reusable and conn.ready(time.monotonic()):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(conn)  # that call's slot and connection: the busy count stays
                    return
        self.release(conn)
        self.release_slot(url)

    def _free_slot(self, url: str) -> bool:
        limit = self.settings.max_connections
        return limit is None or (self._busy.get(url, 0) < limit and not self._waiting.get(url))

    def release_slot(self, url: str) -> None:
        """Give back a call's slot: to the first call waiting for one, if any, else to the pool."""
        queue = self._waiting.get(url)
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes to that call: the busy count stays
                return
        left = self._busy.get(url, 0) - 1
        if left > 0:
            self._busy[url] = left
        else:
            self._busy.pop(url, None)

    def take_ready(self, url: str) -> AsyncConnection | None:
        """The steady state without a wait: the most recently returned connection to ``url`` when a pipelined call
        may go out on it at once (:meth:`AsyncConnection.ready`) and a slot is free, with the slot counted; else
        ``None`` (then :meth:`take_slot` and :meth:`acquire` do the full checks, maintenance included)."""
        conns = self._idle.get(url)
        if not conns:
            return None
        if not self._free_slot(url):
            return None
        conn = self._pop_ready(conns)
        if conn is not None:
            self._busy[url] = self._busy.get(url, 0) + 1
        return conn

    def must_wait(self, url: str) -> bool:
        """Whether a call to ``url`` would wait for a slot now (:meth:`take_slot` would suspend)."""
        return not self._free_slot(url)

    def take_ready_with_slot(self, url: str) -> AsyncConnection | None:
        """:meth:`take_ready` for a call that holds its slot already (it waited in :meth:`take_slot`)."""
        conns = self._idle.get(url)
        return self._pop_ready(conns) if conns else None

    def _pop_ready(self, conns: list[AsyncConnection]) -> AsyncConnection | None:
        now = time.monotonic()
        conn = conns[-1]
        if now - self._last_maintenance >= self.settings.maintenance_interval or now - conn.last_used >= (
            self._idle_limit
        ):
            return None
        if not conn.ready(now):
            return None
        return conns.pop()

    # -- idle connections ----------------------------------------------------------------------------------------------

    def acquire(self, url: str) -> AsyncConnection | None:
        """The most recently returned live and clean connection to ``url``, or ``None``."""
        now = time.monotonic()
        if now - self._last_maintenance >= self.settings.maintenance_interval:
            self.maintain()
        limit = self._idle_limit
        conns = self._idle.get(url)
        for _ in range(len(conns) if conns else 0):  # bounded: each pass takes a connection out
            assert conns is not None
            conn = conns.pop()
            idle = now - conn.last_used
            if idle < limit and idle < conn.max_idle and _usable(conn):
                return conn
            if not conn.stream.closed:
                conn.close()
        return None

    def release(self, conn: AsyncConnection) -> None:
        """Give back a connection after a clean exchange; closed instead when not reusable, the pool is full or
        closed."""
        if not conn.reusable:
            conn.close()
            return
        conns = self._idle.get(conn.url)
        if self._closed or (conns is not None and len(conns) >= self.settings.max_idle):
            conn.close()
            return
        if conns is None:
            conns = self._idle[conn.url] = []
        conns.append(conn)
        if conn.last_used - self._last_maintenance >= self.settings.maintenance_interval:
            self.maintain()

    def discard_idle(self, url: str) -> int:
        """Close every idle connection to ``url`` (one turned out dead: the server probably restarted)."""
        conns = self._idle.pop(url, [])
        for conn in conns:
            conn.close()
        return len(conns)

    def close(self) -> None:
        """Close every idle connection; connections in use are closed when they are returned."""
        self._closed = True
        conns = [conn for group in self._idle.values() for conn in group]
        self._idle.clear()
        for conn in conns:
            conn.close()

    def maintain(self) -> None:
        """Ping idle connections due for a keepalive; close those idle too long (never waits)."""
        settings = self.settings
        now = time.monotonic()
        self._last_maintenance = now
        pings = 0
        for url, conns in list(self._idle.items()):
            for conn in list(conns):
                idle = now - conn.last_used
                if (settings.idle_timeout and idle >= settings.idle_timeout) or idle >= conn.max_idle:
                    conns.remove(conn)
                    conn.close()
                elif pings < _MAX_PINGS_PER_PASS and self._ping_due(conn, now):
                    pings += 1
                    try:
                        conn.send_keepalive()
                    except RPCFrameworkError as exc:
                        logger.debug("keepalive to %s failed, closing it: %s", conn.url, exc)
                        conns.remove(conn)
                        conn.close()
            if not conns:
                del self._idle[url]

    def _ping_due(self, conn: AsyncConnection, now: float) -> bool:
        lapse = self.settings.keepalive_lapse
        return bool(lapse) and now - max(conn.last_used, conn.last_ping) >= lapse


class _SlotTimeout(Exception):
    """Internal: a call's deadline passed while it waited for a slot."""


def _slot_expired(waiter: asyncio.Future[AsyncConnection | None]) -> None:
    if not waiter.done():
        waiter.set_exception(_SlotTimeout())


def _discard(
    queue: deque[asyncio.Future[AsyncConnection | None]], waiter: asyncio.Future[AsyncConnection | None]
) -> None:
    with contextlib.suppress(ValueError):
        queue.remove(waiter)


def _usable(conn: AsyncConnection) -> bool:
    """Whether an idle connection just taken from the pool may carry a call (closes it when not)."""
    try:
        if conn.check_idle():
            return True
        logger.debug("pooled connection to %s was closed by the server; dropped", conn.url)
    except ProtocolError as exc:
        logger.warning("dropped a pooled connection to %s: %s", conn.url, exc)
    except RPCFrameworkError as exc:
        logger.debug("pooled connection to %s failed its idle check (%s); dropped", conn.url, exc)
    conn.close()
    return False
