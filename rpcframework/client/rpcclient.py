"""``RPCClient``: the networking :class:`~rpcframework.client.interfaces.CallTarget` for one service.

One ``RPCClient`` per service per ``Client``, shared by every thread. The layers keep DISET's names, each holding
the next (DISET's ``InnerRPCClient`` inherits from ``BaseClient``; see :mod:`rpcframework.client.base` for why
ours holds one instead):

* ``RPCClient`` (here): the call. Its deadline, which URL each attempt goes to, whether a failed attempt is tried
  again, bans and pauses, the errors a failed call reports, observation, and DIRAC-style proxying with ``rpcStub``;
* :class:`~rpcframework.client.inner.InnerRPCClient`: one attempt at one URL (a pooled or new connection, the
  exchange); it holds the :class:`~rpcframework.client.pool.ConnectionPool` and
* :class:`~rpcframework.client.base.BaseClient`: the service's description (URLs and their selector, credentials,
  back ends, timeouts, retry budget, proposals), built once and shared by the calls.

One call::

    deadline = now + timeout                                      # the whole call
    for url in selector.attempt_order(retry.max_attempts):        # random primaries, failover last, bans
        return inner.call_url(endpoints[url], ...)                # pooled conn or connect; proposal ... result
    # on failure before the arguments were sent: ban the URL, Retry.increment, pause, next URL
    # on "overloaded" from our server (it ran nothing): the same, and before going back to that URL, its
    # suggested delay with jitter (Retry.overload_pause), within the deadline

Never retried: anything after the first byte of the arguments was written (at-most-once execution) except an
overload refusal, credential, verification and authorization failures, keyword arguments a DIRAC server cannot
take, an expired deadline.

DIRAC-style use also works: ``RPCClient("Framework/Notification").ping()`` returns the envelope with ``rpcStub``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from rpcframework.client.base import DEFAULT_OFFER, BaseClient, Endpoint
from rpcframework.client.failures import (
    all_failed,
    ban_seconds,
    call_timeout_error,
    first_attempt_outcome,
    log_retry,
    pause_before,
    report_failure,
    retry_state_after,
    silent_peer_error,
    unretryable_outcome,
)
from rpcframework.client.inner import Attempt, InnerRPCClient
from rpcframework.client.options import ClientOptions
from rpcframework.client.policy import Deadline
from rpcframework.client.pool import ConnectionPool, PoolSettings
from rpcframework.client.resolve import DEFAULT_RESOLVE_INTERVAL, Resolver
from rpcframework.client.stub import StubRecorder
from rpcframework.errors import (
    ConfigurationError,
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

__all__ = ["RPCClient"]

logger = logging.getLogger(__name__)

# "No deadline" is immutable: one shared object instead of one per call.
_NEVER: Final = Deadline.never()


class RPCClient:
    """Calls one service (``"System/Component"`` or full URL(s)); thread-safe. Builds the service's
    :class:`BaseClient`, its connection pool and the :class:`InnerRPCClient` that holds both and makes the attempts.

    ``options`` are the validated :class:`ClientOptions`, or pass them as keywords like DIRAC
    (``RPCClient(url, timeout=30)``). ``pool`` tunes connection reuse; ``backends`` shares back-end instances
    (and so TLS contexts) between the services of one ``Client``; ``offer`` is the extensions offer (``None``
    makes a pure DIRAC client). Construction errors (no URL, no proxy, expired proxy) raise at once.
    """

    def __init__(
        self,
        url: str,
        options: ClientOptions | None = None,
        *,
        pool: PoolSettings | None = None,
        backends: dict[str, Backend] | None = None,
        offer: Extensions | None = DEFAULT_OFFER,
        environ: Mapping[str, str] | None = None,
        resolver: Resolver | None = None,
        resolve_interval: float = DEFAULT_RESOLVE_INTERVAL,
        sleep: Callable[[float], None] = time.sleep,
        **kw_options: Any,
    ) -> None:
        if options is None:
            options = ClientOptions.build(kw_options)
        elif kw_options:
            raise ConfigurationError("pass either options= or keyword options, not both")
        self._rpc_base = BaseClient(
            url,
            options,
            backends=backends,
            offer=offer,
            environ=environ,
            resolver=resolver,
            resolve_interval=resolve_interval,
        )
        self._rpc_pool = ConnectionPool(pool)
        self._rpc_inner = InnerRPCClient(self._rpc_base, self._rpc_pool)
        self._rpc_sleep = sleep
        self._rpc_closed = False
        urls = self._rpc_base.selector.urls
        # The one-URL fast path of call(); the selector and endpoints are fixed for the client's life.
        self._rpc_single_url: str | None = urls[0] if len(urls) == 1 else None
        self._rpc_endpoint = self._rpc_base.endpoints[urls[0]]
        self._rpc_observer = options.observer
        self._rpc_observed: dict[str, ClientCall] = {}  # per method name, so a call builds no ClientCall
        self._rpc_stubs = StubRecorder()

    # -- public ----------------------------------------------------------------------------------------------------

    @property
    def base(self) -> BaseClient:
        """The service description (URLs and their selector, TLS settings, proposals), shared by every call."""
        return self._rpc_base

    @property
    def pool(self) -> ConnectionPool:
        """The idle connections kept for reuse (held by the :class:`InnerRPCClient` that makes the attempts)."""
        return self._rpc_pool

    def __repr__(self) -> str:
        return f"<RPCClient {self._rpc_base.service!r}>"

    def close(self) -> None:
        """Close idle connections; connections in use close when their call ends. Later calls fail."""
        self._rpc_closed = True
        self._rpc_pool.close()

    def __enter__(self) -> RPCClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def call(self, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], *, timeout: float | None) -> DReturn:
        """Perform one call within ``timeout`` seconds (``None``: no deadline); the envelope, or raise."""
        if self._rpc_observer is not None:
            return self._observed_call(self._rpc_observer, method, args, kwargs, timeout)
        return self._call(method, args, kwargs, timeout=timeout)

    def _observed_call(
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
            result = self._call(method, args, kwargs, timeout=timeout, record=record)
            outcome = CallOutcome.OK if result["OK"] else CallOutcome.S_ERROR
            return result
        except RemoteError:
            outcome = CallOutcome.REFUSED
            raise
        finally:
            observer.call_finished(record.call, token, outcome, record.url, time.perf_counter() - started)

    def _call(
        self,
        method: str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        timeout: float | None,
        record: ObservedCall | None = None,
    ) -> DReturn:
        if self._rpc_closed:
            raise ConfigurationError(f"{self!r} is closed")
        deadline = Deadline.after(timeout) if timeout is not None else _NEVER
        url = self._rpc_single_url
        if url is None:
            return self._attempts(method, args, kwargs, timeout=timeout, deadline=deadline, first=None, record=record)
        # A service with one URL: its plan always yields that URL first, so the first attempt needs no plan, no
        # retry state and no failure list; they are built only when it fails (_attempts replays the plan from there).
        attempt = Attempt()
        try:
            result = self._call_url(
                self._rpc_endpoint, method, args, kwargs, deadline=deadline, attempt=attempt, record=record
            )
        except RPCFrameworkError as exc:
            first = (url, attempt, exc)
            return self._attempts(method, args, kwargs, timeout=timeout, deadline=deadline, first=first, record=record)
        self._rpc_base.selector.succeeded(url)
        if record is not None:
            record.url = url
        return result

    def _attempts(
        self,
        method: str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        timeout: float | None,
        deadline: Deadline,
        first: tuple[str, Attempt, RPCFrameworkError] | None,
        record: ObservedCall | None = None,
    ) -> DReturn:
        """The attempts of one call over the URL plan, with bans, retry budget and pauses. ``first`` is an attempt
        already made (and failed) on the plan's first URL: it is accounted for instead of being run again."""
        base = self._rpc_base
        base.refresh_addresses()
        retry = base.retry
        failures: list[tuple[str, RPCFrameworkError]] = []
        overloaded: dict[str, ServiceOverloaded] = {}  # URLs that refused this call as overloaded (the latest)
        given_up: set[str] = set()  # URLs another attempt cannot help in this call (no DNS name, a silent peer)
        pause = 0.0
        # Lazy: a URL given up during this call is skipped from then on (it still counts as an attempt of the plan).
        plan = (url for url in base.selector.attempt_order(retry.max_attempts) if url not in given_up)
        for url in plan:
            wait = pause_before(overloaded.get(url), retry, deadline, pause)
            if wait is None:  # the overloaded server's delay does not fit: its refusal is the answer
                report_failure(record, url, banned=False, retried=False)
                return overloaded[url].result
            if wait > 0:
                self._rpc_sleep(wait)
            if first is not None:
                attempt, exc = first_attempt_outcome(first, url)
                first = None
            else:
                attempt = Attempt()
                outcome = self._attempt(base.endpoints[url], (method, args, kwargs), deadline, attempt, record)
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
                return self._all_failed(failures)
            retry = next_retry
            report_failure(record, url, banned=True, retried=True)
            if isinstance(exc, ServiceOverloaded):
                overloaded[url] = exc
            log_retry(logger, method, url, exc)
            pause = retry.sleep_for(deadline)
        return self._all_failed(failures)

    def _attempt(
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
            return self._call_url(endpoint, method, args, kwargs, deadline=deadline, attempt=attempt, record=record)
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
        """Raise when ``exc`` ends the call as a timeout: the deadline passed, or the call was sent and then timed
        out. A host that stopped answering is banned and its idle connections dropped either way."""
        timeout, deadline = limits
        if isinstance(exc, PeerSilent):
            self._rpc_base.selector.ban(url)
            dropped = self._rpc_pool.discard_idle(url)  # they lead to the same dead host
            logger.warning("%s stopped answering; banned, %d idle connections to it dropped", url, dropped)
            if attempt.phase.arguments_sent:
                report_failure(record, url, banned=True, retried=False)
                raise silent_peer_error(url, method, exc) from exc
        if deadline.expired or (isinstance(exc, DeadlineExceeded) and attempt.phase.arguments_sent):
            report_failure(record, url, banned=False, retried=False)
            raise call_timeout_error(url, method, timeout, exc) from exc

    def maintain(self) -> None:
        """Ping idle pooled connections due for a keepalive and close expired ones (also done lazily on use)."""
        self._rpc_pool.maintain()

    # -- DIRAC-style proxying: RPCClient(url).method(*args) --------------------------------------------------------

    def __getattr__(self, name: str) -> Callable[..., DReturn]:
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return functools.partial(self._rpc_call_with_stub, name)

    def _rpc_call_with_stub(self, method: str, *args: Any, **kwargs: Any) -> DReturn:
        """``RPCClient(url).method(*args)`` as in DIRAC: the envelope with ``rpcStub``, a failed call as ``S_ERROR``
        (:meth:`call` raises instead), within the client's default timeout."""
        base = self._rpc_base
        timeout = base.timeout.total
        try:
            result: dict[str, Any] = dict(self.call(method, args, kwargs, timeout=timeout))
        except (RPCFrameworkError, SErrorException) as exc:
            result = dict(error_from_exception(exc))
        result["rpcStub"] = self._rpc_stubs.stub(
            base.service, method, args, kwargs, options=base.options, timeout=timeout
        )
        return result  # type: ignore[return-value]

    # -- one URL ---------------------------------------------------------------------------------------------------

    def _call_url(
        self,
        endpoint: Endpoint,
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        deadline: Deadline,
        attempt: Attempt,
        record: ObservedCall | None = None,
    ) -> DReturn:
        """One attempt at ``endpoint`` through the :class:`InnerRPCClient`, with the observed call's trace context."""
        trace = TraceContext.from_wire(record.trace_context()) if record is not None else None
        return self._rpc_inner.call_url(endpoint, method, args, kwargs, deadline=deadline, attempt=attempt, trace=trace)

    def _all_failed(self, failures: list[tuple[str, RPCFrameworkError]]) -> DReturn:
        return all_failed(self._rpc_base.service, failures)


#: Method names whose ClientCall is kept (names built dynamically must not grow memory without bound).
_MAX_OBSERVED_METHODS: Final = 1024
