"""Bad input, each with the typed error on the side that sees it, and the server still serving a good client after."""

from __future__ import annotations

import socket
import time

import pytest

from rpcframework.errors import (
    ConnectError,
    CredentialsError,
    DeadlineExceeded,
    HandshakeError,
    PeerVerificationError,
    RPCFrameworkError,
    SecurityError,
    TransportError,
)
from rpcframework.security.x509 import PeerIdentity
from rpcframework.transports.base import TLSConfig, get_backend

TLS_PAIRS = [
    pytest.param(c, s, id=f"{c}-to-{s}", marks=[pytest.mark.m2crypto] if "m2crypto" in (c, s) else [])
    for c in ("pyopenssl", "m2crypto")
    for s in ("pyopenssl", "m2crypto")
]
TLS_BACKENDS = ["pyopenssl", pytest.param("m2crypto", marks=pytest.mark.m2crypto)]


def _client_outcome(client: str, port: int, tls: TLSConfig, host: str = "localhost") -> Exception | None:
    """Connect, send and read one message; return the error the client saw (TLS 1.3 reports a refused client
    certificate only at the first read), or None when the round trip worked."""
    try:
        stream = get_backend(client).connect(host, port, tls=tls, handshake_timeout=5)
    except RPCFrameworkError as exc:
        return exc
    try:
        stream.settimeout(5)
        stream.send_all(b"ping")
        data = stream.recv(10)
        return None if data == b"ping" else ConnectionError(f"unexpected {data!r}")
    except RPCFrameworkError as exc:
        return exc
    finally:
        stream.close()


def _still_serves(creds, server, client: str = "pyopenssl") -> None:
    assert _client_outcome(client, server.port, creds.client_tls()) is None
    seen = server.next_result()
    assert isinstance(seen, PeerIdentity) and seen.dn == creds.user.dn


def _refused_client(creds, echo_server, client, server_backend, tls: TLSConfig, reason: str) -> None:
    """The server refuses the client's chain with PeerVerificationError naming ``reason``; the client gets a typed
    security/transport error; the server then serves a good client."""
    server = echo_server(server_backend)
    outcome = _client_outcome(client, server.port, tls)
    seen = server.next_result()
    assert isinstance(seen, PeerVerificationError), seen
    assert reason in str(seen)
    assert isinstance(outcome, SecurityError | TransportError), outcome
    _still_serves(creds, server)


@pytest.mark.parametrize(("client", "server_backend"), TLS_PAIRS)
def test_client_from_unknown_ca(creds, echo_server, client, server_backend):
    foreign = creds.foreign_ca.default_user()
    tls = creds.client_tls(foreign.proxy_file)
    _refused_client(creds, echo_server, client, server_backend, tls, "unknown CA")


@pytest.mark.parametrize(("client", "server_backend"), TLS_PAIRS)
def test_expired_client_certificate(creds, echo_server, client, server_backend):
    tls = creds.client_tls(creds.expired_user.cert_file, creds.expired_user.key_file)
    _refused_client(creds, echo_server, client, server_backend, tls, "expired")


@pytest.mark.parametrize(("client", "server_backend"), TLS_PAIRS)
def test_not_yet_valid_client_certificate(creds, echo_server, client, server_backend):
    tls = creds.client_tls(creds.future_user.cert_file, creds.future_user.key_file)
    _refused_client(creds, echo_server, client, server_backend, tls, "not yet valid")


@pytest.mark.parametrize(("client", "server_backend"), TLS_PAIRS)
def test_revoked_user_certificate(creds, echo_server, client, server_backend):
    tls = creds.client_tls(creds.revoked_user.cert_file, creds.revoked_user.key_file)
    _refused_client(creds, echo_server, client, server_backend, tls, "revoked")


@pytest.mark.parametrize(("client", "server_backend"), TLS_PAIRS)
def test_proxy_of_revoked_user_refused_in_chain_mode(creds, echo_server, client, server_backend):
    tls = creds.client_tls(creds.revoked_user.proxy_file)
    _refused_client(creds, echo_server, client, server_backend, tls, "revoked")


@pytest.mark.parametrize("server_backend", TLS_BACKENDS)
def test_leaf_crl_mode_misses_revoked_users_proxy(creds, make_server, server_backend):
    """Why "chain" is the mode to use: with leaf-only CRL checks the revoked user's proxy gets in."""
    server = make_server(server_backend, creds.server_tls(crl_mode="leaf"))
    assert _client_outcome("pyopenssl", server.port, creds.client_tls(creds.revoked_user.proxy_file)) is None
    assert server.next_result().dn == creds.revoked_user.dn  # type: ignore[union-attr]
    plain_cert = creds.client_tls(creds.revoked_user.cert_file, creds.revoked_user.key_file)
    assert _client_outcome("pyopenssl", server.port, plain_cert) is not None
    assert isinstance(server.next_result(), PeerVerificationError)


@pytest.mark.parametrize(("client", "server_backend"), TLS_PAIRS)
def test_client_without_certificate(creds, echo_server, client, server_backend):
    server = echo_server(server_backend)
    outcome = _client_outcome(client, server.port, TLSConfig(ca_dir=str(creds.ca.cert_dir)))
    seen = server.next_result()
    assert isinstance(seen, PeerVerificationError) and "no certificate" in str(seen)
    assert isinstance(outcome, CredentialsError), outcome  # the server's "certificate required" alert
    _still_serves(creds, server)


