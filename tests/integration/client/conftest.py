"""Scripted servers for the client's network tests, on 127.0.0.1 with certificates made at test time.

* :class:`DiracPeer` answers exactly as the captured DIRAC 9.1.22 service does (``data/dirac-9.1.22-frames.json``):
  the raw ack ``27:{"OK": true, "Value": null}``, the result, then it closes. Built on ``transports`` + raw frames.
* :class:`ExtensionPeer` is an rpcframework-style server on ``protocol.ServerConnection``: it negotiates our
  extensions, reuses connections, answers keepalives, and can be told to misbehave (die after the ack, answer
  slowly, drop idle connections) or to attack the client (the hostile-server kit: :class:`Behaviour`'s
  ``after_result`` sends a reply nobody asked for, ``raw_result`` any bytes in place of the result).

Both record what they saw (connections, frames, executions) for the tests to assert on.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.credentials import DevCreds
from support.servers import LoopbackServer

from rpcframework.codec import Encoding, decode, encode
from rpcframework.config import ConfigTree, load_dict
from rpcframework.errors import RPCFrameworkError
from rpcframework.protocol import (
    NEED_DATA,
    ArgumentsReceived,
    ConnectionClosed,
    Extensions,
    FrameDecoder,
    ProposalReceived,
    ServerConnection,
    encode_frame,
)
from rpcframework.returnvalues import S_ERROR, S_OK, DReturn
from rpcframework.security.devca import DevCA, IssuedCredential
from rpcframework.security.x509 import PeerIdentity
from rpcframework.transports import Backend, Stream, TLSConfig, get_backend

DATA = Path(__file__).parent / "data"
FRAMES: dict[str, str] = json.loads((DATA / "dirac-9.1.22-frames.json").read_text())


@dataclass(frozen=True)
class Creds(DevCreds):
    other_name_host: IssuedCredential  # valid, but named other.example: a client connecting to 127.0.0.1 refuses it

    def config(self) -> ConfigTree:
        """Client configuration: the CA directory and the host certificate (for useCertificates)."""
        return load_dict({"DIRAC": {"Security": self.security_section()}}, "<client tests>")

    def client_options(self, **extra: Any) -> dict[str, Any]:
        """Options for a user client with the dev proxy."""
        return {"proxyLocation": str(self.user.proxy_file), "config": self.config(), **extra}


@pytest.fixture(scope="session")
def creds(rpcframework_dev_ca: DevCA, tmp_path_factory: pytest.TempPathFactory) -> Creds:
    directory = tmp_path_factory.mktemp("client-other-name-host")
    other = rpcframework_dev_ca.issue_host("other.example", sans=["DNS:other.example"], directory=directory)
    return Creds.of(rpcframework_dev_ca, other_name_host=other)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def closed_port() -> Callable[[], int]:
    """Returns loopback ports with nobody listening (connections are refused)."""
    return _closed_port


@pytest.fixture(scope="session")
def frames() -> dict[str, str]:
    """The captured DIRAC 9.1.22 frames (``data/dirac-9.1.22-frames.json``)."""
    return FRAMES


class _Server(LoopbackServer):
    """Accept loop on 127.0.0.1; one daemon thread per connection runs :meth:`serve`."""

    def __init__(self, backend: Backend, tls: TLSConfig | None) -> None:
        super().__init__()
        self.backend = backend
        self.tls = tls
        self.lock = threading.Lock()
        self.connections = 0
        self.handshake_errors: list[BaseException] = []
        self.open_streams: list[Stream] = []
        self.start()

    @property
    def scheme(self) -> str:
        return "dip" if self.tls is None else "dips"

    def url(self, path: str = "Bench/EchoPlain", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}/{path}"

    def accepted(self, sock: socket.socket) -> None:
        with self.lock:
            self.connections += 1

    def handle(self, sock: socket.socket) -> None:
        sock.settimeout(None)
        try:
            stream = self.backend.wrap_server(sock, self.tls, handshake_timeout=5.0)
        except Exception as exc:
            with self.lock:
                self.handshake_errors.append(exc)
            return
        stream.settimeout(20.0)
        with self.lock:
            self.open_streams.append(stream)
        try:
            self.serve(stream)
        except RPCFrameworkError:
            pass  # the client went away; a server just drops the connection
        finally:
            stream.close()
            with self.lock:
                self.open_streams.remove(stream)

    def serve(self, stream: Stream) -> None:
        raise NotImplementedError

    def client_ports(self) -> list[int]:
        """The clients' ports of the open connections (for ``support.wire.wait_delivered``)."""
        with self.lock:
            return [stream.peer_address[1] for stream in self.open_streams]

    def drop_all_connections(self) -> None:
        """Close every open connection from the server side (a restart, or an idle timeout)."""
        with self.lock:
            streams = list(self.open_streams)
        for stream in streams:
            duplicate = socket.socket(fileno=os.dup(stream.fileno()))
            stream.close()  # the TLS close, as the back end does it
            with duplicate, contextlib.suppress(OSError):
                # The TCP close now, as a restarting server's: a thread blocked reading the stream must not hold
                # the socket open (some back ends close only once no call is inside the socket).
                duplicate.shutdown(socket.SHUT_RDWR)

    def stop(self, timeout: float = 2.0) -> None:
        super().stop(timeout)
        self.drop_all_connections()


