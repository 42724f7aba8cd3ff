"""Payload codecs: DISET JSON and DEncode (DIRAC-compatible) and our lossless typed encoding.

>>> data = encode({"OK": True, "Value": ["hello"]})
>>> data
b'{"OK": true, "Value": ["hello"]}'
>>> decode(data)
({'OK': True, 'Value': ['hello']}, <Encoding.JSON: 'json'>)

Formats: :mod:`~rpcframework.codec.jsoncodec` (DIRAC's JEncode), :mod:`~rpcframework.codec.dencode` (DIRAC's
DEncode), :mod:`~rpcframework.codec.typed` (ours, negotiated per connection). Limits:
:mod:`~rpcframework.codec.limits`. Every failure raises :class:`~rpcframework.errors.CodecError` (limits:
:class:`~rpcframework.errors.CodecLimitError`), never another exception type.

Detecting the encoding (``decode(data, encoding=None)``)
--------------------------------------------------------
DIRAC decodes with DEncode first and falls back to JSON on any exception, special-casing the literal ``null``
(DEncode would read its ``n`` as None and ignore the rest). We reach the same answers from the first byte, with no
exception on the normal path:

- a byte that can only start JSON (``{ [ " - 0-9 N`` or whitespace) -> JSON. Every DISET message is a dict, so
  DIRAC's JSON frames start with ``{``;
- ``t``, ``f``, ``n``, ``I`` start both a DEncode value and a JSON literal (``true``, ``false``, ``null``,
  ``Infinity``) -> DEncode, and JSON if that fails. Our DEncode decoder refuses trailing bytes, so ``null``
  decodes as JSON None without a special case while ``n`` is DEncode None;
- anything else (``d`` for a DEncode dict, ``i s u l b z``, garbage) -> DEncode.

The typed encoding is never detected: it is valid JSON and would decode lossily, so only the negotiated
connection state may select it.
"""

from __future__ import annotations

import enum
import logging
from typing import Any, Final

from rpcframework.codec.dencode import decode_dencode, encode_dencode
from rpcframework.codec.jsoncodec import decode_json, encode_json
from rpcframework.codec.limits import DEFAULT_LIMITS, CodecLimits
from rpcframework.codec.typed import decode_typed, encode_typed
from rpcframework.errors import CodecError, CodecLimitError

__all__ = ["DEFAULT_LIMITS", "CodecLimits", "Encoding", "decode", "encode"]

logger = logging.getLogger(__name__)


class Encoding(enum.Enum):
    """A payload encoding: DIRAC's two, and our lossless one."""

    JSON = "json"
    DENCODE = "dencode"
    TYPED = "typed"


_JSON_ONLY_FIRST_BYTES: Final = frozenset(b'{["-0123456789N \t\r\n')
_AMBIGUOUS_FIRST_BYTES: Final = frozenset(b"tfnI")


def encode(obj: Any, encoding: Encoding = Encoding.JSON, limits: CodecLimits = DEFAULT_LIMITS) -> bytes:
    """Encode ``obj`` as a payload in ``encoding``; raise :class:`CodecError` when it cannot be represented."""
    if encoding is Encoding.JSON:
        return encode_json(obj, limits)
    if encoding is Encoding.DENCODE:
        return encode_dencode(obj, limits)
    if encoding is Encoding.TYPED:
        return encode_typed(obj, limits)
    raise CodecError(f"unknown encoding {encoding!r}")


def decode(
    data: bytes | bytearray | memoryview, encoding: Encoding | None = None, limits: CodecLimits = DEFAULT_LIMITS
) -> tuple[Any, Encoding]:
    """Decode a payload and return ``(value, encoding used)``; ``encoding=None`` detects DIRAC's two encodings
    as described in the module docstring."""
    if type(data) is not bytes:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise CodecError(f"payload must be bytes, not {type(data).__name__}")
        data = bytes(data)
    if encoding is Encoding.JSON:
        return decode_json(data, limits), encoding
    if encoding is Encoding.DENCODE:
        return decode_dencode(data, limits), encoding
    if encoding is Encoding.TYPED:
        return decode_typed(data, limits), encoding
    if encoding is not None:
        raise CodecError(f"unknown encoding {encoding!r}")
    return _decode_detected(data, limits)


def _decode_detected(data: bytes, limits: CodecLimits) -> tuple[Any, Encoding]:
    if not data:
        raise CodecError("empty payload")
    first = data[0]
    if first in _JSON_ONLY_FIRST_BYTES:
        return decode_json(data, limits), Encoding.JSON
    if first not in _AMBIGUOUS_FIRST_BYTES:
        return decode_dencode(data, limits), Encoding.DENCODE
    try:
        return decode_dencode(data, limits), Encoding.DENCODE
    except CodecError as dencode_error:
        try:
            return decode_json(data, limits), Encoding.JSON
        except CodecError as json_error:
            if isinstance(dencode_error, CodecLimitError):  # e.g. "ttt...": over a limit, not merely malformed
                raise dencode_error from json_error
            raise CodecError(f"neither DEncode ({dencode_error}) nor JSON ({json_error})") from json_error
