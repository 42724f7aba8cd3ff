"""Transfers that go wrong over a real TLS service: connections cut mid-transfer in each direction, a corrupted
chunk, a resumed download after a cut, a hostile bulk archive, a full disk. In every case nothing partial is left
on the receiving side (temporary files included) and the service goes on serving."""

from __future__ import annotations

import errno
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.transfer_kit import REGISTRY, FaultyBackend, StoreHandler, leftovers, safe_name, sha256, wait_until_empty

from rpcframework import RequestHandler, TransferClient
from rpcframework.testing import ServeFactory
from rpcframework.transfer import FileHelper, partial_path
from rpcframework.transfer import atomic as atomic_module
from rpcframework.transfer import helper as helper_module

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024
SIZE = 8 * MIB + 4321
CUT_AT = 3 * MIB


class CuttingStoreHandler(StoreHandler):
    """``cut-*`` downloads: the server shuts the connection down after 3 MiB, with no abort message."""

    def transfer_toClient(self, fileId: str, token: str, helper: FileHelper) -> Any:
        if not fileId.startswith("cut-"):
            return super().transfer_toClient(fileId, token, helper)
        path = self.store / safe_name(fileId)

        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as handle:
                for index in range(SIZE // MIB + 1):
                    if index * MIB >= CUT_AT:
                        stream = helper.channel.stream  # type: ignore[attr-defined]
                        _shutdown(stream.fileno())
                    yield handle.read(MIB)

        return helper.DataSourceToNetwork(chunks())


def _shutdown(fd: int) -> None:
    import socket

    with socket.socket(fileno=os.dup(fd)) as sock:
        sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def url(rpcframework_serve: ServeFactory, store: Path) -> str:
    handler: type[RequestHandler] = type("CuttingStore", (CuttingStoreHandler,), {"store": store})
    return rpcframework_serve(handler, "Data/Store", registry=REGISTRY, read_timeout=10.0, write_timeout=10.0)


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "source" / "payload.bin"
    path.parent.mkdir()
    path.write_bytes(os.urandom(SIZE))
    return path


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    path = tmp_path / "downloads"
    path.mkdir()
    return path


def _still_serves(url: str, options: dict[str, Any], payload: Path, store: Path) -> None:
    client = TransferClient(url, **options)
    assert client.sendFile(payload, "after.bin") == {"OK": True, "Value": SIZE}
    assert sha256(store / "after.bin") == sha256(payload)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "dirac"])
def test_upload_cut_by_client_leaves_nothing_on_the_server(
    url: str, store: Path, payload: Path, rpcframework_client_options: dict[str, Any], stream: bool
) -> None:
    faulty = FaultyBackend(cut_after_sent=CUT_AT)
    client = TransferClient(url, stream=stream, backends={"pyopenssl": faulty}, **rpcframework_client_options)
    result = client.sendFile(payload, "cut.bin")
    assert result["OK"] is False, result
    assert faulty.streams and faulty.streams[0].cut
    assert wait_until_empty(store) == []  # the .cut.bin.*.part temporary file is gone too
    _still_serves(url, rpcframework_client_options, payload, store)


def test_download_cut_by_client_leaves_nothing_on_the_client(
    url: str, store: Path, payload: Path, downloads: Path, rpcframework_client_options: dict[str, Any]
) -> None:
    (store / "big.bin").write_bytes(payload.read_bytes())
    faulty = FaultyBackend(cut_after_received=CUT_AT)
    client = TransferClient(url, backends={"pyopenssl": faulty}, **rpcframework_client_options)
    result = client.receiveFile(downloads / "big.bin", "big.bin")
    assert result["OK"] is False, result
    assert faulty.streams[0].cut
    assert leftovers(downloads) == []
    assert leftovers(store) == ["big.bin"]
    fine = TransferClient(url, **rpcframework_client_options)
    assert fine.receiveFile(downloads / "big.bin", "big.bin")["OK"]
    assert sha256(downloads / "big.bin") == sha256(payload)


def test_download_cut_by_server_leaves_nothing_on_the_client(
    url: str, store: Path, payload: Path, downloads: Path, rpcframework_client_options: dict[str, Any]
) -> None:
    (store / "cut-big.bin").write_bytes(payload.read_bytes())
    client = TransferClient(url, **rpcframework_client_options)
    seen: list[int] = []
    result = client.receiveFile(downloads / "x.bin", "cut-big.bin", on_progress=lambda d, t: seen.append(d))
    assert result["OK"] is False, result
    assert 0 < max(seen) < SIZE  # data did flow before the cut
    assert leftovers(downloads) == []
    _still_serves(url, rpcframework_client_options, payload, store)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "dirac"])
def test_corrupted_chunk_is_refused_and_nothing_kept(
    url: str, store: Path, payload: Path, rpcframework_client_options: dict[str, Any], stream: bool
) -> None:
    # The byte is flipped in the plaintext handed to TLS, after the sender hashed the original chunk.
    faulty = FaultyBackend(flip_at_sent=5 * MIB + 12345)
    client = TransferClient(url, stream=stream, backends={"pyopenssl": faulty}, **rpcframework_client_options)
    result = client.sendFile(payload, "corrupt.bin")
    assert result["OK"] is False and result["Message"] == "Error in the file CRC", result
    assert wait_until_empty(store) == []
    _still_serves(url, rpcframework_client_options, payload, store)


