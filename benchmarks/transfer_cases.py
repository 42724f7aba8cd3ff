"""Bulk data: ``TransferClient`` uploads and downloads of 256 MiB against the raw TLS bulk floor.

The run generates one file of random bytes in its temporary directory (:func:`benchmarks.common.payload_path`).

* ``transfer_256mib_up``: ``TransferClient.sendFile(payload)`` to a service whose ``transfer_fromClient`` hook
  drops the data (``helper.networkToDataSink`` into a sink that keeps nothing, so no disk write is measured);
* ``transfer_256mib_down``: ``TransferClient.receiveFile(<a file object that drops the data>)`` from a service whose
  ``transfer_toClient`` hook sends the payload file (``helper.fileToNetwork``); the file is in the page cache;
* ``raw_tls_bulk``: the floor: rpcframework's pyOpenSSL stream (the TLS stream ``TransferClient`` uses), connect
  + handshake + 256 MiB client -> server read from the same file in 1 MiB pieces + a 1-byte ack, per operation;
  the server reads into one reused buffer (``recv_into``), without a copy or a Python object per read.

Every operation opens a new connection (``TransferClient`` never pools), so all three pay one handshake per
256 MiB (~3 ms, negligible). One operation per repetition, 2 repetitions, one round: the cases stay bounded.
"""

from __future__ import annotations

import logging
import socket
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, ClassVar

from benchmarks.common import PAYLOAD_SIZE, Case, payload_path, split_address, wait_for_stop
from benchmarks.measure import Plan

__all__ = ["TRANSFER_CASES"]

_PIECE = 1024 * 1024
_RECV = 256 * 1024
_MAX_CONNECTIONS = 10_000
_TIMEOUT = 60.0
_FILE_ID = "payload.bin"


def _transfer_plan(base: Plan, quick: bool) -> Plan:
    """One transfer per repetition (duration 0: ``drive`` stops after the first call), no warm-up."""
    return Plan(warmup=0.0, repetitions=1 if quick else 2, duration=0.0)


# -- the rpcframework side ----------------------------------------------------------------------------------------


def _sink(data: bytes) -> None:
    """Drop received data (a /dev/null-like sink)."""


def _handler_class(payload: Path) -> type[Any]:
    from rpcframework.server import RequestHandler

    class TransferHandler(RequestHandler):
        auth_transfer_fromClient: ClassVar[list[str]] = ["all"]
        auth_transfer_toClient: ClassVar[list[str]] = ["all"]

        def transfer_fromClient(self, fileId: str, token: str, fileSize: int, helper: Any) -> Any:
            return helper.networkToDataSink(_sink, max_size=PAYLOAD_SIZE)

        def transfer_toClient(self, fileId: str, token: str, helper: Any) -> Any:
            return helper.fileToNetwork(payload)

    return TransferHandler


def serve_transfers(ca: Path, control: Connection) -> None:
    from rpcframework.server import Service, ServiceReactor
    from rpcframework.transports import TLSConfig

    logging.basicConfig(level=logging.WARNING)
    tls = TLSConfig(
        cert_file=str(ca / "hostcert.pem"), key_file=str(ca / "hostkey.pem"), ca_dir=str(ca / "certificates")
    )
    service = Service("Bench/Store", _handler_class(payload_path(ca)), port=0, protocol="dips")
    with ServiceReactor([service], host="127.0.0.1", tls=tls) as reactor:
        control.send(reactor.url("Bench/Store"))
        wait_for_stop(control)


