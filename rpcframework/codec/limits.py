"""Size, depth and item limits shared by every codec.

Limits are measured on the *wire form* of a payload, so an encoder that checks its own output guarantees that a
peer with the same limits accepts it:

- ``max_depth``: the deepest container nesting. A scalar has depth 0, ``[1]`` depth 1, ``{"a": [1]}`` depth 2.
  Tagged values (JSON's ``{"__dCls": ...}``, the typed encoding's ``{"__t": ...}``, DEncode's ``z`` tuples) count
  as the containers they are on the wire.
- ``max_items``: the total number of container elements in the payload; a dictionary entry (key and value) is one
  element. ``[1, 2, [3]]`` has 4.
- ``max_bytes``: the largest encoded payload accepted or produced. Decoding never produces more text or bytes
  than it was given, so this also bounds the decoded size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from rpcframework.errors import CodecError, CodecLimitError

__all__ = ["DEFAULT_LIMITS", "CodecLimits", "check_size"]


@dataclass(frozen=True)
class CodecLimits:
    """Bounds applied to every encode and decode; see the module docstring for how each is measured."""

    max_depth: int = 100
    max_items: int = 1_000_000
    max_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("max_depth", "max_items", "max_bytes"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise CodecError(f"CodecLimits.{name} must be a non-negative int, not {value!r}")


DEFAULT_LIMITS: Final = CodecLimits()


def check_size(size: int, limits: CodecLimits) -> None:
    """Raise :class:`CodecLimitError` when a payload of ``size`` bytes is over ``limits.max_bytes``."""
    if size > limits.max_bytes:
        raise CodecLimitError(f"payload of {size} bytes exceeds the limit of {limits.max_bytes} bytes")
