"""``AsyncTransferClient``: ``sendFile``/``receiveFile`` from asyncio code, with ``TransferClient``'s guarantees.

The same exchange as :class:`~rpcframework.client.transfer.TransferClient` (proposal ``["FileTransfer",
direction]``, file info, ``"Accepted"``, the data phase, the server's result), driven through the same sans-IO
machines (``ClientConnection``, then ``ClientTransfer``) over an :class:`~rpcframework.transports.aio.AsyncStream`:

* with our servers the ``stream`` data phase (no per-chunk round trip), ``resume`` and CRC-32 (or SHA-256 with
  ``checksum="sha256"``) are offered; ``stream=False``, or a DIRAC server, gives DIRAC's stop-and-wait chunks
  checked with MD5;
* downloads to a path are atomic (:class:`~rpcframework.transfer.atomic.AtomicFile`: nothing partial is left
  behind) and resumable (``resume=True`` keeps the partial data of a failed download and continues it);
* ``on_progress(done, total)`` is called as data moves; an exception it raises aborts the transfer;
* URLs, failover (before any data moved), bans, credentials and delegation come from ``BaseClient``;
  ``Timeout.total`` bounds each network wait, not the whole transfer.

Sending waits on the transport's flow control (``drain``), so a large file never sits in memory. File reads and
writes are ordinary (blocking) calls of at most one chunk (1 MiB) each: local disks answer them in well under a
millisecond; put a file on a slow network file system behind ``asyncio.to_thread`` yourself if you must.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from typing import IO, Any, Final

from rpcframework.client.base import BaseClient, Endpoint
from rpcframework.client.options import ClientOptions
from rpcframework.client.transfer import _SHA256_OFFER, TRANSFER_OFFER, _size_of
from rpcframework.client.transfer_pipe import TransferLimits
from rpcframework.deadline import Deadline
from rpcframework.errors import ConfigurationError, DeadlineExceeded, RemoteError, RPCFrameworkError
from rpcframework.protocol import NEED_DATA, ClientConnection, Feature, ProposalAccepted, ProposalRefused
from rpcframework.protocol.events import PAUSED
from rpcframework.protocol.messages import ActionType, FileInfo, TransferDirection
from rpcframework.protocol.transfer import (
    CHECKSUM_ERROR,
    CHUNK_SIZE,
    ChunkAcknowledged,
    ChunkReceived,
    ClientTransfer,
    ResultReceived,
    TransferAborted,
    TransferAccepted,
    TransferFinished,
    TransferRefused,
    TransferStarted,
)
from rpcframework.protocol.transfer_events import STREAM_CHECKSUMS
from rpcframework.returnvalues import S_ERROR, S_OK, DReturn
from rpcframework.transfer import AtomicFile, Progress, ProgressCallback, partial_size
from rpcframework.transports import Backend
from rpcframework.transports.aio import AsyncStream, open_tcp_stream
from rpcframework.transports.aio_tls import open_tls_stream
from rpcframework.transports.pyopenssl import PyOpenSSLBackend

__all__ = ["AsyncTransferClient"]

logger = logging.getLogger(__name__)

PathOrFile = str | os.PathLike[str] | IO[bytes]
_MAX_EVENTS: Final = 10_000_000  # a guard: each pass reads bytes or handles an event


class _NotStarted(RPCFrameworkError):
    """The transfer failed before any data moved: another URL may be tried."""


class _Aborted(RPCFrameworkError):
    """The peer aborted (or answered early); the message is the reason."""


class _Channel:
    """The machine and the stream of one transfer; ``limits`` bound each network wait (no progress for
    ``Timeout.total`` seconds, keepalive pings not counted; ``max_duration`` for the whole operation)."""

    def __init__(self, stream: AsyncStream, limits: TransferLimits) -> None:
        self.stream = stream
        self.limits = limits
        self.result: DReturn | None = None

    def send(self, data: bytes | memoryview) -> None:
        if data:
            self.stream.write(data)

    async def next(self, machine: ClientConnection | ClientTransfer) -> object:
        """The next event of ``machine``, reading as needed; what the machine owes the peer is sent."""
        limits = self.limits
        if isinstance(machine, ClientTransfer):
            limits.progress = lambda: machine.progress
        for _ in range(_MAX_EVENTS):
            event = machine.next_event()
            self.send(machine.data_to_send())
            if event is PAUSED:
                raise _Aborted("the transfer is waiting for our side")
            if event is not NEED_DATA:
                if isinstance(event, ResultReceived):
                    self.result = event.result
                if isinstance(machine, ClientConnection):
                    limits.moved_on()  # before the data phase, every answer is progress
                return event
            machine.receive_data(await self._recv())
        raise _Aborted("no transfer event after many reads")

    async def _recv(self) -> bytes:
        try:
            return await self.stream.recv(self.limits.limit(), "waiting for the transfer's peer")
        except DeadlineExceeded:
            self.limits.limit()  # the limit that ran out, named
            raise

    async def drain(self) -> None:
        try:
            await self.stream.drain(self.limits.limit())
        except DeadlineExceeded:
            self.limits.limit()
            raise


class AsyncTransferClient:
    """Moves files to and from one service from asyncio code; options as ``TransferClient``'s, ``max_duration``
    included (seconds one operation may take in all; the ``timeout`` option bounds every wait for progress, and
    keepalive pings are not progress).

    Each transfer has its own connection, closed at its end (as DISET does).
    """

    def __init__(
        self,
        url: str,
        options: ClientOptions | None = None,
        *,
        stream: bool = True,
        checksum: str = "crc32",
        max_duration: float | None = None,
        backends: dict[str, Backend] | None = None,
        environ: Mapping[str, str] | None = None,
        **kw_options: Any,
    ) -> None:
        if options is None:
            options = ClientOptions.build(kw_options)
        elif kw_options:
            raise ConfigurationError("pass either options= or keyword options, not both")
        if checksum not in STREAM_CHECKSUMS:
            raise ConfigurationError(f"checksum must be 'crc32' or 'sha256', not {checksum!r}")
        if max_duration is not None and not max_duration > 0:
            raise ConfigurationError(f"max_duration must be a positive number of seconds, not {max_duration!r}")
        self.max_duration = max_duration
        if options.backend not in (None, "pyopenssl"):
            raise ConfigurationError("the asyncio transfer client speaks dips:// with the pyopenssl back end only")
        offer = (TRANSFER_OFFER if checksum == "crc32" else _SHA256_OFFER) if stream else None
        self.base = BaseClient(url, options, backends=backends, offer=offer, environ=environ)

    def __repr__(self) -> str:
        return f"<AsyncTransferClient {self.base.service!r}>"

    async def sendFile(
        self, source: PathOrFile, fileId: str, token: str = "", on_progress: ProgressCallback | None = None
    ) -> DReturn:
        """Upload ``source`` (a path or a binary file object) as ``fileId``; the server's result."""
        try:
            size = _size_of(source)
        except OSError as exc:
            return S_ERROR(f"Cannot read {source}: {exc.strerror or exc}")
        info = FileInfo(fileId, token, -1 if size is None else size)

        async def upload(channel: _Channel, machine: ClientTransfer) -> DReturn:
            return await _upload(channel, machine, source, Progress(on_progress, size))

        return await self._run(TransferDirection.FromClient, lambda _resume: info, upload)

    async def receiveFile(
        self,
        destination: PathOrFile,
        fileId: str,
        token: str = "",
        on_progress: ProgressCallback | None = None,
        *,
        resume: bool = False,
        max_size: int | None = None,
    ) -> DReturn:
        """Download ``fileId`` into ``destination`` (a path, written atomically, or a binary file object).
        ``resume=True`` keeps partial data on failure and continues it next time (our servers only)."""
        is_path = isinstance(destination, str | os.PathLike)
        negotiated = [False]

        def info_for(resume_ok: bool) -> FileInfo:
            negotiated[0] = resume and is_path and resume_ok
            offset = partial_size(destination) if negotiated[0] else 0  # type: ignore[arg-type]
            return FileInfo(fileId, token, offset=offset)

        async def download(channel: _Channel, machine: ClientTransfer) -> DReturn:
            if max_size is not None:
                machine.max_size = max_size
            return await _download(channel, machine, destination, Progress(on_progress, None), negotiated[0])

        return await self._run(TransferDirection.ToClient, info_for, download)

    # -- one transfer, with failover before data moves -------------------------------------------------------------

    async def _run(
        self,
        direction: TransferDirection,
        info_for: Callable[[bool], FileInfo],
        action: Callable[[_Channel, ClientTransfer], Any],
    ) -> DReturn:
        base = self.base
        failures: list[str] = []
        deadline = Deadline.after(self.max_duration)
        for url in base.selector.attempt_order(base.retry.max_attempts):
            if deadline.expired:
                failures.append(f"max_duration ({self.max_duration:g} s) reached")
                break
            limits = TransferLimits(base.timeout.total, deadline, self.max_duration)
            try:
                result: DReturn = await self._run_url(base.endpoints[url], limits, direction, info_for, action)
            except RemoteError as exc:
                return exc.result  # the server refused the proposal (unauthorized...): not retried
            except _NotStarted as exc:
                failures.append(f"{url}: {exc}")
                base.selector.ban(url)
                logger.info("transfer %s to %s failed before any data moved (%s)", direction.value, url, exc)
                continue
            base.selector.succeeded(url)
            return result
        reasons = "; ".join(failures) or "no URL to try"
        return S_ERROR(f"{base.service}: the transfer could not start: {reasons}")

    async def _run_url(
        self,
        endpoint: Endpoint,
        limits: TransferLimits,
        direction: TransferDirection,
        info_for: Callable[[bool], FileInfo],
        action: Callable[[_Channel, ClientTransfer], Any],
    ) -> DReturn:
        try:
            stream = await self._open(endpoint)
        except (RPCFrameworkError, OSError) as exc:
            raise _NotStarted(str(exc)) from exc
        channel = _Channel(stream, limits)
        try:
            machine = await self._start(endpoint, channel, direction, info_for)
            if isinstance(machine, dict):
                return machine
            return await _finish(channel, machine, action)
        finally:
            stream.close()

    async def _open(self, endpoint: Endpoint) -> AsyncStream:
        timeout = self.base.timeout
        if endpoint.tls is None:
            return await open_tcp_stream(endpoint.host, endpoint.port, timeout.connect, timeout.keepalive)
        backend = endpoint.backend
        if not isinstance(backend, PyOpenSSLBackend):
            raise ConfigurationError(f"{endpoint.url}: the asyncio client needs the pyopenssl back end")
        return await open_tls_stream(
            backend,
            endpoint.host,
            endpoint.port,
            tls=endpoint.tls,
            connect_timeout=timeout.connect,
            handshake_timeout=timeout.handshake,
            keepalive=timeout.keepalive,
        )

    async def _start(
        self,
        endpoint: Endpoint,
        channel: _Channel,
        direction: TransferDirection,
        info_for: Callable[[bool], FileInfo],
    ) -> ClientTransfer | DReturn:
        """Proposal, ack, file info, "Accepted": the machine ready for the data phase, or the server's refusal."""
        conn = ClientConnection(offer=self.base.offer)
        proposal = dataclasses.replace(
            self.base.proposal(endpoint.path, direction.value), action_type=ActionType.FileTransfer
        )
        try:
            channel.send(conn.send_proposal(proposal))
            event = await channel.next(conn)
            if isinstance(event, ProposalRefused):
                raise RemoteError(event.error)
            if not isinstance(event, ProposalAccepted):
                raise _NotStarted(f"unexpected answer to the proposal: {type(event).__name__}")
            machine = ClientTransfer(conn.hand_over())
            resume_ok = event.extensions is not None and Feature.RESUME in event.extensions.features
            channel.send(machine.start(info_for(resume_ok and direction is TransferDirection.ToClient)))
            answer = await channel.next(machine)
        except (RemoteError, _NotStarted):
            raise
        except (RPCFrameworkError, OSError) as exc:
            raise _NotStarted(str(exc)) from exc
        if isinstance(answer, TransferRefused):
            return answer.error
        if not isinstance(answer, TransferAccepted):
            raise _NotStarted(f"unexpected answer to the file information: {type(answer).__name__}")
        return machine


