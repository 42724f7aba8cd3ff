"""The data phase both transfer roles share: :class:`TransferEndpoint`, the base of
:class:`~rpcframework.protocol.transfer.ClientTransfer` and :class:`~rpcframework.protocol.transfer.ServerTransfer`.

The exchange, its two data-phase modes and the theory of operation are described in
:mod:`rpcframework.protocol.transfer`, which re-exports this class; import it from there.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from typing import Any, Final, Protocol

from rpcframework.codec import CodecLimits, Encoding, decode, encode
from rpcframework.codec.limits import DEFAULT_LIMITS
from rpcframework.errors import CodecError, ConnectionClosedError, ProtocolError, UnexpectedMessageError
from rpcframework.protocol._connection import HandOver
from rpcframework.protocol._crc import crc32
from rpcframework.protocol.events import NEED_DATA, PAUSED, LocalProtocolError, Sentinel
from rpcframework.protocol.framing import FrameDecoder, encode_frame, encode_keepalive_frame
from rpcframework.protocol.messages import (
    Feature,
    FileInfo,
    KeepAlive,
    TransferDirection,
    check_envelope,
    sanitize_result,
)
from rpcframework.protocol.transfer_data import (
    TransferChunk,
    TransferEnd,
    parse_transfer_message,
    transfer_chunk_message,
    transfer_end_message,
)
from rpcframework.protocol.transfer_events import (
    CHECKSUM_ERROR,
    CHUNK_SIZE,
    DRAIN_LIMIT,
    EXCEEDED_MAX_SIZE,
    NO_CHECKSUM_TOKEN,
    RAW_CHUNK_MARK,
    ChunkAcknowledged,
    ChunkReceived,
    ResultReceived,
    TransferAborted,
    TransferEvent,
    TransferFinished,
    TransferMode,
    TransferStarted,
    abort_message,
    parse_stream_end,
    stream_checksum,
    stream_end_message,
)
from rpcframework.returnvalues import S_ERROR, S_OK, DReturn

__all__ = ["Phase", "TransferEndpoint"]

logger = logging.getLogger(__name__)

#: The largest chunk frame read in place (its buffer is allocated when the header arrives, so a header alone must
#: not make us allocate more): a chunk of CHUNK_SIZE, base64-encoded in DIRAC mode, and its envelope.
_INPLACE_LIMIT: Final = 2 * CHUNK_SIZE

_SENDING_CLIENT: Final = frozenset({TransferDirection.FromClient, TransferDirection.BulkFromClient})


class _Checksum(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


class _Crc32:
    """CRC-32 (zlib's polynomial, computed by ISA-L when installed) behind hashlib's ``update``/``hexdigest``: 8 hex
    digits."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes | memoryview, /) -> None:
        self._value = crc32(data, self._value)

    def hexdigest(self) -> str:
        return f"{self._value:08x}"


def _new_checksum(name: str) -> _Checksum:
    """DIRAC's stop-and-wait mode: MD5 (as DIRAC); stream mode: CRC-32 when negotiated, else SHA-256."""
    if name == "crc32":
        return _Crc32()
    if name == "md5":
        return hashlib.md5(usedforsecurity=False)
    return hashlib.sha256()


class Phase(enum.Enum):
    """Where an exchange stands; shared with the role subclasses in :mod:`rpcframework.protocol.transfer`."""

    INFO = "INFO"  # client: start() not called; server: waiting for the file info
    ACCEPTING = "ACCEPTING"  # client: waiting for "Accepted"; server: must accept or refuse
    DATA = "DATA"
    RESULT = "RESULT"  # data phase over; client: waiting for the result; server: must send it
    DONE = "DONE"


# --- the shared data phase ----------------------------------------------------------------------------------------


class TransferEndpoint:
    """One side of a transfer: the data phase for both roles and both modes. Use the client/server subclasses."""

    _is_client: bool = False

    def __init__(
        self,
        hand_over: HandOver,
        *,
        max_size: int | None = None,
        verify_checksum: bool = True,
        limits: CodecLimits = DEFAULT_LIMITS,
    ) -> None:
        direction = hand_over.proposal.transfer_direction
        if direction is None:
            raise LocalProtocolError("a transfer machine needs a FileTransfer proposal")
        self.direction = direction
        self._decoder: FrameDecoder = hand_over.decoder
        self._encoding: Encoding = hand_over.encoding
        self._limits = limits
        features = hand_over.extensions.features if hand_over.extensions is not None else frozenset()
        self.mode = TransferMode.STREAM if Feature.STREAM in features else TransferMode.DIRAC
        self._resume_allowed = Feature.RESUME in features
        self.max_size = max_size
        self.verify_checksum = verify_checksum
        self.info: FileInfo | None = None
        self._phase = Phase.INFO
        self._out = bytearray()
        self._eof = False
        self._pending: list[TransferEvent] = []
        self.checksum = "md5" if self.mode is TransferMode.DIRAC else stream_checksum(hand_over.extensions)
        self._hasher: _Checksum = _new_checksum(self.checksum)
        self._offset = 0  # where this session's data starts in the file (resume)
        self._prefix_hashed = 0
        self._transferred = 0  # data bytes of this session
        self._expect_start = False  # receiver: a start message (granted offset) comes first
        self._start_owed = False  # sender: send_start() must come first
        # Sender state.
        self._awaiting_ack = False  # DIRAC: a chunk is unacknowledged
        self._terminal_sent = False  # our end or abort is out
        self._awaiting_answer = False  # stream: waiting for the receiver's one answer
        self._our_abort: str | None = None
        # Receiver state.
        self._ack_owed = False  # DIRAC: answer the last chunk at the next next_event()
        self._draining = False  # we aborted; discard data until the sender's end/abort (or one message)
        self._drain_one = False
        self._drained = 0
        self._failed: Exception | None = None
        self._in_sync = True  # False once send_result() cut a data phase short: close the connection
        self._messages = 0  # frames other than keepalives received: the peer's progress (see ``progress``)

    # --- public -------------------------------------------------------------------------------------------------

    @property
    def sending(self) -> bool:
        """True when this side sends the data."""
        if self.direction is TransferDirection.ListBulk:
            return False
        return (self.direction in _SENDING_CLIENT) is self._is_client

    @property
    def offset(self) -> int:
        """The file offset this session's data starts at (0 unless a resume was granted)."""
        return self._offset

    @property
    def transferred(self) -> int:
        """Data bytes sent or received in this session."""
        return self._transferred

    @property
    def done(self) -> bool:
        """The exchange is over (result sent or received, or refused)."""
        return self._phase is Phase.DONE

    @property
    def data_done(self) -> bool:
        """The data phase is over (finished or aborted) or there is none."""
        return self._phase in (Phase.RESULT, Phase.DONE)

    @property
    def in_sync(self) -> bool:
        """False when the exchange ended mid data phase: the connection must be closed, not reused."""
        return self._in_sync

    @property
    def is_client(self) -> bool:
        """True for the client's machine (it gets the server's final result after the data phase)."""
        return self._is_client

    @property
    def local_abort(self) -> str | None:
        """The reason we gave when we aborted the data phase (``None``: we did not)."""
        return self._our_abort

    @property
    def start_owed(self) -> bool:
        """Sender: the receiver asked to resume; :meth:`send_start` must come before any chunk."""
        return self._start_owed

    @property
    def can_send_chunk(self) -> bool:
        """Sender: a chunk may be sent now (DIRAC: the previous one was acked; nobody aborted)."""
        return (
            self.sending
            and self._phase is Phase.DATA
            and not self._terminal_sent
            and not self._awaiting_ack
            and not self._start_owed
        )

    @property
    def progress(self) -> tuple[int, int, int]:
        """Changes whenever the transfer moves on: a message other than a keepalive arrived whole, bytes of one
        arrived, or we sent data. Keepalives never change it: they show the peer is alive, not that the transfer
        advances (a client bounds its wait for progress with it)."""
        decoder = self._decoder
        return self._messages, 0 if decoder.in_keepalive else decoder.missing, self._transferred

    @property
    def frame_missing(self) -> int:
        """Bytes still to come for the frame being received (0: at a frame boundary). A reader may feed that many
        without calling :meth:`next_event` in between: a 1 MiB chunk arrives in ~64 TLS records."""
        return self._decoder.missing

    def receive_buffer(self) -> memoryview | None:
        """Where the rest of the file chunk being received may be read directly (``recv_into``), then reported
        with :meth:`received_into`; ``None``: read and :meth:`receive_data` instead (no chunk header parsed yet, a
        small frame, or not receiving file data)."""
        if self._eof or self._phase is not Phase.DATA or self.sending:
            return None
        return self._decoder.payload_buffer(_INPLACE_LIMIT)

    def received_into(self, size: int) -> None:
        """``size`` bytes were read into the view :meth:`receive_buffer` gave; 0 means the peer closed its side."""
        if not size:
            self._eof = True
            return
        self._decoder.payload_received(size)

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the peer; ``b""`` means the peer closed its side."""
        if not data:
            self._eof = True
            return
        self._decoder.feed(data)

    def data_to_send(self) -> bytes:
        """Bytes owed to the peer in reaction to what it sent (acks, answers, aborts, pongs)."""
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> TransferEvent | Sentinel:
        """The next event, ``NEED_DATA`` (read more) or ``PAUSED`` (our move). Raises :class:`ProtocolError`."""
        if self._failed is not None:
            raise LocalProtocolError(f"the transfer had a protocol error ({self._failed}); close the connection")
        if self._ack_owed:
            self._ack_owed = False
            self._out += self._frame(S_OK())
        try:
            return self._next_event()
        except (ProtocolError, ConnectionClosedError) as exc:
            self._failed = exc
            self._in_sync = False
            raise

    def _next_event(self) -> TransferEvent | Sentinel:
        while not self._pending:
            if self._phase is Phase.DONE or self._our_move():
                return PAUSED
            frame = self._decoder.next_frame()
            if frame is None:
                if self._eof:
                    self._decoder.eof()
                    raise ConnectionClosedError(f"the peer closed the connection during a transfer ({self._phase})")
                return NEED_DATA
            if frame.keepalive:
                self._on_keepalive(frame.payload)
                continue
            self._messages += 1
            event = self._on_frame(frame.payload)
            if event is not None:
                self._pending.append(event)
        return self._pending.pop(0)

    def hash_prefix(self, data: bytes | memoryview) -> None:
        """Resume: feed bytes ``[0, offset)`` of the file (already held by the receiver) into the digest."""
        if self._prefix_hashed + len(data) > self._offset:
            raise LocalProtocolError("more prefix bytes than the granted offset")
        self._hasher.update(data)
        self._prefix_hashed += len(data)

    def abort(self, reason: str) -> bytes:
        """Give up the data phase; returns the abort message. :class:`TransferAborted` follows once in step."""
        if self._phase is not Phase.DATA or self._our_abort is not None or self._terminal_sent:
            raise LocalProtocolError("no data phase to abort")
        self._our_abort = reason
        data = self._frame(abort_message(reason))
        if self.sending:
            self._terminal_sent = True
            if self.mode is TransferMode.STREAM:
                self._awaiting_answer = True
            else:
                self._data_over(TransferAborted(reason, by_peer=False))
            return data
        if self.mode is TransferMode.STREAM:
            self._draining = True
        elif self._ack_owed:
            self._ack_owed = False  # the abort answers the chunk, and the DIRAC sender stops
            self._data_over(TransferAborted(reason, by_peer=False))
        else:
            self._draining = self._drain_one = True  # the sender's next message crosses our abort
        return data

    # --- sender actions -----------------------------------------------------------------------------------------

    def send_start(self, offset: int) -> bytes:
        """Sender, resume requested: grant ``offset`` (0 .. requested); then ``hash_prefix()`` the bytes before it."""
        if not self._start_owed:
            raise LocalProtocolError("no resume was requested")
        requested = self.info.offset if self.info is not None else 0
        if not 0 <= offset <= requested:
            raise LocalProtocolError(f"offset {offset} outside 0..{requested}")
        self._start_owed = False
        self._offset = offset
        return self._frame(S_OK({"offset": offset}))

    def send_chunk(self, data: bytes | memoryview) -> bytes:
        """Sender: one chunk (at most :data:`CHUNK_SIZE` bytes) as wire bytes."""
        return b"".join(self.send_chunk_parts(data))

    def send_chunk_parts(self, data: bytes | memoryview) -> tuple[bytes | memoryview, ...]:
        """Like :meth:`send_chunk`, without joining: stream mode returns ``(header, data)`` so no copy is made."""
        if not self.can_send_chunk:
            raise LocalProtocolError("a chunk cannot be sent now")
        size = len(data)
        if not 0 < size <= CHUNK_SIZE:
            raise LocalProtocolError(f"chunk size {size} outside 1..{CHUNK_SIZE}")
        self._check_prefix()
        self._hasher.update(data)
        self._transferred += size
        if self.mode is TransferMode.STREAM:
            return b"%d:\x00" % (size + 1), memoryview(data)
        self._awaiting_ack = True
        return (self._frame(transfer_chunk_message(bytes(data))),)

    def send_end(self) -> bytes:
        """Sender: the end message with the digest of the whole file (prefix included)."""
        if not self.can_send_chunk:
            raise LocalProtocolError("the end cannot be sent now")
        self._check_prefix()
        self._terminal_sent = True
        digest = self._hasher.hexdigest()
        if self.mode is TransferMode.STREAM:
            self._awaiting_answer = True
            return self._frame(stream_end_message(digest, self._offset + self._transferred, self.checksum))
        self._data_over(TransferFinished(True, self._offset + self._transferred, digest))
        return self._frame(transfer_end_message(digest))

    # --- internals ----------------------------------------------------------------------------------------------

    def _our_move(self) -> bool:
        """True when the peer must stay silent until we act (reading would only find a protocol error)."""
        phase = self._phase
        if phase is Phase.INFO:
            return self._is_client
        if phase is Phase.ACCEPTING or phase is Phase.RESULT:
            return not self._is_client
        if phase is Phase.DATA and self.sending and self.mode is TransferMode.DIRAC:
            return not self._awaiting_ack and not self._decoder.buffered
        return False

    def _frame(self, message: Any) -> bytes:
        return encode_frame(encode(message, self._encoding, self._limits))

    def _decode(self, payload: bytes | bytearray) -> DReturn:
        try:
            message, _ = decode(payload, self._encoding, self._limits)
        except CodecError as exc:
            raise ProtocolError(f"undecodable transfer message: {exc}") from exc
        return check_envelope(message)

    def _on_keepalive(self, payload: bytes | bytearray) -> None:
        try:
            message, encoding = decode(payload, None, self._limits)
        except CodecError as exc:
            raise ProtocolError(f"undecodable keepalive: {exc}") from exc
        keepalive = KeepAlive.from_wire(message)
        if keepalive.ping:
            self._out += encode_keepalive_frame(encode(keepalive.pong().to_wire(), encoding, self._limits))

    def _on_frame(self, payload: bytes | bytearray) -> TransferEvent | None:
        phase = self._phase
        if phase is Phase.DATA:
            if self.sending:
                return self._on_receiver_message(self._decode(payload))
            if payload[:1] == RAW_CHUNK_MARK and self.mode is TransferMode.STREAM:
                return self._on_chunk(memoryview(payload)[1:])
            return self._on_sender_message(self._decode(payload))
        return self._on_control(phase, self._decode(payload))

    def _on_control(self, phase: Phase, envelope: DReturn) -> TransferEvent | None:
        raise NotImplementedError

    def _data_over(self, event: TransferEvent) -> None:
        self._pending.append(event)
        self._phase = Phase.RESULT

    def _check_prefix(self) -> None:
        if self._prefix_hashed != self._offset:
            raise LocalProtocolError(f"hash_prefix() got {self._prefix_hashed} of {self._offset} prefix bytes")

    def _start_data(self) -> None:
        self._phase = Phase.DATA if self.direction is not TransferDirection.ListBulk else Phase.RESULT
        requested = self.info is not None and self.info.offset > 0 and self._resume_allowed
        if requested and self.direction is TransferDirection.ToClient:
            if self.sending:
                self._start_owed = True
            else:
                self._expect_start = True

    # --- receiver side ------------------------------------------------------------------------------------------

    def _on_chunk(self, data: bytes | memoryview) -> TransferEvent | None:
        if self._expect_start:
            raise UnexpectedMessageError("file data before the resume offset")
        if self._draining:
            return self._drain(terminal=False, size=len(data))
        self._check_prefix()
        size = len(data)
        if self.max_size is not None and self._offset + self._transferred + size > self.max_size:
            logger.debug("transfer over the size cap of %d bytes", self.max_size)
            # DIRAC mode: the abort answers this very chunk (it takes the place of its ack).
            self._ack_owed = self.mode is TransferMode.DIRAC
            self._out += self.abort(EXCEEDED_MAX_SIZE)
            if self._is_client and self._draining:
                # A client closes the connection after giving up: what the server still has in flight is not
                # read (a hostile one would never stop), so the connection is out of step and must not be reused.
                self._draining = self._drain_one = False
                self._in_sync = False
                self._data_over(TransferAborted(EXCEEDED_MAX_SIZE, by_peer=False))
            return None
        self._hasher.update(data)
        self._transferred += size
        if self.mode is TransferMode.DIRAC:
            self._ack_owed = True
        return ChunkReceived(data)

    def _on_sender_message(self, envelope: DReturn) -> TransferEvent | None:
        if envelope.get("AbortTransfer") is True:
            return self._on_sender_terminal(None, str(envelope.get("Message", "transfer aborted")))
        if not envelope["OK"]:
            if self._is_client:  # the handler's result, sent instead of data (it failed before sending)
                self._phase = Phase.DONE
                return ResultReceived(sanitize_result(envelope))
            raise UnexpectedMessageError("an error message in place of file data")
        if self._expect_start:
            return self._on_start(envelope["Value"])
        if self.mode is TransferMode.STREAM:
            return self._on_sender_terminal(parse_stream_end(envelope["Value"], self.checksum), None)
        message = parse_transfer_message(envelope)
        if isinstance(message, TransferChunk):
            return self._on_chunk(message.data)
        assert isinstance(message, TransferEnd)  # aborts were handled above
        return self._on_sender_terminal((message.md5, None), None)

    def _on_start(self, value: object) -> TransferEvent:
        requested = self.info.offset if self.info is not None else 0
        offset = value.get("offset") if isinstance(value, dict) else None
        if type(offset) is not int or not 0 <= offset <= requested:
            raise UnexpectedMessageError("invalid resume offset from the sender")
        self._expect_start = False
        self._offset = offset
        return TransferStarted(offset)

    def _on_sender_terminal(self, end: tuple[str, int | None] | None, abort_reason: str | None) -> TransferEvent | None:
        if self._expect_start and end is not None:
            raise UnexpectedMessageError("end of file before the resume offset")
        if self._draining:
            return self._drain(terminal=True, size=0)
        if end is None:
            reason = abort_reason or "transfer aborted"
            if self.mode is TransferMode.STREAM:
                self._out += self._frame(S_ERROR(reason))
            self._data_over(TransferAborted(reason, by_peer=True))
            return None
        self._check_prefix()
        digest, size = end
        total = self._offset + self._transferred
        ok = (size is None or size == total) and self._digest_matches(digest)
        if self.mode is TransferMode.STREAM:
            self._out += self._frame(S_OK() if ok else S_ERROR(CHECKSUM_ERROR))
        if not ok:
            logger.debug("transfer checksum mismatch (%d bytes)", total)
        self._data_over(TransferFinished(ok, total, self._hasher.hexdigest()))
        return None

    def _digest_matches(self, digest: str) -> bool:
        if not self.verify_checksum:
            return True
        if not digest and self.mode is TransferMode.DIRAC:
            # Only a DIRAC *client* sends no digest, and only with "NoCheckSum" in its token; from anyone else an
            # empty digest is a failed check, never a pass.
            token = self.info.token if self.info is not None else ""
            return not self._is_client and NO_CHECKSUM_TOKEN in token
        return digest.lower() == self._hasher.hexdigest()

    def _drain(self, *, terminal: bool, size: int) -> TransferEvent | None:
        """We aborted: discard what the sender had in flight until it is in step again."""
        self._drained += size
        if self._drained > DRAIN_LIMIT:
            raise ProtocolError("the sender kept sending after the transfer was aborted")
        if terminal or self._drain_one:
            self._draining = self._drain_one = False
            self._data_over(TransferAborted(self._our_abort or "transfer aborted", by_peer=False))
        return None

    # --- sender side --------------------------------------------------------------------------------------------

    def _on_receiver_message(self, envelope: DReturn) -> TransferEvent | None:
        aborted = envelope.get("AbortTransfer") is True
        if self._awaiting_answer:  # stream: the receiver's one answer after our end/abort (or its abort)
            self._awaiting_answer = False
            if self._our_abort is not None:
                self._data_over(TransferAborted(self._our_abort, by_peer=False))
            elif aborted:
                self._data_over(TransferAborted(str(envelope.get("Message", "")), by_peer=True))
            else:
                total = self._offset + self._transferred
                self._data_over(TransferFinished(bool(envelope["OK"]), total, self._hasher.hexdigest()))
            return None
        if aborted:
            reason = str(envelope.get("Message", "transfer aborted"))
            if self.mode is TransferMode.STREAM and not self._terminal_sent:
                self._out += self._frame(abort_message(reason))  # marks where our data ends for the receiver
            self._terminal_sent = True
            self._awaiting_ack = False
            self._data_over(TransferAborted(reason, by_peer=True))
            return None
        if not envelope["OK"] and self._is_client:
            # A handler that returned early: its result, sent instead of an ack (DIRAC clients stop here too).
            self._phase = Phase.DONE
            return ResultReceived(sanitize_result(envelope))
        if self.mode is TransferMode.DIRAC and self._awaiting_ack and envelope["OK"]:
            self._awaiting_ack = False
            return ChunkAcknowledged()
        raise UnexpectedMessageError("unexpected message from the file receiver")
