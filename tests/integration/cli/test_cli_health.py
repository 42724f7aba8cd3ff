"""``rpcframework serve --metrics-address``: probes for orchestrators, without credentials.

``/readyz`` answers 200 while the instance takes calls and 503 from the moment SIGTERM starts the drain (so an
orchestrator stops sending it traffic) while ``/livez`` stays 200 until the process exits (so the drain is not
killed); the call in progress when SIGTERM came still completes.
"""

from __future__ import annotations

import signal
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from rpcframework import Client

pytestmark = pytest.mark.timeout(90)

HANDLER = """
import time
from rpcframework.server import RequestHandler, S_OK


class NapHandler(RequestHandler):
    types_nap = [float]
    auth_nap = ["all"]

    def export_nap(self, seconds):
        time.sleep(seconds)
        return S_OK("rested")
"""


def probe(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_readiness_turns_503_while_draining_and_liveness_stays_200(cli_env: Any, start_server: Any) -> None:
    (cli_env.root / "naphandler.py").write_text(HANDLER)
    server = start_server("naphandler:NapHandler", "--name", "Test/Nap", "--port", "0", "--drain-timeout", "20",
                          "--metrics-address", "127.0.0.1:0", services=2)  # fmt: skip
    service_url, metrics_line = server.urls
    base = metrics_line.split(" ", 1)[1].removesuffix("/metrics")
    assert probe(f"{base}/readyz") == 200
    assert probe(f"{base}/livez") == 200
    assert probe(f"{base}/healthz") == 200

    options = {"proxyLocation": cli_env.env["X509_USER_PROXY"], "caLocation": cli_env.env["X509_CERT_DIR"]}
    results: list[Any] = []
    napping = threading.Thread(target=lambda: results.append(Client(url=service_url, **options).nap(3.0)))
    napping.start()
    time.sleep(1.0)  # the call is running
    server.proc.send_signal(signal.SIGTERM)
    statuses = []
    for _ in range(40):  # bounded: the drain lasts about 2 s more
        statuses.append((probe(f"{base}/readyz"), probe(f"{base}/livez")))
        if statuses[-1] == (503, 200):
            break
        time.sleep(0.05)
    assert statuses[-1] == (503, 200), statuses
    napping.join(30)
    assert results and results[0]["OK"], results  # the call in flight finished during the drain
    assert server.proc.wait(30) == 0
