"""TLS session resumption on our servers: on by default, stateful (the client chain verified by the full handshake
stays in the server's cache, so a resumed proxy still maps to its user), bounded in time and size, and never a way
around a revocation or an expiry. Real sockets on 127.0.0.1, certificates made by the test."""

from __future__ import annotations

import datetime
import selectors
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rpcframework.client import Client, RPCClient
from rpcframework.config import ConfigTree, load_dict
from rpcframework.config.settings import read_security_settings
from rpcframework.errors import ConfigurationError, CredentialsError, PeerVerificationError, RPCFrameworkError
from rpcframework.security.devca import DevCA
from rpcframework.security.x509 import PeerIdentity, identity_from_chain
from rpcframework.server import RequestHandler, Service, ServiceReactor
from rpcframework.transports.base import (
    Backend,
    HandshakeStatus,
    ServerHandshake,
    Stream,
    TLSConfig,
    check_resumed_identity,
    get_backend,
)

TLS_BACKENDS = ["pyopenssl", pytest.param("m2crypto", marks=pytest.mark.m2crypto)]


def _connect(backend: Backend, port: int, tls: TLSConfig, roundtrip) -> bool:
    """One connection with one echo; whether it resumed a session. TLS 1.3 session IDs arrive after the handshake,
    so the echo is what lets the client keep one."""
    stream = backend.connect("localhost", port, tls=tls, handshake_timeout=10)
    try:
        assert roundtrip(stream, b"ping") == b"ping"
        return bool(stream.session_reused)  # type: ignore[attr-defined]
    finally:
        stream.close()


def _seen(server) -> PeerIdentity:
    seen = server.next_result()
    assert isinstance(seen, PeerIdentity), seen
    return seen


@pytest.mark.parametrize("server_backend", TLS_BACKENDS)
def test_resumed_sessions_keep_the_user_behind_a_proxy(creds, make_server, roundtrip, server_backend):
    server = make_server(server_backend, creds.server_tls())
    for proxy, proxy_steps in ((creds.user.proxy_file, 1), (creds.proxy_of_proxy, 2)):
        client = get_backend("pyopenssl")  # session reuse is the default
        reused = [_connect(client, server.port, creds.client_tls(proxy), roundtrip) for _ in range(3)]
        assert reused == [False, True, True]
        for _ in reused:
            seen = _seen(server)
            assert seen.dn == creds.user.dn and seen.is_proxy and not seen.is_limited_proxy
            assert seen.subject.count("/CN=") == 1 + proxy_steps  # the proxy itself, not just the user certificate


@pytest.mark.parametrize("server_backend", TLS_BACKENDS)
def test_a_limited_proxy_stays_limited_when_resumed(creds, make_server, roundtrip, server_backend):
    server = make_server(server_backend, creds.server_tls())
    client = get_backend("pyopenssl")
    assert [_connect(client, server.port, creds.client_tls(creds.limited_proxy), roundtrip) for _ in range(2)] == [
        False,
        True,
    ]
    assert [_seen(server).is_limited_proxy for _ in range(2)] == [True, True]


@pytest.mark.parametrize("server_backend", TLS_BACKENDS)
def test_session_lifetime_zero_turns_resumption_off(creds, make_server, roundtrip, server_backend):
    server = make_server(server_backend, creds.server_tls(session_lifetime=0))
    client = get_backend("pyopenssl")
    assert [_connect(client, server.port, creds.client_tls(), roundtrip) for _ in range(3)] == [False] * 3
    assert all(_seen(server).dn == creds.user.dn for _ in range(3))


def test_a_client_can_opt_out(creds, make_server, roundtrip):
    server = make_server("pyopenssl", creds.server_tls())
    client = get_backend("pyopenssl", session_reuse=False)
    assert [_connect(client, server.port, creds.client_tls(), roundtrip) for _ in range(2)] == [False, False]


