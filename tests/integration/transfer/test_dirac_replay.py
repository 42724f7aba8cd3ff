"""A DIRAC client's captured ``sendFile`` bytes (dip-json.txt) replayed to our plain dip:// service."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from support.transfer_kit import UploadOnlyHandler

from rpcframework import RequestHandler, TransferClient
from rpcframework.testing import ServeFactory

pytestmark = pytest.mark.timeout(30)

# C>S frames of "TransferClient.sendFile(3 bytes b'abc')" in /work/shared/reference/dirac-wire/dip-json.txt.
CLIENT_FRAMES = [
    b'{"OK": true, "Value": [["Bench/EchoPlain", "None", "unknown"], '
    b'["FileTransfer", "FromClient"], "hosts", "9.1.22"]}',
    b'{"OK": true, "Value": ["fid", "", 3]}',
    b'{"OK": true, "Value": [true, {"__dCls": "b64", "obj": "YWJj"}]}',
    b'{"OK": true, "Value": [false, "900150983cd24fb0d6963f7d28e17f72"]}',
]
# What DIRAC's service answered, frame by frame.
SERVER_FRAMES = [
    b'{"OK": true, "Value": null}',
    b'{"OK": true, "Value": "Accepted"}',
    b'{"OK": true, "Value": null}',
    b'{"OK": true, "Value": 3}',
]


def _frame(payload: bytes) -> bytes:
    return b"%d:%s" % (len(payload), payload)


def _read_frame(sock: socket.socket, buffer: bytearray) -> bytes:
    for _ in range(1000):
        head, sep, _rest = bytes(buffer[:32]).partition(b":")
        if sep and len(buffer) >= len(head) + 1 + int(head):
            start = len(head) + 1
            payload = bytes(buffer[start : start + int(head)])
            del buffer[: start + int(head)]
            return payload
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        buffer += data
    raise AssertionError("no frame")


def _serve_plain(serve: ServeFactory, store: Path) -> tuple[str, int]:
    handler: type[RequestHandler] = type("Plain", (UploadOnlyHandler,), {"store": store, "limit": 10**7})
    url = serve(handler, "Bench/EchoPlain", config={"Protocol": "dip"})
    assert url.startswith("dip://")
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return host, int(port)


def test_dirac_send_file_replay(rpcframework_serve: ServeFactory, tmp_path: Path) -> None:
    address = _serve_plain(rpcframework_serve, tmp_path)
    replies: list[bytes] = []
    buffer = bytearray()
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(_frame(CLIENT_FRAMES[0]))
        replies.append(_read_frame(sock, buffer))
        sock.sendall(_frame(CLIENT_FRAMES[1]))
        replies.append(_read_frame(sock, buffer))
        sock.sendall(_frame(CLIENT_FRAMES[2]))
        replies.append(_read_frame(sock, buffer))
        sock.sendall(_frame(CLIENT_FRAMES[3]))
        replies.append(_read_frame(sock, buffer))
        assert sock.recv(10) == b""  # DIRAC's server closes after the result
    assert replies == SERVER_FRAMES
    assert (tmp_path / "fid").read_bytes() == b"abc"


def test_dirac_bad_md5_keeps_nothing(rpcframework_serve: ServeFactory, tmp_path: Path) -> None:
    address = _serve_plain(rpcframework_serve, tmp_path)
    buffer = bytearray()
    bad_end = CLIENT_FRAMES[3].replace(b"9001", b"0000")
    with socket.create_connection(address, timeout=10) as sock:
        for frame in (*CLIENT_FRAMES[:3], bad_end):
            sock.sendall(_frame(frame))
        replies = [_read_frame(sock, buffer) for _ in range(4)]
    assert replies[:3] == SERVER_FRAMES[:3]
    assert b'"OK": false' in replies[3] and b"Error in the file CRC" in replies[3]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stream", [False, True])
def test_plain_dip_transfer_client(rpcframework_serve: ServeFactory, tmp_path: Path, stream: bool) -> None:
    store = tmp_path / "store"
    store.mkdir()
    host, port = _serve_plain(rpcframework_serve, store)
    source = tmp_path / "up.bin"
    source.write_bytes(bytes(range(256)) * 5000)
    client = TransferClient(f"dip://{host}:{port}/Bench/EchoPlain", stream=stream)
    assert client.sendFile(source, "up.bin") == {"OK": True, "Value": source.stat().st_size}
    assert (store / "up.bin").read_bytes() == source.read_bytes()