class _Discard:
    """A binary "file" that keeps nothing (``receiveFile`` destination)."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)


class TransferCaller:
    """``call()``: one 256 MiB ``sendFile`` (``up``) or ``receiveFile`` (down) through ``TransferClient``."""

    def __init__(self, ca: Path, url: str, *, up: bool, checksum: str = "crc32") -> None:
        from rpcframework import TransferClient
        from rpcframework.config import load_dict

        config = load_dict({"DIRAC": {"Security": {"CALocation": str(ca / "certificates")}}}, "<bench>")
        self._client = TransferClient(
            url, proxyLocation=str(ca / "proxy.pem"), config=config, timeout=_TIMEOUT, checksum=checksum
        )
        self._payload = payload_path(ca)
        self._up = up

    def call(self) -> None:
        if self._up:
            result = self._client.sendFile(self._payload, _FILE_ID)
            if not result["OK"]:
                raise RuntimeError(f"sendFile failed: {result['Message']}")
            return
        sink = _Discard()
        result = self._client.receiveFile(sink, _FILE_ID)
        if not result["OK"] or sink.size != PAYLOAD_SIZE:
            raise RuntimeError(f"receiveFile failed: {result.get('Message')} ({sink.size} bytes)")

    def close(self) -> None:
        pass


# -- the raw floor ------------------------------------------------------------------------------------------------


def _tls_config(ca: Path, server: bool) -> Any:
    from rpcframework.transports import TLSConfig

    if server:
        return TLSConfig(
            cert_file=str(ca / "hostcert.pem"), key_file=str(ca / "hostkey.pem"), ca_dir=str(ca / "certificates")
        )
    return TLSConfig(cert_file=str(ca / "proxy.pem"), ca_dir=str(ca / "certificates"))


def _drain(stream: Any) -> None:
    """Read PAYLOAD_SIZE bytes (or until EOF) into one reused buffer (``recv_into``: no copy, the least work a
    receiver can do, as the transfer receivers read in place), then acknowledge with one byte."""
    received = 0
    view = memoryview(bytearray(_RECV))
    for _ in range(PAYLOAD_SIZE):  # at least one byte per pass: bounded by the size
        size = stream.recv_into(view)
        if not size:
            return
        received += size
        if received >= PAYLOAD_SIZE:
            stream.send_all(b"k")
            return


def _bulk_connections(ca: Path, listener: socket.socket) -> None:
    from rpcframework.transports import get_backend

    backend, tls = get_backend("pyopenssl"), _tls_config(ca, True)
    for _ in range(_MAX_CONNECTIONS):
        sock, _ = listener.accept()
        try:
            stream = backend.wrap_server(sock, tls)
        except Exception:  # a client that went away mid-handshake
            continue
        try:
            stream.settimeout(_TIMEOUT)
            _drain(stream)
        except Exception as exc:
            logging.getLogger(__name__).debug("bulk connection ended: %s", exc)
        finally:
            stream.close()


def serve_raw_bulk(ca: Path, control: Connection) -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    threading.Thread(target=_bulk_connections, args=(ca, listener), daemon=True).start()
    control.send(f"127.0.0.1:{listener.getsockname()[1]}")
    wait_for_stop(control)
    listener.close()


class RawBulk:
    """``call()``: connect + handshake (rpcframework's pyOpenSSL back end), send the payload file in 1 MiB pieces,
    wait for the server's 1-byte ack, close."""

    def __init__(self, ca: Path, address: str) -> None:
        from rpcframework.transports import get_backend

        self._host, self._port = split_address(address)
        self._backend = get_backend("pyopenssl")
        self._tls = _tls_config(ca, False)
        self._payload = payload_path(ca)

    def call(self) -> None:
        stream = self._backend.connect(self._host, self._port, tls=self._tls, server_hostname="localhost")
        try:
            stream.settimeout(_TIMEOUT)
            with self._payload.open("rb") as source:
                for _ in range(PAYLOAD_SIZE // _PIECE + 1):
                    piece = source.read(_PIECE)
                    if not piece:
                        break
                    stream.send_all(piece)
            if stream.recv(1) != b"k":
                raise RuntimeError("no acknowledgement from the bulk server")
        finally:
            stream.close()

    def close(self) -> None:
        pass


_COMMON: dict[str, Any] = {
    "kind": "throughput",
    "bytes_per_call": PAYLOAD_SIZE,
    "plan": _transfer_plan,
    "max_rounds": 1,
    "needs_payload": True,
}

TRANSFER_CASES = (
    Case(
        "raw_tls_bulk",
        "rpcframework's pyOpenSSL stream: connect + handshake + 256 MiB one way (client -> server) + 1-byte ack",
        None,
        serve_raw_bulk,
        RawBulk,
        **_COMMON,
    ),
    Case(
        "transfer_256mib_up",
        "TransferClient.sendFile of a 256 MiB file (random bytes) to a hook that drops the data; dips://, stream mode",
        "raw_tls_bulk",
        serve_transfers,
        lambda ca, url: TransferCaller(ca, url, up=True),
        **_COMMON,
    ),
    Case(
        "transfer_256mib_down",
        "TransferClient.receiveFile of the 256 MiB file (hook: fileToNetwork) into a file object that drops the"
        " data; dips://, stream mode",
        "raw_tls_bulk",
        serve_transfers,
        lambda ca, url: TransferCaller(ca, url, up=False),
        **_COMMON,
    ),
    Case(
        "transfer_256mib_up_sha256",
        "transfer_256mib_up with TransferClient(checksum='sha256'): the whole file checked with SHA-256 on both sides"
        " instead of the default CRC-32",
        "raw_tls_bulk",
        serve_transfers,
        lambda ca, url: TransferCaller(ca, url, up=True, checksum="sha256"),
        **_COMMON,
    ),
    Case(
        "transfer_256mib_down_sha256",
        "transfer_256mib_down with TransferClient(checksum='sha256')",
        "raw_tls_bulk",
        serve_transfers,
        lambda ca, url: TransferCaller(ca, url, up=False, checksum="sha256"),
        **_COMMON,
    ),
)