def test_interrupted_download_resumes(
    url: str, store: Path, payload: Path, downloads: Path, rpcframework_client_options: dict[str, Any]
) -> None:
    (store / "r.bin").write_bytes(payload.read_bytes())
    dest = downloads / "r.bin"
    faulty = FaultyBackend(cut_after_received=5 * MIB)
    cut = TransferClient(url, backends={"pyopenssl": faulty}, **rpcframework_client_options)
    assert cut.receiveFile(dest, "r.bin", resume=True)["OK"] is False
    kept = partial_path(dest).stat().st_size
    assert MIB <= kept <= 5 * MIB
    assert leftovers(downloads) == [partial_path(dest).name]  # only the resumable partial file, by design
    seen: list[int] = []
    client = TransferClient(url, **rpcframework_client_options)
    result = client.receiveFile(dest, "r.bin", resume=True, on_progress=lambda d, t: seen.append(d))
    assert result["OK"], result
    assert min(seen) == kept  # continued where the cut left it
    assert sha256(dest) == sha256(payload)
    assert leftovers(downloads) == ["r.bin"]


def _hostile_tar(kind: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:bz2" if kind == "bomb" else "w") as tar:
        good = tarfile.TarInfo("harmless.txt")
        good.size = 5
        tar.addfile(good, io.BytesIO(b"hello"))
        for member, data in _hostile_members(kind):
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _hostile_members(kind: str) -> list[tuple[tarfile.TarInfo, Any]]:
    names = {"traversal": "../escaped.txt", "absolute": "/tmp/rpcf-escaped.txt", "deep": "d/" * 2000 + "f"}
    member = tarfile.TarInfo(names.get(kind, "x"))
    if kind == "symlink":
        member.type, member.linkname = tarfile.SYMTYPE, "../../outside"
    elif kind == "device":
        member.type, member.devmajor, member.devminor = tarfile.CHRTYPE, 1, 3
    elif kind == "hardlink-to-later":
        member.type, member.linkname = tarfile.LNKTYPE, "later.txt"
        return [(member, None), (tarfile.TarInfo("later.txt"), b"")]
    elif kind == "link-chain":  # lexically inside when made; out once 'b -> .' exists
        member.type, member.linkname = tarfile.SYMTYPE, "b/b/b/b/../../../../escaped.txt"
        link = tarfile.TarInfo("b")
        link.type, link.linkname = tarfile.SYMTYPE, "."
        return [(member, None), (link, None)]
    elif kind == "bomb":  # 256 MiB of zeros in a few hundred bytes
        member.size = 256 * MIB
        return [(member, io.BytesIO(bytes(256 * MIB)).getvalue())]
    if member.isfile():
        member.size = 4
        return [(member, b"evil")]
    return [(member, None)]


HOSTILE_KINDS = {
    "traversal": "'..' component",
    "absolute": "absolute path",
    "symlink": "leaves the target",
    "device": "special file",
    "hardlink-to-later": "comes earlier in the archive",
    "deep": "directory levels",
    "link-chain": "leads out of the target",
    "bomb": "expands more than 200 times",
}


@pytest.mark.parametrize("kind", list(HOSTILE_KINDS))
def test_hostile_bulk_is_refused_and_nothing_extracted(
    url: str,
    store: Path,
    tmp_path: Path,
    rpcframework_client_options: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    crafted = _hostile_tar(kind)

    def write_crafted(paths: Any, writer: Any, compression: Any, *, arcnames: Any = None) -> list[str]:
        writer.write(crafted)  # what a hostile client puts on the wire instead of the real archive
        return ["harmless.txt"]

    (tmp_path / "decoy").write_bytes(b"decoy")
    client = TransferClient(url, **rpcframework_client_options)
    compress = kind == "bomb"
    bulk = "evil.tar.bz2" if compress else "evil.tar"
    with monkeypatch.context() as patch:
        patch.setattr(helper_module, "write_archive", write_crafted)  # the sending side only
        result = client.sendBulk([tmp_path / "decoy"], "evil", compress=compress)
    assert result["OK"] is False, result
    assert "refused" in result["Message"] and HOSTILE_KINDS[kind] in result["Message"], result
    assert str(tmp_path) not in result["Message"] and ".bulk-" not in result["Message"]  # no server path leaks
    assert leftovers(store / bulk) == []  # not even the harmless first member, nor a staging directory
    assert not (store / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/rpcf-escaped.txt").exists()
    (tmp_path / "ok.txt").write_text("fine")
    assert client.sendBulk([tmp_path / "ok.txt"], "good", compress=False)["OK"]
    assert (store / "good.tar" / "ok.txt").read_text() == "fine"


def _full_disk(capacity: int) -> Any:
    """An ``AtomicFile.write`` that fails with ENOSPC once ``capacity`` bytes were written (a full disk)."""
    original = atomic_module.AtomicFile.write
    written = [0]

    def write(atomic: atomic_module.AtomicFile, data: bytes | memoryview) -> int:
        if written[0] + len(data) > capacity:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written[0] += len(data)
        return original(atomic, data)

    return write


def test_full_disk_leaves_nothing_and_service_keeps_serving(
    url: str, store: Path, payload: Path, rpcframework_client_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = TransferClient(url, **rpcframework_client_options)
    with monkeypatch.context() as patch:
        patch.setattr(atomic_module.AtomicFile, "write", _full_disk(2 * MIB))
        result = client.sendFile(payload, "full.bin")
        assert wait_until_empty(store) == []
    assert result["OK"] is False, result
    assert "No space left on device" in result["Message"], result
    _still_serves(url, rpcframework_client_options, payload, store)
