"""DISET JSON specifics: tagged objects, refusing what DIRAC would import, NaN spellings, hostile text."""

from __future__ import annotations

import datetime
import enum
import importlib.abc
import math
import sys
from collections import OrderedDict
from typing import Any

import pytest

from rpcframework.codec import Encoding, decode, encode
from rpcframework.errors import CodecError

pytestmark = pytest.mark.timeout(60)

MADE_UP_MODULE = "rpcframework_codec_test_module_that_must_never_be_imported"


def dumps(value: Any) -> bytes:
    return encode(value, Encoding.JSON)


def loads(data: bytes) -> Any:
    return decode(data, Encoding.JSON)[0]


class _ImportRecorder(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        self.names.append(fullname)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"__dCls": "Foo", "__dMod": "%s", "x": 1}',
        b'{"__dCls": "JSerializable", "__dMod": "%s"}',
        b'{"__dMod": "%s", "obj": "x"}',
        b'{"__dCls": "dt", "__dMod": "%s"}',
        b'{"OK": true, "Value": [{"__dCls": "system", "__dMod": "%s", "obj": "id"}]}',
        b'{"\\u005f_dCls": "Popen", "__d\\u004dod": "%s"}',
    ],
)
@pytest.mark.parametrize("module", [MADE_UP_MODULE.encode(), b"os", b"subprocess"])
def test_foreign_classes_are_refused_without_importing(payload: bytes, module: bytes) -> None:
    recorder = _ImportRecorder()
    modules_before = set(sys.modules)
    sys.meta_path.insert(0, recorder)
    try:
        with pytest.raises(CodecError):
            decode(payload % module)
        with pytest.raises(CodecError):
            loads(payload % module)
    finally:
        sys.meta_path.remove(recorder)
    assert recorder.names == []
    assert MADE_UP_MODULE not in sys.modules
    assert set(sys.modules) - modules_before == set()


@pytest.mark.parametrize(
    "payload",
    [
        b'{"__dCls": "dt"}',
        b'{"__dCls": "dt", "obj": "2026-11-24 12:30:45", "extra": 1}',
        b'{"__dCls": "dt", "obj": 5}',
        b'{"__dCls": "dt", "obj": "2026-13-24 12:30:45"}',
        b'{"__dCls": "dt", "obj": "2026-11-24T12:30:45"}',
        b'{"__dCls": "dt", "obj": "2026-11-24 12:30:45.123"}',
        b'{"__dCls": "dt", "obj": "\\u0662026-11-24 12:30:45"}',
        b'{"__dCls": "date", "obj": "2026-02-30"}',
        b'{"__dCls": "date", "obj": null}',
        b'{"__dCls": "b64", "obj": "!!!"}',
        b'{"__dCls": "b64", "obj": "AP8"}',
        b'{"__dCls": "b64", "obj": ["AP8="]}',
        b'{"__dCls": 5, "obj": 1}',
    ],
)
def test_malformed_tagged_objects_raise_codec_error(payload: bytes) -> None:
    with pytest.raises(CodecError):
        loads(payload)


def test_tagged_values_decode() -> None:
    assert loads(b'{"__dCls": "dt", "obj": "2026-1-2 3:04:05"}') == datetime.datetime(2026, 1, 2, 3, 4, 5)
    assert loads(b'{"__dCls": "date", "obj": "0005-01-02"}') == datetime.date(5, 1, 2)
    assert loads(b'[{"obj": "AP8=", "__dCls": "b64"}]') == [b"\x00\xff"]


def test_datetime_encoding_drops_microseconds_and_tz_like_dirac() -> None:
    tz = datetime.timezone(datetime.timedelta(hours=5))
    value = datetime.datetime(2026, 11, 24, 12, 30, 45, 999999, tzinfo=tz)
    assert dumps(value) == b'{"__dCls": "dt", "obj": "2026-11-24 12:30:45"}'
    assert dumps(datetime.datetime(5, 1, 2)) == b'{"__dCls": "dt", "obj": "0005-01-02 00:00:00"}'
    assert loads(dumps(datetime.datetime(5, 1, 2))) == datetime.datetime(5, 1, 2)


def test_bytearray_encodes_as_bytes() -> None:
    assert loads(dumps(bytearray(b"abc"))) == b"abc"


def test_lossy_mapping() -> None:
    value = {2: (1, 2), 1.5: None, False: "f", None: "n", "s": OrderedDict(a=1)}
    assert loads(dumps(value)) == {"2": [1, 2], "1.5": None, "false": "f", "null": "n", "s": {"a": 1}}


def test_enum_subclasses_encode_as_their_values() -> None:
    class Colour(enum.StrEnum):
        RED = "red"

    class Size(enum.IntEnum):
        BIG = 3

    assert dumps([Colour.RED, Size.BIG]) == b'["red", 3]'


@pytest.mark.parametrize(
    "value",
    [{(1, 2): "t"}, {1, 2}, frozenset(), datetime.time(1, 2), object(), 1j, 10**5000, [b"ok", {"x": object()}]],
    ids=lambda value: type(value).__name__,
)
def test_unencodable_values_raise_codec_error(value: Any) -> None:
    with pytest.raises(CodecError):
        dumps(value)


def test_circular_reference_raises_codec_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(CodecError):
        dumps(loop)


def test_nan_and_infinity_are_accepted_as_dirac_does() -> None:
    assert dumps([math.nan, math.inf, -math.inf]) == b"[NaN, Infinity, -Infinity]"
    value = loads(b"[NaN, Infinity, -Infinity]")
    assert math.isnan(value[0])
    assert value[1:] == [math.inf, -math.inf]


@pytest.mark.parametrize(
    "payload",
    [b"nan", b"-NaN", b"NaNx", b"inf", b"-inf", b"infinity", b"INFINITY", b'{"a": nan}', b"[+Infinity]", b"1e99999x"],
)
def test_other_nan_spellings_raise_codec_error(payload: bytes) -> None:
    with pytest.raises(CodecError):
        loads(payload)
    with pytest.raises(CodecError):
        decode(payload)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b" ",
        b"{",
        b'{"OK": true',
        b'{"OK": tru}',
        b'{"OK": true}}',
        b'{"a": "\xff"}',
        b'{"a": "\xc3"}',
        b"\xef\xbb\xbf{}",
        '{"a": 1}'.encode("utf-16"),
        b'{"a": "\\ud800\\u"}',
        b"[1, 2,]",
        b"{1: 2}",
        b"[" + b"1" * 5000 + b"]",
        b"\x00",
    ],
)
def test_hostile_text_raises_codec_error(payload: bytes) -> None:
    with pytest.raises(CodecError):
        loads(payload)


def test_lone_surrogates_round_trip() -> None:
    assert loads(dumps("\udcff\ud800")) == "\udcff\ud800"


def test_big_float_literal_becomes_infinity_like_python_json() -> None:
    assert loads(b"1e99999") == math.inf
