"""Payloads of real DIRAC 9.1.22 frames: decode, re-encode byte for byte, and survive mutation."""

from __future__ import annotations

import contextlib
import random

import pytest

from rpcframework.codec import Encoding, decode, encode
from rpcframework.errors import CodecError

pytestmark = pytest.mark.timeout(60)


def test_json_frame_round_trips_byte_for_byte(json_frame: bytes) -> None:
    value, used = decode(json_frame)
    assert used is Encoding.JSON
    assert isinstance(value, dict)
    assert "OK" in value
    assert encode(value, Encoding.JSON) == json_frame


def test_dencode_frame_round_trips_byte_for_byte(dencode_frame: bytes) -> None:
    value, used = decode(dencode_frame)
    assert used is Encoding.DENCODE
    assert isinstance(value, dict)
    assert "OK" in value
    assert encode(value, Encoding.DENCODE) == dencode_frame


def test_json_and_dencode_captures_carry_the_same_calls(
    all_json_frames: list[bytes], all_dencode_frames: list[bytes]
) -> None:
    """The DEncode capture is the JSON capture's calls re-run with DEncode: same values, other bytes."""
    json_values = [decode(f, Encoding.JSON)[0] for f in all_json_frames]
    for frame in all_dencode_frames:
        value, _ = decode(frame, Encoding.DENCODE)
        as_json = decode(encode(value, Encoding.JSON), Encoding.JSON)[0]
        if "EchoPlain" not in frame.decode():  # the proposal's extra credentials differ between the runs
            assert as_json in json_values


def test_error_replies_payload_round_trips_or_is_refused(captured_payload: bytes) -> None:
    """Frames DIRAC sent or was sent in the error-reply captures: valid ones round-trip exactly, the
    deliberately malformed ones raise CodecError and nothing else."""
    try:
        value, used = decode(captured_payload)
    except CodecError:
        assert captured_payload.startswith(b"{abc") or not captured_payload.startswith(b"{")
        return
    assert encode(value, used) == captured_payload


def test_server_call_stacks_decode(all_error_reply_payloads: list[bytes]) -> None:
    with_stacks = [p for p in all_error_reply_payloads if b'"CallStack"' in p]
    assert with_stacks
    for payload in with_stacks:
        value, _ = decode(payload)
        assert isinstance(value["CallStack"], list)


def _mutants(payload: bytes, rng: random.Random, count: int) -> list[bytes]:
    """Byte flips, insertions, deletions, truncations and splices of ``payload``."""
    specials = b'{}[]",:0123456789-eidslntfbzuI\\\xff\x00'
    mutants = []
    for _ in range(count):
        data = bytearray(payload)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(5)
            pos = rng.randrange(len(data) + 1)
            if op == 0 and data:
                data[min(pos, len(data) - 1)] = rng.choice(specials)
            elif op == 1:
                data[pos:pos] = bytes([rng.choice(specials)]) * rng.randint(1, 3)
            elif op == 2:
                del data[pos : pos + rng.randint(1, 8)]
            elif op == 3:
                del data[pos:]
            else:
                start = rng.randrange(len(data) + 1)
                data[pos:pos] = data[start : start + rng.randint(1, 16)]
        mutants.append(bytes(data))
    return mutants


@pytest.mark.parametrize("seed", range(4))
def test_mutated_frames_decode_or_raise_codec_error(
    seed: int, all_json_frames: list[bytes], all_dencode_frames: list[bytes]
) -> None:
    rng = random.Random(seed)
    outcomes = {"ok": 0, "refused": 0}
    for frame in all_json_frames + all_dencode_frames:
        for mutant in _mutants(frame, rng, 40):
            for encoding in (None, Encoding.JSON, Encoding.DENCODE, Encoding.TYPED):
                try:
                    value, used = decode(mutant, encoding)
                except CodecError:
                    outcomes["refused"] += 1
                    continue
                outcomes["ok"] += 1
                with contextlib.suppress(CodecError):  # what decodes must re-encode or be refused cleanly too
                    encode(value, used)
    assert outcomes["ok"] > 0
    assert outcomes["refused"] > 0
