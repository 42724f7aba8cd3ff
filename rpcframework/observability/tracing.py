"""OpenTelemetry tracing: a client span per call, a server span per call, one trace across services.

Needs ``opentelemetry-api`` (``pip install 'rpcframework[tracing]'``); spans go wherever the application's
OpenTelemetry SDK sends them, and without a configured SDK the API makes them no-ops. Attributes follow
OpenTelemetry's RPC conventions: ``rpc.system`` (``"rpcframework"``), ``rpc.service`` (``System/Component``),
``rpc.method``, the peer (``server.address``/``server.port`` on the client, ``network.peer.address``/
``network.peer.port`` on the server), and the outcome as ``rpcframework.outcome`` and ``rpcframework.errno``.

The client sends the W3C trace context of its span in the proposal (the negotiated ``trace`` extension, see
``docs/protocol.md``); the server continues that trace and makes its span current while the handler runs, so a
call the handler makes (portal -> service A -> service B) is a child of it: one trace end to end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from rpcframework.observability.events import (
    CallOutcome,
    ClientCall,
    ClientObserver,
    ServerCall,
    ServerObserver,
)

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("tracing needs opentelemetry-api: pip install 'rpcframework[tracing]'") from exc

__all__ = ["RPC_SYSTEM", "OpenTelemetryClientTracing", "OpenTelemetryServerTracing"]

RPC_SYSTEM: Final = "rpcframework"
_INSTRUMENTATION: Final = "rpcframework"


def _tracer(tracer_provider: Any) -> trace.Tracer:
    from importlib import metadata

    try:
        version = metadata.version("rpcframework")
    except metadata.PackageNotFoundError:  # run from a source tree
        version = None
    return trace.get_tracer(_INSTRUMENTATION, version, tracer_provider=tracer_provider)


def _finish(span: trace.Span, outcome: CallOutcome, errno: int | None) -> None:
    span.set_attribute("rpcframework.outcome", outcome.value)
    if errno is not None:
        span.set_attribute("rpcframework.errno", errno)
    if outcome is not CallOutcome.OK:
        span.set_status(trace.Status(trace.StatusCode.ERROR, outcome.value))
    span.end()


def _split(address: str | None) -> tuple[str, int] | None:
    if not address:
        return None
    host, _, port = address.rpartition(":")
    return (host.strip("[]"), int(port)) if port.isdigit() else None


class OpenTelemetryServerTracing(ServerObserver):
    """A ``SERVER`` span per call, continuing the client's trace; ``tracer_provider`` defaults to the global one."""

    def __init__(self, tracer_provider: Any = None) -> None:
        self.tracer = _tracer(tracer_provider)
        self.propagator = TraceContextTextMapPropagator()

    def call_started(self, call: ServerCall) -> object:
        parent = self.propagator.extract(dict(call.trace_context)) if call.trace_context else None
        attributes: dict[str, Any] = {
            "rpc.system": RPC_SYSTEM,
            "rpc.service": call.service,
            "rpc.method": call.method,
        }
        peer = _split(call.peer)
        if peer is not None:
            attributes["network.peer.address"], attributes["network.peer.port"] = peer
        span = self.tracer.start_span(
            f"{call.service}/{call.method}", context=parent, kind=trace.SpanKind.SERVER, attributes=attributes
        )
        # Current while the handler runs: the calls it makes become children of this span.
        token = otel_context.attach(trace.set_span_in_context(span))
        return span, token

    def call_finished(
        self, call: ServerCall, token: object, outcome: CallOutcome, errno: int | None, seconds: float
    ) -> None:
        if not isinstance(token, tuple):
            return
        span, attached = token
        otel_context.detach(attached)
        _finish(span, outcome, errno)


class OpenTelemetryClientTracing(ClientObserver):
    """A ``CLIENT`` span per call (retries included), child of the span current when the call is made."""

    def __init__(self, tracer_provider: Any = None) -> None:
        self.tracer = _tracer(tracer_provider)
        self.propagator = TraceContextTextMapPropagator()

    def call_started(self, call: ClientCall) -> object:
        attributes = {"rpc.system": RPC_SYSTEM, "rpc.service": call.service, "rpc.method": call.method}
        return self.tracer.start_span(
            f"{call.service}/{call.method}", kind=trace.SpanKind.CLIENT, attributes=attributes
        )

    def trace_context(self, token: object) -> Mapping[str, str] | None:
        if not isinstance(token, trace.Span) or not token.get_span_context().is_valid:
            return None  # no SDK configured: a non-recording span with nothing to propagate
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, context=trace.set_span_in_context(token))
        return carrier or None

    def call_finished(
        self, call: ClientCall, token: object, outcome: CallOutcome, url: str | None, seconds: float
    ) -> None:
        if not isinstance(token, trace.Span):
            return
        target = _server_of(url)
        if target is not None:
            token.set_attribute("server.address", target[0])
            token.set_attribute("server.port", target[1])
        _finish(token, outcome, None)


def _server_of(url: str | None) -> tuple[str, int] | None:
    """(host, port) of ``dips://host:port/System/Component``."""
    if not url or "://" not in url:
        return None
    authority = url.split("://", 1)[1].split("/", 1)[0]
    return _split(authority)
