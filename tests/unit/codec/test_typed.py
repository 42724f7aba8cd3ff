"""The typed encoding: the spec's examples byte for byte, escaping of user data, refusal of bad tags."""

from __future__ import annotations

import datetime
import enum
import math
from collections import OrderedDict
from typing import Any

import pytest

from rpcframework.codec import Encoding, decode, encode
from rpcframework.errors import CodecError

pytestmark = pytest.mark.timeout(60)


def dumps(value: Any) -> bytes:
    return encode(value, Encoding.TYPED)


def loads(data: bytes) -> Any:
    return decode(data, Encoding.TYPED)[0]


UTC_PLUS_1 = datetime.timezone(datetime.timedelta(hours=1))

SPEC_EXAMPLES: list[tuple[Any, bytes]] = [
    ({"OK": True, "Value": ["hello", 3]}, b'{"OK":true,"Value":["hello",3]}'),
    ((1, "a"), b'{"__t":"t","v":[1,"a"]}'),
    ({1: "x", (2, 3): None}, b'{"__t":"m","v":[[1,"x"],[{"__t":"t","v":[2,3]},null]]}'),
    (b"\x00\xff", b'{"__t":"b","v":"AP8="}'),
    (
        datetime.datetime(2026, 11, 24, 12, 30, 45, 123456, tzinfo=UTC_PLUS_1),
        b'{"__t":"dt","v":"2026-11-24T12:30:45.123456+01:00"}',
    ),
    (datetime.datetime(2026, 11, 24, 12, 30, 45), b'{"__t":"dt","v":"2026-11-24T12:30:45"}'),
    (datetime.date(2026, 1, 2), b'{"__t":"d","v":"2026-01-02"}'),
    (datetime.time(12, 30, 0, 5), b'{"__t":"tm","v":"12:30:00.000005"}'),
    ({5}, b'{"__t":"s","v":[5]}'),
    (frozenset({"a"}), b'{"__t":"fs","v":["a"]}'),
    ([math.inf, -math.inf], b'[{"__t":"f","v":"inf"},{"__t":"f","v":"-inf"}]'),
    ({"__t": "t", "v": [1]}, b'{"__t":"m","v":[["__t","t"],["v",[1]]]}'),
    ("ü\udcff", b'"\\u00fc\\udcff"'),
]


@pytest.mark.parametrize(("value", "wire"), SPEC_EXAMPLES, ids=[w.decode()[:30] for _, w in SPEC_EXAMPLES])
def test_spec_examples(value: Any, wire: bytes) -> None:
    assert dumps(value) == wire
    decoded = loads(wire)
    assert decoded == value
    assert type(decoded) is type(value)


def test_nan_round_trips_as_a_tag() -> None:
    assert dumps(math.nan) == b'{"__t":"f","v":"nan"}'
    assert math.isnan(loads(dumps(math.nan)))


def test_user_dicts_that_look_like_tags_round_trip() -> None:
    sneaky = [{"__t": "b", "v": "AP8="}, {"__t": "x"}, {"__dCls": "dt", "obj": "2026-01-01 00:00:00"}]
    assert loads(dumps(sneaky)) == sneaky


def test_subclasses_arrive_as_base_types() -> None:
    class Size(enum.IntEnum):
        BIG = 3

    value = [Size.BIG, OrderedDict(a=1), True]
    decoded = loads(dumps(value))
    assert decoded == [3, {"a": 1}, True]
    assert [type(v) for v in decoded] == [int, dict, bool]


def test_timezone_is_kept_as_its_offset() -> None:
    tz = datetime.timezone(datetime.timedelta(hours=-3, minutes=-30), "NST")
    value = datetime.datetime(2026, 3, 1, 8, 0, tzinfo=tz)
    decoded = loads(dumps(value))
    assert decoded == value
    assert decoded.utcoffset() == value.utcoffset()


@pytest.mark.parametrize(
    "payload",
    [
        b'{"__t":"x","v":1}',
        b'{"__t":5,"v":1}',
        b'{"__t":null,"v":1}',
        b'{"__t":"t"}',
        b'{"__t":"t","v":1}',
        b'{"__t":"t","v":[],"w":1}',
        b'{"__t":"m","v":[[[1],2]]}',
        b'{"__t":"m","v":[[1]]}',
        b'{"__t":"m","v":[1]}',
        b'{"__t":"m","v":[[{"a":1},2]]}',
        b'{"__t":"m","v":[[{"__t":"t","v":[[1]]},2]]}',
        b'{"__t":"s","v":[[1]]}',
        b'{"__t":"fs","v":{"a":1}}',
        b'{"__t":"dt","v":"garbage"}',
        b'{"__t":"dt","v":1}',
        b'{"__t":"d","v":"2026-02-30"}',
        b'{"__t":"tm","v":"25:00"}',
        b'{"__t":"b","v":"!!"}',
        b'{"__t":"b","v":"AP8"}',
        b'{"__t":"f","v":"1.5"}',
        b'{"__t":"f","v":null}',
        b'{"\\u005f_t":"x","v":1}',
        b"NaN",
        b'{"a":Infinity}',
        b"[-Infinity]",
        b'{"a":"\xff"}',
        b"",
        b"[",
    ],
)
def test_hostile_payloads_raise_codec_error(payload: bytes) -> None:
    with pytest.raises(CodecError):
        loads(payload)


@pytest.mark.parametrize("value", [object(), 1j, 10**5000, {"a": [object()]}, range(3)], ids=lambda v: type(v).__name__)
def test_unencodable_values_raise_codec_error(value: Any) -> None:
    with pytest.raises(CodecError):
        dumps(value)


def test_circular_reference_raises_codec_error() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(CodecError):
        dumps(loop)


def test_sub_second_utc_offsets_are_refused() -> None:
    tz = datetime.timezone(datetime.timedelta(microseconds=1))
    with pytest.raises(CodecError):
        dumps(datetime.datetime(2026, 1, 1, tzinfo=tz))
    with pytest.raises(CodecError):
        dumps(datetime.time(1, tzinfo=tz))
