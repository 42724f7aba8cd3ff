"""The ``pipeline`` extension end to end: our client and our reactor over TLS, one write per call each way."""

from __future__ import annotations

import collections
import math
import threading

from support.clock import age_pool
from support.e2e_kit import ALICE_DN, CountingHandler, urls_of
from support.wire import wait_readable

import rpcframework
from rpcframework.transports.pyopenssl import PyOpenSSLStream


def test_one_write_per_call_each_way_after_the_first_exchange(creds, cluster, monkeypatch):
    (reactor,) = cluster()
    writes: collections.Counter[int] = collections.Counter()
    original = PyOpenSSLStream.send_all

    def counting(self: PyOpenSSLStream, data: bytes) -> None:
        writes[id(self)] += 1
        original(self, data)

    with creds.rpc(urls_of([reactor])[0]) as rpc:
        assert rpc.call("echo", ("negotiate",), {}, timeout=10)["Value"] == "negotiate"
        monkeypatch.setattr(PyOpenSSLStream, "send_all", counting)
        for number in range(10):
            assert rpc.call("echo", (number,), {}, timeout=10)["Value"] == number
        assert rpc.call("echo", (), {"data": "kw"}, timeout=10)["Value"] == "kw"  # keyword arguments too
    # Two streams wrote (the client's and the server's side of one connection), once per call each.
    assert sorted(writes.values()) == [11, 11]
    assert len(CountingHandler.peers) == 1


def test_a_refused_pipelined_call_runs_nothing_and_the_connection_stays(creds, cluster):
    (reactor,) = cluster()
    with creds.client(urls_of([reactor])) as client:
        assert client.echo("first")["OK"]
        with rpcframework.delegate(ALICE_DN, "demo_users"):  # a plain user may not delegate: refused
            refused = client.served_by()
        assert not refused["OK"] and refused["Errno"] == 1111
        assert client.echo("after")["Value"] == "after"
    assert CountingHandler.executions["served_by"] == 0
    assert CountingHandler.executions["echo"] == 2
    assert len(CountingHandler.peers) == 1  # the refusal did not cost the connection


def test_the_delegated_identity_varies_per_call_on_one_connection(creds, cluster):
    (reactor,) = cluster()
    with creds.client(urls_of([reactor]), useCertificates=True, proxyLocation=None) as portal:
        for _ in range(3):
            assert portal.whoami()["Value"]["username"] == "localhost"
            with rpcframework.delegate(ALICE_DN, "demo_users"):
                assert portal.whoami()["Value"]["username"] == "alice"
    assert len(CountingHandler.peers) == 1


def test_32_threads_share_one_client(creds, cluster):
    (reactor,) = cluster()
    failures: list[object] = []
    with creds.client(urls_of([reactor])) as client:

        def work(worker: int) -> None:
            for call in range(15):
                value = f"{worker}-{call}"
                result = client.echo(value)
                if result.get("Value") != value:
                    failures.append(result)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert not failures
    assert CountingHandler.executions["echo"] == 32 * 15


def test_connections_idle_near_the_servers_idle_timeout_are_not_pipelined_nor_kept(creds, cluster):
    (reactor,) = cluster(idle_timeout=1.0)
    with creds.rpc(urls_of([reactor])[0]) as rpc:
        assert rpc.call("echo", (1,), {}, timeout=10)["OK"]
        age_pool(rpc.pool, 0.6)  # past half the idle timeout: the next call takes two round trips (safe to retry)
        assert rpc.call("echo", (2,), {}, timeout=10)["OK"]
        age_pool(rpc.pool, 1.3)  # past the server's idle timeout: the pool no longer hands the connection out
        assert rpc.call("echo", (3,), {}, timeout=10)["OK"]
    assert CountingHandler.executions["echo"] == 3
    assert len(CountingHandler.peers) == 2


def test_a_goodbye_crossing_a_pipelined_call_is_retried_on_a_new_connection(creds, cluster):
    (reactor,) = cluster(idle_timeout=0.5)
    with creds.rpc(urls_of([reactor])[0]) as rpc:
        assert rpc.call("echo", (1,), {}, timeout=10)["OK"]
        idle = [conn for conns in rpc.pool._idle.values() for conn in conns]
        for conn in idle:  # force the stale race: pipeline whatever the idle time
            conn.max_idle = conn.pipeline_idle = math.inf
        for conn in idle:
            wait_readable(conn.stream)  # the server closed it for idleness (0.5 s), with a goodbye
        assert rpc.call("echo", (2,), {}, timeout=10)["Value"] == 2
    assert CountingHandler.executions["echo"] == 2  # the call in flight was not run by the closing server
    assert len(CountingHandler.peers) == 2
