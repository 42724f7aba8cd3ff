"""Prometheus metrics for servers and clients, and the ``/metrics`` endpoint (``prometheus-client``).

Names follow Prometheus conventions: an ``rpcframework_`` prefix, base units (seconds, bytes), ``_total`` for
counters. Labels are bounded (see :mod:`rpcframework.observability.events`). Each observer owns its own
``CollectorRegistry`` (no process-wide state): pass ``registry=`` to share one.

Several processes (``rpcframework serve --processes N``) use prometheus-client's multiprocess mode: the parent sets
``PROMETHEUS_MULTIPROC_DIR`` (see :func:`prepare_multiprocess`) *before* prometheus-client is imported, every
child writes its figures to files there, and the parent's endpoint sums them, so ``/metrics`` describes the whole
service whichever process answers. Gauges use the ``livesum`` mode (the sum over live processes).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any, Final

from rpcframework.errors import ConfigurationError
from rpcframework.observability.events import (
    CallOutcome,
    ClientCall,
    ClientObserver,
    HandshakeOutcome,
    ServerCall,
    ServerObserver,
)
from rpcframework.observability.multiproc import MULTIPROC_ENV, prepare_multiprocess

try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("Prometheus metrics need prometheus-client: pip install 'rpcframework[metrics]'") from exc

__all__ = [
    "MULTIPROC_ENV",
    "MetricsEndpoint",
    "PrometheusClientMetrics",
    "PrometheusServerMetrics",
    "mark_process_dead",
    "prepare_multiprocess",
]

logger = logging.getLogger(__name__)


#: Call durations: from 100 µs (a cached answer on a kept-alive connection) to a minute (a long transfer hook).
DURATION_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                           2.5, 5.0, 10.0, 30.0, 60.0)  # fmt: skip


def _errno_label(errno: int | None) -> str:
    return "" if errno is None else str(errno)


class PrometheusServerMetrics(ServerObserver):
    """Server metrics (see ``docs/operations.md`` for the list); ``registry`` defaults to a fresh one."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.calls = Counter(
            "rpcframework_calls", "Calls served, by outcome and DIRAC Errno", ["service", "method", "outcome", "errno"],
            registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "rpcframework_call_duration_seconds", "Time spent serving a call", ["service", "method"],
            buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.in_progress = Gauge(
            "rpcframework_calls_in_progress", "Calls running now", ["service", "method"],
            multiprocess_mode="livesum", registry=r,
        )  # fmt: skip
        self.queue = Gauge(
            "rpcframework_worker_queue_depth", "Calls waiting for a worker", ["service"],
            multiprocess_mode="livesum", registry=r,
        )  # fmt: skip
        self.overloads = Counter(
            "rpcframework_overload_refusals", "Calls refused because no worker was free", ["service"], registry=r
        )
        self.connections = Gauge(
            "rpcframework_open_connections", "Connections open after their handshake", multiprocess_mode="livesum",
            registry=r,
        )  # fmt: skip
        self.handshakes = Counter(
            "rpcframework_tls_handshakes", "TLS handshakes by result (full, resumed, failed) and failure reason",
            ["result", "reason"], registry=r,
        )  # fmt: skip
        self.bans = Gauge(
            "rpcframework_address_bans", "Temporary address bans in force", multiprocess_mode="livesum", registry=r
        )
        self.transfer_bytes = Counter(
            "rpcframework_transfer_bytes", "File data moved by transfers", ["service", "direction"], registry=r
        )
        self.transfers = Counter(
            "rpcframework_transfers", "File transfers by outcome", ["service", "direction", "outcome"], registry=r
        )
        self.reloads = Counter(
            "rpcframework_reloads", "Configuration and credential reloads", ["what", "result"], registry=r
        )
        # labels() costs a lock, a tuple and a dict lookup (1.6 µs); the per-call series' children are kept here.
        # labels() is idempotent, so two threads filling one key at once store the same child.
        self._call_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._outcome_children: dict[tuple[str, str, CallOutcome, int | None], Any] = {}

    def _children(self, service: str, method: str) -> tuple[Any, Any]:
        key = (service, method)
        children = self._call_children.get(key)
        if children is None:
            children = (self.duration.labels(service, method), self.in_progress.labels(service, method))
            self._call_children[key] = children
        return children

    def _count(self, service: str, method: str, outcome: CallOutcome, errno: int | None) -> None:
        key = (service, method, outcome, errno)
        child = self._outcome_children.get(key)
        if child is None:
            child = self.calls.labels(service, method, outcome.value, _errno_label(errno))
            self._outcome_children[key] = child
        child.inc()

    def call_started(self, call: ServerCall) -> object:
        self._children(call.service, call.method)[1].inc()
        return None

    def call_finished(
        self, call: ServerCall, token: object, outcome: CallOutcome, errno: int | None, seconds: float
    ) -> None:
        duration, in_progress = self._children(call.service, call.method)
        in_progress.dec()
        duration.observe(seconds)
        self._count(call.service, call.method, outcome, errno)

    def call_refused(self, service: str, action: str, method: str, errno: int | None) -> None:
        self._count(service, method, CallOutcome.REFUSED, errno)

    def overloaded(self, service: str) -> None:
        self.overloads.labels(service).inc()

    def queue_depth(self, service: str, depth: int) -> None:
        self.queue.labels(service).set(depth)

    def connection_opened(self) -> None:
        self.connections.inc()

    def connection_closed(self) -> None:
        self.connections.dec()

    def handshake(self, outcome: HandshakeOutcome, reason: str | None = None) -> None:
        self.handshakes.labels(outcome.value, reason or "").inc()

    def bans_in_force(self, count: int) -> None:
        self.bans.set(count)

    def transfer_finished(self, service: str, direction: str, outcome: CallOutcome, nbytes: int) -> None:
        self.transfers.labels(service, direction, outcome.value).inc()
        if nbytes > 0:
            self.transfer_bytes.labels(service, direction).inc(nbytes)

    def reloaded(self, what: str, ok: bool) -> None:
        self.reloads.labels(what, "ok" if ok else "failed").inc()


