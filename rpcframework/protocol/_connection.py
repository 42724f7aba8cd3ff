"""What the client and server machines share: the frame decoder, keepalives, EOF, the outgoing queue, hand-over.

Theory of operation: bytes go in through ``receive_data`` (``b""`` means the peer closed its side), events come
out of ``next_event``. Bytes *we* must send because of what we received (keepalive pongs, the error reply to a
bad proposal) are queued and returned by ``data_to_send()``; bytes produced by our own actions (``accept``,
``send_arguments``...) are returned directly by those methods. Keepalives (``dka`` frames) are legal in every
state and never change it: a ping is answered with a pong in the ping's encoding, a pong becomes a
:class:`PongReceived` event.

Every :class:`ProtocolError` raised by the peer's bytes moves the machine to ``ERROR`` for good.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

from rpcframework.codec import CodecLimits, Encoding, decode, encode
from rpcframework.codec.limits import DEFAULT_LIMITS
from rpcframework.errors import CodecError, ConnectionClosedError, ProtocolError
from rpcframework.protocol.events import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    ConnectionState,
    Event,
    LocalProtocolError,
    PongReceived,
    Sentinel,
)
from rpcframework.protocol.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    PROPOSAL_MAX_FRAME_SIZE,
    FrameDecoder,
    encode_frame,
    encode_keepalive_frame,
)
from rpcframework.protocol.messages import Extensions, Feature, KeepAlive, Proposal

__all__ = ["BaseConnection", "HandOver"]

logger = logging.getLogger(__name__)

# Enum members as module constants: EnumType defines __getattr__ (3.11), which makes every ``ConnectionState.X``
# in the per-message code a slow attribute lookup.
_IDLE: Final = ConnectionState.IDLE
_PROPOSED: Final = ConnectionState.PROPOSED
_ACCEPTED: Final = ConnectionState.ACCEPTED
_CALLING: Final = ConnectionState.CALLING
_HANDED_OVER: Final = ConnectionState.HANDED_OVER
_CLOSED: Final = ConnectionState.CLOSED
_ERROR: Final = ConnectionState.ERROR

#: Bound on the per-connection caches of encoded/decoded proposals (a connection calls few distinct methods).
_CACHE_SIZE: Final = 32
#: Frames one next_event() may go through without an event (keepalives, skipped frames, a consumed ack): a loop
#: guard; a peer that sends that many unanswered frames in a row is broken or hostile.
_MAX_FRAMES_PER_EVENT: Final = 100_000


@dataclass(frozen=True, slots=True)
class HandOver:
    """What a follow-up machine (file transfer, messages) needs to continue on this connection.

    ``decoder`` may already hold bytes the peer sent after the ack; the new machine must keep using it.
    ``encoding`` is the encoding of data messages (the typed one when negotiated).
    """

    proposal: Proposal
    decoder: FrameDecoder
    encoding: Encoding
    extensions: Extensions | None


class BaseConnection:
    """Shared mechanics; see :class:`~rpcframework.protocol.rpc.ClientConnection` and ``ServerConnection``."""

    #: States in which the machine waits for our own action and reads nothing.
    #: A tuple, not a frozenset: ``in`` on a tuple compares enum members by identity, without Enum.__hash__
    #: (a Python-level function in 3.11) on every event.
    _paused_states: tuple[ConnectionState, ...] = (_HANDED_OVER,)

    def __init__(
        self,
        *,
        max_message_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_proposal_size: int = PROPOSAL_MAX_FRAME_SIZE,
        limits: CodecLimits = DEFAULT_LIMITS,
    ) -> None:
        self._max_message_size = max_message_size
        self._max_proposal_size = max_proposal_size
        self._limits = limits
        # The decoder's cap moves between these two at every exchange; both are checked here, once, so the
        # per-message switches write the decoder's field directly (its property checks every assignment).
        FrameDecoder(max_message_size)
        self._decoder = FrameDecoder(max_proposal_size)
        self._out = bytearray()
        self._eof = False
        self._state = _IDLE
        self._encoding = Encoding.JSON  # the base encoding (proposal, ack, refusals)
        self._negotiated: Extensions | None = None
        # Derived from _negotiated once (_set_negotiated), so the per-message path does no set lookups.
        self._reusable = False
        self._kwargs_allowed = False
        self._pipeline = False  # pipeline (and reuse) negotiated
        self._data_encoding = Encoding.JSON
        self._proposal: Proposal | None = None
        # Frames to read and drop: the arguments behind a refused pipelined proposal (server side).
        self._skip = 0

    # --- public ------------------------------------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def extensions(self) -> Extensions | None:
        """The extensions negotiated on this connection (``None`` with a DIRAC peer)."""
        return self._negotiated

    @property
    def reusable(self) -> bool:
        """True when connection reuse was negotiated: after a result the machine returns to ``IDLE``."""
        return self._reusable

    @property
    def pipeline(self) -> bool:
        """True when ``pipeline`` (with ``reuse``) was negotiated: RPC proposals may carry their arguments."""
        return self._pipeline

    @property
    def data_encoding(self) -> Encoding:
        """The encoding of arguments, results and transfer data: the typed one when negotiated."""
        return self._data_encoding

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the peer; ``b""`` means the peer closed its side."""
        if not data:
            self._eof = True
            return
        if self._state is _CLOSED:
            return  # the exchange is over; whatever the peer still sends is not read (DIRAC closes here)
        try:
            self._decoder.feed(data)
        except ProtocolError:
            self._state = _ERROR
            raise

    @property
    def held_bytes(self) -> int:
        """Bytes received and not yet turned into events, plus what the frame being received still declares: what
        this connection will hold once that frame is complete (a server charges it before the payload arrives)."""
        decoder = self._decoder
        return decoder.buffered + decoder.missing

    def discard_buffers(self) -> None:
        """The connection is closed: free the bytes its decoder holds (shared with a handed-over transfer)."""
        self._decoder.discard()

    def needs_data(self) -> bool:
        """True when nothing is buffered, so ``next_event()`` would return ``NEED_DATA`` while a message is
        awaited (a shortcut for the per-call loop: read first, then ask)."""
        decoder = self._decoder  # FrameDecoder.at_boundary, inline: this runs once or twice per call
        return (
            not self._eof
            and not self._out
            and decoder._pos == len(decoder._buf)
            and decoder._need < 0
            and not decoder._keepalive
        )

    def data_to_send(self) -> bytes:
        """Return (and forget) bytes queued in reaction to received data: pongs, error replies."""
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | Sentinel:
        """Return the next event, ``NEED_DATA`` or ``PAUSED``. Raises :class:`ProtocolError` on a bad peer."""
        # One loop for every frame and state (the steady state of a call included): no second parser beside it.
        state = self._state
        if state is _ERROR:
            raise LocalProtocolError("the connection had a protocol error; close it")
        decoder = self._decoder
        try:
            for _ in range(_MAX_FRAMES_PER_EVENT):
                if state is _CLOSED:
                    return ConnectionClosed()
                if state in self._paused_states:
                    return PAUSED
                payload = decoder.next_payload()
                if payload is None:
                    return self._on_eof() if self._eof else NEED_DATA
                if decoder.last_keepalive:
                    pong = self._on_keepalive(payload)
                    if pong is not None:
                        return pong
                elif self._skip:
                    self._skip_frame()
                else:
                    event = self._on_frame(payload)
                    if event is not None:
                        return event
                state = self._state
            raise ProtocolError(f"the peer sent {_MAX_FRAMES_PER_EVENT} frames that make no event (keepalives?)")
        except (ProtocolError, ConnectionClosedError):
            self._state = _ERROR
            raise

    def send_keepalive(self, ping_id: str) -> bytes:
        """A keepalive ping to send while idle; the answer arrives as :class:`PongReceived`."""
        self._require(_IDLE, _ACCEPTED, _CALLING)
        return encode_keepalive_frame(encode(KeepAlive(ping_id).to_wire(), self._encoding, self._limits))

    def hand_over(self) -> HandOver:
        """Give the stream to the machine of a non-RPC action (state ``HANDED_OVER``)."""
        self._require(_HANDED_OVER)
        assert self._proposal is not None  # set whenever HANDED_OVER is entered
        return HandOver(self._proposal, self._decoder, self.data_encoding, self._negotiated)

    def finish_hand_over(self) -> None:
        """The follow-up machine is done: back to ``IDLE`` when reuse was negotiated, else ``CLOSED``."""
        self._require(_HANDED_OVER)
        self._end_exchange()

    # --- for subclasses ----------------------------------------------------------------------------------------

    def _on_frame(self, payload: bytes) -> Event | Sentinel | None:
        """The event a frame makes, or ``None`` when it makes none (keep reading)."""
        raise NotImplementedError

    def _require(self, *states: ConnectionState) -> None:
        if self._state not in states:
            allowed = " or ".join(s.value for s in states)
            raise LocalProtocolError(f"not allowed in state {self._state.value} (needs {allowed})")

    def _decode(self, payload: bytes, encoding: Encoding | None) -> tuple[Any, Encoding]:
        try:
            return decode(payload, encoding, self._limits)
        except CodecError as exc:
            raise ProtocolError(f"undecodable message: {exc}") from exc

    def _frame(self, message: Any, encoding: Encoding) -> bytes:
        return encode_frame(encode(message, encoding, self._limits))

    def _set_encoding(self, encoding: Encoding) -> None:
        self._encoding = encoding
        if self._negotiated is None:
            self._data_encoding = encoding

    def _set_negotiated(self, extensions: Extensions | None) -> None:
        self._negotiated = extensions
        features = extensions.features if extensions is not None else frozenset()
        self._reusable = Feature.REUSE in features
        self._kwargs_allowed = Feature.KWARGS in features
        self._pipeline = Feature.PIPELINE in features and self._reusable
        self._data_encoding = Encoding.TYPED if Feature.TYPED in features else self._encoding

    def _end_exchange(self) -> None:
        self._proposal = None
        self._decoder._max_frame_size = self._max_proposal_size
        self._state = _IDLE if self._reusable else _CLOSED

    # --- internals ---------------------------------------------------------------------------------------------

    def _skip_frame(self) -> None:
        # Dropped unread: the arguments of a refused pipelined proposal (nothing ran; at-most-once holds).
        self._skip -= 1
        if not self._skip:
            self._decoder._max_frame_size = self._max_proposal_size

    def _on_keepalive(self, payload: bytes) -> PongReceived | None:
        message, encoding = self._decode(payload, None)
        keepalive = KeepAlive.from_wire(message)
        if not keepalive.ping:
            return PongReceived(keepalive.id)
        self._out += encode_keepalive_frame(encode(keepalive.pong().to_wire(), encoding, self._limits))
        return None

    def _on_eof(self) -> Event | Sentinel:
        self._decoder.eof()  # raises ConnectionClosedError mid-frame
        if self._state is _IDLE:
            # A clean close between exchanges (an idle reused connection, or a peer that gave up before proposing).
            self._state = _CLOSED
            return ConnectionClosed()
        if self._state in self._paused_states:
            return PAUSED  # our move; the caller learns about the close when it sends
        raise ConnectionClosedError(f"the peer closed the connection in state {self._state.value}")
