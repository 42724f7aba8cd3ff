"""TransferClient against a real TLS service on 127.0.0.1: files, bulks, refusals, caps, progress."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
from support.transfer_kit import MAX_SIZE, REGISTRY, StoreHandler, UploadOnlyHandler, sha256

from rpcframework import Client, RequestHandler, TransferClient
from rpcframework.testing import ServeFactory

pytestmark = pytest.mark.timeout(60)


def _handler(base: type[RequestHandler], store: Path) -> type[RequestHandler]:
    return type(f"{base.__name__}ForTest", (base,), {"store": store})


@pytest.fixture
def url(rpcframework_serve: ServeFactory, store: Path) -> str:
    return rpcframework_serve(_handler(StoreHandler, store), "Data/Store", registry=REGISTRY)


@pytest.mark.parametrize("size", [1, 3 * 1024 * 1024, 32 * 1024 * 1024], ids=["1B", "3MiB", "32MiB"])
def test_send_receive_round_trip(
    url: str, store: Path, tmp_path: Path, rpcframework_client_options: dict[str, Any], size: int
) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(size))
    client = TransferClient(url, **rpcframework_client_options)
    started = time.perf_counter()
    sent = client.sendFile(str(source), "data.bin")
    upload = time.perf_counter() - started
    assert sent == {"OK": True, "Value": size}, sent
    assert sha256(store / "data.bin") == sha256(source)
    back = tmp_path / "back.bin"
    started = time.perf_counter()
    received = client.receiveFile(str(back), "data.bin")
    download = time.perf_counter() - started
    assert received["OK"], received
    assert sha256(back) == sha256(source)
    if size >= 32 * 1024 * 1024:
        mib = size / 1024 / 1024
        print(f"\n32 MiB over TLS: upload {mib / upload:.0f} MiB/s, download {mib / download:.0f} MiB/s")


def test_file_objects_and_dirac_mode(url: str, store: Path, rpcframework_client_options: dict[str, Any]) -> None:
    payload = os.urandom(2 * 1024 * 1024 + 17)
    for stream in (True, False):
        client = TransferClient(url, stream=stream, **rpcframework_client_options)
        assert client.sendFile(io.BytesIO(payload), f"obj-{stream}.bin")["OK"]
        assert (store / f"obj-{stream}.bin").read_bytes() == payload
        sink = io.BytesIO()
        assert client.receiveFile(sink, f"obj-{stream}.bin")["OK"]
        assert sink.getvalue() == payload


def test_progress_is_increasing(url: str, tmp_path: Path, rpcframework_client_options: dict[str, Any]) -> None:
    source = tmp_path / "p.bin"
    source.write_bytes(os.urandom(5 * 1024 * 1024 + 3))
    seen: list[tuple[int, int | None]] = []
    client = TransferClient(url, **rpcframework_client_options)
    assert client.sendFile(source, "p.bin", on_progress=lambda done, total: seen.append((done, total)))["OK"]
    dones = [done for done, _ in seen]
    assert len(dones) >= 5
    assert dones == sorted(dones)
    assert dones[-1] == source.stat().st_size
    down: list[int] = []
    assert client.receiveFile(tmp_path / "p2.bin", "p.bin", on_progress=lambda d, t: down.append(d))["OK"]
    assert down == sorted(down) and down[-1] == source.stat().st_size


@pytest.mark.parametrize("compress", [True, False])
def test_bulk_send_receive_list(
    url: str, store: Path, tmp_path: Path, rpcframework_client_options: dict[str, Any], compress: bool
) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.log").write_bytes(b"alpha" * 1000)
    (src / "b.log").write_bytes(os.urandom(300_000))
    (src / "sub" / "c.txt").write_text("nested")
    client = TransferClient(url, **rpcframework_client_options)
    sent = client.sendBulk([src / "a.log", src / "b.log", src / "sub"], "logs-42", compress=compress)
    assert sent["OK"], sent
    name = "logs-42.tar.bz2" if compress else "logs-42.tar"
    assert (store / name / "b.log").read_bytes() == (src / "b.log").read_bytes()
    listed = client.listBulk("logs-42", compress=compress)
    assert listed == {"OK": True, "Value": ["a.log", "b.log", "sub"]}, listed
    dest = tmp_path / "dest"
    dest.mkdir()
    received = client.receiveBulk(dest, "logs-42", compress=compress)
    assert received["OK"], received
    assert (dest / "a.log").read_bytes() == (src / "a.log").read_bytes()
    assert (dest / "sub" / "c.txt").read_text() == "nested"


def test_missing_hook_is_refused_clearly(
    rpcframework_serve: ServeFactory, store: Path, tmp_path: Path, rpcframework_client_options: dict[str, Any]
) -> None:
    url = rpcframework_serve(_handler(UploadOnlyHandler, store), "Data/Upload", registry=REGISTRY)
    client = TransferClient(url, **rpcframework_client_options)
    result = client.receiveFile(tmp_path / "x", "x")
    assert result["OK"] is False
    assert result["Message"] == "Service can't transfer files toClient"
    assert not (tmp_path / "x").exists()
    listed = client.listBulk("b")
    assert not listed["OK"] and listed["Message"] == "Service can't transfer files listBulk"


def test_unauthorized_is_refused(
    rpcframework_serve: ServeFactory, store: Path, tmp_path: Path, rpcframework_client_options: dict[str, Any]
) -> None:
    url = rpcframework_serve(_handler(StoreHandler, store), "Data/Store")  # empty registry: not authenticated
    (tmp_path / "f").write_bytes(b"data")
    client = TransferClient(url, **rpcframework_client_options)
    result = client.sendFile(tmp_path / "f", "f")
    assert result["OK"] is False and result["Errno"] == 1111, result
    assert not list(store.iterdir())


def test_configured_rule_allows(
    rpcframework_serve: ServeFactory, store: Path, tmp_path: Path, rpcframework_client_options: dict[str, Any]
) -> None:
    class NoRuleHandler(StoreHandler):
        auth_transfer_fromClient: ClassVar[Any] = None

    config = {"Authorization": {"FileTransfer": {"Default": "all"}}}
    url = rpcframework_serve(_handler(NoRuleHandler, store), "Data/Open", config=config)
    (tmp_path / "f").write_bytes(b"data")
    assert TransferClient(url, **rpcframework_client_options).sendFile(tmp_path / "f", "f")["OK"]
    assert (store / "f").read_bytes() == b"data"


@pytest.mark.parametrize("stream", [True, False])
def test_size_cap_leaves_nothing_and_service_keeps_serving(
    rpcframework_serve: ServeFactory,
    store: Path,
    tmp_path: Path,
    rpcframework_client_options: dict[str, Any],
    stream: bool,
) -> None:
    url = rpcframework_serve(_handler(UploadOnlyHandler, store), "Data/Upload", registry=REGISTRY)
    big = tmp_path / "big"
    big.write_bytes(os.urandom(3 * 1024 * 1024))
    client = TransferClient(url, stream=stream, **rpcframework_client_options)
    result = client.sendFile(big, "big")
    assert result["OK"] is False and result["Message"] == "Exceeded maximum file size", result
    assert list(store.iterdir()) == []
    (tmp_path / "small").write_bytes(b"x" * 100)
    assert client.sendFile(tmp_path / "small", "small") == {"OK": True, "Value": 100}


def test_corrupted_upload_leaves_nothing(url: str, store: Path, rpcframework_client_options: dict[str, Any]) -> None:
    def failing() -> Any:
        yield b"a" * 1024 * 1024
        raise OSError("disk gone")

    client = TransferClient(url, **rpcframework_client_options)

    class Source(io.RawIOBase):
        def __init__(self) -> None:
            self.parts = failing()

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            return bytes(next(self.parts))

    result = client.sendFile(Source(), "broken.bin")  # type: ignore[arg-type]
    assert result["OK"] is False, result
    assert list(store.iterdir()) == []
    missing = client.receiveFile(store.parent / "never.bin", "absent.bin")
    assert missing["OK"] is False and "No such file" in missing["Message"]
    assert not (store.parent / "never.bin").exists()
    assert Client(url=url, **rpcframework_client_options) is not None


def test_unreachable_url_fails_over(
    url: str, store: Path, tmp_path: Path, rpcframework_client_options: dict[str, Any]
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"dips://127.0.0.1:{sock.getsockname()[1]}/Data/Store"
    (tmp_path / "f").write_bytes(b"failover")
    client = TransferClient(f"{dead},{url}", retries=3, **rpcframework_client_options)
    for _ in range(3):
        assert client.sendFile(tmp_path / "f", "f")["OK"]
    assert (store / "f").read_bytes() == b"failover"
    assert MAX_SIZE > 0


def test_resumed_download(url: str, store: Path, tmp_path: Path, rpcframework_client_options: dict[str, Any]) -> None:
    from rpcframework.transfer import partial_path

    payload = os.urandom(3 * 1024 * 1024 + 5)
    (store / "r.bin").write_bytes(payload)
    dest = tmp_path / "r.bin"
    partial_path(dest).write_bytes(payload[: 2 * 1024 * 1024])
    seen: list[int] = []
    client = TransferClient(url, **rpcframework_client_options)
    result = client.receiveFile(dest, "r.bin", on_progress=lambda d, t: seen.append(d), resume=True)
    assert result["OK"], result
    assert dest.read_bytes() == payload
    assert min(seen) == 2 * 1024 * 1024  # started at the granted offset, not at 0
    assert not partial_path(dest).exists()


def test_bulk_progress_counts_archive_bytes(
    url: str, tmp_path: Path, rpcframework_client_options: dict[str, Any]
) -> None:
    src = tmp_path / "bulk-src"
    src.mkdir()
    (src / "r.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    client = TransferClient(url, **rpcframework_client_options)
    up: list[tuple[int, int | None]] = []
    assert client.sendBulk([src / "r.bin"], "prog", compress=False, on_progress=lambda d, t: up.append((d, t)))["OK"]
    assert len(up) >= 3 and [d for d, _ in up] == sorted(d for d, _ in up)
    assert up[-1][0] > 3 * 1024 * 1024 and up[-1][1] == up[-1][0]  # tar headers included; total known at the end
    dest = tmp_path / "bulk-dest"
    dest.mkdir()
    down: list[int] = []
    assert client.receiveBulk(dest, "prog", compress=False, on_progress=lambda d, t: down.append(d))["OK"]
    assert down[-1] > 3 * 1024 * 1024 and down == sorted(down)


@pytest.mark.parametrize("checksum", ["crc32", "sha256"])
def test_each_checksum_moves_files_and_catches_a_stale_partial_file(
    url: str, store: Path, tmp_path: Path, rpcframework_client_options: dict[str, Any], checksum: str
) -> None:
    from rpcframework.transfer import partial_path

    payload = os.urandom(3 * 1024 * 1024 + 5)
    client = TransferClient(url, checksum=checksum, **rpcframework_client_options)
    (tmp_path / "up.bin").write_bytes(payload)
    assert client.sendFile(tmp_path / "up.bin", "c.bin")["OK"]
    assert (store / "c.bin").read_bytes() == payload
    dest = tmp_path / "c.bin"
    partial_path(dest).write_bytes(b"\x00" * (2 * 1024 * 1024))  # not the file's first bytes
    stale = client.receiveFile(dest, "c.bin", resume=True)
    assert stale["OK"] is False and "CRC" in stale["Message"], stale
    assert not dest.exists()
    assert client.receiveFile(dest, "c.bin")["OK"]
    assert dest.read_bytes() == payload


def test_an_unknown_checksum_is_refused_before_anything_is_sent(rpcframework_client_options: dict[str, Any]) -> None:
    from rpcframework.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="checksum must be 'crc32' or 'sha256'"):
        TransferClient("dips://127.0.0.1:1/Data/Store", checksum="md5", **rpcframework_client_options)
