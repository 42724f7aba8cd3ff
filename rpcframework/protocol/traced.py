"""Traced pipelined proposals without a new encoding or parse per call.

A traced client (the ``trace`` extension) sends a new W3C ``traceparent`` in every proposal, so the proposal bytes
differ from one call to the next, although nothing else in them does. In JSON our client's pipelined proposal then
ends with the trace, always in the same form::

    ..., {"pipeline": true, "trace": {"traceparent": "00-<32 hex>-<16 hex>-<2 hex>"}}]}

* the client (:class:`TraceTemplates`) encodes that proposal once with a placeholder and puts each call's
  ``traceparent`` (55 characters) in its place: the frame's length does not change;
* the server (:func:`split_traced`) recognises the same ending and takes the bytes before the ``traceparent`` as the
  key of its proposal cache: the proposal without the trace is parsed once and is the same object call after call.

Why the server's shortcut is sound: two payloads that differ only in those 55 characters, none of them a quote or a
backslash, are the same JSON text but for the content of one string, so they parse to the same value but for that
string. Which string that is, the ending alone does not say (attack run 5: a decoy ``trace`` object in a sixth
element, an extra key or a key ending in ``\"trace`` can hold it, while the real trace is elsewhere). So the server
keeps a key only after checking it: the key with a placeholder in those characters must parse to the same
proposal with the placeholder as its trace; then the characters are the trace, and nothing else depends on them.
A later payload with the key takes the shortcut only when its 55 characters are a valid ``traceparent`` (hex digits
and dashes). The keys live in a table of their own (:attr:`ProposalEvents.traced`): the bytes before a traceparent
are not a valid proposal, and sent as one they must be refused, not found (attack run 5: they were found, which
told another user whether a proposal was in the shared table). Anything else (an invalid traceparent, a
``tracestate``, another encoding, a DIRAC client) takes the ordinary path. The client pastes only a checked
``traceparent`` into its template; anything else is encoded (escaped) in full.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from rpcframework.protocol.messages import TraceContext, is_traceparent

__all__ = ["PLACEHOLDER", "TRACEPARENT_SIZE", "TraceTemplates", "split_traced", "trace_of", "with_placeholder"]

#: Length of a version-00 ``traceparent``.
TRACEPARENT_SIZE: Final = 55
#: What precedes the traceparent, and what ends the payload after it (the traced pipelined JSON proposal).
_HEAD: Final = b'"trace": {"traceparent": "'
_TAIL: Final = b'"}}]}'
_TAIL_SIZE: Final = len(_TAIL)
_CUT: Final = TRACEPARENT_SIZE + _TAIL_SIZE
#: Stands for the traceparent while a template is encoded (valid, so the encoder keeps it).
_PLACEHOLDER: Final = "00-" + "1" * 32 + "-" + "1" * 16 + "-01"
#: The trace context of a template, and of the server's check of a key (:func:`with_placeholder`).
PLACEHOLDER: Final = TraceContext(_PLACEHOLDER)


def with_placeholder(key: bytes) -> bytes:
    """The payload of the form :func:`split_traced` cuts, with the placeholder as its traceparent."""
    return key + _PLACEHOLDER.encode("ascii") + _TAIL


def split_traced(payload: bytes) -> tuple[bytes, str] | None:
    """``(key, traceparent text)`` when ``payload`` ends like a traced pipelined JSON proposal, else ``None``. The
    key is everything before the traceparent; the text is not validated here."""
    if len(payload) <= _CUT + len(_HEAD) or not payload.endswith(_TAIL):
        return None
    key = payload[:-_CUT]
    if not key.endswith(_HEAD):
        return None
    return key, payload[-_CUT:-_TAIL_SIZE].decode("latin-1")


def trace_of(text: str) -> TraceContext | None:
    """The trace context for a traceparent cut out by :func:`split_traced`; ``None`` if it is not a valid one (the
    server then parses the payload in full: the shortcut holds only for hex digits and dashes)."""
    return TraceContext(text) if is_traceparent(text) else None


class TraceTemplates:
    """Client: a traced pipelined proposal's frame, made from one template per proposal (the last one used: a
    client calls the same method again and again far more often than it alternates)."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[object, bytes | None] | None = None  # (proposal, frame up to the traceparent, if any)

    def head(self, proposal: object, trace: TraceContext, encode: Callable[[TraceContext], bytes]) -> bytes:
        """The frame of ``proposal`` with ``trace``; ``encode(trace)`` makes it the long way (once with a
        placeholder, for the template; every time when the proposal has no template form, or for a tracestate)."""
        last = self._last
        if last is None or last[0] is not proposal:
            frame = encode(PLACEHOLDER)
            suffix = _PLACEHOLDER.encode("ascii") + _TAIL
            cut = frame[: -len(suffix)] if frame.endswith(suffix) else b""
            last = self._last = (proposal, cut if cut.endswith(_HEAD) else None)
        template = last[1]
        if template is None or trace.tracestate is not None or not is_traceparent(trace.traceparent):
            return encode(trace)  # an unchecked traceparent is encoded (escaped), never pasted in
        return template + trace.traceparent.encode("ascii") + _TAIL
