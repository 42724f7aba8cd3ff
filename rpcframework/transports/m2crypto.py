"""The optional ``dips://`` back end on M2Crypto, DIRAC's own TLS library (the only module that imports it).

Kept for parity with DIRAC deployments; pyOpenSSL is the default. M2Crypto >= 0.50 waits for socket readiness with
a timeout in C (``SSLTimeoutError`` is raised when it runs out), so this module sets the connection timeout and lets
each call block for at most that long.
"""

from __future__ import annotations

import errno
import logging
import socket
from typing import TYPE_CHECKING, Any

from cryptography import x509
from M2Crypto import SSL, X509, Err, m2
from M2Crypto.SSL.Connection import Connection
from M2Crypto.SSL.Context import Context
from M2Crypto.SSL.SSLError import SSLError, SSLTimeoutError

from rpcframework.errors import (
    ConfigurationError,
    ConnectionClosedError,
    DeadlineExceeded,
    PeerVerificationError,
    RPCFrameworkError,
)
from rpcframework.transports.base import (
    DEFAULT_KEEPALIVE,
    HandshakeStatus,
    TLSConfig,
    TLSStreamInfo,
    check_resumed_identity,
    classify_stream_failure,
    classify_tls_failure,
    connection_lost,
    credentials_errors,
    refuse_encrypted_key,
    require_tls,
    store_flags,
)
from rpcframework.transports.certs import check_server_certificate, is_ip_address, match_server_name
from rpcframework.transports.contexts import ContextCache
from rpcframework.transports.identities import IdentityCache
from rpcframework.transports.plain import drain_before_close, open_tcp_connection, peer_address_of, tune_socket

if TYPE_CHECKING:
    from rpcframework.security.x509 import PeerIdentity

__all__ = ["M2CryptoBackend", "M2CryptoServerHandshake", "M2CryptoStream", "build_context"]

logger = logging.getLogger(__name__)

_SESSION_ID_CONTEXT = b"rpcframework"
# X509_V_FLAG_* values are fixed by OpenSSL; M2Crypto moved and dropped the names between releases (DIRAC hard-codes
# 64 for the proxy flag for that reason), so fall back to the numbers.
_ALLOW_PROXY_CERTS = int(getattr(m2, "X509_V_FLAG_ALLOW_PROXY_CERTS", 64))
_CRL_CHECK = int(getattr(m2, "X509_V_FLAG_CRL_CHECK", 0x4))
_CRL_CHECK_ALL = int(getattr(m2, "X509_V_FLAG_CRL_CHECK_ALL", 0x8))
# SSL_OP_* values from OpenSSL 3 that this M2Crypto does not export.
_OP_NO_COMPRESSION = 1 << 17
_OP_NO_RENEGOTIATION = 1 << 30
_OP_CIPHER_SERVER_PREFERENCE = 1 << 22
_OP_IGNORE_UNEXPECTED_EOF = 1 << 7
_OP_NO_TICKET = 1 << 14
_SESS_CACHE_OFF = 0
_SESS_CACHE_SERVER = 2
_MAX_IO_STEPS = 100_000
# SSL_get_error() results, fixed by OpenSSL (M2Crypto's names for them vary between releases).
_SSL_ERROR_WANT_READ = 2
_SSL_ERROR_WANT_WRITE = 3
_X509_V_ERR_UNSPECIFIED = 1


