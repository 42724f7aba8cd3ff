"""The default ``dips://`` back end, on pyOpenSSL: contexts, handshakes, sessions and peer identities.

The stream a handshake produces (reads, writes, waits) is in :mod:`rpcframework.transports.pyopenssl_stream`;
these two are the only modules that import ``OpenSSL``.

Sockets run in non-blocking mode and every OpenSSL call that wants I/O waits with ``poll`` for the remaining time
of the operation, so timeouts hold during handshakes and mid-record reads alike. pyOpenSSL is chosen as default over
the stdlib because it hands over the verified peer chain (``get_verified_chain``) on Python 3.11/3.12, which proxies
need to map back to the user's DN.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import select
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from OpenSSL import SSL
from OpenSSL.crypto import X509, X509StoreContext, X509StoreContextError, X509StoreFlags

from rpcframework.deadline import Deadline
from rpcframework.errors import (
    ConnectionClosedError,
    CredentialsError,
    DeadlineExceeded,
    PeerVerificationError,
    RPCFrameworkError,
)
from rpcframework.transports import _openssl_internals as _internals
from rpcframework.transports.base import (
    DEFAULT_KEEPALIVE,
    HandshakeStatus,
    TLSConfig,
    check_resumed_identity,
    classify_tls_failure,
    credentials_errors,
    refuse_encrypted_key,
    require_tls,
    store_flags,
)
from rpcframework.transports.certs import check_server_certificate, is_ip_address, match_server_name
from rpcframework.transports.contexts import ContextCache
from rpcframework.transports.identities import IdentityCache
from rpcframework.transports.plain import close_after_failure, open_tcp_connection, peer_address_of, tune_socket
from rpcframework.transports.pyopenssl_stream import MAX_IO_STEPS, PyOpenSSLStream, error_text

if TYPE_CHECKING:
    from cryptography import x509

    from rpcframework.security.x509 import PeerIdentity

__all__ = ["ClientHandshake", "PyOpenSSLBackend", "PyOpenSSLServerHandshake", "PyOpenSSLStream", "build_context"]

logger = logging.getLogger(__name__)

_SESSION_ID_CONTEXT = b"rpcframework"
_VERSIONS = {"TLSv1.2": SSL.TLS1_2_VERSION, "TLSv1.3": SSL.TLS1_3_VERSION}
# OpenSSL 3 reports a peer that closes without close_notify as an error; DISET peers do exactly that, so treat it as
# an ordinary end of stream. Not every pyOpenSSL exports the constant; the value is fixed by OpenSSL 3.
_OP_IGNORE_UNEXPECTED_EOF = getattr(SSL, "OP_IGNORE_UNEXPECTED_EOF", 1 << 7)
_X509_V_ERR_APPLICATION_VERIFICATION = 50  # OpenSSL's code for a refusal by the application's callback


class _VerifyState:
    """Per-connection slot the verify callback fills, so errors can say *why* a chain was refused.

    A client sets ``server_name``: the callback then checks the server's own certificate for that name as soon as
    its chain is verified, so an impostor with a CA-valid certificate is refused before our certificate chain (the
    user's DN) is sent to it; :func:`_client_identity` checks again after the handshake (resumed sessions too).
    """

    __slots__ = ("check_hostname", "depth", "error", "refusal", "server_name")

    def __init__(self, server_name: str | None = None, check_hostname: bool = True) -> None:
        self.error = 0
        self.depth = 0
        self.server_name = server_name
        self.check_hostname = check_hostname
        self.refusal: PeerVerificationError | None = None


def _on_verify(conn: SSL.Connection, cert: X509, errnum: int, depth: int, ok: int) -> bool:
    state = conn.get_app_data()
    if not isinstance(state, _VerifyState):
        return bool(ok)
    if not ok:
        if not state.error:
            state.error, state.depth = errnum, depth
        return False
    if depth == 0 and state.server_name is not None:
        try:
            leaf = cert.to_cryptography()
            if state.check_hostname:
                _match_server_name(leaf, state.server_name)
            _check_server_certificate(leaf, state.server_name)
        except PeerVerificationError as exc:
            state.refusal = exc
            state.error, state.depth = _X509_V_ERR_APPLICATION_VERIFICATION, 0
            return False
    return True


def build_context(tls: TLSConfig, server_side: bool) -> SSL.Context:
    """One SSL context for ``tls``: TLS 1.2+, AEAD suites, no compression or renegotiation, proxies allowed."""
    if server_side:
        tls.require_server_credentials()
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD if server_side else SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(_VERSIONS[tls.min_version])
    options = SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | _OP_IGNORE_UNEXPECTED_EOF
    if server_side:
        options |= SSL.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_options(options)
    # pyOpenSSL turns partial writes on, so one SSL_write sends one 16 KiB record: a 1 MiB chunk took 64 trips
    # through send_all. Whole writes (continued after WANT_WRITE, the buffer may move between the tries) take one.
    _internals.disable_partial_writes(ctx)
    with credentials_errors("the TLS cipher list"):
        ctx.set_cipher_list(tls.ciphers.encode())
    if tls.cert_file:
        key_file = tls.key_file or tls.cert_file
        refuse_encrypted_key(key_file)
        with credentials_errors(f"certificate {tls.cert_file} / key {key_file}"):
            ctx.use_certificate_chain_file(tls.cert_file)
            ctx.use_privatekey_file(key_file)
            ctx.check_privatekey()
    if tls.verify_peer:
        with credentials_errors(f"trusted CAs (ca_file={tls.ca_file}, ca_dir={tls.ca_dir})"):
            ctx.load_verify_locations(tls.ca_file, tls.ca_dir)
        mode = SSL.VERIFY_PEER | (SSL.VERIFY_FAIL_IF_NO_PEER_CERT if server_side else 0)
        ctx.set_verify(mode, _on_verify)
        ctx.set_verify_depth(tls.verify_depth)
        store = ctx.get_cert_store()
        if store is None:  # only for contexts without a store, which load_verify_locations just created
            raise CredentialsError("OpenSSL returned no certificate store")
        store.set_flags(_store_flags(tls))
    else:
        ctx.set_verify(SSL.VERIFY_NONE)
    if server_side:
        _server_sessions(ctx, tls)
    return ctx


class _SessionBudget:
    """Full handshakes a server context takes before its session cache is dropped (pyOpenSSL cannot size it)."""

    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left


def _server_sessions(ctx: SSL.Context, tls: TLSConfig) -> None:
    """Stateful session resumption, bounded in time and size.

    ``OP_NO_TICKET`` makes OpenSSL keep each session in this process's cache (in TLS 1.3 the client only gets an
    identifier) instead of sealing it into a ticket the client holds: the cached session keeps the client chain
    that was verified when it was made, so a resumed proxy still maps to its user. A CRL or credential change
    rebuilds the context, whose new cache is empty, so a revoked user gets a full handshake and is refused.
    """
    ctx.set_options(SSL.OP_NO_TICKET)
    ctx.set_session_id(_SESSION_ID_CONTEXT)
    if tls.session_lifetime == 0:
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        return
    ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    ctx.set_timeout(tls.session_lifetime)
    ctx.set_app_data(_SessionBudget(tls.session_cache_size))


def _store_flags(tls: TLSConfig) -> int:
    return store_flags(
        tls,
        allow_proxy_certs=X509StoreFlags.ALLOW_PROXY_CERTS,
        crl_check=X509StoreFlags.CRL_CHECK,
        crl_check_all=X509StoreFlags.CRL_CHECK_ALL,
    )


def _wait(sock: socket.socket, events: int, timeout: float | None, what: str) -> None:
    poller = select.poll()
    poller.register(sock, events)
    if not poller.poll(None if timeout is None else max(timeout * 1000.0, 0.0)):
        raise DeadlineExceeded(f"{what} timed out")


def _handshake(conn: SSL.Connection, sock: socket.socket, timeout: float | None, where: str) -> None:
    deadline = Deadline.within(timeout)
    what = f"TLS handshake with {where}"
    for _ in range(MAX_IO_STEPS):
        try:
            conn.do_handshake()
            return
        except SSL.WantReadError:
            _wait(sock, select.POLLIN, deadline.time_left(what), what)
        except SSL.WantWriteError:
            _wait(sock, select.POLLOUT, deadline.time_left(what), what)
    raise DeadlineExceeded(f"{what} made no progress")


def _run_handshake(conn: SSL.Connection, sock: socket.socket, timeout: float | None, where: str) -> None:
    """Handshake, mapping every failure into our error tree (the socket is closed by the caller)."""
    try:
        _handshake(conn, sock, timeout, where)
    except RPCFrameworkError:
        raise  # DeadlineExceeded is an OSError (TimeoutError) too: keep it as it is
    except (SSL.Error, OSError) as exc:
        raise handshake_failure(exc, conn, where) from exc


def handshake_failure(exc: SSL.Error | OSError, conn: SSL.Connection, where: str) -> RPCFrameworkError:
    """Our error for a failed handshake: the verify callback's finding first, then OpenSSL's reason."""
    state = conn.get_app_data()
    if isinstance(state, _VerifyState) and state.refusal is not None:
        return state.refusal  # the server is not the one asked for (name, proxy, not a server's certificate)
    code = state.error if isinstance(state, _VerifyState) else 0
    if isinstance(exc, SSL.SysCallError):
        if code:
            return classify_tls_failure("", verify_code=code, peer=where)
        reason = "closed" if exc.args and exc.args[0] == -1 else str(exc.args[-1])
        return ConnectionClosedError(f"{where}: connection {reason} during the TLS handshake")
    if isinstance(exc, SSL.ZeroReturnError) and not code:  # the peer's TCP FIN before a word of TLS
        return ConnectionClosedError(
            f"{where}: the peer closed the connection during the TLS handshake (a server does so when it refuses"
            " the address: banned, or over its connection limit)"
        )
    if isinstance(exc, SSL.Error):
        return classify_tls_failure(error_text(exc), verify_code=code, peer=where)
    return ConnectionClosedError(f"{where}: connection lost during the TLS handshake: {exc}")


def _sent_chain(conn: SSL.Connection, server_side: bool) -> list[x509.Certificate]:
    """The certificates as the peer sent them, leaf first (a server's peer chain omits the leaf); never trusted."""
    rest = conn.get_peer_cert_chain(as_cryptography=True) or []
    if not server_side:
        return rest
    leaf = conn.get_peer_certificate(as_cryptography=True)
    return [leaf, *rest] if leaf is not None else []


def _verified_chain(conn: SSL.Connection, sent: list[x509.Certificate], where: str) -> list[x509.Certificate]:
    """The chain OpenSSL verified for this connection; after a resumed handshake, verified again (see identities)."""
    chain = conn.get_verified_chain(as_cryptography=True)
    if chain:
        return chain
    if not _internals.session_reused(conn):
        raise PeerVerificationError(f"{where}: OpenSSL gave no verified certificate chain for the peer: refused")
    return _verify_again(conn.get_context(), sent, where)


def _verify_again(ctx: SSL.Context, sent: list[x509.Certificate], where: str) -> list[x509.Certificate]:
    """OpenSSL's verifier over ``sent`` with ``ctx``'s store and flags (CRLs, proxies): the chain it builds."""
    store = ctx.get_cert_store()
    if store is None or not sent:
        raise PeerVerificationError(f"{where}: no certificate store to verify the resumed session's chain: refused")
    untrusted = [X509.from_cryptography(cert) for cert in sent[1:]]
    try:
        verified = X509StoreContext(store, X509.from_cryptography(sent[0]), untrusted).get_verified_chain()
    except X509StoreContextError as exc:
        code = exc.errors[0] if exc.errors and isinstance(exc.errors[0], int) else 0
        raise classify_tls_failure(str(exc), verify_code=code, peer=where) from exc
    return [cert.to_cryptography() for cert in verified]


_SessionKey = tuple[str, int, TLSConfig]


class _SessionStore:
    """Client TLS sessions by destination, bounded, each tied to the context that made it and kept with the server
    identity that the session's full handshake verified (a resumed handshake proves the same server: only it
    holds the session's secret)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._sessions: OrderedDict[_SessionKey, tuple[SSL.Context, SSL.Session, PeerIdentity | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _SessionKey, ctx: SSL.Context) -> tuple[SSL.Session, PeerIdentity | None] | None:
        with self._lock:
            found = self._sessions.get(key)
        # A session from an older context may carry credentials we no longer present: never resume it.
        return (found[1], found[2]) if found is not None and found[0] is ctx else None

    def put(
        self, key: _SessionKey, ctx: SSL.Context, session: SSL.Session | None, identity: PeerIdentity | None = None
    ) -> None:
        with self._lock:
            if session is None:
                self._sessions.pop(key, None)
                return
            self._sessions[key] = (ctx, session, identity)
            self._sessions.move_to_end(key)
            while len(self._sessions) > self._size:
                self._sessions.popitem(last=False)


@dataclasses.dataclass(frozen=True, slots=True)
class ClientHandshake:
    """A client connection prepared by :meth:`PyOpenSSLBackend.prepare_client`, with what finishing it needs."""

    conn: SSL.Connection
    ctx: SSL.Context
    tls: TLSConfig
    name: str  # the server name checked against its certificate (and sent as SNI)
    address: tuple[str, int]
    key: _SessionKey
    offered: tuple[SSL.Session, PeerIdentity | None] | None

    @property
    def where(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"


class PyOpenSSLBackend:
    """TLS through pyOpenSSL. Keep one instance per process (or per client/server): it caches contexts."""

    name = "pyopenssl"

    def __init__(
        self,
        *,
        reload_interval: float = 60.0,
        session_reuse: bool = True,
        max_sessions: int = 256,
        max_identities: int = 256,
    ) -> None:
        self.contexts: ContextCache[SSL.Context] = ContextCache(build_context, reload_interval)
        self.session_reuse = session_reuse
        self._sessions = _SessionStore(max_sessions)
        self.identities: IdentityCache[SSL.Context] = IdentityCache(max_identities)

    def prepare_server(self, tls: TLSConfig | None) -> None:
        self.contexts.get(require_tls(tls, "pyopenssl"), True)

    def connect(
        self,
        host: str,
        port: int,
        *,
        tls: TLSConfig | None,
        server_hostname: str | None = None,
        connect_timeout: float | None = 10.0,
        handshake_timeout: float | None = 10.0,
        keepalive: float | None = DEFAULT_KEEPALIVE,
    ) -> PyOpenSSLStream:
        tls = require_tls(tls, "pyopenssl")
        self.contexts.get(tls, False)  # bad credentials fail here, before any connection is made
        sock = open_tcp_connection(host, port, connect_timeout, keepalive)
        peer = peer_address_of(sock)  # now, while connected: the handshake may end in a reset
        handshake: ClientHandshake | None = None
        try:
            sock.setblocking(False)
            handshake = self.prepare_client(tls, host, port, server_hostname=server_hostname, sock=sock)
            _run_handshake(handshake.conn, sock, handshake_timeout, handshake.where)
            identity = self.client_identity(handshake)
        except BaseException:
            if handshake is not None:
                self.forget_session(handshake)
            sock.close()
            raise
        stream = PyOpenSSLStream(handshake.conn, sock, identity, peer)
        prepared = handshake  # narrowed for the closure
        if self.session_reuse:
            # A server that refuses a resumed session (its chain expired since) can only close the connection: keep
            # no session from a connection that never answered, so the next one makes a full handshake, whose
            # refusal names the reason.
            stream.on_close = lambda _conn: self.keep_session(prepared, stream.received_data, identity)
        return stream

    # -- the client handshake, shared with the asyncio streams (transports/aio_tls.py) --------------------------------

    def prepare_client(
        self,
        tls: TLSConfig,
        host: str,
        port: int,
        *,
        server_hostname: str | None = None,
        sock: socket.socket | None = None,
    ) -> ClientHandshake:
        """A client connection ready for ``do_handshake``: over ``sock``, or over memory BIOs when ``sock`` is
        ``None`` (the asyncio client feeds the bytes). Same context, verify callback, SNI and session as every
        client connection of this back end; finish with :meth:`client_identity`."""
        ctx = self.contexts.get(tls, False)
        name = server_hostname or host
        conn = SSL.Connection(ctx, sock)
        conn.set_app_data(_VerifyState(name if tls.verify_peer else None, tls.check_hostname))
        if not _is_ip_address(name):
            conn.set_tlsext_host_name(name.encode("idna"))
        key = (name, port, tls)
        offered = self._sessions.get(key, ctx) if self.session_reuse else None
        if offered is not None:
            conn.set_session(offered[0])
        conn.set_connect_state()
        return ClientHandshake(conn, ctx, tls, name, (host, port), key, offered)

    def client_identity(self, handshake: ClientHandshake) -> PeerIdentity | None:
        """After a successful ``do_handshake``: the server's verified identity, or raise PeerVerificationError
        (a proxy, a certificate that does not serve or names another host; see ``certs.match_server_name``)."""
        conn, offered = handshake.conn, handshake.offered
        if offered is not None and offered[1] is not None and _internals.session_reused(conn):
            check_resumed_identity(offered[1], handshake.name)
            return dataclasses.replace(offered[1], address=handshake.address)
        return _client_identity(conn, handshake.tls, handshake.name, handshake.address, self.identities)

    def forget_session(self, handshake: ClientHandshake) -> None:
        """The connection failed: offer no session of that destination next time (a full handshake says why)."""
        self._sessions.put(handshake.key, handshake.ctx, None)

    def keep_session(self, handshake: ClientHandshake, answered: bool, identity: PeerIdentity | None) -> None:
        """The connection closes: keep its session for resumption if the server ever answered on it."""
        if self.session_reuse:
            session = handshake.conn.get_session() if answered else None
            self._sessions.put(handshake.key, handshake.ctx, session, identity)

    def wrap_server(
        self, sock: socket.socket, tls: TLSConfig | None, *, handshake_timeout: float | None = 10.0
    ) -> PyOpenSSLStream:
        try:
            ctx = self.contexts.get(require_tls(tls, "pyopenssl"), True)
            tune_socket(sock)
            sock.setblocking(False)
            where = "{}:{}".format(*peer_address_of(sock))
            conn = SSL.Connection(ctx, sock)
            conn.set_app_data(_VerifyState())
            conn.set_accept_state()
            _run_handshake(conn, sock, handshake_timeout, where)
            identity = self._server_identity(tls, conn, peer_address_of(sock))
        except BaseException:
            close_after_failure(sock)
            raise
        return PyOpenSSLStream(conn, sock, identity, peer_address_of(sock))

    def start_server_handshake(self, sock: socket.socket, tls: TLSConfig | None) -> PyOpenSSLServerHandshake:
        try:
            ctx = self.contexts.get(require_tls(tls, "pyopenssl"), True)
            tune_socket(sock)
            sock.setblocking(False)
            conn = SSL.Connection(ctx, sock)
            conn.set_app_data(_VerifyState())
            conn.set_accept_state()
        except BaseException:
            sock.close()
            raise
        return PyOpenSSLServerHandshake(conn, sock, functools.partial(self._server_identity, tls))

    def _server_identity(self, tls: TLSConfig | None, conn: SSL.Connection, peer: tuple[str, int]) -> PeerIdentity:
        """The client's identity after a server handshake; also keeps the session cache within its budget."""
        where = "{}:{}".format(*peer)
        ctx = conn.get_context()
        sent = _sent_chain(conn, server_side=True)
        if not sent:
            raise PeerVerificationError(f"{where}: the client sent no certificate")
        identity = self.identities.identity(ctx, tuple(sent), peer, lambda: _verified_chain(conn, sent, where))
        if _internals.session_reused(conn):
            check_resumed_identity(identity, where)
            return identity
        budget = ctx.get_app_data()
        if isinstance(budget, _SessionBudget):
            budget.left -= 1
            if budget.left <= 0:  # not atomic across threads: "<=" so a lost decrement cannot skip the renewal
                self.contexts.renew(require_tls(tls, "pyopenssl"), True, ctx)
        return identity


class PyOpenSSLServerHandshake:
    """A server handshake advanced by ``step()`` on a non-blocking socket (OpenSSL's WantRead/WantWrite)."""

    def __init__(
        self,
        conn: SSL.Connection,
        sock: socket.socket,
        identify: Callable[[SSL.Connection, tuple[str, int]], PeerIdentity],
    ) -> None:
        self._conn = conn
        self._sock = sock
        self._identify = identify
        self._peer = peer_address_of(sock)  # now: a reset during the handshake would lose it
        self._stream: PyOpenSSLStream | None = None
        self._closed = False

    def fileno(self) -> int:
        return -1 if self._closed else self._sock.fileno()

    def step(self) -> HandshakeStatus:
        if self._stream is not None:
            return HandshakeStatus.DONE
        where = f"{self._peer[0]}:{self._peer[1]}"
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            return HandshakeStatus.WANT_READ
        except SSL.WantWriteError:
            return HandshakeStatus.WANT_WRITE
        except (SSL.Error, OSError) as exc:
            self._fail()
            raise handshake_failure(exc, self._conn, where) from exc
        try:
            identity = self._identify(self._conn, self._peer)
        except BaseException:
            self._fail()
            raise
        self._stream = PyOpenSSLStream(self._conn, self._sock, identity, self._peer)
        return HandshakeStatus.DONE

    def stream(self) -> PyOpenSSLStream:
        if self._stream is None:
            raise RuntimeError("the TLS handshake is not complete")
        return self._stream

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close()

    def _fail(self) -> None:
        if not self._closed:
            self._closed = True
            close_after_failure(self._sock)


def _client_identity(
    conn: SSL.Connection, tls: TLSConfig, name: str, address: tuple[str, int], cache: IdentityCache[SSL.Context]
) -> PeerIdentity | None:
    if not tls.verify_peer:
        return None  # skipCACheck: nothing about the server is verified, so claim nothing about it
    sent = _sent_chain(conn, server_side=False)
    if not sent:
        raise PeerVerificationError(f"{name}: the server sent no certificate")
    identity = cache.identity(conn.get_context(), tuple(sent), address, lambda: _verified_chain(conn, sent, name))
    if tls.check_hostname:
        _match_server_name(identity.chain[0], name)
    _check_server_certificate(identity.chain[0], name)
    if _internals.session_reused(conn):
        check_resumed_identity(identity, name)
    return identity


# Both are pure functions of their arguments (a certificate compares and hashes by its DER bytes), and a client
# connects to the same few names with the same few server certificates over and over: each costs several
# ipaddress parses per connection. lru_cache keeps no failure (an exception is raised again on every call).
_match_server_name = functools.lru_cache(maxsize=256)(match_server_name)
_check_server_certificate = functools.lru_cache(maxsize=256)(check_server_certificate)
_is_ip_address = functools.lru_cache(maxsize=256)(is_ip_address)