async def _finish(
    channel: _Channel, machine: ClientTransfer, action: Callable[[_Channel, ClientTransfer], Any]
) -> DReturn:
    """The data phase, then the server's result; a local failure wins unless the server says why."""
    try:
        local: DReturn = await action(channel, machine)
    except (RPCFrameworkError, OSError) as exc:
        return S_ERROR(f"Transfer failed: {exc}")
    try:
        server = await _server_result(channel, machine)
    except (RPCFrameworkError, OSError) as exc:
        logger.debug("no result from the server after the transfer: %s", exc)
        return local if not local["OK"] else S_ERROR(f"Transfer failed: no result from the server ({exc})")
    if not local["OK"]:
        return server if not server["OK"] else local
    return server


async def _server_result(channel: _Channel, machine: ClientTransfer) -> DReturn:
    """The server's final result (read once, then kept on the channel)."""
    while channel.result is None:
        await channel.next(machine)
    return channel.result


async def _server_agrees(channel: _Channel, machine: ClientTransfer, received: DReturn) -> DReturn:
    """``received`` if the server's final result is ``S_OK``, else that result: a download is kept only when the
    server says the transfer succeeded."""
    try:
        server = await _server_result(channel, machine)
    except (RPCFrameworkError, OSError) as exc:
        return S_ERROR(f"Transfer failed: no result from the server ({exc})")
    return received if server["OK"] else server


