"""TLS for the asyncio client: pyOpenSSL over memory BIOs, with the very checks of the blocking back end.

The TCP connection is an :class:`~rpcframework.transports.aio.AsyncStream`; OpenSSL never touches the socket. The
stream hands the bytes it reads to :class:`MemoryTLS` (``bio_write``) and writes what OpenSSL produced
(``bio_read``). Everything else is :class:`~rpcframework.transports.pyopenssl.PyOpenSSLBackend`'s own:
:meth:`~PyOpenSSLBackend.prepare_client` builds the connection from the back end's cached context (trusted CA
directory, CRL flags, RFC 3820 proxies allowed, our credential, the verify callback), with SNI and a resumable
session; :meth:`~PyOpenSSLBackend.client_identity` reads the server's identity from the chain OpenSSL verified and
refuses a proxy, a certificate that does not serve, and one issued for another name
(``certs.check_server_certificate``/``match_server_name``). So the blocking and the asyncio client cannot
disagree about whom they talk to. Why pyOpenSSL rather than asyncio's own TLS: ``docs/architecture.md``.
"""

from __future__ import annotations

import threading
from typing import Any, Final

from OpenSSL import SSL

from rpcframework.deadline import Deadline
from rpcframework.errors import ConnectionClosedError, DeadlineExceeded
from rpcframework.transports import _openssl_internals as _internals
from rpcframework.transports.aio import AsyncStream, open_tcp_stream
from rpcframework.transports.base import (
    DEFAULT_KEEPALIVE,
    TLSConfig,
    classify_stream_failure,
    connection_lost,
    require_tls,
)
from rpcframework.transports.pyopenssl import ClientHandshake, PyOpenSSLBackend, handshake_failure
from rpcframework.transports.pyopenssl_stream import MAX_IO_STEPS, error_text

__all__ = ["MemoryTLS", "open_tls_stream"]

_PLAIN_READ: Final = 256 * 1024
_SSL_read = _internals.SSL_read
_SSL_write = _internals.SSL_write
_SSL_get_error = _internals.SSL_get_error
_WANT_READ = _internals.SSL_ERROR_WANT_READ
_BIO_read = _internals.BIO_read
_BIO_write = _internals.BIO_write
_alloc = _internals.alloc
_buffer = _internals.buffer
_from_buffer = _internals.from_buffer
#: One scratch buffer per thread for OpenSSL to read into (a loop runs its connections' TLS on one thread, and
#: nothing here re-enters): what is read is copied out at once, so no call allocates a buffer of its own.
_SCRATCH_SIZE: Final = _PLAIN_READ
_scratch = threading.local()


def _scratch_buffer() -> Any:
    try:
        return _scratch.buffer
    except AttributeError:
        buf = _scratch.buffer = _alloc("char[]", _SCRATCH_SIZE)
        return buf


