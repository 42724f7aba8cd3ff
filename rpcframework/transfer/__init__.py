"""File transfer on top of the sans-IO machines: the hooks' ``FileHelper``, atomic files, safe bulk archives,
progress. The wire side is :mod:`rpcframework.protocol.transfer`; see ``docs/transfer.md``."""

from __future__ import annotations

from rpcframework.transfer.atomic import AtomicFile, atomic_write, partial_path, partial_size
from rpcframework.transfer.bulk import (
    ExtractionLimits,
    UnsafeArchiveError,
    bulk_name,
    compression_for,
    extract_archive,
    list_archive,
    write_archive,
)
from rpcframework.transfer.helper import Channel, FileHelper, TransferError
from rpcframework.transfer.progress import Progress, ProgressCallback

__all__ = [
    "AtomicFile",
    "Channel",
    "ExtractionLimits",
    "FileHelper",
    "Progress",
    "ProgressCallback",
    "TransferError",
    "UnsafeArchiveError",
    "atomic_write",
    "bulk_name",
    "compression_for",
    "extract_archive",
    "list_archive",
    "partial_path",
    "partial_size",
    "write_archive",
]