def build_context(tls: TLSConfig, server_side: bool) -> Context:
    """The M2Crypto twin of :func:`rpcframework.transports.pyopenssl.build_context`."""
    if server_side:
        tls.require_server_credentials()
    ctx = Context("tls")  # TLS 1.0/1.1 and SSL are already off in M2Crypto's default options
    options = _OP_NO_COMPRESSION | _OP_NO_RENEGOTIATION | _OP_IGNORE_UNEXPECTED_EOF
    if tls.min_version == "TLSv1.3":
        options |= m2.SSL_OP_NO_TLSv1_2
    if server_side:
        options |= _OP_CIPHER_SERVER_PREFERENCE
    ctx.set_options(options)
    with credentials_errors("the TLS cipher list"):
        if not ctx.set_cipher_list(tls.ciphers):
            raise ConfigurationError(f"no usable cipher in {tls.ciphers!r}")
    if tls.cert_file:
        key_file = tls.key_file or tls.cert_file
        with credentials_errors(f"certificate {tls.cert_file} / key {key_file}"):
            _load_credentials(ctx, tls.cert_file, key_file)
    if tls.verify_peer:
        with credentials_errors(f"trusted CAs (ca_file={tls.ca_file}, ca_dir={tls.ca_dir})"):
            if ctx.load_verify_locations(tls.ca_file, tls.ca_dir) != 1:
                raise ValueError("load_verify_locations failed")
        mode = SSL.verify_peer | (SSL.verify_fail_if_no_peer_cert if server_side else 0)
        ctx.set_verify(mode, tls.verify_depth)
        flags = store_flags(
            tls, allow_proxy_certs=_ALLOW_PROXY_CERTS, crl_check=_CRL_CHECK, crl_check_all=_CRL_CHECK_ALL
        )
        ctx.get_cert_store().set_flags(flags)
    else:
        ctx.set_verify(SSL.verify_none, tls.verify_depth)
    if server_side:
        # Stateful resumption, as in the pyOpenSSL back end (see there): the cached session keeps the verified chain.
        ctx.set_options(_OP_NO_TICKET)
        ctx.set_session_id_ctx(_SESSION_ID_CONTEXT)
        if tls.session_lifetime:
            ctx.set_session_cache_mode(_SESS_CACHE_SERVER)
            ctx.set_session_timeout(tls.session_lifetime)
            m2.ssl_ctx_set_cache_size(ctx.ctx, 2 * tls.session_cache_size)  # TLS 1.3 issues two per handshake
        else:
            ctx.set_session_cache_mode(_SESS_CACHE_OFF)
    return ctx


def _no_passphrase(*_args: object) -> bytes:
    return b""  # an encrypted key must fail with an error, never prompt on a server's terminal


def _load_credentials(ctx: Context, cert_file: str, key_file: str) -> None:
    # Not Context.load_cert_chain: in M2Crypto 0.51 it reads the key from the certificate file even when a separate
    # key file is given, which only works for proxy files.
    refuse_encrypted_key(key_file)
    m2.ssl_ctx_passphrase_callback(ctx.ctx, _no_passphrase)
    m2.ssl_ctx_use_cert_chain(ctx.ctx, cert_file)
    m2.ssl_ctx_use_privkey(ctx.ctx, key_file)
    if not m2.ssl_ctx_check_privkey(ctx.ctx):
        raise ValueError("the private key does not match the certificate")


def _set_timeout(conn: Connection, seconds: float | None) -> None:
    # M2Crypto waits in C for the socket's timeout; 0 would mean non-blocking, so a spent budget gets a tiny wait.
    conn.settimeout(None if seconds is None else max(seconds, 0.001))  # type: ignore[arg-type]  # None (block) works at run time


