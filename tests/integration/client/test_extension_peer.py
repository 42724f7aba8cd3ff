"""Our client against an extension-aware scripted server: reuse, kwargs, keepalive, dead pooled connections,
at-most-once, deadlines, verification failures, threads, and every back end."""

from __future__ import annotations

import errno
import threading
import time
from typing import Any

import pytest
from support.clock import age_pool
from support.waiting import wait_for
from support.wire import wait_closed

from rpcframework.client import Client
from rpcframework.client.pool import PoolSettings
from rpcframework.client.rpcclient import RPCClient
from rpcframework.protocol import DelegatedIdentity, HostCredentials
from rpcframework.returnvalues import S_ERROR
from rpcframework.security.delegation import delegate


@pytest.fixture(params=["pyopenssl", "m2crypto", "plain"])
def backend_peer(request: pytest.FixtureRequest, servers: Any, creds: Any) -> tuple[Any, dict[str, Any]]:
    """An extension-aware server and client options for each back end (client and server use the same one)."""
    name = request.param
    if name == "plain":
        return servers("ext", "plain"), {"config": creds.config()}
    return servers("ext", name, creds.server_tls()), creds.client_options(backend=name)


def test_reuse_one_connection_for_many_calls(backend_peer: tuple[Any, dict[str, Any]]) -> None:
    peer, options = backend_peer
    with Client(peer.url(), **options) as client:
        results = [client.add(i, 1)["Value"] for i in range(20)]
    assert results == list(range(1, 21))
    assert peer.connections == 1
    assert peer.executions == 20
    assert peer.proposals[0].extensions is not None  # the offer rides on the first proposal only
    assert all(p.extensions is None for p in peer.proposals[1:])


def test_keyword_arguments(backend_peer: tuple[Any, dict[str, Any]]) -> None:
    peer, options = backend_peer
    with Client(peer.url(), **options) as client:
        result = client.echo(1, flag=True, name="x")
    assert result["Value"] == {"args": [1], "kwargs": {"flag": True, "name": "x"}}
    assert result["rpcStub"][3] == {"flag": True, "name": "x"}


def test_refusal_is_returned_as_is_and_not_retried(servers: Any, creds: Any) -> None:
    peer = servers("ext", "pyopenssl", creds.server_tls())
    with Client(peer.url(), **creds.client_options()) as client:
        assert client.echo("w")["Value"] == "w"
        peer.behaviour.refuse = S_ERROR(1111, "Unauthorized query")
        result = client.echo("x")
        assert result["Errno"] == 1111
        assert result["Message"] == "Unauthorized query ( 1111 : Unauthorized query)"  # the server's, untouched
        peer.behaviour.refuse = None
        assert client.echo("y")["Value"] == "y"  # a refusal leaves a reused connection usable
    assert len(peer.proposals) == 3  # not retried
    assert peer.connections == 1


def test_keepalive_pings_idle_pooled_connections(servers: Any, creds: Any) -> None:
    peer = servers("ext", "pyopenssl", creds.server_tls())
    pool = PoolSettings(keepalive_lapse=0.1, maintenance_interval=0.0, idle_timeout=30.0)
    with RPCClient(peer.url(), pool=pool, **creds.client_options()) as rpc:
        assert rpc.echo("a")["Value"] == "a"
        age_pool(rpc.pool, 0.25)  # idle past keepalive_lapse
        rpc.maintain()  # what an application (or any later call) does: pings the idle connection
        wait_for(lambda: peer.pings >= 1)
        assert rpc.echo("b")["Value"] == "b"  # the pong is read and skipped by the next exchange
        assert rpc.pool.idle_count() == 1
    assert peer.connections == 1


def test_idle_connection_past_its_limit_is_closed(servers: Any, creds: Any) -> None:
    peer = servers("ext", "plain")
    pool = PoolSettings(keepalive_lapse=0, idle_timeout=0.1, maintenance_interval=0.0)
    with RPCClient(peer.url(), pool=pool, config=creds.config()) as rpc:
        assert rpc.echo("a")["OK"]
        age_pool(rpc.pool, 0.2)  # idle past idle_timeout
        assert rpc.echo("b")["OK"]
    assert peer.connections == 2


def test_dead_pooled_connection_is_replaced_transparently(backend_peer: tuple[Any, dict[str, Any]]) -> None:
    peer, options = backend_peer
    with Client(peer.url(), **options) as client:
        assert client.echo("first")["Value"] == "first"
        clients = peer.client_ports()
        peer.drop_all_connections()  # e.g. the server restarted while our connection was idle
        wait_closed(peer.port, clients)  # the close has reached the client before its next call
        assert client.echo("second")["Value"] == "second"
    assert peer.connections == 2
    assert peer.executions == 2


