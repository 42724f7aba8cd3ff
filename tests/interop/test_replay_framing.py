"""Every captured DIRAC byte stream, split every way, decodes to the captured frames."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rpcframework.protocol.framing import FrameDecoder, encode_frame


def _decode(chunks: list[bytes], max_frame_size: int = 1 << 20) -> list[bytes]:
    decoder = FrameDecoder(max_frame_size)
    frames = []
    for chunk in chunks:
        decoder.feed(chunk)
        while (frame := decoder.next_frame()) is not None:
            assert not frame.keepalive
            frames.append(frame.payload)
    decoder.eof()
    assert decoder.at_boundary
    return frames


def _streams(exchanges):
    for exchange in exchanges:
        if not exchange.complete:
            continue
        for direction in ("C>S", "S>C"):
            yield exchange.name, exchange.stream(direction), exchange.frames[direction]


def test_captures_parsed(dip_json, dip_dencode, transfer_json):
    assert len(dip_json) == 4 and len(dip_dencode) == 3 and len(transfer_json) == 4
    complete = [e for e in dip_json + dip_dencode + transfer_json if e.complete]
    assert len(complete) == 9


def test_captured_frames_reencode_to_captured_stream(all_exchanges):
    for name, stream, frames in _streams(all_exchanges):
        assert b"".join(encode_frame(f) for f in frames) == stream, name


def test_captured_chunks_as_received(all_exchanges):
    for exchange in all_exchanges:
        if exchange.complete:
            for direction in ("C>S", "S>C"):
                chunks = [data for d, data in exchange.chunks if d == direction]
                assert _decode(chunks) == exchange.frames[direction]


def test_every_single_split_point(all_exchanges):
    for name, stream, frames in _streams(all_exchanges):
        for cut in range(len(stream) + 1):
            assert _decode([stream[:cut], stream[cut:]]) == frames, (name, cut)


def test_one_byte_at_a_time(all_exchanges):
    for _name, stream, frames in _streams(all_exchanges):
        assert _decode([stream[i : i + 1] for i in range(len(stream))]) == frames


def test_all_captured_streams_concatenated_in_one_chunk(all_exchanges):
    stream = b"".join(s for _n, s, _f in _streams(all_exchanges))
    expected = [f for _n, _s, frames in _streams(all_exchanges) for f in frames]
    assert _decode([stream]) == expected


@given(data=st.data())
def test_random_splits_of_captured_streams(all_exchanges, data):
    streams = list(_streams(all_exchanges))
    _name, stream, frames = data.draw(st.sampled_from(streams))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert _decode(chunks) == frames
