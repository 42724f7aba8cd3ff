"""The pyOpenSSL back end's peer-identity cache: same chain -> same identity (per-connection address), new context
(credential or CA reload) -> rebuilt, bounded, different chains kept apart, limited proxies stay limited."""

from __future__ import annotations

import gc
import socket
import threading
import weakref
from pathlib import Path

import pytest
from cryptography import x509
from OpenSSL import SSL

from rpcframework.security.x509 import PeerIdentity
from rpcframework.transports import identities as identities_module
from rpcframework.transports.base import TLSConfig
from rpcframework.transports.identities import IdentityCache
from rpcframework.transports.pyopenssl import PyOpenSSLBackend


def _chain(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def _connect_once(server: PyOpenSSLBackend, server_tls: TLSConfig, client_tls: TLSConfig) -> PeerIdentity:
    """One real connection: the server side through ``wrap_server`` of ``server``; returns what it saw."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    errors: list[BaseException] = []
    seen = threading.Event()

    def connect() -> None:
        try:
            client = PyOpenSSLBackend().connect("localhost", port, tls=client_tls, handshake_timeout=10)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
            return
        seen.wait(10)  # open until the server has read its address
        client.close()

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    listener.settimeout(10)
    sock, _ = listener.accept()
    listener.close()
    stream = server.wrap_server(sock, server_tls, handshake_timeout=10)
    identity = stream.peer_identity
    address = stream.peer_address
    seen.set()
    stream.close()
    thread.join(10)
    assert not errors, errors
    assert identity is not None
    assert identity.address == address != ("", 0)
    return identity


def test_repeated_client_reuses_the_identity_with_its_own_address(creds):
    server = PyOpenSSLBackend()
    first = _connect_once(server, creds.server_tls(), creds.client_tls())
    second = _connect_once(server, creds.server_tls(), creds.client_tls())
    assert len(server.identities) == 1
    assert second.dn == first.dn == creds.user.dn
    assert second.chain == first.chain and second.is_proxy and not second.is_limited_proxy
    assert second.address != first.address  # a new client port: the address is the connection's own


def test_a_different_chain_is_a_different_entry(creds):
    server = PyOpenSSLBackend()
    user = _connect_once(server, creds.server_tls(), creds.client_tls())
    limited = _connect_once(server, creds.server_tls(), creds.client_tls(cert=creds.limited_proxy))
    assert len(server.identities) == 2
    assert limited.is_limited_proxy and not user.is_limited_proxy
    assert limited.dn == user.dn


def _lookup(cache, ctx, chain, address):
    return cache.identity(ctx, tuple(chain), address, lambda: chain)


def test_an_entry_from_an_older_context_is_rebuilt(creds, monkeypatch):
    built: list[int] = []
    real = identities_module.peer_identity

    def counting(chain, address):
        built.append(1)
        return real(chain, address)

    monkeypatch.setattr(identities_module, "peer_identity", counting)
    cache = IdentityCache(8)
    chain = _chain(creds.user.proxy_file)
    old_ctx, new_ctx = SSL.Context(SSL.TLS_METHOD), SSL.Context(SSL.TLS_METHOD)
    first = _lookup(cache, old_ctx, chain, ("127.0.0.1", 1))
    again = _lookup(cache, old_ctx, chain, ("127.0.0.1", 2))
    assert len(built) == 1 and again.address == ("127.0.0.1", 2) and again.dn == first.dn
    _lookup(cache, new_ctx, chain, ("127.0.0.1", 3))  # a reload made a new context
    assert len(built) == 2
    _lookup(cache, new_ctx, chain, ("127.0.0.1", 4))
    assert len(built) == 2


def test_the_cache_does_not_keep_a_replaced_context_alive(creds):
    """A reload or a session cache renewal replaces a server context: the identity cache must not pin the old one
    (and the session cache it holds) until its entries age out."""
    cache = IdentityCache(8)
    ctx = SSL.Context(SSL.TLS_METHOD)
    _lookup(cache, ctx, _chain(creds.user.proxy_file), ("127.0.0.1", 1))
    gone = weakref.ref(ctx)
    del ctx
    gc.collect()
    assert gone() is None and len(cache) == 1
    # the orphaned entry is simply never used again
    fresh = SSL.Context(SSL.TLS_METHOD)
    assert _lookup(cache, fresh, _chain(creds.user.proxy_file), ("127.0.0.1", 2)).dn == creds.user.dn


def test_the_cache_is_bounded_and_can_be_off(creds):
    ctx = SSL.Context(SSL.TLS_METHOD)
    cache = IdentityCache(1)
    _lookup(cache, ctx, _chain(creds.user.proxy_file), ("127.0.0.1", 1))
    _lookup(cache, ctx, _chain(creds.limited_proxy), ("127.0.0.1", 1))
    assert len(cache) == 1
    off = IdentityCache(0)
    _lookup(off, ctx, _chain(creds.user.proxy_file), ("127.0.0.1", 1))
    assert len(off) == 0


def test_an_unreadable_chain_is_not_cached(creds):
    ctx = SSL.Context(SSL.TLS_METHOD)
    cache = IdentityCache(8)
    with pytest.raises(Exception, match="only proxies"):
        # The proxy alone, without the certificate it was made from: no end-entity certificate.
        _lookup(cache, ctx, _chain(creds.user.proxy_file)[:1], ("127.0.0.1", 1))
    assert len(cache) == 0
