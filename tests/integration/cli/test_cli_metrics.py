"""``rpcframework serve --metrics-address``: the endpoint of one process and the summed figures of two."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families

from rpcframework import Client

pytestmark = pytest.mark.timeout(90)


HANDLER = """
import os
from rpcframework.server import RequestHandler, S_OK


class PidHandler(RequestHandler):
    types_pid = []
    auth_pid = ["all"]

    def export_pid(self):
        return S_OK(os.getpid())
"""


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def pid_calls(found: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    labels = (("errno", ""), ("method", "pid"), ("outcome", "ok"), ("service", "Test/Pid"))
    return found.get(("rpcframework_calls_total", labels), 0.0)


@pytest.fixture
def pid_module(cli_env: Any) -> str:
    (cli_env.root / "pidhandler.py").write_text(HANDLER)
    return "pidhandler:PidHandler"


def _client_options(cli_env: Any) -> dict[str, Any]:
    return {"proxyLocation": cli_env.env["X509_USER_PROXY"], "caLocation": cli_env.env["X509_CERT_DIR"]}


def test_one_process_serves_metrics_and_health(cli_env: Any, start_server: Any, pid_module: str) -> None:
    server = start_server(pid_module, "--name", "Test/Pid", "--port", "0", "--metrics-address", "127.0.0.1:0",
                          services=2)  # fmt: skip
    service_url, metrics_line = server.urls
    assert metrics_line.startswith("metrics: http://127.0.0.1:")
    metrics_url = metrics_line.split(" ", 1)[1]
    client = Client(url=service_url, **_client_options(cli_env))
    for _ in range(4):
        assert client.pid()["OK"]
    assert pid_calls(scrape(metrics_url)) == 4
    with urllib.request.urlopen(metrics_url.replace("/metrics", "/healthz"), timeout=10) as answer:
        assert answer.status == 200


def test_two_processes_report_the_sum(cli_env: Any, start_server: Any, pid_module: str) -> None:
    server = start_server(pid_module, "--name", "Test/Pid", "--port", "0", "--processes", "2",
                          "--metrics-address", "127.0.0.1:0", services=2)  # fmt: skip
    service_url, metrics_line = server.urls
    metrics_url = metrics_line.split(" ", 1)[1]
    pids: set[int] = set()
    calls = 0
    # New connections until both children have answered (bounded): the sum must cover both of them.
    while len(pids) < 2 and calls < 400:
        with Client(url=service_url, **_client_options(cli_env)) as client:
            result = client.pid()
        assert result["OK"], json.dumps(result)
        pids.add(result["Value"])
        calls += 1
    assert len(pids) == 2, f"one child answered all {calls} calls"
    assert pid_calls(scrape(metrics_url)) == calls


def test_json_logs_carry_the_audit_fields_as_keys(cli_env: Any, start_server: Any, pid_module: str) -> None:
    server = start_server(
        pid_module, "--name", "Test/Pid", "--port", "0", "--log-format", "json", "--log-level", "INFO"
    )
    assert Client(url=server.url, **_client_options(cli_env)).pid()["OK"]
    _code, err = server.terminate()
    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert records, "no log record on stderr"
    assert all({"time", "level", "logger", "message"} <= set(record) for record in records)
    audit = [r for r in records if r["logger"] == "rpcframework.audit" and r.get("method") == "pid"]
    assert len(audit) == 1
    assert audit[0]["service"] == "Test/Pid"
    assert audit[0]["outcome"] == "ok"
    assert audit[0]["peer_dn"] == cli_env.ca.default_user().dn
    assert isinstance(audit[0]["duration_ms"], float)


def test_tracing_without_an_sdk_serves_normally(cli_env: Any, start_server: Any, pid_module: str) -> None:
    server = start_server(pid_module, "--name", "Test/Pid", "--port", "0", "--tracing")
    assert Client(url=server.url, **_client_options(cli_env)).pid()["OK"]
