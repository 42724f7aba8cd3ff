"""DEncode, DIRAC's bencode-like payload format (DIRAC's default before 8.1; still used when a peer asks for it).

Every value starts with a one-letter type code; containers end with ``e``::

    i<decimal>e     int (``I<decimal>e``, Python 2's long, is accepted when decoding)
    f<repr>e        float, e.g. ``f1.5e``, ``f-2.5e-300e``, ``fnane``, ``finfe``, ``f-infe``
    b1 / b0         bool
    s<len>:<bytes>  str as UTF-8 (``u`` is accepted when decoding); <len> counts bytes
    n               None
    l ... e         list
    t ... e         tuple
    d k v k v ... e dict, insertion order; keys are any encodable, hashable value
    za t...e        datetime as the tuple (year, month, day, hour, minute, second, microsecond, None)
    zd t...e        date as (year, month, day)
    zt t...e        time as (hour, minute, second, microsecond, None)

Differences from DIRAC's implementation, all deliberate:

- Encoding dispatches on ``isinstance`` (bool before int), not on the exact type, so str-Enums, IntEnums,
  OrderedDict and defaultdict encode as their base types instead of failing.
- ``bytes`` (and ``bytearray``) encode as ``s`` exactly as DIRAC does, and therefore *decode to str*: DEncode
  cannot carry bytes losslessly. String bytes are decoded as UTF-8 with ``surrogateescape`` (as DIRAC does), so
  ``b"\\xff"`` comes back as ``"\\udcff"``, and encoding that str yields the original bytes again.
- Timezone-aware datetimes and times raise :class:`CodecError` (DIRAC fails on the tzinfo object too).
- Decoding is strict: every length is checked against the data before slicing, numbers must be well formed
  (``-?digits``), the whole payload must be consumed (no trailing bytes), unhashable dict keys and malformed
  ``z`` tuples are refused. Every failure is a :class:`CodecError`; depth and item limits raise
  :class:`CodecLimitError`.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Callable
from typing import Any, Final

from rpcframework.codec.limits import DEFAULT_LIMITS, CodecLimits, check_size
from rpcframework.errors import CodecError, CodecLimitError

__all__ = ["decode_dencode", "encode_dencode"]

logger = logging.getLogger(__name__)

_INT: Final = ord("i")
_LONG: Final = ord("I")
_FLOAT: Final = ord("f")
_BOOL: Final = ord("b")
_STR: Final = ord("s")
_UNICODE: Final = ord("u")
_NONE: Final = ord("n")
_LIST: Final = ord("l")
_TUPLE: Final = ord("t")
_DICT: Final = ord("d")
_DATETIME: Final = ord("z")
_END: Final = ord("e")

_INT_BODY: Final = re.compile(rb"(-?\d+)e")
# What Python's repr(float) writes (and DIRAC's float() reads back), followed by the terminating "e".
_FLOAT_BODY: Final = re.compile(rb"(-?(?:inf|nan|(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?))e")
_MAX_LENGTH_DIGITS: Final = 20
_DATETIME_FIELDS: Final = {ord("a"): 8, ord("d"): 3, ord("t"): 5}


class _Encoder:
    """One encoding run: the output chunks and the running element count."""

    __slots__ = ("chunks", "items", "limits")

    def __init__(self, limits: CodecLimits) -> None:
        self.chunks: list[bytes] = []
        self.items = 0
        self.limits = limits

    def count(self, size: int, depth: int) -> None:
        self.items += size
        if self.items > self.limits.max_items:
            raise CodecLimitError(f"value holds more than {self.limits.max_items} container elements")
        if depth > self.limits.max_depth:
            raise CodecLimitError(f"value nests deeper than {self.limits.max_depth} levels")

    def value(self, value: object, depth: int) -> None:
        # Exact-type checks first: the common types of small envelopes cost one comparison each.
        kind = type(value)
        if kind is str:
            self.string(value)  # type: ignore[arg-type]
        elif value is None:
            self.chunks.append(b"n")
        elif kind is bool:
            self.chunks.append(b"b1" if value else b"b0")
        elif kind is int:
            self.chunks.append(b"i%de" % value)  # type: ignore[str-format]
        elif kind is dict:
            self.mapping(value, depth)  # type: ignore[arg-type]
        elif kind is list:
            self.sequence(b"l", value, depth)  # type: ignore[arg-type]
        else:
            self.other(value, depth)

    def other(self, value: object, depth: int) -> None:
        if isinstance(value, bool):
            self.chunks.append(b"b1" if value else b"b0")
        elif isinstance(value, int):
            self.chunks.append(b"i%de" % int(value))
        elif isinstance(value, float):
            self.chunks.append(b"f%se" % float.__repr__(value).encode("ascii"))
        elif isinstance(value, str):
            self.string(value)
        elif isinstance(value, bytes | bytearray):
            self.chunks.append(b"s%d:" % len(value))
            self.chunks.append(bytes(value))
        elif isinstance(value, tuple):
            self.sequence(b"t", value, depth)
        elif isinstance(value, list):
            self.sequence(b"l", value, depth)
        elif isinstance(value, dict):
            self.mapping(value, depth)
        elif isinstance(value, datetime.date | datetime.time):
            self.datetime_like(value, depth)
        else:
            raise CodecError(f"DEncode cannot encode an object of type {type(value).__name__}")

    def string(self, value: str) -> None:
        raw = value.encode("utf-8", "surrogateescape")
        self.chunks.append(b"s%d:" % len(raw))
        self.chunks.append(raw)

    def sequence(self, code: bytes, values: list[Any] | tuple[Any, ...], depth: int) -> None:
        self.count(len(values), depth + 1)
        self.chunks.append(code)
        for item in values:
            self.value(item, depth + 1)
        self.chunks.append(b"e")

    def mapping(self, values: dict[Any, Any], depth: int) -> None:
        self.count(len(values), depth + 1)
        self.chunks.append(b"d")
        for key, item in values.items():
            self.value(key, depth + 1)
            self.value(item, depth + 1)
        self.chunks.append(b"e")

    def datetime_like(self, value: datetime.date | datetime.time, depth: int) -> None:
        if isinstance(value, datetime.datetime):  # before date: datetime is a date subclass
            if value.tzinfo is not None:
                raise CodecError("DEncode cannot encode a timezone-aware datetime")
            self.chunks.append(b"za")
            fields: tuple[Any, ...] = (value.year, value.month, value.day, value.hour, value.minute, value.second)
            fields += (value.microsecond, None)
        elif isinstance(value, datetime.date):
            self.chunks.append(b"zd")
            fields = (value.year, value.month, value.day)
        else:
            if value.tzinfo is not None:
                raise CodecError("DEncode cannot encode a timezone-aware time")
            self.chunks.append(b"zt")
            fields = (value.hour, value.minute, value.second, value.microsecond, None)
        self.sequence(b"t", fields, depth)


def encode_dencode(obj: Any, limits: CodecLimits = DEFAULT_LIMITS) -> bytes:
    """Encode ``obj`` as DEncode; raise :class:`CodecError` for values DEncode cannot carry."""
    encoder = _Encoder(limits)
    try:
        encoder.value(obj, 0)
    except RecursionError as exc:  # only with a max_depth near the interpreter's recursion limit
        raise CodecLimitError("value nests too deeply to encode as DEncode") from exc
    except UnicodeEncodeError as exc:  # a lone surrogate outside the surrogateescape range
        raise CodecError(f"cannot encode string as UTF-8: {exc}") from exc
    except ValueError as exc:  # an int with more digits than Python converts
        raise CodecError(f"cannot encode as DEncode: {exc}") from exc
    data = b"".join(encoder.chunks)
    check_size(len(data), limits)
    return data


class _Decoder:
    """One decoding run over ``data``: positions are passed explicitly, each reader returns (value, next)."""

    __slots__ = ("data", "items", "limits")

    def __init__(self, data: bytes, limits: CodecLimits) -> None:
        self.data = data
        self.items = 0
        self.limits = limits

    def code_at(self, pos: int) -> int:
        if pos >= len(self.data):
            raise CodecError(f"DEncode payload truncated at byte {pos}")
        return self.data[pos]

    def enter(self, depth: int) -> None:
        if depth > self.limits.max_depth:
            raise CodecLimitError(f"DEncode payload nests deeper than {self.limits.max_depth} levels")

    def count(self) -> None:
        self.items += 1
        if self.items > self.limits.max_items:
            raise CodecLimitError(f"DEncode payload holds more than {self.limits.max_items} container elements")

    def value(self, pos: int, depth: int) -> tuple[Any, int]:
        reader = _READERS.get(self.code_at(pos))
        if reader is None:
            raise CodecError(f"unknown DEncode type code {self.data[pos : pos + 1]!r} at byte {pos}")
        return reader(self, pos, depth)

    def integer(self, pos: int, depth: int) -> tuple[int, int]:
        match = _INT_BODY.match(self.data, pos + 1)
        if match is None:
            raise CodecError(f"malformed DEncode integer at byte {pos}")
        return int(match.group(1)), match.end()

    def real(self, pos: int, depth: int) -> tuple[float, int]:
        match = _FLOAT_BODY.match(self.data, pos + 1)
        if match is None:
            raise CodecError(f"malformed DEncode float at byte {pos}")
        return float(match.group(1)), match.end()

    def boolean(self, pos: int, depth: int) -> tuple[bool, int]:
        flag = self.code_at(pos + 1)
        if flag not in b"01":
            raise CodecError(f"malformed DEncode bool at byte {pos}")
        return flag == ord("1"), pos + 2

    def none(self, pos: int, depth: int) -> tuple[None, int]:
        return None, pos + 1

    def string(self, pos: int, depth: int) -> tuple[str, int]:
        colon = self.data.find(b":", pos + 1, pos + 2 + _MAX_LENGTH_DIGITS)
        digits = self.data[pos + 1 : colon] if colon >= 0 else b""
        if not digits.isdigit():
            raise CodecError(f"malformed DEncode string length at byte {pos}")
        start = colon + 1
        end = start + int(digits)
        if end > len(self.data):
            raise CodecError(f"DEncode string at byte {pos} declares {int(digits)} bytes, more than remain")
        return self.data[start:end].decode("utf-8", "surrogateescape"), end

    def sequence(self, pos: int, depth: int) -> tuple[list[Any] | tuple[Any, ...], int]:
        depth += 1
        self.enter(depth)
        is_tuple = self.data[pos] == _TUPLE
        items: list[Any] = []
        pos += 1
        while self.code_at(pos) != _END:
            self.count()
            item, pos = self.value(pos, depth)
            items.append(item)
        return (tuple(items) if is_tuple else items), pos + 1

    def mapping(self, pos: int, depth: int) -> tuple[dict[Any, Any], int]:
        depth += 1
        self.enter(depth)
        result: dict[Any, Any] = {}
        pos += 1
        while self.code_at(pos) != _END:
            self.count()
            key, pos = self.value(pos, depth)
            item, pos = self.value(pos, depth)
            try:
                result[key] = item
            except TypeError as exc:
                raise CodecError(f"unhashable DEncode dict key of type {type(key).__name__}") from exc
        return result, pos + 1

    def datetime_like(self, pos: int, depth: int) -> tuple[Any, int]:
        kind = self.code_at(pos + 1)
        size = _DATETIME_FIELDS.get(kind)
        if size is None or self.code_at(pos + 2) != _TUPLE:
            raise CodecError(f"malformed DEncode datetime at byte {pos}")
        fields, end = self.sequence(pos + 2, depth)
        int_fields = fields if size == 3 else fields[:-1]  # datetime and time end with the tzinfo
        if len(fields) != size or any(type(f) is not int for f in int_fields):
            raise CodecError(f"malformed DEncode datetime fields {fields!r}")
        try:
            if size == 3:
                return datetime.date(*fields), end
            if fields[-1] is not None:  # DIRAC never sends a tzinfo (it cannot encode one)
                raise CodecError(f"DEncode datetime with a tzinfo {fields[-1]!r}")
            if size == 8:
                return datetime.datetime(*fields[:7]), end  # naive, as DIRAC sends them
            return datetime.time(*fields[:4]), end
        except (ValueError, OverflowError) as exc:
            raise CodecError(f"invalid DEncode datetime fields {fields!r}: {exc}") from exc


# Readers by type code; each takes the position of its code and the depth of the value's container.
_READERS: Final[dict[int, Callable[[_Decoder, int, int], tuple[Any, int]]]] = {
    _STR: _Decoder.string,
    _UNICODE: _Decoder.string,
    _INT: _Decoder.integer,
    _LONG: _Decoder.integer,
    _NONE: _Decoder.none,
    _BOOL: _Decoder.boolean,
    _LIST: _Decoder.sequence,
    _TUPLE: _Decoder.sequence,
    _DICT: _Decoder.mapping,
    _FLOAT: _Decoder.real,
    _DATETIME: _Decoder.datetime_like,
}


def decode_dencode(data: bytes, limits: CodecLimits = DEFAULT_LIMITS) -> Any:
    """Decode a complete DEncode payload; anything malformed, truncated or followed by extra bytes is refused."""
    check_size(len(data), limits)
    decoder = _Decoder(data, limits)
    try:
        value, end = decoder.value(0, 0)
    except RecursionError as exc:  # only with a max_depth near the interpreter's recursion limit
        raise CodecLimitError("DEncode payload nests too deeply") from exc
    except ValueError as exc:  # an int with more digits than Python converts
        raise CodecError(f"invalid DEncode payload: {exc}") from exc
    if end != len(data):
        raise CodecError(f"{len(data) - end} unexpected bytes after the DEncode value")
    return value
