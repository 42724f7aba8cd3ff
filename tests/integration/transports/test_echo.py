"""Round trips and identities over real sockets, for every client/server back-end pairing."""

from __future__ import annotations

import os
import shutil
import socket

import pytest

from rpcframework.errors import ConfigurationError, CredentialsError, DeadlineExceeded
from rpcframework.security.x509 import PeerIdentity
from rpcframework.transports.base import Stream, TLSConfig, get_backend

TLS_PAIRS = [
    pytest.param(c, s, id=f"{c}-to-{s}", marks=[pytest.mark.m2crypto] if "m2crypto" in (c, s) else [])
    for c in ("pyopenssl", "m2crypto")
    for s in ("pyopenssl", "m2crypto")
]
ALL_PAIRS = [pytest.param("plain", "plain", id="plain-to-plain"), *TLS_PAIRS]
TLS_BACKENDS = ["pyopenssl", pytest.param("m2crypto", marks=pytest.mark.m2crypto)]
PAYLOADS = [pytest.param(b"x", id="1B"), pytest.param(os.urandom(100), id="100B"), pytest.param(None, id="4MiB")]
FOUR_MIB = os.urandom(4 << 20)


def _connect(creds, client: str, server, tls: TLSConfig | None = None, **kw) -> Stream:
    if client == "plain":
        return get_backend("plain").connect(server.host, server.port, tls=None)
    tls = tls or creds.client_tls()
    return get_backend(client).connect(kw.pop("host", "localhost"), server.port, tls=tls, **kw)


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize(("client", "server_backend"), ALL_PAIRS)
def test_echo_round_trip(creds, echo_server, roundtrip, client, server_backend, payload):
    server = echo_server(server_backend)
    data = FOUR_MIB if payload is None else payload
    stream = _connect(creds, client, server)
    try:
        stream.settimeout(10)
        assert roundtrip(stream, data) == data
        assert roundtrip(stream, data) == data  # the connection stays usable
    finally:
        stream.close()
    assert stream.fileno() == -1


@pytest.mark.parametrize(("client", "server_backend"), TLS_PAIRS)
def test_identities_both_sides_with_proxy(creds, echo_server, client, server_backend):
    server = echo_server(server_backend)
    stream = _connect(creds, client, server)
    try:
        seen = server.next_result()
        assert isinstance(seen, PeerIdentity)
        assert seen.dn == creds.user.dn == "/DC=org/DC=rpcframework/OU=Users/CN=dev-user"
        assert seen.is_proxy and not seen.is_limited_proxy
        assert seen.address is not None and seen.address[0] == "127.0.0.1"
        assert stream.peer_identity is not None
        assert stream.peer_identity.dn == creds.host.dn
        assert not stream.peer_identity.is_proxy
        assert stream.peer_address == ("127.0.0.1", server.port)
    finally:
        stream.close()


@pytest.mark.parametrize(("client", "server_backend"), TLS_PAIRS)
def test_proxy_of_proxy_maps_to_user(creds, echo_server, roundtrip, client, server_backend):
    server = echo_server(server_backend)
    stream = _connect(creds, client, server, creds.client_tls(creds.proxy_of_proxy))
    try:
        assert roundtrip(stream, b"hello") == b"hello"
        seen = server.next_result()
        assert isinstance(seen, PeerIdentity)
        assert seen.dn == creds.user.dn and seen.is_proxy
        assert seen.subject.count("/CN=") == 3  # user CN + two proxy CNs
    finally:
        stream.close()


@pytest.mark.parametrize(("client", "server_backend"), TLS_PAIRS)
def test_limited_proxy_accepted_and_flagged(creds, echo_server, client, server_backend):
    server = echo_server(server_backend)
    stream = _connect(creds, client, server, creds.client_tls(creds.limited_proxy))
    try:
        seen = server.next_result()
        assert isinstance(seen, PeerIdentity)
        assert seen.dn == creds.user.dn and seen.is_proxy and seen.is_limited_proxy
    finally:
        stream.close()


