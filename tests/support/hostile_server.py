"""A hostile server for client-side tests: a real TLS server (either back end, a real host certificate, 127.0.0.1,
port 0) that runs the test's own script on each connection and sends exactly what the script says.

    def script(peer: HostilePeer) -> None:
        peer.accept_transfer()                       # proposal -> ack, file info -> "Accepted"
        peer.send_data(crafted_tar)                  # chunks and a correct end, in the negotiated mode
        peer.send_result({"OK": True, "Value": ""})

    with HostileServer(kit.server_tls(), script, backend="m2crypto") as server:
        TransferClient(server.url, ...).receiveBulk(dest, "x")

The protocol helpers (:class:`~rpcframework.protocol.ServerConnection` for the proposal, raw frames for the rest)
only save typing: a script may write any bytes with :meth:`HostilePeer.send`. Scripts run in their own threads;
what they raise is kept in :attr:`HostileServer.errors` for the test to look at.
"""

from __future__ import annotations

import contextlib
import hashlib
import select
import socket
import threading
import time
import zlib
from collections.abc import Callable
from types import TracebackType
from typing import Any

from rpcframework.codec import Encoding, decode, encode
from rpcframework.errors import ConnectionClosedError, DeadlineExceeded, RPCFrameworkError
from rpcframework.protocol import (
    Extensions,
    Feature,
    FrameDecoder,
    Proposal,
    ProposalReceived,
    ServerConnection,
    encode_frame,
    encode_keepalive_frame,
)
from rpcframework.protocol.events import Sentinel
from rpcframework.transports import TLSConfig, get_backend

__all__ = ["HostilePeer", "HostileServer", "Script"]

CHUNK = 1024 * 1024
#: Every loop here is bounded: no script or accept loop outlives this.
MAX_SECONDS = 120.0


