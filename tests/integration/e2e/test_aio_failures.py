"""The asyncio client when things go wrong, over real TLS: failover, every URL down, the deadline, a task cancelled
mid-call, a server that closes in the middle of its reply. At most once, always; one call's trouble never reaches
another call on the same client."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import time

import pytest
from support.e2e_kit import SERVICE, CountingHandler, dead_urls, urls_of
from support.servers import LoopbackServer
from support.waiting import wait_for

from rpcframework.client import Retry
from rpcframework.client.aio import AsyncClient, AsyncRPCClient
from rpcframework.protocol import NEED_DATA, ArgumentsReceived, Extensions, ProposalReceived, ServerConnection
from rpcframework.returnvalues import S_OK
from rpcframework.transports import get_backend

pytestmark = pytest.mark.timeout(60)


def ordered_client(creds, urls: list[str], **options) -> AsyncClient:
    """``Demo/Echo`` from a configuration: ``urls[0]`` is the primary, the others are failover URLs in order."""
    return creds.async_client(SERVICE, config=creds.ordered_config(urls), **options)


def test_a_dead_primary_fails_over_to_the_failover_urls_in_order(creds, cluster):
    reactors = cluster(2)
    dead = dead_urls(1)[0]

    async def main():
        async with ordered_client(creds, [dead, *urls_of(reactors)]) as client:
            first = await client.served_by()
            assert first["OK"] and first["Value"]["url"] == reactors[0].url(SERVICE), first
            rpc = client._rpc_targets[SERVICE]
            assert isinstance(rpc, AsyncRPCClient)
            assert dead in rpc.base.selector.banned()  # the dead URL is avoided by later calls
            reactors[0].stop(timeout=1)  # its pooled connection dies: nothing ran, so the call moves on
            second = await client.served_by()
            assert second["OK"] and second["Value"]["url"] == reactors[1].url(SERVICE), second

    asyncio.run(main())
    assert CountingHandler.executions["served_by"] == 2


def test_every_url_down_names_each_url(creds):
    urls = dead_urls(3)
    quick = Retry(backoff_factor=0.05, backoff_jitter=0.05)

    async def main():
        async with creds.async_client(urls, timeout=15, retries=quick) as client:
            return await client.echo("anyone?")

    result = asyncio.run(main())
    assert not result["OK"], result
    assert "every attempt failed (6 attempts)" in result["Message"]
    for url in urls:
        assert url in result["Message"], (url, result["Message"])


def test_the_deadline_covers_the_whole_call_and_a_timed_out_call_is_not_retried(creds, cluster):
    (reactor,) = cluster(max_threads=2)

    async def main():
        async with creds.async_client(reactor.url(SERVICE)) as client:
            started = time.monotonic()
            result = await client.slow(10, timeout=1)
            elapsed = time.monotonic() - started
            assert not result["OK"] and result["Errno"] == errno.ETIMEDOUT, result
            assert "deadline" in result["Message"] and "slow" in result["Message"]
            assert elapsed < 5, elapsed  # the call gave up at its deadline, not after the handler
            assert (await client.add(1, 1))["Value"] == 2  # a fresh connection serves the next call

    asyncio.run(main())
    assert CountingHandler.executions["slow"] == 1  # never retried after the arguments went out


def test_a_task_cancelled_mid_call_closes_only_its_own_connection(creds, cluster):
    (reactor,) = cluster(max_threads=4)
    url = reactor.url(SERVICE)

    async def main():
        async with creds.async_client(url) as client:
            rpc_ready = await client.add(0, 0)  # one pooled connection
            assert rpc_ready["OK"]
            rpc = client._rpc_targets[url]
            assert isinstance(rpc, AsyncRPCClient)
            slow = asyncio.create_task(client.slow(20))
            others = [asyncio.create_task(client.add(n, 1)) for n in range(20)]
            await asyncio.to_thread(wait_for, lambda: CountingHandler.executions["slow"])  # the handler runs
            assert CountingHandler.executions["slow"] == 1
            slow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await slow
            assert [(await task)["Value"] for task in others] == [n + 1 for n in range(20)]
            assert rpc.pool.busy_count(url) == 0  # the cancelled call gave its slot back
            idle = rpc.pool._idle.get(url, [])
            assert all(conn.machine.state.value == "IDLE" for conn in idle)  # the cancelled one was not kept
            assert (await client.add(2, 2))["Value"] == 4

    asyncio.run(main())
    # The server saw the caller leave: slow(20) stopped early and its worker is free again.
    assert CountingHandler.executions["slow"] == 1


class _HalfReply(LoopbackServer):
    """A server that accepts our extensions, reads a call, sends the first half of its result frame and closes."""

    def __init__(self, creds) -> None:
        super().__init__(threaded=False)
        self._backend = get_backend("pyopenssl")
        self._tls = creds.server_tls()
        self.calls = 0
        self.start()

    def url(self) -> str:
        return f"dips://localhost:{self.port}/{SERVICE}"

    def handle(self, sock: socket.socket) -> None:
        with contextlib.suppress(Exception):
            self._serve(sock)

    def _serve(self, sock: socket.socket) -> None:
        stream = self._backend.wrap_server(sock, self._tls, handshake_timeout=5)
        stream.settimeout(5)
        conn = ServerConnection(extensions=Extensions())
        try:
            for _ in range(100):
                event = conn.next_event()
                if event is NEED_DATA:
                    conn.receive_data(stream.recv(65536))
                elif isinstance(event, ProposalReceived):
                    stream.send_all(conn.accept())
                elif isinstance(event, ArgumentsReceived):
                    self.calls += 1
                    reply = conn.send_result(S_OK("x" * 4000))
                    stream.send_all(reply[: len(reply) // 2])
                    return
        finally:
            stream.close()


def test_a_server_that_closes_in_the_middle_of_its_reply(creds):
    server = _HalfReply(creds)

    async def main():
        async with creds.async_client(server.url()) as client:
            first = await client.echo("a")
            second = await client.echo("b")
            return first, second

    try:
        first, second = asyncio.run(main())
    finally:
        server.stop()
    for result in (first, second):
        assert not result["OK"], result
        assert "closed" in result["Message"], result
    assert server.calls == 2  # each call ran once: the arguments were sent, so nothing was retried
