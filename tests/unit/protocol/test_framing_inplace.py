"""FrameDecoder.payload_buffer: a large payload read in place (recv_into) gives the same frames as feed(), for any
mix of the two reads and any split, and a header alone never makes the decoder allocate more than the caller allows."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpcframework.errors import ConnectionClosedError, FrameTooLargeError
from rpcframework.protocol.framing import Frame, FrameDecoder, encode_frame, encode_keepalive_frame

_LARGE = 64 * 1024
_LIMIT = 300_000


def _read(stream: bytes, seed: int, limit: int = _LIMIT) -> tuple[list[Frame], int]:
    """Consume ``stream`` like a transfer reader: into the payload buffer when offered (sometimes not: a reader may
    always feed), else through feed(); random read sizes. Returns the frames and how many in-place reads ran."""
    rng = random.Random(seed)
    decoder = FrameDecoder(1 << 20)
    frames: list[Frame] = []
    pos = inplace_reads = 0
    for _ in range(len(stream) + 10):  # each pass consumes at least one byte or takes a frame
        while (frame := decoder.next_frame()) is not None:
            frames.append(frame)
        if pos == len(stream):
            break
        size = rng.choice((1, 7, 1000, 20_000, 70_000, 1 << 20))
        view = decoder.payload_buffer(limit) if rng.random() < 0.8 else None
        if view is not None:
            with view:
                size = min(size, len(view), len(stream) - pos)
                view[:size] = stream[pos : pos + size]
            decoder.payload_received(size)
            inplace_reads += 1
        else:
            decoder.feed(stream[pos : pos + size])
            size = min(size, len(stream) - pos)
        pos += size
    decoder.eof()
    return frames, inplace_reads


_payloads = st.lists(
    st.tuples(
        st.one_of(st.binary(max_size=50), st.integers(_LARGE - 2, _LARGE + 3), st.integers(100_000, 400_000)),
        st.booleans(),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(specs=_payloads, seed=st.integers(0, 2**32))
def test_in_place_reads_give_the_frames_feed_gives(specs: list[tuple[bytes | int, bool]], seed: int) -> None:
    rng = random.Random(seed)
    frames = []
    for spec, keepalive in specs:
        payload = spec if isinstance(spec, bytes) else rng.randbytes(spec)
        frames.append(Frame(payload, keepalive and len(payload) < 1000))
    stream = b"".join(
        encode_keepalive_frame(f.payload) if f.keepalive else encode_frame(bytes(f.payload)) for f in frames
    )
    got, _ = _read(stream, seed)
    assert got == frames
    assert [f.keepalive for f in got] == [f.keepalive for f in frames]


def test_a_large_payload_is_read_in_place_and_handed_back_without_a_copy() -> None:
    payload = random.Random(1).randbytes(200_000)
    decoder = FrameDecoder(1 << 20)
    decoder.feed(encode_frame(payload)[:100])  # the header and the first bytes
    view = decoder.payload_buffer(_LIMIT)
    assert view is not None and len(view) == 200_000 - 100 + len(b"200000:")
    start = len(encode_frame(payload)) - len(view)
    view[:] = encode_frame(payload)[start:]
    decoder.payload_received(len(view))
    assert decoder.missing == 0 and decoder.payload_buffer(_LIMIT) is None
    frame = decoder.next_frame()
    assert frame is not None and frame.payload == payload and type(frame.payload) is bytearray
    assert decoder.at_boundary and decoder.buffered == 0


def test_bytes_after_the_payload_go_to_the_next_frame() -> None:
    payload = bytes(100_000)
    decoder = FrameDecoder(1 << 20)
    decoder.feed(b"100000:")
    view = decoder.payload_buffer(_LIMIT)
    assert view is not None
    view[:50_000] = payload[:50_000]
    decoder.payload_received(50_000)
    decoder.feed(payload[50_000:] + encode_frame(b"next") + b"4:ta")  # the rest, a frame, half of another
    assert decoder.next_frame() == Frame(payload)
    assert decoder.next_frame() == Frame(b"next")
    assert decoder.next_frame() is None and decoder.missing == 2
    decoder.feed(b"il")
    assert decoder.next_frame() == Frame(b"tail")


@pytest.mark.parametrize("declared", [50_000_000, _LIMIT + 1])
def test_a_header_over_the_limit_allocates_nothing(declared: int) -> None:
    decoder = FrameDecoder(64 * 1024 * 1024)
    decoder.feed(b"%d:x" % declared)
    assert decoder.payload_buffer(_LIMIT) is None  # the caller feeds instead: the pieces kept are what came
    assert decoder.buffered == 1


def test_no_buffer_for_small_or_keepalive_frames_or_without_a_header() -> None:
    decoder = FrameDecoder(1 << 20)
    assert decoder.payload_buffer(_LIMIT) is None
    decoder.feed(b"1000:")
    assert decoder.payload_buffer(_LIMIT) is None
    decoder = FrameDecoder(1 << 20)
    decoder.feed(b"dka100000:")
    assert decoder.payload_buffer(_LIMIT) is None


def test_payload_received_refuses_more_than_the_buffer() -> None:
    decoder = FrameDecoder(1 << 20)
    with pytest.raises(ValueError, match="do not fit"):
        decoder.payload_received(1)
    decoder.feed(b"70000:")
    assert decoder.payload_buffer(_LIMIT) is not None
    with pytest.raises(ValueError, match="do not fit"):
        decoder.payload_received(70_001)


def test_eof_in_the_middle_of_an_in_place_payload_is_a_cut() -> None:
    decoder = FrameDecoder(1 << 20)
    decoder.feed(b"70000:")
    view = decoder.payload_buffer(_LIMIT)
    assert view is not None
    decoder.payload_received(10)
    assert not decoder.at_boundary and decoder.buffered == 10 and decoder.missing == 69_990
    with pytest.raises(ConnectionClosedError, match="middle of a frame"):
        decoder.eof()


def test_the_frame_cap_still_applies_before_any_buffer() -> None:
    decoder = FrameDecoder(100_000)
    with pytest.raises(FrameTooLargeError):
        decoder.feed(b"200000:")
    with pytest.raises(FrameTooLargeError):
        decoder.payload_buffer(_LIMIT)


def test_next_payload_copies_an_in_place_payload_to_bytes() -> None:
    decoder = FrameDecoder(1 << 20)
    decoder.feed(b"70000:")
    view = decoder.payload_buffer(_LIMIT)
    assert view is not None
    view[:] = b"a" * 70_000
    decoder.payload_received(70_000)
    payload = decoder.next_payload()
    assert payload == b"a" * 70_000 and type(payload) is bytes


def test_the_reader_above_does_read_in_place() -> None:
    payloads = [random.Random(seed).randbytes(150_000) for seed in range(3)]
    stream = b"".join(encode_frame(p) for p in payloads)
    frames, inplace_reads = _read(stream, seed=5)
    assert [f.payload for f in frames] == payloads and inplace_reads >= 3
    assert any(type(f.payload) is bytearray for f in frames)  # a frame fed whole by one read comes as bytes
