"""Idle connections kept for reuse, per URL: LIFO, bounded, aged out, kept alive with ``dka`` pings.

Only connections whose server negotiated ``reuse`` ever enter the pool; with a DIRAC server every call has its
own connection. There is no background thread: maintenance runs on the threads that use the pool, at most once
per ``maintenance_interval``, whenever a connection is taken or returned (and when :meth:`ConnectionPool.maintain`
is called, for applications that want to keep idle connections warm while they make no calls):

* a connection idle for ``keepalive_lapse`` seconds gets a ``dka`` ping (its pong is read and skipped by the next
  exchange), so servers and middle boxes that drop silent connections keep it;
* a connection idle for ``idle_timeout`` seconds is closed; so are connections beyond ``max_idle`` per URL.

LIFO: the most recently used connection is the most likely to still be alive, and the older ones age out.
A pooled connection can still turn out dead when it is used; the caller retries the call on a fresh connection
(safe: nothing was executed before the ack).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Final

from rpcframework.client.inner import Connection
from rpcframework.errors import ConfigurationError, ProtocolError, RPCFrameworkError

__all__ = ["ConnectionPool", "PoolSettings"]

logger = logging.getLogger(__name__)

#: Bound on the connections one maintenance pass pings (the rest wait for the next pass).
_MAX_PINGS_PER_PASS: Final = 64
_PING_SEND_TIMEOUT: Final = 1.0


@dataclass(frozen=True, kw_only=True)
class PoolSettings:
    """Pool tuning. ``keepalive_lapse`` 0 disables pings (DISET's default lapse is 150 s)."""

    max_idle: int = 8
    idle_timeout: float = 120.0
    keepalive_lapse: float = 30.0
    maintenance_interval: float = 5.0

    def __post_init__(self) -> None:
        if isinstance(self.max_idle, bool) or not isinstance(self.max_idle, int) or self.max_idle < 0:
            raise ConfigurationError(f"max_idle must be an int >= 0, not {self.max_idle!r}")
        for name in ("idle_timeout", "keepalive_lapse", "maintenance_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigurationError(f"{name} must be a number of seconds >= 0, not {value!r}")


class ConnectionPool:
    """Idle reusable connections by URL. Thread-safe; connections in use are not tracked here."""

    def __init__(self, settings: PoolSettings | None = None) -> None:
        self.settings = settings or PoolSettings()
        # The same clock as the connections' timestamps (time.monotonic); not injectable for that reason.
        self._clock = time.monotonic
        self._lock = threading.Lock()
        self._idle: dict[str, list[Connection]] = {}
        self._closed = False
        self._last_maintenance = self._clock()

    def __repr__(self) -> str:
        with self._lock:
            counts = {url: len(conns) for url, conns in self._idle.items() if conns}
        return f"<ConnectionPool idle={counts}>"

    def idle_count(self, url: str | None = None) -> int:
        with self._lock:
            if url is not None:
                return len(self._idle.get(url, ()))
            return sum(len(conns) for conns in self._idle.values())

    def acquire(self, url: str) -> Connection | None:
        """The most recently returned live and clean connection to ``url``, or ``None``.

        Each candidate is checked for what arrived while it was idle (:meth:`Connection.check_idle`): one the server
        closed is dropped quietly; one that received anything but keepalives (an answer nobody asked for) is
        dropped with a warning, so that such a frame is never read as the next call's answer.
        """
        now = self._clock()  # one clock read serves the maintenance check and the expiry
        if now - self._last_maintenance >= self.settings.maintenance_interval:
            self.maintain()
        for _ in range(self.settings.max_idle + 1):  # bounded: each pass takes a connection out of the pool
            conn = self._take(url, now)
            if conn is None or _usable(conn):
                return conn
        return None

    def _take(self, url: str, now: float) -> Connection | None:
        """Pop the newest unexpired idle connection to ``url`` (closing expired ones on the way)."""
        limit = self.settings.idle_timeout or math.inf
        conn: Connection | None
        with self._lock:
            conns = self._idle.get(url)
            if conns:
                conn = conns.pop()
                idle = now - conn.last_used
                if idle < limit and idle < conn.max_idle:
                    return conn  # the steady state: the newest connection is fresh (no list, no loop)
                expired = [conn]
                while conns:
                    conn = conns.pop()
                    idle = now - conn.last_used
                    if idle < limit and idle < conn.max_idle:
                        break
                    expired.append(conn)
                else:
                    conn = None
            else:
                return None
        _close_all(expired)  # outside the lock: closing may block briefly
        return conn

    def release(self, conn: Connection) -> None:
        """Give back a connection after a clean exchange; closed instead when the pool is full or closed."""
        if not conn.reusable:
            conn.close()
            return
        settings = self.settings
        with self._lock:
            conns = self._idle.get(conn.url)
            keep = not self._closed and (conns is None or len(conns) < settings.max_idle)
            if keep:
                if conns is None:
                    conns = self._idle[conn.url] = []
                conns.append(conn)
        if not keep:
            conn.close()
        # A reusable connection was just used: its last_used stands in for the clock (one read fewer per call).
        if conn.last_used - self._last_maintenance >= settings.maintenance_interval:
            self.maintain()

    def discard_idle(self, url: str) -> int:
        """Close every idle connection to ``url`` (one turned out dead: the server probably restarted)."""
        with self._lock:
            conns = self._idle.pop(url, [])
        _close_all(conns)
        return len(conns)

    def close(self) -> None:
        """Close every idle connection; connections in use are closed when they are returned."""
        with self._lock:
            self._closed = True
            conns = [conn for group in self._idle.values() for conn in group]
            self._idle.clear()
        _close_all(conns)

    def maintain(self) -> None:
        """Ping idle connections due for a keepalive; close those idle too long. Never blocks on the network
        for more than a short send timeout per ping."""
        settings = self.settings
        now = self._clock()
        expired: list[Connection] = []
        due: list[Connection] = []
        with self._lock:
            self._last_maintenance = now
            for conns in self._idle.values():
                for conn in list(conns):
                    idle = now - conn.last_used
                    if (settings.idle_timeout and idle >= settings.idle_timeout) or idle >= conn.max_idle:
                        conns.remove(conn)
                        expired.append(conn)
                    elif self._ping_due(conn, now) and len(due) < _MAX_PINGS_PER_PASS:
                        conns.remove(conn)  # out of the pool while we write to it: no other thread can take it
                        due.append(conn)
            for url in [url for url, conns in self._idle.items() if not conns]:
                del self._idle[url]  # URLs no longer used leave no empty lists behind
        _close_all(expired)
        alive: list[Connection] = []
        for conn in due:
            try:
                conn.send_keepalive(_PING_SEND_TIMEOUT)
            except RPCFrameworkError as exc:
                logger.debug("keepalive to %s failed, closing it: %s", conn.url, exc)
                conn.close()
                continue
            alive.append(conn)
        with self._lock:
            closed = self._closed
            if not closed:
                for conn in alive:
                    self._idle.setdefault(conn.url, []).insert(0, conn)  # the least recently used end
        if closed:
            _close_all(alive)

    def _ping_due(self, conn: Connection, now: float) -> bool:
        lapse = self.settings.keepalive_lapse
        return bool(lapse) and now - max(conn.last_used, conn.last_ping) >= lapse


def _usable(conn: Connection) -> bool:
    """Whether an idle connection just taken from the pool may carry a call; closes it when not."""
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


def _close_all(conns: list[Connection]) -> None:
    for conn in conns:
        conn.close()
