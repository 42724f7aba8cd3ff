"""``encode_json`` builds the standard library's C encoder itself; without the C accelerator it falls back to
``json.JSONEncoder.encode``. Both give the same bytes and the same errors."""

from __future__ import annotations

import datetime
import math
from typing import Any

import pytest

from rpcframework.codec import jsoncodec
from rpcframework.codec.limits import CodecLimits
from rpcframework.errors import CodecError, CodecLimitError

VALUES: list[Any] = [
    {"OK": True, "Value": "x" * 100},
    {"OK": False, "Errno": 0, "Message": "caf\u00e9 \u2603 \n \x00"},
    "a plain string",
    [1, -2.5, 0.1, 1e300, -0.0, math.nan, math.inf, -math.inf, True, False, None, 10**40],
    {1: "int key", 2.5: "float key", False: "bool key", None: "none key"},
    {"when": datetime.datetime(2024, 5, 6, 7, 8, 9, 123), "day": datetime.date(2024, 5, 6), "raw": b"\x00\xff"},
    (1, (2, [3, {"4": (5,)}])),
]


@pytest.fixture(params=["c", "python"])
def encoder_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(jsoncodec, "_C_MAKE_ENCODER", None)
    return str(request.param)


@pytest.mark.parametrize("value", VALUES)
def test_same_bytes_as_the_standard_encoder(encoder_path: str, value: Any) -> None:
    assert jsoncodec.encode_json(value) == jsoncodec._ENCODER.encode(value).encode("ascii")


def test_same_errors(encoder_path: str) -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(CodecError, match="Circular reference"):
        jsoncodec.encode_json(loop)
    with pytest.raises(CodecError, match="keys must be"):
        jsoncodec.encode_json({(1, 2): "tuple key"})
    with pytest.raises(CodecError, match="type set"):
        jsoncodec.encode_json({"s": {1}})
    # A failed encode leaves nothing behind: the next one is fine (a fresh markers dict per call).
    assert jsoncodec.encode_json([1]) == b"[1]"


def test_limits_are_checked_after_the_inline_bounds(encoder_path: str) -> None:
    limits = CodecLimits(max_bytes=1000, max_depth=3, max_items=10)
    assert jsoncodec.encode_json([[["ok"]]], limits) == b'[[["ok"]]]'
    with pytest.raises(CodecLimitError):
        jsoncodec.encode_json([[[["deep"]]]], limits)
    with pytest.raises(CodecLimitError):
        jsoncodec.encode_json(list(range(11)), limits)
    with pytest.raises(CodecLimitError):
        jsoncodec.encode_json("z" * 2000, limits)
    text = "[[[[[,,,,,,,,,,,,]]]]]"  # brackets and commas inside a string: the exact count passes it
    assert jsoncodec.encode_json(text, limits) == b'"' + text.encode() + b'"'
