"""asyncio streams for the asyncio client: one :class:`AsyncStream` per connection, plain TCP or TLS.

The stream is the connection's ``asyncio.Protocol`` and the interface the client drives, in one object: the event
loop calls :meth:`AsyncStream.data_received` with what the socket read, the client awaits :meth:`AsyncStream.recv`
for it and hands it to a sans-IO protocol machine. Writes are buffered by the loop's transport (:meth:`write` never
waits); :meth:`drain` waits while that buffer is over its high-water mark (bulk transfers).

TLS is a :class:`TLSEngine` (``transports/aio_tls.py``: pyOpenSSL over memory BIOs) plugged in after the TCP
connect; the stream then feeds it ciphertext and buffers the plaintext it returns.

Nothing here blocks: a wait is a future of the loop, bounded by the time the caller passes; a wait that runs out
raises :class:`~rpcframework.errors.DeadlineExceeded`. A task cancelled while it waits leaves the stream as it was;
the caller decides to close it (the client always does: a half-read reply cannot be resumed).

**Event mode** (the steady state of a call): instead of buffering bytes for :meth:`AsyncStream.recv`,
:meth:`AsyncStream.expect_event` hands what arrives to the stream's :attr:`~AsyncStream.consumer` (the connection's
protocol machine) inside ``data_received``, and the one future it returns gets the first complete answer: the
task that awaits it is woken once per reply, with the reply already parsed, whatever the pieces the socket read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

from rpcframework.errors import (
    ConnectError,
    ConnectionClosedError,
    DeadlineExceeded,
    NameResolutionError,
    RPCFrameworkError,
)
from rpcframework.transports.base import DEFAULT_KEEPALIVE, connection_lost
from rpcframework.transports.plain import ConnectTimeout, tune_socket

if TYPE_CHECKING:
    from rpcframework.security.x509 import PeerIdentity

__all__ = ["AsyncStream", "Consumer", "ExpiryWatch", "TLSEngine", "open_tcp_stream"]

logger = logging.getLogger(__name__)

#: Plaintext buffered ahead of the reader before the socket stops being read (a slow consumer of a download).
_READ_HIGH: Final = 4 * 1024 * 1024
#: The transport's write buffer limits: large enough that a bulk sender is not woken for every TLS record.
_WRITE_HIGH: Final = 1024 * 1024
_WRITE_LOW: Final = 256 * 1024
#: Wake-ups without data a read accepts (TLS records that carry none: session tickets, key updates); a guard only.
_MAX_EMPTY_WAKEUPS: Final = 10_000

#: Event mode's parser: takes plaintext (``b""``: the peer closed) and returns the answer awaited, or ``None`` while
#: it is incomplete; raises an ``RPCFrameworkError`` for a bad peer (the awaiting task gets it).
Consumer = Callable[[bytes], object]


class TLSEngine(Protocol):
    """TLS over memory buffers, as the stream needs it (:class:`~rpcframework.transports.aio_tls.MemoryTLS`)."""

    def receive(self, data: bytes) -> None:
        """Take ciphertext from the socket."""
        ...

    def receive_eof(self) -> None:
        """The peer closed its side of the connection."""
        ...

    def read_plain(self) -> bytes:
        """The plaintext that the ciphertext received so far completes (``b""``: none yet); raises for a TLS
        failure (an alert, a record that does not decrypt)."""
        ...

    @property
    def peer_finished(self) -> bool:
        """The peer's close_notify was read: no more data comes, whether or not it keeps TCP open."""
        ...

    def encrypt(self, data: bytes | memoryview) -> bytes:
        """Ciphertext of ``data`` to write to the socket."""
        ...

    def outgoing(self) -> bytes:
        """Ciphertext the engine produced on its own (handshake, alerts, key updates); ``b""`` if none."""
        ...

    def close_notify(self) -> bytes:
        """A close_notify alert to send before closing (``b""`` if it cannot be made)."""
        ...


