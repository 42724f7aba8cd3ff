"""The resume partial file ``.<name>.rpcpart`` in a directory others can write to (issue 13.3): a planted symlink,
hard link, FIFO, directory or another user's file is never continued, followed or made readable; permissions are
never widened."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rpcframework.transfer import AtomicFile, partial_path, partial_size
from rpcframework.transfer.atomic import UnsafePartialFileError, current_umask

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "elsewhere" / "id_rsa"
    path.parent.mkdir()
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    path.chmod(0o600)
    return path


def _untouched(victim: Path) -> None:
    assert victim.read_bytes() == b"-----BEGIN PRIVATE KEY-----\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600


def _plant_symlink(partial: Path, victim: Path) -> None:
    partial.symlink_to(victim)


def _plant_hard_link(partial: Path, victim: Path) -> None:
    os.link(victim, partial)


def _plant_fifo(partial: Path, victim: Path) -> None:
    os.mkfifo(partial)


def _plant_directory(partial: Path, victim: Path) -> None:
    partial.mkdir()


PLANTED = {
    "symlink": (_plant_symlink, "is a symbolic link"),
    "hard link": (_plant_hard_link, "has other hard links"),
    "fifo": (_plant_fifo, "is not a regular file"),
    "directory": (_plant_directory, "is not a regular file"),
}


@pytest.mark.parametrize("case", list(PLANTED))
def test_a_planted_partial_file_is_refused_and_never_followed(tmp_path: Path, victim: Path, case: str) -> None:
    dest = tmp_path / "out.dat"
    plant, reason = PLANTED[case]
    plant(partial_path(dest), victim)
    assert partial_size(dest) == 0  # nothing to resume from: no offset asked for
    with pytest.raises(UnsafePartialFileError, match=reason) as caught:
        AtomicFile(dest, resume=True)
    assert "remove it" in str(caught.value.strerror)
    _untouched(victim)
    assert not dest.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file of another user needs root")
def test_another_users_partial_file_is_refused(tmp_path: Path) -> None:
    dest = tmp_path / "out.dat"
    partial = partial_path(dest)
    partial.write_bytes(b"theirs")
    os.chown(partial, 65534, 65534)
    assert partial_size(dest) == 0
    with pytest.raises(UnsafePartialFileError, match="belongs to another user"):
        AtomicFile(dest, resume=True)
    assert partial.read_bytes() == b"theirs"


def test_our_own_partial_file_is_continued(tmp_path: Path) -> None:
    dest = tmp_path / "out.dat"
    partial_path(dest).write_bytes(b"abc")
    assert partial_size(dest) == 3
    atomic = AtomicFile(dest, resume=True)
    atomic.write(b"def")
    atomic.commit()
    assert dest.read_bytes() == b"abcdef" and not partial_path(dest).exists()


def test_a_new_partial_file_is_private(tmp_path: Path) -> None:
    dest = tmp_path / "out.dat"
    atomic = AtomicFile(dest, resume=True)
    assert stat.S_IMODE(os.stat(partial_path(dest)).st_mode) == 0o600
    atomic.discard()
    assert partial_path(dest).exists()  # kept for the next attempt


@pytest.mark.parametrize("resume", [False, True])
def test_the_committed_mode_follows_the_umask(tmp_path: Path, resume: bool) -> None:
    old = os.umask(0o077)
    try:
        assert current_umask() == 0o077
        with AtomicFile(tmp_path / "f", resume=resume) as atomic:
            atomic.write(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o600


def test_replacing_a_private_file_keeps_it_private(tmp_path: Path) -> None:
    dest = tmp_path / "secret.txt"
    dest.write_bytes(b"old")
    dest.chmod(0o600)
    with AtomicFile(dest) as atomic:
        atomic.write(b"new")
    assert dest.read_bytes() == b"new"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