@pytest.mark.parametrize(
    ("host_attr", "reason"),
    [("expired_host", "expired"), ("future_host", "not yet valid"), ("other_name_host", "not valid for 'localhost'")],
)
@pytest.mark.parametrize(("client", "server_backend"), TLS_PAIRS)
def test_bad_server_certificate(creds, make_server, client, server_backend, host_attr, reason):
    server = make_server(server_backend, creds.server_tls(getattr(creds, host_attr)))
    outcome = _client_outcome(client, server.port, creds.client_tls())
    assert isinstance(outcome, PeerVerificationError), outcome
    assert reason in str(outcome)
    server.next_result()  # the server saw the client leave (alert or close): any outcome, but one per connection


@pytest.mark.parametrize(("client", "server_backend"), TLS_PAIRS)
def test_server_from_unknown_ca(creds, make_server, client, server_backend):
    foreign = creds.foreign_ca
    tls = TLSConfig(
        cert_file=str(foreign.default_host().cert_file),
        key_file=str(foreign.default_host().key_file),
        ca_dir=str(creds.ca.cert_dir),
    )
    server = make_server(server_backend, tls)
    outcome = _client_outcome(client, server.port, creds.client_tls())
    assert isinstance(outcome, PeerVerificationError) and "unknown CA" in str(outcome)
    seen = server.next_result()
    assert isinstance(seen, CredentialsError) and "unknown ca" in str(seen)  # the client's alert, as the server sees it
    # skipCACheck (verify_peer=False) connects anyway and claims no identity for the server.
    stream = get_backend(client).connect("localhost", server.port, tls=creds.client_tls(verify_peer=False))
    try:
        assert stream.peer_identity is None
    finally:
        stream.close()


@pytest.mark.parametrize("server_backend", TLS_BACKENDS)
def test_plain_bytes_to_tls_port(creds, echo_server, server_backend):
    server = echo_server(server_backend)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        raw.sendall(b"GET / HTTP/1.0\r\n\r\n" * 20)
        seen = server.next_result()
    assert isinstance(seen, HandshakeError), seen
    _still_serves(creds, server)


@pytest.mark.parametrize("client", TLS_BACKENDS)
def test_tls_client_to_plain_server(creds, echo_server, client):
    server = echo_server("plain")
    outcome = _client_outcome(client, server.port, creds.client_tls(), host="127.0.0.1")
    assert isinstance(outcome, HandshakeError | DeadlineExceeded | TransportError), outcome


@pytest.mark.parametrize("client", ["plain", *TLS_BACKENDS])
def test_connect_refused(creds, client):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tls = None if client == "plain" else creds.client_tls()
    with pytest.raises(ConnectError, match="cannot connect"):
        get_backend(client).connect("127.0.0.1", port, tls=tls, connect_timeout=2)


@pytest.mark.parametrize("client", TLS_BACKENDS)
def test_client_handshake_timeout(creds, client):
    """A TCP peer that accepts and never speaks: DeadlineExceeded within the handshake timeout."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            get_backend(client).connect(
                "127.0.0.1", silent.getsockname()[1], tls=creds.client_tls(), handshake_timeout=0.5
            )
        elapsed = time.monotonic() - start
    # A deadline test: it waited for the 0.5 s limit, and then stopped (generous upper bound: a shared machine).
    assert 0.4 <= elapsed < 5.0


@pytest.mark.parametrize("server_backend", TLS_BACKENDS)
def test_server_handshake_timeout(creds, server_backend):
    """A client that connects and never speaks cannot hold the server's handshake longer than its limit."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        idle = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            get_backend(server_backend).wrap_server(accepted, creds.server_tls(), handshake_timeout=0.5)
        # A deadline test: it waited for the 0.5 s limit, and then stopped (generous upper bound: a shared machine).
        assert 0.4 <= time.monotonic() - start < 5.0
        assert accepted.fileno() == -1  # wrap_server closed it
        idle.close()


def test_connect_timeout_is_deadline(monkeypatch):
    """An unroutable connect maps to DeadlineExceeded (simulated: loopback never times out)."""

    def slow_connect(self, address):
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket.socket, "connect", slow_connect)
    with pytest.raises(DeadlineExceeded):
        get_backend("plain").connect("127.0.0.1", 9, connect_timeout=0.1)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("client_backend", TLS_BACKENDS)
def test_a_record_injected_after_the_handshake_is_named_as_such(creds, client_backend):
    """Bytes injected into an established TLS connection (a record that does not decrypt) are reported as an
    altered record, not as a failed handshake (the attack run on the asyncio client found that wording)."""
    import os
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    done = threading.Event()

    def serve() -> None:
        sock, _ = listener.accept()
        stream = get_backend("pyopenssl").wrap_server(sock, creds.server_tls(), handshake_timeout=10)
        sock.sendall(b"\x17\x03\x03\x00\x30" + os.urandom(48))  # application data no key of ours made
        done.wait(10)
        stream.close()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    client = type(get_backend(client_backend))().connect(
        "localhost", port, tls=creds.client_tls(), handshake_timeout=10
    )
    try:
        client.settimeout(10)
        with pytest.raises(TransportError) as caught:
            client.recv(1024)
    finally:
        done.set()
        client.close()
        server.join(10)
        listener.close()
    assert not isinstance(caught.value, HandshakeError), caught.value
    assert "a TLS record was refused" in str(caught.value), caught.value
