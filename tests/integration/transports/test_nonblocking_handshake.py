"""The non-blocking server handshake (``Backend.start_server_handshake``) driven by a selector, as a reactor does."""

from __future__ import annotations

import selectors
import socket
import threading
import time

import pytest

from rpcframework.errors import PeerVerificationError, RPCFrameworkError
from rpcframework.security.x509 import PeerIdentity
from rpcframework.transports.base import HandshakeStatus, ServerHandshake, Stream, TLSConfig, get_backend

SERVER_BACKENDS = ["plain", "pyopenssl", pytest.param("m2crypto", marks=pytest.mark.m2crypto)]
TLS_SERVER_BACKENDS = SERVER_BACKENDS[1:]


def _drive(handshake: ServerHandshake, timeout: float = 10.0) -> tuple[Stream, int]:
    """Step ``handshake`` whenever its socket is ready; return the stream and the number of steps."""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for steps in range(1, 1000):
            status = handshake.step()
            if status is HandshakeStatus.DONE:
                return handshake.stream(), steps
            event = selectors.EVENT_READ if status is HandshakeStatus.WANT_READ else selectors.EVENT_WRITE
            selector.register(handshake.fileno(), event)
            ready = selector.select(max(deadline - time.monotonic(), 0))
            selector.unregister(handshake.fileno())
            if not ready:
                handshake.close()
                raise TimeoutError("handshake deadline")
    raise AssertionError("handshake did not finish in 1000 steps")


def _accept_pair(backend: str, creds, client_tls=None):
    """Listen, connect a client in a thread (blocking API), start the server handshake on the accepted socket."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    result: dict[str, object] = {}

    def connect() -> None:
        try:
            if backend == "plain":
                result["stream"] = get_backend("plain").connect("127.0.0.1", port, tls=None)
            else:
                result["stream"] = get_backend("pyopenssl").connect(
                    "localhost", port, tls=client_tls or creds.client_tls(), handshake_timeout=10
                )
        except Exception as exc:
            result["error"] = exc

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    listener.settimeout(10)
    sock, _ = listener.accept()
    listener.close()
    tls = None if backend == "plain" else creds.server_tls()
    return get_backend(backend).start_server_handshake(sock, tls), thread, result


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_handshake_steps_to_a_working_stream(creds, backend):
    handshake, thread, result = _accept_pair(backend, creds)
    stream, steps = _drive(handshake)
    thread.join(10)
    client = result["stream"]
    try:
        if backend == "plain":
            assert steps == 1 and stream.peer_identity is None
        else:
            # How many WANT_READ steps happen depends on scheduling (the client's flights may already be there).
            assert steps >= 1
            assert isinstance(stream.peer_identity, PeerIdentity)
            assert stream.peer_identity.dn == creds.user.dn
        assert handshake.step() is HandshakeStatus.DONE  # idempotent once done
        stream.settimeout(5)
        client.settimeout(5)
        client.send_all(b"ping")
        assert stream.recv(10) == b"ping"
        stream.send_all(b"pong")
        assert client.recv(10) == b"pong"
    finally:
        client.close()
        stream.close()


@pytest.mark.parametrize("backend", TLS_SERVER_BACKENDS)
def test_a_silent_client_never_blocks_step(creds, backend):
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    sock, _ = listener.accept()
    listener.close()
    handshake = get_backend(backend).start_server_handshake(sock, creds.server_tls())
    started = time.monotonic()
    for _ in range(5):
        assert handshake.step() is HandshakeStatus.WANT_READ
    # Five steps that must not wait for the silent client at all (a blocking step would wait forever here).
    assert time.monotonic() - started < 0.5
    handshake.close()
    handshake.close()  # idempotent
    assert handshake.fileno() == -1
    client.settimeout(5)
    assert client.recv(10) == b""  # the server side is gone
    client.close()


@pytest.mark.parametrize("backend", TLS_SERVER_BACKENDS)
def test_a_client_speaking_plain_text_fails_with_a_typed_error(creds, backend):
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    sock, _ = listener.accept()
    listener.close()
    handshake = get_backend(backend).start_server_handshake(sock, creds.server_tls())
    client.sendall(b'27:{"OK": true, "Value": null}' * 4)
    with pytest.raises(RPCFrameworkError):
        _drive(handshake, timeout=5)
    assert handshake.fileno() == -1
    client.close()


@pytest.mark.parametrize("backend", TLS_SERVER_BACKENDS)
def test_a_client_without_certificate_is_refused(creds, backend):
    anonymous = TLSConfig(ca_dir=str(creds.ca.cert_dir))  # verifies the server, presents no certificate
    handshake, thread, result = _accept_pair(backend, creds, client_tls=anonymous)
    with pytest.raises((PeerVerificationError, RPCFrameworkError)):
        _drive(handshake, timeout=5)
    thread.join(10)
    stream = result.get("stream")
    if isinstance(stream, Stream):
        stream.close()
