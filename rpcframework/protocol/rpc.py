"""The RPC exchange as two sans-IO state machines: :class:`ClientConnection` and :class:`ServerConnection`.

One exchange (DIRAC ``dip``/``dips``)::

    client                                    server
    send_proposal(p)      -- S_OK(proposal) -->  ProposalReceived(p, encoding)
    ProposalAccepted(ext) <-- S_OK(ack)    --   accept(extensions)         | refuse(error) -> ProposalRefused
    send_arguments(a, kw) -- S_OK([args])  -->  ArgumentsReceived(args, kwargs)
    CallResult(result)    <-- result       --   send_result(result)

After the result both machines are ``CLOSED`` (DIRAC: the server closes), or back to ``IDLE`` for the next
proposal when the ``reuse`` extension was negotiated. For a non-RPC action (file transfer, connection) the
machines go to ``HANDED_OVER`` after the ack and :meth:`BaseConnection.hand_over` gives the stream to the
machine of that action, which calls :meth:`BaseConnection.finish_hand_over` when it is done.

Extensions: the client offers :class:`Extensions` in the fifth proposal element of the *first* proposal on a
connection; the server accepts a subset in its ack value (a DIRAC server acks ``None``, so the client falls back
silently). Later proposals on a reused connection carry no offer and are acked with ``S_OK()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Final

from rpcframework.codec import CodecLimits, Encoding, encode
from rpcframework.codec.jsoncodec import decode_json, encode_json
from rpcframework.codec.limits import DEFAULT_LIMITS
from rpcframework.errors import CodecError, ProtocolError, UnexpectedMessageError
from rpcframework.protocol._connection import BaseConnection
from rpcframework.protocol.events import (
    ArgumentsReceived,
    CallResult,
    ConnectionClosed,
    ConnectionState,
    Event,
    LocalProtocolError,
    ProposalAccepted,
    ProposalReceived,
    ProposalRefused,
    Sentinel,
)
from rpcframework.protocol.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    MAX_HEADER_SIZE,
    MAX_WIRE_FRAME_SIZE,
    PROPOSAL_MAX_FRAME_SIZE,
    encode_frame,
)
from rpcframework.protocol.messages import (
    ARGUMENTS_ERROR,
    GOODBYE_KEY,
    INVALID_PROPOSAL,
    ActionType,
    Extensions,
    Feature,
    Proposal,
    arguments_from_wire,
    arguments_to_wire,
    check_envelope,
    sanitize_result,
)
from rpcframework.returnvalues import S_ERROR, S_OK, DErrorReturn, DReturn

__all__ = ["ClientConnection", "ServerConnection"]

_CACHE_SIZE: Final = 32
_ACK: Final = S_OK()
_RPC: Final = ActionType.RPC
_JSON: Final = Encoding.JSON
_GOODBYE: Final = {"OK": False, "Errno": 0, "Message": "the server closed this idle connection", GOODBYE_KEY: True}
#: The constant ack S_OK() framed in JSON (b'27:{"OK": true, "Value": null}'), as _frame(_ACK, JSON) makes it.
_JSON_ACK_FRAME: Final = encode_frame(encode(_ACK, Encoding.JSON))


class ClientConnection(BaseConnection):
    """The client side of DISET exchanges on one connection.

    ``encoding`` is what proposals and (unless ``typed`` is negotiated) arguments use: JSON like DIRAC 9, or
    DEncode for old peers. ``offer`` is the set of extensions to propose; ``None`` makes a pure DIRAC client.
    """

    def __init__(
        self,
        *,
        encoding: Encoding = Encoding.JSON,
        offer: Extensions | None = None,
        max_message_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_ack_size: int = PROPOSAL_MAX_FRAME_SIZE,
        limits: CodecLimits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(max_message_size=max_message_size, max_proposal_size=max_ack_size, limits=limits)
        if encoding is Encoding.TYPED:
            raise ValueError("the typed encoding is negotiated, not used for proposals")
        self._set_encoding(encoding)
        self._offer = offer
        self._offered = False  # an offer was sent on this connection (only the first proposal carries one)
        self._proposal_bytes: dict[Proposal, bytes] = {}
        self._last_proposal: Proposal | None = None
        self._last_proposal_bytes: bytes | None = None
        self._pipelined = False  # the exchange in progress sent its arguments with the proposal
        # Marked (pipelined) proposal frames, by the caller's unmarked proposal; the last one skips the hash.
        self._call_bytes: dict[Proposal, bytes] = {}
        self._last_call: tuple[Proposal, bytes] | None = None
        # The constant ack S_OK() in our encoding: compared as bytes, never decoded.
        self._ack_payload = encode(_ACK, encoding, limits)
        self._ack_wire = encode_frame(self._ack_payload)  # b'27:{"OK": true, "Value": null}' in JSON

    def send_proposal(self, proposal: Proposal) -> bytes:
        """Start an exchange; the first proposal on a connection carries our extensions offer."""
        self._require(ConnectionState.IDLE)
        if not self._offered and self._offer is not None:
            proposal = dataclasses.replace(proposal, extensions=self._offer)
        elif proposal.extensions is not None:
            proposal = dataclasses.replace(proposal, extensions=None)
        if proposal.trace_context is not None and not self._may_trace(proposal):
            proposal = dataclasses.replace(proposal, trace_context=None)
        data = self._last_proposal_bytes if proposal is self._last_proposal else self._proposal_bytes.get(proposal)
        if data is None:
            data = self._frame(S_OK(proposal.to_wire()), self._encoding)
            if proposal.trace_context is None:  # a traced proposal is used once: not worth a cache slot
                if len(self._proposal_bytes) >= _CACHE_SIZE:
                    self._proposal_bytes.clear()
                self._proposal_bytes[proposal] = data
        # Hashing a Proposal costs microseconds (enum hashes); a caller repeating one object skips it.
        self._last_proposal, self._last_proposal_bytes = proposal, data
        self._offered = self._offered or proposal.extensions is not None
        self._proposal = proposal
        self._state = ConnectionState.PROPOSED
        return data

    def _may_trace(self, proposal: Proposal) -> bool:
        """A trace context goes in our offer (which DIRAC ignores) or to a server that accepted ``trace``."""
        if proposal.extensions is not None:
            return Feature.TRACE in proposal.extensions
        return self._negotiated is not None and Feature.TRACE in self._negotiated

    def send_call(self, proposal: Proposal, args: Sequence[Any], kwargs: Mapping[str, Any] | None = None) -> bytes:
        """The pipelined form (``pipeline`` negotiated, RPC only): the marked proposal and its arguments, to send
        in one write. The answer is ``CallResult`` (the ack is consumed silently) or ``ProposalRefused`` (the
        server dropped the arguments unread; the connection stays IDLE and usable)."""
        if self._state is not ConnectionState.IDLE or not self._pipeline or proposal.action_type is not _RPC:
            raise LocalProtocolError(f"a pipelined call needs the 'pipeline' extension and IDLE ({self._state.value})")
        if kwargs and not self._kwargs_allowed:
            raise LocalProtocolError("keyword arguments need the 'kwargs' extension, which this server did not accept")
        last = self._last_call
        if last is not None and last[0] is proposal:
            head = last[1]
        elif proposal.trace_context is not None:
            keep = proposal.trace_context if self._may_trace(proposal) else None
            marked = dataclasses.replace(proposal, extensions=None, pipelined=True, trace_context=keep)
            head = self._frame(S_OK(marked.to_wire()), self._encoding)
        else:
            found = self._call_bytes.get(proposal)
            if found is None:
                marked = dataclasses.replace(proposal, extensions=None, pipelined=True)
                found = self._frame(S_OK(marked.to_wire()), self._encoding)
                if len(self._call_bytes) >= _CACHE_SIZE:
                    self._call_bytes.clear()
                self._call_bytes[proposal] = found
            head = found
            self._last_call = (proposal, head)
        message = arguments_to_wire(args, kwargs)
        if self._data_encoding is _JSON:
            # The common case: one json.dumps (the codec's cached encoder, limits checked) and one join for both
            # frames; encode_frame's only check (the 9-digit wire maximum) is made here.
            payload = encode_json(message, self._limits)
            if len(payload) > MAX_WIRE_FRAME_SIZE:
                encode_frame(payload)  # raises the ValueError naming the limit
            data = b"%b%d:%b" % (head, len(payload), payload)
        else:
            data = head + self._frame(message, self._data_encoding)
        self._proposal = proposal
        self._pipelined = True
        self._state = ConnectionState.PROPOSED
        return data

    def receive_result(self, data: bytes) -> DReturn | None:
        """Fast path for the answer to a pipelined call: ``data`` (one read, non-empty) is exactly the constant
        ack followed by one complete result frame, in the JSON data encoding, with nothing buffered before it:
        the result envelope is returned and the machine is IDLE, as if ``receive_data`` and ``next_event`` had
        run. Anything else (a refusal, a goodbye, a pong, a reply split across reads, trailing bytes, another
        encoding, an oversized frame) is fed to the general machine and ``None`` is returned: the caller goes on
        with ``next_event``, which sees exactly what it would have seen without this shortcut.
        """
        ack = self._ack_wire
        if (
            self._pipelined
            and self._state is ConnectionState.PROPOSED
            and self._data_encoding is _JSON
            and data.startswith(ack)
            and self._decoder.at_boundary  # nothing of an earlier read is waiting in front of these bytes
            and not self._eof
        ):
            start = len(ack)
            colon = data.find(b":", start, start + MAX_HEADER_SIZE)
            digits = data[start:colon]
            # The same header rules as FrameDecoder: ASCII digits only, the result frame's size cap.
            if colon > start and digits.isdigit():
                size = int(digits)
                if size <= self._max_message_size and colon + 1 + size == len(data):
                    try:
                        message = decode_json(data[colon + 1 :], self._limits)
                        if type(message) is dict and message.get("OK") is True and "Value" in message:
                            result: DReturn = message  # type: ignore[assignment]  # check_envelope passes it unchanged
                        else:
                            result = check_envelope(message)
                    except CodecError as exc:
                        self._state = ConnectionState.ERROR
                        raise ProtocolError(f"undecodable message: {exc}") from exc
                    except ProtocolError:
                        self._state = ConnectionState.ERROR
                        raise
                    # What _accepted (pipelined) and then the CALLING branch of _on_frame do.
                    self._pipelined = False
                    self._end_exchange()
                    return result
        self.receive_data(data)
        return None

    def send_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any] | None = None) -> bytes:
        """Send the call's arguments; keyword arguments need the negotiated ``kwargs`` extension."""
        self._require(ConnectionState.ACCEPTED)
        if kwargs and not self._kwargs_allowed:
            raise LocalProtocolError(
                "keyword arguments need the 'kwargs' extension, which this server did not accept "
                "(a DIRAC service takes positional arguments only)"
            )
        data = self._frame(arguments_to_wire(args, kwargs), self.data_encoding)
        self._state = ConnectionState.CALLING
        return data

    def _on_frame(self, payload: bytes) -> Event | Sentinel | None:
        state = self._state
        if state is ConnectionState.CALLING:
            message, _ = self._decode(payload, self._data_encoding)
            result = check_envelope(message)
            self._end_exchange()
            return CallResult(result)
        if state is ConnectionState.PROPOSED:
            if payload == self._ack_payload and (self._negotiated is not None or not self._offered):
                # The constant ack on a connection whose extensions are settled: nothing to decode or negotiate.
                return self._accepted()
            message, _ = self._decode(payload, self._encoding)
            return self._on_ack(check_envelope(message))
        if state is ConnectionState.IDLE:
            return self._on_idle_frame(payload)
        raise UnexpectedMessageError(f"the server sent a message in state {state.value}")

    def _on_idle_frame(self, payload: bytes) -> Event:
        """A frame between exchanges: only the goodbye of a server closing this ``pipeline`` connection is legal.
        Anything else is an answer nobody asked for; it must never be taken for the next call's answer."""
        if self._pipeline:
            message, _ = self._decode(payload, self._encoding)
            if isinstance(message, dict) and message.get("OK") is False and message.get(GOODBYE_KEY) is True:
                self._state = ConnectionState.CLOSED
                return ConnectionClosed()
        raise UnexpectedMessageError(
            "the server sent a message while the connection was idle (no call was in progress); "
            "the connection is dropped"
        )

    def _accepted(self) -> Event | None:
        assert self._proposal is not None  # set by send_proposal/send_call
        if self._pipelined:
            self._pipelined = False
            self._state = ConnectionState.CALLING  # the result follows the ack in the same write
            self._decoder.max_frame_size = self._max_message_size
            return None
        if self._proposal.action_type is _RPC:
            self._state = ConnectionState.ACCEPTED
        else:
            self._state = ConnectionState.HANDED_OVER
        self._decoder.max_frame_size = self._max_message_size
        return ProposalAccepted(self._negotiated)

    def _on_ack(self, envelope: DReturn) -> Event | None:
        if not envelope["OK"]:
            self._pipelined = False
            if self._pipeline and envelope.get(GOODBYE_KEY) is True:
                # The server closed this idle connection without reading our proposal: nothing ran.
                self._proposal = None
                self._state = ConnectionState.CLOSED
                return ConnectionClosed()
            self._end_exchange()  # a pipelined call's arguments were dropped unread by the server
            return ProposalRefused(envelope)
        value = envelope["Value"]
        if self._offered and self._negotiated is None and self._proposal and self._proposal.extensions:
            self._set_negotiated(self._check_accepted(value, self._proposal.extensions))
        elif value is not None and Extensions.from_wire(value) is None:
            # DIRAC's gateway asks for a delegated proxy here ({"delegate": PEM}); we do not implement that.
            raise UnexpectedMessageError("unsupported proposal acknowledgement (delegation request?)")
        return self._accepted()

    @staticmethod
    def _check_accepted(value: object, offer: Extensions) -> Extensions | None:
        if value is None:
            return None  # a DIRAC server: one call per connection, no extensions
        accepted = Extensions.from_wire(value)
        if accepted is None:
            raise UnexpectedMessageError("unsupported proposal acknowledgement (delegation request?)")
        if accepted.version > offer.version or not accepted.features <= offer.features:
            raise ProtocolError("the server accepted extensions that were not offered")
        return accepted


