"""Property tests: what each encoding promises to bring back, for every type it supports.

- typed: everything comes back exactly (types, tuples vs lists, key types, µs and UTC offsets, sets, NaN).
- DEncode: everything comes back exactly, except bytes, which come back as str (surrogateescape).
- JSON: the lossy mapping DIRAC applies (tuples -> lists, keys -> str, datetimes lose µs and tz).
- all three: re-encoding a decoded value gives the same bytes; arbitrary bytes decode or raise CodecError.
"""

from __future__ import annotations

import contextlib
import datetime
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpcframework.codec import Encoding, decode, encode
from rpcframework.errors import CodecError

pytestmark = pytest.mark.timeout(60)

offsets = st.timedeltas(
    min_value=datetime.timedelta(hours=-23, minutes=-59), max_value=datetime.timedelta(hours=23, minutes=59)
)
# Whole seconds: the typed encoding refuses sub-second offsets (Python 3.11 cannot parse them back).
fixed_zones = st.builds(
    datetime.timezone, offsets.map(lambda o: datetime.timedelta(seconds=o // datetime.timedelta(seconds=1)))
)
naive_datetimes = st.datetimes()
aware_datetimes = st.datetimes(timezones=fixed_zones)
naive_times = st.times()
aware_times = st.times(timezones=fixed_zones)
ints = st.integers() | st.integers(min_value=-(10**300), max_value=10**300)
hashable_scalars = st.none() | st.booleans() | ints | st.floats(allow_nan=False) | st.text()


def same(a: Any, b: Any) -> bool:
    """Equal, of the same types all the way down, with NaN equal to NaN, -0.0 apart from 0.0, equal offsets."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, datetime.datetime | datetime.time):
        return bool(a == b) and a.utcoffset() == b.utcoffset() and (a.tzinfo is None) == (b.tzinfo is None)
    return bool(a == b)


def trees(scalars: st.SearchStrategy[Any], keys: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=5)
            | st.lists(children, max_size=5).map(tuple)
            | st.dictionaries(keys, children, max_size=5)
        ),
        max_leaves=25,
    )


# --- typed: lossless ---------------------------------------------------------------------------------------
typed_hashables = st.recursive(
    hashable_scalars | st.binary() | st.dates() | naive_datetimes | aware_datetimes | naive_times | aware_times,
    lambda children: st.lists(children, max_size=3).map(tuple) | st.frozensets(children, max_size=3),
    max_leaves=6,
)
typed_values = trees(
    st.none()
    | st.booleans()
    | ints
    | st.floats()
    | st.text()
    | st.binary()
    | st.dates()
    | naive_datetimes
    | aware_datetimes
    | naive_times
    | aware_times
    | st.sets(hashable_scalars, max_size=4)
    | st.frozensets(hashable_scalars, max_size=4),
    typed_hashables | st.sampled_from(["__t", "v", "__dCls"]),
)


@given(typed_values)
def test_typed_round_trips_exactly(value: Any) -> None:
    data = encode(value, Encoding.TYPED)
    decoded, used = decode(data, Encoding.TYPED)
    assert used is Encoding.TYPED
    assert same(decoded, value)
    assert same(decode(encode(decoded, Encoding.TYPED), Encoding.TYPED)[0], value)  # set order may change


# --- DEncode: lossless except bytes -----------------------------------------------------------------------
dencode_hashables = st.recursive(
    hashable_scalars | st.dates() | naive_datetimes | naive_times,
    lambda children: st.lists(children, max_size=3).map(tuple),
    max_leaves=6,
)
dencode_values = trees(
    st.none() | st.booleans() | ints | st.floats() | st.text() | st.dates() | naive_datetimes | naive_times,
    dencode_hashables,
)


@given(dencode_values)
def test_dencode_round_trips_exactly(value: Any) -> None:
    data = encode(value, Encoding.DENCODE)
    decoded, used = decode(data, Encoding.DENCODE)
    assert used is Encoding.DENCODE
    assert same(decoded, value)
    assert encode(decoded, Encoding.DENCODE) == data


@given(st.binary())
def test_dencode_bytes_come_back_as_surrogateescaped_str(value: bytes) -> None:
    data = encode(value, Encoding.DENCODE)
    decoded, _ = decode(data, Encoding.DENCODE)
    assert decoded == value.decode("utf-8", "surrogateescape")
    assert encode(decoded, Encoding.DENCODE) == data


# --- JSON: DIRAC's lossy mapping ----------------------------------------------------------------------------
json_keys = st.none() | st.booleans() | ints | st.floats(allow_nan=False) | st.text().filter(lambda k: "__d" not in k)
json_values = trees(
    st.none() | st.booleans() | ints | st.floats() | st.text() | st.binary() | st.dates() | naive_datetimes,
    json_keys,
)


def json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool):
        return {None: "null", True: "true", False: "false"}[key]
    if isinstance(key, float) and math.isinf(key):
        return "Infinity" if key > 0 else "-Infinity"
    return repr(key)


def json_mapping(value: Any) -> Any:
    """What DIRAC's JEncode brings back."""
    if isinstance(value, list | tuple):
        return [json_mapping(item) for item in value]
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            result[json_key(key)] = json_mapping(item)
        return result
    if isinstance(value, datetime.datetime):
        return value.replace(microsecond=0, tzinfo=None)
    return value


@given(json_values)
def test_json_round_trip_is_dirac_lossy_mapping(value: Any) -> None:
    data = encode(value, Encoding.JSON)
    decoded, used = decode(data)
    assert used is Encoding.JSON
    assert same(decoded, json_mapping(value))
    assert encode(decoded, Encoding.JSON) == data


@given(aware_datetimes)
def test_json_drops_timezone_without_converting(value: datetime.datetime) -> None:
    decoded, _ = decode(encode(value, Encoding.JSON))
    assert decoded == value.replace(tzinfo=None, microsecond=0)


# --- arbitrary bytes --------------------------------------------------------------------------------------------
@given(st.binary(max_size=200), st.sampled_from([None, *Encoding]))
def test_arbitrary_bytes_decode_or_raise_codec_error(data: bytes, encoding: Encoding | None) -> None:
    with contextlib.suppress(CodecError):
        decode(data, encoding)


@given(st.text(alphabet='{}[]",:0123456789.-eEtrufalsnNI\\ ', max_size=60))
def test_json_like_text_decodes_or_raises_codec_error(text: str) -> None:
    for encoding in (None, Encoding.JSON, Encoding.TYPED):
        with contextlib.suppress(CodecError):
            decode(text.encode(), encoding)


@given(st.text(alphabet="idsulntbfzIe0123456789:-.ax", max_size=60))
def test_dencode_like_text_decodes_or_raises_codec_error(text: str) -> None:
    with contextlib.suppress(CodecError):
        decode(text.encode(), Encoding.DENCODE)