@pytest.mark.parametrize(("client", "server_backend"), TLS_PAIRS)
def test_plain_certificate_client_and_ip_address_name(creds, echo_server, client, server_backend):
    """A user certificate + key (no proxy), connecting by IP: the name check uses the host's IP SAN."""
    server = echo_server(server_backend)
    tls = creds.client_tls(creds.user.cert_file, creds.user.key_file)
    stream = _connect(creds, client, server, tls, host="127.0.0.1")
    try:
        seen = server.next_result()
        assert isinstance(seen, PeerIdentity) and seen.dn == creds.user.dn and not seen.is_proxy
    finally:
        stream.close()


@pytest.mark.parametrize(("client", "server_backend"), TLS_PAIRS)
def test_ipv6_loopback(creds, make_server, roundtrip, client, server_backend):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = make_server(server_backend, creds.server_tls(), host="::1")
    except OSError:
        pytest.skip("::1 is not available")
    stream = get_backend(client).connect("::1", server.port, tls=creds.client_tls())
    try:
        assert roundtrip(stream, b"v6") == b"v6"
        assert stream.peer_address[0] == "::1"
        seen = server.next_result()
        assert isinstance(seen, PeerIdentity) and seen.address is not None and seen.address[0] == "::1"
    finally:
        stream.close()


@pytest.mark.parametrize(("client", "server_backend"), ALL_PAIRS)
def test_peer_close_gives_empty_recv(creds, echo_server, client, server_backend):
    """A peer that closes makes recv return b"" (not an exception), then keeps returning b""."""
    server = echo_server(server_backend)
    stream = _connect(creds, client, server)
    try:
        stream.settimeout(5)
        stream.send_all(b"!close")
        assert stream.recv(100) == b""
        assert stream.recv(100) == b""
    finally:
        stream.close()
    stream.close()  # idempotent


@pytest.mark.parametrize(("client", "server_backend"), ALL_PAIRS)
def test_recv_into_fills_a_buffer_then_reports_the_end(creds, echo_server, client, server_backend):
    """recv_into (bulk data read in place): 4 MiB echoed into one bytearray, in pieces, then 0 at the close."""
    server = echo_server(server_backend)
    stream = _connect(creds, client, server)
    try:
        stream.settimeout(10)
        target = bytearray(len(FOUR_MIB))
        view = memoryview(target)
        filled = 0
        for start in range(0, len(FOUR_MIB), 256 * 1024):
            stream.send_all(FOUR_MIB[start : start + 256 * 1024])
            for _ in range(1000):  # read back what was just sent (no buffer fills up on either side)
                if filled >= start + min(256 * 1024, len(FOUR_MIB) - start):
                    break
                size = stream.recv_into(view[filled:])
                assert size > 0
                filled += size
        assert target == FOUR_MIB
        stream.send_all(b"!close")
        assert stream.recv_into(memoryview(bytearray(10))) == 0
    finally:
        stream.close()


@pytest.mark.parametrize(("client", "server_backend"), ALL_PAIRS)
def test_recv_timeout_then_still_usable(creds, echo_server, roundtrip, client, server_backend):
    server = echo_server(server_backend)
    stream = _connect(creds, client, server)
    try:
        stream.settimeout(0.2)
        with pytest.raises(DeadlineExceeded):
            stream.recv(10)
        stream.settimeout(5)
        assert roundtrip(stream, b"after") == b"after"
    finally:
        stream.close()


@pytest.mark.parametrize(("client", "server_backend"), TLS_PAIRS)
def test_pending_counts_buffered_plaintext(creds, echo_server, client, server_backend):
    server = echo_server(server_backend)
    stream = _connect(creds, client, server)
    try:
        stream.settimeout(5)
        stream.send_all(b"y" * 100)
        first = stream.recv(1)
        assert first == b"y"
        assert stream.pending() == 99  # one TLS record, already decrypted: a selector would not see it
        assert stream.recv(1000) == b"y" * 99
        assert stream.pending() == 0
    finally:
        stream.close()


