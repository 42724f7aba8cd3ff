"""Server metrics after a known mix of calls over real TLS, read back with prometheus-client's own parser."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support.waiting import wait_for

from rpcframework import S_ERROR, S_OK, Client, RequestHandler
from rpcframework.client.transfer import TransferClient
from rpcframework.observability.prometheus import PrometheusServerMetrics
from rpcframework.returnvalues import EOVERLOAD
from rpcframework.transfer.helper import FileHelper

pytestmark = pytest.mark.timeout(60)

SERVICE = "Test/Metered"


class MeteredHandler(RequestHandler):
    started = threading.Event()
    release = threading.Event()

    types_ok = [int]
    auth_ok = ["all"]

    def export_ok(self, value: int) -> Any:
        return S_OK(value)

    types_fail = []
    auth_fail = ["all"]

    def export_fail(self) -> Any:
        return S_ERROR(5, "failed on purpose")

    types_crash = []
    auth_crash = ["all"]

    def export_crash(self) -> Any:
        raise RuntimeError("a handler bug")

    types_hold = []
    auth_hold = ["all"]

    def export_hold(self) -> Any:
        type(self).started.set()
        type(self).release.wait(30)
        return S_OK("released")

    types_secret = []  # no rule: refused (deny by default)

    def export_secret(self) -> Any:
        return S_OK("never")

    auth_transfer_toClient = ["all"]

    def transfer_toClient(self, fileId: str, token: str, helper: FileHelper) -> Any:
        return helper.stringToNetwork(b"x" * 10_000)


def samples(metrics: PrometheusServerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition text, parsed by prometheus-client, keyed by (name, sorted labels)."""
    text = generate_latest(metrics.registry).decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(metrics: PrometheusServerMetrics, name: str, **labels: str) -> float:
    return samples(metrics).get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def metered(rpcframework_serve: Any) -> tuple[str, PrometheusServerMetrics]:
    MeteredHandler.started.clear()
    MeteredHandler.release.clear()
    metrics = PrometheusServerMetrics()
    url = rpcframework_serve(
        MeteredHandler,
        SERVICE,
        config={"MaxThreads": 1, "MaxWaitingPetitions": 1},
        observer=metrics,
    )
    return url, metrics


def test_known_mix_of_calls_gives_exact_counts(
    metered: tuple[str, PrometheusServerMetrics], rpcframework_client_options: dict[str, Any], tmp_path: Path
) -> None:
    url, metrics = metered
    client = Client(url=url, **rpcframework_client_options)
    for n in range(3):
        assert client.ok(n)["OK"]
    assert client.fail()["Errno"] == 5
    crashed = client.crash()
    assert not crashed["OK"] and "reference" in crashed["Message"]
    assert not client.secret()["OK"]
    assert not client.nosuch_method_from_a_peer()["OK"]

    transfer = TransferClient(url, **rpcframework_client_options)
    assert transfer.receiveFile(str(tmp_path / "got"), "f1")["OK"]

    def family(outcome: str, method: str, errno: str = "") -> float:
        return value(metrics, "rpcframework_calls_total", service=SERVICE, method=method, outcome=outcome, errno=errno)

    assert family("ok", "ok") == 3
    assert family("s_error", "fail", "5") == 1
    assert family("error", "crash", "0") == 1
    assert family("refused", "secret", "1111") == 1
    # A name the service does not export is refused at the proposal and never becomes a label value of its own.
    assert family("refused", "unknown", "0") == 1
    assert not any("nosuch" in str(key) for key in samples(metrics))
    assert value(metrics, "rpcframework_call_duration_seconds_count", service=SERVICE, method="ok") == 3
    assert value(metrics, "rpcframework_calls_in_progress", service=SERVICE, method="ok") == 0
    assert value(metrics, "rpcframework_transfers_total", service=SERVICE, direction="ToClient", outcome="ok") == 1
    assert value(metrics, "rpcframework_transfer_bytes_total", service=SERVICE, direction="ToClient") == 10_000
    assert value(metrics, "rpcframework_tls_handshakes_total", result="full", reason="") >= 1
    assert value(metrics, "rpcframework_open_connections") >= 1


def test_overload_is_counted_and_queue_depth_reported(
    metered: tuple[str, PrometheusServerMetrics], rpcframework_client_options: dict[str, Any]
) -> None:
    url, metrics = metered
    results: list[Any] = []
    # One call holds the only worker, a second waits in the one-place queue, a third finds no room.
    holder = threading.Thread(target=lambda: results.append(Client(url=url, **rpcframework_client_options).hold()))
    holder.start()
    assert MeteredHandler.started.wait(20)
    queued = threading.Thread(target=lambda: results.append(Client(url=url, **rpcframework_client_options).ok(1)))
    queued.start()
    wait_for(lambda: value(metrics, "rpcframework_worker_queue_depth", service=SERVICE) == 1)
    # retries=0: an overloaded server's refusal is otherwise retried within the deadline (docs/client.md)
    refused = Client(url=url, retries=0, **rpcframework_client_options).ok(2)
    assert refused["Errno"] == EOVERLOAD
    MeteredHandler.release.set()
    holder.join(30)
    queued.join(30)
    assert all(result["OK"] for result in results)
    assert value(metrics, "rpcframework_overload_refusals_total", service=SERVICE) == 1
    calls = value(metrics, "rpcframework_calls_total", service=SERVICE, method="ok", outcome="refused", errno="1601")
    assert calls == 1
    assert value(metrics, "rpcframework_calls_total", service=SERVICE, method="ok", outcome="ok", errno="") == 1
    assert value(metrics, "rpcframework_calls_total", service=SERVICE, method="hold", outcome="ok", errno="") == 1


def test_failed_handshake_is_counted_by_reason(
    metered: tuple[str, PrometheusServerMetrics], rpcframework_client_options: dict[str, Any]
) -> None:
    import socket

    url, metrics = metered
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")  # not TLS at all
        sock.recv(100)
    wait_for(lambda: value(metrics, "rpcframework_tls_handshakes_total", result="failed", reason="protocol") >= 1)
