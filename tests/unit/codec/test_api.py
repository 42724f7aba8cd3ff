"""The public API of rpcframework.codec: the contract in docs/architecture.md and the detection rule."""

from __future__ import annotations

import math
from typing import Any

import pytest

from rpcframework.codec import DEFAULT_LIMITS, CodecLimits, Encoding, decode, encode
from rpcframework.errors import CodecError, CodecLimitError

pytestmark = pytest.mark.timeout(60)


def test_contract() -> None:
    assert [(e.name, e.value) for e in Encoding] == [("JSON", "json"), ("DENCODE", "dencode"), ("TYPED", "typed")]
    assert isinstance(DEFAULT_LIMITS, CodecLimits)
    assert encode({"OK": True, "Value": None}) == b'{"OK": true, "Value": null}'
    assert decode(b'{"OK": true, "Value": null}') == ({"OK": True, "Value": None}, Encoding.JSON)


@pytest.mark.parametrize(
    ("payload", "expected", "encoding"),
    [
        (b"null", None, Encoding.JSON),  # DIRAC's special case: not DEncode None plus "ull"
        (b"n", None, Encoding.DENCODE),
        (b"true", True, Encoding.JSON),
        (b"false", False, Encoding.JSON),
        (b"b1", True, Encoding.DENCODE),
        (b"t", None, None),
        (b"te", (), Encoding.DENCODE),
        (b"f1.5e", 1.5, Encoding.DENCODE),
        (b"Infinity", math.inf, Encoding.JSON),
        (b"I5e", 5, Encoding.DENCODE),
        (b" {}", {}, Encoding.JSON),
        (b"\n[1]", [1], Encoding.JSON),
        (b"-1", -1, Encoding.JSON),
        (b'"s"', "s", Encoding.JSON),
        (b"s1:s", "s", Encoding.DENCODE),
        (b"de", {}, Encoding.DENCODE),
        (b"{}", {}, Encoding.JSON),
        (b"", None, None),
        (b"{de", None, None),
        (b"dfalse", None, None),
        (b"nope", None, None),
    ],
)
def test_detection(payload: bytes, expected: Any, encoding: Encoding | None) -> None:
    if encoding is None:
        with pytest.raises(CodecError):
            decode(payload)
    else:
        assert decode(payload) == (expected, encoding)


def test_typed_is_never_detected() -> None:
    data = encode((1, 2), Encoding.TYPED)
    assert decode(data) == ({"__t": "t", "v": [1, 2]}, Encoding.JSON)
    assert decode(data, Encoding.TYPED) == ((1, 2), Encoding.TYPED)


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_bytes_like_input(kind: Any) -> None:
    assert decode(kind(b"de")) == ({}, Encoding.DENCODE)


@pytest.mark.parametrize("data", ['{"OK": true}', None, 5, [b"de"]])
def test_non_bytes_input_raises_codec_error(data: Any) -> None:
    with pytest.raises(CodecError):
        decode(data)


def test_unknown_encoding_raises_codec_error() -> None:
    with pytest.raises(CodecError):
        encode(1, "json")  # type: ignore[arg-type]
    with pytest.raises(CodecError):
        decode(b"1", "json")  # type: ignore[arg-type]


def test_detected_dencode_over_a_limit_stays_a_limit_error() -> None:
    with pytest.raises(CodecLimitError):
        decode(b"t" * 200 + b"e" * 200)
