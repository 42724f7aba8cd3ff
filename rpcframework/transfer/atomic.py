"""Atomic file results: data goes to a temporary file beside the destination, which is renamed over it at the end.

A reader of the destination sees the old content or the complete new one, never a half-written file, and a
failed transfer leaves nothing behind. The temporary file lives in the destination's own directory so the final
``os.replace`` is a rename inside one file system (atomic on POSIX), and it is fsynced before the rename and the
directory after it, so a crash cannot leave a renamed but empty file.

Resume is the one exception to "nothing left behind": with ``resume=True`` the temporary file has a fixed name
(:func:`partial_path`) and is kept when the transfer fails, so the next attempt can continue from its size. A fixed
name in a directory others may write to (``/tmp``, a shared project area) is something they can plant, so the
partial file is opened with ``O_NOFOLLOW`` (a symlink is refused, never followed), created with ``O_EXCL``, and an
existing one is continued only when it is a regular file of ours with no other hard link.

Permissions are never widened: a committed file gets ``mode`` (0644 by default) filtered by the umask, and no
more than the file it replaces had.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final

__all__ = ["AtomicFile", "UnsafePartialFileError", "atomic_write", "current_umask", "partial_path", "partial_size"]

logger = logging.getLogger(__name__)

#: Permissions of a committed file (temporary files are created 0600 so nobody reads a half-written one).
DEFAULT_MODE: Final = 0o644
_PARTIAL_SUFFIX: Final = ".rpcpart"
_UMASK_LOCK: Final = threading.Lock()
_PARTIAL_FLAGS: Final = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # NONBLOCK: a planted FIFO


class UnsafePartialFileError(OSError):
    """The resume partial file is not one this process may continue (a symlink, another user's file, a hard
    link, not a regular file); ``strerror`` says what and what to do."""


def partial_path(destination: str | os.PathLike[str]) -> Path:
    """Where an interrupted resumable download of ``destination`` is kept: ``<dir>/.<name>.rpcpart``."""
    dest = Path(destination)
    return dest.with_name(f".{dest.name}{_PARTIAL_SUFFIX}")


def partial_size(destination: str | os.PathLike[str]) -> int:
    """Bytes already held for a resumable download of ``destination`` (0 when none, or when the partial file is
    not one :class:`AtomicFile` would continue): the offset to ask for."""
    try:
        info = partial_path(destination).lstat()
    except OSError:
        return 0
    return info.st_size if _partial_problem(info) is None else 0


def _partial_problem(info: os.stat_result) -> str | None:
    """Why a partial file with this ``lstat`` may not be continued (``None``: it may)."""
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if info.st_uid != os.geteuid():
        return f"belongs to another user (uid {info.st_uid})"
    if info.st_nlink != 1:
        return "has other hard links"
    return None


def open_partial(path: Path) -> int:
    """Open (or create, 0600) the resume partial file ``path`` for reading and writing, never through a link;
    raises :class:`UnsafePartialFileError` for a file that must not be continued."""
    try:
        fd = os.open(path, _PARTIAL_FLAGS | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            fd = os.open(path, _PARTIAL_FLAGS)
        except OSError as exc:  # ELOOP: a symlink (O_NOFOLLOW); EISDIR, ENXIO...: a directory, socket or device
            raise _unsafe(path, _why_not_opened(path)) from exc
        problem = _partial_problem(os.fstat(fd))
        if problem is not None:
            os.close(fd)
            raise _unsafe(path, problem) from None
    os.set_blocking(fd, True)
    return fd


def _why_not_opened(path: Path) -> str:
    try:
        return _partial_problem(path.lstat()) or "cannot be opened"
    except OSError:
        return "cannot be opened"


def _unsafe(path: Path, problem: str) -> UnsafePartialFileError:
    return UnsafePartialFileError(
        errno.EPERM, f"the partial file {path.name} {problem}; not continued: remove it or download without resume"
    )


def _committed_mode(mode: int, destination: Path) -> int:
    """``mode`` filtered by the umask, and never more than the file being replaced allowed."""
    mode &= ~current_umask() & 0o7777
    with contextlib.suppress(OSError):
        existing = destination.lstat()
        if stat.S_ISREG(existing.st_mode):
            mode &= stat.S_IMODE(existing.st_mode)
    return mode


def current_umask() -> int:
    """The process umask, read without changing it (``os.umask`` can only be read by setting it, which races with
    other threads creating files); falls back to that only where ``/proc`` does not tell."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8) & 0o777
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms/file systems cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        logger.debug("fsync of directory %s failed", directory)
    finally:
        os.close(fd)


class AtomicFile:
    """A binary file that becomes ``destination`` only on :meth:`commit`; :meth:`discard` removes it.

    As a context manager it commits on a normal exit and discards on an exception::

        with AtomicFile("out.dat") as f:
            f.write(data)
    """

    def __init__(self, destination: str | os.PathLike[str], *, mode: int = DEFAULT_MODE, resume: bool = False) -> None:
        self.destination = Path(destination)
        self.mode = mode
        self.resume = resume
        directory = self.destination.parent
        if resume:
            self.temp_path = partial_path(self.destination)
            fd = open_partial(self.temp_path)
        else:
            fd, name = tempfile.mkstemp(dir=directory, prefix=f".{self.destination.name}.", suffix=".part")
            self.temp_path = Path(name)
        self.file: BinaryIO = os.fdopen(fd, "r+b")
        self.file.seek(0, os.SEEK_END)
        self._closed = False

    @property
    def size(self) -> int:
        """Bytes written so far (for a resumed file: including what an earlier attempt left)."""
        return self.file.tell()

    def write(self, data: bytes | memoryview) -> int:
        return self.file.write(data)

    def truncate(self, size: int) -> None:
        """Cut the file to ``size`` bytes and continue writing there (resume at a granted offset)."""
        self.file.truncate(size)
        self.file.seek(size)

    def read_prefix(self, size: int, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """Yield the first ``size`` bytes (to hash what a resumed download already holds); leaves the position
        at ``size``."""
        self.file.seek(0)
        left = size
        while left > 0:
            block = self.file.read(min(chunk_size, left))
            if not block:
                raise OSError(f"partial file {self.temp_path} is shorter than {size} bytes")
            left -= len(block)
            yield block
        self.file.seek(size)

    def commit(self) -> Path:
        """Flush, fsync, set the mode and rename over the destination; returns the destination."""
        if self._closed:
            raise ValueError("the atomic file is already closed")
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            os.fchmod(self.file.fileno(), _committed_mode(self.mode, self.destination))
        except BaseException:
            self.discard()
            raise
        self.file.close()
        self._closed = True
        try:
            os.replace(self.temp_path, self.destination)
        except BaseException:
            self._unlink()
            raise
        _fsync_dir(self.destination.parent)
        return self.destination

    def discard(self) -> None:
        """Close and remove the temporary file (a resumable one is kept for the next attempt)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self.file.close()
        if not self.resume:
            self._unlink()

    def _unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp_path)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


@contextlib.contextmanager
def atomic_write(destination: str | os.PathLike[str], *, mode: int = DEFAULT_MODE) -> Iterator[BinaryIO]:
    """Context manager yielding a binary file that replaces ``destination`` only if the block succeeds."""
    atomic = AtomicFile(destination, mode=mode)
    try:
        yield atomic.file
    except BaseException:
        atomic.discard()
        raise
    atomic.commit()
