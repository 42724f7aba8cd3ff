"""Per-method concurrency limits (DIRAC's ``ThreadLimit/<ActionType>/<method>``).

DISET creates each method's ``Semaphore(n)`` and then releases it once, so the real limit is n+1 (and message
handlers are never limited, because the lock names do not match). Here a :class:`MethodLimiter` is built once per
service from its method table, with one bounded counter per limited key, so a limit of n means n
concurrent calls and an unbalanced release is an error rather than a silent extra slot.

Keys are DIRAC's: ``"RPC/<method>"`` and ``"FileTransfer/<Direction>"``. A worker should not block on a busy
method while other work waits, so :func:`~rpcframework.server.dispatch.dispatch` acquires without waiting and
answers "overloaded" at once (Errno ``EOVERLOAD``); blocking with a timeout is available for other callers.
"""

from __future__ import annotations

import contextlib
import threading
import types
from collections.abc import Iterator, Mapping

from rpcframework.errors import ConfigurationError, RPCFrameworkError
from rpcframework.returnvalues import EOVERLOAD, S_ERROR, DErrorReturn
from rpcframework.server.methods import MethodTable

#: DIRAC's default per-method limit (``getMaxThreadsForMethod``).
DEFAULT_METHOD_LIMIT = 15


class MethodOverloaded(RPCFrameworkError):
    """Too many calls to one method are running; the caller may retry later."""

    errno = EOVERLOAD