class PrometheusClientMetrics(ClientObserver):
    """Client metrics per service and URL: calls, latency, failed attempts (failovers and retries) and bans.

    URLs come from the client's configuration, so their number is bounded by what the operator lists.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.calls = Counter(
            "rpcframework_client_calls", "Calls made, by the URL that answered and outcome",
            ["service", "url", "outcome"], registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "rpcframework_client_call_duration_seconds", "Time a call took, retries included", ["service"],
            buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.failed_attempts = Counter(
            "rpcframework_client_failed_attempts", "Attempts that failed, by whether another attempt followed",
            ["service", "url", "retried"], registry=r,
        )  # fmt: skip
        self.bans = Counter(
            "rpcframework_client_url_bans", "Times a URL was banned after a failure", ["service", "url"], registry=r
        )
        # Children of the per-call series, as in PrometheusServerMetrics.
        self._call_children: dict[tuple[str, str | None, CallOutcome], tuple[Any, Any]] = {}

    def call_finished(
        self, call: ClientCall, token: object, outcome: CallOutcome, url: str | None, seconds: float
    ) -> None:
        key = (call.service, url, outcome)
        children = self._call_children.get(key)
        if children is None:
            children = (self.calls.labels(call.service, url or "", outcome.value), self.duration.labels(call.service))
            self._call_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def attempt_failed(self, call: ClientCall, url: str, retried: bool) -> None:
        self.failed_attempts.labels(call.service, url, "true" if retried else "false").inc()

    def banned(self, call: ClientCall, url: str) -> None:
        self.bans.labels(call.service, url).inc()


# -- multiprocess ---------------------------------------------------------------------------------------------------


def mark_process_dead(pid: int) -> None:
    """Forget the live gauges of a child that exited (its counters stay in the sums)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


# -- the endpoint ---------------------------------------------------------------------------------------------------


class MetricsEndpoint:
    """``/metrics`` over HTTP on ``host:port`` (port 0: a free one), for ``registry`` or, in multiprocess mode,
    for the sum of every process's files. ``health`` (optional) answers the probes of orchestrators, without
    credentials: ``/readyz`` (and its older name ``/healthz``) 200 while ``health()`` is true (serving, taking new
    calls), 503 otherwise (starting, draining); ``/livez`` 200 as long as the process answers."""

    def __init__(
        self,
        address: tuple[str, int],
        registry: CollectorRegistry | None = None,
        *,
        health: Callable[[], bool] | None = None,
    ) -> None:
        self.address = address
        self.registry = registry
        self.health = health
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise ConfigurationError("the metrics endpoint is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://HOST:PORT/metrics`` once started."""
        host = self.address[0]
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/metrics"

    def start(self) -> MetricsEndpoint:
        import socket
        from http.server import ThreadingHTTPServer

        class _Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET

        registry = self._collecting_registry()
        handler = _handler_class(registry, self.health)
        try:
            self._server = _Server(self.address, handler)
        except OSError as exc:
            host, port = self.address
            raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="rpc-metrics", daemon=True)
        self._thread.start()
        logger.info("metrics at %s", self.url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _collecting_registry(self) -> CollectorRegistry:
        directory = os.environ.get(MULTIPROC_ENV)
        if directory:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
            return registry
        if self.registry is None:
            raise ConfigurationError("a metrics endpoint needs a registry (or multiprocess mode)")
        return self.registry


def _handler_class(registry: CollectorRegistry, health: Callable[[], bool] | None) -> type[Any]:
    from http.server import BaseHTTPRequestHandler

    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    class _Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz") and health is not None:
                # Ready: serving and taking new calls; 503 before the services serve and while draining.
                ok = health()
                self._answer(200 if ok else 503, b"ok\n" if ok else b"not serving\n", "text/plain")
            elif path == "/livez" and health is not None:
                # Alive: the process answers, draining included (an orchestrator must not kill a drain).
                self._answer(200, b"ok\n", "text/plain")
            else:
                self._answer(404, b"not found\n", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("metrics endpoint: " + format, *args)

    return _Handler
