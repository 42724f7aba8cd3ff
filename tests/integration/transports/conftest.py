"""Fixtures for the transport tests: the plugin's session dev CA, credentials for every bad case,
and threaded echo servers built on the server-side API (``Backend.wrap_server``) on 127.0.0.1, port 0."""

from __future__ import annotations

import datetime
import queue
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.credentials import DevCreds
from support.servers import LoopbackServer

from rpcframework.errors import RPCFrameworkError
from rpcframework.security.devca import DevCA, IssuedCredential
from rpcframework.transports.base import Backend, Stream, TLSConfig, get_backend

CLOSE_COMMAND = b"!close"  # tells the echo server to close the connection (test of peer-closed semantics)


@dataclass(frozen=True)
class Credentials(DevCreds):
    """Every credential the tests need, from the session dev CA (plus a foreign CA). The extra ones are issued in
    this folder's own directories; the revoked user is revoked in the session CA's CRL (no other test uses it)."""

    proxy_of_proxy: Path
    limited_proxy: Path
    revoked_user: IssuedCredential
    expired_user: IssuedCredential
    future_user: IssuedCredential
    expired_host: IssuedCredential
    future_host: IssuedCredential
    other_name_host: IssuedCredential
    foreign_ca: DevCA


@pytest.fixture(scope="session")
def creds(rpcframework_dev_ca: DevCA, tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    root = tmp_path_factory.mktemp("transport-creds")
    ca = rpcframework_dev_ca
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)
    user = ca.default_user()
    assert user.proxy_file is not None
    proxy_of_proxy = root / "proxy-of-proxy.pem"
    ca.issue_proxy(user.proxy_file, user.proxy_file, proxy_of_proxy, hours=1)
    limited = root / "limited-proxy.pem"
    ca.issue_proxy(user.cert_file, user.key_file, limited, hours=1, limited=True)
    revoked = ca.issue_user("revoked-user", directory=root / "revoked-user")
    ca.revoke(revoked.cert_file)  # before any server of this folder starts: contexts never see a CRL without it
    return Credentials.of(
        ca,
        proxy_of_proxy=proxy_of_proxy,
        limited_proxy=limited,
        revoked_user=revoked,
        expired_user=ca.issue_user(
            "expired-user", not_before=now - 10 * day, not_after=now - day, directory=root / "expired-user"
        ),
        future_user=ca.issue_user(
            "future-user", not_before=now + day, not_after=now + 10 * day, directory=root / "future-user"
        ),
        expired_host=ca.issue_host("localhost", not_before=now - 10 * day, not_after=now - day, directory=root / "h1"),
        future_host=ca.issue_host("localhost", not_before=now + day, not_after=now + 10 * day, directory=root / "h2"),
        other_name_host=ca.issue_host("other.example", sans=["DNS:other.example"], directory=root / "other-name-host"),
        foreign_ca=DevCA.init(root / "foreign-ca"),
    )


class EchoServer(LoopbackServer):
    """Accepts on 127.0.0.1 (or ::1), handshakes with ``wrap_server`` and echoes until EOF or ``!close``.

    For every accepted connection exactly one handshake outcome (the stream's peer identity, ``None`` for plain, or
    the exception) goes to :attr:`results`, so a test can check what the server saw about *its* client.
    """

    def __init__(self, backend: Backend, tls: TLSConfig | None, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.backend = backend
        self.tls = tls
        self.results: queue.Queue[object] = queue.Queue()
        self.start()

    def handle(self, sock: socket.socket) -> None:
        sock.settimeout(None)
        try:
            stream = self.backend.wrap_server(sock, self.tls, handshake_timeout=5.0)
        except Exception as exc:
            self.results.put(exc)
            return
        self.results.put(stream.peer_identity)
        stream.settimeout(10.0)
        try:
            for _ in range(1_000_000):
                data = stream.recv(1 << 20)
                if not data or data == CLOSE_COMMAND:
                    break
                stream.send_all(data)
        except RPCFrameworkError:
            pass  # the client went away badly; the server just drops it
        finally:
            stream.close()

    def next_result(self, timeout: float = 10.0) -> object:
        return self.results.get(timeout=timeout)

    def drain(self) -> None:
        while not self.results.empty():
            self.results.get_nowait()


@pytest.fixture(scope="session")
def echo_servers(creds: Credentials) -> Iterator[dict[str, EchoServer]]:
    """One long-lived server per back end with the normal host credential (crl_mode auto -> chain)."""
    servers = {
        "plain": EchoServer(get_backend("plain"), None),
        "pyopenssl": EchoServer(get_backend("pyopenssl"), creds.server_tls()),
        "m2crypto": EchoServer(get_backend("m2crypto"), creds.server_tls()),
    }
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture
def echo_server(echo_servers: dict[str, EchoServer]) -> Callable[[str], EchoServer]:
    def pick(name: str) -> EchoServer:
        server = echo_servers[name]
        server.drain()
        return server

    return pick


@pytest.fixture
def make_server() -> Iterator[Callable[..., EchoServer]]:
    """A dedicated server for one test (other credentials or settings), stopped afterwards."""
    started: list[EchoServer] = []

    def make(backend: str, tls: TLSConfig | None, host: str = "127.0.0.1") -> EchoServer:
        server = EchoServer(get_backend(backend), tls, host)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def roundtrip() -> Callable[[Stream, bytes], bytes]:
    return echo


def echo(stream: Stream, payload: bytes) -> bytes:
    """Send ``payload`` and read the same number of bytes back, in chunks so neither side's buffers fill up."""
    received = bytearray()
    chunk = 256 * 1024
    for offset in range(0, len(payload), chunk):
        part = payload[offset : offset + chunk]
        stream.send_all(part)
        want = len(received) + len(part)
        for _ in range(100_000):
            if len(received) >= want:
                break
            data = stream.recv(1 << 20)
            assert data, "the server closed the connection mid-echo"
            received += data
    return bytes(received)
