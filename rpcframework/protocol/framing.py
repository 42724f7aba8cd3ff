"""DISET framing: ``<ASCII decimal length>:<payload>``, optionally preceded by the keepalive mark ``dka``.

This module is sans-IO: :class:`FrameDecoder` is fed whatever bytes a transport read, in chunks of any size, and
hands back complete :class:`Frame` objects. :func:`encode_frame` is the write side.

Rules enforced on the read side (DIRAC's reader is looser; see ``docs/protocol.md``):

* the colon must appear within the first 10 bytes of a header (so at most 9 digits), else :class:`FrameError`;
* the length is ASCII digits only: no sign, no spaces, not empty. Garbage is rejected as soon as it is seen,
  not after 10 bytes have been collected;
* a declared length over ``max_frame_size`` raises :class:`FrameTooLargeError` as soon as the header is complete,
  before a single payload byte is kept, so a hostile peer cannot make us buffer its claim;
* ``dka`` directly before a header marks that frame as a keepalive (the mark may be split across chunks).

Buffering is linear: bytes are appended to one ``bytearray`` and consumed by advancing an offset; the consumed
prefix is dropped only when it is at least half the buffer, so every byte is copied O(1) times however the
input is split (a naive ``buf = buf[n:]`` per frame is quadratic when many small frames arrive in one chunk).
The payload of a large frame (file chunks, big results) still arriving is kept as the list of pieces read and
joined once when complete: one copy per byte instead of an append, the buffer's regrowth and a slice. A reader
that can read into memory (a transfer receiving file chunks) asks :meth:`FrameDecoder.payload_buffer` instead:
the payload's own ``bytearray``, allocated once the header is parsed, into which the transport decrypts directly,
handed back by :meth:`FrameDecoder.next_frame` without a copy.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from rpcframework.errors import ConnectionClosedError, FrameError, FrameTooLargeError

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "KEEPALIVE_MARK",
    "MAX_HEADER_SIZE",
    "MAX_WIRE_FRAME_SIZE",
    "PROPOSAL_MAX_FRAME_SIZE",
    "Frame",
    "FrameDecoder",
    "encode_frame",
    "encode_keepalive_frame",
]

#: Marks the next frame as a keepalive ping or pong.
KEEPALIVE_MARK: Final = b"dka"
#: DIRAC looks for the colon in the first 10 bytes, so a header is at most 9 digits plus the colon.
MAX_HEADER_SIZE: Final = 10
#: The largest length a 9-digit header can declare.
MAX_WIRE_FRAME_SIZE: Final = 999_999_999
#: The cap while a proposal is expected: a proposal is a few hundred bytes.
PROPOSAL_MAX_FRAME_SIZE: Final = 64 * 1024
#: The default cap for argument and result frames (configurable per connection).
DEFAULT_MAX_FRAME_SIZE: Final = 64 * 1024 * 1024

_COLON: Final = 0x3A
#: Payloads at least this large are collected as pieces while they arrive (see the module docstring).
_LARGE_FRAME: Final = 64 * 1024
_MARK_LEN: Final = len(KEEPALIVE_MARK)


class Frame(NamedTuple):
    """One complete frame: its payload and whether it came after a ``dka`` mark (a named tuple: immutable, and
    built at a third of a frozen dataclass's cost, two per call on each side)."""

    payload: bytes | bytearray  # a bytearray only for a payload read through FrameDecoder.payload_buffer
    keepalive: bool = False


def encode_frame(payload: bytes) -> bytes:
    """Return ``b"<len>:" + payload`` in one allocation."""
    size = len(payload)
    if size > MAX_WIRE_FRAME_SIZE:
        # A 10-digit header would never be parsed by a DIRAC peer (colon outside the first 10 bytes).
        raise ValueError(f"payload of {size} bytes exceeds the DISET maximum of {MAX_WIRE_FRAME_SIZE}")
    return b"%d:%b" % (size, payload)


def encode_keepalive_frame(payload: bytes) -> bytes:
    """Return a keepalive frame: ``b"dka"`` followed by a normal frame."""
    return KEEPALIVE_MARK + encode_frame(payload)


class FrameDecoder:
    """Incremental frame parser: :meth:`feed` bytes, then call :meth:`next_frame` until it returns ``None``.

    ``max_frame_size`` may be changed between frames (a small cap for the proposal, a larger one for arguments);
    a change applies to the next header parsed. After a :class:`FrameError` the decoder stays failed: every
    later call raises the same error, because the byte stream can no longer be trusted.
    """

    __slots__ = (
        "_buf",
        "_error",
        "_filled",
        "_inplace",
        "_keepalive",
        "_max_frame_size",
        "_need",
        "_parts",
        "_parts_len",
        "_pos",
        "last_keepalive",
    )

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self._buf = bytearray()
        self._pos = 0  # start of unconsumed data in _buf
        self._need = -1  # payload length of the parsed header, or -1 while no header is parsed
        self._keepalive = False  # the pending header (or mark) was preceded by "dka"
        self._error: FrameError | None = None
        # A large payload still arriving: the pieces so far (the buffer then holds only bytes after the frame).
        self._parts: list[bytes] = []
        self._parts_len = 0
        # A large payload read in place (payload_buffer): its buffer and how much of it holds data.
        self._inplace: bytearray | None = None
        self._filled = 0
        self._max_frame_size = 0
        self.max_frame_size = max_frame_size
        #: Whether the payload :meth:`next_payload` returned last came after a ``dka`` mark.
        self.last_keepalive = False

    @property
    def max_frame_size(self) -> int:
        """The largest payload accepted; checked as soon as a header is complete."""
        return self._max_frame_size

    @max_frame_size.setter
    def max_frame_size(self, value: int) -> None:
        if not 0 <= value <= MAX_WIRE_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be within 0..{MAX_WIRE_FRAME_SIZE}, got {value}")
        self._max_frame_size = value

    @property
    def at_boundary(self) -> bool:
        """True when no partial frame (nor a partial ``dka`` mark) is buffered."""
        return self._pos == len(self._buf) and self._need < 0 and not self._keepalive and self._inplace is None

    @property
    def in_keepalive(self) -> bool:
        """True while the frame being received came after a ``dka`` mark: a keepalive, not a message."""
        return self._keepalive

    @property
    def buffered(self) -> int:
        """Number of unconsumed bytes held (a partial frame, or complete frames not yet taken)."""
        return len(self._buf) - self._pos + self._parts_len + self._filled

    @property
    def missing(self) -> int:
        """Payload bytes still to come for the frame whose header is parsed (0: none parsed, or complete)."""
        need = self._need
        if self._inplace is not None:
            return need - self._filled
        if self._parts:
            return max(need - self._parts_len, 0)
        return max(need - (len(self._buf) - self._pos), 0) if need > 0 else 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes read from the peer. Raises :class:`FrameError` early when a header is already invalid."""
        if self._error is not None:
            raise self._error
        if self._inplace is not None:
            data = self._fill_inplace(data)
            if not data:
                return
        elif self._parts:
            data = self._add_part(data)
            if not data:
                return
        if self._pos and self._pos == len(self._buf):
            # Everything was consumed: start over instead of growing (no copy needed).
            self._buf.clear()
            self._pos = 0
        self._buf += data
        if self._need < 0:
            # Parse the header now, so an oversized or garbage header fails before we keep its payload around.
            self._parse_header()
        if self._need >= _LARGE_FRAME:  # tested here: small frames (every RPC) pay no call
            self._collect_large()

    def _add_part(self, data: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
        """Add to the large payload being collected; return what comes after it (the next frames' bytes)."""
        missing = self._need - self._parts_len
        if len(data) <= missing:
            self._parts.append(data if type(data) is bytes else bytes(data))
            self._parts_len += len(data)
            return b""
        with memoryview(data) as view:
            self._parts.append(bytes(view[:missing]))
        self._parts_len += missing
        return data[missing:]

    def payload_buffer(self, limit: int) -> memoryview | None:
        """Where the rest of the large payload being received may be read to directly (``recv_into``), then
        reported with :meth:`payload_received`; ``None`` when no such payload is pending: no header parsed, a small
        or complete frame, a keepalive, or a declared size over ``limit`` (the buffer is allocated at once, so the
        caller bounds what a header alone can make us allocate)."""
        if self._error is not None:
            raise self._error
        need = self._need
        if need < _LARGE_FRAME or need > limit or self._keepalive:
            return None
        inplace = self._inplace
        if inplace is None:
            held = self._parts_len if self._parts else len(self._buf) - self._pos
            if held >= need:
                return None
            inplace = self._inplace = bytearray(need)
            self._filled = 0
            for part in self._parts or (self._buf[self._pos :],):
                self._fill_inplace(part)
            self._parts = []
            self._parts_len = 0
            self._buf.clear()
            self._pos = 0
        if self._filled >= need:
            return None
        return memoryview(inplace)[self._filled :]

    def payload_received(self, size: int) -> None:
        """``size`` bytes were written at the start of the view :meth:`payload_buffer` returned."""
        if self._inplace is None or not 0 <= size <= self._need - self._filled:
            raise ValueError(f"{size} bytes do not fit the payload buffer")
        self._filled += size

    def _fill_inplace(self, data: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
        """Copy into the in-place payload; return what comes after it (the next frames' bytes)."""
        inplace = self._inplace
        assert inplace is not None
        filled = self._filled
        take = min(len(data), self._need - filled)
        inplace[filled : filled + take] = data if take == len(data) else memoryview(data)[:take]
        self._filled = filled + take
        return data[take:] if take < len(data) else b""

    def _collect_large(self) -> None:
        """Switch to collecting pieces when the parsed header announces a large payload that has not all come."""
        need = self._need
        if need < _LARGE_FRAME or self._parts or self._inplace is not None:
            return
        pos = self._pos
        buf = self._buf
        if len(buf) - pos >= need:
            return
        with memoryview(buf) as view:
            self._parts.append(bytes(view[pos:]))
        self._parts_len = len(buf) - pos
        buf.clear()
        self._pos = 0

    def next_frame(self) -> Frame | None:
        """Return the next complete frame, or ``None`` if more bytes are needed. A payload read in place
        (:meth:`payload_buffer`) comes as its ``bytearray``, not copied."""
        payload = self._take_inplace() if self._inplace is not None else self.next_payload()
        return None if payload is None else Frame(payload, self.last_keepalive)

    def next_payload(self) -> bytes | None:
        """:meth:`next_frame` without the :class:`Frame`: the payload, with whether it came after a ``dka`` mark in
        :attr:`last_keepalive` (the protocol machines' per-message loop; one object fewer per frame)."""
        if self._error is not None:
            raise self._error
        if self._parts or self._inplace is not None:
            return self._take_collected()
        need = self._need
        if need < 0:
            if not self._parse_header():
                return None
            need = self._need
        start = self._pos
        end = start + need
        buf = self._buf
        size = len(buf)
        if size < end:
            self._collect_large()
            return None
        if need < _LARGE_FRAME:
            payload = bytes(buf[start:end])  # two small copies cost less than a memoryview's set-up and release
        else:
            with memoryview(buf) as view:
                payload = bytes(view[start:end])
        self.last_keepalive = self._keepalive
        self._need = -1
        self._keepalive = False
        if end == size:
            buf.clear()
            self._pos = 0
            return payload
        self._pos = end
        if end > 65536 and end * 2 > size:
            # Drop the consumed prefix only when it dominates, keeping the total copying linear.
            del buf[:end]
            self._pos = 0
        return payload

    def _take_collected(self) -> bytes | None:
        """The large payload collected in pieces (or read in place, then copied: only a caller that read in place
        takes it through :meth:`next_frame` without the copy), or ``None`` while incomplete."""
        if self._inplace is not None:
            taken = self._take_inplace()
            return None if taken is None else bytes(taken)
        return self._take_parts() if self._parts_len >= self._need else None

    def _take_inplace(self) -> bytearray | None:
        payload = self._inplace
        if payload is None or self._filled < self._need:
            return None
        self.last_keepalive = self._keepalive
        self._inplace = None
        self._filled = 0
        self._need = -1
        self._keepalive = False
        return payload

    def _take_parts(self) -> bytes:
        parts = self._parts
        payload = parts[0] if len(parts) == 1 else b"".join(parts)
        self.last_keepalive = self._keepalive
        self._parts = []
        self._parts_len = 0
        self._need = -1
        self._keepalive = False
        return payload

    def discard(self) -> None:
        """The connection is over: free what is held (a partial frame, a payload being collected or read in
        place) now, whoever still refers to this decoder (a worker's last task, a traceback)."""
        self._free()
        self._need = -1
        self._keepalive = False

    def eof(self) -> None:
        """The peer closed its side: raise :class:`ConnectionClosedError` if it did so mid-frame."""
        if self._error is not None:
            raise self._error
        if not self.at_boundary:
            raise ConnectionClosedError(f"connection closed in the middle of a frame ({self.buffered} bytes pending)")

    def _fail(self, error: FrameError) -> FrameError:
        self._error = error
        self._free()  # the peer's bytes at once: nothing more will be parsed
        return error

    def _free(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._parts = []
        self._parts_len = 0
        self._inplace = None
        self._filled = 0

    def _parse_header(self) -> bool:
        """Parse the mark and header at ``_pos``; True when a header is complete (``_need`` set)."""
        buf = self._buf
        pos = self._pos
        available = len(buf) - pos
        if available == 0:
            return False
        if not self._keepalive and buf[pos] == 0x64:  # "d": only a keepalive mark may start with it
            if available < _MARK_LEN:
                if KEEPALIVE_MARK.startswith(buf[pos:]):
                    return False
                raise self._fail(FrameError("invalid keepalive mark"))
            if buf[pos : pos + _MARK_LEN] != KEEPALIVE_MARK:
                raise self._fail(FrameError("invalid keepalive mark"))
            self._keepalive = True
            pos += _MARK_LEN
            self._pos = pos
            available -= _MARK_LEN
            if available == 0:
                return False
        colon = buf.find(_COLON, pos, pos + MAX_HEADER_SIZE)
        if colon < 0:
            digits = buf[pos : pos + MAX_HEADER_SIZE]
            if available >= MAX_HEADER_SIZE:
                raise self._fail(FrameError(f"no frame length header in the first {MAX_HEADER_SIZE} bytes"))
            if not digits.isdigit():
                raise self._fail(FrameError("frame length is not a decimal number"))
            return False
        digits = buf[pos:colon]
        # bytes.isdigit() is ASCII-only and rejects "", "+1", "-1", " 1" and "1 ".
        if not digits.isdigit():
            raise self._fail(FrameError("frame length is not a decimal number"))
        size = int(digits)
        if size > self._max_frame_size:
            raise self._fail(
                FrameTooLargeError(f"frame of {size} bytes exceeds the limit of {self._max_frame_size} bytes")
            )
        self._need = size
        self._pos = colon + 1
        return True
