"""The asyncio client's steady state over real TLS: a call on a pooled pipelined connection is written at once and
its answer parsed as it arrives (the stream's event mode), whatever pieces the reply comes in; the call's deadline,
its cancellation and a server that closes in the middle of a reply keep the rules of the full path."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from support.e2e_kit import SERVICE, CountingHandler
from support.servers import LoopbackServer
from support.waiting import wait_for, wait_for_async

from rpcframework.client.aio import AsyncPoolSettings, AsyncRPCClient
from rpcframework.protocol import NEED_DATA, ArgumentsReceived, Extensions, ProposalReceived, ServerConnection
from rpcframework.returnvalues import S_OK
from rpcframework.transports import get_backend

pytestmark = pytest.mark.timeout(60)


class _Dribbler(LoopbackServer):
    """Our protocol with reuse and pipelining negotiated, answering ``echo`` with its first argument; the reply of
    the calls after the first goes out one byte per TLS record (a pause after each), or stops after ``cut`` bytes
    and closes the connection."""

    def __init__(self, creds, *, cut: int | None = None, pause: float = 0.001) -> None:
        super().__init__(threaded=False)
        self._backend = get_backend("pyopenssl")
        self._tls = creds.server_tls()
        self._cut = cut
        self._pause = pause
        self.calls = 0
        self.records = 0
        self.connections = 0
        self.closed = threading.Event()
        self.start()

    def url(self) -> str:
        return f"dips://localhost:{self.port}/{SERVICE}"

    def handle(self, sock: socket.socket) -> None:
        self.connections += 1
        with contextlib.suppress(Exception):
            self._serve(sock)
        self.closed.set()

    def _serve(self, sock: socket.socket) -> None:
        stream = self._backend.wrap_server(sock, self._tls, handshake_timeout=5)
        stream.settimeout(5)
        conn = ServerConnection(extensions=Extensions(idle_timeout=60.0))
        try:
            for _ in range(10_000):
                event = conn.next_event()
                if event is NEED_DATA:
                    data = stream.recv(65536)
                    if not data:
                        return
                    conn.receive_data(data)
                elif isinstance(event, ProposalReceived):
                    stream.send_all(conn.accept())
                elif isinstance(event, ArgumentsReceived):
                    self.calls += 1
                    reply = conn.send_result(S_OK(event.args[0]))
                    if self.calls == 1:
                        stream.send_all(reply)  # the first call negotiates: sent whole
                        continue
                    self._dribble(stream, reply)
                    if self._cut is not None:
                        return
        finally:
            stream.close()

    def _dribble(self, stream: Any, reply: bytes) -> None:
        size = len(reply) if self._cut is None else self._cut
        for index in range(size):
            stream.send_all(reply[index : index + 1])
            self.records += 1
            time.sleep(self._pause)  # fault injection: a reply that arrives one small TLS record at a time


@contextlib.contextmanager
def dribbler(creds, **options: Any):
    server = _Dribbler(creds, **options)
    try:
        yield server
    finally:
        server.stop()


def count_wakeups(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> Callable[[], int]:
    """Count the times ``task`` is scheduled to run (a future it awaits completes); returns the reader."""
    original = loop.call_soon
    count = [0]

    def call_soon(callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
        if getattr(callback, "__self__", None) is task:
            count[0] += 1
        return original(callback, *args, context=context)

    loop.call_soon = call_soon  # type: ignore[method-assign]
    return lambda: count[0]


def test_a_reply_split_in_one_byte_records_wakes_the_caller_once(creds):
    text = "z" * 200

    async def main() -> tuple[list[Any], list[int]]:
        results, wakeups = [], []
        async with creds.async_client(server.url()) as client:
            assert (await client.echo("negotiate"))["Value"] == "negotiate"
            loop = asyncio.get_running_loop()
            task = asyncio.current_task()
            assert task is not None
            wakeups_of = count_wakeups(loop, task)
            for _ in range(3):
                before = wakeups_of()
                results.append(await client.echo(text))
                wakeups.append(wakeups_of() - before)
        return results, wakeups

    with dribbler(creds) as server:
        results, wakeups = asyncio.run(main())
        assert server.connections == 1  # every call went on the pooled connection
    assert [result["Value"] for result in results] == [text] * 3, results
    assert server.records > 3 * 200  # each reply went out in hundreds of records
    # Parsed as it arrived: the caller is woken once per call, not once per piece.
    assert wakeups == [1, 1, 1], wakeups


def test_a_server_that_closes_in_the_middle_of_a_reply_on_a_pooled_connection(creds):
    async def main() -> tuple[Any, Any]:
        async with creds.async_client(server.url()) as client:
            assert (await client.echo("negotiate"))["OK"]
            broken = await client.echo("y" * 100)
            again = await client.echo("next")  # a new connection: its first call negotiates and is sent whole
            return broken, again

    with dribbler(creds, cut=40) as server:
        broken, again = asyncio.run(main())
        calls, connections = server.calls, server.connections
    assert not broken["OK"] and "closed" in broken["Message"], broken
    assert "not retried" in broken["Message"], broken  # the arguments had gone: at most once
    assert again["OK"] and again["Value"] == "next", again
    assert (calls, connections) == (3, 2)  # the broken call ran once and was not retried


def test_a_task_cancelled_while_its_reply_arrives_closes_that_connection_only(creds):
    async def main() -> tuple[Any, int]:
        async with creds.async_client(server.url()) as client:
            assert (await client.echo("negotiate"))["OK"]
            rpc = client._rpc_targets[server.url()]
            assert isinstance(rpc, AsyncRPCClient)
            call = asyncio.create_task(client.echo("w" * 2000))
            await asyncio.to_thread(wait_for, lambda: server.records > 10)  # the reply is on its way, byte by byte
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            busy = rpc.pool.busy_count(server.url())
            idle = rpc.pool.idle_count(server.url())
            return busy, idle

    with dribbler(creds, pause=0.002) as server:
        busy, idle = asyncio.run(main())
        assert server.closed.wait(10)  # the server saw the connection go
    assert (busy, idle) == (0, 0)  # the slot was given back, the half-read connection not kept


def test_the_deadline_of_a_call_on_a_pooled_connection(creds, cluster):
    (reactor,) = cluster(max_threads=2)
    url = reactor.url(SERVICE)

    async def main() -> None:
        async with creds.async_client(url) as client:
            assert (await client.add(1, 1))["Value"] == 2  # a pooled pipelined connection from now on
            rpc = client._rpc_targets[url]
            assert isinstance(rpc, AsyncRPCClient)
            started = time.monotonic()
            result = await client.slow(10, timeout=1)
            elapsed = time.monotonic() - started
            assert not result["OK"] and result["Errno"] == errno.ETIMEDOUT, result
            assert "deadline" in result["Message"] and "slow" in result["Message"], result
            assert elapsed < 5, elapsed  # a deadline test: it gave up at 1 s, not after the 10 s handler
            assert rpc.pool.busy_count(url) == 0
            assert (await client.add(2, 2))["Value"] == 4  # on another connection
            assert (await client.add(3, 3, timeout=None))["Value"] == 6  # no deadline: no timer either

    asyncio.run(main())
    assert CountingHandler.executions["slow"] == 1  # never retried after the arguments went out


def test_calls_in_flight_each_end_at_their_own_deadline(creds, cluster):
    (reactor,) = cluster(max_threads=4)
    url = reactor.url(SERVICE)

    async def main() -> list[tuple[str, Any]]:
        ended: list[tuple[str, Any]] = []

        async def call(name: str, timeout: float) -> None:
            ended.append((name, await client.slow(10, timeout=timeout)))

        async with creds.async_client(url) as client:
            await asyncio.gather(client.add(1, 1), client.add(2, 2), client.add(3, 3))  # pooled connections
            later = asyncio.create_task(call("later", 4))
            # Its call runs (so its deadline is the one the loop's timer is set for) before the sooner one starts.
            await asyncio.to_thread(wait_for, lambda: CountingHandler.executions["slow"] == 1)
            sooner = asyncio.create_task(call("sooner", 1))  # an earlier deadline: the timer moves
            await asyncio.gather(later, sooner)
            assert (await client.add(4, 4))["Value"] == 8
        return ended

    ended = asyncio.run(main())
    assert [name for name, _ in ended] == ["sooner", "later"], ended
    for _, result in ended:
        assert not result["OK"] and result["Errno"] == errno.ETIMEDOUT, result
    assert CountingHandler.executions["slow"] == 2


def test_the_client_on_uvloop(creds, cluster):
    """uvloop is no dependency, but applications run on it (uvicorn takes it when installed): its transports are
    not ``asyncio.Transport`` subclasses, and the client must not care. Skipped where uvloop is not installed."""
    uvloop = pytest.importorskip("uvloop")
    (reactor,) = cluster(max_threads=2)
    url = reactor.url(SERVICE)

    async def main() -> tuple[list[Any], Any, Any]:
        async with creds.async_client(url) as client:
            sums = [(await client.add(n, 1))["Value"] for n in range(20)]
            late = await client.slow(10, timeout=1)  # on a pooled connection: the loop's deadline timer
            after = await client.add(1, 1)
            return sums, late, after

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        sums, late, after = runner.run(main())
    assert sums == [n + 1 for n in range(20)]
    assert not late["OK"] and late["Errno"] == errno.ETIMEDOUT, late
    assert after["Value"] == 2
    assert CountingHandler.executions["slow"] == 1


def test_a_call_waiting_for_a_busy_connection_ends_at_its_deadline_and_the_queue_moves_on(creds, cluster):
    (reactor,) = cluster(max_threads=4)
    url = reactor.url(SERVICE)

    async def main() -> tuple[Any, list[Any], int]:
        async with creds.async_client(url, pool=AsyncPoolSettings(max_connections=1)) as client:
            assert (await client.add(0, 0))["OK"]  # the one connection, pooled
            rpc = client._rpc_targets[url]
            assert isinstance(rpc, AsyncRPCClient)
            busy = asyncio.create_task(client.slow(2))  # holds the only slot for 2 s
            await wait_for_async(lambda: CountingHandler.executions["slow"] == 1)  # it runs
            waiting = await client.add(1, 1, timeout=0.5)  # waits for the slot, never gets it
            queued = await asyncio.gather(*(client.add(n, 1) for n in range(20)))  # wait, then reuse it in turn
            await busy
            return waiting, queued, rpc.pool.busy_count(url)

    waiting, queued, busy = asyncio.run(main())
    assert not waiting["OK"] and waiting["Errno"] == errno.ETIMEDOUT, waiting
    assert "waiting for a connection" in waiting["Message"], waiting
    assert [result["Value"] for result in queued] == [n + 1 for n in range(20)]
    assert busy == 0
    assert CountingHandler.executions["add"] == 21  # the call that never got a connection never ran
    assert len(CountingHandler.peers) == 1  # one connection served everything


def test_a_waiting_call_cancelled_after_it_was_handed_the_connection_passes_it_on(creds, cluster):
    (reactor,) = cluster(max_threads=4)
    url = reactor.url(SERVICE)

    async def main() -> tuple[Any, list[int], int, int]:
        async with creds.async_client(url, pool=AsyncPoolSettings(max_connections=1)) as client:
            assert (await client.add(0, 0))["OK"]  # the one connection, pooled
            rpc = client._rpc_targets[url]
            assert isinstance(rpc, AsyncRPCClient)
            waiting: list[asyncio.Task[Any]] = []

            async def first() -> Any:
                result = await client.slow(0.5)
                # The call ended and handed its connection to the first waiting call, which has not run yet:
                # cancelled now, it must pass the connection on rather than lose it.
                waiting[0].cancel()
                return result

            holder = asyncio.create_task(first())
            await wait_for_async(lambda: CountingHandler.executions["slow"] == 1)  # it holds the connection
            waiting.extend(asyncio.create_task(client.add(n, 1)) for n in range(3))
            await wait_for_async(lambda: len(rpc.pool._waiting.get(url, ())) == 3)  # all three wait for it
            slow = await holder
            with pytest.raises(asyncio.CancelledError):
                await waiting[0]
            rest = [(await task)["Value"] for task in waiting[1:]]
            return slow, rest, rpc.pool.busy_count(url), rpc.pool.idle_count(url)

    slow, rest, busy, idle = asyncio.run(main())
    assert slow["OK"], slow
    assert rest == [2, 3]
    assert (busy, idle) == (0, 1)  # nothing leaked: the slot is free, the connection pooled
    assert len(CountingHandler.peers) == 1
    assert CountingHandler.executions["add"] == 3  # add(0, 0) and the two calls that were not cancelled


def test_closing_the_client_ends_the_calls_waiting_for_a_connection_at_once(creds, cluster):
    (reactor,) = cluster(max_threads=4)
    url = reactor.url(SERVICE)

    async def main() -> tuple[Any, list[Any], float]:
        client = creds.async_client(url, pool=AsyncPoolSettings(max_connections=1), timeout=30)
        assert (await client.add(0, 0))["OK"]
        rpc = client._rpc_targets[url]
        assert isinstance(rpc, AsyncRPCClient)
        holder = asyncio.create_task(client.slow(0.5))  # holds the only connection
        await wait_for_async(lambda: CountingHandler.executions["slow"] == 1)
        waiting = [asyncio.create_task(client.add(n, 1)) for n in range(3)]
        await wait_for_async(lambda: len(rpc.pool._waiting.get(url, ())) == 3)  # all three wait for it
        await client.aclose()
        started = time.monotonic()
        held = await holder  # a call in progress ends normally
        results = [await task for task in waiting]
        return held, results, time.monotonic() - started

    held, results, elapsed = asyncio.run(main())
    assert held["OK"], held
    for result in results:
        assert not result["OK"] and "closed" in result["Message"], result
    # Deadline test: each waiting call ended when its turn came, none waited for its 30 s deadline (generous bound).
    assert elapsed < 10, elapsed
    assert CountingHandler.executions["add"] == 1