def test_sessions_are_not_shared_between_identities(creds, make_server, roundtrip):
    """One client back end, two credentials: each resumes only its own session, and the server sees each user."""
    server = make_server("pyopenssl", creds.server_tls())
    client = get_backend("pyopenssl")
    other = creds.ca.issue_user("resumption-other-user")
    first = creds.client_tls()
    second = creds.client_tls(other.proxy_file)
    order = [first, second, first, second]
    assert [_connect(client, server.port, tls, roundtrip) for tls in order] == [False, False, True, True]
    assert [_seen(server).dn for _ in order] == [creds.user.dn, other.dn, creds.user.dn, other.dn]


@pytest.mark.parametrize("server_backend", TLS_BACKENDS)
def test_a_revocation_ends_resumption(tmp_path: Path, make_server, roundtrip, server_backend):
    """The CRL changes: the server rebuilds its context (empty session cache), so the next connection makes a full
    handshake and the revoked user is refused, although the client still offers its session."""
    ca = DevCA.init(tmp_path / "ca")
    user = ca.issue_user("about-to-be-revoked")
    host = ca.default_host()
    server_tls = TLSConfig(cert_file=str(host.cert_file), key_file=str(host.key_file), ca_dir=str(ca.cert_dir))
    client_tls = TLSConfig(cert_file=str(user.proxy_file), ca_dir=str(ca.cert_dir))
    server = make_server(server_backend, server_tls)
    server.backend.contexts.reload_interval = 0.0  # look at the CA directory on every connection
    client = get_backend("pyopenssl")
    assert [_connect(client, server.port, client_tls, roundtrip) for _ in range(2)] == [False, True]
    assert [_seen(server).dn for _ in range(2)] == [user.dn, user.dn]
    ca.revoke(user.cert_file)
    with pytest.raises(RPCFrameworkError):
        _connect(client, server.port, client_tls, roundtrip)
    refused = server.next_result()
    assert isinstance(refused, PeerVerificationError) and "revoked" in str(refused)


@pytest.mark.parametrize("server_backend", TLS_BACKENDS)
def test_a_chain_that_expired_since_the_full_handshake_is_not_resumed(
    creds, make_server, roundtrip, tmp_path: Path, server_backend
):
    server = make_server(server_backend, creds.server_tls())
    proxy = tmp_path / "short-proxy.pem"
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=3)
    creds.ca.issue_proxy(creds.user.cert_file, creds.user.key_file, proxy, not_after=expires)
    client = get_backend("pyopenssl")
    assert _connect(client, server.port, creds.client_tls(proxy), roundtrip) is False
    assert _seen(server).dn == creds.user.dn
    # Bounded wait for a real clock: OpenSSL and the chain check read the system time, which cannot be injected.
    time.sleep(max((expires - datetime.datetime.now(datetime.UTC)).total_seconds(), 0) + 1.1)
    with pytest.raises((RPCFrameworkError, AssertionError)):  # resumed, then closed by the server without a word
        _connect(client, server.port, creds.client_tls(proxy), roundtrip)
    refused = server.next_result()
    assert isinstance(refused, PeerVerificationError) and "expired" in str(refused)
    # The client kept no session from that silent connection: the next one makes a full handshake, and the server's
    # alert tells the client why (what a user sees instead of a bare "connection closed").
    with pytest.raises(CredentialsError, match="certificate expired"):
        _connect(client, server.port, creds.client_tls(proxy), roundtrip)
    assert isinstance(server.next_result(), PeerVerificationError)
    # the service goes on serving a valid client
    assert _connect(get_backend("pyopenssl"), server.port, creds.client_tls(), roundtrip) is False
    assert _seen(server).dn == creds.user.dn


