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
import functools
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
    TraceContext,
    arguments_from_wire,
    arguments_to_wire,
    check_envelope,
    sanitize_result,
)
from rpcframework.protocol.traced import PLACEHOLDER, TraceTemplates, split_traced, trace_of, with_placeholder
from rpcframework.returnvalues import S_ERROR, S_OK, DErrorReturn, DReturn

__all__ = ["ClientConnection", "ProposalEvents", "ProposalFrames", "ServerConnection"]

_CACHE_SIZE: Final = 32

# Enum members as module constants: EnumType defines __getattr__ (3.11), which makes every ``ConnectionState.X``
# in the per-message code a slow attribute lookup.
_IDLE: Final = ConnectionState.IDLE
_PROPOSED: Final = ConnectionState.PROPOSED
_ACCEPTED: Final = ConnectionState.ACCEPTED
_CALLING: Final = ConnectionState.CALLING
_HANDED_OVER: Final = ConnectionState.HANDED_OVER
_CLOSED: Final = ConnectionState.CLOSED
_ERROR: Final = ConnectionState.ERROR
_ACK: Final = S_OK()
_RPC: Final = ActionType.RPC
_JSON: Final = Encoding.JSON


@functools.lru_cache(maxsize=16)
def _ack_frames(encoding: Encoding, limits: CodecLimits) -> tuple[bytes, bytes]:
    """The constant ack ``S_OK()`` in ``encoding``: its payload and its frame; encoded once per encoding and
    limits (a handful per process), not once per connection."""
    payload = encode(_ACK, encoding, limits)
    return payload, encode_frame(payload)


class ProposalFrames:
    """Encoded proposal frames shared by the connections of one client (same encoding and limits).

    A client that opens a connection per call (DIRAC's way, or no reuse negotiated) proposes the same few
    proposals on every new connection; with a shared table each is encoded once, not once per connection. Keys
    are the proposals as sent (extensions offered or not), so one table serves any number of connections; plain
    dict operations, safe to share between threads. Bounded: cleared when it reaches its size.
    """

    __slots__ = ("encoding", "frames", "limits")

    def __init__(self, encoding: Encoding = _JSON, limits: CodecLimits = DEFAULT_LIMITS) -> None:
        self.encoding = encoding
        self.limits = limits
        self.frames: dict[Proposal, bytes] = {}