class AsyncStream(asyncio.Protocol):
    """A connected stream driven by the running event loop; used by one task at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._eof = False
        self._error: RPCFrameworkError | None = None
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._tls: TLSEngine | None = None
        self._handshaking = False
        self.peer_identity: PeerIdentity | None = None
        self.peer_address: tuple[str, int] = ("", 0)
        #: True once the peer sent application data (a TLS session is kept only from such a connection).
        self.received_data = False
        #: Called once when the stream closes (the TLS back end keeps the session for resumption).
        self.on_close: object = None
        #: Event mode's parser (see :meth:`expect_event`), set once by the owner of the connection.
        self.consumer: Consumer | None = None
        self._event: asyncio.Future[object] | None = None
        self._event_timer: asyncio.TimerHandle | None = None
        self._event_watch: ExpiryWatch | None = None
        self._event_timeout = 0.0

    def __repr__(self) -> str:
        who = self.peer_identity.dn if self.peer_identity is not None else ("tls" if self._tls else "plain")
        return f"<AsyncStream peer={self.peer_address[0]}:{self.peer_address[1]} {who!r} closed={self._closed}>"

    # -- asyncio.Protocol ------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports have asyncio.Transport's methods without being subclasses.
        stream_transport = self._transport = cast("asyncio.Transport", transport)
        stream_transport.set_write_buffer_limits(high=_WRITE_HIGH, low=_WRITE_LOW)
        peer = stream_transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer_address = (str(peer[0]), int(peer[1]))

    def data_received(self, data: bytes) -> None:
        tls = self._tls
        if tls is not None:
            tls.receive(data)
            if self._handshaking:
                self._wake()  # the handshake loop reads the engine itself
                return
            try:
                data = tls.read_plain()
            except RPCFrameworkError as exc:
                self._fail(exc)
                return
            self._flush_tls()
            if tls.peer_finished and not self._eof:
                self._end_of_tls_stream(data)
                return
        if data:
            if self._event is not None:
                self._consume(data)
                return
            self._buffer(data)
        self._wake()

    def _deliver(self, data: bytes) -> None:
        """Plaintext in: to the consumer in event mode, else into the read buffer."""
        if self._event is not None:
            self._consume(data)
        else:
            self._buffer(data)

    def _end_of_tls_stream(self, last: bytes) -> None:
        """The peer's close_notify ends the stream as its TCP EOF would: a reply cut by it fails at once instead
        of waiting for a TCP close the peer may never send."""
        if last:
            self._deliver(last)
        self._eof = True
        self._wake()
        self._end_event()

    def eof_received(self) -> bool:
        self._eof = True
        tls = self._tls
        if tls is not None:
            tls.receive_eof()
            if not self._handshaking:
                try:
                    last = tls.read_plain()
                except RPCFrameworkError as exc:
                    self._error = self._error or exc
                else:
                    if last:
                        self._deliver(last)
        self._wake()
        self._end_event()
        return False  # the transport closes itself: we never write after the peer has finished

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if exc is not None and self._error is None and not self._eof:
            self._error = connection_lost(self._where, getattr(exc, "errno", None), exc)
        self._eof = True
        self._wake()
        self._end_event()
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._run_on_close()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the stream ------------------------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def at_eof(self) -> bool:
        """The peer closed (or the connection failed) and every buffered byte was read."""
        return (self._eof or self._error is not None) and not self._chunks

    @property
    def quiet(self) -> bool:
        """Open, and nothing received since the last read (no bytes, no end of stream, no failure)."""
        return not self._chunks and not self._eof and self._error is None and not self._closed

    def pending(self) -> int:
        """Plaintext bytes received and not read yet."""
        return self._buffered

    def write(self, data: bytes | memoryview) -> None:
        """Queue ``data`` for sending (never waits; see :meth:`drain`)."""
        transport = self._transport
        if self._closed or transport is None or transport.is_closing():
            raise self._error or ConnectionClosedError(f"connection to {self._where} is closed: cannot send")
        if self._tls is not None:
            data = self._tls.encrypt(data)
        transport.write(data)

    def write_raw(self, data: bytes) -> None:
        """Queue bytes as they are (the TLS engine's handshake records)."""
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    async def drain(self, timeout: float | None, what: str = "sending") -> None:
        """Wait until the write buffer is below its low-water mark (at once when it is)."""
        if not self._write_paused or self._closed:
            if self._error is not None and self._closed:
                raise self._error
            return
        waiter = self._drain_waiter
        if waiter is None or waiter.done():
            waiter = self._drain_waiter = self._loop.create_future()
        await self._wait_for(waiter, timeout, what)
        if self._closed and self._error is not None:
            raise self._error

    async def recv(self, timeout: float | None, what: str = "receiving") -> bytes:
        """Everything received and not read yet (at least one byte), waiting up to ``timeout`` seconds for it;
        ``b""`` once the peer has closed. A TLS or connection failure raises."""
        if not self._chunks:
            ends = None if timeout is None else self._loop.time() + timeout
            # Woken by records without application data too (a TLS 1.3 session ticket): wait again then.
            for _ in range(_MAX_EMPTY_WAKEUPS):
                if self._error is not None:
                    raise self._error
                if self._eof:
                    return b""
                await self._wait_data(None if ends is None else ends - self._loop.time(), what)
                if self._chunks:
                    break
            else:
                raise ConnectionClosedError(f"{self._where} kept sending records without data while {what}")
        return self.read_nowait()

    def read_nowait(self) -> bytes:
        """Everything received and not read yet, without waiting (``b""`` when nothing is buffered)."""
        chunks = self._chunks
        if not chunks:
            return b""
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._buffered = 0
        if self._read_paused and self._transport is not None:
            self._read_paused = False
            self._transport.resume_reading()
        return data

    async def _wait_data(self, timeout: float | None, what: str) -> None:
        waiter = self._waiter = self._loop.create_future()
        try:
            await self._wait_for(waiter, timeout, what)
        finally:
            self._waiter = None

    async def _wait_for(self, waiter: asyncio.Future[None], timeout: float | None, what: str) -> None:
        if timeout is None:
            await waiter
            return
        handle = self._loop.call_later(max(timeout, 0.0), _expire, waiter)
        try:
            await waiter
        except _Expired:
            raise DeadlineExceeded(f"{what} ({self._where}) did not complete within {timeout:g} s") from None
        finally:
            handle.cancel()

    def close(self) -> None:
        """Close the connection (a TLS close_notify first when possible); idempotent, never raises."""
        self._stop_event()
        if self._closed:
            return
        self._closed = True
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if self._tls is not None and not self._handshaking and self._error is None:
                with contextlib.suppress(Exception):
                    transport.write(self._tls.close_notify())
            transport.close()
        self._run_on_close()

    def abort(self) -> None:
        """Drop the connection at once, discarding what is not sent yet."""
        self._stop_event()
        self._closed = True
        if self._transport is not None:
            self._transport.abort()
        self._run_on_close()

    # -- event mode -------------------------------------------------------------------------------------------------

    def expect_event(self, timeout: float | None, watch: ExpiryWatch | None = None) -> asyncio.Future[object]:
        """Event mode until the returned future is done: plaintext goes to :attr:`consumer` as it arrives, and the
        future gets the consumer's first answer, or the connection's failure, or (after ``timeout`` seconds; ``None``:
        never) :class:`~rpcframework.errors.DeadlineExceeded`, kept by ``watch`` (the loop's shared deadline timer)
        or by a timer of its own. Call it with nothing buffered (:meth:`pending` is 0) and before writing the
        request. The caller awaits the future; if it stops waiting (cancelled), it closes the stream, which ends
        event mode."""
        waiter: asyncio.Future[object] = self._loop.create_future()
        if self._closed or self._eof or self._error is not None:
            waiter.set_exception(self._error or ConnectionClosedError(f"connection to {self._where} is closed"))
            return waiter
        self._event = waiter
        if timeout is not None:
            self._event_timeout = timeout
            if watch is not None:
                self._event_watch = watch
                watch.add(self, timeout, _stream_expired)
            else:
                self._event_timer = self._loop.call_later(max(timeout, 0.0), self.event_expired)
        return waiter

    def _consume(self, data: bytes) -> None:
        """Event mode: give ``data`` (``b""``: end of stream) to the consumer; deliver its answer when it has one."""
        waiter = self._event
        consumer = self.consumer
        assert waiter is not None and consumer is not None
        if waiter.done():  # the task stopped waiting (cancelled): it closes the stream
            self._stop_event()
            if data:
                self._buffer(data)
            return
        try:
            answer = consumer(data)
        except RPCFrameworkError as exc:
            self._stop_event()
            waiter.set_exception(exc)
            return
        if answer is not None:
            self._stop_event()
            waiter.set_result(answer)

    def _end_event(self) -> None:
        """The connection ended or failed: an event-mode wait gets the failure, or the end of the stream."""
        waiter = self._event
        if waiter is None:
            return
        if self._error is not None or waiter.done():
            self._stop_event()
            if not waiter.done():
                waiter.set_exception(self._error or ConnectionClosedError(f"connection to {self._where} is closed"))
            return
        self._consume(b"")
        if self._event is not None:  # the consumer wanted more after the end: nothing more will come
            self._stop_event()
            waiter.set_exception(ConnectionClosedError(f"{self._where} closed the connection"))

    def event_expired(self) -> None:
        """The event-mode wait's time ran out (its timer, or the :class:`ExpiryWatch` keeping it, calls this)."""
        waiter = self._event
        self._event_timer = None
        self._event_watch = None
        self._stop_event()
        if waiter is not None and not waiter.done():
            what = f"waiting for the result ({self._where}) did not complete within {self._event_timeout:g} s"
            waiter.set_exception(DeadlineExceeded(what))

    def _stop_event(self) -> None:
        self._event = None
        watch = self._event_watch
        if watch is not None:
            self._event_watch = None
            watch.remove(self)
            return
        timer = self._event_timer
        if timer is not None:
            self._event_timer = None
            timer.cancel()

    # -- TLS set-up (transports/aio_tls.py) ------------------------------------------------------------------------

    def start_tls(self, engine: TLSEngine) -> None:
        """From now on the socket's bytes go to ``engine``; the handshake runs until :meth:`tls_ready`."""
        self._tls = engine
        self._handshaking = True

    def tls_ready(self) -> None:
        """The handshake is complete: decrypt what arrived with its last records, and carry on decrypting."""
        self._handshaking = False
        engine = self._tls
        assert engine is not None
        try:
            data = engine.read_plain()
        except RPCFrameworkError as exc:
            self._fail(exc)
            return
        self._flush_tls()
        if data:
            self._buffer(data)

    async def wait_handshake_data(self, timeout: float | None, what: str) -> None:
        """Wait until the peer sends more (the engine has it already), closes, or the connection fails."""
        if not self._eof and self._error is None:
            await self._wait_data(timeout, what)

    @property
    def peer_closed(self) -> bool:
        return self._eof

    @property
    def failure(self) -> RPCFrameworkError | None:
        return self._error

    # -- internals -------------------------------------------------------------------------------------------------

    def _buffer(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        self.received_data = True
        if self._buffered > _READ_HIGH and not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()

    def _flush_tls(self) -> None:
        if self._tls is not None:
            self.write_raw(self._tls.outgoing())

    def _fail(self, exc: RPCFrameworkError) -> None:
        self._error = exc
        self._wake()
        self._end_event()
        if self._transport is not None:
            self._flush_tls_quietly()
            self._transport.close()

    def _flush_tls_quietly(self) -> None:
        with contextlib.suppress(Exception):  # an alert for the peer, if the engine made one
            self._flush_tls()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _run_on_close(self) -> None:
        callback, self.on_close = self.on_close, None
        if callable(callback):
            try:
                callback()
            except Exception:  # a session cache must never break closing
                logger.debug("on_close callback failed", exc_info=True)

    @property
    def _where(self) -> str:
        return f"{self.peer_address[0]}:{self.peer_address[1]}"


class ExpiryWatch:
    """The deadlines of one event loop's waits (calls waiting for their answer, or for a connection), kept with one
    timer.

    A timer per wait (``loop.call_later``) costs a handle, a push on the loop's heap (whose comparisons are Python
    calls: with 1,000 calls in flight, about ten per push) and a cancellation that the loop cleans up later; almost
    every wait ends long before its deadline. Here a wait is one dict entry; the one timer is armed for the earliest
    deadline and re-armed when it fires (or when a wait with an earlier deadline arrives).
    """

    __slots__ = ("_due", "_loop", "_timer", "_timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._due: dict[object, tuple[float, Callable[[Any], None]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def __len__(self) -> int:
        return len(self._due)

    def add(self, key: object, timeout: float, expired: Callable[[Any], None]) -> None:
        """Call ``expired(key)`` in ``timeout`` seconds unless :meth:`remove` comes first."""
        when = self._loop.time() + max(timeout, 0.0)
        self._due[key] = (when, expired)
        if when < self._timer_at:
            self._arm(when)

    def remove(self, key: object) -> None:
        """Forget ``key``'s wait (the timer stays armed: when it fires with nothing due, it is not re-armed)."""
        self._due.pop(key, None)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        now = self._loop.time()
        due = self._due
        expired = [(key, entry[1]) for key, entry in due.items() if entry[0] <= now]
        for key, _ in expired:
            del due[key]
        for key, callback in expired:
            try:
                callback(key)
            except Exception:  # one wait's expiry must never stop the others'
                logger.exception("a deadline callback failed")
        if due:
            self._arm(min(entry[0] for entry in due.values()))


def _stream_expired(stream: AsyncStream) -> None:
    stream.event_expired()


class _Expired(Exception):
    """Internal: a wait's time ran out (turned into DeadlineExceeded with the wait's description)."""


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(_Expired())


async def open_tcp_stream(
    host: str, port: int, timeout: float | None, keepalive: float | None = DEFAULT_KEEPALIVE
) -> AsyncStream:
    """Connect to ``host:port`` (every address it resolves to, in turn) within ``timeout`` seconds, with the socket
    options of the blocking client (``keepalive``: see :func:`~rpcframework.transports.plain.tune_socket`). Errors
    as :func:`~rpcframework.transports.plain.open_tcp_connection`: NameResolutionError, ConnectTimeout,
    ConnectError."""
    loop = asyncio.get_running_loop()
    target = f"{host}:{port}"
    try:
        async with asyncio.timeout(timeout):
            transport, stream = await loop.create_connection(lambda: AsyncStream(loop), host, port)
    except TimeoutError as exc:
        raise ConnectTimeout(f"connecting to {target} timed out after {timeout:g} s") from exc
    except (socket.gaierror, UnicodeError) as exc:  # UnicodeError: a label IDNA cannot encode
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise NameResolutionError(
            f"cannot resolve the host name {host!r} ({reason}): check the host in the URL or the configuration, "
            "and that this machine's DNS knows it"
        ) from exc
    except OSError as exc:
        raise ConnectError(f"cannot connect to {target} ({exc.strerror or exc})") from exc
    sock = transport.get_extra_info("socket")
    if sock is not None:
        tune_socket(sock, keepalive)
    return stream