class ServerConnection(BaseConnection):
    """The server side: parses proposals and arguments, and frames acks, refusals and results.

    ``extensions`` is what this server supports; it is offered only to clients that asked (never to DIRAC).
    Invalid proposals raise :class:`ProtocolError` with a DIRAC-compatible refusal queued in ``data_to_send()``
    (``"Invalid action proposal"``, ``"Foo is not a known action type"``...), never with a server stack.
    """

    _paused_states = (ConnectionState.PROPOSED, ConnectionState.CALLING, ConnectionState.HANDED_OVER)

    def __init__(
        self,
        *,
        extensions: Extensions | None = None,
        max_message_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_proposal_size: int = PROPOSAL_MAX_FRAME_SIZE,
        limits: CodecLimits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(max_message_size=max_message_size, max_proposal_size=max_proposal_size, limits=limits)
        self._supported = extensions
        self._proposal_cache: dict[bytes, tuple[Proposal, Encoding]] = {}
        # The last marked proposal frame parse_pipelined accepted, whole, with its proposal (see there).
        self._last_marked: tuple[bytes, Proposal] | None = None
        self._ack_bytes: dict[Encoding, bytes] = {}
        self._pending_ack = b""  # a pipelined exchange's ack, sent with the result in one write

    @property
    def proposal(self) -> Proposal | None:
        """The proposal of the exchange in progress."""
        return self._proposal

    @property
    def encoding(self) -> Encoding:
        """The encoding the client used for its proposal (refusals use it; results use :attr:`data_encoding`)."""
        return self._encoding

    def accept(self, extensions: Extensions | None = None) -> bytes:
        """Ack the proposal. ``extensions`` (default: the constructor's) applies only to a client that offered."""
        self._require(ConnectionState.PROPOSED)
        proposal = self._proposal
        assert proposal is not None  # set with PROPOSED
        supported = self._supported if extensions is None else extensions
        if self._negotiated is None and proposal.extensions is not None and supported is not None:
            negotiated = supported.negotiate(proposal.extensions)
            self._set_negotiated(negotiated)
            data = self._frame(S_OK(negotiated.to_wire()), self._encoding)
        elif proposal.pipelined:
            # The arguments are already on their way: the ack goes out with the result, in one write.
            self._pending_ack = self._ack_frame()
            data = b""
        else:
            data = self._ack_frame()
        if proposal.action_type is ActionType.RPC:
            self._state = ConnectionState.ACCEPTED
        else:
            self._state = ConnectionState.HANDED_OVER
        self._decoder.max_frame_size = self._max_message_size
        return data

    def refuse(self, error: DErrorReturn) -> bytes:
        """Refuse the proposal with an ``S_ERROR`` (sanitized: no ``CallStack``); then close or go idle."""
        self._require(ConnectionState.PROPOSED)
        data = self._frame(sanitize_result(error), self._encoding)
        pipelined = self._proposal is not None and self._proposal.pipelined
        self._end_exchange()
        if pipelined:
            # The arguments frame behind the proposal is read and dropped, never decoded nor run.
            self._skip = 1
            self._decoder.max_frame_size = self._max_message_size
        return data

    def send_result(self, result: DReturn) -> bytes:
        """Send the handler's result. If it cannot be encoded (:class:`CodecError`) the state is unchanged, so
        the caller can send an error result instead. A pipelined exchange's ack comes first, in the same bytes."""
        if self._state is not ConnectionState.CALLING:
            self._require(ConnectionState.CALLING)
        ack = self._pending_ack
        if self._data_encoding is _JSON:
            # One json.dumps (the codec's cached encoder, limits checked) and one join with the pending ack.
            # Always through sanitize_result: what a peer must never see is decided in one place.
            payload = encode_json(sanitize_result(result), self._limits)
            if len(payload) > MAX_WIRE_FRAME_SIZE:
                encode_frame(payload)  # raises the ValueError naming the limit
            data = b"%b%d:%b" % (ack, len(payload), payload)
        else:
            data = ack + self._frame(sanitize_result(result), self._data_encoding)
        self._pending_ack = b""
        self._end_exchange()
        return data

    def goodbye(self) -> bytes:
        """What to send before closing an IDLE ``pipeline`` connection (idle timeout, shutdown): it tells the
        client that a request it may already have sent was not read, so not executed. ``b""`` otherwise."""
        if self._state is not ConnectionState.IDLE or not self._pipeline:
            return b""
        self._state = ConnectionState.CLOSED
        return self._frame(_GOODBYE, self._encoding)

    def parse_pipelined(self, data: bytes) -> tuple[Proposal, bytes] | None:
        """Fast path for a worker reading the next request itself: when ``data`` (one read) is exactly a marked
        proposal this connection has already parsed (same bytes) followed by one complete arguments frame, all
        JSON, with nothing buffered before it, return that proposal and the arguments payload. Nothing changes
        state here: on ``None`` (anything else) the caller feeds ``data`` to :meth:`receive_data` as usual; on a
        tuple it either calls :meth:`take_pipelined` or feeds ``data`` (e.g. to re-run authorization)."""
        if (
            self._state is not ConnectionState.IDLE
            or not self._pipeline
            or self._skip
            or self._eof
            or self._encoding is not _JSON
            or self._data_encoding is not _JSON
            or not self._decoder.at_boundary
        ):
            return None
        # Two frames, the first ending inside data, the second exactly at its end; a keepalive mark ("dka") is
        # not a header and goes the general way.
        last = self._last_marked
        if last is not None and data.startswith(last[0]):
            # The very frame (header and payload, byte for byte) that the lookup below last accepted: the same
            # span and the same parse, without the header scan, the slice and the hash.
            proposal, end = last[1], len(last[0])
        else:
            first = _frame_span(data, 0, self._max_proposal_size)
            if first is None or first[1] >= len(data):
                return None
            cached = self._proposal_cache.get(data[first[0] : first[1]])
            if cached is None or cached[1] is not _JSON or not cached[0].pipelined:
                return None
            proposal, end = cached[0], first[1]
            self._last_marked = (data[:end], proposal)
        second = _frame_span(data, end, self._max_message_size)
        if second is None or second[1] != len(data):
            return None
        return proposal, data[second[0] :]

    def take_pipelined(self, proposal: Proposal, payload: bytes) -> tuple[list[Any], dict[str, Any]]:
        """Accept ``proposal`` (from :meth:`parse_pipelined`, authorized by the caller) and decode its arguments:
        what ``next_event`` (ProposalReceived), ``accept()`` and ``next_event`` (ArgumentsReceived) would do.
        The ack waits for the result (:meth:`send_result`). A bad arguments frame raises :class:`ProtocolError`
        with DIRAC's refusal queued in ``data_to_send()``, and the machine is in ``ERROR``, as ``next_event``
        leaves it."""
        self._proposal = proposal
        self._pending_ack = _JSON_ACK_FRAME  # parse_pipelined only returns JSON proposals
        try:
            # _on_arguments for the JSON data encoding, without the decode() dispatch and the event object.
            try:
                message = decode_json(payload, self._limits)
            except CodecError as exc:
                raise ProtocolError(f"undecodable message: {exc}") from exc
            value = message.get("Value") if type(message) is dict and message.get("OK") is True else None
            if type(value) is list:  # what arguments_from_wire returns for an S_OK of a list, without the calls
                args: list[Any] = value
                kwargs: dict[str, Any] = {}
            else:
                args, kwargs = arguments_from_wire(message, kwargs_allowed=self._kwargs_allowed)
        except ProtocolError:
            self._queue_error(ARGUMENTS_ERROR, _JSON)
            self._state = ConnectionState.ERROR
            raise
        self._state = ConnectionState.CALLING
        return args, kwargs

    def _ack_frame(self) -> bytes:
        data = self._ack_bytes.get(self._encoding)
        if data is None:
            data = self._ack_bytes[self._encoding] = self._frame(_ACK, self._encoding)
        return data

    def _on_frame(self, payload: bytes) -> Event | Sentinel:
        state = self._state
        if state is ConnectionState.IDLE:
            return self._on_proposal(payload)
        if state is ConnectionState.ACCEPTED:
            return self._on_arguments(payload)
        raise UnexpectedMessageError(f"the client sent a message in state {state.value}")

    def _on_proposal(self, payload: bytes) -> Event:
        cached = self._proposal_cache.get(payload)
        if cached is None:
            cached = self._parse_proposal(payload)
            if len(self._proposal_cache) >= _CACHE_SIZE:
                self._proposal_cache.clear()
                self._last_marked = None  # its proposal object may be parsed anew: let parse_pipelined look it up
            self._proposal_cache[payload] = cached
        proposal, encoding = cached
        if proposal.pipelined and not self._pipeline:
            # Its arguments would be read as the next proposal: a client bug or a hostile peer.
            self._queue_error(INVALID_PROPOSAL, encoding)
            raise ProtocolError("a pipelined proposal on a connection without the 'pipeline' extension")
        if encoding is not self._encoding:
            self._set_encoding(encoding)
        self._proposal = proposal
        self._state = ConnectionState.PROPOSED
        return ProposalReceived(proposal, self._encoding)

    def _parse_proposal(self, payload: bytes) -> tuple[Proposal, Encoding]:
        try:
            message, encoding = self._decode(payload, None)
        except ProtocolError:
            self._queue_error(INVALID_PROPOSAL, Encoding.JSON)
            raise
        if not isinstance(message, dict) or message.get("OK") is not True or "Value" not in message:
            # Not an S_OK (an S_ERROR, a bare list...): DIRAC's answer, minus its server stack.
            self._queue_error(INVALID_PROPOSAL, encoding)
            raise ProtocolError(INVALID_PROPOSAL)
        try:
            return Proposal.from_wire(message["Value"]), encoding
        except ProtocolError as exc:
            self._queue_error(str(exc), encoding)
            raise

    def _on_arguments(self, payload: bytes) -> Event:
        encoding = self.data_encoding
        kwargs_allowed = self._kwargs_allowed
        try:
            message, _ = self._decode(payload, encoding)
            args, kwargs = arguments_from_wire(message, kwargs_allowed=kwargs_allowed)
        except ProtocolError:
            # DIRAC answers a non-list arguments value with this text as the call's result, then closes.
            self._queue_error(ARGUMENTS_ERROR, encoding)
            raise
        self._state = ConnectionState.CALLING
        return ArgumentsReceived(args, kwargs)

    def _queue_error(self, message: str, encoding: Encoding) -> None:
        # DIRAC sends its refusal, then closes; we do the same (through data_to_send) but without a CallStack.
        try:
            self._out += self._frame(S_ERROR(message), encoding)
        except CodecError:  # e.g. a peer string the typed or DEncode encoder rejects: fall back to plain JSON
            self._out += self._frame(S_ERROR(INVALID_PROPOSAL), Encoding.JSON)


def _frame_span(data: bytes, start: int, cap: int) -> tuple[int, int] | None:
    """Where the payload of the frame whose header starts at ``start`` lies in ``data`` (``None``: not a plain
    frame header there, or over ``cap``). The same header rules as FrameDecoder: ASCII digits, the colon within
    MAX_HEADER_SIZE bytes. The end may lie beyond ``data``: the caller compares it with ``len(data)``."""
    colon = data.find(b":", start, start + MAX_HEADER_SIZE)
    digits = data[start:colon]
    if colon <= start or not digits.isdigit():
        return None
    size = int(digits)
    if size > cap:
        return None
    return colon + 1, colon + 1 + size