def _abort_reason(channel: _Channel) -> str:
    result = channel.result
    return result["Message"] if result is not None and not result["OK"] else "Transfer aborted"


async def _abort(channel: _Channel, machine: ClientTransfer, message: str) -> DReturn:
    """Tell the peer we give up (DIRAC's ``sendError``) and wait until its side of the data phase ended."""
    try:
        channel.send(machine.abort(message))
        while not machine.data_done:
            event = await channel.next(machine)
            if isinstance(event, TransferAborted | TransferFinished):
                break
    except (RPCFrameworkError, OSError) as exc:
        logger.debug("abort failed: %s", exc)
    return S_ERROR(message)


def _check(channel: _Channel, event: object) -> None:
    if isinstance(event, TransferAborted):
        raise _Aborted(event.reason)
    if isinstance(event, ResultReceived):  # the server's result instead of an ack: it stopped early
        raise _Aborted(_abort_reason(channel))
    if event is not None and not isinstance(event, ChunkAcknowledged):
        raise _Aborted(f"unexpected transfer event {type(event).__name__}")


async def _wait_sendable(channel: _Channel, machine: ClientTransfer) -> None:
    """DIRAC mode: wait for the previous chunk's ack (at once in stream mode)."""
    while not machine.can_send_chunk:
        if machine.data_done:
            raise _Aborted(_abort_reason(channel))
        _check(channel, await channel.next(machine))