class HostilePeer:
    """One accepted TLS connection, seen from the hostile server."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.decoder = FrameDecoder(max_frame_size=64 * 1024 * 1024)
        self.encoding = Encoding.JSON
        self.proposal: Proposal | None = None
        self.features: frozenset[Feature] = frozenset()

    # --- bytes and frames -------------------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.stream.send_all(data)

    def send_message(self, message: Any, *, keepalive: bool = False) -> None:
        payload = encode(message, self.encoding)
        self.send(encode_keepalive_frame(payload) if keepalive else encode_frame(payload))

    def recv_message(self, timeout: float = 10.0) -> Any:
        """The next message the client sent (its keepalive pongs skipped); ``ConnectionClosedError`` at EOF."""
        end = time.monotonic() + timeout
        while True:
            frame = self.decoder.next_frame()
            if frame is not None:
                message, _ = decode(frame.payload, None)
                if not frame.keepalive:
                    return message
                continue
            self._read(end)

    def _read(self, end: float) -> None:
        left = end - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("the client sent nothing in time")
        self.stream.settimeout(left)
        data = self.stream.recv(256 * 1024)
        if not data:
            raise ConnectionClosedError("the client closed the connection")
        self.decoder.feed(data)

    def client_closed(self, timeout: float = 0.0) -> bool:
        """True once the client has closed its side (what it sent meanwhile is read and dropped)."""
        with contextlib.suppress(DeadlineExceeded):
            readable, _, _ = select.select([self.stream], [], [], timeout) if not self.stream.pending() else ([1], 0, 0)
            if readable:
                try:
                    self.stream.settimeout(1.0)
                    return not self.stream.recv(256 * 1024)
                except ConnectionClosedError:
                    return True
        return False

    # --- the DISET exchange -----------------------------------------------------------------------------------------

    def accept(self, *, features: frozenset[Feature] | None = None, timeout: float = 10.0) -> Proposal:
        """Read the proposal and ack it: accepting ``features`` of what the client offered (default: all it offered;
        an empty set answers ``S_OK()`` like a DIRAC server, which knows no extension)."""
        dirac = features == frozenset()
        conn = ServerConnection(extensions=None if dirac else Extensions(features=frozenset(Feature)))
        end = time.monotonic() + timeout
        while not isinstance(event := conn.next_event(), ProposalReceived):
            if not isinstance(event, Sentinel):
                raise AssertionError(f"unexpected event before the proposal: {event!r}")
            left = end - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded("no proposal in time")
            self.stream.settimeout(left)
            data = self.stream.recv(65536)
            if not data:
                raise ConnectionClosedError("the client closed the connection before its proposal")
            conn.receive_data(data)
        self.send(conn.accept(None if features is None or dirac else Extensions(features=features)))
        self.proposal = event.proposal
        self.encoding = conn.data_encoding
        self.features = conn.extensions.features if conn.extensions is not None else frozenset()
        self.decoder = conn._decoder  # what the client sent after its proposal stays buffered here
        return event.proposal

    def accept_transfer(self, *, features: frozenset[Feature] | None = None, answer: Any = None) -> list[Any]:
        """Ack the ``FileTransfer`` proposal, read the file info, answer it (default ``S_OK("Accepted")``)."""
        self.accept(features=features)
        info = self.recv_message()
        self.send_message(answer if answer is not None else {"OK": True, "Value": "Accepted"})
        return list(info["Value"])

    @property
    def stream_mode(self) -> bool:
        return Feature.STREAM in self.features

    def send_chunk(self, data: bytes) -> None:
        """One data chunk in the negotiated mode (DIRAC mode: the client's ack is read too)."""
        if self.stream_mode:
            self.send(b"%d:\x00%b" % (len(data) + 1, data))
            return
        self.send_message({"OK": True, "Value": [True, data]})
        self.recv_message()  # the ack

    def checksum(self, data: bytes) -> tuple[str, str]:
        """The negotiated whole-file checksum of ``data``: ``(name, hex digest)``."""
        if not self.stream_mode:
            return "md5", hashlib.md5(data, usedforsecurity=False).hexdigest()
        if Feature.CRC32 in self.features:
            return "crc32", f"{zlib.crc32(data):08x}"
        return "sha256", hashlib.sha256(data).hexdigest()

    def send_end(self, data: bytes, *, digest: str | None = None) -> Any:
        """The end message for ``data`` (or with ``digest`` as given); stream mode returns the client's answer."""
        name, value = self.checksum(data)
        value = value if digest is None else digest
        if self.stream_mode:
            self.send_message({"OK": True, "Value": [False, {name: value, "size": len(data)}]})
            return self.recv_message()
        self.send_message({"OK": True, "Value": [False, value]})
        return None

    def send_data(self, data: bytes) -> Any:
        """``data`` as chunks and a correct end."""
        for start in range(0, len(data), CHUNK):
            self.send_chunk(data[start : start + CHUNK])
        return self.send_end(data)

    def send_result(self, result: Any) -> None:
        self.send_message(result)

    def ping(self, ping_id: str = "hostile") -> None:
        self.send_message({"OK": True, "Value": {"id": ping_id, "kaping": True}}, keepalive=True)

    def keep_pinging(self, interval: float = 0.2, limit: float = 60.0) -> float:
        """Send keepalive pings and nothing else until the client gives up (or ``limit``); returns the seconds."""
        started = time.monotonic()
        while time.monotonic() - started < min(limit, MAX_SECONDS):
            try:
                self.ping()
            except (RPCFrameworkError, OSError):
                break
            if self.client_closed(interval):
                break
        return time.monotonic() - started


Script = Callable[[HostilePeer], None]


class HostileServer:
    """Accepts TLS connections on 127.0.0.1 and runs ``script`` on each, in its own thread."""

    def __init__(
        self, tls: TLSConfig, script: Script, *, backend: str = "pyopenssl", service: str = "Hostile/Server"
    ) -> None:
        self.tls = tls
        self.script = script
        self.backend = get_backend(backend)
        self.service = service
        self.errors: list[BaseException] = []
        self.results: list[Any] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, name="hostile-accept", daemon=True)

    @property
    def url(self) -> str:
        return f"dips://127.0.0.1:{self.port}/{self.service}"

    def __enter__(self) -> HostileServer:
        self._acceptor.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def wait(self, timeout: float = 30.0) -> list[Any]:
        """Wait for the scripts of the connections so far to end; returns what they returned."""
        end = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, end - time.monotonic()))
        return self.results

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._acceptor.is_alive():
            self._acceptor.join(timeout)
        for thread in self._threads:
            thread.join(timeout)
        self._listener.close()

    def _accept_loop(self) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        while not self._stop.is_set() and time.monotonic() < deadline:
            readable, _, _ = select.select([self._listener], [], [], 0.05)
            if not readable:
                continue
            with contextlib.suppress(BlockingIOError):
                sock, _ = self._listener.accept()
                sock.setblocking(True)
                self.connections += 1
                thread = threading.Thread(target=self._serve, args=(sock,), name="hostile-peer", daemon=True)
                self._threads.append(thread)
                thread.start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            stream = self.backend.wrap_server(sock, self.tls, handshake_timeout=10.0)
        except (RPCFrameworkError, OSError) as exc:
            self.errors.append(exc)
            return
        try:
            self.results.append(self.script(HostilePeer(stream)))
        except BaseException as exc:  # kept for the test to inspect
            self.errors.append(exc)
        finally:
            stream.close()
