"""Decompression with a budget: the reader bulk archives are read through, so a bomb is stopped as it streams.

``tarfile``'s own ``r|bz2`` reads whatever the compressed stream expands to: an 850-byte ``.tar.bz2`` of 1 GiB of
zeros kept a server core busy for minutes. :class:`BoundedDecompressor` decompresses in small steps (at most
:data:`STEP` bytes out per call into the library) and checks after each step:

* the uncompressed bytes so far against ``max_bytes`` (the archive's whole uncompressed stream: content plus tar's
  own headers);
* the ratio of uncompressed to compressed bytes against ``max_ratio``, once more than :data:`RATIO_FLOOR` bytes came
  out (a small archive may expand a lot; a large one may not).

Either limit raises :class:`DecompressionLimitError` (an :class:`~rpcframework.transfer.safety.UnsafeArchiveError`)
at once, after at most one step's work.
The compression is named by the caller (from the bulk's name) or detected from the stream's magic bytes: bzip2,
gzip, xz, or none.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from typing import IO, Final, Literal, Protocol, TypeAlias

from rpcframework.transfer.safety import UnsafeArchiveError

__all__ = ["RATIO_FLOOR", "STEP", "BoundedDecompressor", "Compression", "DecompressionLimitError", "detect"]

Compression: TypeAlias = Literal["", "bz2", "gz", "xz"]

#: Most bytes one call into the decompressor may produce (so one check never waits on a long expansion).
STEP: Final = 64 * 1024
#: The ratio limit applies once this many bytes came out.
RATIO_FLOOR: Final = 1024 * 1024
#: Compressed bytes read from the source at a time.
_READ_SIZE: Final = 64 * 1024

_MAGIC: Final[tuple[tuple[bytes, Compression], ...]] = (
    (b"BZh", "bz2"),
    (b"\x1f\x8b", "gz"),
    (b"\xfd7zXZ\x00", "xz"),
)


class DecompressionLimitError(UnsafeArchiveError):
    """The stream expanded past a limit, or is not valid compressed data (the message says which)."""


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    @property
    def needs_input(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _Inflater:
    """``zlib.decompressobj`` (gzip framing) behind the bz2/lzma decompressor interface."""

    def __init__(self) -> None:
        self._inner = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._pending = b""

    @property
    def eof(self) -> bool:
        return self._inner.eof

    @property
    def unused_data(self) -> bytes:
        return self._inner.unused_data

    @property
    def needs_input(self) -> bool:
        return not self._pending

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        out = self._inner.decompress(self._pending + data, max(max_length, 0))
        self._pending = self._inner.unconsumed_tail
        return out


def _new_decompressor(compression: Compression) -> _Decompressor:
    if compression == "bz2":
        return bz2.BZ2Decompressor()
    if compression == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    return _Inflater()


def detect(head: bytes) -> Compression:
    """The compression a stream starting with ``head`` uses (``""``: none recognised, read it as a plain tar)."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return ""


class BoundedDecompressor:
    """A read-only binary stream of ``source`` decompressed (``compression`` ``None``: detected), with limits.

    Only ``read`` is offered, which is all a streaming ``tarfile`` (``r|``) needs. Concatenated streams (``pbzip2``,
    multi-member gzip) are read one after the other, as the command-line tools do.
    """

    def __init__(
        self,
        source: IO[bytes],
        compression: Compression | None,
        *,
        max_bytes: int,
        max_ratio: float,
    ) -> None:
        self._source = source
        self._max_bytes = max_bytes
        self._max_ratio = max_ratio
        self._head = b""
        if compression is None:
            self._head = source.read(8)
            compression = detect(self._head)
        self.compression: Compression = compression
        self._decompressor: _Decompressor | None = _new_decompressor(compression) if compression else None
        self._buffer = bytearray()
        self._source_done = False
        self.bytes_in = 0
        self.bytes_out = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (``-1``: all, still within ``max_bytes``); ``b""`` at the end."""
        wanted = self._max_bytes + 1 if size is None or size < 0 else size
        while len(self._buffer) < wanted and not self._at_end():
            self._step(min(STEP, wanted - len(self._buffer)))
        data = bytes(self._buffer[:wanted])
        del self._buffer[:wanted]
        return data

    def _at_end(self) -> bool:
        if self._decompressor is None:
            return self._source_done and not self._head
        return self._source_done and self._decompressor.eof and not self._decompressor.unused_data

    def _read_source(self) -> bytes:
        if self._head:
            data, self._head = self._head, b""
        else:
            data = self._source.read(_READ_SIZE)
        if not data:
            self._source_done = True
        self.bytes_in += len(data)
        return data

    def _step(self, room: int) -> None:
        decompressor = self._decompressor
        if decompressor is None:  # a plain tar: only the size limit applies
            self._emit(self._read_source())
            return
        if decompressor.eof:
            self._next_stream(decompressor.unused_data, room)
            return
        data = self._read_source() if decompressor.needs_input else b""
        if decompressor.needs_input and not data:
            raise DecompressionLimitError(f"refused archive: the {self.compression} stream is truncated")
        self._feed(decompressor, data, room)

    def _next_stream(self, rest: bytes, room: int) -> None:
        """After one compressed stream ended: start the next one, or stop at trailing bytes that are not one."""
        while len(rest) < 8 and not self._source_done:
            rest += self._read_source()
        if not rest or detect(rest) != self.compression:
            self._decompressor = None  # trailing padding or garbage: ignored, as bzip2 and gzip do
            self._source_done = True
            return
        decompressor = self._decompressor = _new_decompressor(self.compression)
        self._feed(decompressor, rest, room)

    def _feed(self, decompressor: _Decompressor, data: bytes, room: int) -> None:
        try:
            out = decompressor.decompress(data, room)
        except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
            raise DecompressionLimitError(f"refused archive: not valid {self.compression} data ({exc})") from exc
        self._emit(out)

    def _emit(self, out: bytes) -> None:
        self.bytes_out += len(out)
        if self.bytes_out > self._max_bytes:
            raise DecompressionLimitError(
                f"refused archive: it expands to more than {self._max_bytes} bytes; raise "
                "ExtractionLimits.max_total_size if that is expected"
            )
        compressed = self._decompressor is not None
        if compressed and RATIO_FLOOR < self.bytes_out > self._max_ratio * max(self.bytes_in, 1):
            raise DecompressionLimitError(
                f"refused archive: it expands more than {self._max_ratio:g} times (a decompression bomb?); raise "
                "ExtractionLimits.max_ratio if that is expected"
            )
        self._buffer += out
