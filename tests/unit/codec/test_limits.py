"""Size, depth and item limits, in all three encodings, at their boundaries and far beyond them."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from rpcframework.codec import DEFAULT_LIMITS, CodecLimits, Encoding, decode, encode
from rpcframework.errors import CodecError, CodecLimitError

pytestmark = pytest.mark.timeout(60)

ALL_ENCODINGS = list(Encoding)


def nested_lists(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def deep_payload(encoding: Encoding, depth: int) -> bytes:
    if encoding is Encoding.DENCODE:
        return b"l" * depth + b"e" * depth
    return b"[" * depth + b"]" * depth


def test_defaults() -> None:
    assert CodecLimits(max_depth=100, max_items=1_000_000, max_bytes=64 * 1024 * 1024) == DEFAULT_LIMITS
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_LIMITS.max_depth = 5  # type: ignore[misc]


@pytest.mark.parametrize("bad", [{"max_depth": -1}, {"max_items": 1.5}, {"max_bytes": "1"}, {"max_items": True}])
def test_invalid_limits_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(CodecError):
        CodecLimits(**bad)


@pytest.mark.parametrize("encoding", ALL_ENCODINGS, ids=lambda e: e.value)
def test_depth_boundary(encoding: Encoding) -> None:
    limits = CodecLimits(max_depth=100)
    assert decode(encode(nested_lists(100), encoding, limits), encoding, limits)[0] == nested_lists(100)
    with pytest.raises(CodecLimitError):
        encode(nested_lists(101), encoding, limits)
    with pytest.raises(CodecLimitError):
        decode(deep_payload(encoding, 101), encoding, limits)


@pytest.mark.parametrize("encoding", [*ALL_ENCODINGS, None], ids=lambda e: getattr(e, "value", "detect"))
@pytest.mark.parametrize("limits", [DEFAULT_LIMITS, CodecLimits(max_depth=10**6)], ids=["default", "no-depth-limit"])
def test_hostile_nesting_of_100_000_levels(encoding: Encoding | None, limits: CodecLimits) -> None:
    """Even with the depth limit lifted, the interpreter's recursion limit surfaces as CodecLimitError."""
    for payload in (deep_payload(Encoding.JSON, 100_000), deep_payload(Encoding.DENCODE, 100_000)):
        with pytest.raises(CodecError):
            decode(payload, encoding, limits)
    with pytest.raises(CodecLimitError):
        decode(deep_payload(encoding or Encoding.JSON, 100_000), encoding, limits)
    deep_dicts = (
        b"ds1:a" * 100_000 + b"i1e" + b"e" * 100_000
        if encoding is Encoding.DENCODE
        else b'{"a": ' * 100_000 + b"1" + b"}" * 100_000
    )
    with pytest.raises(CodecLimitError):
        decode(deep_dicts, encoding, limits)


@pytest.mark.parametrize("encoding", ALL_ENCODINGS, ids=lambda e: e.value)
@pytest.mark.parametrize("limits", [DEFAULT_LIMITS, CodecLimits(max_depth=10**6)], ids=["default", "no-depth-limit"])
def test_encoding_100_000_levels_raises_codec_limit_error(encoding: Encoding, limits: CodecLimits) -> None:
    with pytest.raises(CodecLimitError):
        encode(nested_lists(100_000), encoding, limits)


@pytest.mark.parametrize("encoding", ALL_ENCODINGS, ids=lambda e: e.value)
def test_a_million_items_fit_and_one_more_does_not(encoding: Encoding) -> None:
    million = list(range(1_000_000))
    data = encode(million, encoding)
    assert decode(data, encoding)[0] == million
    million.append(0)
    with pytest.raises(CodecLimitError):
        encode(million, encoding)
    over = b"l" + b"i0e" * 1_000_001 + b"e" if encoding is Encoding.DENCODE else b"[" + b"0," * 1_000_000 + b"0]"
    with pytest.raises(CodecLimitError):
        decode(over, encoding)


@pytest.mark.parametrize("encoding", ALL_ENCODINGS, ids=lambda e: e.value)
def test_item_boundary_counts_dict_entries_and_nested_elements(encoding: Encoding) -> None:
    limits = CodecLimits(max_items=4)
    fits = {"a": [1, 2], "b": None}  # 2 entries + 2 elements
    assert decode(encode(fits, encoding, limits), encoding, limits)[0] == fits
    with pytest.raises(CodecLimitError):
        encode({"a": [1, 2, 3], "b": None}, encoding, limits)
    with pytest.raises(CodecLimitError):
        decode(encode({"a": [1, 2, 3], "b": None}, encoding), encoding, limits)


@pytest.mark.parametrize("encoding", [Encoding.JSON, Encoding.TYPED], ids=lambda e: e.value)
def test_brackets_and_commas_inside_strings_do_not_count(encoding: Encoding) -> None:
    limits = CodecLimits(max_depth=1, max_items=2)
    value = ['[[[{{{,,,"\\', "]]]}}},,,"]
    assert decode(encode(value, encoding, limits), encoding, limits)[0] == value


@pytest.mark.parametrize("encoding", ALL_ENCODINGS, ids=lambda e: e.value)
def test_max_bytes(encoding: Encoding) -> None:
    limits = CodecLimits(max_bytes=100)
    fits = "x" * 50
    assert decode(encode(fits, encoding, limits), encoding, limits)[0] == fits
    with pytest.raises(CodecLimitError):
        encode("x" * 100, encoding, limits)
    with pytest.raises(CodecLimitError):
        decode(encode("x" * 100, encoding), encoding, limits)
    with pytest.raises(CodecLimitError):
        decode(encode("x" * 100, encoding), None, limits)
