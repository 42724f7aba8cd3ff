"""The asyncio client's cases: one task on a reused connection, and 1,000 calls in flight from one event loop (with
``grpc.aio`` doing the same as the comparison point).

An async caller owns an event loop and measures inside it (``measure(plan)``, used by the runner instead of
timing ``call()`` from outside): ``rpc_async_reused`` times each awaited call as ``drive`` does for the blocking
cases; the ``_1000`` cases run 1,000 tasks that each call in a loop, so 1,000 calls are always in flight, and count
the calls completed in each window of a shared clock (as the threaded ``_32`` cases do). Their ``extras`` report
the client process's memory: ``VmRSS`` after the run and ``VmHWM`` (its peak).

* ``rpc_async_reused``: ``AsyncClient`` -> ``ServiceReactor`` echo, dips://, one task; floor ``rpc_reused`` (the
  blocking ``Client`` doing the same).
* ``rpc_async_1000``: 1,000 tasks on one ``AsyncClient`` with its default pool (at most 100 connections in use,
  the other calls wait for one), against a ``ServiceReactor`` with 32 worker threads.
* ``grpc_aio_1000``: 1,000 tasks on one ``grpc.aio`` channel (HTTP/2 multiplexes them on one connection) against
  the gRPC server of ``grpc_cases`` with 32 workers.
* ``rpc_async_reused_uvloop``, ``rpc_async_1000_uvloop``: the first two on uvloop's event loop; listed only when
  uvloop is installed (it is not a dependency: ``AsyncClient`` runs on whatever loop the application has, and
  uvicorn, for one, takes uvloop when it is there).
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, ClassVar

from benchmarks.common import Case, raise_nofile_limit, wait_for_stop
from benchmarks.measure import Plan
from benchmarks.raw_tls_echo import MESSAGE

__all__ = ["AIO_CASES"]

TEXT = MESSAGE.decode()
IN_FLIGHT = 1000
_WORKERS = 32
_CALL_TIMEOUT = 60.0
_GRPC_METHOD = "/bench.Echo/Echo"

AsyncCall = Callable[[], Awaitable[None]]


def _memory_kib() -> dict[str, int]:
    values: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


async def _drive_one(call: AsyncCall, plan: Plan) -> dict[str, Any]:
    """``measure.drive`` inside the loop: warm-up, then each repetition timed call by call."""
    clock = time.perf_counter

    async def timed(duration: float, samples: list[float] | None) -> tuple[int, float]:
        start = now = clock()
        end = start + duration
        count = 0
        for count in range(1, plan.max_calls + 1):  # noqa: B007 - count is used after the loop
            before = now
            await call()
            now = clock()
            if samples is not None:
                samples.append(now - before)
            if now >= end:
                break
        return count, (count / (now - start) if now > start else 0.0)

    warmup_calls = (await timed(plan.warmup, None))[0] if plan.warmup > 0 else 0
    rates: list[float] = []
    samples: list[float] = []
    cpu_start = time.process_time()
    for _ in range(plan.repetitions):
        rates.append((await timed(plan.duration, samples))[1])
    cpu = time.process_time() - cpu_start
    return {"rates": rates, "warmup_calls": warmup_calls, "cpu_seconds": cpu, "samples": samples}


async def _drive_many(call: AsyncCall, tasks: int, plan: Plan) -> dict[str, Any]:
    """``measure.drive_concurrent`` with ``tasks`` tasks on one loop instead of threads."""
    clock = time.perf_counter
    duration = max(plan.duration, 1e-3)
    start = clock() + plan.warmup
    end = start + duration * plan.repetitions
    counts = [0] * plan.repetitions
    samples: list[float] = []

    async def worker() -> None:
        for _ in range(plan.max_calls):
            before = clock()
            await call()
            now = clock()
            if now >= start:
                index = int((now - start) / duration)
                if index < plan.repetitions:
                    counts[index] += 1
                    samples.append(now - before)
            if now >= end:
                return

    cpu_start = time.process_time()  # includes the warm-up: the windows are measured while every task runs
    measured_from = [0.0]

    async def mark() -> None:
        await asyncio.sleep(max(0.0, start - clock()))
        measured_from[0] = time.process_time()

    await asyncio.wait_for(asyncio.gather(mark(), *(worker() for _ in range(tasks))), end - clock() + 120.0)
    cpu = time.process_time() - (measured_from[0] or cpu_start)
    rates = [count / duration for count in counts]
    return {"rates": rates, "warmup_calls": 0, "cpu_seconds": cpu, "samples": samples}


class _LoopCaller:
    """A caller that owns an event loop: ``call()`` runs one call in it, ``measure(plan)`` the whole measurement."""

    tasks: ClassVar[int] = 1

    def __init__(self, *, uvloop: bool = False) -> None:
        if uvloop:
            import uvloop as _uvloop  # only the _uvloop cases, listed when it is installed

            self.loop: asyncio.AbstractEventLoop = _uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()

    async def acall(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass

    def call(self) -> None:
        self.loop.run_until_complete(self.acall())

    def measure(self, plan: Plan) -> dict[str, Any]:
        if self.tasks == 1:
            return self.loop.run_until_complete(_drive_one(self.acall, plan))
        return self.loop.run_until_complete(_drive_many(self.acall, self.tasks, plan))

    def extras(self) -> dict[str, Any]:
        memory = _memory_kib()
        return {
            "tasks": self.tasks,
            "client_rss_mib": memory.get("VmRSS", 0) / 1024,
            "client_peak_rss_mib": memory.get("VmHWM", 0) / 1024,
        }

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.aclose())
        finally:
            self.loop.close()


class _AsyncRPCEcho(_LoopCaller):
    """``await client.echo(TEXT)`` through the public ``AsyncClient``, checked."""

    def __init__(self, ca: Path, url: str, tasks: int = 1, *, uvloop: bool = False) -> None:
        super().__init__(uvloop=uvloop)
        from rpcframework.client.aio import AsyncClient
        from rpcframework.config import load_dict

        raise_nofile_limit(4096)
        self.tasks = tasks  # type: ignore[misc]
        config = load_dict({"DIRAC": {"Security": {"CALocation": str(ca / "certificates")}}}, "<bench>")
        self._client = AsyncClient(url, proxyLocation=str(ca / "proxy.pem"), config=config, timeout=_CALL_TIMEOUT)
        self._echo = self._client.echo

    async def acall(self) -> None:
        result = await self._echo(TEXT)
        if not result["OK"] or result["Value"] != TEXT:
            raise RuntimeError(f"echo failed: {result.get('Message')}")

    async def aclose(self) -> None:
        await self._client.aclose()


class _GrpcAioEcho(_LoopCaller):
    """One ``grpc.aio`` channel; ``acall()`` is one unary call with the 100-byte message, checked."""

    def __init__(self, ca: Path, address: str, tasks: int = IN_FLIGHT) -> None:
        super().__init__()
        self.tasks = tasks  # type: ignore[misc]
        self._channel: Any = self.loop.run_until_complete(self._open(ca, address))
        self._echo = self._channel.unary_unary(_GRPC_METHOD)

    async def _open(self, ca: Path, address: str) -> Any:
        import grpc

        credentials = grpc.ssl_channel_credentials(
            root_certificates=(ca / "ca" / "cacert.pem").read_bytes(),
            private_key=(ca / "hostkey.pem").read_bytes(),
            certificate_chain=(ca / "hostcert.pem").read_bytes(),
        )
        options = [("grpc.ssl_target_name_override", "localhost")]
        channel = grpc.aio.secure_channel(address, credentials, options=options)
        await asyncio.wait_for(channel.channel_ready(), _CALL_TIMEOUT)
        return channel

    async def acall(self) -> None:
        if await self._echo(MESSAGE, timeout=_CALL_TIMEOUT) != MESSAGE:
            raise RuntimeError("echo mismatch")

    async def aclose(self) -> None:
        await self._channel.close()


def _rpc_server_with_workers(ca: Path, control: Connection) -> None:
    """A ``ServiceReactor`` echo service (dips://) with 32 worker threads, for 1,000 calls in flight."""
    import logging

    from benchmarks.cases import _handler_class
    from rpcframework.server import Service, ServiceReactor
    from rpcframework.transports import TLSConfig

    logging.basicConfig(level=logging.WARNING)
    raise_nofile_limit(4096)
    tls = TLSConfig(
        cert_file=str(ca / "hostcert.pem"), key_file=str(ca / "hostkey.pem"), ca_dir=str(ca / "certificates")
    )
    service = Service("Bench/Echo", _handler_class(), port=0, protocol="dips", max_threads=_WORKERS)
    with ServiceReactor([service], host="127.0.0.1", tls=tls, backlog=1024) as running:
        control.send(running.url("Bench/Echo"))
        wait_for_stop(control)


def _grpc_server_with_workers(ca: Path, control: Connection) -> None:
    from benchmarks.grpc_cases import serve_grpc

    serve_grpc(ca, control, workers=_WORKERS)


def _rpc_reused_server(ca: Path, control: Connection) -> None:
    from benchmarks.cases import _rpc_server

    _rpc_server("dips")(ca, control)


AIO_CASES: tuple[Case, ...] = (
    Case(
        "rpc_async_reused",
        "AsyncClient -> ServiceReactor echo(100 chars), dips://, one task, reused connection",
        "rpc_reused",
        _rpc_reused_server,
        _AsyncRPCEcho,
    ),
    Case(
        "rpc_async_1000",
        f"{IN_FLIGHT:,} tasks calling at once on one AsyncClient (default pool: <= 100 connections in use), one event"
        f" loop; server: ServiceReactor with {_WORKERS} workers",
        "grpc_aio_1000",
        _rpc_server_with_workers,
        lambda ca, url: _AsyncRPCEcho(ca, url, tasks=IN_FLIGHT),
        setup_seconds=30.0,
    ),
    Case(
        "grpc_aio_1000",
        f"{IN_FLIGHT:,} tasks calling at once on one grpc.aio channel (mutual TLS), one event loop; server: gRPC with"
        f" {_WORKERS} workers",
        None,
        _grpc_server_with_workers,
        _GrpcAioEcho,
        setup_seconds=30.0,
    ),
)

if importlib.util.find_spec("uvloop") is not None:
    AIO_CASES += (
        Case(
            "rpc_async_reused_uvloop",
            "rpc_async_reused on uvloop's event loop",
            "rpc_reused",
            _rpc_reused_server,
            lambda ca, url: _AsyncRPCEcho(ca, url, uvloop=True),
        ),
        Case(
            "rpc_async_1000_uvloop",
            "rpc_async_1000 on uvloop's event loop",
            "grpc_aio_1000",
            _rpc_server_with_workers,
            lambda ca, url: _AsyncRPCEcho(ca, url, tasks=IN_FLIGHT, uvloop=True),
            setup_seconds=30.0,
        ),
    )
