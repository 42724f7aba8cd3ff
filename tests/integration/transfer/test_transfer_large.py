"""256 MiB up and down through ``TransferClient`` and a real TLS service, on the pyOpenSSL and M2Crypto back ends
(client and server on the same one), SHA-256 compared on both ends. Marked slow, but they run in ``./test``."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.transfer_kit import REGISTRY, StoreHandler, leftovers, sha256

from rpcframework import RequestHandler, TransferClient
from rpcframework.testing import ServeFactory
from rpcframework.transfer import FileHelper

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

MIB = 1024 * 1024
SIZE = 256 * MIB


class BigStoreHandler(StoreHandler):
    def transfer_fromClient(self, fileId: str, token: str, fileSize: int, helper: FileHelper) -> Any:
        return helper.networkToFile(self.store / fileId, max_size=SIZE)


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """256 MiB of random bytes, written once for the module (in 4 MiB pieces) and deleted afterwards."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    digest = hashlib.sha256()
    try:
        with open(path, "wb") as handle:
            for _ in range(SIZE // (4 * MIB)):
                block = os.urandom(4 * MIB)
                digest.update(block)
                handle.write(block)
        yield path, digest.hexdigest()
    finally:
        path.unlink(missing_ok=True)


BACKENDS = [pytest.param("pyopenssl"), pytest.param("m2crypto", marks=pytest.mark.m2crypto)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_256_mib_upload(
    rpcframework_serve: ServeFactory,
    store: Path,
    big_file: tuple[Path, str],
    rpcframework_client_options: dict[str, Any],
    backend: str,
) -> None:
    source, digest = big_file
    handler: type[RequestHandler] = type("BigStore", (BigStoreHandler,), {"store": store})
    url = rpcframework_serve(handler, "Data/Big", registry=REGISTRY, backend=backend)
    client = TransferClient(url, backend=backend, **rpcframework_client_options)
    seen: list[int] = []
    started = time.perf_counter()
    result = client.sendFile(source, "big.bin", on_progress=lambda done, total: seen.append(done))
    elapsed = time.perf_counter() - started
    assert result == {"OK": True, "Value": SIZE}, result
    assert leftovers(store) == ["big.bin"]
    assert sha256(store / "big.bin") == digest
    assert seen[-1] == SIZE and seen == sorted(seen)
    print(f"\n256 MiB upload over {backend}: {SIZE / MIB / elapsed:.0f} MiB/s ({elapsed:.2f} s)")


@pytest.mark.parametrize("backend", BACKENDS)
def test_256_mib_download(
    rpcframework_serve: ServeFactory,
    store: Path,
    tmp_path: Path,
    big_file: tuple[Path, str],
    rpcframework_client_options: dict[str, Any],
    backend: str,
) -> None:
    source, digest = big_file
    os.link(source, store / "big.bin")  # same file system: no second 256 MiB copy
    handler: type[RequestHandler] = type("BigStore", (BigStoreHandler,), {"store": store})
    url = rpcframework_serve(handler, "Data/Big", registry=REGISTRY, backend=backend)
    client = TransferClient(url, backend=backend, **rpcframework_client_options)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    dest = downloads / "big.bin"
    try:
        started = time.perf_counter()
        result = client.receiveFile(dest, "big.bin")
        elapsed = time.perf_counter() - started
        assert result["OK"], result
        assert leftovers(downloads) == ["big.bin"]
        assert sha256(dest) == digest
    finally:
        dest.unlink(missing_ok=True)
    print(f"\n256 MiB download over {backend}: {SIZE / MIB / elapsed:.0f} MiB/s ({elapsed:.2f} s)")
