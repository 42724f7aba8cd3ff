"""What a bulk archive may contain: :class:`ExtractionLimits`, :class:`UnsafeArchiveError`, and the checks made on
each member's header before anything of it is written (:func:`check_member`).

Messages name archive members only, never a path of the machine extracting them: a server's refusal goes back to
the client that sent the archive.
"""

from __future__ import annotations

import posixpath
import tarfile
from dataclasses import dataclass
from typing import Final

from rpcframework.errors import RPCFrameworkError

__all__ = [
    "DEFAULT_EXTRACTION_LIMITS",
    "STAGING_PREFIX",
    "ExtractionLimits",
    "UnsafeArchiveError",
    "check_member",
    "shown",
]

#: Extraction stages into ``<target>/.bulk-<random>``; an archive may not use such top-level names.
STAGING_PREFIX: Final = ".bulk-"


class UnsafeArchiveError(RPCFrameworkError, ValueError):
    """An archive was refused: a member could escape the target, or the archive is over a limit."""


@dataclass(frozen=True, slots=True)
class ExtractionLimits:
    """What an archive may contain; the defaults suit bulk transfers of job sandboxes and logs.

    ``max_total_size`` caps the archive's uncompressed bytes (its content and tar's own headers, counted as they
    are decompressed) and ``max_ratio`` how many times larger than the compressed bytes they may be (checked once
    more than 1 MiB came out): a decompression bomb stops at once. ``max_depth`` caps the directory levels of a
    member's name.
    """

    max_members: int = 10_000
    max_total_size: int = 1024**3
    max_member_size: int | None = None
    max_name_length: int = 4096
    max_ratio: float = 200.0
    max_depth: int = 128

    def __post_init__(self) -> None:
        for name in ("max_members", "max_total_size", "max_name_length", "max_depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"ExtractionLimits.{name} must be at least 1")
        if self.max_ratio < 1:
            raise ValueError("ExtractionLimits.max_ratio must be at least 1")


DEFAULT_EXTRACTION_LIMITS: Final = ExtractionLimits()


def shown(name: str) -> str:
    """A member name as messages show it: cut to 200 characters, quoted and escaped (``repr``)."""
    return repr(name[:200] + ("..." if len(name) > 200 else ""))


def _check_name(name: str, limits: ExtractionLimits) -> str:
    if not name or "\x00" in name or len(name) > limits.max_name_length:
        raise UnsafeArchiveError(f"refused archive member with an invalid name {shown(name[:80])}")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"refused archive member with an absolute path: {shown(name)}")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise UnsafeArchiveError(f"refused archive member with a '..' component: {shown(name)}")
    normal = posixpath.normpath(name.replace("\\", "/"))
    if normal.count("/") >= limits.max_depth:
        raise UnsafeArchiveError(f"refused archive member {shown(name)}: more than {limits.max_depth} directory levels")
    if normal.split("/", 1)[0].startswith(STAGING_PREFIX):
        raise UnsafeArchiveError(f"refused archive member {shown(name)}: names starting with .bulk- are reserved")
    return normal


def _check_link(member: tarfile.TarInfo, name: str, limits: ExtractionLimits) -> None:
    target = member.linkname
    if not target or "\x00" in target or target.startswith(("/", "\\")) or len(target) > limits.max_name_length:
        raise UnsafeArchiveError(f"refused link {shown(name)} to {shown(target)}: absolute, empty or too long target")
    if member.issym():
        # A symlink target is relative to the link's own directory.
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    else:
        # A hardlink target is a member name, relative to the archive root.
        _check_name(target, limits)
        resolved = posixpath.normpath(target)
    if resolved == ".." or resolved.startswith("../") or resolved.startswith("/"):
        raise UnsafeArchiveError(f"refused link {shown(name)} to {shown(target)}: it leaves the target directory")


def check_member(member: tarfile.TarInfo, limits: ExtractionLimits = DEFAULT_EXTRACTION_LIMITS) -> str:
    """Our own checks on one member header; returns its normalised name or raises :class:`UnsafeArchiveError`."""
    name = _check_name(member.name, limits)
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise UnsafeArchiveError(f"refused special file {shown(name)} (device or FIFO)")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchiveError(f"refused archive member {shown(name)} of unsupported type {member.type!r}")
    if member.issym() or member.islnk():
        _check_link(member, name, limits)
    if limits.max_member_size is not None and member.size > limits.max_member_size:
        raise UnsafeArchiveError(f"refused archive member {shown(name)}: {member.size} bytes is over the limit")
    return name
