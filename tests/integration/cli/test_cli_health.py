"""``rpcframework serve --metrics-address``: probes for orchestrators, without credentials.

``/readyz`` answers 200 while the instance takes calls and 503 from the moment SIGTERM starts the drain (so an
orchestrator stops sending it traffic) while ``/livez`` stays 200 until the process exits (so the drain is not
killed); the call in progress when SIGTERM came still completes.
"""

from __future__ import annotations

import signal
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from support.waiting import poll, wait_for

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
        open("nap-started", "w").close()  # lets the test wait until the call really runs (cwd is the test root)
        time.sleep(seconds)  # fault injection: a call still running while the server drains (bounded)
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
    started = cli_env.root / "nap-started"
    started.unlink(missing_ok=True)
    napping = threading.Thread(target=lambda: results.append(Client(url=service_url, **options).nap(3.0)))
    napping.start()
    wait_for(started.exists)  # the call is running
    server.proc.send_signal(signal.SIGTERM)
    # While the call drains (it naps 3 s), readiness turns 503 and liveness stays 200.
    statuses = poll(lambda: (probe(f"{base}/readyz"), probe(f"{base}/livez")), lambda seen: seen == (503, 200))
    assert statuses == (503, 200), statuses
    napping.join(30)
    assert results and results[0]["OK"], results  # the call in flight finished during the drain
    assert server.proc.wait(30) == 0
