"""The typed encoding: lossless values between two rpcframework peers (negotiated; a DIRAC peer never sees it).

Specification, version 1
========================

A payload is one JSON text (RFC 8259): UTF-8, written ASCII-only (other characters, including lone surrogates,
as ``\\uXXXX`` escapes), compact separators ``,`` and ``:``, no ``NaN``/``Infinity`` literals.

Plain JSON carries ``null``, ``true``/``false``, integers (any size up to 4300 digits), finite floats, strings,
lists (Python ``list``) and objects whose keys are all strings and do not include ``"__t"`` (Python ``dict``,
insertion order kept). Every other value is a *tag object*: exactly the two members ``"__t"`` (the tag) and
``"v"`` (the payload), written in that order::

    {"__t":"t","v":[...]}              tuple
    {"__t":"m","v":[[k,v],...]}        dict whose keys are not all str, or that has a "__t" key; each k is
                                       itself a typed value (int, float, bool, None, tuple, bytes, frozenset, ...)
    {"__t":"b","v":"<base64>"}         bytes (standard alphabet, padded); bytearray is sent as bytes
    {"__t":"dt","v":"<ISO 8601>"}      datetime, datetime.isoformat(): microseconds kept; an aware value carries
                                       its UTC offset ("2026-11-24T12:30:45.123456+01:00"; whole seconds at most)
    {"__t":"d","v":"YYYY-MM-DD"}       date
    {"__t":"tm","v":"HH:MM:SS[.ffffff][+HH:MM]"}  time, time.isoformat()
    {"__t":"s","v":[...]}              set
    {"__t":"fs","v":[...]}             frozenset
    {"__t":"f","v":"nan"|"inf"|"-inf"} a float that JSON cannot write

Because a plain object never has a ``"__t"`` member (a dict with such a key travels in the ``m`` form), a tag
object cannot be confused with user data. A decoder refuses an object with a ``"__t"`` member that is not exactly
``{"__t", "v"}`` with a known tag and a well-formed payload.

What is still not preserved: subclasses arrive as their base type (IntEnum -> int, OrderedDict -> dict,
namedtuple -> tuple); a tzinfo arrives as a fixed-offset ``datetime.timezone`` (zone names and ``fold`` are lost);
set order. Any other type raises :class:`CodecError`. Limits (:mod:`rpcframework.codec.limits`) are measured on
the JSON text, where each tag object is one more level and two more elements.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import logging
from collections.abc import Callable
from typing import Any, Final, NoReturn

from rpcframework.codec.jsoncodec import check_json_structure, decode_json_text
from rpcframework.codec.limits import DEFAULT_LIMITS, CodecLimits, check_size
from rpcframework.errors import CodecError, CodecLimitError

__all__ = ["TAG_KEY", "decode_typed", "encode_typed"]

logger = logging.getLogger(__name__)

TAG_KEY: Final = "__t"
_VALUE_KEY: Final = "v"
_NON_FINITE: Final = frozenset({"nan", "inf", "-inf"})


def _tag(tag: str, value: Any) -> dict[str, Any]:
    return {TAG_KEY: tag, _VALUE_KEY: value}


def _too_deep(max_depth: int) -> NoReturn:
    raise CodecLimitError(f"value nests deeper than {max_depth} levels")


def _lower(value: Any, depth: int, max_depth: int) -> Any:
    """The JSON-ready form of ``value``. ``depth`` counts Python containers, never more than the wire depth,
    so stopping at ``max_depth`` refuses only what the wire check would refuse, and bounds the recursion."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if value - value == 0.0 else _tag("f", repr(value))  # inf - inf and nan - nan are nan
    if kind is list or kind is dict or kind is tuple:
        if depth >= max_depth:
            _too_deep(max_depth)
        if kind is list:
            return [_lower(item, depth + 1, max_depth) for item in value]
        if kind is dict:
            return _lower_dict(value, depth + 1, max_depth)
        return _tag("t", [_lower(item, depth + 1, max_depth) for item in value])
    return _lower_other(value, depth, max_depth)


def _lower_dict(value: dict[Any, Any], depth: int, max_depth: int) -> Any:
    if TAG_KEY not in value and all(type(key) is str for key in value):
        return {key: _lower(item, depth, max_depth) for key, item in value.items()}
    pairs = [[_lower(key, depth + 1, max_depth), _lower(item, depth + 1, max_depth)] for key, item in value.items()]
    return _tag("m", pairs)


def _iso_with_offset(value: datetime.datetime | datetime.time) -> str:
    offset = value.utcoffset()
    if offset is not None and offset.microseconds:  # Python 3.11's fromisoformat drops them
        raise CodecError(f"the typed encoding cannot carry the sub-second UTC offset {offset}")
    return value.isoformat()


def _lower_items(value: Any, depth: int, max_depth: int) -> list[Any]:
    return [_lower(item, depth + 1, max_depth) for item in value]


# Tagged types other than tuple, and subclasses of the container types, in isinstance order (datetime before
# date: datetime is a date subclass). Each entry lowers a value found at ``depth``.
_LOWER_BY_TYPE: Final[tuple[tuple[type | tuple[type, ...], Callable[[Any, int, int], Any]], ...]] = (
    ((bytes, bytearray), lambda value, depth, max_depth: _tag("b", base64.b64encode(value).decode("ascii"))),
    (datetime.datetime, lambda value, depth, max_depth: _tag("dt", _iso_with_offset(value))),
    (datetime.date, lambda value, depth, max_depth: _tag("d", value.isoformat())),
    (datetime.time, lambda value, depth, max_depth: _tag("tm", _iso_with_offset(value))),
    (list, _lower_items),
    (tuple, lambda value, depth, max_depth: _tag("t", _lower_items(value, depth, max_depth))),
    (dict, lambda value, depth, max_depth: _lower_dict(value, depth + 1, max_depth)),
    (frozenset, lambda value, depth, max_depth: _tag("fs", _lower_items(value, depth, max_depth))),
    (set, lambda value, depth, max_depth: _tag("s", _lower_items(value, depth, max_depth))),
)


