"""Configuration and credential reloads are counted (``rpcframework_reloads_total{what,result}``), over a real TLS
service whose configuration file and CRL are rewritten while it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.waiting import wait_for

pytest.importorskip("prometheus_client")

from rpcframework import S_OK, Client, RequestHandler, ServiceReactor
from rpcframework.config import ConfigStore
from rpcframework.observability.prometheus import PrometheusServerMetrics
from rpcframework.security.devca import DevCA
from rpcframework.server import Service
from rpcframework.transports import TLSConfig, get_backend

pytestmark = pytest.mark.timeout(60)


class Pinger(RequestHandler):
    types_hello: list[Any] = []
    auth_hello = ["all"]

    def export_hello(self) -> Any:
        return S_OK("hi")


def _reloads(metrics: PrometheusServerMetrics, what: str, result: str) -> float:
    return metrics.reloads.labels(what, result)._value.get()


def _cfg(interval: str) -> str:
    server = f"    Server\n    {{\n      CredentialsCheckInterval = {interval}\n    }}\n"
    return f"DIRAC\n{{\n  Security\n  {{\n{server}  }}\n}}\n"


def test_configuration_and_credential_reloads_are_counted(tmp_path: Path) -> None:
    ca = DevCA.init(tmp_path / "ca", key_type="ec")
    cfg = tmp_path / "service.cfg"
    cfg.write_text(_cfg("0.2"))
    store = ConfigStore([cfg], check_interval=3600, use_environment=False)
    metrics = PrometheusServerMetrics()
    host = ca.default_host()
    tls = TLSConfig(str(host.cert_file), str(host.key_file), ca_dir=str(ca.cert_dir))
    reactor = ServiceReactor(
        [Service("Test/Reloads", Pinger, config=store, port=0)], host="127.0.0.1", tls=tls, observer=metrics
    ).start()
    try:
        user = ca.default_user()
        url = reactor.url("Test/Reloads")
        client = Client(url=url, proxyLocation=str(user.proxy_file), caLocation=str(ca.cert_dir))
        assert client.hello()["OK"]
        client_tls = TLSConfig(str(user.proxy_file), ca_dir=str(ca.cert_dir))
        # configuration: a good rewrite, then a broken one (the service keeps the previous settings)
        cfg.write_text(_cfg("0.25"))
        assert store.refresh(force=True)
        cfg.write_text("DIRAC\n{\n  Security\n")  # unbalanced braces
        assert not store.refresh(force=True)
        assert _reloads(metrics, "configuration", "ok") == 1
        assert _reloads(metrics, "configuration", "failed") == 1
        # credentials: a CRL update rebuilds the server context at its next use after the check interval
        ca.revoke(ca.issue_user("someone-else").cert_file)
        port = reactor.ports["Test/Reloads"]

        def reloaded_after_a_connection() -> bool:
            # A new connection is what makes the server look at its files (kept-alive ones do not); it looks once
            # CredentialsCheckInterval (0.2 s, the cache's own monotonic clock) has passed since the last look.
            get_backend("pyopenssl").connect("localhost", port, tls=client_tls).close()
            return _reloads(metrics, "credentials", "ok") >= 1

        wait_for(reloaded_after_a_connection, timeout=20)
        assert _reloads(metrics, "credentials", "ok") == 1
    finally:
        reactor.stop(timeout=5)
