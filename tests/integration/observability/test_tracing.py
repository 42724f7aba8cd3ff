"""OpenTelemetry tracing over real TLS: client -> service A -> service B is one trace, parents in order."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rpcframework import S_OK, Client, RequestHandler
from rpcframework.observability.tracing import OpenTelemetryClientTracing, OpenTelemetryServerTracing

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


class BHandler(RequestHandler):
    types_leaf = [str]
    auth_leaf = ["all"]

    def export_leaf(self, text: str) -> Any:
        return S_OK(text.upper())


def make_a_handler(b_url: str, client_options: dict[str, Any], provider: TracerProvider) -> type[RequestHandler]:
    class AHandler(RequestHandler):
        types_middle = [str]
        auth_middle = ["all"]

        def export_middle(self, text: str) -> Any:
            b = Client(url=b_url, observer=OpenTelemetryClientTracing(provider), **client_options)
            return b.leaf(text)

    return AHandler


def test_one_trace_across_client_service_a_and_service_b(
    rpcframework_serve: Any, rpcframework_client_options: dict[str, Any], spans: Any
) -> None:
    provider, exporter = spans
    server_tracing = OpenTelemetryServerTracing(provider)
    b_url = rpcframework_serve(BHandler, "Test/B", observer=server_tracing)
    a_handler = make_a_handler(b_url, rpcframework_client_options, provider)
    a_url = rpcframework_serve(a_handler, "Test/A", observer=server_tracing)

    portal = Client(url=a_url, observer=OpenTelemetryClientTracing(provider), **rpcframework_client_options)
    tracer = provider.get_tracer("portal")
    with tracer.start_as_current_span("page") as page:
        for _ in range(2):  # the second call reuses the kept-alive connection: the context rides there too
            result = portal.middle("hi")
            assert result["OK"] and result["Value"] == "HI"
    trace_id = page.get_span_context().trace_id

    finished = exporter.get_finished_spans()
    assert {s.context.trace_id for s in finished} == {trace_id}
    by_id = {s.context.span_id: s for s in finished}

    def chain(span: Any) -> list[str]:
        names = []
        while span is not None:
            names.append(f"{span.kind.name}:{span.name}")
            span = by_id.get(span.parent.span_id) if span.parent is not None else None
        return names

    leaves = [s for s in finished if s.kind is trace.SpanKind.SERVER and s.name == "Test/B/leaf"]
    assert len(leaves) == 2
    for leaf in leaves:
        assert chain(leaf) == [
            "SERVER:Test/B/leaf",
            "CLIENT:Test/B/leaf",
            "SERVER:Test/A/middle",
            "CLIENT:Test/A/middle",
            "INTERNAL:page",
        ]
        assert leaf.attributes["rpc.system"] == "rpcframework"
        assert leaf.attributes["rpc.service"] == "Test/B"
        assert leaf.attributes["rpc.method"] == "leaf"
        assert leaf.attributes["rpcframework.outcome"] == "ok"
    client_span = next(s for s in finished if s.kind is trace.SpanKind.CLIENT and s.name == "Test/A/middle")
    assert client_span.attributes["server.address"] == "127.0.0.1"


def test_untraced_calls_carry_no_context_and_server_spans_are_roots(
    rpcframework_serve: Any, rpcframework_client_options: dict[str, Any], spans: Any
) -> None:
    provider, exporter = spans
    url = rpcframework_serve(BHandler, "Test/B", observer=OpenTelemetryServerTracing(provider))
    assert Client(url=url, **rpcframework_client_options).leaf("x")["OK"]
    (server_span,) = exporter.get_finished_spans()
    assert server_span.parent is None
    assert server_span.kind is trace.SpanKind.SERVER


def test_a_refused_call_is_an_error_span(
    rpcframework_serve: Any, rpcframework_client_options: dict[str, Any], spans: Any
) -> None:
    provider, exporter = spans
    url = rpcframework_serve(BHandler, "Test/B", observer=OpenTelemetryServerTracing(provider))
    client = Client(url=url, observer=OpenTelemetryClientTracing(provider), **rpcframework_client_options)
    assert not client.leaf(5)["OK"]  # wrong argument type: S_ERROR from the server
    finished = {s.kind: s for s in exporter.get_finished_spans()}
    assert finished[trace.SpanKind.SERVER].attributes["rpcframework.outcome"] == "s_error"
    assert finished[trace.SpanKind.CLIENT].status.status_code is trace.StatusCode.ERROR
