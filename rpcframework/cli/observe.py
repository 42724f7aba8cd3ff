"""``rpcframework serve`` options for operators: ``--metrics-address`` and ``--log-format``.

Kept apart from :mod:`rpcframework.cli.serve` so that the optional libraries (prometheus-client,
python-json-logger) are imported only when asked for, and in the right order: with several processes the
multiprocess directory must be set before prometheus-client is first imported.
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rpcframework.errors import ConfigurationError
from rpcframework.observability.events import FanOutServerObserver

__all__ = [
    "Observability",
    "add_observability_options",
    "apply_log_format",
    "metrics_address",
    "start_observability",
]

#: The metrics endpoint listens here when ``--metrics-address`` names only a port.
DEFAULT_METRICS_HOST = "127.0.0.1"


def metrics_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` or ``PORT`` (loopback) as a ``(host, port)`` pair."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or DEFAULT_METRICS_HOST
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r} (e.g. 127.0.0.1:9100)") from None
    if not 0 <= number < 65536:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535: {text!r}")
    return host, number


def add_observability_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-address",
        type=metrics_address,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics and probes for orchestrators: /readyz (200 while "
        "taking calls, 503 while starting or draining; /healthz is the same) and /livez (200 while running); "
        f"a bare PORT listens on {DEFAULT_METRICS_HOST} (default: no metrics; needs the 'metrics' extra)",
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="record an OpenTelemetry span per call, continuing the caller's trace (needs the 'tracing' extra and "
        "an OpenTelemetry SDK configured in this process, e.g. by opentelemetry-instrument; default: off)",
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="log records as text lines or as one JSON object each, audit fields as keys (default: %(default)s)",
    )


@dataclass
class Observability:
    """What ``serve`` starts for operators: the reactor's observer, the endpoint, the child-exit hook."""

    observer: Any = None
    endpoint: Any = None
    child_exited: Callable[[int], None] | None = None

    def reactor_options(self) -> dict[str, Any]:
        return {} if self.observer is None else {"observer": self.observer}

    def group_options(self) -> dict[str, Any]:
        return {} if self.child_exited is None else {"child_exited": self.child_exited}

    def stop(self) -> None:
        if self.endpoint is not None:
            self.endpoint.stop()


def apply_log_format(args: argparse.Namespace) -> None:
    """Switch the process's log handlers to JSON when ``--log-format json`` asks (before anything is logged)."""
    if args.log_format == "json":
        try:
            from rpcframework.observability.logs import use_json_logs

            use_json_logs()
        except ImportError as exc:
            raise ConfigurationError(f"--log-format json: {exc}") from exc


def start_observability(args: argparse.Namespace, *, processes: int, serving: Callable[[], bool]) -> Observability:
    """Build the metrics and tracing observers and the metrics endpoint that ``args`` ask for.

    ``processes`` > 1 uses prometheus-client's multiprocess mode in a private temporary directory (removed at
    exit); ``serving`` answers ``/readyz`` and ``/healthz``.
    """
    tracing = _tracing() if args.tracing else None
    if args.metrics_address is None:
        return Observability(tracing)
    if processes > 1:
        directory = tempfile.mkdtemp(prefix="rpcframework-metrics-")
        atexit.register(shutil.rmtree, directory, True)
        try:
            from rpcframework.observability.multiproc import prepare_multiprocess
        except ImportError as exc:
            raise ConfigurationError(str(exc)) from exc
        prepare_multiprocess(directory)
    try:
        from rpcframework.observability.prometheus import MetricsEndpoint, PrometheusServerMetrics, mark_process_dead
    except ImportError as exc:
        raise ConfigurationError(f"--metrics-address: {exc}") from exc
    metrics = PrometheusServerMetrics()
    endpoint = MetricsEndpoint(args.metrics_address, metrics.registry, health=serving).start()
    observer: Any = metrics if tracing is None else FanOutServerObserver([metrics, tracing])
    return Observability(observer, endpoint, mark_process_dead if processes > 1 else None)


def _tracing() -> Any:
    try:
        from rpcframework.observability.tracing import OpenTelemetryServerTracing
    except ImportError as exc:
        raise ConfigurationError(f"--tracing: {exc}") from exc
    return OpenTelemetryServerTracing()
