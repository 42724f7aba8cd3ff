"""Shared pieces for the end-to-end file-transfer tests: a store handler and a registry admitting the dev user."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
from pathlib import Path
from typing import Any, ClassVar

from rpcframework import S_ERROR, S_OK, RequestHandler
from rpcframework.transfer import FileHelper, compression_for
from rpcframework.transports import get_backend
from support.waiting import DEFAULT_TIMEOUT, poll

REGISTRY = {
    "Users": {"dev-user": {"DN": "/DC=org/DC=rpcframework/OU=Users/CN=dev-user"}},
    "Groups": {"users": {"Users": "dev-user", "Properties": "NormalUser"}},
    "DefaultGroup": "users",
}
MAX_SIZE = 40 * 1024 * 1024


def safe_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
        raise ValueError(f"bad file id {name!r}")
    return name


class StoreHandler(RequestHandler):
    """Stores uploads in ``store`` (set per test); bulks are extracted into ``store/<bulk name>``."""

    store: ClassVar[Path] = Path("/nonexistent")
    auth_transfer_fromClient: ClassVar[list[str]] = ["authenticated"]
    auth_transfer_toClient: ClassVar[list[str]] = ["authenticated"]
    auth_transfer_bulkFromClient: ClassVar[list[str]] = ["authenticated"]
    auth_transfer_bulkToClient: ClassVar[list[str]] = ["authenticated"]
    auth_transfer_listBulk: ClassVar[list[str]] = ["authenticated"]

    def transfer_fromClient(self, fileId: str, token: str, fileSize: int, helper: FileHelper) -> Any:
        return helper.networkToFile(self.store / safe_name(fileId), max_size=MAX_SIZE)

    def transfer_toClient(self, fileId: str, token: str, helper: FileHelper) -> Any:
        path = self.store / safe_name(fileId)
        if not path.is_file():
            return helper.sendError(f"No such file {fileId}")
        return helper.fileToNetwork(path)

    def transfer_bulkFromClient(self, bulkId: str, token: str, bulkSize: int, helper: FileHelper) -> Any:
        target = self.store / safe_name(bulkId)
        target.mkdir(exist_ok=True)
        return helper.networkToBulk(target, compression_for(bulkId), max_size=MAX_SIZE)

    def transfer_bulkToClient(self, bulkId: str, token: str, helper: FileHelper) -> Any:
        source = self.store / safe_name(bulkId)
        if not source.is_dir():
            return helper.sendError(f"No such bulk {bulkId}")
        return helper.bulkToNetwork(sorted(source.iterdir()), compression_for(bulkId))

    def transfer_listBulk(self, bulkId: str, token: str, helper: FileHelper) -> Any:
        source = self.store / safe_name(bulkId)
        if not source.is_dir():
            return S_ERROR(f"No such bulk {bulkId}")
        return S_OK(sorted(p.name for p in source.iterdir()))


class UploadOnlyHandler(RequestHandler):
    store: ClassVar[Path] = Path("/nonexistent")
    limit: ClassVar[int] = 1024
    auth_transfer_fromClient: ClassVar[list[str]] = ["all"]

    def transfer_fromClient(self, fileId: str, token: str, fileSize: int, helper: FileHelper) -> Any:
        return helper.networkToFile(self.store / safe_name(fileId), max_size=self.limit)


# -- faults on the wire: a client back end whose streams cut or corrupt the plaintext at a chosen byte ----------


class FaultyStream:
    """Wraps a client stream: after ``cut_after_sent``/``cut_after_received`` bytes it shuts the TCP connection
    down (both sides see a cut, not an abort); ``flip_at_sent`` flips one byte of the plaintext sent at that offset
    (below TLS's integrity check, so only the transfer's own digest can notice)."""

    def __init__(
        self,
        inner: Any,
        *,
        cut_after_sent: int | None = None,
        cut_after_received: int | None = None,
        flip_at_sent: int | None = None,
    ) -> None:
        self.inner = inner
        self.cut_after_sent = cut_after_sent
        self.cut_after_received = cut_after_received
        self.flip_at_sent = flip_at_sent
        self.sent = 0
        self.received = 0
        self.cut = False

    @property
    def peer_identity(self) -> Any:
        return self.inner.peer_identity

    @property
    def peer_address(self) -> tuple[str, int]:
        return self.inner.peer_address  # type: ignore[no-any-return]

    def _shutdown(self) -> None:
        self.cut = True
        with contextlib.suppress(OSError):
            sock = socket.socket(fileno=os.dup(self.inner.fileno()))
            with sock:
                sock.shutdown(socket.SHUT_RDWR)

    def send_all(self, data: bytes) -> None:
        if self.cut:
            raise ConnectionResetError("cut by the test")
        flip = self.flip_at_sent
        if flip is not None and self.sent <= flip < self.sent + len(data):
            mutable = bytearray(data)
            mutable[flip - self.sent] = _flipped(mutable[flip - self.sent])
            data = bytes(mutable)
        limit = self.cut_after_sent
        if limit is not None and self.sent + len(data) > limit:
            self.inner.send_all(data[: max(0, limit - self.sent)])
            self.sent = limit
            self._shutdown()
            raise ConnectionResetError("cut by the test")
        self.inner.send_all(data)
        self.sent += len(data)

    def recv(self, max_bytes: int) -> bytes:
        if self.cut:
            return b""
        data: bytes = self.inner.recv(max_bytes)
        limit = self.cut_after_received
        if limit is not None and self.received + len(data) >= limit:
            self._shutdown()
            data = data[: max(0, limit - self.received)]
        self.received += len(data)
        return data

    def recv_into(self, view: memoryview) -> int:
        data = self.recv(len(view))  # the faults above, then a copy
        view[: len(data)] = data
        return len(data)

    def settimeout(self, seconds: float | None) -> None:
        self.inner.settimeout(seconds)

    def pending(self) -> int:
        return 0 if self.cut else self.inner.pending()  # type: ignore[no-any-return]

    def fileno(self) -> int:
        return self.inner.fileno()  # type: ignore[no-any-return]

    def close(self) -> None:
        self.inner.close()


def _flipped(byte: int) -> int:
    """Another byte that is still valid where ``byte`` was base64 text (DIRAC mode), so only the digest notices."""
    char = chr(byte)
    if char.isascii() and char.isalpha():
        return byte ^ 0x20  # the other case
    if char in "+/":
        return ord("/" if char == "+" else "+")
    return byte ^ 0x01  # digits stay digits; raw stream-mode data just changes


class FaultyBackend:
    """A client back end handing out :class:`FaultyStream` wrappers (pass ``backends={name: FaultyBackend(...)}``
    to ``TransferClient``); ``streams`` keeps them for assertions."""

    def __init__(self, name: str = "pyopenssl", **faults: int | None) -> None:
        self.inner = get_backend(name)
        self.name = name
        self.faults = faults
        self.streams: list[FaultyStream] = []

    def connect(self, host: str, port: int, **options: Any) -> FaultyStream:
        stream = FaultyStream(self.inner.connect(host, port, **options), **self.faults)
        self.streams.append(stream)
        return stream


def sha256(path: Path) -> str:
    """The SHA-256 of a file, read in blocks (the large-transfer files are 256 MiB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(4 * 1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def leftovers(directory: Path) -> list[str]:
    """Every entry of ``directory``, hidden temporary files included."""
    return sorted(os.listdir(directory))


def wait_until_empty(directory: Path, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """Entries of ``directory`` once the server has cleaned up after a failed transfer (or ``timeout`` passed)."""
    return poll(lambda: leftovers(directory), lambda left: not left, timeout)
