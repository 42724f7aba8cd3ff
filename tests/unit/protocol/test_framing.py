"""FrameDecoder / encode_frame: splits, limits before buffering, malformed headers, keepalive marks, EOF."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpcframework.errors import ConnectionClosedError, FrameError, FrameTooLargeError
from rpcframework.protocol.framing import (
    KEEPALIVE_MARK,
    Frame,
    FrameDecoder,
    encode_frame,
    encode_keepalive_frame,
)


def decode_all(chunks, max_frame_size=1 << 20):
    decoder = FrameDecoder(max_frame_size)
    frames = []
    for chunk in chunks:
        decoder.feed(chunk)
        while (frame := decoder.next_frame()) is not None:
            frames.append(frame)
    decoder.eof()
    return frames


def test_encode_frame():
    assert encode_frame(b"") == b"0:"
    assert encode_frame(b'{"OK": true, "Value": null}') == b'27:{"OK": true, "Value": null}'
    assert encode_keepalive_frame(b"abc") == b"dka3:abc"
    assert KEEPALIVE_MARK == b"dka"


def test_several_frames_in_one_chunk_and_empty_payload():
    data = encode_frame(b"a") + encode_frame(b"") + encode_keepalive_frame(b"ping") + encode_frame(b"bc")
    assert decode_all([data]) == [Frame(b"a"), Frame(b""), Frame(b"ping", True), Frame(b"bc")]


def test_at_boundary_tracks_partial_frames_and_marks():
    decoder = FrameDecoder()
    assert decoder.at_boundary
    decoder.feed(b"d")
    assert not decoder.at_boundary
    decoder.feed(b"ka")
    assert not decoder.at_boundary and decoder.next_frame() is None
    decoder.feed(b"3:ab")
    assert decoder.next_frame() is None and not decoder.at_boundary
    decoder.feed(b"c")
    assert decoder.next_frame() == Frame(b"abc", True)
    assert decoder.at_boundary and decoder.buffered == 0


@pytest.mark.parametrize("split", range(1, 9))
def test_keepalive_mark_split_anywhere(split):
    data = encode_keepalive_frame(b"hello")
    assert decode_all([data[:split], data[split:]]) == [Frame(b"hello", True)]


@given(
    frames=st.lists(st.tuples(st.binary(max_size=300), st.booleans()), max_size=20),
    data=st.data(),
)
def test_decode_of_encode_is_identity_for_any_split(frames, data):
    stream = b"".join(encode_keepalive_frame(p) if ka else encode_frame(p) for p, ka in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert decode_all(chunks) == [Frame(p, ka) for p, ka in frames]


@pytest.mark.parametrize(
    "data",
    [
        b"abcdefghijklmnopqrstuvwxyz",  # DIRAC waits forever on this; we fail at the first byte
        b"1234567890123:x",  # colon outside the first 10 bytes
        b"1234567890",  # ten digits, no colon yet: can never become valid
        b":abc",  # empty length
        b"+5:hello",
        b"-5:hello",
        b" 5:hello",
        b"5 :hello",
        b"0x5:hello",
        b"\xd9\xa3:abc",  # an Arabic-Indic digit is not an ASCII digit
        b"5\x00:hello",
        b"dkx5:hello",
        b"dx",
        b"dka-1:",
        b"2:ab{",  # garbage after a good frame
    ],
)
def test_malformed_headers_raise_frame_error(data):
    decoder = FrameDecoder()
    with pytest.raises(FrameError):
        decoder.feed(data)
        while decoder.next_frame() is not None:
            pass
    # Sticky: the stream cannot be trusted any more, and the peer's bytes are dropped.
    with pytest.raises(FrameError):
        decoder.next_frame()
    with pytest.raises(FrameError):
        decoder.feed(b"2:ok")
    assert decoder.buffered == 0


def test_garbage_is_rejected_at_the_first_byte():
    decoder = FrameDecoder()
    with pytest.raises(FrameError):
        decoder.feed(b"a")


def test_nine_digit_length_is_the_longest_header():
    decoder = FrameDecoder(999_999_999)
    decoder.feed(b"000000003:abc")  # nine digits + colon = 10 bytes: accepted, like DIRAC
    assert decoder.next_frame() == Frame(b"abc")


def test_oversized_length_fails_before_any_payload_is_buffered():
    decoder = FrameDecoder(64 * 1024)
    with pytest.raises(FrameTooLargeError):
        decoder.feed(b"999999999:" + b"A" * 300)
    assert decoder.buffered == 0
    assert len(decoder._buf) == 0  # nothing of the claimed payload is kept


def test_oversized_length_split_header_fails_at_the_colon():
    decoder = FrameDecoder(100)
    decoder.feed(b"99999")
    assert decoder.next_frame() is None
    with pytest.raises(FrameTooLargeError):
        decoder.feed(b"9999:")


def test_limit_is_inclusive_and_can_change_per_phase():
    decoder = FrameDecoder(5)
    decoder.feed(b"5:hello")
    assert decoder.next_frame() == Frame(b"hello")
    decoder.max_frame_size = 10
    decoder.feed(b"10:0123456789")
    assert decoder.next_frame() == Frame(b"0123456789")
    decoder.max_frame_size = 3
    with pytest.raises(FrameTooLargeError):
        decoder.feed(b"4:abcd")
    with pytest.raises(ValueError):
        FrameDecoder(-1)


def test_eof_mid_frame_raises_connection_closed():
    for partial in (b"5:he", b"5", b"dk", b"dka", b"dka5:x"):
        decoder = FrameDecoder()
        decoder.feed(partial)
        assert decoder.next_frame() is None
        with pytest.raises(ConnectionClosedError):
            decoder.eof()


def test_eof_at_boundary_is_clean():
    decoder = FrameDecoder()
    decoder.eof()
    decoder.feed(b"1:x")
    assert decoder.next_frame() == Frame(b"x")
    decoder.eof()


def test_encode_refuses_payloads_no_dirac_peer_could_parse():
    class Huge(bytes):
        def __len__(self):
            return 1_000_000_000

    with pytest.raises(ValueError):
        encode_frame(Huge())


# Quadratic buffering would take minutes on these sizes; the timeout catches it without asserting on speed.
@pytest.mark.timeout(30)
def test_many_small_frames_in_one_chunk_decode_in_linear_time():
    frame = encode_frame(b'{"OK": true, "Value": ["hello"]}')
    decoder = FrameDecoder()
    for count in (20_000, 80_000):
        decoder.feed(frame * count)
        n = 0
        while decoder.next_frame() is not None:
            n += 1
        assert n == count
        assert decoder.at_boundary


@pytest.mark.timeout(30)
def test_large_frame_fed_in_small_pieces_is_linear():
    payload = b"x" * 4_000_000
    data = encode_frame(payload)
    decoder = FrameDecoder(8_000_000)
    for i in range(0, len(data), 1000):
        decoder.feed(data[i : i + 1000])
        frame = decoder.next_frame()
    assert frame == Frame(payload)


def test_memoryview_and_bytearray_input():
    decoder = FrameDecoder()
    decoder.feed(memoryview(b"3:abc"))
    decoder.feed(bytearray(b"1:d"))
    assert decoder.next_frame() == Frame(b"abc")
    assert decoder.next_frame() == Frame(b"d")


_SIZES = st.sampled_from([0, 1, 300, 65_535, 65_536, 65_537, 100_000, 300_001])


@given(
    frames=st.lists(st.tuples(_SIZES, st.integers(0, 250), st.booleans()), min_size=1, max_size=6),
    data=st.data(),
)
def test_large_payloads_collected_in_pieces_decode_the_same_for_any_split(frames, data):
    """Payloads of 64 KiB and more are collected as the pieces read; any split gives the same frames, and the
    decoder's view of what is buffered and what is missing stays consistent."""
    payloads = [(bytes([seed, (seed * 7) % 256]) * (size // 2 + 1))[:size] for size, seed, _ in frames]
    stream = b"".join(
        encode_keepalive_frame(p) if ka else encode_frame(p) for p, (_, _, ka) in zip(payloads, frames, strict=True)
    )
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(stream)), max_size=25))))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    decoder = FrameDecoder()
    out: list[Frame] = []
    for chunk in chunks:
        decoder.feed(memoryview(chunk) if len(chunk) % 2 else chunk)  # memoryviews too, as readers may pass
        assert decoder.missing >= 0 and decoder.buffered >= 0
        for frame in iter(decoder.next_frame, None):
            out.append(frame)
    assert out == [Frame(p, ka) for p, (_, _, ka) in zip(payloads, frames, strict=True)]
    assert decoder.at_boundary and decoder.buffered == 0 and decoder.missing == 0


def test_a_large_payload_reports_what_is_missing_while_it_arrives():
    payload = b"z" * 200_000
    decoder = FrameDecoder()
    wire = encode_frame(payload) + encode_frame(b"next")
    decoder.feed(wire[:50_000])
    assert decoder.next_frame() is None
    assert decoder.missing == 200_000 - (50_000 - len(b"200000:"))
    decoder.feed(wire[50_000:150_000])
    assert decoder.next_frame() is None and not decoder.at_boundary
    decoder.feed(wire[150_000:])
    assert decoder.next_frame() == Frame(payload)
    assert decoder.next_frame() == Frame(b"next")
    assert decoder.at_boundary


def test_a_connection_closed_inside_a_large_payload_is_an_error():
    decoder = FrameDecoder()
    decoder.feed(encode_frame(b"q" * 100_000)[:70_000])
    with pytest.raises(ConnectionClosedError, match="middle of a frame"):
        decoder.eof()
