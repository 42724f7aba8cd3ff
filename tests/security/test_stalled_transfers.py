"""Stalled uploads cannot hold every worker (issue 12, item 3): transfers are capped per service and per identity,
and a transfer's reads give up after TransferIdleTimeout. Each upload is a real TransferClient whose source (a
pipe) stops delivering mid-file, as a slow or malicious client does. Over each server back end."""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from support.security_kit import SERVICE, ProbeHandler
from support.waiting import wait_for

from rpcframework.client import TransferClient
from rpcframework.returnvalues import EOVERLOAD, S_OK
from rpcframework.server import Service, ServiceReactor

pytestmark = pytest.mark.timeout(120)

BACKENDS = ["pyopenssl", pytest.param("m2crypto", marks=pytest.mark.m2crypto)]


class UploadHandler(ProbeHandler):
    auth_transfer_fromClient: ClassVar[list[str]] = ["authenticated"]

    def transfer_fromClient(self, fileId: str, token: str, fileSize: int, helper: Any) -> Any:
        received = helper.networkToDataSink(lambda chunk: None)
        return S_OK(received["Value"]) if received["OK"] else received


@pytest.fixture
def uploads(kit) -> Iterator[Any]:
    """``start(url, count, proxy)``: ``count`` uploads that send 64 KiB, then stall until the test ends."""
    writers: list[Any] = []
    threads: list[threading.Thread] = []
    results: list[Any] = []

    def start(url: str, count: int, proxy: Any) -> list[Any]:
        for index in range(count):
            read_end, write_end = os.pipe()
            writer = os.fdopen(write_end, "wb", buffering=0)
            writer.write(b"x" * 65536)
            writers.append(writer)
            source = os.fdopen(read_end, "rb", buffering=0)
            client = TransferClient(url, proxyLocation=str(proxy), config=kit.config(), timeout=60, retries=0)

            def upload(client: TransferClient = client, source: Any = source, name: str = f"f{index}") -> None:
                with source:
                    results.append(client.sendFile(source, name))

            thread = threading.Thread(target=upload, daemon=True)
            thread.start()
            threads.append(thread)
        return results

    yield start
    for writer in writers:
        with contextlib.suppress(OSError):
            writer.close()  # the source ends: every upload still running finishes
    for thread in threads:
        thread.join(30)


def _serve(kit, backend: str, overrides: dict[str, Any] | None = None) -> ServiceReactor:
    service = Service(SERVICE, UploadHandler, config=kit.config(overrides), port=0, max_threads=15)
    return ServiceReactor([service], host="127.0.0.1", tls=kit.server_tls(), backend=backend).start()


@pytest.mark.parametrize("backend", BACKENDS)
def test_twenty_stalled_uploads_leave_workers_for_everyone_else(kit, uploads, backend):
    """The issue's attack: an authenticated user starts 20 uploads that stop sending mid-file (MaxThreads is 15,
    DIRAC's default). Before, they held every worker and another user's ping waited out its deadline."""
    reactor = _serve(kit, backend)
    service = reactor.services[0]
    try:
        results = uploads(reactor.url(SERVICE), 20, kit.user.proxy_file)
        # MaxTransfers defaults to half the workers (8), MaxTransfersPerIdentity to half of that: 4 run and
        # stall, 16 are refused at once (retry later: nothing ran).
        assert wait_for(lambda: len(results) >= 16, timeout=20)
        assert all(result["Errno"] == EOVERLOAD and "RetryAfter" in result for result in results[:16]), results
        assert service.transfer_slots.running() == {kit.user.dn: 4}
        # A caller with nothing to do with the stalled uploads is served at once, within a 5 s deadline ...
        with kit.client(reactor.url(SERVICE), proxy=kit.alice.proxy_file, timeout=5) as alice:
            assert alice.who("ping")["OK"]
            # ... and so is its own upload: the stalled user holds only its share of the transfer slots.
            transfers = TransferClient(
                reactor.url(SERVICE), proxyLocation=str(kit.alice.proxy_file), config=kit.config(), timeout=5
            )
            assert transfers.sendFile(io.BytesIO(b"y" * 100_000), "alice")["Value"] == 100_000
        with kit.client(reactor.url(SERVICE), timeout=5) as user:  # the staller's own calls too
            assert user.who("me")["OK"]
    finally:
        reactor.stop(timeout=2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stalled_upload_gives_its_worker_back_after_the_transfer_idle_limit(kit, uploads, backend):
    reactor = _serve(kit, backend, {"DIRAC": {"Security": {"Server": {"TransferIdleTimeout": 1}}}})
    service = reactor.services[0]
    try:
        uploads(reactor.url(SERVICE), 1, kit.user.proxy_file)
        assert wait_for(lambda: service.transfer_slots.total == 1, timeout=10)
        # Nothing arrives for a second: the server ends the transfer and frees the worker and the slot (the
        # client learns it when its source delivers again, at the end of the test).
        assert wait_for(lambda: service.transfer_slots.total == 0 and reactor.guard.open_connections == 0, timeout=10)
    finally:
        reactor.stop(timeout=2)
