"""DEncode specifics: subclasses, bytes and time semantics, strict decoding of hostile input."""

from __future__ import annotations

import datetime
import enum
from collections import OrderedDict, defaultdict
from typing import Any

import pytest

from rpcframework.codec import Encoding, decode, encode
from rpcframework.errors import CodecError

pytestmark = pytest.mark.timeout(60)


def dumps(value: Any) -> bytes:
    return encode(value, Encoding.DENCODE)


def loads(data: bytes) -> Any:
    return decode(data, Encoding.DENCODE)[0]


def test_subclasses_encode_as_their_base_types() -> None:
    """DIRAC dispatches on the exact type and fails on these; we encode them as their bases (bool before int)."""

    class Colour(enum.StrEnum):
        RED = "red"

    class Size(enum.IntEnum):
        BIG = 3

    class Ratio(float):
        pass

    value = [Colour.RED, Size.BIG, Ratio(0.5), OrderedDict(a=True), defaultdict(list, b=[False])]
    assert dumps(value) == b"ls3:redi3ef0.5eds1:ab1eds1:blb0eee"


def test_bytes_encode_as_str_and_come_back_as_str() -> None:
    assert dumps(b"\x00\xff") == b"s2:\x00\xff"
    assert dumps(bytearray(b"ab")) == b"s2:ab"
    assert loads(dumps(b"\x00\xff")) == "\x00\udcff"
    assert dumps(loads(dumps(b"\x00\xff"))) == b"s2:\x00\xff"


def test_time_round_trips() -> None:
    value = datetime.time(23, 59, 58, 7)
    assert dumps(value) == b"ztti23ei59ei58ei7ene"
    assert loads(dumps(value)) == value


def test_datetime_and_date_round_trip() -> None:
    moment = datetime.datetime(1, 1, 1, 0, 0, 0, 1)
    assert loads(dumps([moment, moment.date()])) == [moment, moment.date()]


def test_long_and_unicode_codes_decode() -> None:
    assert loads(b"lI12eu2:\xc3\xbce") == [12, "ü"]


@pytest.mark.parametrize("text", [b"f1e+20e", b"f1e20e", b"f1E20e", b"f-0.0e", b"f.5e", b"f5.e", b"f-infe"])
def test_float_forms(text: bytes) -> None:
    if text == b"f1E20e":
        with pytest.raises(CodecError):
            loads(text)
    else:
        assert loads(text) == float(text[1:-1].decode())


@pytest.mark.parametrize(
    "value",
    [
        datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        datetime.time(1, tzinfo=datetime.UTC),
        {1, 2},
        frozenset(),
        object(),
        1j,
        "\ud800",
        10**5000,
        [1, [2, {3: object()}]],
    ],
    ids=lambda value: type(value).__name__,
)
def test_unencodable_values_raise_codec_error(value: Any) -> None:
    with pytest.raises(CodecError):
        dumps(value)


HOSTILE = [
    b"",
    b"x",
    b"e",
    b"i",
    b"ie",
    b"i-e",
    b"i+1e",
    b"i 1e",
    b"i1_0e",
    b"i12",
    b"i1ee",
    b"i" + b"1" * 5000 + b"e",
    b"I1.0e",
    b"f",
    b"fe",
    b"f1.5",
    b"fnan",
    b"f1..5e",
    b"fNaNe",
    b"f1e+e",
    b"b",
    b"b2",
    b"bx",
    b"s",
    b"s:",
    b"s-1:",
    b"s1a:x",
    b"s5:abc",
    b"s999999999:abc",
    b"s99999999999999999999999:",
    b"s" + b"9" * 30,
    b"s0:x",
    b"s\xd9\xa1:x",
    b"l",
    b"li1e",
    b"lli1ee",
    b"t",
    b"d",
    b"di1e",
    b"di1ei2e",
    b"dli1eei1ee",
    b"ddei1ee",
    b"dtli1eei1ee",
    b"z",
    b"zx",
    b"zati1ee",
    b"zali1ei2ei3ei4ei5ei6ei7enee",
    b"zati2026ei11ei24ei12ei30ei45ei123456es1:xe",
    b"zati2026ei13ei24ei12ei30ei45ei0enee",
    b"zati2026ei11ei24ei12ei30ei45ei0ei0ee",
    b"zati2026ei11ei24ei12ei30ei45eb1enee",
    b"zdti2026ei2ei30ee",
    b"zdti99999999999999999999ei1ei1ee",
    b"zdti2026ei2ee",
    b"zdts4:2026i2ei3ee",
    b"ztti25ei0ei0ei0enee",
    b"nn",
    b"ds2:OKb1s5:Valuene ",
    b"ds2:OKb1s5:Valuenee",
]


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_payloads_raise_codec_error(payload: bytes) -> None:
    with pytest.raises(CodecError):
        loads(payload)
    with pytest.raises(CodecError):
        decode(payload)


def test_every_truncation_of_a_frame_raises_codec_error() -> None:
    frame = dumps({"OK": True, "Value": [1, -2.5, "x", None, (b"y",), {3: datetime.date(2026, 1, 2)}]})
    for size in range(len(frame)):
        with pytest.raises(CodecError):
            loads(frame[:size])
    assert loads(frame)["Value"][-1] == {3: datetime.date(2026, 1, 2)}
