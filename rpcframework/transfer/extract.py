"""Extracting a tar stream so that no member can ever resolve outside the target, whatever order links come in.

``tarfile``'s ``data`` filter checks each link against what exists *when the link is made*, so a link made while a
name it goes through does not exist yet passes, and points elsewhere once a later member creates that name
(``a -> b/b/b/b/../../../../etc/passwd``, then ``b -> .``). Here:

1. members are written into a private staging directory through directory descriptors, each path component opened
   with ``O_NOFOLLOW``: nothing is ever written through a symlink, whatever the archive created before;
2. the archive is kept as a model (name -> file, directory or link), and a name must keep its type: a directory is
   never replaced by a link nor a link by anything; a hard link must name a regular file that came *earlier*;
3. once every member is written, each symlink is resolved in that model, the way the kernel would, one component at
   a time: it must reach a member of the archive without ever climbing above the target (no dangling link, no
   link out, no loop);
4. only then is the staged tree moved into the target, refusing to write through an existing symlink there or to
   replace a directory with anything else, so what each link resolves to in the target is what was checked.

``tarfile.data_filter`` still runs on each member (mode bits: no set-uid/set-gid, no group/other write; ownership
dropped) as a second opinion.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Literal, TypeAlias

from rpcframework.transfer.safety import STAGING_PREFIX, ExtractionLimits, UnsafeArchiveError, check_member, shown

__all__ = ["Extraction", "staging_directory"]

logger = logging.getLogger(__name__)

Kind: TypeAlias = Literal["file", "dir", "link"]

_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: Symlinks followed while resolving one link (the kernel's own limit is 40).
_MAX_HOPS: Final = 40
_COPY_SIZE: Final = 1024 * 1024
#: A ``.bulk-*`` directory nobody holds a lock on, older than this, was left by a process that died: removed.
_STALE_AFTER: Final = 60.0


def _split(name: str) -> list[str]:
    return [] if name == "." else name.split("/")


class Extraction:
    """Writes members into ``staging`` (an empty directory) and keeps the model the final checks use."""

    def __init__(self, staging: Path, limits: ExtractionLimits, dir_mode: int) -> None:
        self.staging = staging
        self.limits = limits
        self.dir_mode = dir_mode
        self.kinds: dict[str, Kind] = {}
        self.link_targets: dict[str, str] = {}
        self.dir_modes: dict[str, int] = {}
        self.names: list[str] = []
        self.total = 0
        self._root = os.open(staging, _DIR_FLAGS)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._root)

    # --- one member ---------------------------------------------------------------------------------------------

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        """Check and write one member (raises :class:`UnsafeArchiveError`, naming the member only)."""
        name = check_member(member, self.limits)
        self._count(member)
        member = self._filtered(member, name)
        self.names.append(name)
        if name == ".":
            if not member.isdir():
                raise UnsafeArchiveError("refused archive member '.': only a directory may have that name")
            return
        parts = _split(name)
        parent = self._open_dir(parts[:-1], name, create=True)
        try:
            self._write(tar, member, name, parent, parts[-1])
        except OSError as exc:
            raise UnsafeArchiveError(f"cannot extract {shown(name)}: {exc.strerror or type(exc).__name__}") from exc
        finally:
            os.close(parent)

    def _count(self, member: tarfile.TarInfo) -> None:
        if len(self.names) >= self.limits.max_members:
            raise UnsafeArchiveError(f"refused archive: more than {self.limits.max_members} members")
        self.total += member.size
        if self.total > self.limits.max_total_size:
            raise UnsafeArchiveError(f"refused archive: more than {self.limits.max_total_size} bytes of content")

    def _filtered(self, member: tarfile.TarInfo, name: str) -> tarfile.TarInfo:
        if not hasattr(tarfile, "data_filter"):  # pragma: no cover - Python < 3.11.4: our checks are the defence
            return member
        try:
            return tarfile.data_filter(member, str(self.staging))
        except tarfile.LinkOutsideDestinationError as exc:  # its message holds our staging path: say what, not where
            raise UnsafeArchiveError(
                f"refused link {shown(name)} to {shown(member.linkname)}: it leads out of the target"
            ) from exc
        except tarfile.FilterError as exc:
            raise UnsafeArchiveError(f"refused archive member {shown(name)} ({type(exc).__name__})") from exc

    def _write(self, tar: tarfile.TarFile, member: tarfile.TarInfo, name: str, parent: int, leaf: str) -> None:
        existing = self.kinds.get(name)
        if member.isdir():
            if existing is None:
                os.mkdir(leaf, 0o700, dir_fd=parent)
                self.kinds[name] = "dir"
            elif existing != "dir":
                raise UnsafeArchiveError(f"refused archive member {shown(name)}: it is already a {existing}")
            self.dir_modes[name] = self.dir_mode
            return
        if existing is not None:
            if existing != "file" or not member.isfile():
                raise UnsafeArchiveError(f"refused archive member {shown(name)}: it is already a {existing}")
            os.unlink(leaf, dir_fd=parent)  # a later copy of a file replaces it (tar semantics)
        if member.issym():
            os.symlink(member.linkname, leaf, dir_fd=parent)
            self.kinds[name], self.link_targets[name] = "link", member.linkname
        elif member.islnk():
            self._hard_link(member, name, parent, leaf)
        else:
            self._write_file(tar, member, parent, leaf)
        if not member.issym():
            self.kinds[name] = "file"

    def _write_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, parent: int, leaf: str) -> None:
        source = tar.extractfile(member)
        fd = os.open(leaf, _FILE_FLAGS, 0o600, dir_fd=parent)
        with os.fdopen(fd, "wb") as out:
            if source is not None:
                with source:
                    shutil.copyfileobj(source, out, _COPY_SIZE)
            os.fchmod(out.fileno(), (member.mode or 0o600) & 0o777)
            with contextlib.suppress(OSError, OverflowError, ValueError):
                os.utime(out.fileno(), (member.mtime, member.mtime))

    def _hard_link(self, member: tarfile.TarInfo, name: str, parent: int, leaf: str) -> None:
        target = posixpath.normpath(member.linkname)
        if self.kinds.get(target) != "file":
            raise UnsafeArchiveError(
                f"refused hard link {shown(name)} to {shown(member.linkname)}: a hard link must name a regular file "
                "that comes earlier in the archive"
            )
        target_parts = _split(target)
        source_dir = self._open_dir(target_parts[:-1], name, create=False)
        try:
            os.link(target_parts[-1], leaf, src_dir_fd=source_dir, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(source_dir)

    def _open_dir(self, parts: list[str], name: str, *, create: bool) -> int:
        """A descriptor of the staged directory ``parts``, creating missing ones; never through a link or file."""
        fd = os.dup(self._root)
        try:
            for depth, part in enumerate(parts, 1):
                prefix = "/".join(parts[:depth])
                kind = self.kinds.get(prefix)
                if kind is None and create:
                    os.mkdir(part, 0o700, dir_fd=fd)
                    self.kinds[prefix] = "dir"
                    self.dir_modes.setdefault(prefix, self.dir_mode)
                elif kind != "dir":
                    what = "missing" if kind is None else f"a {kind}"
                    raise UnsafeArchiveError(f"refused archive member {shown(name)}: {shown(prefix)} is {what}")
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
        except OSError as exc:
            os.close(fd)
            raise UnsafeArchiveError(f"cannot extract {shown(name)}: {exc.strerror or type(exc).__name__}") from exc
        except BaseException:
            os.close(fd)
            raise
        return fd

    # --- once every member is in --------------------------------------------------------------------------------

    def check_links(self) -> None:
        """Every symlink must reach a member of the archive without leaving the target."""
        for name, target in self.link_targets.items():
            self._resolve(name, target)

    def _resolve(self, name: str, target: str) -> str:
        """Where the link ``name`` (to ``target``) ends up, resolved in the model as the kernel would."""
        stack = _split(posixpath.dirname(name) or ".")
        pending = target.split("/")
        pending.reverse()
        hops = 0
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if not stack:
                    raise UnsafeArchiveError(
                        f"refused link {shown(name)} to {shown(target)}: it leads out of the target"
                    )
                stack.pop()
                continue
            candidate = "/".join([*stack, part])
            kind = self.kinds.get(candidate)
            if kind == "link":
                hops += 1
                if hops > _MAX_HOPS:
                    raise UnsafeArchiveError(f"refused link {shown(name)}: too many levels of symbolic links")
                pending.extend(reversed(self.link_targets[candidate].split("/")))
                continue
            if kind is None or (kind == "file" and any(p not in ("", ".") for p in pending)):
                raise UnsafeArchiveError(
                    f"refused link {shown(name)} to {shown(target)}: it does not lead to a member of the archive"
                )
            stack.append(part)
        return "/".join(stack)

    def move_into(self, target: Path) -> None:
        """Move the staged tree into ``target``: directories merge, files and links replace; never through a
        symlink. Every conflict is checked before the first move, so a refusal leaves the target untouched."""
        names = sorted(self.kinds, key=lambda n: (n.count("/"), n))  # parents before their content
        for name in names:
            dst = target / name
            if self.kinds[name] == "dir":
                if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
                    raise UnsafeArchiveError(f"refused to extract into {shown(name)}: it exists and is not a directory")
            elif dst.is_dir() and not dst.is_symlink():
                raise UnsafeArchiveError(f"refused to replace the directory {shown(name)} with a file")
        for name in names:
            dst = target / name
            if self.kinds[name] != "dir":
                os.replace(self.staging / name, dst)
            elif not dst.is_dir():
                dst.mkdir(self.dir_modes.get(name, self.dir_mode))
                os.chmod(dst, self.dir_modes.get(name, self.dir_mode), follow_symlinks=False)


# --- the staging directory ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def staging_directory(target: Path) -> Iterator[Path]:
    """A fresh ``.bulk-*`` directory in ``target``, locked while in use and removed afterwards, whatever happens.

    A process killed mid-extraction cannot clean up; its lock goes with it, so the next extraction into the same
    target removes such leftovers (unlocked, and older than a minute).
    """
    _sweep(target)
    staging = Path(tempfile.mkdtemp(dir=target, prefix=STAGING_PREFIX))
    lock = -1
    try:
        lock = os.open(staging, _DIR_FLAGS)
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if lock >= 0:
            os.close(lock)


def _sweep(target: Path) -> None:
    try:
        entries = [e for e in os.scandir(target) if e.name.startswith(STAGING_PREFIX)]
    except OSError:
        return
    for entry in entries[:100]:  # bounded: a few leftovers at most
        with contextlib.suppress(OSError):
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
                continue
            if time.time() - info.st_mtime < _STALE_AFTER:
                continue
            fd = os.open(entry.path, _DIR_FLAGS)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by a live extraction: OSError, skipped
                shutil.rmtree(entry.path, ignore_errors=True)
                logger.info("removed %s, left by an interrupted extraction", entry.name)
            finally:
                os.close(fd)
