"""The steady state of a reused connection through the one parser of each side (the protocol machines; issue 20
removed the inline fast paths beside them): one write each way per call, and everything that breaks the routine
on the same connection: a refusal after a cached proposal, an identity change, a configuration reload between two
identical pipelined calls, keepalives, replies and requests split across reads, a goodbye, errors, keyword
arguments and large requests between plain calls."""

from __future__ import annotations

import math
import time

import pytest
from support.e2e_kit import ALICE_DN, CountingHandler, urls_of
from support.wire import wait_readable

import rpcframework
from rpcframework.config import load_dict
from rpcframework.protocol import ConnectionState
from rpcframework.transports.pyopenssl import PyOpenSSLStream

pytestmark = pytest.mark.timeout(60)


def test_a_steady_call_is_one_write_each_way(creds, cluster, monkeypatch):
    """After the first call (which negotiates), each call is one write from the client (proposal and arguments)
    and one from the server (ack and result), on the same connection."""
    (reactor,) = cluster()
    writes: list[int] = []
    original_send = PyOpenSSLStream.send_all

    def counted_send(self, data):
        writes.append(len(data))
        return original_send(self, data)

    with creds.rpc(urls_of([reactor])[0]) as client:
        assert client.call("echo", ("negotiate",), {}, timeout=10)["OK"]
        monkeypatch.setattr(PyOpenSSLStream, "send_all", counted_send)
        for number in range(20):
            assert client.call("echo", (number,), {}, timeout=10)["Value"] == number
        assert client.call("echo", (), {"data": "kw"}, timeout=10)["Value"] == "kw"
        monkeypatch.setattr(PyOpenSSLStream, "send_all", original_send)
        assert len(client.pool._idle[urls_of([reactor])[0]]) == 1
    assert len(writes) == 2 * 21
    assert CountingHandler.executions["echo"] == 22


def test_a_refusal_after_a_cached_proposal_and_an_identity_change(creds, cluster):
    (reactor,) = cluster()
    with creds.client(urls_of([reactor])) as client:
        for _ in range(3):
            assert client.echo("before")["OK"]
        with rpcframework.delegate(ALICE_DN, "demo_users"):  # a plain user may not delegate: refused
            refused = client.echo("delegated")
        assert not refused["OK"] and refused["Errno"] == 1111
        assert client.echo("after")["Value"] == "after"
    with creds.client(urls_of([reactor]), useCertificates=True, proxyLocation=None) as portal:
        for _ in range(3):
            assert portal.whoami()["Value"]["username"] == "localhost"
            with rpcframework.delegate(ALICE_DN, "demo_users"):
                assert portal.whoami()["Value"]["username"] == "alice"
    assert CountingHandler.executions["echo"] == 4  # the refused call ran nothing


def test_a_configuration_reload_between_two_identical_calls_refuses_the_second(creds, cluster):
    (reactor,) = cluster()
    (service,) = reactor.services
    with creds.rpc(urls_of([reactor])[0]) as client:
        for _ in range(3):  # the third one is served from the cached authorization
            assert client.call("echo", ("x",), {}, timeout=10)["OK"]
        denied = creds.config_dict(Demo={"Services": {"Echo": {"Authorization": {"echo": "SiteManager"}}}})
        service._config = load_dict(denied, "<reloaded>")  # what a ConfigStore reload does: a new snapshot
        refused = client.call("echo", ("x",), {}, timeout=10)
        assert not refused["OK"] and refused["Errno"] == 1111
        service._config = creds.config()
        assert client.call("echo", ("y",), {}, timeout=10)["Value"] == "y"
        assert len(client.pool._idle[urls_of([reactor])[0]]) == 1  # the same connection all along
    assert CountingHandler.executions["echo"] == 4


