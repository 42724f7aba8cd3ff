"""The pyOpenSSL back end's stream: reads, writes and waits on an established TLS connection.

Reads and writes call OpenSSL directly and go through pyOpenSSL's error mapping only when a call returns nothing;
a read that returns a whole record also takes the records already waiting. Sockets are non-blocking and every wait
is a ``poll`` bounded by the stream's timeout. Handshakes, contexts and identities are in
:mod:`rpcframework.transports.pyopenssl`.
"""

from __future__ import annotations

import contextlib
import select
import socket
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL

from rpcframework.deadline import Deadline
from rpcframework.errors import ConnectionClosedError, DeadlineExceeded
from rpcframework.transports import _openssl_internals as _internals
from rpcframework.transports.base import TLSStreamInfo, classify_stream_failure, connection_lost

if TYPE_CHECKING:
    from rpcframework.security.x509 import PeerIdentity

__all__ = ["MAX_IO_STEPS", "PyOpenSSLStream", "error_text"]

#: Each pass of an I/O loop either moves bytes or waits on poll; this only guards against a library that keeps
#: asking to retry without ever blocking.
MAX_IO_STEPS = 100_000
# The largest plaintext of one TLS record: a read that returns this much suggests that more records are waiting.
_FULL_RECORD = 16_384
# One SSL_write takes at most an int's worth of bytes; send_all loops over larger buffers.
_MAX_WRITE = 1 << 30
_SSL_read = _internals.SSL_read
_SSL_write = _internals.SSL_write
_SSL_pending = _internals.SSL_pending
_alloc = _internals.alloc
_buffer = _internals.buffer
_from_buffer = _internals.from_buffer
_release = _internals.release


def error_text(exc: SSL.Error) -> str:
    """OpenSSL's reason strings in a pyOpenSSL error, joined; the exception's text when it carries none."""
    parts = []
    for item in exc.args[0] if exc.args and isinstance(exc.args[0], list) else []:
        if isinstance(item, tuple) and item:
            parts.append(str(item[-1]))
    return "; ".join(parts) or str(exc) or type(exc).__name__