def test_the_session_cache_is_dropped_after_its_budget_of_full_handshakes(creds, make_server, roundtrip):
    """pyOpenSSL cannot size OpenSSL's session cache, so a context that made ``session_cache_size`` full handshakes
    is replaced, and its cache goes with it: the memory a flood of new sessions can take stays bounded."""
    server = make_server("pyopenssl", creds.server_tls(session_cache_size=2))
    contexts = server.backend.contexts
    first, second = get_backend("pyopenssl"), get_backend("pyopenssl")
    assert _connect(first, server.port, creds.client_tls(), roundtrip) is False
    assert _connect(first, server.port, creds.client_tls(), roundtrip) is True  # resumed: not counted
    assert contexts.builds == 1
    assert _connect(second, server.port, creds.client_tls(), roundtrip) is False  # the second full handshake
    assert contexts.builds == 2
    assert _connect(first, server.port, creds.client_tls(), roundtrip) is False  # its session went with the cache
    assert _connect(first, server.port, creds.client_tls(), roundtrip) is True
    assert all(_seen(server).dn == creds.user.dn for _ in range(5))


def _step_until_done(handshake: ServerHandshake) -> Stream:
    """Drive a non-blocking server handshake as the reactor does: step whenever its socket is ready."""
    with selectors.DefaultSelector() as selector:
        for _ in range(1000):
            status = handshake.step()
            if status is HandshakeStatus.DONE:
                return handshake.stream()
            event = selectors.EVENT_READ if status is HandshakeStatus.WANT_READ else selectors.EVENT_WRITE
            selector.register(handshake.fileno(), event)
            ready = selector.select(10)
            selector.unregister(handshake.fileno())
            assert ready, "handshake stalled"
    raise AssertionError("handshake did not finish in 1000 steps")


def test_a_server_handshake_driven_step_by_step_resumes_too(creds, roundtrip):
    """The reactor's non-blocking handshake (``start_server_handshake``) takes the same resumption path."""
    server_backend = get_backend("pyopenssl")
    client = get_backend("pyopenssl")
    reused: list[bool] = []
    seen: list[PeerIdentity | None] = []
    with socket.create_server(("127.0.0.1", 0)) as listener, ThreadPoolExecutor(1) as pool:
        port = listener.getsockname()[1]
        for _ in range(2):
            outcome = pool.submit(_connect, client, port, creds.client_tls(), roundtrip)
            sock, _ = listener.accept()
            stream = _step_until_done(server_backend.start_server_handshake(sock, creds.server_tls()))
            stream.settimeout(10)
            stream.send_all(stream.recv(100))
            reused.append(outcome.result(10))
            seen.append(stream.peer_identity)
            stream.close()
    assert reused == [False, True]
    assert [identity.dn if identity else None for identity in seen] == [creds.user.dn, creds.user.dn]


def test_check_resumed_identity_refuses_an_expired_chain(creds):
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(creds.expired_user.cert_file.read_bytes())
    identity = identity_from_chain([cert])
    with pytest.raises(PeerVerificationError, match="expired"):
        check_resumed_identity(identity, "127.0.0.1:1")
    valid = identity_from_chain([x509.load_pem_x509_certificate(creds.user.cert_file.read_bytes())])
    check_resumed_identity(valid, "127.0.0.1:1")  # does not raise


@pytest.mark.parametrize(
    ("option", "value"), [("session_lifetime", -1), ("session_lifetime", 86_401), ("session_cache_size", 0)]
)
def test_bad_session_settings_are_refused_with_a_clear_error(creds, option, value):
    with pytest.raises(ConfigurationError, match=option):
        creds.server_tls(**{option: value})


class _RecordingBackend:
    """The default pyOpenSSL client back end, noting for each connection whether it resumed a session."""

    def __init__(self) -> None:
        self._inner = get_backend("pyopenssl")
        self.resumed: list[bool] = []

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        stream = self._inner.connect(*args, **kwargs)
        self.resumed.append(bool(stream.session_reused))
        return stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _DiracClients:
    """A ``Client`` transport that opens pure DIRAC clients (a new connection per call) on one recording back end."""

    def __init__(self) -> None:
        self.backend = _RecordingBackend()

    def open_target(self, service: str, options: Any) -> Any:
        return RPCClient(service, options, offer=None, backends={"pyopenssl": self.backend})


