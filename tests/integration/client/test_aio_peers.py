"""The asyncio client against the scripted peers: a DIRAC 9.1.22 service as captured (one call per connection,
DIRAC's bytes, keyword arguments refused before anything is sent) and our extension-aware server (reuse, keyword
arguments, keepalive pongs while idle, a reply nobody asked for, a dead pooled connection)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support.clock import age_pool
from support.waiting import wait_for
from support.wire import frame_value, wait_closed, wait_delivered

from rpcframework.client.aio import AsyncClient, AsyncPoolSettings, AsyncRPCClient
from rpcframework.client.base import client_version

pytestmark = pytest.mark.timeout(60)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.mark.parametrize("backend", ["plain", "pyopenssl"])
def test_dirac_peer_gets_diracs_bytes_and_one_connection_per_call(
    servers: Any, creds: Any, frames: dict[str, str], backend: str
) -> None:
    dirac = servers("dirac", backend, None if backend == "plain" else creds.server_tls())

    async def main() -> list[Any]:
        async with AsyncClient(dirac.url(), useCertificates=True, config=creds.config()) as client:
            return [(await client.echo("hello"))["Value"], (await client.add(2, 3))["Value"]]

    assert run(main()) == ["hello", 5]
    assert dirac.connections == 2  # no reuse with a DIRAC server: its ack carries no extensions
    assert dirac.handshake_errors == []
    for seen, name in zip(dirac.received, ("echo", "add"), strict=True):
        proposal, arguments = seen
        captured = frame_value(frames[f"{name}_proposal"].encode())
        sent = frame_value(proposal)
        assert sent[:3] == captured[:3]  # [[service, "None", "unknown"], ["RPC", name], "hosts"]
        assert sent[3] == client_version()
        assert sent[4] == {"rpcframework": {"version": 1, "features": ["kwargs", "pipeline", "reuse", "trace"]}}
        assert arguments == frames[f"{name}_arguments"].encode()  # byte for byte


def test_dirac_peer_keyword_arguments_are_refused_before_anything_is_sent(servers: Any, creds: Any) -> None:
    dirac = servers("dirac", "plain")

    async def main() -> Any:
        async with AsyncClient(dirac.url(), config=creds.config()) as client:
            return await client.echo(data="hello")

    result = run(main())
    assert not result["OK"] and "does not support keyword arguments" in result["Message"]
    assert dirac.connections == 1  # not retried
    assert len(dirac.received[0]) == 1  # the proposal only: no arguments frame
    assert dirac.executions == 0


def test_dirac_peer_tasks_wait_for_a_free_slot_and_each_call_gets_its_own_connection(servers: Any, creds: Any) -> None:
    dirac = servers("dirac", "pyopenssl", creds.server_tls())  # the scripted peer serves one call at a time

    async def main() -> list[Any]:
        options = creds.client_options()
        async with AsyncClient(dirac.url(), pool=AsyncPoolSettings(max_connections=1), **options) as client:
            results = await asyncio.gather(*(client.add(i, 1) for i in range(12)))
            return [result["Value"] for result in results]

    assert run(main()) == [i + 1 for i in range(12)]
    assert dirac.connections == 12 and dirac.executions == 12


def test_extension_peer_reuse_keywords_and_pongs_read_while_idle(servers: Any, creds: Any) -> None:
    peer = servers("ext", "pyopenssl", creds.server_tls())
    pool = AsyncPoolSettings(keepalive_lapse=0.05, maintenance_interval=0.01)

    async def main() -> list[Any]:
        async with AsyncRPCClient(peer.url(), pool=pool, **creds.client_options()) as rpc:
            first = await rpc.add(1, 2)
            age_pool(rpc.pool, 0.1)  # idle past keepalive_lapse
            rpc.maintain()  # a dka ping on the idle connection; the pong is read at the next use
            await asyncio.to_thread(wait_for, lambda: peer.pings >= 1)
            # The pong is in the client's socket.
            await asyncio.to_thread(wait_delivered, peer.port, peer.client_ports())
            second = await rpc.echo(1, flag=True)
            return [first["Value"], second["Value"], second["rpcStub"][3]]

    assert run(main()) == [3, {"args": [1], "kwargs": {"flag": True}}, {"flag": True}]
    assert peer.connections == 1 and peer.pings >= 1
    assert peer.proposals[0].extensions is not None
    assert all(proposal.extensions is None for proposal in peer.proposals[1:])


def test_extension_peer_dead_pooled_connection_is_replaced_transparently(servers: Any, creds: Any) -> None:
    peer = servers("ext", "pyopenssl", creds.server_tls())

    async def main() -> list[Any]:
        async with AsyncRPCClient(peer.url(), **creds.client_options()) as rpc:
            first = await rpc.add(1, 1)
            clients = peer.client_ports()
            peer.drop_all_connections()  # the server restarts: the pooled connection is dead
            wait_closed(peer.port, clients)  # the close has reached the client before its next call
            second = await rpc.add(2, 2)
            return [first["Value"], second["Value"]]

    assert run(main()) == [2, 4]
    assert peer.connections == 2 and peer.executions == 2


def test_extension_peer_dies_after_the_arguments_nothing_is_retried(servers: Any, creds: Any) -> None:
    peer = servers("ext", "pyopenssl", creds.server_tls())
    peer.behaviour.die_after_accept = True

    async def main() -> Any:
        async with AsyncRPCClient(peer.url(), **creds.client_options(timeout=10)) as rpc:
            return await rpc.add(1, 1)

    result = run(main())
    assert not result["OK"] and "closed" in result["Message"], result
    assert peer.executions == 1  # at most once