def _look_for_abort(channel: _Channel, machine: ClientTransfer) -> None:
    """Stream mode: no ack comes, but an abort might; look at what arrived, without waiting."""
    stream = channel.stream
    if not stream.pending():
        return
    machine.receive_data(stream.read_nowait())
    while not machine.data_done:
        event = machine.next_event()
        channel.send(machine.data_to_send())
        if event is NEED_DATA or event is PAUSED:
            return
        if isinstance(event, ResultReceived):
            channel.result = event.result
        _check(channel, event)


async def _send_all(channel: _Channel, machine: ClientTransfer, handle: IO[bytes], progress: Progress) -> DReturn:
    if machine.start_owed:
        channel.send(machine.send_start(0))
    for _ in range(1 << 40):  # bounded: each pass sends at least one byte or ends
        chunk = handle.read(CHUNK_SIZE)
        if not chunk:
            break
        await _wait_sendable(channel, machine)
        for part in machine.send_chunk_parts(chunk):
            channel.send(part)
        await channel.drain()  # flow control: never more than the buffer in memory
        _look_for_abort(channel, machine)
        progress.advance(len(chunk))
    await _wait_sendable(channel, machine)
    channel.send(machine.send_end())
    for _ in range(_MAX_EVENTS):
        event = await channel.next(machine)
        if isinstance(event, TransferFinished):
            progress.finish()
            return S_OK(event.size) if event.checksum_ok else S_ERROR(CHECKSUM_ERROR)
        _check(channel, event)
    raise _Aborted("the transfer did not end")


