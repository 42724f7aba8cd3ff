"""Client metrics (opt-in): calls and latency per answering URL, failed attempts and bans when a URL is dead."""

from __future__ import annotations

import socket
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rpcframework import S_OK, Client, RequestHandler
from rpcframework.observability.prometheus import PrometheusClientMetrics

pytestmark = pytest.mark.timeout(60)


class EchoHandler(RequestHandler):
    types_echo = [str]
    auth_echo = ["all"]

    def export_echo(self, text: str) -> Any:
        return S_OK(text)


def sample(metrics: PrometheusClientMetrics, name: str, **labels: str) -> float:
    text = generate_latest(metrics.registry).decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return 0.0


def dead_url(service: str) -> str:
    """A loopback port nobody listens on (bound, then closed): connecting there is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"dips://127.0.0.1:{port}/{service}"


def test_calls_failovers_and_bans_are_counted_per_url(
    rpcframework_serve: Any, rpcframework_client_options: dict[str, Any]
) -> None:
    live = rpcframework_serve(EchoHandler, "Test/Echo")
    dead = dead_url("Test/Echo")
    metrics = PrometheusClientMetrics()
    # URLs are shuffled per client: over 30 fresh clients the dead one comes first about half the time (never
    # with probability 2**-30), and each time it costs one failed attempt, one ban and a failover to the live one.
    for _ in range(30):
        client = Client(url=f"{dead},{live}", observer=metrics, **rpcframework_client_options)
        assert client.echo("a")["OK"]
    labels = {"service": "Test/Echo"}
    assert sample(metrics, "rpcframework_client_calls_total", **labels, url=live, outcome="ok") == 30
    assert sample(metrics, "rpcframework_client_call_duration_seconds_count", **labels) == 30
    failed = sample(metrics, "rpcframework_client_failed_attempts_total", **labels, url=dead, retried="true")
    assert 0 < failed < 30
    assert sample(metrics, "rpcframework_client_url_bans_total", **labels, url=dead) == failed
    assert sample(metrics, "rpcframework_client_calls_total", **labels, url=dead, outcome="ok") == 0


def test_without_an_observer_nothing_is_recorded(
    rpcframework_serve: Any, rpcframework_client_options: dict[str, Any]
) -> None:
    url = rpcframework_serve(EchoHandler, "Test/Echo")
    metrics = PrometheusClientMetrics()
    assert Client(url=url, **rpcframework_client_options).echo("x")["OK"]
    assert sample(metrics, "rpcframework_client_calls_total", service="Test/Echo", url=url, outcome="ok") == 0


def test_an_observer_that_is_not_one_is_refused(rpcframework_client_options: dict[str, Any]) -> None:
    with pytest.raises(Exception, match="observer must be a ClientObserver"):
        Client(url="dips://127.0.0.1:1/Test/Echo", observer=object(), **rpcframework_client_options)
