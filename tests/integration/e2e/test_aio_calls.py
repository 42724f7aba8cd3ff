"""The asyncio client against the real ``ServiceReactor`` over real TLS: calls, keyword arguments, built-ins, rpcStub,
connection reuse, many tasks on one client, per-call settings, and pools per event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest
from support.e2e_kit import SERVICE, CountingHandler

from rpcframework.client import MockTransport
from rpcframework.client.aio import AsyncClient, AsyncPoolSettings, AsyncRPCClient
from rpcframework.returnvalues import S_OK

pytestmark = pytest.mark.timeout(60)


class AsyncEchoClient(AsyncClient):
    serverURL = SERVICE

    async def add(self, a, b, *, timeout=None):
        return await self.executeRPC("add", a, b, timeout=timeout)


def test_calls_keywords_builtins_and_stub(creds, cluster):
    (reactor,) = cluster()
    url = reactor.url(SERVICE)

    async def main():
        async with creds.async_client(cls=AsyncEchoClient, urls=url) as client:
            me = await client.whoami()
            assert me["OK"], me
            assert me["Value"]["DN"] == creds.user.dn and me["Value"]["isProxy"] is True
            assert (await client.echo({"a": [1, 2.5, "x", None]}))["Value"] == {"a": [1, 2.5, "x", None]}
            added = await client.add(2, 3)
            assert added["Value"] == 5 and added["rpcStub"] == ((url, {"timeout": 10}), "add", (2, 3))
            greeting = await client.greet("Ada", greeting="Hi")
            assert greeting["Value"].startswith("Hi, Ada!")
            assert greeting["rpcStub"][3] == {"greeting": "Hi"}
            ping = await client.ping(timeout=5)
            assert ping["OK"] and ping["rpcStub"] == ((url, {"timeout": 5}), "ping", ())
            wrong = await client.greet("Ada", greeting=5)
            assert not wrong["OK"] and "Type mismatch in parameter 'greeting'" in wrong["Message"]
            assert (await client.with_options(timeout=5).greet(name="Bob"))["Value"].startswith("Hello, Bob!")
            assert (await client.executeRPCStub(added["rpcStub"]))["Value"] == 5

    asyncio.run(main())
    assert CountingHandler.executions == {"whoami": 1, "echo": 1, "add": 2, "greet": 2, "ping": 1}


def test_hundred_sequential_calls_reuse_one_connection(creds, cluster):
    (reactor,) = cluster()

    async def main():
        async with creds.async_client(cls=AsyncEchoClient, urls=[reactor.url(SERVICE)]) as client:
            for i in range(100):
                assert (await client.add(i, 1))["Value"] == i + 1

    asyncio.run(main())
    assert CountingHandler.executions["add"] == 100
    assert len(CountingHandler.peers) == 1, CountingHandler.peers


def test_many_tasks_share_one_client_within_the_connection_bound(creds, cluster):
    (reactor,) = cluster(max_threads=8)
    url = reactor.url(SERVICE)

    async def main():
        client = creds.async_client(cls=AsyncEchoClient, urls=url, pool=AsyncPoolSettings(max_connections=16))
        try:

            async def work(worker: int) -> list[object]:
                return [(await client.add(worker, i))["Value"] for i in range(10)]

            results = await asyncio.gather(*(work(n) for n in range(200)))
            rpc = client._rpc_targets[url]
            assert isinstance(rpc, AsyncRPCClient)
            assert rpc.pool.busy_count(url) == 0
            assert rpc.pool.idle_count(url) <= 16
            return results
        finally:
            await client.aclose()

    results = asyncio.run(main())
    assert results == [[n + i for i in range(10)] for n in range(200)]
    assert CountingHandler.executions["add"] == 2000
    assert len(CountingHandler.peers) <= 16, len(CountingHandler.peers)


def test_one_client_used_from_two_event_loops_in_two_threads(creds, cluster):
    (reactor,) = cluster()
    client = creds.async_client(cls=AsyncEchoClient, urls=reactor.url(SERVICE))
    results: dict[int, list[object]] = {}

    async def work(worker: int) -> None:
        answers = [await client.add(worker, i) for i in range(20)]
        results[worker] = [answer.get("Value", answer) for answer in answers]

    threads = [threading.Thread(target=asyncio.run, args=(work(n),), daemon=True) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    client.close()
    assert results == {n: [n + i for i in range(20)] for n in range(2)}
    assert len(CountingHandler.peers) == 2  # one connection per loop: a loop's connections are its own


def test_rpc_and_url_per_call_and_a_mock_transport(creds, cluster):
    (reactor,) = cluster()

    class Fixed:
        async def call(self, method, args, kwargs, *, timeout):
            return S_OK(("fixed", method, list(args)))

    async def main():
        client = AsyncClient(transport=MockTransport(lambda service, method, args, kwargs: S_OK(service)))
        assert (await client.anything(url="Other/Service"))["Value"] == "Other/Service"
        assert (await client.anything(rpc=Fixed()))["Value"] == ("fixed", "anything", [])
        async with creds.async_client(cls=AsyncEchoClient, urls=reactor.url(SERVICE)) as real:
            assert (await real.add(1, 2, timeout=5))["Value"] == 3
            result = await real.remote("echo")("x", url=reactor.url(SERVICE))
            assert result["Value"] == "x"

    asyncio.run(main())


def test_rpcclient_dirac_style_and_closed_clients(creds, cluster):
    (reactor,) = cluster()
    url = reactor.url(SERVICE)

    async def main():
        async with AsyncRPCClient(url, proxyLocation=str(creds.user.proxy_file), config=creds.config()) as rpc:
            result = await rpc.add(40, 2)
            assert result["OK"] and result["Value"] == 42
            assert result["rpcStub"] == ((url, {"timeout": 600.0}), "add", (40, 2))
            assert rpc.pool.idle_count(url) == 1
        closed = await rpc.add(1, 1)
        assert not closed["OK"] and "closed" in closed["Message"]
        client = creds.async_client(cls=AsyncEchoClient, urls=url)
        await client.aclose()
        after = await client.add(1, 1)
        assert not after["OK"] and "closed" in after["Message"]

    asyncio.run(main())