class M2CryptoStream(TLSStreamInfo):
    """An M2Crypto TLS connection behind the :class:`~rpcframework.transports.base.Stream` interface."""

    def __init__(self, conn: Connection, identity: PeerIdentity | None, peer: tuple[str, int]) -> None:
        self._conn = conn
        self._identity = identity
        self._peer = peer
        self._closed = False

    @property
    def tls_version(self) -> str:
        return str(self._conn.get_version())

    def settimeout(self, seconds: float | None) -> None:
        _set_timeout(self._conn, seconds)

    def pending(self) -> int:
        return int(self._conn.pending())

    def fileno(self) -> int:
        return -1 if self._closed else int(self._conn.fileno())

    def recv(self, max_bytes: int) -> bytes:
        m2.err_clear_error()  # the queue is per thread: start clean so a failure below is this read's own
        try:
            data = self._conn.read(max_bytes)
        except SSLTimeoutError as exc:
            raise DeadlineExceeded(f"no data from {self._where} in time") from exc
        except SSLError as exc:
            raise _io_error(exc, self._where) from exc
        except OSError as exc:
            raise connection_lost(self._where, exc.errno, exc) from exc
        if data:
            return bytes(data)
        if m2.err_peek_error():
            # M2Crypto returns "no data" for a fatal alert too and leaves the reason on OpenSSL's error queue; under
            # TLS 1.3 this is how a client learns that the server refused its certificate.
            raise _io_error(SSLError(Err.get_error() or "TLS error"), self._where)
        return b""

    def recv_into(self, view: memoryview) -> int:
        """M2Crypto reads only into its own buffers: :meth:`recv`, then one copy."""
        data = self.recv(len(view))
        view[: len(data)] = data
        return len(data)

    def send_all(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        for _ in range(_MAX_IO_STEPS):
            if not view:
                return
            try:
                sent = self._conn.write(bytes(view))
            except SSLTimeoutError as exc:
                raise DeadlineExceeded(f"sending to {self._where} timed out") from exc
            except SSLError as exc:
                raise _io_error(exc, self._where) from exc
            except OSError as exc:
                raise connection_lost(self._where, exc.errno, exc, sending=True) from exc
            if sent <= 0:
                raise ConnectionClosedError(f"connection to {self._where} closed while sending")
            view = view[sent:]
        raise ConnectionClosedError(f"connection to {self._where} made no progress while sending")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _close_connection(self._conn)

    @property
    def _where(self) -> str:
        return f"{self._peer[0]}:{self._peer[1]}"


def _io_error(exc: Exception, where: str) -> RPCFrameworkError:
    text = str(exc)
    if "timed out" in text.lower():  # the system's ETIMEDOUT (keepalive), as M2Crypto words it
        return connection_lost(where, errno.ETIMEDOUT, text)
    if "eof" in text.lower() or "reset" in text.lower() or "broken pipe" in text.lower():
        return ConnectionClosedError(f"connection to {where} lost: {text}")
    return classify_stream_failure(text, where)


def _close_connection(conn: Connection, *, failed: bool = False) -> None:
    """close_notify (non-blocking, never waiting for the peer's), then free the BIOs and close the descriptor."""
    sock: socket.socket = conn.socket
    if failed:
        drain_before_close(sock)  # the alert is already on its way; keep the peer from losing it to an RST
    try:
        conn.settimeout(0.0)
        conn.close(freeBio=True)
    except Exception:
        pass  # the peer may be gone; closing must not raise
    sock.close()  # idempotent; guarantees the descriptor is released even if M2Crypto failed above


def _handshake(conn: Connection, server_side: bool, timeout: float | None, where: str) -> None:
    _set_timeout(conn, timeout)
    try:
        result = conn.accept_ssl() if server_side else conn.connect_ssl()
    except SSLTimeoutError as exc:
        raise DeadlineExceeded(f"TLS handshake with {where} did not complete within {timeout:g} s") from exc
    except SSLError as exc:
        raise classify_tls_failure(str(exc), verify_code=conn.get_verify_result(), peer=where) from exc
    except OSError as exc:
        raise ConnectionClosedError(f"{where}: connection lost during the TLS handshake: {exc}") from exc
    if result != 1:
        code = conn.get_verify_result()
        if code:
            raise classify_tls_failure("", verify_code=code, peer=where)
        raise ConnectionClosedError(f"{where}: the peer closed the connection during the TLS handshake")


def _sent_chain(conn: Connection, server_side: bool) -> tuple[bytes, ...]:
    """The certificates as the peer sent them (DER, leaf first); never trusted, only verified and used as a key."""
    leaf = conn.get_peer_cert()
    if leaf is None:
        return ()
    stack = conn.get_peer_cert_chain()
    rest = [cert.as_der() for cert in stack] if stack is not None else []
    # OpenSSL's peer chain includes the leaf on a client but not on a server.
    return tuple([leaf.as_der(), *rest] if server_side or not rest else rest)


def _verified_chain(conn: Connection, where: str) -> list[x509.Certificate]:
    """The chain OpenSSL builds and verifies for what the peer sent, with the context's store and flags.

    M2Crypto exposes neither ``SSL_get0_verified_chain`` nor a per-connection verify callback, so the verification
    the handshake made is run once more (same store, CRLs and proxy flag) to get the chain it builds.
    """
    leaf = conn.get_peer_cert()
    if leaf is None:
        raise PeerVerificationError(f"{where}: the peer sent no certificate")
    untrusted = conn.get_peer_cert_chain()
    store_ctx = m2.x509_store_ctx_new()
    try:
        store = m2.ssl_ctx_get_cert_store(conn.ctx.ctx)
        stack = untrusted._ptr() if untrusted is not None else None
        if m2.x509_store_ctx_init(store_ctx, store, leaf._ptr(), stack) != 1:  # type: ignore[attr-defined]  # unstubbed
            raise PeerVerificationError(f"{where}: cannot set up the verification of the peer's chain: refused")
        if m2.x509_verify_cert(store_ctx) != 1:  # type: ignore[attr-defined]  # unstubbed
            code = m2.x509_store_ctx_get_error(store_ctx)
            raise classify_tls_failure("", verify_code=code or _X509_V_ERR_UNSPECIFIED, peer=where)
        verified = X509.X509_Stack(m2.x509_store_ctx_get1_chain(store_ctx), 1, 1)
        return [x509.load_der_x509_certificate(cert.as_der()) for cert in verified]
    finally:
        m2.x509_store_ctx_free(store_ctx)


def _identity(
    cache: IdentityCache[Context], conn: Connection, server_side: bool, where: str, address: tuple[str, int]
) -> PeerIdentity:
    sent = _sent_chain(conn, server_side)
    if not sent:
        raise PeerVerificationError(f"{where}: the {'client' if server_side else 'server'} sent no certificate")
    return cache.identity(conn.ctx, sent, address, lambda: _verified_chain(conn, where))


def _server_identity(cache: IdentityCache[Context], conn: Connection, peer: tuple[str, int]) -> PeerIdentity:
    """The verified client's identity (a server always requires a client certificate)."""
    where = f"{peer[0]}:{peer[1]}"
    identity = _identity(cache, conn, True, where, peer)
    # M2Crypto cannot tell a resumed session apart; after a full handshake this check cannot fail (OpenSSL refused
    # an expired chain), after a resumed one it refuses a chain that expired since.
    check_resumed_identity(identity, where)
    return identity


class M2CryptoBackend:
    """TLS through M2Crypto. Keep one instance: it caches contexts."""

    name = "m2crypto"

    def __init__(self, *, reload_interval: float = 60.0, max_identities: int = 256, **_ignored: Any) -> None:
        # session_reuse and similar pyOpenSSL options are accepted and ignored so configurations can switch freely.
        self.contexts: ContextCache[Context] = ContextCache(build_context, reload_interval)
        self.identities: IdentityCache[Context] = IdentityCache(max_identities)

    def prepare_server(self, tls: TLSConfig | None) -> None:
        self.contexts.get(require_tls(tls, "m2crypto"), True)

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
    ) -> M2CryptoStream:
        tls = require_tls(tls, "m2crypto")
        ctx = self.contexts.get(tls, False)
        name = server_hostname or host
        sock = open_tcp_connection(host, port, connect_timeout, keepalive)
        peer = peer_address_of(sock)  # now, while connected: the handshake may end in a reset
        conn = Connection(ctx, sock)
        try:
            # No conn.connect(): M2Crypto's Checker never runs; our name check below applies the same rules as
            # the pyOpenSSL back end.
            conn.setup_ssl()
            conn.set_connect_state()
            if not is_ip_address(name):
                conn.set_tlsext_host_name(name)
            _handshake(conn, False, handshake_timeout, f"{host}:{port}")
            identity = None
            if tls.verify_peer:
                identity = _identity(self.identities, conn, False, name, (host, port))
                check_server_certificate(identity.chain[0], name)
                if tls.check_hostname:
                    match_server_name(identity.chain[0], name)
            _set_timeout(conn, None)
        except BaseException:
            _close_connection(conn)
            raise
        return M2CryptoStream(conn, identity, peer)

    def wrap_server(
        self, sock: socket.socket, tls: TLSConfig | None, *, handshake_timeout: float | None = 10.0
    ) -> M2CryptoStream:
        conn = self._accepting(sock, tls)
        peer = peer_address_of(sock)
        try:
            _handshake(conn, True, handshake_timeout, f"{peer[0]}:{peer[1]}")
            identity = _server_identity(self.identities, conn, peer)
            _set_timeout(conn, None)
        except BaseException:
            _close_connection(conn, failed=True)
            raise
        return M2CryptoStream(conn, identity, peer)

    def start_server_handshake(self, sock: socket.socket, tls: TLSConfig | None) -> M2CryptoServerHandshake:
        conn = self._accepting(sock, tls)
        try:
            conn.setblocking(0)  # timeout 0 for M2Crypto too: accept_ssl returns -1 instead of waiting in C
        except BaseException:
            _close_connection(conn, failed=True)
            raise
        return M2CryptoServerHandshake(conn, peer_address_of(sock), self.identities)

    def _accepting(self, sock: socket.socket, tls: TLSConfig | None) -> Connection:
        """A server-side connection on the accepted ``sock``, ready to handshake; the socket is closed on failure."""
        try:
            ctx = self.contexts.get(require_tls(tls, "m2crypto"), True)
            tune_socket(sock)
            conn = Connection(ctx, sock)
        except BaseException:
            sock.close()
            raise
        try:
            conn.setup_ssl()
            conn.set_accept_state()
        except BaseException:
            _close_connection(conn, failed=True)
            raise
        return conn


