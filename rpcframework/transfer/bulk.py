"""Bulk transfers: tar archives written as a stream, and extracted safely.

DIRAC sends bulks as tar streams named ``<bulkId>.tar.bz2`` (``compress=True``) or ``<bulkId>.tar``, and extracts
them with no filter at all (path traversal, CVE-2007-4559 class). We write the same archives, and refuse to
extract anything that could land outside the target directory or surprise the caller:

* absolute member names, ``..`` components, NUL bytes, names deeper than ``max_depth``; symlinks or hardlinks whose
  target is absolute or leaves the target; device files and FIFOs; more than ``max_members`` members; more than
  ``max_total_size`` bytes of content, or a member larger than ``max_member_size`` (checked from the headers
  *before* any data is written) -- :mod:`.safety`;
* a compressed stream expanding past ``max_total_size`` or ``max_ratio`` times its size, stopped as it is
  decompressed -- :mod:`.decompress`;
* any member written through a symlink, a hard link to anything but an earlier regular file, a name changing type,
  and any symlink that, once every member is in, does not reach a member of the archive inside the target,
  whatever order the links came in -- :mod:`.extract`.

Extraction happens in a fresh staging directory inside the target; only when the whole archive passed are its
entries moved into place (refusing to follow an existing symlink in the target), so a refused archive leaves
nothing behind, not even the members before the bad one. Messages name archive members, never local paths.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Final

from rpcframework.transfer.atomic import current_umask
from rpcframework.transfer.decompress import BoundedDecompressor, Compression
from rpcframework.transfer.extract import Extraction, staging_directory
from rpcframework.transfer.safety import (
    DEFAULT_EXTRACTION_LIMITS,
    ExtractionLimits,
    UnsafeArchiveError,
    check_member,
    shown,
)

__all__ = [
    "Compression",
    "ExtractionLimits",
    "UnsafeArchiveError",
    "bulk_name",
    "check_member",
    "compression_for",
    "extract_archive",
    "list_archive",
    "write_archive",
]

logger = logging.getLogger(__name__)

#: Largest pax or GNU long-name header accepted (``tarfile`` reads it whole into memory).
_MAX_EXTENDED_HEADER: Final = 1024 * 1024
#: Extended headers in a row before a member (``tarfile`` reads each chain by recursion).
_MAX_EXTENDED_CHAIN: Final = 8
_EXTENDED_TYPES: Final = frozenset(
    {tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK}
)


def bulk_name(bulk_id: str, compress: bool = True) -> str:
    """The file id DIRAC sends for a bulk: ``<bulkId>.tar.bz2`` or ``<bulkId>.tar``."""
    return f"{bulk_id}.tar.bz2" if compress else f"{bulk_id}.tar"


def compression_for(name: str) -> Compression:
    """The compression a bulk file id implies (``.tar.bz2``/``.tbz2`` -> bz2, ``.tar.gz``/``.tgz`` -> gz,
    ``.tar.xz``/``.txz`` -> xz)."""
    lowered = name.lower()
    if lowered.endswith((".bz2", ".tbz2", ".tbz")):
        return "bz2"
    if lowered.endswith((".gz", ".tgz")):
        return "gz"
    if lowered.endswith((".xz", ".txz")):
        return "xz"
    return ""


# --- writing ------------------------------------------------------------------------------------------------------


def write_archive(
    paths: Iterable[str | os.PathLike[str]],
    fileobj: IO[bytes],
    compression: Compression = "bz2",
    *,
    arcnames: Sequence[str] | None = None,
) -> list[str]:
    """Write a tar stream of ``paths`` to ``fileobj`` (which only needs ``write``); returns the member names.

    The archive is written as a stream (``w|``/``w|bz2``/``w|gz``): nothing is seeked, so ``fileobj`` may be the
    network. Each path is stored under its base name (directories recursively), as DIRAC's ``sendBulk`` does,
    unless ``arcnames`` gives the names.
    """
    sources = [Path(p) for p in paths]
    names = list(arcnames) if arcnames is not None else [p.name for p in sources]
    if len(names) != len(sources):
        raise ValueError("arcnames must name every path")
    for source in sources:
        if not source.exists():
            raise FileNotFoundError(f"no such file to send: {source}")
    mode = f"w|{compression}" if compression else "w|"
    with tarfile.open(fileobj=fileobj, mode=mode, format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for source, name in zip(sources, names, strict=True):
            tar.add(source, arcname=name)
    return names


# --- reading ------------------------------------------------------------------------------------------------------


class _BoundedTarInfo(tarfile.TarInfo):
    """A ``TarInfo`` that refuses huge or endlessly chained pax/GNU long-name headers before ``tarfile`` reads them
    (it would read each whole into memory, and a chain by recursion)."""

    def _proc_member(self, tar: Any) -> Any:
        if self.type not in _EXTENDED_TYPES:
            return super()._proc_member(tar)  # type: ignore[misc]
        if self.size > _MAX_EXTENDED_HEADER:
            raise UnsafeArchiveError(f"refused archive: an extended header of {self.size} bytes")
        depth = getattr(tar, "_rpcframework_chain", 0)
        if depth >= _MAX_EXTENDED_CHAIN:
            raise UnsafeArchiveError(f"refused archive: more than {_MAX_EXTENDED_CHAIN} extended headers in a row")
        tar._rpcframework_chain = depth + 1
        try:
            return super()._proc_member(tar)  # type: ignore[misc]
        finally:
            tar._rpcframework_chain = depth


def _stream_limit(limits: ExtractionLimits) -> int:
    """Uncompressed bytes an archive may stream: the content cap plus tar's own headers and padding."""
    return limits.max_total_size + 1024 * limits.max_members + 1024 * 1024