class DiracPeer(_Server):
    """A DIRAC 9.1.22 service as captured: raw ack, result, close. Knows ``echo`` and ``add``."""

    def __init__(self, backend: Backend, tls: TLSConfig | None) -> None:
        super().__init__(backend, tls)
        self.received: list[list[bytes]] = []  # raw frames (header included) per connection
        self.executions = 0

    def serve(self, stream: Stream) -> None:
        frames: list[bytes] = []
        with self.lock:
            self.received.append(frames)
        decoder = FrameDecoder()
        for _ in range(1000):
            frame = decoder.next_frame()
            if frame is None:
                data = stream.recv(65536)
                if not data:
                    return  # the client closed (e.g. after refusing to send keyword arguments)
                decoder.feed(data)
                continue
            frames.append(encode_frame(frame.payload))
            if len(frames) == 1:
                stream.send_all(FRAMES["ack"].encode())
                continue
            stream.send_all(self._result(frame.payload))
            return  # DIRAC closes after the result

    def _result(self, payload: bytes) -> bytes:
        with self.lock:
            self.executions += 1
        message, _ = decode(payload, Encoding.JSON)
        args = message["Value"]
        if not isinstance(args, list):
            return FRAMES["dict_arguments_result"].encode()
        method = json.loads(self.received[-1][0].split(b":", 1)[1])["Value"][1][1]
        if method == "add":
            result = S_OK(args[0] + args[1])
        elif method == "echo":
            result = S_OK(args[0])
        else:
            result = S_ERROR(f"Unknown method {method}")
        return encode_frame(encode(result, Encoding.JSON))


Handler = Callable[[str, list[Any], dict[str, Any]], DReturn]


def default_handler(method: str, args: list[Any], kwargs: dict[str, Any]) -> DReturn:
    if method == "echo":
        return S_OK(args[0] if args and not kwargs else {"args": args, "kwargs": kwargs})
    if method == "add":
        return S_OK(sum(args))
    if method == "sleep":
        time.sleep(float(args[0]))  # fault injection: a slow method, for the client's deadlines (bounded by args)
        return S_OK("slept")
    return S_ERROR(f"Unknown method {method}")


@dataclass
class Behaviour:
    """What an :class:`ExtensionPeer` does; tests change it while the server runs."""

    handler: Handler = default_handler
    extensions: Extensions | None = field(default_factory=Extensions)
    die_after_accept: bool = False  # ack the proposal, read the arguments, close without a result
    refuse: DReturn | None = None
    # The hostile-server kit:
    after_result: bytes = b""  # raw bytes sent after each result: frames nobody asked for
    after_result_delay: float = 0.0  # 0: in the result's own write; > 0: that much later, in a write of their own
    raw_result: bytes | None = None  # raw bytes sent in place of the encoded result (foreign keys, odd values)


class ExtensionPeer(_Server):
    """An extension-aware server on ``protocol.ServerConnection``."""

    def __init__(self, backend: Backend, tls: TLSConfig | None) -> None:
        super().__init__(backend, tls)
        self.behaviour = Behaviour()
        self.executions = 0
        self.proposals: list[Any] = []
        self.identities: list[PeerIdentity | None] = []  # the client's verified identity, per proposal
        self.pings = 0
        self.unsolicited_sent = 0  # writes of ``after_result`` bytes made

    def serve(self, stream: Stream) -> None:
        behaviour = self.behaviour
        conn = ServerConnection(extensions=behaviour.extensions)
        for _ in range(1_000_000):
            event = conn.next_event()
            if event is NEED_DATA:
                owed = conn.data_to_send()
                if owed:
                    stream.send_all(owed)
                    with self.lock:  # counted once sent: a test that sees the count may wait for the delivery
                        self.pings += owed.count(b"dka")
                conn.receive_data(stream.recv(65536))
            elif isinstance(event, ProposalReceived):
                with self.lock:
                    self.proposals.append(event.proposal)
                    self.identities.append(stream.peer_identity)
                if behaviour.refuse is not None:
                    stream.send_all(conn.refuse(behaviour.refuse))  # type: ignore[arg-type]
                else:
                    stream.send_all(conn.accept())
            elif isinstance(event, ArgumentsReceived):
                with self.lock:
                    self.executions += 1
                if behaviour.die_after_accept:
                    return
                proposal = conn.proposal
                assert proposal is not None
                result = behaviour.handler(proposal.action_name, event.args, event.kwargs)
                self._send_result(stream, conn.send_result(result), behaviour)
            elif isinstance(event, ConnectionClosed):
                return

    def _send_result(self, stream: Stream, data: bytes, behaviour: Behaviour) -> None:
        if behaviour.raw_result is not None:
            data = _ack_prefix(data) + behaviour.raw_result
        extra = behaviour.after_result
        if extra and not behaviour.after_result_delay:
            data += extra
        stream.send_all(data)
        if extra and behaviour.after_result_delay:
            time.sleep(behaviour.after_result_delay)  # fault injection: unsolicited bytes sent later, while idle
            stream.send_all(extra)
        if extra:
            with self.lock:
                self.unsolicited_sent += 1


_ACK_FRAME = encode_frame(b'{"OK": true, "Value": null}')


def _ack_prefix(data: bytes) -> bytes:
    """The ack a pipelined exchange sends in front of its result (nothing for a two-round-trip exchange)."""
    return _ACK_FRAME if data.startswith(_ACK_FRAME) and len(data) > len(_ACK_FRAME) else b""


_KINDS: dict[str, type[_Server]] = {"dirac": DiracPeer, "ext": ExtensionPeer}


@pytest.fixture
def servers() -> Iterator[Callable[..., Any]]:
    """Start scripted servers for one test: ``servers("dirac"|"ext", "plain", tls)``; all stopped afterwards."""
    started: list[_Server] = []

    def start(kind: str, backend: str, tls: TLSConfig | None = None) -> Any:
        server = _KINDS[kind](get_backend(backend), tls)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