class ProposalEvents:
    """Parsed proposals by their bytes, shared by a server's connections (same codec limits).

    A DIRAC client opens a connection per call and sends the same proposal bytes on each: with a shared table the
    server decodes and validates each distinct proposal once, not once per connection. What is shared is only the
    parse of bytes the peer sent (an immutable :class:`ProposalReceived`): who the peer is and what it may do are
    decided per connection, from its verified chain, the registry and the configuration. Bounded: cleared when it
    reaches its size; a traced proposal is kept by the bytes before its trace (``protocol/traced.py``).
    """

    __slots__ = ("events", "limits", "traced")

    def __init__(self, limits: CodecLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.events: dict[bytes, ProposalReceived] = {}
        #: Traced proposals by the bytes before their traceparent: a table of its own, never looked up with a whole
        #: payload (those bytes alone are not a valid proposal, and must be refused as one).
        self.traced: dict[bytes, ProposalReceived] = {}


_GOODBYE: Final = {"OK": False, "Errno": 0, "Message": "the server closed this idle connection", GOODBYE_KEY: True}


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
        frames: ProposalFrames | None = None,
    ) -> None:
        super().__init__(max_message_size=max_message_size, max_proposal_size=max_ack_size, limits=limits)
        if encoding is Encoding.TYPED:
            raise ValueError("the typed encoding is negotiated, not used for proposals")
        self._set_encoding(encoding)
        self._offer = offer
        self._offered = False  # an offer was sent on this connection (only the first proposal carries one)
        # Encoded proposals by the proposal as sent: the client's shared table when it fits this connection.
        shared = frames is not None and frames.encoding is encoding and frames.limits == limits
        self._proposal_bytes: dict[Proposal, bytes] = frames.frames if shared and frames is not None else {}
        self._last_proposal: Proposal | None = None
        self._last_proposal_bytes: bytes | None = None
        self._pipelined = False  # the exchange in progress sent its arguments with the proposal
        # Marked (pipelined) proposal frames, by the caller's unmarked proposal; the last one skips the hash.
        self._call_bytes: dict[Proposal, bytes] = {}
        self._last_call: tuple[Proposal, bytes] | None = None
        self._traced_templates = TraceTemplates()
        # The constant ack S_OK() in our encoding: compared as bytes, never decoded.
        # b'27:{"OK": true, "Value": null}' in JSON
        self._ack_payload, self._ack_wire = _ack_frames(encoding, limits)

    def send_proposal(self, proposal: Proposal) -> bytes:
        """Start an exchange; the first proposal on a connection carries our extensions offer."""
        self._require(_IDLE)
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
        self._state = _PROPOSED
        return data

    def _may_trace(self, proposal: Proposal) -> bool:
        """A trace context goes in our offer (which DIRAC ignores) or to a server that accepted ``trace``."""
        if proposal.extensions is not None:
            return Feature.TRACE in proposal.extensions
        return self._negotiated is not None and Feature.TRACE in self._negotiated

    def send_call(
        self,
        proposal: Proposal,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None = None,
        trace: TraceContext | None = None,
    ) -> bytes:
        """The pipelined form (``pipeline`` negotiated, RPC only): the marked proposal and its arguments, to send
        in one write. The answer is ``CallResult`` (the ack is consumed silently) or ``ProposalRefused`` (the
        server dropped the arguments unread; the connection stays IDLE and usable). ``trace``: the call's trace
        context (sent when ``trace`` was negotiated), given apart from the proposal, which then stays the same
        object call after call: its frame is made from one template (``protocol/traced.py``)."""
        if self._state is not _IDLE or not self._pipeline or proposal.action_type is not _RPC:
            raise LocalProtocolError(f"a pipelined call needs the 'pipeline' extension and IDLE ({self._state.value})")
        if kwargs and not self._kwargs_allowed:
            raise LocalProtocolError("keyword arguments need the 'kwargs' extension, which this server did not accept")
        last = self._last_call
        if trace is not None and self._may_trace(proposal):
            head = self._traced_templates.head(proposal, trace, functools.partial(self._pipelined_head, proposal))
        elif last is not None and last[0] is proposal:
            head = last[1]
        elif proposal.trace_context is not None:  # a traced proposal given whole (the sans-IO API's other form)
            head = self._pipelined_head(proposal, proposal.trace_context if self._may_trace(proposal) else None)
        else:
            found = self._call_bytes.get(proposal)
            if found is None:
                found = self._pipelined_head(proposal, None)
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
        self._state = _PROPOSED
        return data

    def _pipelined_head(self, proposal: Proposal, trace: TraceContext | None) -> bytes:
        """The frame of ``proposal`` marked as pipelined (never with an offer), with ``trace`` if any."""
        marked = dataclasses.replace(proposal, extensions=None, pipelined=True, trace_context=trace)
        return self._frame(S_OK(marked.to_wire()), self._encoding)

    def send_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any] | None = None) -> bytes:
        """Send the call's arguments; keyword arguments need the negotiated ``kwargs`` extension."""
        self._require(_ACCEPTED)
        if kwargs and not self._kwargs_allowed:
            raise LocalProtocolError(
                "keyword arguments need the 'kwargs' extension, which this server did not accept "
                "(a DIRAC service takes positional arguments only)"
            )
        data = self._frame(arguments_to_wire(args, kwargs), self.data_encoding)
        self._state = _CALLING
        return data

    def _on_frame(self, payload: bytes) -> Event | Sentinel | None:
        state = self._state
        if state is _CALLING:
            if self._data_encoding is _JSON:
                try:  # decode() without its dispatch, for the encoding of nearly every call
                    message = decode_json(payload, self._limits)
                except CodecError as exc:
                    raise ProtocolError(f"undecodable message: {exc}") from exc
            else:
                message, _ = self._decode(payload, self._data_encoding)
            if type(message) is not dict or message.get("OK") is not True or "Value" not in message:
                message = check_envelope(message)  # an S_ERROR, or not an envelope (raises)
            self._end_exchange()
            return CallResult(message)
        if state is _PROPOSED:
            if payload == self._ack_payload and (self._negotiated is not None or not self._offered):
                # The constant ack on a connection whose extensions are settled: nothing to decode or negotiate.
                if self._pipelined:  # _accepted()'s first branch: the result follows in the same write
                    self._pipelined = False
                    self._state = _CALLING
                    self._decoder._max_frame_size = self._max_message_size
                    return None
                return self._accepted()
            message, _ = self._decode(payload, self._encoding)
            return self._on_ack(check_envelope(message))
        if state is _IDLE:
            return self._on_idle_frame(payload)
        raise UnexpectedMessageError(f"the server sent a message in state {state.value}")

    def _on_idle_frame(self, payload: bytes) -> Event:
        """A frame between exchanges: only the goodbye of a server closing this ``pipeline`` connection is legal.
        Anything else is an answer nobody asked for; it must never be taken for the next call's answer."""
        if self._pipeline:
            message, _ = self._decode(payload, self._encoding)
            if isinstance(message, dict) and message.get("OK") is False and message.get(GOODBYE_KEY) is True:
                self._state = _CLOSED
                return ConnectionClosed()
        raise UnexpectedMessageError(
            "the server sent a message while the connection was idle (no call was in progress); "
            "the connection is dropped"
        )

    def _accepted(self) -> Event | None:
        assert self._proposal is not None  # set by send_proposal/send_call
        if self._pipelined:
            self._pipelined = False
            self._state = _CALLING  # the result follows the ack in the same write
            self._decoder._max_frame_size = self._max_message_size
            return None
        if self._proposal.action_type is _RPC:
            self._state = _ACCEPTED
        else:
            self._state = _HANDED_OVER
        self._decoder._max_frame_size = self._max_message_size
        return ProposalAccepted(self._negotiated)

    def _on_ack(self, envelope: DReturn) -> Event | None:
        if not envelope["OK"]:
            self._pipelined = False
            if self._pipeline and envelope.get(GOODBYE_KEY) is True:
                # The server closed this idle connection without reading our proposal: nothing ran.
                self._proposal = None
                self._state = _CLOSED
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

    _paused_states = (_PROPOSED, _CALLING, _HANDED_OVER)

    def __init__(
        self,
        *,
        extensions: Extensions | None = None,
        max_message_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_proposal_size: int = PROPOSAL_MAX_FRAME_SIZE,
        limits: CodecLimits = DEFAULT_LIMITS,
        proposals: ProposalEvents | None = None,
    ) -> None:
        super().__init__(max_message_size=max_message_size, max_proposal_size=max_proposal_size, limits=limits)
        self._supported = extensions
        # Parsed proposals by their bytes: the server's shared table when it fits this connection, else our own.
        shared = proposals is not None and proposals.limits == limits
        self._proposal_cache: dict[bytes, ProposalReceived] = proposals.events if shared and proposals else {}
        self._traced_cache: dict[bytes, ProposalReceived] = proposals.traced if shared and proposals else {}
        self._ack_last: tuple[Encoding, bytes] | None = None
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
        if self._state is not _PROPOSED:
            self._require(_PROPOSED)
        proposal = self._proposal
        assert proposal is not None  # set with PROPOSED
        if proposal.pipelined and proposal.action_type is _RPC and self._negotiated is not None:
            # The steady state of a reused connection: the arguments are already on their way, and the ack goes
            # out with the result, in one write (what the general branches below do for this case).
            self._pending_ack = self._ack_frame()
            self._state = _ACCEPTED
            self._decoder._max_frame_size = self._max_message_size
            return b""
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
            self._state = _ACCEPTED
        else:
            self._state = _HANDED_OVER
        self._decoder._max_frame_size = self._max_message_size
        return data

    def refuse(self, error: DErrorReturn) -> bytes:
        """Refuse the proposal with an ``S_ERROR`` (sanitized: no ``CallStack``); then close or go idle."""
        self._require(_PROPOSED)
        data = self._frame(sanitize_result(error), self._encoding)
        pipelined = self._proposal is not None and self._proposal.pipelined
        self._end_exchange()
        if pipelined:
            # The arguments frame behind the proposal is read and dropped, never decoded nor run.
            self._skip = 1
            self._decoder._max_frame_size = self._max_message_size
        return data

    def send_result(self, result: DReturn) -> bytes:
        """Send the handler's result. If it cannot be encoded (:class:`CodecError`) the state is unchanged, so
        the caller can send an error result instead. A pipelined exchange's ack comes first, in the same bytes."""
        if self._state is not _CALLING:
            self._require(_CALLING)
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
        if self._state is not _IDLE or not self._pipeline:
            return b""
        self._state = _CLOSED
        return self._frame(_GOODBYE, self._encoding)

    def _ack_frame(self) -> bytes:
        # One encoding per connection in practice: remember the last one (an Enum's hash is Python code in 3.11).
        last = self._ack_last
        if last is not None and last[0] is self._encoding:
            return last[1]
        data = self._frame(_ACK, self._encoding)
        self._ack_last = (self._encoding, data)
        return data

    def _on_frame(self, payload: bytes) -> Event | Sentinel:
        state = self._state
        if state is _IDLE:
            # A repeated proposal in the encoding of the last one (the steady state): _on_proposal's outcome for
            # it, without the call.
            event = self._proposal_cache.get(payload) or self._traced(payload)
            if (
                event is not None
                and event.encoding is self._encoding
                and (self._pipeline or not event.proposal.pipelined)
            ):
                self._proposal = event.proposal
                self._state = _PROPOSED
                return event
            return self._on_proposal(payload)
        if state is _ACCEPTED:
            return self._on_arguments(payload)
        raise UnexpectedMessageError(f"the client sent a message in state {state.value}")

    def _on_proposal(self, payload: bytes) -> Event:
        # The event itself is cached by the proposal's bytes: immutable, so a repeated proposal (the steady state
        # of a reused connection) costs one dict lookup and hands out the same Proposal object, which the
        # server's authorization cache is keyed by.
        event = self._proposal_cache.get(payload) or self._traced(payload) or self._parsed(payload)
        proposal = event.proposal
        if proposal.pipelined and not self._pipeline:
            # Its arguments would be read as the next proposal: a client bug or a hostile peer.
            self._queue_error(INVALID_PROPOSAL, event.encoding)
            raise ProtocolError("a pipelined proposal on a connection without the 'pipeline' extension")
        if event.encoding is not self._encoding:
            self._set_encoding(event.encoding)
        self._proposal = proposal
        self._state = _PROPOSED
        return event

    def _traced(self, payload: bytes) -> ProposalReceived | None:
        """A traced pipelined proposal whose untraced form is cached (``protocol/traced.py``), with its trace."""
        split = split_traced(payload)
        base = None if split is None else self._traced_cache.get(split[0])
        if base is None or split is None:
            return None
        # Only for a valid traceparent (hex digits and dashes: no quote or backslash that could change the parse);
        # anything else is parsed in full.
        trace = trace_of(split[1])
        return None if trace is None else ProposalReceived(base.proposal, base.encoding, trace)

    def _parsed(self, payload: bytes) -> ProposalReceived:
        """Parse a proposal; its trace context goes in the event, not in the proposal (the same object, cached by
        its bytes, or by the bytes before the trace when they take the traced form of ``protocol/traced.py``)."""
        proposal, encoding = self._parse_proposal(payload)
        trace = proposal.trace_context
        key, cache = payload, self._proposal_cache
        if trace is not None:
            proposal = dataclasses.replace(proposal, trace_context=None)
            split = split_traced(payload)
            if split is None or trace.tracestate is not None or not self._trace_cut_out(split[0], proposal):
                return ProposalReceived(proposal, encoding, trace)  # another form: used once, not kept
            key, cache = split[0], self._traced_cache
        event = ProposalReceived(proposal, encoding)
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        cache[key] = event
        return event if trace is None else ProposalReceived(proposal, encoding, trace)

    def _trace_cut_out(self, key: bytes, proposal: Proposal) -> bool:
        """Whether a payload ``key`` + traceparent + tail carries its trace in those characters, and nothing else
        depends on them: ``key`` with a placeholder there parses to the same proposal, with the placeholder as
        its trace (a decoy ``trace`` object elsewhere, holding the same traceparent as the real one, fails this)."""
        try:
            message, _ = self._decode(with_placeholder(key), None)
            value = message["Value"] if isinstance(message, dict) and message.get("OK") is True else None
            probe = Proposal.from_wire(value)
        except (ProtocolError, KeyError):
            return False
        return probe.trace_context == PLACEHOLDER and dataclasses.replace(probe, trace_context=None) == proposal

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
        encoding = self._data_encoding
        try:
            if encoding is _JSON:
                # decode() without its dispatch, for the encoding of nearly every call
                try:
                    message = decode_json(payload, self._limits)
                except CodecError as exc:
                    raise ProtocolError(f"undecodable message: {exc}") from exc
            else:
                message, _ = self._decode(payload, encoding)
            value = message.get("Value") if type(message) is dict and message.get("OK") is True else None
            if type(value) is list:  # what arguments_from_wire returns for an S_OK of a list, without the calls
                event = ArgumentsReceived(value, {})
            else:
                event = ArgumentsReceived(*arguments_from_wire(message, kwargs_allowed=self._kwargs_allowed))
        except ProtocolError:
            # DIRAC answers a non-list arguments value with this text as the call's result, then closes.
            self._queue_error(ARGUMENTS_ERROR, encoding)
            raise
        self._state = _CALLING
        return event

    def _queue_error(self, message: str, encoding: Encoding) -> None:
        # DIRAC sends its refusal, then closes; we do the same (through data_to_send) but without a CallStack.
        try:
            self._out += self._frame(S_ERROR(message), encoding)
        except CodecError:  # e.g. a peer string the typed or DEncode encoder rejects: fall back to plain JSON
            self._out += self._frame(S_ERROR(INVALID_PROPOSAL), Encoding.JSON)