@contextlib.contextmanager
def _open_stream(
    fileobj: IO[bytes], compression: Compression | None, limits: ExtractionLimits
) -> Iterator[tarfile.TarFile]:
    reader = BoundedDecompressor(fileobj, compression, max_bytes=_stream_limit(limits), max_ratio=limits.max_ratio)
    try:
        tar = tarfile.open(fileobj=reader, mode="r|", tarinfo=_BoundedTarInfo)  # type: ignore[call-overload]  # noqa: SIM115
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UnsafeArchiveError(f"not a readable tar archive ({type(exc).__name__})") from exc
    with tar:
        yield tar


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The members as they stream; whatever ``tarfile`` raises on a malformed archive becomes a clear refusal."""
    iterator = iter(tar)
    for _ in range(1 << 40):  # bounded: each pass consumes at least one header block
        try:
            member = next(iterator)
        except StopIteration:
            return
        except UnsafeArchiveError:
            raise
        except (tarfile.TarError, OSError, EOFError, KeyError, ValueError, RecursionError) as exc:
            raise UnsafeArchiveError(f"refused a corrupt tar archive ({type(exc).__name__}: {_safe(exc)})") from exc
        yield member


def _safe(exc: BaseException) -> str:
    """An exception's text without local paths (an ``OSError``'s file name is dropped)."""
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc)[:200]


def list_archive(
    fileobj: IO[bytes],
    compression: Compression | None = None,
    limits: ExtractionLimits = DEFAULT_EXTRACTION_LIMITS,
) -> list[str]:
    """The member names of an archive stream, with the same checks and limits as :func:`extract_archive`."""
    names: list[str] = []
    total = 0
    with _open_stream(fileobj, compression, limits) as tar:
        for member in _members(tar):
            names.append(check_member(member, limits))
            if len(names) > limits.max_members:
                raise UnsafeArchiveError(f"refused archive: more than {limits.max_members} members")
            total += member.size
            if total > limits.max_total_size:
                raise UnsafeArchiveError(f"refused archive: more than {limits.max_total_size} bytes of content")
    return names


# --- extracting ---------------------------------------------------------------------------------------------------


def extract_archive(
    fileobj: IO[bytes],
    destination: str | os.PathLike[str],
    compression: Compression | None = None,
    limits: ExtractionLimits = DEFAULT_EXTRACTION_LIMITS,
) -> list[str]:
    """Extract an archive stream into ``destination`` (created if missing); returns the member names.

    ``compression`` ``None`` detects it. Raises :class:`UnsafeArchiveError` (and extracts nothing) when any
    member or limit is refused.
    """
    target = Path(destination)
    target.mkdir(parents=True, exist_ok=True)
    with staging_directory(target) as staging:
        extraction = Extraction(staging, limits, 0o777 & ~current_umask())
        try:
            with _open_stream(fileobj, compression, limits) as tar:
                for member in _members(tar):
                    _add(extraction, tar, member)
            extraction.check_links()
            try:
                extraction.move_into(target)
            except OSError as exc:
                raise UnsafeArchiveError(f"cannot move the extracted files into place: {_safe(exc)}") from exc
        finally:
            extraction.close()
    return extraction.names


def _add(extraction: Extraction, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
    try:
        extraction.add(tar, member)
    except UnsafeArchiveError:
        raise
    except (tarfile.TarError, OSError, EOFError, KeyError, ValueError, RecursionError) as exc:
        raise UnsafeArchiveError(f"cannot extract {shown(member.name)} ({type(exc).__name__}: {_safe(exc)})") from exc