class _Echo(RequestHandler):
    auth_echo: ClassVar[list[str]] = ["all"]


@pytest.mark.parametrize(("lifetime", "expected"), [(None, [False, True, True]), ("0", [False, False, False])])
def test_a_service_resumes_per_its_configuration(creds, lifetime, expected):
    """``/DIRAC/Security/TLSSessionLifetime`` reaches the service's TLS settings; DIRAC-style calls (a connection
    each) resume by default and do not with 0."""
    security = {"CertFile": str(creds.host.cert_file), "KeyFile": str(creds.host.key_file)}
    security["CALocation"] = str(creds.ca.cert_dir)
    if lifetime is not None:
        security["TLSSessionLifetime"] = lifetime
    tree = ConfigTree.from_dict({"DIRAC": {"Security": security}, "Systems": {"Test": {"Services": {"Resume": {}}}}})
    service = Service("Test/Resume", _Echo, config=tree, port=0)
    with ServiceReactor([service], host="127.0.0.1") as reactor:
        transport = _DiracClients()
        client_config = load_dict({"DIRAC": {"Security": {"CALocation": str(creds.ca.cert_dir)}}}, "<test>")
        with Client(
            reactor.url("Test/Resume"),
            transport=transport,
            proxyLocation=str(creds.user.proxy_file),
            config=client_config,
        ) as client:
            assert [client.echo(f"call {i}")["Value"] for i in range(3)] == ["call 0", "call 1", "call 2"]
    assert transport.backend.resumed == expected


@pytest.mark.parametrize(
    ("option", "value"),
    [("TLSSessionLifetime", "-1"), ("TLSSessionLifetime", "86401"), ("TLSSessionCacheSize", "0")],
)
def test_bad_session_options_in_the_configuration_name_the_option(option, value):
    tree = load_dict({"DIRAC": {"Security": {option: value}}}, "<test>")
    with pytest.raises(ConfigurationError, match=f"/DIRAC/Security/{option}"):
        read_security_settings(tree)


def test_the_client_keeps_the_servers_identity_with_the_session(creds, make_server, roundtrip):
    """A resumed handshake carries no server certificate: the client takes the identity its full handshake verified
    (only the server that holds the session's secret can resume it), with this connection's address."""
    server = make_server("pyopenssl", creds.server_tls())
    client = get_backend("pyopenssl")
    identities = []
    for _ in range(2):
        stream = client.connect("localhost", server.port, tls=creds.client_tls(), handshake_timeout=10)
        try:
            assert roundtrip(stream, b"x") == b"x"
            identities.append((stream.session_reused, stream.peer_identity))  # type: ignore[attr-defined]
        finally:
            stream.close()
    assert [reused for reused, _ in identities] == [False, True]
    for _, identity in identities:
        assert identity is not None and identity.dn == creds.host.dn and identity.address == ("localhost", server.port)


def test_the_client_refuses_to_resume_with_a_server_whose_certificate_expired_since(
    creds, make_server, roundtrip, tmp_path: Path
):
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=3)
    host = creds.ca.issue_host("localhost", not_after=expires, directory=tmp_path / "short-host")
    server = make_server("pyopenssl", creds.server_tls(host))
    client = get_backend("pyopenssl")
    assert _connect(client, server.port, creds.client_tls(), roundtrip) is False
    # Bounded wait for a real clock: OpenSSL and the chain check read the system time, which cannot be injected.
    time.sleep(max((expires - datetime.datetime.now(datetime.UTC)).total_seconds(), 0) + 1.1)
    with pytest.raises(PeerVerificationError, match="expired"):
        _connect(client, server.port, creds.client_tls(), roundtrip)
    with pytest.raises(PeerVerificationError, match="expired"):  # the session was dropped: a full handshake now
        _connect(client, server.port, creds.client_tls(), roundtrip)
