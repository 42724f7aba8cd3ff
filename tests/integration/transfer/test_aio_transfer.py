"""AsyncTransferClient against a real TLS service on 127.0.0.1: stream mode and DIRAC's chunk mode, atomic writes,
checksums, resume, progress, failover before data moves, and a download cancelled mid-way."""

from __future__ import annotations

import asyncio
import io
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from support.transfer_kit import REGISTRY, StoreHandler

from rpcframework import RequestHandler
from rpcframework.client.aio import AsyncTransferClient
from rpcframework.testing import ServeFactory
from rpcframework.transfer import partial_path

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def url(rpcframework_serve: ServeFactory, store: Path) -> str:
    handler: type[RequestHandler] = type("AsyncStoreHandler", (StoreHandler,), {"store": store})
    return rpcframework_serve(handler, "Data/Store", registry=REGISTRY)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "dirac-chunks"])
@pytest.mark.parametrize("size", [1, 3 * 1024 * 1024 + 17])
def test_send_receive_round_trip(url, store, tmp_path, rpcframework_client_options, stream, size) -> None:
    payload = os.urandom(size)
    (tmp_path / "source.bin").write_bytes(payload)
    progress: list[int] = []

    async def main() -> None:
        client = AsyncTransferClient(url, stream=stream, **rpcframework_client_options)
        sent = await client.sendFile(tmp_path / "source.bin", "data.bin", on_progress=lambda d, t: progress.append(d))
        assert sent == {"OK": True, "Value": size}, sent
        back = tmp_path / "back.bin"
        received = await client.receiveFile(back, "data.bin")
        assert received["OK"], received
        sink = io.BytesIO()
        assert (await client.receiveFile(sink, "data.bin"))["OK"]
        assert sink.getvalue() == payload

    asyncio.run(main())
    assert (store / "data.bin").read_bytes() == payload
    assert (tmp_path / "back.bin").read_bytes() == payload
    assert progress == sorted(progress) and progress[-1] == size


@pytest.mark.parametrize("checksum", ["crc32", "sha256"])
def test_resume_and_a_stale_partial_file(url, store, tmp_path, rpcframework_client_options, checksum) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 5)
    (store / "r.bin").write_bytes(payload)
    dest = tmp_path / "r.bin"
    seen: list[int] = []

    async def main() -> None:
        client = AsyncTransferClient(url, checksum=checksum, **rpcframework_client_options)
        partial_path(dest).write_bytes(payload[: 2 * 1024 * 1024])
        resumed = await client.receiveFile(dest, "r.bin", on_progress=lambda d, t: seen.append(d), resume=True)
        assert resumed["OK"], resumed
        assert dest.read_bytes() == payload and not partial_path(dest).exists()
        dest.unlink()
        partial_path(dest).write_bytes(b"\x00" * (2 * 1024 * 1024))  # not the file's first bytes
        stale = await client.receiveFile(dest, "r.bin", resume=True)
        assert stale["OK"] is False and "CRC" in stale["Message"], stale
        assert not dest.exists()  # atomic: nothing half-written at the destination

    asyncio.run(main())
    assert min(seen) == 2 * 1024 * 1024  # started at the granted offset


def test_refusals_leave_nothing_and_failover_before_data(url, store, tmp_path, rpcframework_client_options) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"dips://127.0.0.1:{sock.getsockname()[1]}/Data/Store"
    (tmp_path / "f").write_bytes(b"failover")

    async def main() -> None:
        client = AsyncTransferClient(f"{dead},{url}", retries=3, **rpcframework_client_options)
        for _ in range(3):
            assert (await client.sendFile(tmp_path / "f", "f"))["OK"]
        missing = await client.receiveFile(tmp_path / "never.bin", "absent.bin")
        assert missing["OK"] is False and "No such file" in missing["Message"]

    asyncio.run(main())
    assert (store / "f").read_bytes() == b"failover"
    assert not (tmp_path / "never.bin").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_cancelled_download_leaves_nothing(url, store, tmp_path, rpcframework_client_options) -> None:
    (store / "big.bin").write_bytes(os.urandom(32 * 1024 * 1024))
    dest = tmp_path / "big.bin"

    async def main() -> None:
        client = AsyncTransferClient(url, **rpcframework_client_options)
        started = asyncio.Event()
        task = asyncio.create_task(client.receiveFile(dest, "big.bin", on_progress=lambda d, t: started.set()))
        await asyncio.wait_for(started.wait(), 20)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not dest.exists()
        assert [p for p in tmp_path.iterdir() if p.name != "store"] == []  # no temporary file either
        again = await client.receiveFile(dest, "big.bin")  # the service keeps serving
        assert again["OK"], again

    asyncio.run(main())
    assert dest.read_bytes() == (store / "big.bin").read_bytes()


def test_the_event_loop_keeps_running_during_a_transfer(url, tmp_path, rpcframework_client_options) -> None:
    (tmp_path / "up.bin").write_bytes(os.urandom(16 * 1024 * 1024))
    ticks: list[int] = []

    async def ticker(stop: asyncio.Event) -> None:
        while not stop.is_set():
            ticks.append(1)
            await asyncio.sleep(0.001)  # the probe's period, not a wait: ticks show the loop was never blocked

    async def main() -> Any:
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(stop))
        client = AsyncTransferClient(url, **rpcframework_client_options)
        result = await client.sendFile(tmp_path / "up.bin", "up.bin")
        stop.set()
        await tick
        return result

    assert asyncio.run(main())["OK"]
    assert len(ticks) > 1  # other tasks ran while the file moved
