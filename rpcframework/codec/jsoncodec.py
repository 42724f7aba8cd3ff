"""DISET JSON, as DIRAC's ``JEncode`` writes and reads it (DIRAC's default encoding since 8.1).

The payload is ``json.dumps`` output with the standard library's defaults: separators ``", "`` and ``": "``,
``ensure_ascii=True``, dictionaries in insertion order. Frames therefore match DIRAC captures byte for byte.

Types beyond plain JSON travel as tagged objects, exactly two keys, in this order::

    datetime  {"__dCls": "dt", "obj": "YYYY-MM-DD HH:MM:SS"}   microseconds and tzinfo are dropped (as DIRAC does)
    date      {"__dCls": "date", "obj": "YYYY-MM-DD"}
    bytes     {"__dCls": "b64", "obj": "<standard base64>"}   bytearray is sent the same way; decodes to bytes

The mapping is lossy, as it is in DIRAC: tuples become lists; ``int``/``float``/``bool``/``None`` dictionary keys
become strings (``1`` -> ``"1"``, ``True`` -> ``"true"``); other keys (tuples), sets, ``datetime.time`` and any
other object cannot be encoded and raise :class:`CodecError`. Years are always written with four digits (DIRAC's
``strftime`` writes ``"5"`` for year 5 and then cannot read it back); for years 1000-9999 the bytes are DIRAC's.

Decoding differs from DIRAC on purpose where DIRAC is unsafe or sloppy:

- Only ``dt``, ``date`` and ``b64`` are understood. Any other ``__dCls``, any ``__dMod``, or a tagged object with
  extra keys raises :class:`CodecError`; nothing named on the wire is ever imported or looked up (DIRAC imports
  the ``__dMod`` module before it checks the class). A user dictionary with a ``"__dCls"`` key therefore cannot
  travel in this encoding (it cannot in DIRAC either).
- ``obj`` of ``dt``/``date`` is parsed like DIRAC's ``strptime`` formats (``%Y-%m-%d %H:%M:%S``, 1-2 digit fields
  after the four-digit year); base64 is validated strictly.
- The payload must be UTF-8 (``json.loads`` would also guess UTF-16/32 from the bytes).
- ``NaN``, ``Infinity`` and ``-Infinity`` are accepted and produced, as DIRAC's ``json`` does (it sends
  ``float("nan")`` as ``NaN``); any other spelling (``nan``, ``-NaN``, ``inf``) is a :class:`CodecError`.

Limits (see :mod:`rpcframework.codec.limits`) are checked on the raw bytes before parsing, so hostile nesting
never reaches the parser's recursion: :func:`check_json_structure` bounds depth and item count with byte counts
(C speed) and only scans precisely when the cheap bound is over a limit.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import logging
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any, Final

from rpcframework.codec.limits import DEFAULT_LIMITS, CodecLimits, check_size
from rpcframework.errors import CodecError, CodecLimitError

__all__ = ["check_json_structure", "decode_json", "decode_json_text", "encode_json"]

logger = logging.getLogger(__name__)

_CLASS_KEY: Final = "__dCls"
_MODULE_KEY: Final = "__dMod"

# A JSON string (the unrolled-loop form, linear time), used to blank strings out before counting brackets.
_JSON_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_JSON_WHITESPACE: Final = b" \t\r\n"
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_DELTA: Final = tuple(1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256))

# DIRAC parses with strptime("%Y-%m-%d %H:%M:%S"): four-digit year, the other fields one or two digits.
_DATETIME_TEXT: Final = re.compile(r"(\d{4})-(\d\d?)-(\d\d?) (\d\d?):(\d\d?):(\d\d?)", re.ASCII)
_DATE_TEXT: Final = re.compile(r"(\d{4})-(\d\d?)-(\d\d?)", re.ASCII)


def check_json_structure(data: bytes, limits: CodecLimits) -> None:
    """Raise :class:`CodecLimitError` when JSON text nests deeper or holds more elements than ``limits`` allow.

    Every open bracket may add a level and every element except a container's first follows a comma, so the
    counts of ``[``, ``{`` and ``,`` (and, cheaper still, the length) bound depth and items from above
    (brackets and commas inside strings only raise the bound). Only when that bound is over a limit do we blank
    out the strings and count exactly.
    Invalid JSON may be judged either way here; the parser rejects it afterwards.
    """
    if len(data) <= limits.max_depth and len(data) <= limits.max_items:  # small envelopes: nothing to count
        return
    opens = data.count(b"[") + data.count(b"{")
    if opens <= limits.max_depth and opens + data.count(b",") <= limits.max_items:
        return
    structure = _JSON_STRING.sub(b'""', data).translate(None, _JSON_WHITESPACE)
    opens = structure.count(b"[") + structure.count(b"{")
    empty_containers = structure.count(b"[]") + structure.count(b"{}")
    items = structure.count(b",") + opens - empty_containers
    if items > limits.max_items:
        raise CodecLimitError(f"payload holds {items} container elements, over the limit of {limits.max_items}")
    brackets = structure.translate(None, _NOT_BRACKETS)
    depth = max(accumulate(map(_BRACKET_DELTA.__getitem__, brackets)), default=0)
    if depth > limits.max_depth:
        raise CodecLimitError(f"payload nests {depth} levels deep, over the limit of {limits.max_depth}")


def _format_datetime(value: datetime.datetime) -> str:
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d} {value.hour:02d}:{value.minute:02d}:{value.second:02d}"


def _encode_special(value: object) -> dict[str, str]:
    """``JSONEncoder.default``: the tagged form of a value plain JSON cannot carry."""
    if isinstance(value, datetime.datetime):  # before date: datetime is a date subclass
        return {_CLASS_KEY: "dt", "obj": _format_datetime(value)}
    if isinstance(value, datetime.date):
        return {_CLASS_KEY: "date", "obj": f"{value.year:04d}-{value.month:02d}-{value.day:02d}"}
    if isinstance(value, bytes | bytearray):
        return {_CLASS_KEY: "b64", "obj": base64.b64encode(value).decode("ascii")}
    raise CodecError(f"DISET JSON cannot encode an object of type {type(value).__name__}")


# Constant, stateless configurations of the standard library's encoder and decoders (built once for speed).
_ENCODER: Final = json.JSONEncoder(default=_encode_special)
# The C encoder JSONEncoder.encode builds per call for _ENCODER's settings (json.dumps's defaults plus our
# default hook); made here directly, it spares encode() and iterencode() on every message. ``None`` where the
# interpreter has no C accelerator: _ENCODER then does the work, with the same output.
_C_MAKE_ENCODER: Final[Callable[..., Callable[[Any, int], Any]] | None] = getattr(json.encoder, "c_make_encoder", None)
_ENCODE_STRING: Final = json.encoder.encode_basestring_ascii


def encode_json(obj: Any, limits: CodecLimits = DEFAULT_LIMITS) -> bytes:
    """Encode ``obj`` as DIRAC's JEncode does; raise :class:`CodecError` for what it cannot carry."""
    make = _C_MAKE_ENCODER
    try:
        if make is not None:
            # Exactly JSONEncoder.iterencode(obj, _one_shot=True) for _ENCODER: a fresh markers dict (circular
            # references), ensure_ascii, no indent, ": " and ", ", no key sorting, no skipped keys, NaN allowed.
            encoder = make({}, _encode_special, _ENCODE_STRING, None, ": ", ", ", False, False, True)
            data = "".join(encoder(obj, 0)).encode("ascii")
        else:
            data = _ENCODER.encode(obj).encode("ascii")
    except CodecError:
        raise
    except RecursionError as exc:
        raise CodecLimitError("value nests too deeply to encode as JSON") from exc
    except (TypeError, ValueError, OverflowError) as exc:  # unsupported key type, circular reference, huge int
        raise CodecError(f"cannot encode as DISET JSON: {exc}") from exc
    size = len(data)
    if size > limits.max_bytes:
        check_size(size, limits)  # raises, naming the limit
    if size > limits.max_depth or size > limits.max_items:
        # check_json_structure's first two bounds inline (most results pass the second: few brackets and commas).
        opens = data.count(b"[") + data.count(b"{")
        if opens > limits.max_depth or opens + data.count(b",") > limits.max_items:
            check_json_structure(data, limits)
    return data


def _parse_datetime(text: object) -> datetime.datetime:
    match = _DATETIME_TEXT.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise CodecError(f"invalid DISET JSON datetime {text!r}")
    year, month, day, hour, minute, second = map(int, match.groups())
    try:
        return datetime.datetime(year, month, day, hour, minute, second)  # naive, as DIRAC sends them
    except ValueError as exc:
        raise CodecError(f"invalid DISET JSON datetime {text!r}: {exc}") from exc


def _parse_date(text: object) -> datetime.date:
    match = _DATE_TEXT.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise CodecError(f"invalid DISET JSON date {text!r}")
    try:
        return datetime.date(*map(int, match.groups()))
    except ValueError as exc:
        raise CodecError(f"invalid DISET JSON date {text!r}: {exc}") from exc


def _parse_base64(text: object) -> bytes:
    if not isinstance(text, str):
        raise CodecError(f"invalid DISET JSON bytes {text!r}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CodecError(f"invalid base64 in DISET JSON bytes: {exc}") from exc


def _decode_special(obj: dict[str, Any]) -> Any:
    """``object_hook``: turn the three known tagged objects back into values; refuse every other tag."""
    if _CLASS_KEY not in obj and _MODULE_KEY not in obj:
        return obj
    if len(obj) != 2 or "obj" not in obj or _MODULE_KEY in obj:
        # DIRAC would import __dMod here; a peer sending one is probing or a DIRAC JSerializable we cannot carry.
        logger.debug("refusing DISET JSON object tag %r from module %r", obj.get(_CLASS_KEY), obj.get(_MODULE_KEY))
        raise CodecError(f"refusing DISET JSON object tag with keys {sorted(obj)!r}")
    kind = obj[_CLASS_KEY]
    if kind == "dt":
        return _parse_datetime(obj["obj"])
    if kind == "date":
        return _parse_date(obj["obj"])
    if kind == "b64":
        return _parse_base64(obj["obj"])
    raise CodecError(f"refusing DISET JSON object of class {kind!r}")


_PLAIN_DECODER: Final = json.JSONDecoder()
_TAGGED_DECODER: Final = json.JSONDecoder(object_hook=_decode_special)


def decode_json_text(data: bytes, decoder: json.JSONDecoder, limits: CodecLimits) -> Any:
    """Check ``data`` against ``limits``, then parse it as UTF-8 JSON with ``decoder``, failing only with
    :class:`CodecError`. Shared with the typed encoding, which brings its own decoder."""
    check_size(len(data), limits)
    check_json_structure(data, limits)
    try:
        return decoder.decode(data.decode("utf-8"))
    except CodecError:
        raise
    except RecursionError as exc:  # only reachable with a max_depth near the interpreter's recursion limit
        raise CodecLimitError("JSON payload nests too deeply") from exc
    except UnicodeDecodeError as exc:
        raise CodecError(f"JSON payload is not UTF-8: {exc}") from exc
    except (ValueError, TypeError) as exc:  # JSONDecodeError, int too long, unhashable in a hook
        raise CodecError(f"invalid JSON payload: {exc}") from exc


# The decoder's C scanner (an attribute typeshed does not declare): (text, index) -> (value, end index).
_PLAIN_SCAN: Final[Callable[[str, int], tuple[Any, int]]] = getattr(_PLAIN_DECODER, "scan_once")  # noqa: B009


def decode_json(data: bytes, limits: CodecLimits = DEFAULT_LIMITS) -> Any:
    """Decode DISET JSON; tagged ``dt``/``date``/``b64`` objects come back as datetime/date/bytes."""
    # A tag key is spelled "__dCls"/"__dMod" or has an escaped character in it; without either the standard
    # decoder (no Python hook per object) gives the same result, faster.
    needs_hook = b"__d" in data or b"\\u" in data
    size = len(data)
    if (
        not needs_hook
        and size <= limits.max_bytes
        and size <= limits.max_items  # items (commas and opening brackets) are at most one per byte
        and data.count(b"[") + data.count(b"{") <= limits.max_depth  # nesting at most one level per bracket
    ):
        # A plain message within every limit by check_json_structure's cheap bounds (the common envelope);
        # the C scanner reads it directly. JSONDecoder.decode would do exactly this after skipping leading
        # whitespace, and then reject trailing bytes: anything but a value spanning the whole text (leading or
        # trailing whitespace, extra data, a syntax error, bad UTF-8) takes the general path, which decides.
        try:
            text = data.decode("utf-8")
            value, end = _PLAIN_SCAN(text, 0)
        except (UnicodeDecodeError, StopIteration, ValueError, RecursionError):
            pass
        else:
            if end == len(text):
                return value
    return decode_json_text(data, _TAGGED_DECODER if needs_hook else _PLAIN_DECODER, limits)