@pytest.mark.parametrize("server_backend", TLS_BACKENDS)
def test_session_resumption_keeps_identity(creds, echo_server, roundtrip, server_backend):
    """Our servers resume sessions statefully (the verified chain stays in their cache), so the resumed connection
    still shows the user behind the proxy (more in test_resumption.py)."""
    server = echo_server(server_backend)
    backend = get_backend("pyopenssl", session_reuse=True)
    reused = []
    for _ in range(2):
        stream = backend.connect("localhost", server.port, tls=creds.client_tls())
        try:
            assert roundtrip(stream, b"s") == b"s"  # TLS 1.3 tickets arrive after the handshake
            reused.append(stream.session_reused)  # type: ignore[attr-defined]
            assert stream.peer_identity is not None and stream.peer_identity.dn == creds.host.dn
        finally:
            stream.close()
        seen = server.next_result()
        assert isinstance(seen, PeerIdentity) and seen.dn == creds.user.dn and seen.is_proxy
    assert reused == [False, True]


@pytest.mark.parametrize("backend_name", TLS_BACKENDS)
def test_context_built_once_and_reloaded_on_change(creds, echo_server, tmp_path, backend_name):
    server = echo_server("pyopenssl")
    proxy = tmp_path / "proxy.pem"
    shutil.copy(creds.user.proxy_file, proxy)
    backend = get_backend(backend_name, reload_interval=0.0)
    tls = creds.client_tls(proxy)
    for _ in range(3):
        backend.connect("localhost", server.port, tls=tls).close()
        assert server.next_result().dn == creds.user.dn  # type: ignore[union-attr]
    assert backend.contexts.builds == 1  # type: ignore[attr-defined]
    shutil.copy(creds.proxy_of_proxy, proxy)  # a renewed proxy: a new file under the same name
    os.utime(proxy, ns=(1, 1))  # make sure the fingerprint differs even within one mtime tick
    backend.connect("localhost", server.port, tls=tls).close()
    assert backend.contexts.builds == 2  # type: ignore[attr-defined]
    assert server.next_result().subject.count("/CN=") == 3  # type: ignore[union-attr]


def test_get_backend_rejects_unknown_name():
    with pytest.raises(ConfigurationError, match="pyopenssl"):
        get_backend("stunnel")


def test_missing_m2crypto_explains_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "M2Crypto" else real(name, *a))
    with pytest.raises(ConfigurationError, match=r"rpcframework\[m2crypto\]"):
        get_backend("m2crypto")


def test_tls_config_validation(creds):
    with pytest.raises(ConfigurationError, match="ca_dir"):
        TLSConfig(cert_file="x.pem")
    with pytest.raises(ConfigurationError, match="crl_mode"):
        TLSConfig(ca_dir="/x", crl_mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="clients"):
        get_backend("pyopenssl").prepare_server(creds.server_tls(verify_peer=False))
    with pytest.raises(ConfigurationError):
        get_backend("plain").connect("localhost", 1, tls=creds.client_tls())


@pytest.mark.parametrize("backend_name", TLS_BACKENDS)
def test_unreadable_credentials_are_credentials_errors(creds, tmp_path, backend_name):
    backend = get_backend(backend_name)
    with pytest.raises(CredentialsError, match=r"missing\.pem"):
        backend.prepare_server(TLSConfig(cert_file=str(tmp_path / "missing.pem"), ca_dir=str(creds.ca.cert_dir)))
    wrong_key = TLSConfig(
        cert_file=str(creds.host.cert_file), key_file=str(creds.user.key_file), ca_dir=str(creds.ca.cert_dir)
    )
    with pytest.raises(CredentialsError):
        backend.prepare_server(wrong_key)
    with pytest.raises(CredentialsError, match="server needs a certificate"):
        backend.prepare_server(TLSConfig(ca_dir=str(creds.ca.cert_dir)))
