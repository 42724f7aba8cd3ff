"""``FileHelper``: what a ``transfer_*`` hook (and the client runtime) uses to move a file's bytes.

It drives a sans-IO transfer machine (:class:`~rpcframework.protocol.transfer.ClientTransfer` or
``ServerTransfer``, already past ``"Accepted"``) over a :class:`Channel`, the narrow byte pipe the runtime plugs
in (a transport stream). Methods keep DIRAC's names, which service authors know (``networkToFile``,
``fileToNetwork``, ``networkToDataSink``, ``DataSourceToNetwork``...), with pythonic aliases; all return
``S_OK``/``S_ERROR`` like DIRAC's, never raise for a transfer failure::

    def transfer_fromClient(self, file_id, token, file_size, helper):
        return helper.networkToFile(self.store / safe_name(file_id), max_size=1024**3)

Files written from the network are atomic (:mod:`.atomic`): nothing partial is left on failure.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol, TypeAlias

from rpcframework.errors import RPCFrameworkError
from rpcframework.protocol.events import PAUSED, Sentinel
from rpcframework.protocol.transfer import (
    CHECKSUM_ERROR,
    CHUNK_SIZE,
    ChunkAcknowledged,
    ChunkReceived,
    ResultReceived,
    TransferAborted,
    TransferEndpoint,
    TransferEvent,
    TransferFinished,
    TransferStarted,
)
from rpcframework.returnvalues import S_ERROR, S_OK, DReturn
from rpcframework.transfer.atomic import AtomicFile
from rpcframework.transfer.bulk import (
    Compression,
    ExtractionLimits,
    UnsafeArchiveError,
    extract_archive,
    list_archive,
    write_archive,
)
from rpcframework.transfer.progress import Progress, ProgressCallback

__all__ = ["Channel", "DataSink", "DataSource", "FileHelper", "TransferError"]

logger = logging.getLogger(__name__)

DataSink: TypeAlias = Callable[[bytes | memoryview], object] | IO[bytes]
DataSource: TypeAlias = IO[bytes] | Iterable[bytes | memoryview]
PathOrFile: TypeAlias = str | os.PathLike[str] | IO[bytes]
#: Reads :meth:`FileHelper._fill` makes for one frame before it lets the machine look (each brings >= 1 byte).
_MAX_FILL_READS = 4096


class Channel(Protocol):
    """The byte pipe under a transfer: the runtime adapts a transport stream to it."""

    def send(self, data: bytes | memoryview) -> None:
        """Send all of ``data``."""

    def recv(self) -> bytes:
        """Block until bytes arrive; ``b""`` when the peer closed."""

    def recv_into(self, view: memoryview) -> int:
        """:meth:`recv` into ``view``: how many bytes were written at its start, 0 when the peer closed."""

    def poll(self) -> bool:
        """True when :meth:`recv` would return at once (a streaming sender checks for an abort with it)."""


class TransferError(RPCFrameworkError):
    """A transfer failed; the message is what the helper returns as ``S_ERROR``."""


class _Aborted(Exception):
    """Internal: the machine reported an abort or an early result."""


class _NetworkWriter:
    """A write-only file object whose bytes go out as transfer chunks (tar writes bulks through it)."""

    def __init__(self, helper: FileHelper, progress: Progress) -> None:
        self._helper = helper
        self._progress = progress
        self._buffer = bytearray()

    def write(self, data: bytes | memoryview) -> int:
        self._buffer += data
        while len(self._buffer) >= CHUNK_SIZE:
            self._helper._send_chunk(memoryview(self._buffer)[:CHUNK_SIZE])
            del self._buffer[:CHUNK_SIZE]
            self._progress.advance(CHUNK_SIZE)
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            self._helper._send_chunk(bytes(self._buffer))
            self._progress.advance(len(self._buffer))
            self._buffer.clear()


class FileHelper:
    """Moves one file (or bulk archive) through a transfer machine; one helper per transfer."""

    def __init__(
        self,
        machine: TransferEndpoint,
        channel: Channel,
        *,
        on_progress: ProgressCallback | None = None,
        total: int | None = None,
    ) -> None:
        self.machine = machine
        self.channel = channel
        self.on_progress = on_progress
        self.total = total
        self.result: DReturn | None = None  # the server's result, when it arrived during the data phase

    # --- state --------------------------------------------------------------------------------------------------

    def finishedTransmission(self) -> bool:
        """True once the data phase ended (finished or aborted); DIRAC's server answers "Incomplete transfer"
        to a hook that returns before."""
        return self.machine.data_done

    finished = finishedTransmission

    def getTransferedBytes(self) -> int:
        """Data bytes moved in this session (DIRAC's spelling)."""
        return self.machine.transferred

    transferred = getTransferedBytes

    def disableCheckSum(self) -> None:
        """Do not verify the digest of received data (DIRAC clients do it for a ``NoCheckSum`` token)."""
        self.machine.verify_checksum = False

    def sendError(self, message: str) -> DReturn:
        """Abort the data phase with ``message`` (DIRAC's ``sendError``); returns ``S_ERROR(message)``."""
        try:
            self._send(self.machine.abort(message))
            self._wait_data_done()
        except (RPCFrameworkError, OSError) as exc:
            logger.debug("abort failed: %s", exc)
        return S_ERROR(message)

    abort = sendError

    def read_result(self) -> DReturn:
        """Client: wait for the server's final result (after the data phase, or for ListBulk)."""
        while self.result is None:
            self._next()
        return self.result

    # --- receiving ----------------------------------------------------------------------------------------------

    def networkToDataSink(self, sink: DataSink, max_size: int | None = None) -> DReturn:
        """Receive into ``sink`` (a callable taking bytes, or an object with ``write``); ``S_OK(size)``."""
        write: Callable[[Any], object] = sink.write if hasattr(sink, "write") else sink
        return self._receive(write, max_size)

    receive_to_sink = networkToDataSink

    def networkToString(self, max_size: int | None = None) -> DReturn:
        """Receive the whole file into memory: ``S_OK(bytes)`` (keep ``max_size`` small)."""
        buffer = bytearray()
        result = self._receive(buffer.extend, max_size)
        return S_OK(bytes(buffer)) if result["OK"] else result

    receive_bytes = networkToString

    def networkToFile(self, destination: PathOrFile, max_size: int | None = None, *, resume: bool = False) -> DReturn:
        """Receive into a path (atomically: written beside it, renamed at the end, removed on failure) or into an
        open binary file. ``resume`` keeps the partial file on failure and continues it (see ``docs/transfer.md``)."""
        if not isinstance(destination, str | os.PathLike):
            return self._receive(destination.write, max_size)
        try:
            atomic = AtomicFile(destination, resume=resume)
        except OSError as exc:
            return self.sendError(f"Cannot write {Path(destination).name}: {exc.strerror}")
        try:
            result = self._receive(atomic.write, max_size, atomic=atomic)
            if result["OK"]:
                result = self._server_agrees(result)
        except BaseException:
            atomic.discard()  # nothing partial is left behind, whatever stopped the transfer
            raise
        try:
            if result["OK"]:
                atomic.commit()
            else:
                atomic.discard()
        except OSError as exc:
            atomic.discard()
            return S_ERROR(f"Cannot write {Path(destination).name}: {exc.strerror}")
        return result

    receive_to_file = networkToFile

    def networkToBulk(
        self,
        destination: str | os.PathLike[str],
        compression: Compression | None = None,
        *,
        max_size: int | None = None,
        limits: ExtractionLimits | None = None,
    ) -> DReturn:
        """Receive a bulk archive and extract it safely into ``destination``: ``S_OK([member names])``."""
        return self._receive_archive(
            lambda spool: extract_archive(spool, destination, compression, limits or ExtractionLimits()), max_size
        )

    receive_bulk = networkToBulk

    def networkToBulkListing(self, compression: Compression | None = None, *, max_size: int | None = None) -> DReturn:
        """Receive a bulk archive and return its member names without extracting it."""
        return self._receive_archive(lambda spool: list_archive(spool, compression), max_size)

    def _receive_archive(self, read: Callable[[IO[bytes]], list[str]], max_size: int | None) -> DReturn:
        """Receive an archive into a spool file, then ``S_OK(read(spool))``; a refused archive is ``S_ERROR``."""
        with tempfile.TemporaryFile() as spool:
            result = self._receive(spool.write, max_size)
            if result["OK"]:
                result = self._server_agrees(result)
            if not result["OK"]:
                return result
            spool.seek(0)
            try:
                return S_OK(read(spool))
            except UnsafeArchiveError as exc:  # its message names archive members only, never local paths
                return S_ERROR(str(exc))
            except OSError as exc:  # e.g. the target cannot be created: say what, not where
                return S_ERROR(f"Cannot extract the bulk: {exc.strerror or type(exc).__name__}")

    def _server_agrees(self, received: DReturn) -> DReturn:
        """Client: ``received`` if the server's final result is ``S_OK``, else that result. A download is kept (or
        a bulk extracted) only when the server says the transfer succeeded; on the server side there is no such
        result to wait for."""
        if not self.machine.is_client:
            return received
        try:
            server = self.read_result()
        except (RPCFrameworkError, OSError) as exc:
            return S_ERROR(f"Transfer failed: no result from the server ({exc})")
        return received if server["OK"] else server

    def _receive(
        self, write: Callable[[Any], object], max_size: int | None, atomic: AtomicFile | None = None
    ) -> DReturn:
        if max_size is not None:
            self.machine.max_size = max_size
        progress = Progress(self.on_progress, self.total)
        # A kept partial file is continued only from an offset the sender granted (TransferStarted); an upload or
        # a DIRAC peer grants none, so the file then starts at its first byte, whatever an earlier attempt left.
        unplaced = atomic is not None and atomic.resume
        while True:
            try:
                event = self._next()
            except _Aborted as exc:
                return S_ERROR(str(exc))
            except (RPCFrameworkError, OSError) as exc:  # the connection was cut or the peer broke the protocol
                logger.info("transfer interrupted after %d bytes: %s", progress.done, exc)
                return S_ERROR(f"Transfer interrupted: {exc}")
            if unplaced and atomic is not None and isinstance(event, ChunkReceived | TransferFinished):
                atomic.truncate(0)
                unplaced = False
            if isinstance(event, ChunkReceived):
                try:
                    write(event.data)
                    progress.advance(len(event.data))
                except Exception as exc:
                    logger.debug("transfer sink failed: %r", exc)
                    return self.sendError(f"Cannot write the received data: {exc}")
            elif isinstance(event, TransferStarted):
                unplaced = False
                self._resume_receiver(event.offset, atomic)
                progress.start(event.offset)
            elif isinstance(event, TransferFinished):
                progress.finish()
                return S_OK(event.size) if event.checksum_ok else S_ERROR(CHECKSUM_ERROR)
            elif isinstance(event, TransferAborted):
                return S_ERROR(event.reason)
            elif isinstance(event, ResultReceived):  # the server gave up before sending (its result says why)
                return event.result if not event.result["OK"] else S_ERROR("Transfer aborted")

    def _resume_receiver(self, offset: int, atomic: AtomicFile | None) -> None:
        if atomic is None:
            if offset:
                raise TransferError("a resumed transfer needs a file destination")
            return
        for block in atomic.read_prefix(offset):
            self.machine.hash_prefix(block)
        atomic.truncate(offset)

    # --- sending ------------------------------------------------------------------------------------------------

    def DataSourceToNetwork(self, source: DataSource) -> DReturn:
        """Send everything ``source`` yields (a binary file object, or an iterable of bytes); ``S_OK(size)``."""
        if hasattr(source, "read"):
            return self._send_stream(source)  # type: ignore[arg-type]
        return self._send_iter(source)

    send_from_source = DataSourceToNetwork

    def stringToNetwork(self, data: bytes) -> DReturn:
        """Send ``data`` as the whole file."""
        view = memoryview(data)
        return self._send_iter(view[i : i + CHUNK_SIZE] for i in range(0, len(view), CHUNK_SIZE))

    send_bytes = stringToNetwork

    def fileToNetwork(self, source: PathOrFile) -> DReturn:
        """Send a file (path or open binary file); honours a granted resume offset when the file can seek."""
        if not isinstance(source, str | os.PathLike):
            return self._send_stream(source)
        try:
            handle = open(source, "rb")  # noqa: SIM115 - closed below, after the transfer
        except OSError as exc:
            return self.sendError(f"Cannot read {Path(source).name}: {exc.strerror}")
        with handle:
            if self.total is None:
                self.total = os.fstat(handle.fileno()).st_size
            return self._send_stream(handle)

    send_file = fileToNetwork

    def bulkToNetwork(
        self,
        paths: Sequence[str | os.PathLike[str]],
        compression: Compression = "bz2",
        *,
        arcnames: Sequence[str] | None = None,
    ) -> DReturn:
        """Send ``paths`` as one tar stream (compressed unless ``compression=""``); ``S_OK(member names)``.
        Progress counts archive bytes (the total is unknown until the end)."""
        progress = Progress(self.on_progress, None)
        writer = _NetworkWriter(self, progress)
        try:
            self._grant_start(None)
            names = write_archive(paths, writer, compression, arcnames=arcnames)  # type: ignore[arg-type]
            writer.flush()
            result = self._send_end()
        except _Aborted as exc:
            return S_ERROR(str(exc))
        except OSError as exc:
            return self.sendError(f"Cannot read the bulk: {exc}")
        except Exception as exc:  # the progress callback cancelled, or the connection broke: tell the receiver
            logger.debug("bulk send failed: %r", exc)
            return self.sendError(f"Cannot send the bulk: {exc}")
        if not result["OK"]:
            return result
        progress.finish()
        return S_OK(names)

    send_bulk = bulkToNetwork

    def _send_stream(self, handle: BinaryIO | IO[bytes]) -> DReturn:
        try:
            self._grant_start(handle)
        except _Aborted as exc:
            return S_ERROR(str(exc))
        return self._send_iter(_read_chunks(handle))

    def _send_iter(self, chunks: Iterable[bytes | memoryview]) -> DReturn:
        progress = Progress(self.on_progress, self.total, self.machine.offset)
        try:
            if self.machine.start_owed:
                self._grant_start(None)
            for chunk in _rechunk(chunks):
                self._send_chunk(chunk)
                progress.advance(len(chunk))
            result = self._send_end()
        except _Aborted as exc:
            return S_ERROR(str(exc))
        except Exception as exc:  # the source or the progress callback failed: tell the receiver
            logger.debug("transfer source failed: %r", exc)
            return self.sendError(f"Cannot read the data to send: {exc}")
        progress.finish()
        return result

    def _grant_start(self, handle: BinaryIO | IO[bytes] | None) -> None:
        """Resume requested: grant it when the source can seek, else start at 0 (always allowed)."""
        machine = self.machine
        if not machine.start_owed:
            return
        requested = machine.info.offset if machine.info is not None else 0
        offset = 0
        if handle is not None and _seekable(handle):
            offset = min(requested, handle.seek(0, os.SEEK_END))
            handle.seek(0)
        self._send(machine.send_start(offset))
        left = offset
        while left:
            block = handle.read(min(CHUNK_SIZE, left)) if handle is not None else b""
            if not block:
                self.sendError("The file shrank while it was sent")
                raise _Aborted("The file shrank while it was sent")
            machine.hash_prefix(block)
            left -= len(block)

    def _send_chunk(self, chunk: bytes | memoryview) -> None:
        machine = self.machine
        while not machine.can_send_chunk:
            if machine.data_done:
                raise _Aborted(self._abort_reason())
            self._handle(self._next())
        for part in machine.send_chunk_parts(chunk):
            self.channel.send(part)
        # Stream mode: no ack comes, but an abort might; look without blocking.
        while not machine.data_done and self.channel.poll():
            self.machine.receive_data(self.channel.recv())
            self._handle(self._next(block=False))

    def _send_end(self) -> DReturn:
        machine = self.machine
        while not machine.can_send_chunk:
            if machine.data_done:
                raise _Aborted(self._abort_reason())
            self._handle(self._next())
        self._send(machine.send_end())
        while True:
            event = self._next()
            if isinstance(event, TransferFinished):
                return S_OK(event.size) if event.checksum_ok else S_ERROR(CHECKSUM_ERROR)
            self._handle(event)

    # --- driving the machine ------------------------------------------------------------------------------------

    def _handle(self, event: TransferEvent | None) -> None:
        if isinstance(event, TransferAborted):
            raise _Aborted(event.reason)
        if isinstance(event, ResultReceived):  # the server's result instead of an ack: it stopped early
            raise _Aborted(self._abort_reason())
        if event is not None and not isinstance(event, ChunkAcknowledged):
            raise TransferError(f"unexpected transfer event {type(event).__name__}")

    def _abort_reason(self) -> str:
        return self.result["Message"] if self.result is not None and not self.result["OK"] else "Transfer aborted"

    def _send(self, data: bytes) -> None:
        if data:
            self.channel.send(data)

    def _next(self, *, block: bool = True) -> TransferEvent | None:
        """The next event, reading from the channel as needed; ``None`` when non-blocking and nothing is there."""
        machine = self.machine
        while True:
            event = machine.next_event()
            self._send(machine.data_to_send())
            if not isinstance(event, Sentinel):
                if isinstance(event, ResultReceived):
                    self.result = event.result
                return event
            if event is PAUSED:
                if not block:
                    return None
                raise TransferError("the transfer is waiting for our side")
            if not block:
                if not self.channel.poll():
                    return None
                machine.receive_data(self.channel.recv())
            else:
                self._fill()

    def _fill(self) -> None:
        """Read, then keep reading until the frame being received is complete: a 1 MiB chunk comes in ~64 TLS
        records, and the machine needs to look only once it is whole. Once a chunk's header is in, the rest of it
        is read straight into the chunk's own buffer (no copy: TLS decrypts into it)."""
        machine, channel = self.machine, self.channel
        for _ in range(_MAX_FILL_READS):
            view = machine.receive_buffer()
            if view is None:
                data = channel.recv()
                machine.receive_data(data)
                size = len(data)
            else:  # the view is not released: the chunk's bytearray is never resized, and a failed read must
                # not turn into a BufferError (a traceback can still hold an export of it)
                size = channel.recv_into(view)
                machine.received_into(size)
            if not size or machine.frame_missing <= 0:
                return

    def _wait_data_done(self) -> None:
        while not self.machine.data_done:
            event = self._next()
            if isinstance(event, TransferAborted | TransferFinished):
                return


def _read_chunks(handle: BinaryIO | IO[bytes]) -> Iterator[bytes | memoryview]:
    """The file's bytes, read into one reused buffer when it can (each view is sent before the next read)."""
    readinto = getattr(handle, "readinto", None)
    if readinto is None:
        yield from iter(lambda: handle.read(CHUNK_SIZE), b"")
        return
    view = memoryview(bytearray(CHUNK_SIZE))
    for _ in range(1 << 40):  # bounded: each pass reads at least one byte
        size = readinto(view)
        if not size:  # 0 at the end (None, a non-blocking source with nothing yet, ends it too)
            return
        yield view[:size]


def _seekable(handle: BinaryIO | IO[bytes]) -> bool:
    with contextlib.suppress(AttributeError, OSError, ValueError):
        return bool(handle.seekable())
    return False


def _rechunk(chunks: Iterable[bytes | memoryview]) -> Iterator[bytes | memoryview]:
    """Split oversized pieces into :data:`CHUNK_SIZE` views; skip empty ones."""
    for chunk in chunks:
        size = len(chunk)
        if size <= CHUNK_SIZE:
            if size:
                yield chunk
            continue
        view = memoryview(chunk)
        for start in range(0, size, CHUNK_SIZE):
            yield view[start : start + CHUNK_SIZE]