class MemoryTLS:
    """One client TLS connection over memory BIOs (the :class:`~rpcframework.transports.aio.TLSEngine` of a
    stream). Failures are mapped onto :mod:`rpcframework.errors` as the blocking stream maps them.

    Reads and writes call OpenSSL directly (through :mod:`~rpcframework.transports._openssl_internals`, as the
    blocking stream does) and go through pyOpenSSL's error mapping only when a call fails for another reason than
    "no more input yet": its ``recv``/``bio_read`` wrappers raise an exception each time a buffer runs empty, that
    is several times per call.
    """

    __slots__ = ("_conn", "_from_ssl", "_into_ssl", "_raise_ssl_error", "_ssl", "_where", "peer_finished")

    def __init__(self, handshake: ClientHandshake) -> None:
        conn = self._conn = handshake.conn
        self._where = handshake.where
        self._ssl = _internals.ssl_pointer(conn)
        self._into_ssl, self._from_ssl = _internals.memory_bios(conn)
        self._raise_ssl_error = _internals.error_raiser(conn)
        #: The peer's close_notify was read: its stream has ended, whether or not it keeps TCP open.
        self.peer_finished = False

    def handshake_step(self) -> bool:
        """Advance the handshake with what was fed; ``True`` once it is complete."""
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            return False
        except (SSL.Error, OSError) as exc:
            raise handshake_failure(exc, self._conn, self._where) from exc
        return True

    def receive(self, data: bytes) -> None:
        view = memoryview(data)
        for _ in range(MAX_IO_STEPS):  # a memory BIO takes everything at once; the loop is a guard
            if not view:
                return
            written = _BIO_write(self._into_ssl, _from_buffer(view), len(view))
            if written <= 0:
                raise ConnectionClosedError(f"connection to {self._where}: OpenSSL refused incoming data")
            view = view[written:]

    def receive_eof(self) -> None:
        self._conn.bio_shutdown()

    def read_plain(self) -> bytes:
        ssl = self._ssl
        pieces: list[bytes] = []
        buf = _scratch_buffer()
        for _ in range(MAX_IO_STEPS):
            size = _SSL_read(ssl, buf, _SCRATCH_SIZE)
            if size > 0:
                pieces.append(_buffer(buf, size)[:])
                continue
            if _SSL_get_error(ssl, size) == _WANT_READ:
                break  # everything fed so far is decrypted
            try:
                self._raise_ssl_error(ssl, size)
            except SSL.ZeroReturnError:
                self.peer_finished = True  # close_notify: the end of the stream, even if TCP stays open
                break
            except SSL.SysCallError as exc:
                if exc.args and exc.args[0] == -1:
                    break  # EOF without close_notify (DISET peers close that way)
                raise connection_lost(self._where, exc.args[0] if exc.args else None, exc.args[-1]) from exc
            except SSL.WantReadError:
                break
            except SSL.Error as exc:
                # TLS 1.3: a server that refuses our certificate says so after our side of the handshake ended.
                raise classify_stream_failure(error_text(exc), self._where) from exc
            break
        if not pieces:
            return b""
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def encrypt(self, data: bytes | memoryview) -> bytes:
        size = len(data)
        if size:
            written = _SSL_write(self._ssl, _from_buffer(data), size)  # whole writes: partial writes are off
            if written != size:
                try:
                    self._raise_ssl_error(self._ssl, written)
                except SSL.Error as exc:
                    raise classify_stream_failure(error_text(exc), self._where) from exc
                raise ConnectionClosedError(f"connection to {self._where}: OpenSSL wrote {written} of {size} bytes")
        return self._drain()

    def outgoing(self) -> bytes:
        return self._drain()

    def _drain(self) -> bytes:
        """Everything OpenSSL wrote into its outgoing BIO (read in one piece unless it is larger than the scratch
        buffer)."""
        source = self._from_ssl
        pieces: list[bytes] = []
        buf = _scratch_buffer()
        for _ in range(MAX_IO_STEPS):
            size = _BIO_read(source, buf, _SCRATCH_SIZE)
            if size <= 0:
                break  # empty (a memory BIO says "retry" when it has nothing)
            pieces.append(_buffer(buf, size)[:])
            if size < _SCRATCH_SIZE:
                break
        if not pieces:
            return b""
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def close_notify(self) -> bytes:
        try:
            self._conn.shutdown()
        except (SSL.Error, OSError):
            return b""
        return self.outgoing()


async def open_tls_stream(
    backend: PyOpenSSLBackend,
    host: str,
    port: int,
    *,
    tls: TLSConfig | None,
    server_hostname: str | None = None,
    connect_timeout: float | None = 10.0,
    handshake_timeout: float | None = 10.0,
    keepalive: float | None = DEFAULT_KEEPALIVE,
) -> AsyncStream:
    """Connect and complete the TLS handshake as :meth:`PyOpenSSLBackend.connect` does, without blocking the loop.

    The stream's ``peer_identity`` is the verified server; a server that is not the one asked for (see the module
    docstring) is refused before a byte of ours is sent over the connection.
    """
    tls = require_tls(tls, "pyopenssl")
    backend.contexts.get(tls, False)  # bad credentials fail here, before any connection is made
    stream = await open_tcp_stream(host, port, connect_timeout, keepalive)
    handshake: ClientHandshake | None = None
    try:
        handshake = backend.prepare_client(tls, host, port, server_hostname=server_hostname)
        engine = MemoryTLS(handshake)
        stream.start_tls(engine)
        await _run_handshake(stream, engine, handshake_timeout, f"TLS handshake with {handshake.where}")
        identity = backend.client_identity(handshake)
    except BaseException:
        if handshake is not None:
            backend.forget_session(handshake)
        stream.abort()
        raise
    stream.peer_identity = identity
    stream.tls_ready()
    prepared = handshake
    stream.on_close = lambda: backend.keep_session(prepared, stream.received_data, identity)
    return stream


async def _run_handshake(stream: AsyncStream, engine: MemoryTLS, timeout: float | None, what: str) -> None:
    deadline = Deadline.within(timeout)
    for _ in range(MAX_IO_STEPS):
        done = engine.handshake_step()
        stream.write_raw(engine.outgoing())
        if done:
            return
        if stream.peer_closed or stream.failure is not None:
            # What OpenSSL read before the end (an alert) says why; the EOF is in its input already.
            raise stream.failure or ConnectionClosedError(f"{what}: the server closed the connection")
        left = deadline.left()
        if left is not None and left <= 0:
            raise DeadlineExceeded(deadline.exceeded_message(what))
        await stream.wait_handshake_data(left, what)
    raise DeadlineExceeded(f"{what} made no progress")
