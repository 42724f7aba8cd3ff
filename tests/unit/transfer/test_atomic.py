"""Atomic file results: all or nothing, beside the destination."""

from __future__ import annotations

import os

import pytest

from rpcframework.transfer.atomic import AtomicFile, atomic_write, partial_path, partial_size


def test_commit_replaces_destination(tmp_path):
    dest = tmp_path / "out.dat"
    dest.write_bytes(b"old")
    with AtomicFile(dest) as f:
        f.write(b"new ")
        f.write(memoryview(b"content"))
        assert dest.read_bytes() == b"old"  # readers see the old file until the rename
    assert dest.read_bytes() == b"new content"
    assert os.listdir(tmp_path) == ["out.dat"]
    assert dest.stat().st_mode & 0o777 == 0o644


def test_failure_leaves_nothing(tmp_path):
    dest = tmp_path / "out.dat"
    with pytest.raises(RuntimeError), atomic_write(dest) as f:
        f.write(b"partial")
        raise RuntimeError("network died")
    assert os.listdir(tmp_path) == []


def test_failure_keeps_the_old_file(tmp_path):
    dest = tmp_path / "out.dat"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError), AtomicFile(dest) as f:
        f.write(b"partial")
        raise RuntimeError
    assert os.listdir(tmp_path) == ["out.dat"] and dest.read_bytes() == b"old"


def test_temp_file_is_private_and_beside_destination(tmp_path):
    atomic = AtomicFile(tmp_path / "x")
    assert atomic.temp_path.parent == tmp_path and atomic.temp_path.name.startswith(".x.")
    assert atomic.temp_path.stat().st_mode & 0o777 == 0o600
    atomic.discard()
    atomic.discard()  # idempotent
    assert os.listdir(tmp_path) == []


def test_resume_keeps_and_continues_the_partial_file(tmp_path):
    dest = tmp_path / "big.iso"
    assert partial_size(dest) == 0
    atomic = AtomicFile(dest, resume=True)
    atomic.write(b"0123456789")
    atomic.discard()  # interrupted: the partial file stays
    assert partial_path(dest).exists() and partial_size(dest) == 10
    atomic = AtomicFile(dest, resume=True)
    assert atomic.size == 10
    assert b"".join(atomic.read_prefix(7, chunk_size=3)) == b"0123456"
    atomic.truncate(7)
    atomic.write(b"789abc")
    atomic.commit()
    assert dest.read_bytes() == b"0123456789abc"
    assert not partial_path(dest).exists()


def test_read_prefix_of_a_short_file_fails(tmp_path):
    atomic = AtomicFile(tmp_path / "f", resume=True)
    atomic.write(b"abc")
    with pytest.raises(OSError):
        list(atomic.read_prefix(10))
    atomic.discard()


def test_missing_directory_fails_cleanly(tmp_path):
    with pytest.raises(FileNotFoundError):
        AtomicFile(tmp_path / "no" / "such" / "file")
