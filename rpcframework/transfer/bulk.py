"""Bulk transfers: tar archives written as a stream, and extracted safely.

DIRAC sends bulks as tar streams named ``<bulkId>.tar.bz2`` (``compress=True``) or ``<bulkId>.tar``, and extracts
them with no filter at all (path traversal, CVE-2007-4559 class). We write the same archives, and refuse to
extract anything that could land outside the target directory or surprise the caller:

* absolute member names, ``..`` components, NUL bytes; symlinks or hardlinks whose target is absolute or leaves
  the target; device files and FIFOs; more than ``max_members`` members; more than ``max_total_size`` bytes of
  content, or a member larger than ``max_member_size`` (checked from the headers *before* any data is written);
* on top of that, each member goes through :func:`tarfile.data_filter` (Python 3.11.4+), which also drops
  set-uid bits and refuses links resolving outside the target.

Extraction happens in a fresh staging directory inside the target; only when the whole archive passed are its
entries moved into place (refusing to follow an existing symlink in the target), so a refused archive leaves
nothing behind, not even the members before the bad one.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Literal, TypeAlias

from rpcframework.errors import RPCFrameworkError

__all__ = [
    "Compression",
    "ExtractionLimits",
    "UnsafeArchiveError",
    "bulk_name",
    "compression_for",
    "extract_archive",
    "list_archive",
    "write_archive",
]

logger = logging.getLogger(__name__)

Compression: TypeAlias = Literal["", "bz2", "gz"]
_HAS_DATA_FILTER: Final = hasattr(tarfile, "data_filter")


class UnsafeArchiveError(RPCFrameworkError, ValueError):
    """An archive was refused: a member could escape the target, or the archive is over a limit."""


@dataclass(frozen=True, slots=True)
class ExtractionLimits:
    """What an archive may contain; the defaults suit bulk transfers of job sandboxes and logs."""

    max_members: int = 10_000
    max_total_size: int = 10 * 1024**3
    max_member_size: int | None = None
    max_name_length: int = 4096


DEFAULT_EXTRACTION_LIMITS: Final = ExtractionLimits()


def bulk_name(bulk_id: str, compress: bool = True) -> str:
    """The file id DIRAC sends for a bulk: ``<bulkId>.tar.bz2`` or ``<bulkId>.tar``."""
    return f"{bulk_id}.tar.bz2" if compress else f"{bulk_id}.tar"


def compression_for(name: str) -> Compression:
    """The compression a bulk file id implies (``.tar.bz2``/``.tbz2`` -> bz2, ``.tar.gz``/``.tgz`` -> gz)."""
    lowered = name.lower()
    if lowered.endswith((".bz2", ".tbz2", ".tbz")):
        return "bz2"
    if lowered.endswith((".gz", ".tgz")):
        return "gz"
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


# --- checking -----------------------------------------------------------------------------------------------------


def _check_name(name: str, limits: ExtractionLimits) -> str:
    if not name or "\x00" in name or len(name) > limits.max_name_length:
        raise UnsafeArchiveError(f"refused archive member with an invalid name {name[:80]!r}")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"refused archive member with an absolute path: {name[:200]!r}")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise UnsafeArchiveError(f"refused archive member with a '..' component: {name[:200]!r}")
    return posixpath.normpath(name.replace("\\", "/"))


def _check_link(member: tarfile.TarInfo, name: str, limits: ExtractionLimits) -> None:
    target = member.linkname
    if not target or "\x00" in target or target.startswith(("/", "\\")):
        raise UnsafeArchiveError(f"refused link {name[:200]!r} to {target[:200]!r}: absolute or empty target")
    if member.issym():
        # A symlink target is relative to the link's own directory.
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    else:
        # A hardlink target is a member name, relative to the archive root.
        _check_name(target, limits)
        resolved = posixpath.normpath(target)
    if resolved == ".." or resolved.startswith("../") or resolved.startswith("/"):
        raise UnsafeArchiveError(f"refused link {name[:200]!r} to {target[:200]!r}: it leaves the target directory")


def check_member(member: tarfile.TarInfo, limits: ExtractionLimits = DEFAULT_EXTRACTION_LIMITS) -> str:
    """Our own checks on one member header; returns its normalised name or raises :class:`UnsafeArchiveError`."""
    name = _check_name(member.name, limits)
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise UnsafeArchiveError(f"refused special file {name[:200]!r} (device or FIFO)")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchiveError(f"refused archive member {name[:200]!r} of unsupported type {member.type!r}")
    if member.issym() or member.islnk():
        _check_link(member, name, limits)
    if limits.max_member_size is not None and member.size > limits.max_member_size:
        raise UnsafeArchiveError(f"refused archive member {name[:200]!r}: {member.size} bytes is over the limit")
    return name


def _open_stream(fileobj: IO[bytes], compression: Compression | None) -> tarfile.TarFile:
    mode = "r|*" if compression is None else (f"r|{compression}" if compression else "r|")
    try:
        return tarfile.open(fileobj=fileobj, mode=mode)  # type: ignore[call-overload, no-any-return]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UnsafeArchiveError(f"not a readable tar archive: {exc}") from exc


def list_archive(
    fileobj: IO[bytes],
    compression: Compression | None = None,
    limits: ExtractionLimits = DEFAULT_EXTRACTION_LIMITS,
) -> list[str]:
    """The member names of an archive stream, with the same checks and limits as :func:`extract_archive`."""
    names: list[str] = []
    total = 0
    with _open_stream(fileobj, compression) as tar:
        for member in _iter_members(tar):
            names.append(check_member(member, limits))
            total = _count(names, total, member, limits)
    return names


def _iter_members(tar: tarfile.TarFile) -> Iterable[tarfile.TarInfo]:
    try:
        yield from tar
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UnsafeArchiveError(f"corrupt tar archive: {exc}") from exc


def _count(names: list[str], total: int, member: tarfile.TarInfo, limits: ExtractionLimits) -> int:
    if len(names) > limits.max_members:
        raise UnsafeArchiveError(f"refused archive: more than {limits.max_members} members")
    total += member.size
    if total > limits.max_total_size:
        raise UnsafeArchiveError(f"refused archive: more than {limits.max_total_size} bytes of content")
    return total


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
    staging = Path(tempfile.mkdtemp(dir=target, prefix=".bulk-"))
    try:
        names = _extract_to(fileobj, staging, compression, limits)
        _move_into(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return names


def _extract_to(
    fileobj: IO[bytes], staging: Path, compression: Compression | None, limits: ExtractionLimits
) -> list[str]:
    names: list[str] = []
    total = 0
    with _open_stream(fileobj, compression) as tar:
        for member in _iter_members(tar):
            names.append(check_member(member, limits))
            total = _count(names, total, member, limits)
            try:
                if _HAS_DATA_FILTER:
                    tar.extract(member, staging, set_attrs=True, filter="data")
                else:  # pragma: no cover - Python < 3.11.4: our checks above are the whole defence
                    tar.extract(member, staging, set_attrs=False)
            except tarfile.FilterError as exc:
                raise UnsafeArchiveError(f"refused archive member {member.name[:200]!r}: {exc}") from exc
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise UnsafeArchiveError(f"cannot extract {member.name[:200]!r}: {exc}") from exc
    return names


def _move_into(staging: Path, target: Path) -> None:
    """Move the staged tree into ``target``: directories merge, files replace; never through a symlink.

    Every conflict is checked before the first move, so a refusal here also leaves the target untouched.
    """
    plan: list[tuple[Path, Path, bool]] = []
    for root, dirs, files in os.walk(staging):
        rel = Path(root).relative_to(staging)
        for name in list(dirs):
            if (Path(root) / name).is_symlink():
                dirs.remove(name)  # os.walk lists links to directories as directories; move the link itself
                files.append(name)
        for name in dirs:
            dst = target / rel / name
            if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
                raise UnsafeArchiveError(f"refused to extract into {rel / name}: it exists and is not a directory")
            plan.append((Path(root) / name, dst, True))
        for name in files:
            dst = target / rel / name
            if dst.is_dir() and not dst.is_symlink():
                raise UnsafeArchiveError(f"refused to replace the directory {rel / name} with a file")
            plan.append((Path(root) / name, dst, False))
    for src, dst, is_dir in plan:  # os.walk is top-down: a directory is created before its content moves
        if is_dir:
            dst.mkdir(exist_ok=True)
            shutil.copymode(src, dst)
        else:
            os.replace(src, dst)
