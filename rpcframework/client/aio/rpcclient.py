"""``AsyncRPCClient``: the asyncio :class:`~rpcframework.client.aio.interfaces.AsyncCallTarget` for one service.

The asyncio twin of :class:`~rpcframework.client.rpcclient.RPCClient`, with the same policy objects: the service's
:class:`~rpcframework.client.base.BaseClient` (URLs from the configuration, shuffled primaries and failover URLs
last, temporary bans, credentials, proposals with the delegation in force in the calling task), the immutable
``Retry`` and ``Timeout`` values, the same rules for what is retried (before the arguments are sent, and an
overload refusal from our server, which ran nothing) and the same error texts. Only the I/O differs: connections
are :class:`~rpcframework.transports.aio.AsyncStream` objects on the running event loop.

One connection pool per event loop (a loop's connections cannot be used from another loop); the service description
is shared by all of them. A client may be used from several loops (threads each running ``asyncio.run``) at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

from rpcframework.client.aio.connection import (
    AsyncConnection,
    Attempt,
    execute,
    finish_call,
    goodbye_first,
    send_call,
)
from rpcframework.client.aio.pool import AsyncConnectionPool, AsyncPoolSettings
from rpcframework.client.base import DEFAULT_OFFER, BaseClient, Endpoint
from rpcframework.client.failures import (
    all_failed,
    ban_seconds,
    call_timeout_error,
    check_dead_pooled_connection,
    first_attempt_outcome,
    handshake_timeout_error,
    log_retry,
    lost_after_sending_error,
    pause_before,
    report_failure,
    retry_state_after,
    silent_peer_error,
    unretryable_outcome,
)
from rpcframework.client.options import ClientOptions
from rpcframework.client.policy import CallPhase, Deadline
from rpcframework.client.stub import StubRecorder
from rpcframework.errors import (
    ConfigurationError,
    ConnectionClosedError,
    DeadlineExceeded,
    PeerSilent,
    RemoteError,
    RPCFrameworkError,
    ServiceOverloaded,
)
from rpcframework.observability.events import CallOutcome, ClientCall, ClientObserver, ObservedCall
from rpcframework.protocol import Extensions
from rpcframework.protocol.messages import TraceContext
from rpcframework.returnvalues import DReturn, SErrorException, error_from_exception
from rpcframework.transports import Backend
from rpcframework.transports.aio import AsyncStream, open_tcp_stream
from rpcframework.transports.aio_tls import open_tls_stream
from rpcframework.transports.base import UnknownCAError
from rpcframework.transports.plain import ConnectTimeout
from rpcframework.transports.pyopenssl import PyOpenSSLBackend

__all__ = ["AsyncRPCClient"]

logger = logging.getLogger(__name__)

_NEVER: Final = Deadline.never()
# A pooled connection found dead is replaced by another pooled one or a fresh one; a few tries at most.
_MAX_STALE_RETRIES: Final = 3
_MAX_OBSERVED_METHODS: Final = 1024

Sleep = Callable[[float], Awaitable[None]]


class AsyncRPCClient:
    """Calls one service from asyncio code; one connection pool per event loop.

    Options as :class:`~rpcframework.client.rpcclient.RPCClient` (``options=`` or DISET keywords); ``pool`` tunes
    reuse and the calls in progress per URL (:class:`AsyncPoolSettings`). ``dips://`` uses the pyOpenSSL back end
    (``backend="m2crypto"`` is refused: M2Crypto has no non-blocking handshake the loop could drive).
    """

    def __init__(
        self,
        url: str,
        options: ClientOptions | None = None,
        *,
        pool: AsyncPoolSettings | None = None,
        backends: dict[str, Backend] | None = None,
        offer: Extensions | None = DEFAULT_OFFER,
        environ: Mapping[str, str] | None = None,
        sleep: Sleep = asyncio.sleep,
        **kw_options: Any,
    ) -> None:
        if options is None:
            options = ClientOptions.build(kw_options)
        elif kw_options:
            raise ConfigurationError("pass either options= or keyword options, not both")
        if options.backend not in (None, "pyopenssl"):
            raise ConfigurationError(
                f"the asyncio client speaks dips:// with the pyopenssl back end only, not {options.backend!r}"
                " (leave backend unset, or use the blocking Client for M2Crypto)"
            )
        self._rpc_base = BaseClient(url, options, backends=backends, offer=offer, environ=environ)
        self._rpc_pool_settings = pool or AsyncPoolSettings()
        self._rpc_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncConnectionPool] = (
            weakref.WeakKeyDictionary()
        )
        self._rpc_lock = threading.Lock()  # pools are created from whichever thread runs a loop
        self._rpc_sleep = sleep
        self._rpc_closed = False
        urls = self._rpc_base.selector.urls
        self._rpc_single_url: str | None = urls[0] if len(urls) == 1 else None
        self._rpc_endpoint = self._rpc_base.endpoints[urls[0]]
        self._rpc_observer = options.observer
        self._rpc_observed: dict[str, ClientCall] = {}
        self._rpc_stubs = StubRecorder()
        self._rpc_last_pool: AsyncConnectionPool | None = None  # the pool of the loop that called last

    # -- public ----------------------------------------------------------------------------------------------------

    @property
    def base(self) -> BaseClient:
        """The service description (URLs and their selector, TLS settings, proposals), shared by every loop."""
        return self._rpc_base

    @property
    def pool(self) -> AsyncConnectionPool:
        """The connection pool of the running event loop (created on first use)."""
        loop = asyncio.get_running_loop()
        pool = self._rpc_last_pool
        if pool is not None and pool.loop is loop:
            return pool
        pool = self._rpc_pools.get(loop)
        if pool is None:
            with self._rpc_lock:
                pool = self._rpc_pools.get(loop)
                if pool is None:
                    pool = self._rpc_pools[loop] = AsyncConnectionPool(self._rpc_pool_settings, loop)
        self._rpc_last_pool = pool
        return pool

    def __repr__(self) -> str:
        return f"<AsyncRPCClient {self._rpc_base.service!r}>"

    async def aclose(self) -> None:
        """Close idle connections (of every loop); connections in use close when their call ends."""
        self.close()

    def close(self) -> None:
        """:meth:`aclose` for synchronous code: the running loop's connections close now, other loops' are closed
        on their own thread; later calls fail."""
        self._rpc_closed = True
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        with self._rpc_lock:
            pools = list(self._rpc_pools.items())
            self._rpc_pools.clear()
            self._rpc_last_pool = None
        for loop, pool in pools:
            if loop.is_closed():
                # Nothing can run there any more; its sockets close when their transports are collected. Close a
                # client (await aclose()) before asyncio.run() returns to release them in order.
                logger.debug("%r: the loop of %r is closed; its idle connections are dropped", self, pool)
            elif loop is running or not loop.is_running():
                pool.close()
            else:
                loop.call_soon_threadsafe(pool.close)

    async def __aenter__(self) -> AsyncRPCClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def call(
        self, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], *, timeout: float | None
    ) -> DReturn:
        """Perform one call within ``timeout`` seconds (``None``: no deadline); the envelope, or raise."""
        if self._rpc_observer is not None:
            return await self._observed_call(self._rpc_observer, method, args, kwargs, timeout)
        url = self._rpc_single_url
        deadline = Deadline.after(timeout) if timeout is not None else _NEVER
        conn = None
        held = False  # a slot waited for (take_slot) and not given back yet
        if url is not None and not self._rpc_closed:
            pool = self.pool
            conn = pool.take_ready(url)
            if conn is None and pool.must_wait(url):
                # Every connection is busy: wait for a slot here, then take the connection that freed it (the usual
                # case with many calls in flight), or go the full way holding the slot.
                try:
                    conn = await pool.take_slot(url, deadline.remaining())
                except DeadlineExceeded as exc:
                    first = (url, Attempt(), exc)
                    return await self._attempts(
                        method, args, kwargs, timeout=timeout, deadline=deadline, first=first, record=None
                    )
                held = True
                if conn is None:
                    conn = pool.take_ready_with_slot(url)
        if conn is None:
            if held and self._rpc_closed:
                pool.release_slot(self._rpc_endpoint.url)  # closed while it waited: the slot goes back to its pool
                held = False
            return await self._call(method, args, kwargs, timeout=timeout, deadline=deadline, slot_held=held)
        # The steady state, in this one coroutine: a pooled pipelined connection, its slot counted, one write and
        # one wait for the parsed answer. Any failure goes to the full path's rules (_ready_call_failed).
        sent = False
        try:
            proposal = self._rpc_base.proposal(self._rpc_endpoint.path, method)
            waiter = send_call(conn, proposal, (args, kwargs), timeout, pool.deadlines)
            sent = True
            result = finish_call(conn, await waiter)
        except RPCFrameworkError as exc:
            return await self._ready_call_failed(
                pool, conn, (method, args, kwargs), (timeout, deadline), exc, sent=sent
            )
        except BaseException:
            # Cancelled (or worse) mid-exchange: what is left on the connection belongs to this call only.
            conn.close()
            pool.release_slot(conn.url)
            raise
        pool.finish(conn)  # to the next call waiting for a connection, or back to the pool
        self._rpc_base.selector.succeeded(conn.url)
        return result

    async def _ready_call_failed(
        self,
        pool: AsyncConnectionPool,
        conn: AsyncConnection,
        call: tuple[str, tuple[Any, ...], Mapping[str, Any]],
        limits: tuple[float | None, Deadline],
        exc: RPCFrameworkError,
        *,
        sent: bool,
    ) -> DReturn:
        """A call on a ready pooled connection failed: the connection is handled as :meth:`_call_url` handles it,
        then the call goes on as :meth:`_call` goes on after a failed first attempt (retries, bans, timeouts)."""
        method, args, kwargs = call
        timeout, deadline = limits
        url = conn.url
        attempt = Attempt()
        attempt.reused = True
        attempt.phase = CallPhase.ARGUMENTS_SENT if sent else CallPhase.PROPOSING
        if isinstance(exc, RemoteError):
            pool.release(conn)  # a refusal leaves the connection idle and usable
        else:
            conn.close()
        pool.release_slot(url)
        if isinstance(exc, ConnectionClosedError):
            if goodbye_first(conn) or not sent:
                # The server closed the idle connection without reading the call: the pool's other connections
                # to it are likely dead too (a restart); the call starts again on the full path.
                dropped = pool.discard_idle(url)
                logger.debug("pooled connection to %s was dead (%s); %d more dropped", url, exc, dropped)
                return await self._call(method, args, kwargs, timeout=timeout, deadline=deadline)
            lost = lost_after_sending_error(url, exc)
            lost.__cause__ = exc
            exc = lost
        return await self._attempts(
            method, args, kwargs, timeout=timeout, deadline=deadline, first=(url, attempt, exc), record=None
        )

    def maintain(self) -> None:
        """Ping idle connections of the running loop's pool that are due for a keepalive; close expired ones."""
        self.pool.maintain()

    # -- DIRAC-style proxying: await AsyncRPCClient(url).method(*args) ---------------------------------------------

    def __getattr__(self, name: str) -> Callable[..., Awaitable[DReturn]]:
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return functools.partial(self._rpc_call_with_stub, name)

    async def _rpc_call_with_stub(self, method: str, *args: Any, **kwargs: Any) -> DReturn:
        base = self._rpc_base
        timeout = base.timeout.total
        try:
            result: dict[str, Any] = dict(await self.call(method, args, kwargs, timeout=timeout))
        except (RPCFrameworkError, SErrorException) as exc:
            result = dict(error_from_exception(exc))
        result["rpcStub"] = self._rpc_stubs.stub(
            base.service, method, args, kwargs, options=base.options, timeout=timeout
        )
        return result  # type: ignore[return-value]

    # -- one call --------------------------------------------------------------------------------------------------

    async def _observed_call(
        self,
        observer: ClientObserver,
        method: str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        timeout: float | None,
    ) -> DReturn:
        call = self._rpc_observed.get(method)
        if call is None:
            call = ClientCall(self._rpc_endpoint.path, method)
            if len(self._rpc_observed) < _MAX_OBSERVED_METHODS:
                self._rpc_observed[method] = call
        record = ObservedCall(observer, call)
        token = record.token = observer.call_started(record.call)
        started = time.perf_counter()
        outcome = CallOutcome.ERROR
        try:
            result = await self._call(method, args, kwargs, timeout=timeout, record=record)
            outcome = CallOutcome.OK if result["OK"] else CallOutcome.S_ERROR
            return result
        except RemoteError:
            outcome = CallOutcome.REFUSED
            raise
        finally:
            observer.call_finished(record.call, token, outcome, record.url, time.perf_counter() - started)

    async def _call(
        self,
        method: str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        timeout: float | None,
        record: ObservedCall | None = None,
        deadline: Deadline | None = None,
        slot_held: bool = False,
    ) -> DReturn:
        if self._rpc_closed:
            raise ConfigurationError(f"{self!r} is closed")
        if deadline is None:
            deadline = Deadline.after(timeout) if timeout is not None else _NEVER
        url = self._rpc_single_url
        if url is None:
            return await self._attempts(
                method, args, kwargs, timeout=timeout, deadline=deadline, first=None, record=record
            )
        attempt = Attempt()
        try:
            result = await self._call_url(
                self._rpc_endpoint,
                method,
                args,
                kwargs,
                deadline=deadline,
                attempt=attempt,
                record=record,
                slot_held=slot_held,
            )
        except RPCFrameworkError as exc:
            first = (url, attempt, exc)
            return await self._attempts(
                method, args, kwargs, timeout=timeout, deadline=deadline, first=first, record=record
            )
        self._rpc_base.selector.succeeded(url)
        if record is not None:
            record.url = url
        return result

    async def _attempts(
        self,
        method: str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        timeout: float | None,
        deadline: Deadline,
        first: tuple[str, Attempt, RPCFrameworkError] | None,
        record: ObservedCall | None,
    ) -> DReturn:
        """The attempts of one call over the URL plan, as :meth:`RPCClient._attempts` (bans, budget, pauses)."""
        base = self._rpc_base
        retry = base.retry
        failures: list[tuple[str, RPCFrameworkError]] = []
        overloaded: dict[str, ServiceOverloaded] = {}
        given_up: set[str] = set()  # URLs another attempt cannot help in this call (no DNS name, a silent peer)
        pause = 0.0
        plan = (url for url in base.selector.attempt_order(retry.max_attempts) if url not in given_up)
        for url in plan:
            wait = pause_before(overloaded.get(url), retry, deadline, pause)
            if wait is None:  # the overloaded server's delay does not fit: its refusal is the answer
                report_failure(record, url, banned=False, retried=False)
                return overloaded[url].result
            if wait > 0:
                await self._rpc_sleep(wait)
            if first is not None:
                attempt, exc = first_attempt_outcome(first, url)
                first = None
            else:
                attempt = Attempt()
                outcome = await self._attempt(base.endpoints[url], (method, args, kwargs), deadline, attempt, record)
                if not isinstance(outcome, RPCFrameworkError):
                    base.selector.succeeded(url)
                    if record is not None:
                        record.url = url
                    return outcome
                exc = outcome
            failures.append((url, exc))
            self._end_on_timeout(url, method, exc, attempt, (timeout, deadline), record=record)
            if not retry.is_retryable(exc, attempt.phase):
                report_failure(record, url, banned=False, retried=False)
                return unretryable_outcome(exc)
            base.selector.ban(url, ban_seconds(exc))
            next_retry = retry_state_after(retry, exc, attempt.phase, url, given_up=given_up, urls=base.selector.urls)
            if next_retry is None:
                report_failure(record, url, banned=True, retried=False)
                return all_failed(base.service, failures)
            retry = next_retry
            report_failure(record, url, banned=True, retried=True)
            if isinstance(exc, ServiceOverloaded):
                overloaded[url] = exc
            log_retry(logger, method, url, exc)
            pause = retry.sleep_for(deadline)
        return all_failed(base.service, failures)

    async def _attempt(
        self,
        endpoint: Endpoint,
        call: tuple[str, tuple[Any, ...], Mapping[str, Any]],
        deadline: Deadline,
        attempt: Attempt,
        record: ObservedCall | None,
    ) -> DReturn | RPCFrameworkError:
        """One attempt on ``endpoint``, counted as outstanding there while it runs: the result, or the error."""
        method, args, kwargs = call
        selector = self._rpc_base.selector
        selector.started(endpoint.url)  # a host holding calls (a dead one) gets no new ones while others have fewer
        try:
            return await self._call_url(
                endpoint, method, args, kwargs, deadline=deadline, attempt=attempt, record=record
            )
        except RPCFrameworkError as exc:
            return exc
        finally:
            selector.finished(endpoint.url)

    def _end_on_timeout(
        self,
        url: str,
        method: str,
        exc: RPCFrameworkError,
        attempt: Attempt,
        limits: tuple[float | None, Deadline],
        *,
        record: ObservedCall | None,
    ) -> None:
        """As :meth:`RPCClient._end_on_timeout`: raise when ``exc`` ends the call as a timeout; a silent host is
        banned and its idle connections (of this loop) dropped."""
        timeout, deadline = limits
        if isinstance(exc, PeerSilent):
            self._rpc_base.selector.ban(url)
            dropped = self.pool.discard_idle(url)
            logger.warning("%s stopped answering; banned, %d idle connections to it dropped", url, dropped)
            if attempt.phase.arguments_sent:
                report_failure(record, url, banned=True, retried=False)
                raise silent_peer_error(url, method, exc) from exc
        if deadline.expired or (isinstance(exc, DeadlineExceeded) and attempt.phase.arguments_sent):
            report_failure(record, url, banned=False, retried=False)
            raise call_timeout_error(url, method, timeout, exc) from exc

    # -- one URL ---------------------------------------------------------------------------------------------------

    async def _call_url(
        self,
        endpoint: Endpoint,
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        deadline: Deadline,
        attempt: Attempt,
        record: ObservedCall | None,
        slot_held: bool = False,
    ) -> DReturn:
        """One attempt at ``endpoint``: a slot (unless the caller holds one already: ``slot_held``), a pooled or
        new connection, the exchange."""
        pool = self.pool
        if not slot_held:
            handed = await pool.take_slot(endpoint.url, deadline.remaining())
            if handed is not None:
                pool.release(handed)  # a ready connection came with the slot: acquire() finds it first
        try:
            return await self._exchange(
                endpoint, method, args, kwargs, deadline=deadline, attempt=attempt, record=record
            )
        finally:
            pool.release_slot(endpoint.url)

    async def _exchange(
        self,
        endpoint: Endpoint,
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        deadline: Deadline,
        attempt: Attempt,
        record: ObservedCall | None,
    ) -> DReturn:
        proposal = self._rpc_base.proposal(endpoint.path, method)
        trace = TraceContext.from_wire(record.trace_context()) if record is not None else None
        pool = self.pool
        for _ in range(_MAX_STALE_RETRIES):
            conn = pool.acquire(endpoint.url)
            attempt.reused = conn is not None
            attempt.phase = CallPhase.CONNECTING
            if conn is None:
                conn = await self._connect(endpoint, deadline)
            try:
                result = await execute(conn, proposal, args, kwargs, deadline=deadline, attempt=attempt, trace=trace)
            except RemoteError:
                pool.release(conn)  # a refusal leaves a reused connection idle and usable
                raise
            except ConnectionClosedError as exc:
                conn.close()
                check_dead_pooled_connection(exc, endpoint.url, attempt, pool.discard_idle, logger)
                continue  # a dead pooled connection, found before the ack: nothing ran, take another
            except BaseException:
                # Failed or cancelled mid-exchange: what is left on the connection belongs to this call only.
                conn.close()
                raise
            pool.release(conn)
            return result
        raise ConnectionClosedError(f"{endpoint.url}: pooled connections kept failing; giving up")

    async def _connect(self, endpoint: Endpoint, deadline: Deadline) -> AsyncConnection:
        timeout = self._rpc_base.timeout
        if deadline.expired:
            raise DeadlineExceeded(f"connecting to {endpoint.url}: the call's deadline passed")
        connect_timeout = timeout.connect_deadline(deadline).remaining()
        handshake_timeout = timeout.handshake_deadline(deadline).remaining()
        try:
            stream = await self._open(endpoint, connect_timeout, handshake_timeout)
        except ConnectTimeout:
            raise
        except DeadlineExceeded as exc:
            if endpoint.tls is None:
                raise
            raise handshake_timeout_error(endpoint, handshake_timeout) from exc
        except UnknownCAError as exc:
            raise UnknownCAError(f"{exc}; {self._rpc_base.ca_hint}", errno=exc.errno) from exc
        return AsyncConnection(endpoint.url, stream, self._rpc_base.offer, self._rpc_base.proposal_frames)

    async def _open(
        self, endpoint: Endpoint, connect_timeout: float | None, handshake_timeout: float | None
    ) -> AsyncStream:
        keepalive = self._rpc_base.timeout.keepalive
        if endpoint.tls is None:
            return await open_tcp_stream(endpoint.host, endpoint.port, connect_timeout, keepalive)
        backend = endpoint.backend
        if not isinstance(backend, PyOpenSSLBackend):
            raise ConfigurationError(f"{endpoint.url}: the asyncio client needs the pyopenssl back end")
        return await open_tls_stream(
            backend,
            endpoint.host,
            endpoint.port,
            tls=endpoint.tls,
            connect_timeout=connect_timeout,
            handshake_timeout=handshake_timeout,
            keepalive=keepalive,
        )
