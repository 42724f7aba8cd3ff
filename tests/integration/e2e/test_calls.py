"""Calls that work: every TLS back-end pairing and plain ``dip://``, built-ins, keyword arguments, connection reuse,
and one client shared by 32 threads."""

from __future__ import annotations

import threading

import pytest
from support.e2e_kit import SERVICE, CountingHandler, urls_of

from rpcframework import RPCClient

M2 = pytest.mark.m2crypto
PAIRINGS = [
    pytest.param("pyopenssl", "pyopenssl", id="pyopenssl-to-pyopenssl"),
    pytest.param("m2crypto", "pyopenssl", id="m2crypto-to-pyopenssl", marks=M2),
    pytest.param("pyopenssl", "m2crypto", id="pyopenssl-to-m2crypto", marks=M2),
    pytest.param("m2crypto", "m2crypto", id="m2crypto-to-m2crypto", marks=M2),
]


@pytest.mark.parametrize(("client_backend", "server_backend"), PAIRINGS)
def test_calls_over_each_tls_pairing(creds, cluster, client_backend, server_backend):
    (reactor,) = cluster(backend=server_backend)
    with creds.client(urls_of([reactor]), backend=client_backend) as client:
        me = client.whoami()
        assert me["OK"], me
        assert me["Value"]["username"] == "dev-user" and me["Value"]["group"] == "demo_users"
        assert me["Value"]["DN"] == creds.user.dn and me["Value"]["isProxy"] is True
        assert client.echo({"a": [1, 2.5, "x", None]})["Value"] == {"a": [1, 2.5, "x", None]}
        assert client.add(2, 3)["Value"] == 5
        assert client.greet("Ada", greeting="Hi")["Value"].startswith("Hi, Ada!")
    assert CountingHandler.executions == {"whoami": 1, "echo": 1, "add": 1, "greet": 1}


def test_plain_dip_is_anonymous_and_denied_where_a_rule_needs_an_identity(creds, cluster):
    (reactor,) = cluster(protocol="dip")
    url = reactor.url(SERVICE)
    assert url.startswith("dip://")
    with creds.client(url) as client:
        assert client.ping()["OK"]  # auth_ping = ["all"]
        me = client.whoami()["Value"]
        assert me["username"] == "anonymous" and not me.get("DN") and not me.get("properties")
        refused = client.echo("hi")
        assert not refused["OK"] and refused["Errno"] == 1111
        assert "anonymous" in refused["Message"]
    assert CountingHandler.executions["echo"] == 0


def test_ping_and_whoami_built_ins(creds, cluster):
    (reactor,) = cluster()
    with creds.client(urls_of([reactor])) as client:
        ping = client.ping(timeout=5)
        assert ping["OK"] and ping["Value"]["name"] == SERVICE
        assert {"version", "time", "service uptime", "cpu times"} <= set(ping["Value"])
        me = client.whoami()["Value"]
        assert me["properties"] == ["NormalUser"] and "x509Chain" not in me
        assert ping["rpcStub"] == ((reactor.url(SERVICE), {"timeout": 5}), "ping", ())


def test_keyword_arguments_reach_the_handler_and_are_checked(creds, cluster):
    (reactor,) = cluster()
    with creds.client(urls_of([reactor])) as client:
        assert client.greet("Ada", greeting="Bonjour")["Value"] == "Bonjour, Ada! (answered for dev-user)"
        assert client.greet(name="Bob")["Value"] == "Hello, Bob! (answered for dev-user)"
        wrong = client.greet("Ada", greeting=5)
        assert not wrong["OK"] and "Type mismatch in parameter 'greeting'" in wrong["Message"]
        unexpected = client.remote("greet")("Ada", tone="warm")  # past the typed wrapper
        assert not unexpected["OK"] and "unexpected keyword argument 'tone'" in unexpected["Message"]
        assert client.add(a=1, b=2)["Value"] == 3
    assert CountingHandler.executions["greet"] == 2  # the refused ones never ran


def test_hundred_calls_reuse_a_connection(creds, cluster):
    (reactor,) = cluster()
    with creds.client(urls_of([reactor])) as client:
        for i in range(100):
            assert client.add(i, 1)["Value"] == i + 1
    assert CountingHandler.executions["add"] == 100
    # Each connection has its own client port: the server saw one (two if a keepalive race replaced it).
    assert 1 <= len(CountingHandler.peers) <= 2, CountingHandler.peers


def test_thirty_two_threads_share_one_client(creds, cluster):
    (reactor,) = cluster(max_threads=8)
    results: dict[int, list[object]] = {}
    errors: list[BaseException] = []
    with creds.client(urls_of([reactor])) as client:

        def work(worker: int) -> None:
            try:
                results[worker] = [client.add(worker, i)["Value"] for i in range(10)]
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert not errors and not any(thread.is_alive() for thread in threads)
    assert results == {n: [n + i for i in range(10)] for n in range(32)}
    assert CountingHandler.executions["add"] == 320
    # Connections are pooled and reused: far fewer than one per call (the pool keeps up to 8 idle ones).
    assert len(CountingHandler.peers) <= 64, len(CountingHandler.peers)


def test_rpcclient_on_its_own_dirac_style(creds, cluster):
    (reactor,) = cluster()
    url = reactor.url(SERVICE)
    with RPCClient(url, proxyLocation=str(creds.user.proxy_file), config=creds.config(), timeout=10) as rpc:
        result = rpc.add(40, 2)
        assert result["OK"] and result["Value"] == 42
        assert result["rpcStub"] == ((url, {"timeout": 10}), "add", (40, 2))
        assert rpc.call("echo", ("raw",), {}, timeout=5) == {"OK": True, "Value": "raw"}
        assert rpc.pool.idle_count(url) == 1  # the connection went back to the pool for the next call