def _lower_other(value: Any, depth: int, max_depth: int) -> Any:
    """Subclasses of the plain types, and every type that travels as a tag object."""
    for scalar in (bool, int, str):  # bool before int: bool is an int subclass
        if isinstance(value, scalar):
            return scalar(value)
    if isinstance(value, float):
        return _lower(float(value), depth, max_depth)
    if depth >= max_depth:  # everything below is a container or a tag object on the wire
        _too_deep(max_depth)
    for kind, lower in _LOWER_BY_TYPE:
        if isinstance(value, kind):
            return lower(value, depth, max_depth)
    raise CodecError(f"the typed encoding cannot encode an object of type {type(value).__name__}")


# Constant, stateless configurations of the standard library's encoder and decoders (built once for speed). The
# lowered tree is freshly built and acyclic (a cycle would have hit max_depth), so no circular check is needed.
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False)


def encode_typed(obj: Any, limits: CodecLimits = DEFAULT_LIMITS) -> bytes:
    """Encode ``obj`` losslessly in the typed encoding (see the module docstring)."""
    try:
        data = _ENCODER.encode(_lower(obj, 0, limits.max_depth)).encode("ascii")
    except RecursionError as exc:  # only with a max_depth near the interpreter's recursion limit
        raise CodecLimitError("value nests too deeply to encode") from exc
    except (ValueError, OverflowError) as exc:  # an int with more digits than Python converts
        raise CodecError(f"cannot encode in the typed encoding: {exc}") from exc
    check_size(len(data), limits)
    check_json_structure(data, limits)
    return data


def _text(value: Any, tag: str) -> str:
    if not isinstance(value, str):
        raise CodecError(f"typed tag {tag!r} needs a string, not {type(value).__name__}")
    return value


def _items(value: Any, tag: str) -> list[Any]:
    if not isinstance(value, list):
        raise CodecError(f"typed tag {tag!r} needs a list, not {type(value).__name__}")
    return value


def _restore_bytes(value: Any) -> bytes:
    try:
        return base64.b64decode(_text(value, "b"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CodecError(f"invalid base64 in typed bytes: {exc}") from exc


def _restore_float(value: Any) -> float:
    if value not in _NON_FINITE:
        raise CodecError(f"invalid typed float {value!r}")
    return float(value)


def _restore_mapping(value: Any) -> dict[Any, Any]:
    result: dict[Any, Any] = {}
    for pair in _items(value, "m"):
        if not isinstance(pair, list) or len(pair) != 2:
            raise CodecError("typed mapping entries must be [key, value] pairs")
        try:
            result[pair[0]] = pair[1]
        except TypeError as exc:
            raise CodecError(f"unhashable typed mapping key of type {type(pair[0]).__name__}") from exc
    return result


def _restore_collection(kind: Callable[[list[Any]], Any], tag: str) -> Callable[[Any], Any]:
    def restore(value: Any) -> Any:
        try:
            return kind(_items(value, tag))
        except TypeError as exc:
            raise CodecError(f"unhashable element in typed {tag!r}") from exc

    return restore


def _restore_iso(parse: Callable[[str], Any], tag: str) -> Callable[[Any], Any]:
    def restore(value: Any) -> Any:
        try:
            return parse(_text(value, tag))
        except ValueError as exc:
            raise CodecError(f"invalid typed {tag!r} value {value!r}: {exc}") from exc

    return restore


_RESTORERS: Final[dict[str, Callable[[Any], Any]]] = {
    "t": _restore_collection(tuple, "t"),
    "m": _restore_mapping,
    "b": _restore_bytes,
    "dt": _restore_iso(datetime.datetime.fromisoformat, "dt"),
    "d": _restore_iso(datetime.date.fromisoformat, "d"),
    "tm": _restore_iso(datetime.time.fromisoformat, "tm"),
    "s": _restore_collection(set, "s"),
    "fs": _restore_collection(frozenset, "fs"),
    "f": _restore_float,
}


def _restore(obj: dict[str, Any]) -> Any:
    """``object_hook``: objects arrive innermost first, so a tag's payload is already restored."""
    if TAG_KEY not in obj:
        return obj
    tag = obj[TAG_KEY]
    restorer = _RESTORERS.get(tag) if isinstance(tag, str) else None
    if restorer is None or len(obj) != 2 or _VALUE_KEY not in obj:
        raise CodecError(f"invalid typed tag object with tag {tag!r} and keys {sorted(obj)!r}")
    return restorer(obj[_VALUE_KEY])


def _refuse_constant(name: str) -> NoReturn:
    raise CodecError(f"the typed encoding does not allow the JSON literal {name}")


_PLAIN_DECODER: Final = json.JSONDecoder(parse_constant=_refuse_constant)
_TAGGED_DECODER: Final = json.JSONDecoder(object_hook=_restore, parse_constant=_refuse_constant)


def decode_typed(data: bytes, limits: CodecLimits = DEFAULT_LIMITS) -> Any:
    """Decode a typed-encoding payload back to the exact Python values (see the module docstring)."""
    # The tag key is spelled "__t" or has an escaped character in it; without either, no object needs the hook.
    needs_hook = b"__t" in data or b"\\u" in data
    return decode_json_text(data, _TAGGED_DECODER if needs_hook else _PLAIN_DECODER, limits)