def test_a_keepalive_interleaved_with_pipelined_calls(creds, cluster):
    (reactor,) = cluster()
    url = urls_of([reactor])[0]
    with creds.rpc(url) as client:
        assert client.call("echo", (1,), {}, timeout=10)["OK"]
        assert client.call("echo", (2,), {}, timeout=10)["OK"]
        (conn,) = client.pool._idle[url]
        conn.send_keepalive(5.0)  # its pong arrives in front of the next call's answer
        wait_readable(conn.stream)
        assert client.call("echo", (3,), {}, timeout=10)["Value"] == 3
        assert client.call("echo", (4,), {}, timeout=10)["Value"] == 4
    assert len(CountingHandler.peers) == 1


def test_replies_and_requests_split_across_reads(creds, cluster, monkeypatch):
    (reactor,) = cluster()
    original_recv = PyOpenSSLStream.recv
    original_send = PyOpenSSLStream.send_all

    def small_reads(self, max_bytes):
        return original_recv(self, min(max_bytes, 7))

    def split_sends(self, data):
        view = memoryview(data)
        for start in range(0, len(view), 11):
            original_send(self, view[start : start + 11])
            time.sleep(0.0005)  # fault injection: a sender whose small writes land in separate reads

    with creds.rpc(urls_of([reactor])[0]) as client:
        assert client.call("echo", ("negotiate",), {}, timeout=10)["OK"]
        assert client.call("echo", ("warm",), {}, timeout=10)["OK"]
        monkeypatch.setattr(PyOpenSSLStream, "recv", small_reads)
        for number in range(3):
            assert client.call("echo", ("x" * 50, number), {}, timeout=10)["OK"] is False  # echo takes one argument
            assert client.call("echo", (number,), {}, timeout=10)["Value"] == number
        monkeypatch.setattr(PyOpenSSLStream, "recv", original_recv)
        monkeypatch.setattr(PyOpenSSLStream, "send_all", split_sends)
        for number in range(3):
            assert client.call("echo", (number,), {}, timeout=10)["Value"] == number
    assert CountingHandler.executions["echo"] == 8


def test_a_goodbye_in_place_of_the_answer_is_retried(creds, cluster):
    (reactor,) = cluster(idle_timeout=0.5)
    url = urls_of([reactor])[0]
    with creds.rpc(url) as client:
        for number in range(3):
            assert client.call("echo", (number,), {}, timeout=10)["OK"]
        (conn,) = client.pool._idle[url]
        conn.max_idle = conn.pipeline_idle = math.inf  # force the stale race: pipeline whatever the idle time
        wait_readable(conn.stream)  # the server closed it for idleness (0.5 s), with a goodbye
        assert client.call("echo", ("again",), {}, timeout=10)["Value"] == "again"
        assert conn.machine.state is ConnectionState.CLOSED
    assert CountingHandler.executions["echo"] == 4
    assert len(CountingHandler.peers) == 2


def test_errors_keywords_and_large_requests_between_steady_calls(creds, cluster):
    """On one kept connection: an error result (the client's envelope check, the server's sanitizing), keyword
    arguments, a request spanning many TLS records (the worker's read waits for its rest, with TLS still holding
    bytes) and plain calls between."""
    (reactor,) = cluster()
    url = urls_of([reactor])[0]
    big = "y" * 200_000
    with creds.rpc(url) as client:
        assert client.call("echo", ("negotiate",), {}, timeout=10)["OK"]
        assert client.call("echo", ("warm",), {}, timeout=10)["OK"]
        for number in range(3):
            refused = client.call("echo", ("a", number), {}, timeout=10)  # echo takes one argument
            assert refused["OK"] is False and set(refused) == {"OK", "Errno", "Message"}
            assert client.call("greet", ("bob",), {"greeting": "Hi"}, timeout=10)["Value"].startswith("Hi, bob!")
            assert client.call("echo", (big,), {}, timeout=10)["Value"] == big
            assert client.call("echo", (number,), {}, timeout=10)["Value"] == number
        assert len(client.pool._idle[url]) == 1  # the same connection all along
    assert CountingHandler.executions["echo"] == 8 and CountingHandler.executions["greet"] == 3