class M2CryptoServerHandshake:
    """A server handshake advanced by ``step()``: non-blocking ``accept_ssl`` and ``SSL_get_error``."""

    def __init__(self, conn: Connection, peer: tuple[str, int], identities: IdentityCache[Context]) -> None:
        self._conn = conn
        self._peer = peer
        self._identities = identities
        self._stream: M2CryptoStream | None = None
        self._closed = False

    def fileno(self) -> int:
        return -1 if self._closed else int(self._conn.fileno())

    def step(self) -> HandshakeStatus:
        if self._stream is not None:
            return HandshakeStatus.DONE
        conn = self._conn
        where = f"{self._peer[0]}:{self._peer[1]}"
        m2.err_clear_error()  # the queue is per thread: a failure below must be this handshake's own
        try:
            result = conn.accept_ssl()
        except SSLError as exc:
            self._fail()
            raise classify_tls_failure(str(exc), verify_code=conn.get_verify_result(), peer=where) from exc
        except OSError as exc:
            self._fail()
            raise ConnectionClosedError(f"{where}: connection lost during the TLS handshake: {exc}") from exc
        if result != 1:
            wanted = m2.ssl_get_error(conn.ssl, -1 if result is None else result)
            if wanted == _SSL_ERROR_WANT_READ:
                return HandshakeStatus.WANT_READ
            if wanted == _SSL_ERROR_WANT_WRITE:
                return HandshakeStatus.WANT_WRITE
            self._fail()
            code = conn.get_verify_result()
            if code:
                raise classify_tls_failure("", verify_code=code, peer=where)
            raise ConnectionClosedError(f"{where}: the peer closed the connection during the TLS handshake")
        try:
            identity = _server_identity(self._identities, conn, self._peer)
            _set_timeout(conn, None)
        except BaseException:
            self._fail()
            raise
        self._stream = M2CryptoStream(conn, identity, self._peer)
        return HandshakeStatus.DONE

    def stream(self) -> M2CryptoStream:
        if self._stream is None:
            raise RuntimeError("the TLS handshake is not complete")
        return self._stream

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _close_connection(self._conn)

    def _fail(self) -> None:
        if not self._closed:
            self._closed = True
            _close_connection(self._conn, failed=True)