def test_server_dying_after_the_arguments_is_not_retried(servers: Any, creds: Any) -> None:
    peer = servers("ext", "pyopenssl", creds.server_tls())
    peer.behaviour.die_after_accept = True
    # Two URLs for the same server: a retry would have somewhere to go.
    urls = f"{peer.url()}, {peer.url(host='localhost')}"
    with Client(urls, **creds.client_options()) as client:
        result = client.echo("once")
    assert not result["OK"]
    assert result["Errno"] == errno.ECONNRESET
    assert peer.executions == 1  # at most once
    assert peer.connections == 1


def test_deadline_during_a_slow_reply(servers: Any, creds: Any) -> None:
    peer = servers("ext", "pyopenssl", creds.server_tls())
    with Client(peer.url(), **creds.client_options()) as client:
        started = time.monotonic()
        result = client.sleep(3, timeout=0.5)
        elapsed = time.monotonic() - started
    assert not result["OK"]
    assert result["Errno"] == errno.ETIMEDOUT
    assert peer.url() in result["Message"] and "0.5 s" in result["Message"]
    # A deadline test: the call waited for its 0.5 s deadline, not for the 3 s reply (generous: a shared machine).
    assert 0.4 <= elapsed < 2.5
    assert peer.executions == 1


def test_wrong_server_host_name_is_a_verification_error_not_retried(servers: Any, creds: Any) -> None:
    peer = servers("ext", "pyopenssl", creds.server_tls(creds.other_name_host))
    with Client(peer.url(), **creds.client_options()) as client:
        result = client.echo("x")
    assert not result["OK"]
    assert "the server certificate is not valid for '127.0.0.1'" in result["Message"]
    assert peer.connections == 1  # DISET's budget would allow 3 attempts: verification errors are final


def test_failover_bans_the_dead_url(servers: Any, creds: Any, closed_port: Any) -> None:
    good = [servers("ext", "pyopenssl", creds.server_tls()) for _ in range(2)]
    dead = f"dips://127.0.0.1:{closed_port()}/Bench/EchoPlain"
    with RPCClient(f"{dead}, {good[0].url()}, {good[1].url()}", **creds.client_options()) as rpc:
        for i in range(50):  # the order is random; sooner or later the dead URL comes first and gets banned
            assert rpc.echo(i)["Value"] == i
            if dead in rpc.base.selector.banned():
                break
        assert dead in rpc.base.selector.banned()
        assert rpc.echo("after")["OK"]
    assert sum(peer.executions for peer in good) == i + 2


def test_all_urls_down_names_every_url(closed_port: Any, creds: Any) -> None:
    urls = [f"dips://127.0.0.1:{closed_port()}/Bench/EchoPlain" for _ in range(3)]
    pauses: list[float] = []
    with RPCClient(", ".join(urls), sleep=pauses.append, **creds.client_options()) as rpc:
        result = rpc.echo("x")
    assert not result["OK"]
    assert result["Errno"] == errno.ECONNREFUSED
    for url in urls:
        assert url in result["Message"]
    assert len(pauses) == 4  # DISET's budget with 3 URLs: 6 attempts; the first retry does not pause


def test_threads_share_one_client(servers: Any, creds: Any) -> None:
    peer = servers("ext", "pyopenssl", creds.server_tls())
    client = Client(peer.url(), **creds.client_options())
    errors: list[str] = []

    def work(worker: int) -> None:
        for i in range(10):
            value = [worker, i]
            result = client.echo(value)
            if result.get("Value") != value:
                errors.append(f"{worker}/{i}: {result}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    client.close()
    assert errors == []
    assert peer.executions == 320
    # 32 concurrent calls need up to 32 connections; the pool keeps max_idle (8) of them between calls, so a few
    # more get opened as threads race, but far fewer than one per call.
    assert peer.connections <= 160, peer.connections


def test_identity_in_the_proposal(servers: Any, creds: Any) -> None:
    peer = servers("ext", "pyopenssl", creds.server_tls())
    dn = "/DC=org/DC=rpcframework/OU=Users/CN=alice"
    with Client(peer.url(), useCertificates=True, config=creds.config()) as host_client:
        assert host_client.echo("as host")["OK"]
        with delegate(dn, "dirac_user"):
            stub = host_client.echo("for alice")["rpcStub"]
        assert host_client.echo("as host again")["OK"]
    with Client(peer.url(), **creds.client_options(delegatedDN=dn)) as explicit:
        assert explicit.echo("explicit")["OK"]
    extras = [p.extra_credentials for p in peer.proposals]
    assert extras == [
        HostCredentials(),
        DelegatedIdentity(dn, "dirac_user"),
        HostCredentials(),
        DelegatedIdentity(dn, ""),
    ]
    assert stub[0][1]["timeout"] == 600.0
