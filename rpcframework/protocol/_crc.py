"""CRC-32 for stream-mode transfers: zlib's polynomial and values, computed by ISA-L when it is installed.

``zlib.crc32`` runs at about 1.9 GiB/s on the benchmark machine: as fast as the TLS stream itself, so checking a
transfer cost each side as much CPU as moving it. ISA-L's (``isal``, a dependency wherever it publishes wheels)
gives the same values about 30 times faster. Elsewhere zlib's is used; the two never disagree (tested).
"""

from __future__ import annotations

from typing import Final

try:
    from isal.isal_zlib import crc32
except ImportError:  # a platform without an isal wheel (pyproject's marker): zlib's, same values
    from zlib import crc32

__all__ = ["PROVIDER", "crc32"]

#: Which library computes :func:`crc32` (``"isal"`` or ``"zlib"``); shown by the transfer benchmarks.
PROVIDER: Final = crc32.__module__.split(".")[0]