class PyOpenSSLStream(TLSStreamInfo):
    """A TLS connection behind the :class:`~rpcframework.transports.base.Stream` interface."""

    def __init__(
        self, conn: SSL.Connection, sock: socket.socket, identity: PeerIdentity | None, peer: tuple[str, int]
    ) -> None:
        self._conn = conn
        self._sock = sock
        self._identity = identity
        self._peer = peer
        self._timeout: float | None = None
        self._closed = False
        self.on_close: Any = None  # set by the back end to keep the TLS session for resumption
        self.received_data = False  # a session is kept only from a connection the peer answered on
        self._deferred: SSL.Error | None = None  # what ended a bulk read, reported by the next recv
        # Reads and writes call OpenSSL directly and go through pyOpenSSL's error mapping only when a call returns
        # nothing: its recv/send wrappers cost about as much Python time per record as the rest of an exchange.
        self._ssl = _internals.ssl_pointer(conn)
        self._raise_ssl_error = _internals.error_raiser(conn)
        # One poller per stream, registered once: building and registering one per wait costs on every call.
        self._poller: Any = None
        self._poll_events = 0
        # Set by send_all: the next recv most likely waits for the peer's answer (see recv).
        self._answer_due = False
        # True when the last read left OpenSSL holding no decrypted byte: it returned less than was asked, so the
        # record it came from was used up (nothing is read ahead). Spares an SSL_pending call per exchange.
        self._drained = True

    @property
    def tls_version(self) -> str:
        return str(self._conn.get_protocol_version_name())

    @property
    def session_reused(self) -> bool:
        """Whether the handshake resumed an earlier TLS session (pyOpenSSL has no public accessor)."""
        return _internals.session_reused(self._conn)

    def settimeout(self, seconds: float | None) -> None:
        self._timeout = seconds

    def pending(self) -> int:
        if self._deferred is not None:
            return 1  # the end of a bulk read waits in the stream: the next recv reports it
        return int(self._conn.pending())

    def fileno(self) -> int:
        return -1 if self._closed else self._sock.fileno()

    def recv(self, max_bytes: int) -> bytes:
        if max_bytes <= 0:
            raise ValueError(f"recv needs a positive max_bytes, not {max_bytes}")
        buf = _alloc("char[]", max_bytes)
        size = self._read(buf, max_bytes)
        return _buffer(buf, size)[:] if size else b""

    def recv_into(self, view: memoryview) -> int:
        """:meth:`recv` into ``view`` (writable): OpenSSL decrypts straight into it, no copy."""
        size = len(view)
        if size <= 0:
            raise ValueError("recv_into needs a non-empty buffer")
        buf = _from_buffer(view, require_writable=True)
        try:
            return self._read(buf, size)
        finally:  # a failure's traceback must not keep the caller's buffer exported (a BufferError on release)
            _release(buf)

    def _read(self, buf: Any, max_bytes: int) -> int:
        """Read between 1 and ``max_bytes`` decrypted bytes into ``buf`` (a cffi ``char[]``); 0 at the end."""
        if self._deferred is not None:  # the end of a bulk read (_read_more) kept for this call
            deferred, self._deferred = self._deferred, None
            return self._recv_failure(deferred)
        deadline: Deadline | None = None  # started at the first wait: a read that needs none reads no clock
        if self._answer_due:
            self._answer_due = False
            if self._timeout != 0.0 and (self._drained or not _SSL_pending(self._ssl)):
                # Right after a send (a request, a result) the answer is almost never there yet: wait for the
                # socket first, which spares OpenSSL a failed read and pyOpenSSL a WantReadError per exchange.
                # Safe: no decrypted byte is pending (checked), and OpenSSL does not read ahead of the record it
                # decrypts, so unread bytes can only be in the socket, where poll sees them (an EOF or error too).
                deadline = Deadline.within(self._timeout)
                self._wait(select.POLLIN, deadline, "receiving")
        ssl = self._ssl
        for _ in range(MAX_IO_STEPS):
            size = _SSL_read(ssl, buf, max_bytes)
            if size > 0:
                self.received_data = True
                if size >= _FULL_RECORD and max_bytes - size >= _FULL_RECORD:
                    size = self._read_more(buf, size, max_bytes)
                self._drained = size < max_bytes
                return int(size)
            try:
                self._raise_ssl_error(ssl, size)
            except SSL.WantReadError:
                deadline = deadline or Deadline.within(self._timeout)
                self._wait(select.POLLIN, deadline, "receiving")
            except SSL.WantWriteError:
                deadline = deadline or Deadline.within(self._timeout)
                self._wait(select.POLLOUT, deadline, "receiving")
            except SSL.Error as exc:
                return self._recv_failure(exc)
        raise ConnectionClosedError(f"connection to {self._where} made no progress")

    def _read_more(self, buf: Any, size: int, max_bytes: int) -> int:
        """Bulk data: the first read returned a whole TLS record, so more are probably waiting. Take those already
        here into the same buffer, without waiting, so that the layers above handle one large piece instead of
        one per 16 KiB record (OpenSSL returns one record per read). A failure is kept for the next ``recv``,
        after this data. Returns the bytes now in ``buf``."""
        ssl = self._ssl
        while max_bytes - size >= _FULL_RECORD:  # bounded: each pass adds a record or stops
            more = _SSL_read(ssl, buf + size, max_bytes - size)
            if more <= 0:
                try:
                    self._raise_ssl_error(ssl, more)  # also empties the thread's OpenSSL error queue
                except (SSL.WantReadError, SSL.WantWriteError):
                    pass
                except SSL.Error as exc:
                    self._deferred = exc
                break
            size += more
            if more < _FULL_RECORD:
                break
        return size

    def _recv_failure(self, exc: SSL.Error) -> int:
        """What a failed read means: the end of the stream (0 bytes) or our error."""
        if isinstance(exc, SSL.ZeroReturnError):
            return 0
        if isinstance(exc, SSL.SysCallError):
            if exc.args and exc.args[0] == -1:
                return 0  # EOF without close_notify
            raise connection_lost(self._where, exc.args[0] if exc.args else None, exc.args[-1]) from exc
        # TLS 1.3: a server that refuses our certificate says so after our handshake finished.
        raise classify_stream_failure(error_text(exc), self._where) from exc

    def send_all(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        deadline: Deadline | None = None
        for _ in range(MAX_IO_STEPS):
            if not view:
                return
            sent = _SSL_write(self._ssl, _from_buffer(view), min(len(view), _MAX_WRITE))
            try:
                if sent <= 0:
                    self._raise_ssl_error(self._ssl, sent)
                    continue  # not reached: every result <= 0 raises
            except SSL.WantWriteError:
                deadline = deadline or Deadline.within(self._timeout)
                self._wait(select.POLLOUT, deadline, "sending")
                continue
            except SSL.WantReadError:
                deadline = deadline or Deadline.within(self._timeout)
                self._wait(select.POLLIN, deadline, "sending")
                continue
            except SSL.SysCallError as exc:
                code = exc.args[0] if exc.args else None
                raise connection_lost(self._where, code, exc, sending=True) from exc
            except SSL.ZeroReturnError as exc:
                raise ConnectionClosedError(f"connection to {self._where} lost while sending: {exc}") from exc
            except SSL.Error as exc:
                raise classify_stream_failure(error_text(exc), self._where) from exc
            view = view[sent:]
            if not view:
                self._answer_due = True
                return
        raise ConnectionClosedError(f"connection to {self._where} made no progress while sending")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.on_close is not None:
            self.on_close(self._conn)
        with contextlib.suppress(Exception):  # the peer may already be gone; closing must not raise
            self._conn.shutdown()  # one non-blocking close_notify; never wait for the peer's
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    @property
    def _where(self) -> str:
        return f"{self._peer[0]}:{self._peer[1]}"

    def _wait(self, events: int, deadline: Deadline, what: str) -> None:
        left = deadline.left()  # the strings below are built only on a timeout
        timeout_ms: float | None = None
        if left is not None:
            if left <= 0:
                raise DeadlineExceeded(deadline.exceeded_message(f"{what} ({self._where})"))
            timeout_ms = left * 1000.0
        poller = self._poller
        if poller is None:
            poller = self._poller = select.poll()
            poller.register(self._sock, events)
            self._poll_events = events
        elif events != self._poll_events:
            poller.modify(self._sock, events)
            self._poll_events = events
        if not poller.poll(timeout_ms):
            raise DeadlineExceeded(f"{what} ({self._where}) timed out")