async def _upload(channel: _Channel, machine: ClientTransfer, source: PathOrFile, progress: Progress) -> DReturn:
    handle = open(source, "rb") if isinstance(source, str | os.PathLike) else source  # noqa: SIM115 - closed below
    try:
        return await _send_all(channel, machine, handle, progress)
    except _Aborted as exc:
        return S_ERROR(str(exc))
    except RPCFrameworkError:
        raise
    except Exception as exc:  # the file or the progress callback failed: tell the receiver
        return await _abort(channel, machine, f"Cannot read the data to send: {exc}")
    finally:
        if handle is not source:
            handle.close()


async def _download(
    channel: _Channel, machine: ClientTransfer, destination: PathOrFile, progress: Progress, resume: bool
) -> DReturn:
    if not isinstance(destination, str | os.PathLike):
        return await _receive(channel, machine, destination.write, progress, None)
    try:
        atomic = AtomicFile(destination, resume=resume)
    except OSError as exc:
        return await _abort(channel, machine, f"Cannot write {os.path.basename(destination)}: {exc.strerror}")
    try:
        result = await _receive(channel, machine, atomic.write, progress, atomic)
        if result["OK"]:
            result = await _server_agrees(channel, machine, result)
    except BaseException:
        atomic.discard()  # nothing partial is left behind, whatever stopped the transfer (a cancelled task too)
        raise
    try:
        if result["OK"]:
            atomic.commit()
        else:
            atomic.discard()
    except OSError as exc:
        atomic.discard()
        return S_ERROR(f"Cannot write {os.path.basename(destination)}: {exc.strerror}")
    return result


async def _receive(
    channel: _Channel,
    machine: ClientTransfer,
    write: Callable[[Any], object],
    progress: Progress,
    atomic: AtomicFile | None,
) -> DReturn:
    for _ in range(_MAX_EVENTS):
        try:
            event = await channel.next(machine)
        except _Aborted as exc:
            return S_ERROR(str(exc))
        except (RPCFrameworkError, OSError) as exc:  # the connection was cut or the peer broke the protocol
            logger.info("transfer interrupted after %d bytes: %s", progress.done, exc)
            return S_ERROR(f"Transfer interrupted: {exc}")
        if isinstance(event, ChunkReceived):
            try:
                write(event.data)
                progress.advance(len(event.data))
            except Exception as exc:
                return await _abort(channel, machine, f"Cannot write the received data: {exc}")
        elif isinstance(event, TransferStarted):
            if atomic is None and event.offset:
                return await _abort(channel, machine, "a resumed transfer needs a file destination")
            _resume_at(machine, atomic, event.offset)
            progress.start(event.offset)
        else:
            ended = _ended(event, progress)
            if ended is not None:
                return ended
    return S_ERROR("Transfer interrupted: no end after many events")


def _resume_at(machine: ClientTransfer, atomic: AtomicFile | None, offset: int) -> None:
    """The server starts at ``offset`` (a granted resume): hash the partial data we keep, drop what is past it."""
    if atomic is not None:
        for block in atomic.read_prefix(offset):
            machine.hash_prefix(block)
        atomic.truncate(offset)


def _ended(event: object, progress: Progress) -> DReturn | None:
    """The outcome when ``event`` ends the data phase, else ``None``."""
    if isinstance(event, TransferFinished):
        progress.finish()
        return S_OK(event.size) if event.checksum_ok else S_ERROR(CHECKSUM_ERROR)
    if isinstance(event, TransferAborted):
        return S_ERROR(event.reason)
    if isinstance(event, ResultReceived):  # the server gave up before sending (its result says why)
        return event.result if not event.result["OK"] else S_ERROR("Transfer aborted")
    return None