class SlotCounter:
    """A bounded counter of concurrent calls: a plain lock and an int on the per-call (non-blocking) path, where
    ``threading.BoundedSemaphore`` runs Python code around a ``Condition``; waiters (rare) use the condition."""

    __slots__ = ("_changed", "_lock", "_waiters", "limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._waiters = 0

    def try_take(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True

    def take(self, timeout: float | None) -> bool:
        with self._changed:
            self._waiters += 1
            try:
                if not self._changed.wait_for(lambda: self.used < self.limit, timeout):
                    return False
            finally:
                self._waiters -= 1
            self.used += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            if self.used <= 0:
                raise ValueError("a method slot was released more often than it was taken")
            self.used -= 1
            if self._waiters:
                self._changed.notify()


class MethodLimiter:
    """Concurrency limits for the methods of one service; thread-safe, immutable after construction."""

    __slots__ = ("_limits", "_slots", "slots_by_key")

    def __init__(self, limits: Mapping[str, int | None]) -> None:
        """``limits`` maps a key (``"RPC/echo"``) to its maximum concurrency; ``None`` means unlimited."""
        checked: dict[str, int] = {}
        for key, limit in limits.items():
            if limit is None:
                continue
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ConfigurationError(f"thread limit for {key} must be a positive integer or None, not {limit!r}")
            checked[key] = limit
        self._limits: Mapping[str, int] = types.MappingProxyType(checked)
        slots = {key: SlotCounter(limit) for key, limit in checked.items()}
        self._slots: Mapping[str, SlotCounter] = types.MappingProxyType(slots)
        #: The counter of each limited key (read-only), for the per-call path: ``try_take()``/``give_back()``
        #: on it are what :meth:`acquire` (timeout 0) and :meth:`release` do, one call each.
        self.slots_by_key: Mapping[str, SlotCounter] = self._slots

    @classmethod
    def for_table(
        cls, table: MethodTable, limits: Mapping[str, int | None] | None = None, *, default: int | None = None
    ) -> MethodLimiter:
        """Limits for every method and transfer hook of ``table``: ``limits[key]`` if given, else ``default``.

        A key in ``limits`` that names no method is a configuration error (a typo would otherwise silently leave
        the method unlimited). Pass ``default=DEFAULT_METHOD_LIMIT`` for DIRAC's default of 15.
        """
        given = dict(limits or {})
        keys = [method.limit_key for method in table.methods.values()]
        keys += [hook.limit_key for hook in table.transfers.values()]
        unknown = sorted(set(given) - set(keys))
        if unknown:
            raise ConfigurationError(f"thread limits for unknown methods of {table.handler}: {', '.join(unknown)}")
        return cls({key: given.get(key, default) for key in keys})

    def limit(self, key: str) -> int | None:
        """The configured limit for ``key`` (``None``: unlimited)."""
        return self._limits.get(key)

    def acquire(self, key: str, *, timeout: float | None = 0.0) -> bool:
        """Take a slot for ``key``; ``False`` when none is free within ``timeout`` (0: do not wait; None: wait)."""
        slots = self._slots.get(key)
        if slots is None:
            return True
        if timeout is not None and timeout <= 0:
            return slots.try_take()
        return slots.take(timeout)

    def release(self, key: str) -> None:
        """Give back a slot taken with :meth:`acquire` (raises ``ValueError`` if none was taken)."""
        slots = self._slots.get(key)
        if slots is not None:
            slots.give_back()

    @contextlib.contextmanager
    def slot(self, key: str, *, timeout: float | None = 0.0) -> Iterator[None]:
        """Hold a slot for the block; raises :class:`MethodOverloaded` when none is free in time."""
        if not self.acquire(key, timeout=timeout):
            raise MethodOverloaded(self._overloaded_text(key), errno=EOVERLOAD)
        try:
            yield
        finally:
            self.release(key)

    def overloaded_error(self, key: str) -> DErrorReturn:
        """The envelope sent when ``key`` has no free slot: ``"Service overloaded ( 1601 : ...)"``."""
        return S_ERROR(EOVERLOAD, self._overloaded_text(key))

    def _overloaded_text(self, key: str) -> str:
        return f"too many concurrent calls to {key} (limit {self._limits.get(key)}); retry later"


class BytesInFlight:
    """Bytes held for requests that no registered identity answers for, per address and per service.

    A connection reserves what it holds while it waits for the rest of a message (a proposal not yet authorized,
    the arguments of a caller without a registered identity, the arguments of a refused pipelined call being
    dropped) and gives it back when the exchange ends. A reservation over a limit is refused: the connection is
    answered and closed before the bytes arrive. Thread-safe; one per reactor."""

    __slots__ = ("_by_address", "_by_service", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_address: dict[str, int] = {}
        self._by_service: dict[str, int] = {}

    def reserve(self, address: str, service: str | None, amounts: tuple[int, int], limits: tuple[int, int]) -> bool:
        """Reserve ``amounts`` (bytes for ``address``, bytes for ``service``) within ``limits`` (per address, per
        service); ``False`` (nothing reserved) when either would go over."""
        for_address, for_service = amounts
        with self._lock:
            held_address = self._by_address.get(address, 0) + for_address
            held_service = self._by_service.get(service, 0) + for_service if service is not None else 0
            if held_address > limits[0] or held_service > limits[1]:
                return False
            if for_address:
                self._by_address[address] = held_address
            if for_service and service is not None:
                self._by_service[service] = held_service
        return True

    def release(self, address: str, service: str | None, amounts: tuple[int, int]) -> None:
        """Give back what :meth:`reserve` took."""
        with self._lock:
            _give_back(self._by_address, address, amounts[0])
            if service is not None:
                _give_back(self._by_service, service, amounts[1])

    def held(self) -> tuple[dict[str, int], dict[str, int]]:
        """Bytes held now, by address and by service (for operators and tests)."""
        with self._lock:
            return dict(self._by_address), dict(self._by_service)


def _give_back(table: dict[str, int], key: str, amount: int) -> None:
    left = table.get(key, 0) - amount
    if left > 0:
        table[key] = left
    else:
        table.pop(key, None)


#: What a connection may hold without reserving anything: a proposal and small arguments never take the budget's
#: lock (at most this much times MaxConnections in all).
FREE_BYTES_PER_CONNECTION = 16 * 1024


class Holding:
    """What one connection has reserved in a :class:`BytesInFlight` for the exchange in progress."""

    __slots__ = ("address", "budget", "limits", "reserved", "service")

    def __init__(self, budget: BytesInFlight, address: str, limits: tuple[int, int]) -> None:
        self.budget = budget
        self.address = address
        self.limits = limits  # (per address, per service)
        self.reserved = (0, 0)  # (bytes for the address, bytes for the service)
        self.service: str | None = None

    def covers(self, held: int) -> bool:
        """The per-wait test: holding ``held`` bytes needs no new reservation."""
        return held <= FREE_BYTES_PER_CONNECTION and self.reserved == (0, 0)

    def cover(self, held: int, service: str | None) -> str | None:
        """Reserve up to ``held`` bytes for the address, and for ``service`` when given; the reason to refuse
        (for the peer) when a limit would be exceeded, else ``None``."""
        if service is not None and self.service not in (None, service):
            self.release()  # another service's exchange: start its account afresh
        for_address, for_service = self.reserved
        more = (max(held - for_address, 0), max(held - for_service, 0) if service is not None else 0)
        if more == (0, 0):
            return None
        if not self.budget.reserve(self.address, service, more, self.limits):
            return self._refusal(held, service)
        self.reserved = (for_address + more[0], for_service + more[1])
        self.service = service if service is not None else self.service
        return None

    def release(self) -> None:
        """Give everything back (the exchange ended, or the connection closed)."""
        if self.reserved != (0, 0):
            self.budget.release(self.address, self.service, self.reserved)
            self.reserved = (0, 0)
            self.service = None

    def _refusal(self, held: int, service: str | None) -> str:
        by_address = self.budget.held()[0]
        if by_address.get(self.address, 0) + held - self.reserved[0] > self.limits[0]:
            where, limit = f"address {self.address}", self.limits[0]
        else:
            where, limit = f"service {service}", self.limits[1]
        return (
            f"too many bytes in flight from callers without a registered identity ({where}: limit {limit} bytes,"
            f" this message needs {held}); send less at once, retry later, or call with a registered certificate"
        )


class TransferSlots:
    """Concurrent file transfers of one service, in total and per identity (issue 12.3).

    A transfer runs with blocking I/O in a worker, so a peer that stalls holds that worker until the transfer's
    per-read idle limit. Capping transfers below the service's worker count leaves workers for every other call,
    and the per-identity cap leaves transfer slots for other callers. Slots are taken when the proposal is
    accepted and given back when the transfer ends or its connection closes."""

    __slots__ = ("_by_identity", "_lock", "total")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_identity: dict[str, int] = {}
        self.total = 0

    def take(self, identity: str, limit: int, per_identity: int) -> str | None:
        """Take a slot for ``identity``; the reason (for the peer) when none is free, else ``None``."""
        with self._lock:
            if self.total >= limit:
                return f"{self.total} transfers are running, the most this service runs at once (MaxTransfers)"
            running = self._by_identity.get(identity, 0)
            if running >= per_identity:
                return f"you already run {running} transfers here, the most one caller may (MaxTransfersPerIdentity)"
            self._by_identity[identity] = running + 1
            self.total += 1
        return None

    def give_back(self, identity: str) -> None:
        with self._lock:
            running = self._by_identity.get(identity, 0)
            if running <= 0:
                raise ValueError("a transfer slot was given back more often than it was taken")
            if running > 1:
                self._by_identity[identity] = running - 1
            else:
                del self._by_identity[identity]
            self.total -= 1

    def running(self) -> dict[str, int]:
        """Transfers running now, per identity (for operators and tests)."""
        with self._lock:
            return dict(self._by_identity)
