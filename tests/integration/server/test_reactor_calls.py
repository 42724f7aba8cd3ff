"""Calls through the reactor over real sockets: back ends, DIRAC capture replay, reuse, several services, authz."""

from __future__ import annotations

import re
import time

import pytest
from support.captures import parse_capture
from support.server_kit import REUSE, RawClient, connect, raw_socket, service
from support.wire import frame, read_until_closed

from rpcframework.codec import Encoding
from rpcframework.errors import ConfigurationError
from rpcframework.server import RequestHandler
from rpcframework.server.service import ServiceStartError

BACKENDS = ["plain", "pyopenssl", pytest.param("m2crypto", marks=pytest.mark.m2crypto)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_echo_and_add_over_each_server_backend(creds, serve, backend):
    protocol = "dip" if backend == "plain" else "dips"
    reactor = serve([service(creds, protocol)], backend="pyopenssl" if backend == "plain" else backend)
    assert re.fullmatch(rf"{protocol}://127\.0\.0\.1:\d+/Bench/Echo", reactor.url("Bench/Echo"))
    client = RawClient(connect(reactor, "Bench/Echo", creds))
    assert client.call("echo", "hello") == {"OK": True, "Value": "hello"}
    client.close()
    client = RawClient(connect(reactor, "Bench/Echo", creds), encoding=Encoding.DENCODE)
    assert client.call("add", 2, 3) == {"OK": True, "Value": 5}
    client.close()


def test_ipv6_loopback(creds, serve):
    reactor = serve([service(creds, "dip")], host="::1")
    assert reactor.url("Bench/Echo").startswith("dip://[::1]:")
    client = RawClient(connect(reactor, "Bench/Echo", creds))
    assert client.call("echo", "six") == {"OK": True, "Value": "six"}
    client.close()


def _capture_cases(name: str) -> list[tuple[str, bytes, bytes]]:
    """(title, client bytes, server bytes) of each RPC in a capture file, rebuilt from its DISET frames."""
    return [
        (exchange.name, b"".join(map(frame, exchange.frames["C>S"])), b"".join(map(frame, exchange.frames["S>C"])))
        for exchange in parse_capture(name)
        if exchange.name.startswith("RPC ")
    ]


def _metrics_and_tracing():
    """Both observers at once: a DIRAC peer must get the same bytes whether the server observes calls or not."""
    from opentelemetry.sdk.trace import TracerProvider

    from rpcframework.observability import FanOutServerObserver
    from rpcframework.observability.prometheus import PrometheusServerMetrics
    from rpcframework.observability.tracing import OpenTelemetryServerTracing

    return FanOutServerObserver([PrometheusServerMetrics(), OpenTelemetryServerTracing(TracerProvider())])


@pytest.mark.parametrize("observed", [False, True], ids=["plain", "metrics+tracing"])
@pytest.mark.parametrize("capture", ["dip-json.txt", "dip-dencode.txt"])
def test_dirac_capture_replay_byte_for_byte(creds, serve, capture, observed):
    observer = _metrics_and_tracing() if observed else None
    reactor = serve([service(creds, "dip", name="Bench/EchoPlain")], observer=observer)
    cases = _capture_cases(capture)
    assert [title for title, _, _ in cases] == [
        "RPC echo('hello')",
        "RPC add(2, 3)",
        "RPC echo(5) -> types_echo mismatch",
    ]
    for title, sent, expected in cases:
        sock = raw_socket(reactor, "Bench/EchoPlain")
        sock.sendall(sent)
        received, closed = read_until_closed(sock)
        sock.close()
        assert received == expected, title
        assert closed, f"{title}: the server must close after the result (DIRAC sequence)"


def test_many_calls_on_one_reused_connection(creds, serve):
    reactor = serve([service(creds)])
    client = RawClient(connect(reactor, "Bench/Echo", creds), offer=REUSE)
    for number in range(200):
        assert client.call("add", number, 1) == {"OK": True, "Value": number + 1}
    # A refusal keeps a reused connection open too.
    assert client.call("secret")["Errno"] == 1111
    assert client.call("echo", "after") == {"OK": True, "Value": "after"}
    assert client.call("echo", kwargs={"data": "keyword"}) == {"OK": True, "Value": "keyword"}
    client.close()


def test_reused_connection_measures_calls_per_second(creds, serve, record_property):
    reactor = serve([service(creds)])
    client = RawClient(connect(reactor, "Bench/Echo", creds), offer=REUSE)
    for _ in range(100):
        client.call("echo", "x" * 100)
    count = 1500
    started = time.perf_counter()
    for _ in range(count):
        client.call("echo", "x" * 100)
    rate = count / (time.perf_counter() - started)
    client.close()
    record_property("calls_per_second", round(rate))
    print(f"\nreused TLS connection, same process: {rate:.0f} calls/s")
    assert rate > 200


def test_keepalive_ping_is_answered_and_connection_returns_to_idle(creds, serve):
    reactor = serve([service(creds, "dip")])
    sock = raw_socket(reactor, "Bench/Echo")
    sock.sendall(b'dka55:{"OK": true, "Value": {"id": "probe1", "kaping": true}}')
    sock.settimeout(5)
    assert sock.recv(1000) == b'dka56:{"OK": true, "Value": {"id": "probe1", "kaping": false}}'
    sock.close()


def test_several_services_on_one_port_by_name(creds, serve):
    class OtherHandler(RequestHandler):
        auth_echo = ["all"]

        def export_echo(self, data):
            return {"OK": True, "Value": f"other:{data}"}

    first = service(creds, "dip")
    second = service(creds, "dip", name="Bench/Other", handler=OtherHandler)
    reactor = serve([first, second], shared_port=0)
    assert reactor.ports["Bench/Echo"] == reactor.ports["Bench/Other"]
    client = RawClient(connect(reactor, "Bench/Echo", creds), offer=REUSE)
    assert client.call("echo", "a") == {"OK": True, "Value": "a"}
    assert client.call("echo", "b", service="Bench/Other") == {"OK": True, "Value": "other:b"}
    assert client.call("echo", "c", service="Bench/Nope") == {
        "OK": False,
        "Errno": 0,
        "Message": "Bench/Nope is not up in this server",
    }
    client.close()


def test_one_port_perservice(creds, serve):
    reactor = serve([service(creds, "dip"), service(creds, "dips", name="Bench/Secure")])
    assert reactor.ports["Bench/Echo"] != reactor.ports["Bench/Secure"]
    assert reactor.url("Bench/Secure").startswith("dips://")
    for name in ("Bench/Echo", "Bench/Secure"):
        client = RawClient(connect(reactor, name, creds))
        assert client.call("echo", name, service=name) == {"OK": True, "Value": name}
        client.close()


def test_deny_by_default_and_configuration_overrides_handler_rule(creds, serve):
    refused = serve([service(creds)])
    client = RawClient(connect(refused, "Bench/Echo", creds), offer=REUSE)
    assert client.call("echo", "negotiate reuse first")["OK"]  # a refused first proposal negotiates nothing
    denied = client.call("secret")
    assert denied["Errno"] == 1111 and denied["Message"].startswith("Unauthorized query ( 1111 : ")
    assert "no authorization rule" in denied["Message"] and "CallStack" not in denied
    managed = client.call("managed")  # handler rule SiteManager; dev-user has NormalUser only
    assert managed["Errno"] == 1111 and "SiteManager" in managed["Message"]
    client.close()

    overridden = service(creds, services_cfg={"Echo": {"Authorization": {"managed": "authenticated"}}})
    reactor = serve([overridden])
    client = RawClient(connect(reactor, "Bench/Echo", creds))
    assert client.call("managed") == {"OK": True, "Value": "dev-user"}
    client.close()


def test_service_start_failure_is_clear(creds):
    class Broken(RequestHandler):
        @classmethod
        def initializeHandler(cls, serviceInfo):
            return {"OK": False, "Errno": 0, "Message": "database unreachable"}

    from rpcframework.server.reactor import ServiceReactor

    reactor = ServiceReactor([service(creds, "dip", handler=Broken)], host="127.0.0.1")
    with pytest.raises(ServiceStartError, match="database unreachable"):
        reactor.start()
    reactor.stop()
    with pytest.raises(ConfigurationError):
        ServiceReactor([], host="127.0.0.1")
