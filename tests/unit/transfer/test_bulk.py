"""Bulk archives: streamed creation, and a hostile set of archives that must all be refused, leaving nothing."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from rpcframework.transfer.bulk import (
    ExtractionLimits,
    UnsafeArchiveError,
    bulk_name,
    compression_for,
    extract_archive,
    list_archive,
    write_archive,
)


def make_tar(members, compression=""):
    """members: list of (TarInfo kwargs, data or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}" if compression else "w") as tar:
        for spec, data in members:
            info = tarfile.TarInfo(spec.pop("name"))
            for key, value in spec.items():
                setattr(info, key, value)
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    buf.seek(0)
    return buf


def regular(name, data=b"x"):
    return ({"name": name}, data)


def snapshot(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_names_and_compression():
    assert bulk_name("bulk1") == "bulk1.tar.bz2" and bulk_name("bulk1", compress=False) == "bulk1.tar"
    assert compression_for("bulk1.tar.bz2") == "bz2" and compression_for("b.tgz") == "gz"
    assert compression_for("bulk1.tar") == ""


@pytest.mark.parametrize("compression", ["", "bz2", "gz"])
def test_round_trip_through_a_stream(tmp_path, compression):
    src = tmp_path / "src"
    (src / "dir" / "sub").mkdir(parents=True)
    (src / "dir" / "sub" / "f.txt").write_bytes(b"deep")
    (src / "top.bin").write_bytes(os.urandom(300_000))
    (src / "dir" / "link").symlink_to("sub/f.txt")

    class WriteOnly:  # tar must not seek: the network is write-only
        def __init__(self):
            self.parts = []

        def write(self, data):
            self.parts.append(bytes(data))
            return len(data)

    sink = WriteOnly()
    assert write_archive([src / "dir", src / "top.bin"], sink, compression) == ["dir", "top.bin"]
    archive = io.BytesIO(b"".join(sink.parts))
    assert "dir/sub/f.txt" in list_archive(archive)
    archive.seek(0)
    out = tmp_path / "out"
    names = extract_archive(archive, out, None)
    assert "dir/link" in names
    assert (out / "dir" / "sub" / "f.txt").read_bytes() == b"deep"
    assert (out / "top.bin").read_bytes() == (src / "top.bin").read_bytes()
    assert os.readlink(out / "dir" / "link") == "sub/f.txt"
    assert not [p for p in out.iterdir() if p.name.startswith(".bulk-")]


def test_missing_source_is_refused_before_writing(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_archive([tmp_path / "nope"], io.BytesIO())


HOSTILE = {
    "absolute path": [regular("ok.txt"), regular("/tmp/evil")],
    "dot-dot": [regular("ok.txt"), regular("../evil")],
    "nested dot-dot": [regular("a/../../evil")],
    "symlink outside": [({"name": "link", "type": tarfile.SYMTYPE, "linkname": "../../etc/passwd"}, None)],
    "absolute symlink": [({"name": "link", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, None)],
    "symlink then write through it": [
        ({"name": "d", "type": tarfile.SYMTYPE, "linkname": ".."}, None),
        regular("d/evil"),
    ],
    "hardlink outside": [({"name": "h", "type": tarfile.LNKTYPE, "linkname": "../outside.txt"}, None)],
    "absolute hardlink": [({"name": "h", "type": tarfile.LNKTYPE, "linkname": "/etc/passwd"}, None)],
    "character device": [regular("ok.txt"), ({"name": "tty", "type": tarfile.CHRTYPE, "devmajor": 5}, None)],
    "block device": [({"name": "sda", "type": tarfile.BLKTYPE, "devmajor": 8}, None)],
    "fifo": [regular("ok.txt"), ({"name": "pipe", "type": tarfile.FIFOTYPE}, None)],
    "windows dot-dot": [regular("..\\evil")],
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_archives_are_refused_and_leave_nothing(tmp_path, case):
    target = tmp_path / "target"
    target.mkdir()
    (target / "existing.txt").write_bytes(b"keep")
    (tmp_path / "outside.txt").write_bytes(b"secret")
    before_outside = snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError):
        extract_archive(make_tar([(dict(spec), data) for spec, data in HOSTILE[case]]), target)
    assert snapshot(target) == ["existing.txt"]  # not even the good members before the bad one
    assert snapshot(tmp_path) == before_outside
    assert (target / "existing.txt").read_bytes() == b"keep"


def test_too_many_members(tmp_path):
    archive = make_tar([regular(f"f{i}") for i in range(50)])
    with pytest.raises(UnsafeArchiveError, match="more than 20 members"):
        extract_archive(archive, tmp_path / "t", limits=ExtractionLimits(max_members=20))
    assert snapshot(tmp_path / "t") == []
    archive.seek(0)
    with pytest.raises(UnsafeArchiveError):
        list_archive(archive, limits=ExtractionLimits(max_members=20))


def test_oversize_total_is_refused_from_the_headers(tmp_path):
    # A bz2 bomb: 64 MiB of zeros compress to a few KiB; refused before anything is written.
    archive = make_tar([regular("zeros", bytes(64 * 1024 * 1024))], "bz2")
    assert len(archive.getvalue()) < 100_000
    with pytest.raises(UnsafeArchiveError, match="bytes of content"):
        extract_archive(archive, tmp_path / "t", limits=ExtractionLimits(max_total_size=1024 * 1024))
    assert snapshot(tmp_path / "t") == []


def test_oversize_member(tmp_path):
    archive = make_tar([regular("small", b"x"), regular("big", b"y" * 5000)])
    with pytest.raises(UnsafeArchiveError, match="over the limit"):
        extract_archive(archive, tmp_path / "t", limits=ExtractionLimits(max_member_size=1000))
    assert snapshot(tmp_path / "t") == []


def test_existing_symlink_in_target_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (target / "d").symlink_to(outside)
    with pytest.raises(UnsafeArchiveError, match="not a directory"):
        extract_archive(make_tar([({"name": "d", "type": tarfile.DIRTYPE}, None), regular("d/evil")]), target)
    assert list(outside.iterdir()) == []


def test_setuid_bits_are_dropped(tmp_path):
    archive = make_tar([({"name": "tool", "mode": 0o4755}, b"#!/bin/sh\n")])
    extract_archive(archive, tmp_path)
    assert not (tmp_path / "tool").stat().st_mode & 0o4000


def test_corrupt_archive(tmp_path):
    with pytest.raises(UnsafeArchiveError):
        extract_archive(io.BytesIO(b"not a tar at all" * 100), tmp_path / "t")
    assert snapshot(tmp_path / "t") == []


def test_inside_links_are_allowed(tmp_path):
    archive = make_tar(
        [
            regular("data/file.txt", b"hi"),
            ({"name": "data/alias", "type": tarfile.SYMTYPE, "linkname": "file.txt"}, None),
            ({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "data/file.txt"}, None),
        ]
    )
    extract_archive(archive, tmp_path)
    assert (tmp_path / "hard").read_bytes() == b"hi"
    assert (tmp_path / "data" / "alias").read_bytes() == b"hi"
